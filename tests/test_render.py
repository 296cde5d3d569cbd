"""The Gaussian rasterizer against analytic footprints, compositing invariants, finite differences and its brute-force twin."""

import pytest
import torch

from data.camera import Camera, look_at
from data.raster_torch import RasterOptions, weighted_scatter
from data.render import (
    accumulate_to_gaussians,
    rasterize,
    rasterize_gaussians,
    rasterize_reference,
)
from data.scene import GaussianScene

PARAMS = ("means", "quats", "scales", "opacities", "colors")


def random_gaussians(n, seed, dtype=torch.float64, spread=0.6, distance=3.0, scale=(0.03, 0.25), opacity=(0.05, 1.0)):
    """n random anisotropic Gaussians around (distance, 0, 0), as a dict of tensors."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * spread + torch.tensor([distance, 0.0, 0.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    quats = quats / quats.norm(dim=1, keepdim=True)
    quats = torch.where(quats[:, :1] < 0, -quats, quats)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * (scale[1] - scale[0]) + scale[0]
    opacities = torch.rand(n, generator=g, dtype=dtype) * (opacity[1] - opacity[0]) + opacity[0]
    colors = torch.rand(n, 3, generator=g, dtype=dtype)
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors)


def front_camera(width=31, height=23, fov=60.0):
    """At the origin looking along +x (image right = world -y, image down = world -z)."""
    return look_at((0, 0, 0), (1, 0, 0), width=width, height=height, fov_deg=fov)


def tensors(p):
    return [p[k] for k in PARAMS]


def test_isotropic_gaussian_footprint_is_analytic():
    cam = front_camera(width=41, height=31)
    d, s, o = 4.0, 0.12, 0.8
    p = dict(means=torch.tensor([[d, 0.0, 0.0]]), quats=torch.tensor([[1.0, 0, 0, 0]]), scales=torch.full((1, 3), s),
             opacities=torch.tensor([o]), colors=torch.tensor([[0.2, 0.4, 0.6]]))
    out = rasterize_gaussians(*tensors(p), cam)
    fx = cam.fx
    var = (fx * s / d) ** 2 + 0.3  # projected variance plus the 0.3 px^2 dilation
    cols = torch.arange(cam.width, dtype=torch.float64) + 0.5 - cam.cx
    rows = torch.arange(cam.height, dtype=torch.float64) + 0.5 - cam.cy
    r2 = rows[:, None] ** 2 + cols[None, :] ** 2
    alpha = torch.clamp(o * torch.exp(-0.5 * r2 / var), max=0.99)
    alpha = torch.where((alpha >= 1 / 255) & (r2 / var <= 9), alpha, torch.zeros_like(alpha))
    torch.testing.assert_close(out.alpha.double(), alpha, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(out.color.double(), alpha[..., None] * p["colors"][0].double(), atol=2e-6, rtol=1e-5)
    assert torch.allclose(out.depth[out.alpha > 0], torch.tensor(d))
    assert out.alpha[cam.height // 2, cam.width // 2] == out.alpha.max()
    assert float(out.weights[0]) == pytest.approx(float(alpha.sum()), rel=1e-5)


def test_off_axis_gaussian_lands_on_projected_pixel():
    cam = look_at((0.3, -0.2, 1.0), (5, 1, 0.5), width=64, height=48, fov_deg=70)
    mean = torch.tensor([[4.0, 0.4, 1.1]])
    p = dict(means=mean, quats=torch.tensor([[1.0, 0, 0, 0]]), scales=torch.full((1, 3), 0.02),
             opacities=torch.tensor([0.9]), colors=torch.ones(1, 3))
    out = rasterize_gaussians(*tensors(p), cam)
    uv, z = cam.project(mean)
    peak = torch.nonzero(out.alpha == out.alpha.max())[0]
    assert abs(float(peak[1]) + 0.5 - float(uv[0, 0])) <= 0.5 and abs(float(peak[0]) + 0.5 - float(uv[0, 1])) <= 0.5
    assert float(out.depth[peak[0], peak[1]]) == pytest.approx(float(z[0]), rel=1e-5)


@pytest.mark.parametrize("swap", [False, True])
def test_two_gaussians_composite_front_to_back(swap):
    cam = front_camera()
    z_red, z_blue = (2.0, 4.0) if not swap else (4.0, 2.0)
    o = 0.9
    p = dict(means=torch.tensor([[z_red, 0.0, 0.0], [z_blue, 0.0, 0.0]]), quats=torch.tensor([[1.0, 0, 0, 0]] * 2),
             scales=torch.tensor([[0.3] * 3, [0.6] * 3]), opacities=torch.tensor([o, o]),
             colors=torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    out = rasterize_gaussians(*tensors(p), cam)
    centre = out.color[cam.height // 2, cam.width // 2]  # the pixel centre is the projected mean: alpha = o
    front, back = (0, 2) if not swap else (2, 0)
    assert float(centre[front]) == pytest.approx(o, abs=1e-6)
    assert float(centre[back]) == pytest.approx((1 - o) * o, abs=1e-6)
    expected_depth = (o * min(z_red, z_blue) + (1 - o) * o * max(z_red, z_blue)) / (o + (1 - o) * o)
    assert float(out.depth[cam.height // 2, cam.width // 2]) == pytest.approx(expected_depth, rel=1e-5)


def test_weights_sum_to_alpha_and_features_match_colours():
    p = random_gaussians(60, seed=1, dtype=torch.float32)
    cam = front_camera(width=48, height=36)
    out = rasterize_gaussians(*tensors(p), cam, features=p["colors"])
    assert float(out.weights.sum()) == pytest.approx(float(out.alpha.sum()), rel=1e-5)
    torch.testing.assert_close(out.features, out.color)
    assert float(out.alpha.max()) <= 1.0 and float(out.alpha.min()) >= 0.0


def test_background_fills_transparent_pixels():
    p = random_gaussians(20, seed=2, dtype=torch.float32)
    cam = front_camera()
    opts = RasterOptions(background=(0.1, 0.5, 0.9))
    out = rasterize_gaussians(*tensors(p), cam, options=opts)
    black = rasterize_gaussians(*tensors(p), cam)
    expected = black.color + (1 - black.alpha)[..., None] * torch.tensor([0.1, 0.5, 0.9])
    torch.testing.assert_close(out.color, expected)


@pytest.mark.parametrize("seed,chunk", [(0, 4_000_000), (1, 4_000_000), (2, 300), (3, 1000)])
def test_fast_path_matches_brute_force(seed, chunk):
    # Many overlapping splats (early stop kicks in), some behind the camera or off-screen, some tiny.
    p = random_gaussians(150, seed=seed, spread=1.5, distance=2.5, scale=(0.005, 0.4),
                         opacity=(0.05, 1.0) if seed < 2 else (0.7, 1.0))
    cam = look_at((0, 0, 0), (1, 0.1 * seed, 0.05), width=37, height=29, fov_deg=75)
    feats = torch.randn(150, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    for t in tensors(p) + [feats]:
        t.requires_grad_(True)
    fast = rasterize_gaussians(*tensors(p), cam, features=feats, backend="torch",
                               options=RasterOptions(max_pairs_per_chunk=chunk))  # small chunks: occlusion pruning
    ref = rasterize_reference(*tensors(p), cam, features=feats)
    for name in ("color", "depth", "alpha", "features", "weights"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), atol=1e-10, rtol=1e-9)
    assert int((fast.weights > 0).sum()) > 20

    probe = torch.randn(cam.height, cam.width, 3, generator=torch.Generator().manual_seed(99), dtype=torch.float64)

    def loss(o):
        return (o.color * probe).sum() + o.depth.square().mean() + o.features.sum() + o.weights.square().sum()

    inputs = tensors(p) + [feats]
    g_fast = torch.autograd.grad(loss(fast), inputs)
    g_ref = torch.autograd.grad(loss(ref), inputs)
    for name, a, b in zip(PARAMS + ("features",), g_fast, g_ref):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-7, msg=f"gradient of {name}")


def test_early_stop_is_respected():
    # 30 opaque layers along the axis: the pixel must stop once T * (1 - alpha) <= 1e-4.
    n = 30
    p = dict(means=torch.stack([torch.arange(n, dtype=torch.float64) * 0.1 + 2, torch.zeros(n, dtype=torch.float64),
                                torch.zeros(n, dtype=torch.float64)], 1),
             quats=torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64).repeat(n, 1),
             scales=torch.full((n, 3), 0.5, dtype=torch.float64), opacities=torch.full((n,), 0.6, dtype=torch.float64),
             colors=torch.rand(n, 3, dtype=torch.float64))
    cam = front_camera(width=9, height=7)
    out = rasterize_gaussians(*tensors(p), cam, options=RasterOptions(max_pairs_per_chunk=20))
    k = 0
    while (0.4 ** (k + 1)) > 1e-4:  # layers that fit before T would drop to 1e-4 (alpha = 0.6 at the centre)
        k += 1
    assert float(out.alpha[3, 4]) == pytest.approx(1 - 0.4 ** k, abs=1e-9)
    ref = rasterize_reference(*tensors(p), cam)
    torch.testing.assert_close(out.weights, ref.weights)


def test_gradients_match_finite_differences():
    p = random_gaussians(6, seed=5, spread=0.25, scale=(0.08, 0.2), opacity=(0.3, 0.8))
    cam = front_camera(width=14, height=11)
    feats = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    probe = torch.randn(cam.height, cam.width, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def loss(means, quats, scales, opacities, colors, feats):
        out = rasterize_gaussians(means, quats, scales, opacities, colors, cam, features=feats, backend="torch")
        return ((out.color * probe).sum() + out.depth.mean() + out.alpha.square().sum()
                + (out.features * probe[..., :2]).sum() + out.weights.square().sum())

    inputs = tuple(t.clone().requires_grad_(True) for t in tensors(p) + [feats])
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_weighted_scatter_gradcheck():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(7, 3, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.rand(20, dtype=torch.float64, generator=g, requires_grad=True)
    src, dst = torch.randint(0, 7, (20,), generator=g), torch.randint(0, 5, (20,), generator=g)
    assert torch.autograd.gradcheck(lambda v, w: weighted_scatter(v, w, src, dst, 5), (values, weight))
    dense = torch.zeros(5, 7, dtype=torch.float64).index_put_((dst, src), weight.detach(), accumulate=True)
    torch.testing.assert_close(weighted_scatter(values, weight, src, dst, 5), dense @ values)


def test_rendering_is_deterministic():
    p = random_gaussians(400, seed=7, dtype=torch.float32, spread=1.0)
    cam = front_camera(width=64, height=48)
    runs = []
    for _ in range(2):
        inputs = [t.clone().requires_grad_(True) for t in tensors(p)]
        out = rasterize_gaussians(*inputs, cam)
        (out.color.sum() + out.depth.sum()).backward()
        runs.append([out.color, out.depth, out.alpha, out.weights] + [t.grad for t in inputs])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_scene_entry_point_and_accumulate_to_gaussians():
    p = random_gaussians(80, seed=3, dtype=torch.float32)
    scene = GaussianScene(**p)
    cam = front_camera(width=40, height=30)
    out = rasterize(scene, cam)
    direct = rasterize_gaussians(*tensors(p), cam)
    torch.testing.assert_close(out.color, direct.color)

    const = torch.tensor([0.5, -2.0, 3.0])
    sums, weights = accumulate_to_gaussians(scene, cam, const.expand(cam.height, cam.width, 3))
    torch.testing.assert_close(weights, out.weights)
    torch.testing.assert_close(sums, weights[:, None] * const, atol=1e-5, rtol=1e-5)

    # transpose of rendering: <render(f), v> == <f, accumulate(v)> for any per-Gaussian f and pixel v
    g = torch.Generator().manual_seed(4)
    f = torch.randn(80, 4, generator=g)
    v = torch.randn(cam.height, cam.width, 4, generator=g)
    rendered = rasterize(scene, cam, features=f).features
    pulled, _ = accumulate_to_gaussians(scene, cam, v)
    assert float((rendered * v).sum()) == pytest.approx(float((f * pulled).sum()), rel=1e-4)


def test_input_validation():
    p = random_gaussians(5, seed=0, dtype=torch.float32)
    cam = front_camera()
    with pytest.raises(ValueError, match="backend"):
        rasterize_gaussians(*tensors(p), cam, backend="opengl")
    with pytest.raises(ValueError, match="gsplat"):
        rasterize_gaussians(*tensors(p), cam, backend="gsplat")
    with pytest.raises(ValueError, match="features"):
        rasterize_gaussians(*tensors(p), cam, features=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="pixel_values"):
        accumulate_to_gaussians(GaussianScene(**p), cam, torch.zeros(3, 3, 1))
    with pytest.raises(ValueError, match="max_alpha"):
        RasterOptions(max_alpha=1.5)


def test_nothing_visible_gives_empty_image():
    p = random_gaussians(10, seed=0, dtype=torch.float32, distance=-5.0)  # all behind the camera
    out = rasterize_gaussians(*tensors(p), front_camera())
    assert float(out.alpha.abs().max()) == 0 and float(out.weights.abs().max()) == 0 and float(out.depth.abs().max()) == 0


@pytest.mark.gpu
def test_gsplat_backend_matches_torch():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("gsplat")
    p = random_gaussians(300, seed=0, dtype=torch.float32, spread=1.0)
    scene = GaussianScene(**p)
    cam = look_at((0, 0, 0), (1, 0, 0), width=96, height=64, fov_deg=70)
    feats = torch.randn(300, 6)
    cpu = rasterize(scene, cam, features=feats, backend="torch")
    gpu = rasterize(scene.to("cuda"), cam.to("cuda"), features=feats.cuda(), backend="gsplat")
    # gsplat cuts a splat at its tile-aligned 3-sigma box rather than the ellipse: small differences at the rims
    for name in ("color", "alpha", "features"):
        diff = (getattr(gpu, name).cpu() - getattr(cpu, name)).abs()
        assert float(diff.mean()) < 2e-3 and float(diff.max()) < 0.05, name
    mask = (cpu.alpha > 0.5) & (gpu.alpha.cpu() > 0.5)
    torch.testing.assert_close(gpu.depth.cpu()[mask], cpu.depth[mask], atol=1e-2, rtol=1e-2)
    assert float((gpu.weights.cpu() - cpu.weights).abs().sum()) < 0.02 * float(cpu.weights.sum())
    sums_gpu, w_gpu = accumulate_to_gaussians(scene.to("cuda"), cam.to("cuda"), torch.ones(64, 96, 2, device="cuda"))
    torch.testing.assert_close(sums_gpu[:, 0], w_gpu, atol=1e-4, rtol=1e-4)


def _fake_gsplat_rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane,
                               far_plane, eps2d, tile_size, packed, render_mode, rasterize_mode):
    """gsplat.rasterization's contract, implemented with the torch backend (to test the gsplat wiring on CPU)."""
    assert viewmats.shape == (1, 4, 4) and Ks.shape == (1, 3, 3) and render_mode in ("RGB", "RGB+ED")
    cam = Camera(Ks[0], viewmats[0], width, height, near_plane, far_plane)
    opts = RasterOptions(dilation=eps2d, tile_size=tile_size)
    out = rasterize_gaussians(means, quats, scales, opacities, torch.zeros_like(means), cam, features=colors,
                              backend="torch", options=opts)
    image = out.features
    if render_mode == "RGB+ED":
        image = torch.cat([image, out.depth[..., None]], -1)
    return image[None], out.alpha[None, ..., None], {}


