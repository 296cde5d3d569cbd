"""Augmentations keep Gaussian geometry and lifted-feature indices consistent."""

import math

import pytest
import torch

from data import GaussianScene
from encoder.augment import (
    AugmentConfig,
    augment_scene,
    axis_angle_quat,
    covariances,
    crop,
    flip,
    inflate_covariance,
    covariance_position_noise,
    quat_multiply,
    quat_to_rotmat,
    rotate,
    scale_scene,
)


def make_scene(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g)
    q = q / q.norm(dim=1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    idx = torch.arange(0, n, 3)
    return GaussianScene(
        means=torch.rand(n, 3, generator=g) * 4,
        quats=q,
        scales=torch.rand(n, 3, generator=g) * 0.1 + 0.01,
        opacities=torch.rand(n, generator=g),
        colors=torch.rand(n, 3, generator=g),
        normals=torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1),
        semantic=torch.randint(0, 5, (n,), generator=g),
        features={"t": (idx.float()[:, None].repeat(1, 4).half(), idx)},
    )


def test_quat_to_rotmat_is_rotation_and_product_composes():
    a = torch.nn.functional.normalize(torch.randn(10, 4), dim=1)
    b = torch.nn.functional.normalize(torch.randn(10, 4), dim=1)
    ra, rb = quat_to_rotmat(a), quat_to_rotmat(b)
    assert torch.allclose(ra @ ra.transpose(1, 2), torch.eye(3).expand(10, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(ra), torch.ones(10), atol=1e-5)
    assert torch.allclose(quat_to_rotmat(quat_multiply(a, b)), ra @ rb, atol=1e-5)
    rz = quat_to_rotmat(axis_angle_quat(2, math.pi / 2))
    assert torch.allclose(rz @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), atol=1e-6)


def test_rotation_rotates_covariances():
    s = make_scene()
    q = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.2, 0.8]), dim=0)
    r = quat_to_rotmat(q)
    c = torch.tensor([1.0, 2.0, 0.5])
    out = rotate(s, q, c)
    assert torch.allclose(out.means, (s.means - c) @ r.T + c, atol=1e-5)
    assert torch.allclose(covariances(out), r @ covariances(s) @ r.T, atol=1e-6)
    assert torch.allclose(out.normals, s.normals @ r.T, atol=1e-6)
    assert (out.quats[:, 0] >= 0).all()
    assert torch.allclose(out.quats.norm(dim=1), torch.ones(len(s)), atol=1e-5)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_flip_reflects_covariances(axis):
    s = make_scene()
    f = torch.eye(3)
    f[axis, axis] = -1
    out = flip(s, axis)
    assert torch.allclose(out.means, s.means @ f, atol=1e-6)
    assert torch.allclose(covariances(out), f @ covariances(s) @ f, atol=1e-6)
    assert torch.allclose(out.normals, s.normals @ f)


def test_scale_and_crop_keep_features_consistent():
    s = make_scene()
    out = scale_scene(s, 2.0)
    assert torch.allclose(out.means, 2 * s.means) and torch.allclose(out.scales, 2 * s.scales)
    c = torch.tensor([2.0, 2.0, 2.0])
    for mode in ("sphere", "box"):
        cropped = crop(s, 50, c, mode)
        assert len(cropped) == 50
        d = (s.means - c).norm(dim=1) if mode == "sphere" else (s.means - c).abs().amax(1)
        kept_max = ((cropped.means - c).norm(dim=1) if mode == "sphere" else (cropped.means - c).abs().amax(1)).max()
        assert (d < kept_max - 1e-6).sum() <= 49  # nothing closer was dropped
        feat, index = cropped.features["t"]
        # feature rows still describe the Gaussian they point at: value = original row number
        orig_rows = torch.nonzero(torch.isin(s.means, cropped.means).all(1)).squeeze(1)
        assert torch.equal(feat[:, 0].long(), orig_rows[index])
        assert (orig_rows[index] % 3 == 0).all()


def test_position_noise_only_moves_faint_splats_within_covariance():
    s = make_scene(2000)
    g = torch.Generator().manual_seed(0)
    out = covariance_position_noise(s, g, p=1.0, opacity_below=0.5)
    moved = (out.means - s.means).norm(dim=1) > 0
    assert torch.equal(moved, s.opacities < 0.5)
    # Mahalanobis distance of the step is chi(3)-distributed: mean ~ 1.596
    d = (out.means - s.means)[moved]
    maha = torch.einsum("ni,nij,nj->n", d, torch.linalg.inv(covariances(s)[moved].double()).float(), d).sqrt()
    assert abs(maha.mean().item() - 1.596) < 0.1
    infl = inflate_covariance(s, g, p=1.0, max_factor=3.0)
    ratio = infl.scales / s.scales
    assert (ratio >= 1).all() and (ratio <= 3).all() and torch.allclose(ratio[:, 0], ratio[:, 2])


def test_augment_pipeline_deterministic_and_valid():
    s = make_scene(500)
    cfg = AugmentConfig(max_points=300, rotate_z_p=1.0, position_noise_p=1.0, inflate_p=1.0)
    a = augment_scene(s, cfg, torch.Generator().manual_seed(3))
    b = augment_scene(s, cfg, torch.Generator().manual_seed(3))
    assert len(a) == 300 and torch.equal(a.means, b.means) and torch.equal(a.quats, b.quats)
    assert (a.quats[:, 0] >= 0).all()
    feat, index = a.features["t"]
    assert index.max() < 300 and feat.shape[0] == index.shape[0]
    with pytest.raises(ValueError, match="flip_p"):
        AugmentConfig(flip_p=1.5)
