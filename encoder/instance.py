"""Open-vocabulary 3D instance segmentation without an external detector, and its AP metric.

Proposals (class-agnostic): Gaussians are linked to their ``knn_k`` nearest neighbours
closer than ``radius`` metres whose object-aware features have cosine similarity of at
least ``threshold``; the connected components of that graph are the proposals (single
linkage in a joint feature + position space: position gates which pairs may link,
features decide whether they do). One component set per threshold in
``ProposalConfig.thresholds`` gives a small hierarchy (a coarse threshold merges an object's
parts, a fine one splits touching objects); duplicates are removed and components smaller
than ``min_points`` dropped. Optionally (``smooth_iters`` > 0) object-aware features are first
averaged over the same neighbourhood; off by default, because averaged features at a boundary
resemble both sides and let single linkage chain two touching objects together.

Labels: every Gaussian's language feature is scored against the class text embeddings,
``softmax(logit_scale * cos)`` per Gaussian; a proposal's class probabilities are the mean
over its Gaussians; its label is the argmax and its score that mean probability (the
paper's "per-mask mean of softmaxed text logits").

Metric: ScanNet-style AP per class at IoU thresholds 0.25 and 0.5. Predictions of a class
are sorted by score over all scenes and greedily matched (each ground-truth instance at most
once, highest IoU first) to ground-truth instances of the same class with IoU >= threshold;
AP is the area under the precision envelope (all-point interpolation, as PASCAL VOC 2010+).
mAP averages over classes with ground truth, leaving out ``exclude_classes`` (wall, floor,
ceiling); head / common / tail means use a class split when one is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .seg_metrics import BACKGROUND_CLASSES


# ---------------------------------------------------------------------------- proposals
@dataclass
class ProposalConfig:
    """Clustering of Gaussians into class-agnostic proposals.

    knn_k: neighbours per Gaussian in the link graph; radius: longest link in metres.
    thresholds: cosine similarities of object-aware features above which neighbours link (one proposal set each).
    smooth_iters: neighbourhood averages of the features before linking.
    min_points: smallest proposal kept.
    """

    knn_k: int = 10
    radius: float = 0.12
    thresholds: tuple[float, ...] = (0.6, 0.8, 0.9)
    smooth_iters: int = 0
    min_points: int = 30

    def __post_init__(self):
        self.thresholds = tuple(float(t) for t in self.thresholds)
        if self.knn_k < 1 or self.radius <= 0 or self.min_points < 1 or self.smooth_iters < 0:
            raise ValueError(f"ProposalConfig: knn_k={self.knn_k} (>= 1), radius={self.radius} (> 0), "
                             f"min_points={self.min_points} (>= 1), smooth_iters={self.smooth_iters} (>= 0) out of range")
        if not self.thresholds or any(not -1.0 <= t <= 1.0 for t in self.thresholds):
            raise ValueError(f"ProposalConfig.thresholds={self.thresholds}: expected cosine similarities in [-1, 1]")


def neighbour_graph(xyz: np.ndarray, k: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Directed kNN edges (i -> j, j != i) no longer than ``radius``: (src [E], dst [E]) int64."""
    from scipy.spatial import cKDTree

    n = len(xyz)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    kk = min(k + 1, n)
    dist, idx = cKDTree(xyz).query(xyz, k=kk, distance_upper_bound=radius)
    src = np.repeat(np.arange(n), kk).reshape(n, kk)
    ok = (idx < n) & (idx != src)
    return src[ok].astype(np.int64), idx[ok].astype(np.int64)


def neighbour_average(x: torch.Tensor, src: np.ndarray, dst: np.ndarray, iters: int, normalize: bool = False) -> torch.Tensor:
    """Rows [N, D] replaced ``iters`` times by the mean of themselves and their graph neighbours (edges src -> dst);
    ``normalize``: rescale rows to unit length after every pass."""
    x = x.float()
    if iters == 0 or len(src) == 0:
        return x
    s, d = torch.from_numpy(src), torch.from_numpy(dst)
    count = torch.ones(len(x)).index_add_(0, s, torch.ones(len(s)))
    for _ in range(iters):
        x = x.clone().index_add_(0, s, x[d]) / count[:, None]
        if normalize:
            x = F.normalize(x, dim=1)
    return x


def smooth_features(feats: torch.Tensor, src: np.ndarray, dst: np.ndarray, iters: int) -> torch.Tensor:
    """Unit features [N, D] averaged with their graph neighbours ``iters`` times (self included), renormalised."""
    return neighbour_average(F.normalize(feats.float(), dim=1), src, dst, iters, normalize=True)


def connected_components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Component id [n] of an undirected graph given by edge lists."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as cc

    graph = coo_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n, n))
    return cc(graph, directed=False)[1]


