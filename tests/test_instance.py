"""Open-vocabulary instance segmentation: proposals, labelling, matching and AP against brute force."""

import itertools

import numpy as np
import pytest
import torch

from encoder.instance import (
    InstanceEvaluator,
    InstancePrediction,
    ProposalConfig,
    average_precision,
    class_agnostic_proposals,
    gt_instances,
    label_proposals,
    mask_iou,
    match_predictions,
    segment_instances,
)


def brute_force_ap(scores, is_tp, n_gt):
    """AP as the mean over ground truths of the best precision at any rank reaching that recall level."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    precisions, hits = [], 0
    for rank, i in enumerate(order, start=1):
        hits += bool(is_tp[i])
        precisions.append((hits, hits / rank))
    total = 0.0
    for level in range(1, n_gt + 1):
        reach = [p for h, p in precisions if h >= level]
        total += max(reach) if reach else 0.0
    return total / n_gt


def test_average_precision_known_answer():
    # ranks: TP (P=1), FP (P=1/2), TP (P=2/3); 3 ground truths -> (1 + 2/3 + 0) / 3
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1], bool), 3) == pytest.approx((1 + 2 / 3) / 3)
    assert average_precision(np.array([]), np.array([], bool), 2) == 0.0
    assert np.isnan(average_precision(np.array([0.5]), np.array([False]), 0))


def test_average_precision_matches_brute_force_on_random_rankings():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = int(rng.integers(1, 9))
        scores = rng.permutation(p) / p + 0.01  # distinct
        tp = rng.random(p) < 0.5
        n_gt = int(tp.sum() + rng.integers(0, 3))
        if n_gt == 0:
            continue
        assert average_precision(scores, tp, n_gt) == pytest.approx(brute_force_ap(scores, tp, n_gt))


def test_mask_iou_against_dense_masks():
    rng = np.random.default_rng(1)
    n = 40
    preds = [np.flatnonzero(rng.random(n) < 0.3) for _ in range(5)]
    gts = [np.flatnonzero(rng.random(n) < 0.4) for _ in range(3)]
    iou = mask_iou(preds, gts, n)
    for (i, p), (j, g) in itertools.product(enumerate(preds), enumerate(gts)):
        a, b = np.zeros(n, bool), np.zeros(n, bool)
        a[p], b[g] = True, True
        assert iou[i, j] == pytest.approx((a & b).sum() / max((a | b).sum(), 1))


def test_matching_is_greedy_by_score_and_one_to_one():
    # two predictions of class 0 both overlap gt 0; the higher score wins it, the other is a false positive
    iou = np.array([[0.6, 0.0], [0.9, 0.3], [0.0, 0.8]])
    labels = np.array([0, 0, 1])
    scores = np.array([0.9, 0.5, 0.7])
    gt_labels = np.array([0, 1])
    assert match_predictions(iou, labels, scores, gt_labels, 0.5).tolist() == [True, False, True]
    assert match_predictions(iou, labels, scores, gt_labels, 0.25).tolist() == [True, False, True]
    # wrong class never matches
    assert match_predictions(iou, np.array([1, 1, 0]), scores, gt_labels, 0.25).tolist() == [False, True, False]


def two_objects(gap: float, n: int = 300, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 3, generator=g) * 0.4
    b = torch.rand(n, 3, generator=g) * 0.4 + torch.tensor([0.4 + gap, 0.0, 0.0])
    return torch.cat([a, b]), torch.cat([torch.zeros(n), torch.ones(n)]).long()


def test_proposals_separate_two_distant_objects_with_identical_features():
    xyz, inst = two_objects(gap=2.0)
    feats = torch.ones(len(xyz), 8)  # the features cannot tell them apart: only distance can
    props = class_agnostic_proposals(xyz, feats, ProposalConfig(knn_k=8, radius=0.15, thresholds=(0.5,), min_points=10))
    assert len(props) == 2
    assert sorted(set(inst[p].tolist()) for p in map(torch.from_numpy, props)) == [{0}, {1}]
    assert sorted(len(p) for p in props) == [300, 300]


def test_proposals_split_touching_objects_by_feature():
    xyz, inst = two_objects(gap=0.0)
    codes = torch.nn.functional.normalize(torch.randn(2, 16, generator=torch.Generator().manual_seed(3)), dim=1)
    feats = codes[inst] + 0.05 * torch.randn(len(xyz), 16)
    props = class_agnostic_proposals(xyz, feats, ProposalConfig(knn_k=8, radius=0.15, thresholds=(0.7,), min_points=10))
    purity = [np.bincount(inst.numpy()[p]).max() / len(p) for p in props]
    assert len(props) >= 2 and min(purity) > 0.97
    covered = np.zeros(len(xyz), bool)
    for p in props:
        covered[p] = True
    assert covered.mean() > 0.95


def test_label_proposals_uses_mean_softmax_of_text_scores():
    text = torch.eye(3)
    lang = torch.tensor([[1.0, 0, 0], [1.0, 0.1, 0], [0, 0, 1.0]])
    pred = label_proposals([np.array([0, 1]), np.array([2])], lang, text, logit_scale=10.0)
    assert pred.labels.tolist() == [0, 2]
    probs = torch.softmax(10 * torch.nn.functional.normalize(lang, dim=1) @ text.T, 1)
    assert pred.scores[0] == pytest.approx(float(probs[:2, 0].mean()), rel=1e-6)


def test_evaluator_perfect_and_empty_predictions():
    names = ["wall", "chair", "table", "lamp"]
    semantic = torch.tensor([0] * 50 + [1] * 40 + [2] * 30 + [1] * 20)
    instance = torch.tensor([0] * 50 + [1] * 40 + [2] * 30 + [3] * 20)
    masks, labels = gt_instances(semantic, instance)
    assert labels.tolist() == [0, 1, 2, 1]
    split = {"chair": "head", "table": "tail", "lamp": "tail"}
    perfect = InstanceEvaluator(names, split=split)
    perfect.add_scene(InstancePrediction(masks, labels, np.ones(len(labels))), masks, labels, 140)
    s = perfect.summary()
    assert s["map50"] == pytest.approx(1.0) and s["map25"] == pytest.approx(1.0)
    assert s["classes_evaluated"] == ["chair", "table"]  # wall excluded, lamp has no ground truth
    assert s["map50_head"] == pytest.approx(1.0) and s["map50_tail"] == pytest.approx(1.0) and np.isnan(s["map50_common"])
    empty = InstanceEvaluator(names)
    empty.add_scene(InstancePrediction([], np.zeros(0, np.int64), np.zeros(0)), masks, labels, 140)
    assert empty.summary()["map50"] == 0.0
    # one chair found, the other chair half-covered: AP50 of chair = 1/2, table 0
    half = InstanceEvaluator(names)
    half.add_scene(InstancePrediction([masks[1], masks[3][:5]], np.array([1, 1]), np.array([0.9, 0.8])), masks, labels, 140)
    s = half.summary()
    assert s["ap_per_class"]["map50"]["chair"] == pytest.approx(0.5) and s["map50"] == pytest.approx(0.25)


def test_segment_instances_end_to_end_on_two_objects():
    xyz, inst = two_objects(gap=1.0)
    obj = torch.eye(4)[inst]
    lang = torch.eye(3)[inst + 1]  # object 0 -> class 1, object 1 -> class 2
    pred = segment_instances(xyz, obj, lang, torch.eye(3))
    ev = InstanceEvaluator(["wall", "chair", "table"])
    masks, labels = gt_instances(inst + 1, inst)
    ev.add_scene(pred, masks, labels, len(xyz))
    assert ev.summary()["map50"] == pytest.approx(1.0)