def test_gsplat_wiring_with_a_stand_in(monkeypatch):
    import sys
    import types

    import data.render as render

    monkeypatch.setitem(sys.modules, "gsplat", types.SimpleNamespace(rasterization=_fake_gsplat_rasterization))
    p = random_gaussians(50, seed=11, dtype=torch.float64)
    cam = front_camera(width=24, height=18)
    feats = torch.randn(50, 4, dtype=torch.float64)
    opts = RasterOptions(background=(0.2, 0.3, 0.4))
    via = render._rasterize_gsplat(*tensors(p), cam, feats, opts)
    ref = rasterize_gaussians(*tensors(p), cam, features=feats, backend="torch", options=opts)
    for name in ("color", "depth", "alpha", "features", "weights"):
        torch.testing.assert_close(getattr(via, name), getattr(ref, name), msg=name)
    scene = GaussianScene(**p)
    v = torch.randn(18, 24, 3, dtype=torch.float64)
    sums, weights = render._accumulate_gsplat(scene, cam, v, opts)
    ref_sums, ref_weights = accumulate_to_gaussians(scene, cam, v, backend="torch")
    torch.testing.assert_close(weights, ref_weights.double(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sums, ref_sums.double(), atol=1e-5, rtol=1e-5)


def test_command_line_renders_a_png(tmp_path):
    io = pytest.importorskip("data.io")
    from PIL import Image

    from data.render import main
    from tests.test_camera import box_room

    path = tmp_path / "room.ply"
    io.save_scene(box_room(n=4000), path)
    out = tmp_path / "view.png"
    main(["--scene", str(path), "--out", str(out), "--width", "48", "--height", "32", "--view", "1",
          "--depth-out", str(tmp_path / "depth.png")])
    img = Image.open(out)
    assert img.size == (48, 32)
    assert len(set(img.getdata())) > 10  # not a blank image
    assert (tmp_path / "depth.png").exists()


def test_view_dependent_sh_colours():
    from data.raster_torch import sh_view_colors

    cam = front_camera()
    p = dict(means=torch.tensor([[3.0, 0.0, 0.0]]), quats=torch.tensor([[1.0, 0, 0, 0]]), scales=torch.full((1, 3), 0.3),
             opacities=torch.tensor([0.9]), colors=torch.tensor([[0.5, 0.5, 0.5]]))
    sh_rest = torch.zeros(1, 15, 3)
    sh_rest[0, 2] = torch.tensor([0.2, -0.1, 0.0])  # band 1, basis -C1 x: seen along +x it adds -C1 * coefficient
    dc = rasterize_gaussians(*tensors(p), cam)
    same = rasterize_gaussians(*tensors(p), cam, sh_rest=sh_rest)  # sh_degree 0 (default): ignored
    torch.testing.assert_close(dc.color, same.color)
    view = rasterize_gaussians(*tensors(p), cam, sh_rest=sh_rest, options=RasterOptions(sh_degree=3))
    expected = torch.tensor([0.5, 0.5, 0.5]) - 0.4886025119029199 * torch.tensor([0.2, -0.1, 0.0])
    centre = (cam.height // 2, cam.width // 2)
    torch.testing.assert_close(view.color[centre], 0.9 * expected)
    # from the opposite side the same coefficient acts with the other sign
    back = sh_view_colors(p["colors"], sh_rest, p["means"], torch.tensor([6.0, 0.0, 0.0]), 3)
    torch.testing.assert_close(back[0], torch.tensor([0.5, 0.5, 0.5]) + 0.4886025119029199 * torch.tensor([0.2, -0.1, 0.0]))
    scene = GaussianScene(**p, sh_rest=sh_rest)
    torch.testing.assert_close(rasterize(scene, cam, options=RasterOptions(sh_degree=1)).color, view.color)


@pytest.mark.slow
def test_fast_path_matches_brute_force_on_a_larger_room():
    from tests.test_camera import box_room

    scene = box_room(n=6000)
    cam = look_at((0.7, 0.6, 1.5), (5, 4, 0.8), width=96, height=72, fov_deg=80)
    fast = rasterize(scene, cam, options=RasterOptions(max_pairs_per_chunk=20_000))
    ref = rasterize_reference(scene.means, scene.quats, scene.scales, scene.opacities, scene.colors, cam)
    for name in ("color", "depth", "alpha", "weights"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), atol=5e-5, rtol=1e-4)


def test_non_finite_gaussians_are_skipped():
    p = random_gaussians(30, seed=8, dtype=torch.float32)
    cam = front_camera()
    clean = rasterize_gaussians(*tensors(p), cam)
    bad = {k: v.clone() for k, v in p.items()}
    bad["means"][3, 0] = float("nan")
    bad["scales"][5] = float("inf")
    bad["opacities"][7] = float("nan")
    out = rasterize_gaussians(*tensors(bad), cam)
    keep = torch.ones(30, dtype=torch.bool)
    keep[[3, 5, 7]] = False
    ref = rasterize_gaussians(*[t[keep] for t in tensors(p)], cam)
    assert torch.isfinite(out.color).all() and torch.isfinite(out.weights).all()
    torch.testing.assert_close(out.color, ref.color)
    torch.testing.assert_close(out.weights[keep], ref.weights)
    assert float(out.weights[~keep].abs().sum()) == 0 and float(clean.alpha.sum()) > 0
