"""Training augmentations for Gaussian scenes: pure functions ``scene, generator -> scene``.

Geometry stays consistent: a rotation R maps means and normals by R and
quaternions by ``q_R * q`` so every covariance becomes ``R Sigma R^T``; a
mirror flip of axis a negates the other two vector components of the
quaternion (``F R F`` is a proper rotation for a reflection F). Higher SH bands
are not rotated and therefore dropped (``sh_rest = None``; the encoder does not
read them). Point order is kept by everything except :func:`crop`, which goes
through :meth:`GaussianScene.subset` so lifted-feature indices stay valid.

The two 3DGS-aware augmentations (Chorus):
- :func:`covariance_position_noise` moves low-opacity splats by noise drawn
  from their own covariance (``mu += R diag(s) eps``);
- :func:`inflate_covariance` multiplies scales by a factor in [1, 3] (a blur).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from data import GaussianScene

# ---------------------------------------------------------------- quaternion math


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of wxyz quaternions: a [..., 4] * b [..., 4] -> [..., 4]."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        -1,
    )


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """wxyz quaternions [..., 4] (normalised here) -> rotation matrices [..., 3, 3]."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )
    return torch.stack(rows, -1).reshape(*q.shape[:-1], 3, 3)


def axis_angle_quat(axis: int, angle: float) -> torch.Tensor:
    """Quaternion [4] of a rotation by ``angle`` radians about coordinate axis 0/1/2."""
    q = torch.zeros(4)
    q[0] = math.cos(angle / 2)
    q[1 + axis] = math.sin(angle / 2)
    return q


