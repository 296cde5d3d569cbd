"""Pinhole cameras (OpenCV convention) and automatic view sampling inside a scene.

Convention: camera x points right, y down, z forward (the view direction);
``world_to_cam`` maps homogeneous world points to camera space; ``K`` maps
camera points to pixels, where pixel ``(row, col)`` has its centre at
``(u, v) = (col + 0.5, row + 0.5)`` (as in gsplat and 3DGS).

The world is z-up (see :class:`data.scene.GaussianScene`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .scene import GaussianScene


@dataclass
class Camera:
    """A pinhole camera.

    K: Tensor             # [3, 3] intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], pixels
    world_to_cam: Tensor  # [4, 4] rigid transform, world -> camera (OpenCV axes)
    width: int            # image width in pixels
    height: int           # image height in pixels
    near: float           # Gaussians with camera depth <= near are culled
    far: float            # Gaussians with camera depth >= far are culled
    """

    K: Tensor
    world_to_cam: Tensor
    width: int
    height: int
    near: float = 0.01
    far: float = 1000.0

    def __post_init__(self):
        self.K = _as_float_tensor(self.K, "K")
        self.world_to_cam = _as_float_tensor(self.world_to_cam, "world_to_cam")
        if tuple(self.K.shape) != (3, 3):
            raise ValueError(f"Camera field 'K': shape {tuple(self.K.shape)}, expected (3, 3)")
        if tuple(self.world_to_cam.shape) != (4, 4):
            raise ValueError(f"Camera field 'world_to_cam': shape {tuple(self.world_to_cam.shape)}, expected (4, 4)")
        if not bool(torch.isfinite(self.K).all()) or not bool(torch.isfinite(self.world_to_cam).all()):
            raise ValueError("Camera fields 'K'/'world_to_cam' contain NaN or inf")
        if float(self.K[0, 0]) <= 0 or float(self.K[1, 1]) <= 0:
            raise ValueError(f"Camera field 'K': focal lengths must be positive, got fx={float(self.K[0, 0])}, fy={float(self.K[1, 1])}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if int(value) != value or int(value) <= 0:
                raise ValueError(f"Camera field '{name}': got {value!r}, expected a positive integer")
            setattr(self, name, int(value))
        if not (0 < self.near < self.far):
            raise ValueError(f"Camera fields 'near'/'far': got near={self.near}, far={self.far}, expected 0 < near < far")
        rot = self.world_to_cam[:3, :3].double()
        if not torch.allclose(rot @ rot.T, torch.eye(3, dtype=rot.dtype, device=rot.device), atol=1e-4):
            raise ValueError("Camera field 'world_to_cam': rotation block is not orthonormal")

    # ------------------------------------------------------------------ helpers
    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def cam_to_world(self) -> Tensor:
        """[4, 4] inverse of ``world_to_cam`` (columns: right, down, forward, position)."""
        rot = self.world_to_cam[:3, :3]
        out = torch.eye(4, dtype=self.world_to_cam.dtype, device=self.world_to_cam.device)
        out[:3, :3] = rot.T
        out[:3, 3] = -rot.T @ self.world_to_cam[:3, 3]
        return out

    @property
    def position(self) -> Tensor:
        """[3] camera centre in world coordinates."""
        return self.cam_to_world[:3, 3]

    @property
    def forward(self) -> Tensor:
        """[3] unit view direction in world coordinates (camera +z)."""
        return self.world_to_cam[2, :3]

    def to(self, device=None, dtype=None) -> "Camera":
        return Camera(self.K.to(device=device, dtype=dtype), self.world_to_cam.to(device=device, dtype=dtype),
                      self.width, self.height, self.near, self.far)

    def world_to_camera_points(self, points: Tensor) -> Tensor:
        """points [M, 3] world -> [M, 3] camera coordinates."""
        w2c = self.world_to_cam.to(points)
        return points @ w2c[:3, :3].T + w2c[:3, 3]

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """points [M, 3] world -> (uv [M, 2] pixel coordinates, depth [M] camera z)."""
        pc = self.world_to_camera_points(points)
        z = pc[:, 2]
        K = self.K.to(points)
        uv = torch.stack([K[0, 0] * pc[:, 0] / z + K[0, 2], K[1, 1] * pc[:, 1] / z + K[1, 2]], -1)
        return uv, z


def _as_float_tensor(value, name: str) -> Tensor:
    if isinstance(value, np.ndarray) or isinstance(value, (list, tuple)):
        value = torch.as_tensor(np.asarray(value, dtype=np.float32))
    if not isinstance(value, Tensor):
        raise ValueError(f"Camera field '{name}': expected a tensor or array, got {type(value).__name__}")
    if not value.is_floating_point():
        value = value.float()
    return value


def intrinsics_from_fov(width: int, height: int, fov_deg: float) -> Tensor:
    """[3, 3] K with horizontal field of view ``fov_deg``, square pixels, principal point at the image centre."""
    if not 0 < fov_deg < 180:
        raise ValueError(f"fov_deg: got {fov_deg}, expected a horizontal field of view in (0, 180) degrees")
    fx = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[fx, 0.0, width / 2], [0.0, fx, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float32)


def look_at(eye, target, up=(0, 0, 1), *, width: int = 320, height: int = 240, fov_deg: float = 70.0,
            near: float = 0.01, far: float = 1000.0) -> Camera:
    """A camera at ``eye`` looking at ``target``; ``up`` is the world direction that appears up in the image.

    ``fov_deg`` is the horizontal field of view.
    """
    eye_v = np.asarray(eye, dtype=np.float64).reshape(3)
    fwd = np.asarray(target, dtype=np.float64).reshape(3) - eye_v
    if np.linalg.norm(fwd) < 1e-12:
        raise ValueError(f"look_at: eye {eye_v.tolist()} and target coincide")
    fwd /= np.linalg.norm(fwd)
    up_v = np.asarray(up, dtype=np.float64).reshape(3)
    right = np.cross(fwd, up_v)
    if np.linalg.norm(right) < 1e-9:  # looking along `up`: any perpendicular will do
        alt = np.array([1.0, 0.0, 0.0]) if abs(fwd[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        right = np.cross(fwd, alt)
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    rot = np.stack([right, down, fwd])  # rows: camera axes in world coordinates
    w2c = np.eye(4)
    w2c[:3, :3] = rot
    w2c[:3, 3] = -rot @ eye_v
    return Camera(intrinsics_from_fov(width, height, fov_deg), torch.from_numpy(w2c).float(), width, height, near, far)


def _camera_from_yaw_pitch(eye: np.ndarray, yaw: float, pitch: float, **kw) -> Camera:
    direction = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    return look_at(eye, eye + direction, (0, 0, 1), **kw)


def _farthest_point_order(points: np.ndarray, first: int):
    """Yield indices of ``points``, each next one farthest from those already yielded (lazy farthest-point sampling)."""
    yield first
    dist = np.linalg.norm(points - points[first], axis=1)
    for _ in range(len(points) - 1):
        nxt = int(np.argmax(dist))
        if dist[nxt] <= 0:
            return
        yield nxt
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))


def _enclosed(candidates: np.ndarray, wall_xy: np.ndarray, n_sectors: int = 8, min_sectors: int = 7) -> np.ndarray:
    """[M] bool: horizontal rays from each candidate hit scene content in at least ``min_sectors`` of ``n_sectors``."""
    out = np.zeros(len(candidates), dtype=bool)
    for i in range(0, len(candidates), 256):
        d = wall_xy[None, :, :] - candidates[i:i + 256, None, :]
        sector = ((np.arctan2(d[..., 1], d[..., 0]) + math.pi) / (2 * math.pi) * n_sectors).astype(np.int64) % n_sectors
        hit = np.zeros((sector.shape[0], n_sectors), dtype=bool)
        rows = np.repeat(np.arange(sector.shape[0]), sector.shape[1])
        hit[rows, sector.ravel()] = True
        out[i:i + 256] = hit.sum(1) >= min_sectors
    return out


def central_view_depth(camera: Camera, scene: GaussianScene, central_fraction: float = 0.5, downscale: int = 4) -> float:
    """Median rendered depth over the central part of the view (pixels with alpha < 0.5 count as infinitely far).

    Renders a ``downscale`` times smaller image with the same field of view. Rendering (rather than a
    median over projected centres) sees a close wall even when its splats are sparse and large.
    """
    from .render import rasterize  # render imports this module

    width, height = max(camera.width // downscale, 8), max(camera.height // downscale, 6)
    K = camera.K.clone()
    K[0] *= width / camera.width
    K[1] *= height / camera.height
    small = Camera(K, camera.world_to_cam, width, height, camera.near, camera.far)
    with torch.no_grad():
        out = rasterize(scene, small.to(scene.device), backend="torch")
    h0, w0 = int(height * (1 - central_fraction) / 2), int(width * (1 - central_fraction) / 2)
    depth = out.depth[h0:height - h0, w0:width - w0]
    alpha = out.alpha[h0:height - h0, w0:width - w0]
    depth = torch.where(alpha >= 0.5, depth, torch.full_like(depth, math.inf))
    return float(depth.double().flatten().median())


def depth_proxy(scene: GaussianScene, max_gaussians: int = 20000, seed: int = 0) -> GaussianScene:
    """A cheaper stand-in for depth tests: a random subset of at most ``max_gaussians`` splats whose scales grow
    by sqrt(N / M), so surfaces stay covered (splats on surfaces share the area between them)."""
    n = len(scene)
    if n <= max_gaussians:
        return scene
    keep = torch.from_numpy(np.sort(np.random.default_rng(seed).permutation(n)[:max_gaussians])).to(scene.device)
    sub = GaussianScene(means=scene.means.detach()[keep], quats=scene.quats.detach()[keep],
                        scales=scene.scales.detach()[keep] * math.sqrt(n / max_gaussians),
                        opacities=scene.opacities.detach()[keep], colors=scene.colors.detach()[keep], name=scene.name)
    return sub


MIN_ROOM_EXTENT = 1.5  # metres; a scene narrower than this (x or y) is treated as an object, not a room


def sample_views(scene: GaussianScene, n_positions: int = 8, n_directions: int = 8, *, width: int = 320,
                 height: int = 240, fov_deg: float = 70.0, eye_height: Sequence[float] = (1.2, 1.7),
                 min_clearance: float = 0.3, min_view_depth: float = 0.8, pitch_deg: float = -10.0,
                 seed: int = 0) -> list[Camera]:
    """Cameras spread over the free space of a room-like scene, looking around horizontally.

    Positions: a jittered grid over the scene's xy footprint (2nd-98th percentile of the means) at
    ``eye_height`` (uniform in the range) above the floor (2nd percentile of z); a position is kept
    when it is at least ``min_clearance`` from every Gaussian centre and horizontal rays from it
    meet scene content in at least 7 of 8 directions (it is inside the room). ``n_positions`` are
    chosen by farthest-point sampling. Each gets ``n_directions`` evenly spaced yaw angles (random
    offset) with a ``pitch_deg`` (±3°) downward pitch. A view is dropped when the median visible
    depth in the central half of the image (:func:`central_view_depth`, rendered small from
    :func:`depth_proxy`) is below ``min_view_depth`` (it faces a wall) or it sees nothing there;
    positions whose views are all dropped are replaced by the next in farthest-point order. So up to
    ``n_positions * n_directions`` cameras are returned, grouped by position.

    If no free position exists, or the footprint is narrower than ``MIN_ROOM_EXTENT`` (an object
    scan rather than a room), ``n_positions * n_directions`` cameras orbit the scene's centre
    looking inwards instead. Deterministic for a given ``seed``.
    """
    if n_positions < 1 or n_directions < 1:
        raise ValueError(f"sample_views: n_positions={n_positions}, n_directions={n_directions}, expected >= 1")
    if len(scene) == 0:
        raise ValueError(f"sample_views: scene '{scene.name}' is empty")
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    means = scene.means.detach().cpu().double().numpy()
    cam_kw = dict(width=width, height=height, fov_deg=fov_deg)
    floor = float(np.percentile(means[:, 2], 2))
    lo, hi = np.percentile(means[:, :2], 2, axis=0), np.percentile(means[:, :2], 98, axis=0)
    spacing = max(float(np.max(hi - lo)) / 40, 0.05)
    gx, gy = np.meshgrid(np.arange(lo[0], hi[0] + 1e-9, spacing), np.arange(lo[1], hi[1] + 1e-9, spacing), indexing="ij")
    xy = np.stack([gx.ravel(), gy.ravel()], 1) + rng.uniform(-0.4, 0.4, (gx.size, 2)) * spacing
    z = floor + rng.uniform(min(eye_height), max(eye_height), len(xy))
    candidates = np.concatenate([xy, z[:, None]], 1)

    tree = cKDTree(means)
    clearance, _ = tree.query(candidates, k=1)
    free = candidates[clearance >= min_clearance]
    band = means[(means[:, 2] > floor + 0.5) & (means[:, 2] < floor + 2.2)]  # walls around eye level
    if float(np.min(hi - lo)) < MIN_ROOM_EXTENT or len(band) < 16:
        free = free[:0]  # an object, not a room: orbit it below
    if len(free):
        band = band[np.random.default_rng(seed + 1).permutation(len(band))[:4000]]
        free = free[_enclosed(free[:, :2], band[:, :2])]

    pitch = math.radians(pitch_deg)
    proxy = depth_proxy(scene, seed=seed)
    cameras: list[Camera] = []
    if len(free):
        order = _farthest_point_order(free, int(rng.integers(len(free))))
        used = 0
        for idx in order:
            if used >= n_positions:
                break
            yaw0 = rng.uniform(0, 2 * math.pi)
            views = []
            for k in range(n_directions):
                cam = _camera_from_yaw_pitch(free[idx], yaw0 + 2 * math.pi * k / n_directions,
                                             pitch + math.radians(rng.uniform(-3, 3)), **cam_kw)
                if min_view_depth <= central_view_depth(cam, proxy) < math.inf:
                    views.append(cam)
            if views:
                cameras.extend(views)
                used += 1
    if not cameras:  # not a room: orbit the centre
        center = means.mean(0)
        radius = max(float(np.linalg.norm(hi - lo)), 1.0)
        for k in range(n_positions * n_directions):
            yaw = 2 * math.pi * k / (n_positions * n_directions) + rng.uniform(0, 0.1)
            eye = center + np.array([radius * math.cos(yaw), radius * math.sin(yaw), 0.5 * radius])
            cameras.append(look_at(eye, center, (0, 0, 1), **cam_kw))
    return cameras
