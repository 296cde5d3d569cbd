"""Cameras: look_at geometry, validation, and view sampling inside a room."""

import math

import numpy as np
import pytest
import torch

from data.camera import Camera, look_at, sample_views
from data.render import rasterize
from data.scene import GaussianScene

ROOM = (5.0, 4.0, 2.6)  # x, y, z extent of the test room


def box_room(n=12000, size=ROOM, with_table=True, seed=0) -> GaussianScene:
    """Flat Gaussians on the six faces of an axis-aligned box [0, sx] x [0, sy] x [0, sz], plus an optional table."""
    g = torch.Generator().manual_seed(seed)
    sx, sy, sz = size
    areas = torch.tensor([sx * sy, sx * sy, sx * sz, sx * sz, sy * sz, sy * sz])
    face = torch.multinomial(areas, n, replacement=True, generator=g)
    pts = torch.rand(n, 3, generator=g) * torch.tensor([sx, sy, sz])
    axis = torch.tensor([2, 2, 1, 1, 0, 0])[face]
    pts[torch.arange(n), axis] = torch.tensor([0.0, sz, 0.0, sy, 0.0, sx])[face]
    scales = torch.full((n, 3), 0.06)
    scales[torch.arange(n), axis] = 0.005
    if with_table:  # a 1 x 0.8 m table top at 0.75 m in the middle of the room
        m = 800
        top = torch.rand(m, 3, generator=g) * torch.tensor([1.0, 0.8, 0.0]) + torch.tensor([sx / 2 - 0.5, sy / 2 - 0.4, 0.75])
        pts = torch.cat([pts, top])
        scales = torch.cat([scales, torch.tensor([[0.04, 0.04, 0.005]]).repeat(m, 1)])
    k = pts.shape[0]
    quats = torch.tensor([[1.0, 0, 0, 0]]).repeat(k, 1)
    return GaussianScene(means=pts, quats=quats, scales=scales, opacities=torch.full((k,), 0.9),
                         colors=torch.rand(k, 3, generator=g))


