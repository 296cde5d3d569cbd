"""Covering surface samples with Gaussians that look like a 3DGS reconstruction.

Pure numpy functions:

- ``frame_to_quat``: rotation matrices (columns t1, t2, n) -> unit quaternions wxyz, w >= 0.
- ``surface_splats``: flat, surface-aligned anisotropic Gaussians (two tangential
  standard deviations around the sample spacing, a thin one along the normal),
  with opacity variation (mostly opaque, a share of faint ones).
- ``floaters``: a sprinkle of large, faint Gaussians displaced off the surfaces,
  labelled like the surface they came from (as reconstruction floaters are).
- ``material_colors``: base colour -> per-sample colour with material texture
  (wood grain, fabric noise, metal/ceramic highlights) and baked shading.
"""

from __future__ import annotations

import numpy as np

LIGHT_DIR = np.array([0.3, 0.2, 1.0]) / np.linalg.norm([0.3, 0.2, 1.0])


def frame_to_quat(t1: np.ndarray, t2: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Quaternions (N,4) wxyz (w >= 0) of rotation matrices whose columns are t1, t2, n (each (N,3), orthonormal)."""
    R = np.stack([t1, t2, n], axis=2)  # (N,3,3), columns
    m00, m11, m22 = R[:, 0, 0], R[:, 1, 1], R[:, 2, 2]
    tr = m00 + m11 + m22
    q = np.empty((R.shape[0], 4))
    # Shepperd: pick the largest of (w, x, y, z) for a stable square root.
    cand = np.stack([tr, m00, m11, m22], 1)
    k = np.argmax(cand, axis=1)
    for case in range(4):
        m = k == case
        if not m.any():
            continue
        r = R[m]
        if case == 0:
            s = np.sqrt(1.0 + tr[m]) * 2
            q[m] = np.stack([0.25 * s, (r[:, 2, 1] - r[:, 1, 2]) / s, (r[:, 0, 2] - r[:, 2, 0]) / s, (r[:, 1, 0] - r[:, 0, 1]) / s], 1)
        elif case == 1:
            s = np.sqrt(1.0 + r[:, 0, 0] - r[:, 1, 1] - r[:, 2, 2]) * 2
            q[m] = np.stack([(r[:, 2, 1] - r[:, 1, 2]) / s, 0.25 * s, (r[:, 0, 1] + r[:, 1, 0]) / s, (r[:, 0, 2] + r[:, 2, 0]) / s], 1)
        elif case == 2:
            s = np.sqrt(1.0 + r[:, 1, 1] - r[:, 0, 0] - r[:, 2, 2]) * 2
            q[m] = np.stack([(r[:, 0, 2] - r[:, 2, 0]) / s, (r[:, 0, 1] + r[:, 1, 0]) / s, 0.25 * s, (r[:, 1, 2] + r[:, 2, 1]) / s], 1)
        else:
            s = np.sqrt(1.0 + r[:, 2, 2] - r[:, 0, 0] - r[:, 1, 1]) * 2
            q[m] = np.stack([(r[:, 1, 0] - r[:, 0, 1]) / s, (r[:, 0, 2] + r[:, 2, 0]) / s, (r[:, 1, 2] + r[:, 2, 1]) / s, 0.25 * s], 1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    return q


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(N,4) wxyz -> (N,3,3) rotation matrices (reference for tests)."""
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], 1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], 1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1),
    ], 1)


