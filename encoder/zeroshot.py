"""Zero-shot open-vocabulary semantic segmentation over per-Gaussian language features.

Protocol (Chorus / SceneSplat): embed a prompt per class ("this is a {label}")
with the text encoder whose space the language teacher lives in, score every
Gaussian by cosine similarity with each prompt, take the argmax; optionally

- reject points whose best score is too low: ``sigmoid(scale * cos + bias) <
  threshold`` -> -1 (the paper uses threshold 0.1 on SigLIP's sigmoid logits);
- transfer labels from Gaussians to separate evaluation points by k-nearest-
  neighbour majority vote (k = 25 in the paper);
- report f-mIoU / f-mAcc leaving out wall, floor and ceiling.

Pieces are pure functions; :class:`ZeroShotSegmenter` holds the class text
embeddings so one object serves many scenes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .seg_metrics import BACKGROUND_CLASSES, class_ids_to_exclude, confusion_matrix, segmentation_metrics

DEFAULT_TEMPLATE = "this is a {}"


@dataclass
class ZeroShotConfig:
    """How labels are predicted and scored.

    template: prompt with one "{}" for the class name ("{}" alone = bare class names).
    threshold: reject points with sigmoid(logit_scale * cos + logit_bias) below it (None = never).
    knn_k: neighbours for voting onto evaluation points (used when eval points are given).
    exclude_classes: class names left out of the f-mIoU / f-mAcc means.
    """

    template: str = DEFAULT_TEMPLATE
    threshold: float | None = None
    logit_scale: float = 1.0
    logit_bias: float = 0.0
    knn_k: int = 25
    exclude_classes: tuple[str, ...] = field(default_factory=lambda: tuple(BACKGROUND_CLASSES))

    def __post_init__(self):
        if "{}" not in self.template:
            raise ValueError(f"ZeroShotConfig.template={self.template!r}: expected a '{{}}' placeholder for the class name")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"ZeroShotConfig.threshold={self.threshold}: expected None or a probability in [0, 1]")
        if self.knn_k <= 0:
            raise ValueError(f"ZeroShotConfig.knn_k={self.knn_k}: expected > 0")
        self.exclude_classes = tuple(self.exclude_classes)


def class_prompts(class_names: Sequence[str], template: str = DEFAULT_TEMPLATE) -> list[str]:
    """["chair", "dining table"] -> ["this is a chair", "this is a dining table"] (underscores become spaces)."""
    return [template.format(name.replace("_", " ")) for name in class_names]


def encode_class_names(class_names: Sequence[str], text_encoder, template: str = DEFAULT_TEMPLATE) -> torch.Tensor:
    """Unit-norm text embeddings [C, D] of the class prompts. ``text_encoder.encode(list[str]) -> [T, D]``."""
    emb = torch.as_tensor(np.asarray(text_encoder.encode(class_prompts(class_names, template)))).float()
    return F.normalize(emb, dim=-1)


def zero_shot_scores(features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every feature [N, D] with every class embedding [C, D] -> [N, C]."""
    if features.shape[-1] != text.shape[-1]:
        raise ValueError(f"zero_shot_scores: features have dim {features.shape[-1]}, text embeddings {text.shape[-1]}; expected equal")
    return F.normalize(features.float(), dim=-1) @ F.normalize(text.float(), dim=-1).T


def predict_labels(scores: torch.Tensor, threshold: float | None = None, logit_scale: float = 1.0, logit_bias: float = 0.0) -> torch.Tensor:
    """Argmax class per row of scores [N, C]; -1 where sigmoid(scale*best+bias) < threshold."""
    best, label = scores.max(dim=1)
    if threshold is not None:
        label = torch.where(torch.sigmoid(logit_scale * best + logit_bias) < threshold, torch.full_like(label, -1), label)
    return label