def test_look_at_axes_and_projection():
    eye, target = (1.0, 2.0, 1.5), (4.0, 2.0, 1.5)
    cam = look_at(eye, target, width=64, height=48, fov_deg=90)
    rot = cam.world_to_cam[:3, :3]
    torch.testing.assert_close(rot @ rot.T, torch.eye(3), atol=1e-6, rtol=0)
    assert float(torch.det(rot)) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(cam.position, torch.tensor(eye), atol=1e-6, rtol=0)
    torch.testing.assert_close(cam.forward, torch.tensor([1.0, 0.0, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(cam.cam_to_world @ cam.world_to_cam, torch.eye(4), atol=1e-6, rtol=0)
    assert cam.fx == pytest.approx(32.0)  # 90 degree horizontal FOV at 64 px
    # target at the principal point; world +z (up) appears above, world -y (right when facing +x) to the right
    uv, z = cam.project(torch.tensor([target, [4.0, 2.0, 2.5], [4.0, 1.0, 1.5]]))
    torch.testing.assert_close(uv[0], torch.tensor([32.0, 24.0]), atol=1e-4, rtol=0)
    assert float(uv[1, 1]) < 24 and float(uv[2, 0]) > 32
    torch.testing.assert_close(z, torch.full((3,), 3.0), atol=1e-5, rtol=0)
    # a point at the image corner direction lands at the corner
    corner = cam.cam_to_world[:3, :3] @ torch.tensor([32.0 / 32, 24.0 / 32, 1.0]) * 2 + torch.tensor(eye)
    uv, _ = cam.project(corner[None])
    torch.testing.assert_close(uv[0], torch.tensor([64.0, 48.0]), atol=1e-3, rtol=0)


def test_look_at_straight_down_is_valid():
    cam = look_at((0, 0, 3), (0, 0, 0))
    torch.testing.assert_close(cam.forward, torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)


def test_camera_validation():
    K, w2c = torch.eye(3) * 100, torch.eye(4)
    K[2, 2] = 1
    Camera(K, w2c, 10, 10)
    with pytest.raises(ValueError, match="'K'"):
        Camera(torch.eye(4), w2c, 10, 10)
    with pytest.raises(ValueError, match="width"):
        Camera(K, w2c, 0, 10)
    with pytest.raises(ValueError, match="near"):
        Camera(K, w2c, 10, 10, near=2.0, far=1.0)
    bad = torch.eye(4)
    bad[0, 0] = 2
    with pytest.raises(ValueError, match="orthonormal"):
        Camera(K, bad, 10, 10)
    cam = Camera(K.numpy(), w2c.numpy(), 10, 10).to(dtype=torch.float64)
    assert cam.K.dtype == torch.float64


def test_sample_views_inside_room_horizontal_and_deterministic():
    scene = box_room()
    sx, sy, sz = ROOM
    cams = sample_views(scene, n_positions=4, n_directions=6, width=64, height=48, seed=3)
    assert 6 <= len(cams) <= 24
    positions = torch.stack([c.position for c in cams])
    assert len({tuple(np.round(p.numpy(), 4)) for p in positions}) >= 3  # several distinct positions
    for cam in cams:
        x, y, z = cam.position.tolist()
        assert 0.3 - 1e-3 <= x <= sx - 0.3 + 1e-3 and 0.3 - 1e-3 <= y <= sy - 0.3 + 1e-3
        assert 1.2 - 1e-3 <= z <= 1.7 + 0.15  # eye height above the floor (z = 0), plus jitter of the floor estimate
        pitch = math.degrees(math.asin(float(cam.forward[2])))
        assert -14 <= pitch <= -6  # looking (nearly) horizontally, slightly down
        assert (cam.width, cam.height) == (64, 48)
    again = sample_views(scene, n_positions=4, n_directions=6, width=64, height=48, seed=3)
    assert len(again) == len(cams)
    for a, b in zip(cams, again):
        assert torch.equal(a.world_to_cam, b.world_to_cam)
    other = sample_views(scene, n_positions=4, n_directions=6, width=64, height=48, seed=4)
    assert not torch.equal(other[0].world_to_cam, cams[0].world_to_cam)


def _distance_to_box_wall(position, direction, size=ROOM):
    """Distance along a ray from inside the box to its boundary."""
    best = math.inf
    for axis in range(3):
        d = float(direction[axis])
        if abs(d) < 1e-9:
            continue
        wall = size[axis] if d > 0 else 0.0
        best = min(best, (wall - float(position[axis])) / d)
    return best


def test_sample_views_do_not_face_a_close_wall():
    scene = box_room(with_table=False)
    min_depth = 1.5
    cams = sample_views(scene, n_positions=4, n_directions=6, width=64, height=48, min_view_depth=min_depth, seed=0)
    assert cams
    for i, cam in enumerate(cams):
        # independent checks: distance to the wall along the view ray, and (for a few) rendered depth at the centre
        assert _distance_to_box_wall(cam.position, cam.forward) >= 0.8 * min_depth
        if i % 4 == 0:
            with torch.no_grad():
                out = rasterize(scene, cam)
            assert float(out.depth[20:28, 28:36].median()) >= 0.8 * min_depth
    # with a lower limit more views survive
    loose = sample_views(scene, n_positions=4, n_directions=6, width=64, height=48, min_view_depth=0.1, seed=0)
    assert len(loose) >= len(cams)


def test_sample_views_falls_back_to_orbit_for_an_object():
    g = torch.Generator().manual_seed(0)
    n = 500
    scene = GaussianScene(means=torch.randn(n, 3, generator=g) * 0.3, quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                          scales=torch.full((n, 3), 0.02), opacities=torch.full((n,), 0.8), colors=torch.rand(n, 3, generator=g))
    cams = sample_views(scene, n_positions=2, n_directions=3, width=32, height=24)
    assert len(cams) == 6
    centre = scene.means.mean(0)
    for cam in cams:
        to_centre = centre - cam.position
        cos = float(to_centre @ cam.forward / to_centre.norm())
        assert cos > 0.99
