"""Lifting (paper Eq. 3): known answers, a brute-force twin, instance-map rendering and the folder/CLI round trip."""

import json

import numpy as np
import pytest
import torch

from adapters.teachers import TeacherInput
from data.camera import look_at
from data.scene import GaussianScene
from encoder.lift import (
    LiftConfig,
    decode_instance_map,
    finalize_lift,
    instance_one_hot,
    is_lifted,
    lift_scene,
    main,
    read_captions,
    scale_camera,
    write_lifted,
)


def wall_scene(nx=24, ny=18, spacing=0.1, z=3.0, seed=0) -> GaussianScene:
    """An opaque wall of Gaussians in the plane z = const (camera looks along +z): left half red, right half blue."""
    xs = (torch.arange(nx) - (nx - 1) / 2) * spacing
    ys = (torch.arange(ny) - (ny - 1) / 2) * spacing
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    means = torch.stack([gx.reshape(-1), gy.reshape(-1), torch.full((nx * ny,), z)], 1)
    n = len(means)
    left = means[:, 0] < 0
    colors = torch.where(left[:, None], torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.1, 0.9]))
    instance = torch.where(left, torch.tensor(5), torch.tensor(9))
    instance[(means[:, 1] > 0.6)] = -1  # a strip of unlabelled Gaussians
    return GaussianScene(
        means=means, quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), scales=torch.full((n, 3), spacing * 0.6),
        opacities=torch.full((n,), 0.95), colors=colors, instance=instance, name="wall",
    )


def cameras(width=64, height=48):
    # cameras at the origin looking at the wall (OpenCV axes: y down; world "up" = -y keeps the image upright)
    return [look_at((dx, 0.0, 0.0), (dx, 0.0, 3.0), up=(0, -1, 0), width=width, height=height, fov_deg=60.0) for dx in (-0.2, 0.0, 0.2)]


