"""Encoder input channels from a scene, pure functions.

- ``"gaussian"`` (11): colour 3 (clipped to [0, 1]), opacity 1, quaternion 4
  (unit, wxyz, w >= 0), scale 3 (std-devs in metres, clipped at 1.5 like the
  ScanNet loader of the paper). The centre is used for voxelization only.
- ``"point"`` (9): xyz (centred on the scene's mean), colour 3, unit normal 3
  (estimated by kNN PCA with ``data.geometry.estimate_normals`` when the scene has none).
"""

from __future__ import annotations

import torch
from torch import Tensor

from data.scene import GaussianScene

SCALE_CLIP = 1.5  # metres


def gaussian_channels(scene: GaussianScene) -> Tensor:
    """[N, 11]: colour, opacity, quaternion, scale."""
    quats = torch.nn.functional.normalize(scene.quats, dim=1)
    quats = torch.where(quats[:, :1] < 0, -quats, quats)
    return torch.cat(
        [scene.colors.clamp(0.0, 1.0), scene.opacities[:, None], quats, scene.scales.clamp(0.0, SCALE_CLIP)], 1
    ).float()


def point_channels(scene: GaussianScene) -> Tensor:
    """[N, 9]: centred xyz, colour, normal."""
    if scene.normals is not None:
        normals = scene.normals
    else:
        from data.geometry import estimate_normals  # kNN PCA, oriented towards the scene centroid

        normals = torch.from_numpy(estimate_normals(scene.means.detach().cpu().numpy()))
    centred = scene.means - scene.means.mean(0, keepdim=True)
    return torch.cat([centred, scene.colors.clamp(0.0, 1.0), normals.to(scene.means)], 1).float()


def scene_to_input(scene: GaussianScene, variant: str = "gaussian") -> Tensor:
    """Encoder input features of a scene: [N, 11] for ``"gaussian"``, [N, 9] for ``"point"``."""
    if variant == "gaussian":
        return gaussian_channels(scene)
    if variant == "point":
        return point_channels(scene)
    raise ValueError(f"scene_to_input: variant {variant!r} unknown, expected 'gaussian' or 'point'")
