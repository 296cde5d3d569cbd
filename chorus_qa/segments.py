"""Per-Gaussian segment ids for "objects" scene tokens (``scene_tokens.pool_objects``).

Sources (``SegmentConfig.source``):

- ``"zero-shot"`` (the product path): every Gaussian gets the class whose text embedding
  (``template`` filled with each name of ``label_set``, encoded by ``text_encoder``) is most
  similar to its language-head feature; Gaussians of one class that are linked by a chain of
  neighbours (``knn_k`` nearest, at most ``radius`` metres apart) form one segment. Touching
  objects of the same class merge, a mislabelled patch becomes its own small segment;
  segments under ``min_points`` Gaussians get id -1. Needs the encoder's projector heads
  (``heads``; default: the ``heads`` folder next to the encoder folder). Measured on 40 synthetic
  val rooms with the demo encoder (radius 0.12, ``benchmarks/segment_quality.py``): 43.9 segments a
  room for 17.2 objects, 52.8 % of the objects matched by a segment at IoU >= 0.5 and 75.0 % at 0.25;
  ``min_points`` 60 keeps 18.2 segments with the same IoU >= 0.5 recall (linking Gaussians by
  object-head feature similarity instead reached 24 % / 42 % on 6 rooms: structure chains everything).
  ``smooth_iters`` > 0 first averages each Gaussian's unit language feature with those of its graph neighbours
  (the same ``knn_k`` / ``radius`` graph) that many times, so isolated mislabelled Gaussians take their
  surroundings' class instead of splitting an object into pieces;
- ``"gt"``: the scene's ground-truth instance ids: a diagnostic of what perfect segmentation
  gives the Q&A model, never a model to release (user scenes have no instances).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

SEGMENT_SOURCES = ("zero-shot", "gt")


@dataclass
class SegmentConfig:
    source: str = "zero-shot"        # "zero-shot" or "gt" (diagnostic)
    label_set: str = "synth"         # encoder.label_sets name: the vocabulary of zero-shot labels
    text_encoder: str = "minilm"     # adapters.text spec of the language teacher's text side
    template: str = "this is a {}"
    heads: str | None = None         # projector heads folder (default: "heads" next to the encoder folder)
    language_head: str | None = None  # projector name (default: the first language-like one)
    radius: float = 0.12             # longest link between Gaussians of one segment (metres)
    knn_k: int = 10                  # neighbours considered per Gaussian
    min_points: int = 10             # smaller segments get id -1
    smooth_iters: int = 0            # neighbour-averaging passes over the language features before labelling

    def __post_init__(self):
        if self.source not in SEGMENT_SOURCES:
            raise ValueError(f"SegmentConfig.source = {self.source!r}: expected one of {SEGMENT_SOURCES}")
        if self.radius <= 0 or self.knn_k < 1 or self.min_points < 1 or self.smooth_iters < 0:
            raise ValueError(f"SegmentConfig: radius={self.radius} (> 0), knn_k={self.knn_k} (>= 1), "
                             f"min_points={self.min_points} (>= 1), smooth_iters={self.smooth_iters} (>= 0) out of range")

    @classmethod
    def from_dict(cls, d: dict | None) -> "SegmentConfig":
        from .qa_config import strict_from_dict

        return strict_from_dict(cls, dict(d or {}))

    def key(self) -> str:
        """Short stable id of the settings (part of pooled-cache keys)."""
        import hashlib
        import json

        d = dataclasses.asdict(self)
        if not d["smooth_iters"]:  # added later: left out when off, so earlier caches keep their keys
            del d["smooth_iters"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def label_segments(xyz, labels, knn_k: int, radius: float, min_points: int) -> Tensor:
    """Segment ids [N] (int64): connected components of same-label neighbours; small ones and label < 0 get -1.

    Ids are 0..S-1, numbered by first appearance so equal inputs give equal ids.
    """
    from encoder.instance import connected_components, neighbour_graph

    xyz = np.asarray(torch.as_tensor(xyz).detach().cpu(), dtype=np.float64)
    labels = np.asarray(torch.as_tensor(labels).detach().cpu()).astype(np.int64)
    if labels.shape != (len(xyz),):
        raise ValueError(f"label_segments: {len(xyz)} positions but labels of shape {labels.shape}")
    src, dst = neighbour_graph(xyz, knn_k, radius)
    keep = (labels[src] == labels[dst]) & (labels[src] >= 0)
    comp = connected_components(len(xyz), src[keep], dst[keep])
    _, first, inverse, counts = np.unique(comp, return_index=True, return_inverse=True, return_counts=True)
    ok = (counts >= min_points) & (labels[first] >= 0)
    # renumber the kept components by first appearance
    order = np.argsort(first, kind="stable")
    new_id = np.full(len(first), -1, np.int64)
    kept = order[ok[order]]
    new_id[kept] = np.arange(len(kept))
    return torch.from_numpy(new_id[inverse])


def gt_segments(scene) -> Tensor:
    if scene.instance is None:
        raise ValueError(f"{scene.name or 'scene'}: 'gt' segments need per-Gaussian instance ids")
    return scene.instance.long().clone()


class Segmenter:
    """segments = Segmenter(cfg, encoder_ref)(scene, features): per-Gaussian ids for ``scene`` [N]."""

    def __init__(self, cfg: SegmentConfig, encoder_ref: str | None = None):
        from encoder.label_sets import get_label_set

        self.cfg = cfg
        self.heads = self.head_name = self.text = None
        self.class_names = get_label_set(cfg.label_set)
        if cfg.source == "zero-shot":
            from adapters.text import get_text_encoder
            from encoder.evaluate import LANGUAGE_HINTS, pick_head
            from encoder.heads import MultiTeacherHeads
            from encoder.zeroshot import encode_class_names

            folder = cfg.heads
            if folder is None:
                if encoder_ref is None or not Path(encoder_ref).is_dir():
                    raise ValueError(f"zero-shot segments need the encoder's projector heads: set segments.heads "
                                     f"(the encoder {encoder_ref!r} is not a folder with a 'heads' sibling)")
                folder = str(Path(encoder_ref).resolve().parent / "heads")
            if not Path(folder).is_dir():
                raise FileNotFoundError(f"zero-shot segments: projector heads folder {folder} not found")
            self.heads = MultiTeacherHeads.from_pretrained(folder).eval()
            self.head_name = pick_head(self.heads, cfg.language_head, LANGUAGE_HINTS, "language")
            self.text = encode_class_names(self.class_names, get_text_encoder(cfg.text_encoder), cfg.template)

    @torch.no_grad()
    def labels(self, features: Tensor, xyz: Tensor | None = None, smooth_iters: int | None = None) -> Tensor:
        """Zero-shot class ids [N] of per-Gaussian encoder features [N, C] at positions ``xyz`` [N, 3] (needed when
        smoothing); ``smooth_iters`` overrides the config's."""
        step = 32768  # chunks bound the projector's memory on big scenes
        iters = self.cfg.smooth_iters if smooth_iters is None else smooth_iters
        if iters:
            if xyz is None or len(xyz) != len(features):
                raise ValueError(f"Segmenter.labels: smooth_iters={iters} needs the positions of "
                                 f"all {len(features)} Gaussians")
            from encoder.instance import neighbour_graph, smooth_features

            lang = torch.cat([self.heads.project(self.head_name, features[i:i + step].float().cpu())
                              for i in range(0, len(features), step)])
            src, dst = neighbour_graph(np.asarray(torch.as_tensor(xyz).cpu(), np.float64), self.cfg.knn_k, self.cfg.radius)
            return (smooth_features(lang, src, dst, iters) @ self.text.T).argmax(1)
        # The argmax of cosine similarity to the class texts is that of the plain dot product (normalising a row
        # scales all of its scores alike), which lets the head's last layer fold into the text matrix.
        out = []
        for i in range(0, len(features), step):
            out.append(self.heads.scores(self.head_name, features[i:i + step].float().cpu(), self.text).argmax(1))
        return torch.cat(out)

    def gt_labels(self, scene) -> Tensor | None:
        """Ground-truth class ids [N] of ``scene`` in this segmenter's label set (-1: unlabelled or not in it)."""
        if scene.semantic is None or not scene.class_names:
            return None
        from encoder.evaluate import map_labels

        return torch.as_tensor(map_labels(scene.semantic, scene.class_names, self.class_names)).long()

    def object_inputs(self, scene, features: Tensor) -> dict[str, Tensor]:
        """The extra inputs of "objects" pooling: {"segments": [N], "colors": [N, 3], "labels": [N] class ids}.

        Labels are the zero-shot classes (or, for "gt", the ground-truth classes; all -1 when the scene has none).
        """
        if self.cfg.source == "gt":
            segments, labels = gt_segments(scene), self.gt_labels(scene)
            if labels is None:
                labels = torch.full((len(scene.means),), -1, dtype=torch.long)
        else:
            labels = self.labels(self._check(scene, features), scene.means)
            segments = label_segments(scene.means, labels, self.cfg.knn_k, self.cfg.radius, self.cfg.min_points)
        return {"segments": segments, "colors": scene.colors.float(), "labels": labels}

    @staticmethod
    def _check(scene, features: Tensor) -> Tensor:
        if len(features) != len(scene.means):
            raise ValueError(f"Segmenter: {len(features)} features for {len(scene.means)} Gaussians")
        return features

    def __call__(self, scene, features: Tensor) -> Tensor:
        """Segment ids [N] of ``scene`` (-1: no segment)."""
        if self.cfg.source == "gt":
            return gt_segments(scene)
        return self.object_inputs(scene, features)["segments"]


def make_segmenter(model_config, encoder_ref: str | None = None, heads: str | None = None) -> Segmenter | None:
    """The Segmenter a QAModelConfig needs (None unless its pooling is "objects").

    ``encoder_ref`` / ``heads``: resolved folders of the encoder and its projector heads (override the config).
    """
    if model_config.pooling != "objects":
        return None
    cfg = model_config.segment_config()
    if heads is not None and cfg.source == "zero-shot":
        cfg = dataclasses.replace(cfg, heads=str(heads))
    return Segmenter(cfg, encoder_ref if encoder_ref is not None else model_config.encoder_ref)