class ConstantTeacher:
    name, kind, dim = "const", "generalist", 5

    def __init__(self):
        self.value = torch.tensor([0.3, -1.0, 2.0, 0.0, 7.5])

    def encode(self, inp: TeacherInput):
        b, _, h, w = inp.images.shape
        return self.value.view(1, -1, 1, 1).expand(b, -1, h // 4, w // 4).clone()


class ColourTeacher:
    """Features = the rendered image itself, at full resolution."""

    name, kind, dim = "colour", "generalist", 3

    def encode(self, inp: TeacherInput):
        return inp.images.clone()


class PatchyTeacher:
    """A deterministic dense map at half resolution with some 'no target' (zero) pixels."""

    name, kind, dim = "patchy", "generalist", 4

    def encode(self, inp: TeacherInput):
        x = torch.nn.functional.avg_pool2d(inp.images, 2)
        feat = torch.cat([x, x[:, :1] * x[:, 2:3] + 0.1], 1)
        feat[..., ::3, ::5] = 0
        return feat


def test_constant_teacher_lifts_to_constant():
    scene = wall_scene()
    lifted = lift_scene(scene, [ConstantTeacher()], views=cameras(), config=LiftConfig(feature_downscale=2))
    feat, index = lifted["const"]
    assert feat.dtype == torch.float16 and index.dtype == torch.int64
    assert len(index) > 0.5 * len(scene)
    torch.testing.assert_close(feat.float(), ConstantTeacher().value.expand_as(feat).float(), atol=1e-2, rtol=1e-3)
    # sampled views (an object-like scene: the sampler orbits it)
    timings = {}
    feat, index = lift_scene(scene, [ConstantTeacher()], views=3, config=LiftConfig(width=48, height=32), timings=timings)["const"]
    assert timings["views"] == 3 and len(index) > 0
    torch.testing.assert_close(feat.float(), ConstantTeacher().value.expand_as(feat).float(), atol=1e-2, rtol=1e-3)


def test_two_colour_scene_gaussians_receive_pixels_they_cover():
    scene = wall_scene()
    feat, index = lift_scene(scene, [ColourTeacher()], views=cameras(), config=LiftConfig(feature_downscale=1))["colour"]
    x, y = scene.means[index, 0], scene.means[index, 1]
    # away from the colour edge (x = 0) and from the wall's rim, where the black background mixes in
    far_from_edge = (x.abs() > 0.25) & (x.abs() < 1.0) & (y.abs() < 0.7)
    assert int(far_from_edge.sum()) > 50
    expected = scene.colors[index][far_from_edge]
    torch.testing.assert_close(feat[far_from_edge].float(), expected, atol=0.02, rtol=0)


def test_lift_matches_brute_force_twin():
    from data.raster_torch import RasterOptions, dense_weights_reference, project_gaussians
    from data.render import rasterize

    scene = wall_scene(nx=10, ny=8, spacing=0.2)
    cams = cameras(32, 24)
    teacher = PatchyTeacher()
    cfg = LiftConfig(feature_downscale=2, min_weight=0.0)
    feat, index = lift_scene(scene, [teacher], views=cams, config=cfg)["patchy"]

    opts = RasterOptions()
    num = torch.zeros(len(scene), 4, dtype=torch.float64)
    den = torch.zeros(len(scene), dtype=torch.float64)
    for cam in cams:
        image = rasterize(scene, cam).color.permute(2, 0, 1)[None]
        small = scale_camera(cam, 2)
        f = torch.nn.functional.interpolate(teacher.encode(TeacherInput(images=image)), size=(12, 16), mode="bilinear")[0]
        f = f.permute(1, 2, 0).reshape(-1, 4).double()
        m = (f.abs().amax(1) > 0).double()
        s = scene.to("cpu")
        proj = project_gaussians(s.means.double(), s.quats.double(), s.scales.double(), s.opacities.double(), small, opts)
        dense = dense_weights_reference(proj, s.opacities.double(), small.width, small.height, opts)  # [P, N]
        num += dense.T @ (f * m[:, None])
        den += dense.T @ m
    keep = torch.nonzero(den > 1e-12).squeeze(1)
    assert torch.equal(index, keep)
    torch.testing.assert_close(feat.float(), (num[keep] / den[keep, None]).float(), atol=2e-3, rtol=2e-3)


def test_instance_map_rendering_and_instance_teacher():
    from adapters.teachers.offline import instance_code
    from data.render import rasterize

    scene = wall_scene()
    codes, ids = instance_one_hot(scene.instance)
    assert ids.tolist() == [5, 9] and codes.shape == (len(scene), 3)
    cam = cameras()[1]
    out = rasterize(scene, cam, features=codes)
    inst = decode_instance_map(out.features, out.alpha, ids, 0.5)
    # brute force: project Gaussian centres and read the map at their pixels (interior Gaussians only)
    uv, _ = cam.project(scene.means)
    inside = (uv[:, 0] > 2) & (uv[:, 0] < 62) & (uv[:, 1] > 2) & (uv[:, 1] < 46) & (scene.means[:, 0].abs() > 0.15)
    inside &= (scene.means[:, 1] - 0.6).abs() > 0.15
    px = uv[inside].long()
    assert torch.equal(inst[px[:, 1], px[:, 0]], scene.instance[inside])

    feat, index = lift_scene(scene, ["instance-mask"], views=cameras(), config=LiftConfig(feature_downscale=1))["instance_mask"]
    labelled = scene.instance[index]
    # the unlabelled strip only sees "no target" pixels away from its border: no feature there
    assert not bool((scene.means[index, 1] > 0.8).any())
    assert bool((labelled >= 0).any())
    for k in (5, 9):
        rows = (labelled == k) & (scene.means[index, 0].abs() > 0.25) & (scene.means[index, 1] < 0.45)
        cos = torch.nn.functional.cosine_similarity(feat[rows].float(), instance_code(k, 64)[None], dim=1)
        assert cos.min() > 0.99


def test_caption_teacher_lifts_caption_embeddings():
    from adapters.text import get_text_encoder

    scene = wall_scene()
    caps = {5: "a red chair", 9: "a blue sofa"}
    feat, index = lift_scene(scene, ["caption-minilm"], views=cameras(), captions=caps, config=LiftConfig(feature_downscale=2))["caption_minilm"]
    ref = get_text_encoder("minilm").encode(list(caps.values()))
    for k, r in zip(caps, ref):
        rows = (scene.instance[index] == k) & (scene.means[index, 0].abs() > 0.25) & (scene.means[index, 1] < 0.45)
        assert int(rows.sum()) > 10
        torch.testing.assert_close(feat[rows].float(), r.expand(int(rows.sum()), -1), atol=2e-3, rtol=0)


def test_instance_teacher_without_labels_is_an_error():
    scene = wall_scene()
    scene.instance = None
    with pytest.raises(ValueError, match="instance"):
        lift_scene(scene, ["instance-mask"], views=cameras())


def test_finalize_and_helpers():
    feat, index = finalize_lift(torch.tensor([[2.0, 4.0], [1.0, 1.0], [0.0, 0.0]]), torch.tensor([2.0, 0.001, 0.0]), 0.01)
    assert index.tolist() == [0] and feat.tolist() == [[1.0, 2.0]]
    cam = cameras()[0]
    small = scale_camera(cam, 4)
    assert (small.width, small.height) == (16, 12)
    p = torch.tensor([[0.3, -0.2, 3.0]])
    torch.testing.assert_close(small.project(p)[0] * 4, cam.project(p)[0])
    with pytest.raises(ValueError, match="feature_downscale"):
        LiftConfig(width=30, feature_downscale=4)


def test_write_read_round_trip_and_cli_resume(tmp_path, monkeypatch):
    from data import load_scene, save_scene

    scene = wall_scene()
    scene_dir = tmp_path / "scenes" / "room0"
    save_scene(scene, scene_dir)
    (scene_dir / "scene.json").write_text(json.dumps({"objects": [{"id": 5, "caption": "a red chair"}, {"id": 9, "caption": "a blue sofa"}]}))
    assert read_captions(scene_dir) == {5: "a red chair", 9: "a blue sofa"}

    lifted = {"const": (torch.ones(3, 2, dtype=torch.float16), torch.tensor([0, 4, 7]))}
    write_lifted(scene_dir, lifted)
    assert np.load(scene_dir / "const_feat.npy").dtype == np.float16
    assert np.load(scene_dir / "const_feat_index.npy").dtype == np.int32
    assert is_lifted(scene_dir, ["const"]) and not is_lifted(scene_dir, ["const", "other"])
    reloaded = load_scene(scene_dir)
    if "const" in reloaded.features:  # the SceneSplat reader picks up <name>_feat.npy
        assert reloaded.features["const"][1].tolist() == [0, 4, 7]

    # CLI: lift with the instance-mask teacher, then a second run skips the finished scene
    import encoder.lift as lift_mod

    args = ["--scenes", str(tmp_path / "scenes"), "--teachers", "instance-mask", "--width", "64", "--height", "48", "--views", "2"]
    calls = []
    real = lift_mod.lift_folder
    monkeypatch.setattr(lift_mod, "lift_folder", lambda d, t, views=None, config=None, progress=False: calls.append(d) or real(d, t, views=cameras(), config=config))
    assert main(args) == 0
    assert is_lifted(scene_dir, ["instance_mask"]) and len(calls) == 1
    assert main(args) == 0 and len(calls) == 1  # resumed: nothing to do
    log = [json.loads(line) for line in (tmp_path / "scenes" / "lift_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["seconds"] > 0
