"""The one structure every part of Chorus-QA passes around: a scene of 3D Gaussians.

Field names follow gsplat. All per-Gaussian fields are ``torch.Tensor`` on the
same device with the same leading length ``N``; activations are already applied
(scales are standard deviations in metres, opacities in [0, 1], colours in
[0, 1]). Coordinates are metres with z up.

Batches concatenate scenes and carry an ``offset`` tensor of cumulative counts
(Pointcept's convention): scene ``b`` owns rows ``offset[b-1]:offset[b]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

SH_C0 = 0.28209479177387814  # Y_0^0; colour = SH_C0 * f_dc + 0.5 (INRIA convention)


class SceneFormatError(ValueError):
    """A scene file or array is malformed. The message names the file, the field and what was expected."""

    def __init__(self, path, field: str, problem: str):
        self.path = str(path)
        self.field = field
        self.problem = problem
        super().__init__(f"{self.path}: field '{field}': {problem}")


# Per-Gaussian fields in a fixed order: (name, trailing shape, dtype, required).
PER_GAUSSIAN_FIELDS: tuple[tuple[str, tuple, torch.dtype, bool], ...] = (
    ("means", (3,), torch.float32, True),
    ("quats", (4,), torch.float32, True),
    ("scales", (3,), torch.float32, True),
    ("opacities", (), torch.float32, True),
    ("colors", (3,), torch.float32, True),
    ("sh_rest", None, torch.float32, False),  # (N, K, 3), K in {3, 8, 15}
    ("normals", (3,), torch.float32, False),
    ("semantic", (), torch.int64, False),
    ("instance", (), torch.int64, False),
)


@dataclass
class GaussianScene:
    """A 3D Gaussian Splatting scene.

    Fields (N Gaussians):
      means      (N,3) float32  centres, metres, z up
      quats      (N,4) float32  unit quaternion wxyz with w >= 0
      scales     (N,3) float32  standard deviations in metres (exp-activated)
      opacities  (N,)  float32  in [0,1] (sigmoid-activated)
      colors     (N,3) float32  RGB in [0,1] from the SH DC term
      sh_rest    (N,K,3) float32 or None   higher SH bands, kept for round trips
      normals    (N,3) float32 or None
      semantic   (N,)  int64 or None       class id, -1 = unlabeled
      instance   (N,)  int64 or None       instance id, -1 = none
      class_names list[str] or None        names for semantic ids
      features   dict name -> (feat (M,D) float16/32, index (M,) int64): lifted
                 teacher features for the Gaussians ``index`` (SceneSplat's
                 ``<name>_feat.npy`` + ``<name>_feat_index.npy``)
      name       a human-readable scene id (file stem by default)
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    sh_rest: torch.Tensor | None = None
    normals: torch.Tensor | None = None
    semantic: torch.Tensor | None = None
    instance: torch.Tensor | None = None
    class_names: list[str] | None = None
    features: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    name: str = "scene"

    def __post_init__(self):
        for fname, trailing, dtype, required in PER_GAUSSIAN_FIELDS:
            value = getattr(self, fname)
            if value is None:
                if required:
                    raise SceneFormatError(self.name, fname, "is required")
                continue
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(np.ascontiguousarray(value))
            if not isinstance(value, torch.Tensor):
                raise SceneFormatError(self.name, fname, f"expected a tensor or array, got {type(value).__name__}")
            if value.dtype != dtype:
                value = value.to(dtype)
            setattr(self, fname, value)
        n = self.means.shape[0]
        for fname, trailing, _, _ in PER_GAUSSIAN_FIELDS:
            value = getattr(self, fname)
            if value is None:
                continue
            if value.shape[0] != n:
                raise SceneFormatError(self.name, fname, f"has {value.shape[0]} rows, expected {n} (len(means))")
            if trailing is not None and tuple(value.shape[1:]) != trailing:
                raise SceneFormatError(self.name, fname, f"has shape {tuple(value.shape)}, expected (N, {', '.join(map(str, trailing))})".replace(", )", ")"))
        if self.sh_rest is not None and (self.sh_rest.ndim != 3 or self.sh_rest.shape[2] != 3):
            raise SceneFormatError(self.name, "sh_rest", f"has shape {tuple(self.sh_rest.shape)}, expected (N, K, 3)")
        for key, pair in list(self.features.items()):
            feat, index = pair
            feat = torch.as_tensor(np.asarray(feat)) if isinstance(feat, np.ndarray) else feat
            index = torch.as_tensor(np.asarray(index)).long() if isinstance(index, np.ndarray) else index.long()
            if feat.ndim != 2 or index.ndim != 1 or feat.shape[0] != index.shape[0]:
                raise SceneFormatError(self.name, f"{key}_feat", f"feature {tuple(feat.shape)} and index {tuple(index.shape)} disagree; expected (M, D) and (M,)")
            if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
                raise SceneFormatError(self.name, f"{key}_feat_index", f"indices must lie in [0, {n}), got [{int(index.min())}, {int(index.max())}]")
            self.features[key] = (feat, index)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def sh_degree(self) -> int:
        if self.sh_rest is None:
            return 0
        return {0: 0, 3: 1, 8: 2, 15: 3}.get(int(self.sh_rest.shape[1]), -1)

    def _map_tensors(self, fn) -> "GaussianScene":
        kwargs = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = fn(v)
            kwargs[f.name] = v
        kwargs["features"] = {k: (fn(a), fn(b)) for k, (a, b) in self.features.items()}
        kwargs["class_names"] = list(self.class_names) if self.class_names is not None else None
        return GaussianScene(**kwargs)

    def to(self, device) -> "GaussianScene":
        """Copy of the scene with every tensor on ``device``."""
        return self._map_tensors(lambda t: t.to(device))

    def clone(self) -> "GaussianScene":
        return self._map_tensors(lambda t: t.clone())

    def subset(self, mask) -> "GaussianScene":
        """Scene restricted to ``mask`` (bool of length N, or integer indices), in that order.

        Lifted features are re-indexed: rows whose Gaussian is dropped go away.
        """
        mask = torch.as_tensor(mask, device=self.device)
        if mask.dtype == torch.bool:
            if mask.shape != (len(self),):
                raise ValueError(f"subset mask has shape {tuple(mask.shape)}, expected ({len(self)},)")
            idx = torch.nonzero(mask, as_tuple=False).squeeze(1)
        else:
            idx = mask.long()
        kwargs = {}
        for fname, _, _, _ in PER_GAUSSIAN_FIELDS:
            v = getattr(self, fname)
            kwargs[fname] = v[idx] if v is not None else None
        new_pos = torch.full((len(self),), -1, dtype=torch.long, device=self.device)
        new_pos[idx] = torch.arange(idx.numel(), device=self.device)
        feats = {}
        for key, (feat, index) in self.features.items():
            mapped = new_pos[index.to(self.device)]
            keep = mapped >= 0
            feats[key] = (feat[keep.to(feat.device)], mapped[keep])
        return GaussianScene(**kwargs, class_names=self.class_names, features=feats, name=self.name)


