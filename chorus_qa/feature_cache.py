"""Per-scene cache of frozen-encoder features, so Q&A training never re-runs the encoder.

One file per scene: ``<root>/<encoder_hash>/<scene_id>.safetensors`` holding
``features`` [N, C] float16 and ``means`` [N, 3] float32, with the scene id and
encoder hash in the metadata. ``encoder_hash`` identifies the encoder checkpoint
(a hash of its files), so a new checkpoint never reads stale features. Writes are
atomic (temporary file + rename).

Feature sources: ``"raw"`` uses the Gaussian attributes themselves (the 11
encoder input channels: colour, opacity, quaternion, log-scale), which needs no
encoder (tests and smoke runs); ``"oracle-labels"`` uses the ground-truth class of each
Gaussian (one-hot, 64 slots) and its colour: a diagnostic upper bound on what perfect
per-Gaussian semantics give the Q&A model (never a model to release); otherwise a Chorus
encoder checkpoint folder.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from data.atomic import atomic_file

RAW_FEATURES = "raw"
RAW_FEATURE_DIM = 11
ORACLE_FEATURES = "oracle-labels"
ORACLE_CLASS_SLOTS = 64


def encoder_checkpoint_hash(checkpoint: str | os.PathLike) -> str:
    """16 hex digits of SHA-256 over the relative names and bytes of every file of a checkpoint (or "raw" / "oracle-labels")."""
    if str(checkpoint) in (RAW_FEATURES, ORACLE_FEATURES):
        return str(checkpoint)
    root = Path(checkpoint)
    if not root.exists():
        raise FileNotFoundError(f"encoder checkpoint {root}: not found")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root) if root.is_dir() else path.name).encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def raw_gaussian_features(scene) -> Tensor:
    """The encoder's 11 input channels per Gaussian: colour 3, opacity 1, quaternion 4, log-scale 3 -> [N, 11]."""
    log_scale = scene.scales.clamp_min(1e-8).log()
    return torch.cat([scene.colors, scene.opacities[:, None], scene.quats, log_scale], 1).float()


def oracle_label_features(scene) -> Tensor:
    """Ground-truth semantics as features: one-hot class id (64 slots; unlabelled = all zero) | colour -> [N, 67]."""
    if scene.semantic is None:
        raise ValueError(f"{scene.name or 'scene'}: oracle-labels features need per-Gaussian semantic labels")
    labels = scene.semantic.long()
    if int(labels.max()) >= ORACLE_CLASS_SLOTS:
        raise ValueError(f"{scene.name or 'scene'}: class id {int(labels.max())} >= {ORACLE_CLASS_SLOTS} oracle slots")
    onehot = torch.zeros(len(labels), ORACLE_CLASS_SLOTS)
    known = labels >= 0
    onehot[known.nonzero().squeeze(1), labels[known]] = 1.0
    return torch.cat([onehot, scene.colors.float()], 1)


class SceneFeatureSource:
    """Computes (features [N, C], means [N, 3]) for a scene: raw attributes or a frozen Chorus encoder."""

    def __init__(self, encoder: str = RAW_FEATURES, device: str = "cpu"):
        self.encoder_ref = str(encoder)
        self.device = device
        self.encoder_hash = encoder_checkpoint_hash(encoder)
        self._predictor = None
        if self.encoder_ref == RAW_FEATURES:
            self.out_dim = RAW_FEATURE_DIM
        elif self.encoder_ref == ORACLE_FEATURES:
            self.out_dim = ORACLE_CLASS_SLOTS + 3
        else:
            from encoder import ChorusEncoder, EncoderPredictor

            enc = ChorusEncoder.from_pretrained(self.encoder_ref)
            for p in enc.parameters():
                p.requires_grad_(False)
            self._predictor = EncoderPredictor(enc, device=device)
            self.out_dim = int(self._predictor.out_dim)

    @property
    def predictor(self):
        """The EncoderPredictor (None for raw features)."""
        return self._predictor

    def __call__(self, scene) -> tuple[Tensor, Tensor]:
        if self.encoder_ref == ORACLE_FEATURES:
            return oracle_label_features(scene), scene.means.float()
        if self._predictor is None:
            return raw_gaussian_features(scene), scene.means.float()
        feats = self._predictor.encode(scene, half=True)
        return feats, scene.means.float().cpu()


_SAFE_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")


class FeatureCache:
    """Read/write per-scene features under ``root/encoder_hash``."""

    def __init__(self, root: str | os.PathLike, encoder_hash: str):
        if not _SAFE_ID.match(encoder_hash):
            raise ValueError(f"FeatureCache: encoder_hash {encoder_hash!r} must be letters, digits, '_', '-' or '.'")
        self.root = Path(root)
        self.encoder_hash = encoder_hash
        self.folder = self.root / encoder_hash

    def path(self, scene_id: str) -> Path:
        if not _SAFE_ID.match(scene_id) or scene_id in (".", ".."):
            raise ValueError(f"FeatureCache: scene id {scene_id!r} is not a safe file name")
        return self.folder / f"{scene_id}.safetensors"

    def load_tensors(self, scene_id: str) -> dict[str, Tensor] | None:
        """All tensors stored for ``scene_id`` (metadata checked), or None when not cached."""
        from safetensors import safe_open

        path = self.path(scene_id)
        if not path.is_file():
            return None
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("scene_id") != scene_id or meta.get("encoder_hash") != self.encoder_hash:
                raise ValueError(f"{path}: metadata {meta} does not match scene {scene_id!r} / encoder {self.encoder_hash!r}")
            return {k: f.get_tensor(k) for k in f.keys()}

    def save_tensors(self, scene_id: str, tensors: dict[str, Tensor]) -> Path:
        """Atomically store ``tensors`` (contiguous CPU copies) for ``scene_id``."""
        from safetensors.torch import save_file

        path = self.path(scene_id)
        with atomic_file(path) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                      metadata={"scene_id": scene_id, "encoder_hash": self.encoder_hash})
        return path

    def load(self, scene_id: str) -> tuple[Tensor, Tensor] | None:
        """(features [N, C] float16, means [N, 3] float32), or None when not cached."""
        tensors = self.load_tensors(scene_id)
        if tensors is None:
            return None
        features, means = tensors.get("features"), tensors.get("means")
        if features is None or means is None or features.ndim != 2 or means.shape != (features.shape[0], 3):
            shapes = {k: tuple(v.shape) for k, v in tensors.items()}
            raise ValueError(f"{self.path(scene_id)}: tensors {shapes}; expected features (N, C) and means (N, 3)")
        return features, means

    def save(self, scene_id: str, features: Tensor, means: Tensor) -> Path:
        if features.ndim != 2 or means.shape != (features.shape[0], 3):
            raise ValueError(f"FeatureCache.save({scene_id!r}): features {tuple(features.shape)} and means {tuple(means.shape)}; expected (N, C) and (N, 3)")
        return self.save_tensors(scene_id, {"features": features.to(torch.float16), "means": means.float()})

    def get_or_compute(self, scene_id: str, compute: Callable[[], tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Cached (features float16, means) of ``scene_id``, calling ``compute()`` and storing it on a miss."""
        cached = self.load(scene_id)
        if cached is not None:
            return cached
        features, means = compute()
        self.save(scene_id, features, means)
        return self.load(scene_id)
