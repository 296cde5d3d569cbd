"""Encoder input channels from a scene, pure functions.

- ``"gaussian"`` (11): colour 3 (clipped to [0, 1]), opacity 1, quaternion 4
  (unit, wxyz, w >= 0), scale 3 (std-devs in metres, clipped at 1.5 like the
  ScanNet loader of the paper). The centre is used for voxelization only.
- ``"point"`` (9): xyz (centred on the scene's mean), colour 3, unit normal 3
  (estimated by kNN PCA when the scene has none).
"""

from __future__ import annotations

import numpy as np
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
    normals = scene.normals if scene.normals is not None else estimate_normals(scene.means)
    centred = scene.means - scene.means.mean(0, keepdim=True)
    return torch.cat([centred, scene.colors.clamp(0.0, 1.0), normals.to(scene.means)], 1).float()


def scene_to_input(scene: GaussianScene, variant: str = "gaussian") -> Tensor:
    """Encoder input features of a scene: [N, 11] for ``"gaussian"``, [N, 9] for ``"point"``."""
    if variant == "gaussian":
        return gaussian_channels(scene)
    if variant == "point":
        return point_channels(scene)
    raise ValueError(f"scene_to_input: variant {variant!r} unknown, expected 'gaussian' or 'point'")


def estimate_normals(means: Tensor, k: int = 16, chunk: int = 200_000) -> Tensor:
    """Unit normals by PCA over the k nearest neighbours (smallest-eigenvalue eigenvector), oriented to +z.

    means: [N, 3] -> [N, 3] float32 on the same device. Sign convention: n_z >= 0 (ties: n_y, then n_x).
    """
    from scipy.spatial import cKDTree

    pts = means.detach().cpu().double().numpy()
    n = pts.shape[0]
    if n < 3:
        out = np.zeros((n, 3))
        out[:, 2] = 1.0
        return torch.from_numpy(out).float().to(means.device)
    k = min(k, n)
    tree = cKDTree(pts)
    normals = np.empty((n, 3))
    for lo in range(0, n, chunk):
        _, idx = tree.query(pts[lo : lo + chunk], k=k)
        nb = pts[idx]  # [n, k, 3]
        nb = nb - nb.mean(1, keepdims=True)
        cov = np.einsum("nki,nkj->nij", nb, nb)
        _, vecs = np.linalg.eigh(cov)
        normals[lo : lo + chunk] = vecs[:, :, 0]
    flip = normals[:, 2] < 0
    flat = normals[:, 2] == 0
    flip |= flat & (normals[:, 1] < 0)
    flip |= flat & (normals[:, 1] == 0) & (normals[:, 0] < 0)
    normals[flip] *= -1
    return torch.from_numpy(normals).float().to(means.device)