def class_agnostic_proposals(xyz, object_feats: torch.Tensor, cfg: ProposalConfig | None = None) -> list[np.ndarray]:
    """Proposals as sorted index arrays into the N Gaussians. xyz [N, 3], object_feats [N, D]."""
    cfg = cfg or ProposalConfig()
    xyz = np.asarray(torch.as_tensor(xyz).detach().cpu(), dtype=np.float64)
    if len(xyz) != object_feats.shape[0]:
        raise ValueError(f"class_agnostic_proposals: {len(xyz)} positions but {object_feats.shape[0]} features")
    src, dst = neighbour_graph(xyz, cfg.knn_k, cfg.radius)
    feats = smooth_features(object_feats.detach().cpu(), src, dst, cfg.smooth_iters)
    sim = (feats[torch.from_numpy(src)] * feats[torch.from_numpy(dst)]).sum(1).numpy() if len(src) else np.zeros(0)
    seen: set[bytes] = set()
    proposals: list[np.ndarray] = []
    for thr in sorted(cfg.thresholds):
        keep = sim >= thr
        comp = connected_components(len(xyz), src[keep], dst[keep])
        order = np.argsort(comp, kind="stable")
        bounds = np.flatnonzero(np.diff(comp[order])) + 1
        for members in np.split(order, bounds):
            if len(members) < cfg.min_points:
                continue
            members = np.sort(members)
            key = members.tobytes()
            if key not in seen:
                seen.add(key)
                proposals.append(members)
    return proposals


# ---------------------------------------------------------------------------- labels
@dataclass
class InstancePrediction:
    """Instances of one scene: masks (index arrays into the Gaussians), class ids [P], scores [P]."""

    masks: list[np.ndarray]
    labels: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.masks)


def label_proposals(masks: Sequence[np.ndarray], language_feats: torch.Tensor, text: torch.Tensor,
                    logit_scale: float = 50.0) -> InstancePrediction:
    """Mean over each mask of softmax(logit_scale * cos(feature, text)) -> label = argmax, score = its mean prob.

    language_feats [N, D], text [C, D] (unit rows).
    """
    probs = torch.softmax(logit_scale * (F.normalize(language_feats.float(), dim=1) @ F.normalize(text.float(), dim=1).T), dim=1)
    labels, scores = [], []
    for m in masks:
        mean = probs[torch.from_numpy(np.asarray(m, dtype=np.int64))].mean(0)
        s, c = mean.max(0)
        labels.append(int(c))
        scores.append(float(s))
    return InstancePrediction(list(masks), np.asarray(labels, np.int64), np.asarray(scores, np.float64))


@dataclass
class InstanceConfig:
    """Proposals + labelling. logit_scale: softmax temperature^-1 on cosine text scores."""

    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    logit_scale: float = 50.0

    def __post_init__(self):
        if isinstance(self.proposals, dict):
            self.proposals = ProposalConfig(**self.proposals)
        if self.logit_scale <= 0:
            raise ValueError(f"InstanceConfig.logit_scale={self.logit_scale}: expected > 0")


def segment_instances(xyz, object_feats: torch.Tensor, language_feats: torch.Tensor, text: torch.Tensor,
                      cfg: InstanceConfig | None = None) -> InstancePrediction:
    """Open-vocabulary instances of one scene (proposals from object features, labels from language features)."""
    cfg = cfg or InstanceConfig()
    masks = class_agnostic_proposals(xyz, object_feats, cfg.proposals)
    return label_proposals(masks, language_feats, text, cfg.logit_scale)


# ---------------------------------------------------------------------------- AP
def gt_instances(semantic, instance, min_points: int = 1) -> tuple[list[np.ndarray], np.ndarray]:
    """Ground-truth instances of a scene: (masks as index arrays, class ids). Instances with id -1, a negative
    class, or fewer than ``min_points`` Gaussians are left out. Each instance takes its majority class."""
    semantic = np.asarray(torch.as_tensor(semantic).cpu(), dtype=np.int64)
    instance = np.asarray(torch.as_tensor(instance).cpu(), dtype=np.int64)
    masks, labels = [], []
    for k in np.unique(instance[instance >= 0]):
        members = np.flatnonzero(instance == k)
        cls = np.bincount(semantic[members][semantic[members] >= 0]) if (semantic[members] >= 0).any() else None
        if cls is None or len(members) < min_points:
            continue
        masks.append(members)
        labels.append(int(cls.argmax()))
    return masks, np.asarray(labels, np.int64)


