"""Zero-shot segmentation, kNN voting, metrics from confusion matrices and the linear probe."""

import numpy as np
import pytest
import torch

from encoder.probe import LinearProbeConfig, evaluate_probe, train_linear_probe
from encoder.seg_metrics import class_ids_to_exclude, confusion_matrix, segmentation_metrics
from encoder.zeroshot import ZeroShotConfig, ZeroShotSegmenter, class_prompts, knn_vote, predict_labels


def test_confusion_matrix_hand_computed():
    gt = [0, 0, 0, 1, 1, 2, 2, 2, -1]
    pred = [0, 1, -1, 1, 1, 2, 0, 5, 2]
    conf = confusion_matrix(pred, gt, 3)
    expected = np.array([[1, 1, 0, 1], [0, 2, 0, 0], [1, 0, 1, 1]])
    assert np.array_equal(conf, expected)
    m = segmentation_metrics(conf)
    # IoU0 = 1/(3+2-1) = 1/4, IoU1 = 2/(2+3-2) = 2/3, IoU2 = 1/(3+1-1) = 1/3
    assert m["iou"] == pytest.approx([0.25, 2 / 3, 1 / 3])
    assert m["miou"] == pytest.approx((0.25 + 2 / 3 + 1 / 3) / 3)
    assert m["macc"] == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)
    assert m["allacc"] == pytest.approx(4 / 8)
    f = segmentation_metrics(conf, exclude=[0])
    assert f["miou"] == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_metrics_skip_absent_classes():
    conf = confusion_matrix([0, 0, 2], [0, 0, 0], 3)
    m = segmentation_metrics(conf)
    assert m["classes_evaluated"] == [0]
    assert m["miou"] == pytest.approx(2 / 3) and np.isnan(m["iou"][1])
    assert class_ids_to_exclude(["Wall", "chair", "floor"]) == [0, 2]


class FakeText:
    """Deterministic 'text encoder': one basis vector per known word."""

    def __init__(self, words):
        self.words = words

    def encode(self, texts):
        out = torch.zeros(len(texts), len(self.words))
        for i, t in enumerate(texts):
            for j, w in enumerate(self.words):
                if t.endswith(w):
                    out[i, j] = 1
        return out


def test_zero_shot_segmenter_recovers_labels():
    names = ["wall", "chair", "table"]
    assert class_prompts(["dining_table"]) == ["this is a dining table"]
    seg = ZeroShotSegmenter(names, FakeText(names))
    gt = torch.randint(0, 3, (500,))
    feats = torch.eye(3)[gt] + 0.3 * torch.randn(500, 3)
    conf = seg.confusion(feats, gt)
    brute = np.zeros((3, 4), dtype=np.int64)
    pred = (torch.nn.functional.normalize(feats, dim=1) @ torch.eye(3)).argmax(1)
    for p, g in zip(pred.tolist(), gt.tolist()):
        brute[g, p] += 1
    assert np.array_equal(conf, brute)
    m = seg.metrics(conf)
    assert m["miou"] > 0.8 and "f_miou" in m
    assert m["f_miou"] == pytest.approx(np.mean([m["iou"][1], m["iou"][2]]))


def test_threshold_rejects_low_scores():
    scores = torch.tensor([[0.9, 0.1], [-0.5, -0.6]])
    assert predict_labels(scores).tolist() == [0, 0]
    # sigmoid(10*-0.5) ~ 0.0067 < 0.1 -> rejected; sigmoid(10*0.9) passes
    assert predict_labels(scores, threshold=0.1, logit_scale=10.0).tolist() == [0, -1]
    with pytest.raises(ValueError, match="template"):
        ZeroShotConfig(template="no placeholder")


def test_knn_vote_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(200, 3, generator=g)
    labels = torch.randint(-1, 4, (200,), generator=g)
    query = torch.rand(50, 3, generator=g)
    out = knn_vote(src, labels, query, k=7, num_classes=4)
    d = torch.cdist(query.double(), src.double())
    nn_idx = d.argsort(1)[:, :7]
    for q in range(50):
        v = labels[nn_idx[q]]
        v = v[v >= 0]
        expect = -1 if len(v) == 0 else int(torch.bincount(v, minlength=4).argmax())
        assert out[q].item() == expect


def test_linear_probe_learns_separable_classes():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 3
    y = torch.randint(0, 4, (4000,), generator=g)
    x = centers[y] + torch.randn(4000, 16, generator=g)
    y_train = y.clone()
    y_train[:100] = -1  # unlabeled points are ignored
    probe = train_linear_probe(x, y_train, 4, LinearProbeConfig(epochs=5, batch_size=512))
    yt = torch.randint(0, 4, (1000,), generator=g)
    xt = centers[yt] + torch.randn(1000, 16, generator=g)
    m = evaluate_probe(probe, [xt[:500], xt[500:]], [yt[:500], yt[500:]], 4)
    assert m["miou"] > 0.9
    # random labels -> chance-level probe
    rand = evaluate_probe(probe, [xt], [torch.randint(0, 4, (1000,), generator=g)], 4)
    assert rand["miou"] < 0.3