def surface_splats(points: np.ndarray, normals: np.ndarray, tangents: np.ndarray, spacing: float,
                   rng: np.random.Generator, faint_share: float = 0.1, base_opacity: float = 1.0):
    """Flat Gaussians on surface samples.

    points, normals, tangents: (N,3) world; spacing: mean distance between samples (m).
    Returns means (N,3), quats (N,4), scales (N,3), opacities (N,).
    The third scale axis is the surface normal (thin), the first two lie in the tangent plane.
    """
    n = points.shape[0]
    nrm = normals / (np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12)
    t = tangents - (tangents * nrm).sum(1, keepdims=True) * nrm
    t /= np.linalg.norm(t, axis=1, keepdims=True) + 1e-12
    b = np.cross(nrm, t)
    ang = rng.uniform(0, np.pi, n)[:, None]  # random in-plane orientation of the ellipse
    t1 = np.cos(ang) * t + np.sin(ang) * b
    t2 = np.cross(nrm, t1)
    quats = frame_to_quat(t1, t2, nrm)
    s1 = spacing * rng.uniform(0.8, 1.4, n)
    s2 = s1 * rng.uniform(0.5, 1.0, n)
    s3 = spacing * rng.uniform(0.02, 0.08, n)
    scales = np.stack([s1, s2, s3], 1)
    means = points + nrm * rng.normal(0.0, spacing * 0.04, (n, 1))
    faint = rng.random(n) < faint_share
    opac = np.where(faint, rng.uniform(0.05, 0.45, n), rng.beta(6.0, 1.3, n))
    opac = np.clip(opac * base_opacity, 0.01, 0.999)
    return means, quats, scales, opac


def floaters(means: np.ndarray, normals: np.ndarray, colors: np.ndarray, share: float, spacing: float,
             rng: np.random.Generator):
    """Pick ``share`` of the Gaussians and emit faint, blobby copies displaced off the surface.

    Returns (source_index (M,), means (M,3), quats (M,4), scales (M,3), opacities (M,), colors (M,3)).
    """
    m = int(round(share * means.shape[0]))
    src = rng.choice(means.shape[0], size=m, replace=False) if m else np.zeros(0, int)
    off = normals[src] * np.abs(rng.normal(0.0, 0.06, (m, 1))) + rng.normal(0.0, 0.02, (m, 3))
    q = rng.normal(size=(m, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-12
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    sc = spacing * rng.uniform(0.8, 3.0, (m, 3))
    op = rng.uniform(0.02, 0.2, m)
    col = np.clip(0.6 * colors[src] + 0.4 * rng.uniform(0.3, 0.8, (m, 1)), 0, 1)
    return src, means[src] + off, q, sc, op, col


def material_colors(base_rgb: np.ndarray, material: str, local: np.ndarray, normals: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """Per-sample RGB in [0,1] (N,3): ``base_rgb`` (3,) in [0,1] textured by ``material`` and shaded.

    local: (N,3) positions in the object frame (wood grain follows them); normals: (N,3) world.
    """
    n = local.shape[0]
    base = np.broadcast_to(np.asarray(base_rgb, float), (n, 3))
    bright = np.ones(n)
    spec = np.zeros(n)
    if material == "wood":
        phase = local[:, 0] * 23.0 + 1.5 * np.sin(local[:, 1] * 9.0 + local[:, 2] * 5.0)
        bright = 1.0 + 0.12 * np.sin(phase) + rng.normal(0, 0.03, n)
    elif material in ("fabric", "leather"):
        bright = 1.0 + rng.normal(0, 0.07 if material == "fabric" else 0.05, n)
        if material == "leather":
            spec = 0.06 * np.clip(normals @ LIGHT_DIR, 0, 1) ** 6
    elif material == "metal":
        bright = 1.0 + rng.normal(0, 0.04, n)
        spec = 0.22 * np.clip(normals @ LIGHT_DIR, 0, 1) ** 12
    elif material in ("ceramic", "plastic", "glass"):
        bright = 1.0 + rng.normal(0, 0.025, n)
        spec = 0.12 * np.clip(normals @ LIGHT_DIR, 0, 1) ** 16
    else:  # paper and anything else: faint noise
        bright = 1.0 + rng.normal(0, 0.03, n)
    shade = 0.82 + 0.18 * (normals @ LIGHT_DIR)
    rgb = base * (bright * shade)[:, None] + spec[:, None]
    return np.clip(rgb, 0.0, 1.0)