def mask_iou(pred_masks: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray], n: int) -> np.ndarray:
    """IoU [P, G] between index-array masks over n points (sparse intersection counts)."""
    from scipy.sparse import csr_matrix

    def as_matrix(masks):
        rows = np.concatenate([np.full(len(m), i) for i, m in enumerate(masks)]) if masks else np.zeros(0, np.int64)
        cols = np.concatenate(masks) if masks else np.zeros(0, np.int64)
        return csr_matrix((np.ones(len(cols), np.float64), (rows, cols)), shape=(len(masks), n))

    if not len(pred_masks) or not len(gt_masks):
        return np.zeros((len(pred_masks), len(gt_masks)))
    inter = (as_matrix(pred_masks) @ as_matrix(gt_masks).T).toarray()
    sizes_p = np.array([len(m) for m in pred_masks], np.float64)
    sizes_g = np.array([len(m) for m in gt_masks], np.float64)
    return inter / (sizes_p[:, None] + sizes_g[None, :] - inter)


def match_predictions(iou: np.ndarray, pred_labels: np.ndarray, pred_scores: np.ndarray, gt_labels: np.ndarray,
                      threshold: float) -> np.ndarray:
    """True positives [P] bool: predictions in descending score order take the unmatched same-class ground truth
    of highest IoU >= threshold."""
    tp = np.zeros(len(pred_labels), bool)
    taken = np.zeros(len(gt_labels), bool)
    for p in np.argsort(-pred_scores, kind="stable"):
        cand = np.flatnonzero((gt_labels == pred_labels[p]) & ~taken & (iou[p] >= threshold)) if iou.size else []
        if len(cand):
            g = cand[np.argmax(iou[p, cand])]
            taken[g] = True
            tp[p] = True
    return tp


def average_precision(scores: np.ndarray, is_tp: np.ndarray, n_gt: int) -> float:
    """Area under the precision envelope of the ranked predictions; nan when n_gt == 0."""
    if n_gt == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(is_tp, bool)[order]
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    recall = tp / n_gt
    precision = tp / (tp + fp)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope))


class InstanceEvaluator:
    """Accumulates predictions over scenes, then reports AP per class and mAP at several IoU thresholds.

    >>> ev = InstanceEvaluator(class_names, split=get_class_split("scannet200"))
    >>> ev.add_scene(pred, gt_masks, gt_labels, n_points)
    >>> ev.summary()["map50"]
    """

    def __init__(self, class_names: Sequence[str], iou_thresholds: Sequence[float] = (0.25, 0.5),
                 exclude_classes: Sequence[str] = BACKGROUND_CLASSES, split: dict[str, str] | None = None):
        self.class_names = list(class_names)
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        wanted = {c.lower() for c in exclude_classes}
        self.evaluated = [i for i, n in enumerate(self.class_names) if n.lower() not in wanted]
        self.split = split
        self.n_gt = np.zeros(len(self.class_names), np.int64)
        self.records: dict[float, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {t: [] for t in self.iou_thresholds}

    def add_scene(self, pred: InstancePrediction, gt_masks: Sequence[np.ndarray], gt_labels: np.ndarray, n_points: int) -> None:
        gt_labels = np.asarray(gt_labels, np.int64)
        np.add.at(self.n_gt, gt_labels[(gt_labels >= 0) & (gt_labels < len(self.class_names))], 1)
        iou = mask_iou(pred.masks, gt_masks, n_points)
        for t in self.iou_thresholds:
            tp = match_predictions(iou, pred.labels, pred.scores, gt_labels, t)
            self.records[t].append((pred.labels.copy(), pred.scores.copy(), tp))

    def ap_per_class(self, threshold: float) -> np.ndarray:
        labels = np.concatenate([r[0] for r in self.records[threshold]]) if self.records[threshold] else np.zeros(0, np.int64)
        scores = np.concatenate([r[1] for r in self.records[threshold]]) if self.records[threshold] else np.zeros(0)
        tp = np.concatenate([r[2] for r in self.records[threshold]]) if self.records[threshold] else np.zeros(0, bool)
        return np.array([average_precision(scores[labels == c], tp[labels == c], int(self.n_gt[c]))
                         for c in range(len(self.class_names))])

    def summary(self) -> dict:
        """{"map25", "map50", ..., "ap_per_class": {thr: {class: AP}}, "head"/"common"/"tail" means when split}."""
        out: dict = {"ap_per_class": {}, "classes_evaluated": []}
        present = [c for c in self.evaluated if self.n_gt[c] > 0]
        out["classes_evaluated"] = [self.class_names[c] for c in present]
        for t in self.iou_thresholds:
            ap = self.ap_per_class(t)
            key = f"map{int(round(t * 100))}"
            out[key] = float(np.mean(ap[present])) if present else float("nan")
            out["ap_per_class"][key] = {self.class_names[c]: float(ap[c]) for c in present}
            if self.split:
                for group in ("head", "common", "tail"):
                    ids = [c for c in present if self.split.get(self.class_names[c]) == group]
                    out[f"{key}_{group}"] = float(np.mean(ap[ids])) if ids else float("nan")
        return out