def canonical_quats(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions [N, 4] with w >= 0 (q and -q are the same rotation)."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.where(q[:, :1] < 0, -q, q)


def covariances(scene: GaussianScene) -> torch.Tensor:
    """Sigma = R diag(s^2) R^T per Gaussian: [N, 3, 3]."""
    r = quat_to_rotmat(scene.quats)
    return r @ torch.diag_embed(scene.scales**2) @ r.transpose(-1, -2)


def _uniform(gen: torch.Generator, lo: float = 0.0, hi: float = 1.0, size=()) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(size, generator=gen)


# ---------------------------------------------------------------- deterministic transforms


def rotate(scene: GaussianScene, q_rot: torch.Tensor, center: torch.Tensor | None = None) -> GaussianScene:
    """Rotate the scene by the wxyz quaternion ``q_rot`` [4] about ``center`` [3] (default origin)."""
    q_rot = q_rot.to(scene.means)
    r = quat_to_rotmat(q_rot)
    c = torch.zeros(3, dtype=scene.means.dtype, device=scene.device) if center is None else center.to(scene.means)
    means = (scene.means - c) @ r.T + c
    quats = canonical_quats(quat_multiply(q_rot.expand_as(scene.quats), scene.quats))
    normals = scene.normals @ r.T if scene.normals is not None else None
    return replace(scene, means=means, quats=quats, normals=normals, sh_rest=None, features=dict(scene.features))


def flip(scene: GaussianScene, axis: int, center: torch.Tensor | None = None) -> GaussianScene:
    """Mirror the scene across the plane ``x_axis = center_axis``."""
    c = 0.0 if center is None else float(center[axis])
    means = scene.means.clone()
    means[:, axis] = 2 * c - means[:, axis]
    sign = torch.ones(4, dtype=scene.quats.dtype, device=scene.device)
    sign[1:] = -1.0
    sign[1 + axis] = 1.0
    quats = canonical_quats(scene.quats * sign)
    normals = None
    if scene.normals is not None:
        normals = scene.normals.clone()
        normals[:, axis] = -normals[:, axis]
    return replace(scene, means=means, quats=quats, normals=normals, sh_rest=None, features=dict(scene.features))


def scale_scene(scene: GaussianScene, factor: float, center: torch.Tensor | None = None) -> GaussianScene:
    """Uniformly scale positions and Gaussian extents by ``factor`` about ``center``."""
    c = torch.zeros(3, dtype=scene.means.dtype, device=scene.device) if center is None else center.to(scene.means)
    return replace(scene, means=(scene.means - c) * factor + c, scales=scene.scales * factor, features=dict(scene.features))


def crop(scene: GaussianScene, max_points: int, center: torch.Tensor, mode: str = "sphere") -> GaussianScene:
    """Keep the ``max_points`` Gaussians closest to ``center`` [3] (L2 for "sphere", L-inf for "box").

    Scenes with at most ``max_points`` Gaussians are returned unchanged. Kept rows keep their
    original relative order; lifted features are re-indexed.
    """
    if mode not in ("sphere", "box"):
        raise ValueError(f"crop: mode={mode!r}, expected 'sphere' or 'box'")
    if max_points <= 0:
        raise ValueError(f"crop: max_points={max_points}, expected > 0")
    if len(scene) <= max_points:
        return scene
    d = scene.means - center.to(scene.means)
    dist = d.norm(dim=1) if mode == "sphere" else d.abs().amax(dim=1)
    keep = torch.topk(dist, max_points, largest=False).indices.sort().values
    return scene.subset(keep)


# ---------------------------------------------------------------- random augmentations


def random_rotate_z(scene: GaussianScene, gen: torch.Generator, p: float = 0.5) -> GaussianScene:
    """With probability p rotate about the vertical axis through the scene centroid by U(-pi, pi)."""
    if _uniform(gen) >= p:
        return scene
    angle = float(_uniform(gen, -math.pi, math.pi))
    return rotate(scene, axis_angle_quat(2, angle), scene.means.mean(0))


def random_tilt(scene: GaussianScene, gen: torch.Generator, max_angle: float = math.pi / 64) -> GaussianScene:
    """Rotate about x then y by U(-max_angle, max_angle) each, about the centroid."""
    ax = float(_uniform(gen, -max_angle, max_angle))
    ay = float(_uniform(gen, -max_angle, max_angle))
    q = quat_multiply(axis_angle_quat(1, ay), axis_angle_quat(0, ax))
    return rotate(scene, q, scene.means.mean(0))


def random_scale(scene: GaussianScene, gen: torch.Generator, lo: float = 0.9, hi: float = 1.1) -> GaussianScene:
    return scale_scene(scene, float(_uniform(gen, lo, hi)), scene.means.mean(0))


def random_flip(scene: GaussianScene, gen: torch.Generator, p: float = 0.5) -> GaussianScene:
    """Mirror x and y independently, each with probability p, about the centroid."""
    c = scene.means.mean(0)
    for axis in (0, 1):
        if _uniform(gen) < p:
            scene = flip(scene, axis, c)
    return scene


def jitter(scene: GaussianScene, gen: torch.Generator, sigma: float = 0.005, clip: float = 0.02) -> GaussianScene:
    noise = (sigma * torch.randn(scene.means.shape, generator=gen)).clamp(-clip, clip).to(scene.means)
    return replace(scene, means=scene.means + noise, features=dict(scene.features))


def covariance_position_noise(
    scene: GaussianScene, gen: torch.Generator, p: float = 0.5, opacity_below: float = 0.5, strength: float = 1.0
) -> GaussianScene:
    """With probability p move every splat of opacity < ``opacity_below`` by ``strength * R diag(s) eps``.

    Faint splats are where optimisation leaves positions least constrained; their
    own covariance says how far they could plausibly sit.
    """
    if _uniform(gen) >= p:
        return scene
    eps = torch.randn(scene.means.shape, generator=gen).to(scene.means)
    r = quat_to_rotmat(scene.quats)
    step = strength * (r @ (scene.scales * eps).unsqueeze(-1)).squeeze(-1)
    faint = (scene.opacities < opacity_below).unsqueeze(1)
    return replace(scene, means=scene.means + torch.where(faint, step, torch.zeros_like(step)), features=dict(scene.features))


def inflate_covariance(scene: GaussianScene, gen: torch.Generator, p: float = 0.3, max_factor: float = 3.0) -> GaussianScene:
    """With probability p multiply each Gaussian's scales by its own factor U(1, max_factor)."""
    if _uniform(gen) >= p:
        return scene
    factor = _uniform(gen, 1.0, max_factor, (len(scene), 1)).to(scene.scales)
    return replace(scene, scales=scene.scales * factor, features=dict(scene.features))


@dataclass
class AugmentConfig:
    """Probabilities and ranges of the training augmentations (paper defaults)."""

    rotate_z_p: float = 0.5
    tilt_max: float = math.pi / 64
    scale_min: float = 0.9
    scale_max: float = 1.1
    flip_p: float = 0.5
    jitter_sigma: float = 0.005
    jitter_clip: float = 0.02
    position_noise_p: float = 0.5
    position_noise_opacity_below: float = 0.5
    inflate_p: float = 0.3
    inflate_max: float = 3.0
    max_points: int = 0  # 0 = no crop
    crop_mode: str = "sphere"

    def __post_init__(self):
        for name in ("rotate_z_p", "flip_p", "position_noise_p", "inflate_p"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"AugmentConfig.{name}={v}: expected a probability in [0, 1]")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"AugmentConfig.scale_min/max={self.scale_min}/{self.scale_max}: expected 0 < min <= max")
        if self.inflate_max < 1.0:
            raise ValueError(f"AugmentConfig.inflate_max={self.inflate_max}: expected >= 1")
        if self.max_points < 0:
            raise ValueError(f"AugmentConfig.max_points={self.max_points}: expected >= 0")
        if self.crop_mode not in ("sphere", "box"):
            raise ValueError(f"AugmentConfig.crop_mode={self.crop_mode!r}: expected 'sphere' or 'box'")


def random_crop(scene: GaussianScene, gen: torch.Generator, max_points: int, mode: str = "sphere") -> GaussianScene:
    """Crop to ``max_points`` around a randomly chosen Gaussian."""
    if max_points <= 0 or len(scene) <= max_points:
        return scene
    i = int(torch.randint(len(scene), (1,), generator=gen))
    return crop(scene, max_points, scene.means[i], mode)


def augment_scene(scene: GaussianScene, cfg: AugmentConfig, gen: torch.Generator) -> GaussianScene:
    """The full training pipeline: crop, rotate z, tilt, scale, flip, jitter, 3DGS-aware noise and blur."""
    scene = random_crop(scene, gen, cfg.max_points, cfg.crop_mode)
    scene = random_rotate_z(scene, gen, cfg.rotate_z_p)
    if cfg.tilt_max > 0:
        scene = random_tilt(scene, gen, cfg.tilt_max)
    scene = random_scale(scene, gen, cfg.scale_min, cfg.scale_max)
    scene = random_flip(scene, gen, cfg.flip_p)
    if cfg.jitter_sigma > 0:
        scene = jitter(scene, gen, cfg.jitter_sigma, cfg.jitter_clip)
    scene = covariance_position_noise(scene, gen, cfg.position_noise_p, cfg.position_noise_opacity_below)
    scene = inflate_covariance(scene, gen, cfg.inflate_p, cfg.inflate_max)
    return scene