def collate_scenes(scenes: Sequence[GaussianScene]) -> tuple[GaussianScene, torch.Tensor]:
    """Concatenate scenes into one; return it and ``offset`` (cumulative counts, int64, length B).

    Optional fields survive only if every scene has them. Lifted features are
    concatenated with their indices shifted by each scene's start.
    """
    if not scenes:
        raise ValueError("collate_scenes needs at least one scene")
    counts = torch.tensor([len(s) for s in scenes], dtype=torch.long)
    offset = torch.cumsum(counts, 0)
    starts = offset - counts
    kwargs = {}
    for fname, _, _, _ in PER_GAUSSIAN_FIELDS:
        values = [getattr(s, fname) for s in scenes]
        if any(v is None for v in values):
            kwargs[fname] = None
            continue
        if fname == "sh_rest" and len({v.shape[1] for v in values}) > 1:
            kwargs[fname] = None
            continue
        kwargs[fname] = torch.cat(values, 0)
    common = set.intersection(*(set(s.features) for s in scenes))
    feats = {}
    for key in sorted(common):
        feats[key] = (
            torch.cat([s.features[key][0] for s in scenes], 0),
            torch.cat([s.features[key][1] + int(st) for s, st in zip(scenes, starts)], 0),
        )
    names = scenes[0].class_names
    if any(s.class_names != names for s in scenes):
        names = None
    return GaussianScene(**kwargs, class_names=names, features=feats, name="+".join(s.name for s in scenes)), offset


def offset_to_batch(offset: torch.Tensor) -> torch.Tensor:
    """Batch index per row from cumulative counts: offset [3, 5] -> [0, 0, 0, 1, 1]."""
    counts = torch.diff(offset, prepend=offset.new_zeros(1))
    return torch.repeat_interleave(torch.arange(len(offset), device=offset.device), counts)


def batch_to_offset(batch: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`offset_to_batch` for a sorted batch index."""
    return torch.cumsum(torch.bincount(batch), 0)