def knn_vote(src_xyz, src_labels, query_xyz, k: int, num_classes: int) -> torch.Tensor:
    """Majority label among the k nearest labelled sources of each query point.

    src_xyz [S, 3], src_labels [S] (-1 = no label, not voted), query_xyz [Q, 3] -> [Q] int64
    (-1 when none of the k neighbours has a label; ties go to the smaller class id).
    """
    from scipy.spatial import cKDTree

    src_xyz = np.asarray(torch.as_tensor(src_xyz).detach().cpu(), dtype=np.float64)
    src_labels = np.asarray(torch.as_tensor(src_labels).cpu(), dtype=np.int64)
    query_xyz = np.asarray(torch.as_tensor(query_xyz).detach().cpu(), dtype=np.float64)
    if len(src_xyz) == 0:
        return torch.full((len(query_xyz),), -1, dtype=torch.long)
    k = min(k, len(src_xyz))
    _, idx = cKDTree(src_xyz).query(query_xyz, k=k)
    idx = idx.reshape(len(query_xyz), k)
    votes = src_labels[idx]  # [Q, k]
    valid = (votes >= 0) & (votes < num_classes)
    counts = np.zeros((len(query_xyz), num_classes + 1), dtype=np.int64)
    rows = np.repeat(np.arange(len(query_xyz)), k)
    np.add.at(counts, (rows, np.where(valid, votes, num_classes).reshape(-1)), 1)
    out = counts[:, :num_classes].argmax(1)
    out[counts[:, :num_classes].sum(1) == 0] = -1
    return torch.from_numpy(out)


class ZeroShotSegmenter:
    """Class-name text embeddings + the prediction protocol, reused across scenes.

    >>> seg = ZeroShotSegmenter(class_names, get_text_encoder("minilm"))
    >>> labels = seg.predict(language_features)           # [N] class ids (-1 = rejected)
    >>> conf = seg.confusion(language_features, scene.semantic)
    >>> seg.metrics(conf)["miou"]
    """

    def __init__(self, class_names: Sequence[str], text_encoder=None, cfg: ZeroShotConfig | None = None, text_embeddings: torch.Tensor | None = None):
        self.cfg = cfg or ZeroShotConfig()
        self.class_names = list(class_names)
        if text_embeddings is None:
            if text_encoder is None:
                raise ValueError("ZeroShotSegmenter needs a text_encoder or precomputed text_embeddings")
            text_embeddings = encode_class_names(self.class_names, text_encoder, self.cfg.template)
        if text_embeddings.shape[0] != len(self.class_names):
            raise ValueError(f"ZeroShotSegmenter: {text_embeddings.shape[0]} text embeddings for {len(self.class_names)} class names")
        self.text = F.normalize(torch.as_tensor(text_embeddings).float(), dim=-1)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """features [N, D] -> cosine scores [N, C]"""
        return zero_shot_scores(features, self.text.to(features.device))

    def predict(self, features: torch.Tensor, xyz=None, query_xyz=None) -> torch.Tensor:
        """Labels [N] for the Gaussians, or [Q] for ``query_xyz`` by kNN voting from ``xyz``."""
        cfg = self.cfg
        labels = predict_labels(self.scores(features), cfg.threshold, cfg.logit_scale, cfg.logit_bias).cpu()
        if query_xyz is None:
            return labels
        if xyz is None:
            raise ValueError("ZeroShotSegmenter.predict: query_xyz given without the Gaussians' xyz")
        return knn_vote(xyz, labels, query_xyz, cfg.knn_k, self.num_classes)

    def confusion(self, features: torch.Tensor, gt, xyz=None, query_xyz=None) -> np.ndarray:
        """[C, C+1] confusion matrix of one scene (gt matches the Gaussians, or the query points)."""
        return confusion_matrix(self.predict(features, xyz, query_xyz), gt, self.num_classes)

    def metrics(self, conf: np.ndarray) -> dict:
        """mIoU/mAcc over all classes present, and f-mIoU/f-mAcc without ``cfg.exclude_classes``."""
        full = segmentation_metrics(conf, class_names=self.class_names)
        fg = segmentation_metrics(conf, exclude=class_ids_to_exclude(self.class_names, self.cfg.exclude_classes))
        full.update({"f_miou": fg["miou"], "f_macc": fg["macc"]})
        return full
