"""The Chorus encoder (PTv3 over Gaussians) on tiny configs: invariances, gradients, checkpoints, chunking."""

import math

import pytest
import torch
import torch.nn.functional as F

from data.scene import GaussianScene, collate_scenes
from encoder import ChorusEncoder, EncoderConfig, EncoderPredictor, scene_to_input
from encoder.grid import pool_grid, voxelize
from encoder.ptv3 import PatchAttention, SerializedPoints
from encoder.serialization import serialize


def tiny_config(**overrides) -> EncoderConfig:
    base = dict(grid_size=0.1, channels=(8, 16, 16), depths=(1, 1, 1), heads=(2, 2, 4), patch_size=32, drop_path=0.0, shuffle_orders=False, embed_kernel=3)
    base.update(overrides)
    return EncoderConfig(**base)


def plane_scene(n: int, size=(3.0, 4.0, 2.0), seed: int = 0, name: str = "room") -> GaussianScene:
    """Gaussians on the floor and walls of a box, small scales, random colours and rotations."""
    g = torch.Generator().manual_seed(seed)
    sx, sy, sz = size
    u = torch.rand(n, 2, generator=g)
    face = torch.randint(0, 5, (n,), generator=g)
    means = torch.stack([u[:, 0] * sx, u[:, 1] * sy, torch.zeros(n)], 1)
    wall = face > 0
    means[wall, 2] = u[wall, 1] * sz
    means[face == 1, 1] = 0.0
    means[face == 2, 1] = sy
    means[face == 3, 0] = 0.0
    means[face == 3, 1] = u[face == 3, 0] * sy
    means[face == 4, 0] = sx
    means[face == 4, 1] = u[face == 4, 0] * sy
    quats = F.normalize(torch.randn(n, 4, generator=g), dim=1)
    quats = torch.where(quats[:, :1] < 0, -quats, quats)
    return GaussianScene(
        means=means,
        quats=quats,
        scales=0.01 + 0.02 * torch.rand(n, 3, generator=g),
        opacities=torch.rand(n, generator=g),
        colors=torch.rand(n, 3, generator=g),
        name=name,
    )


def encode(model, scene):
    feats = scene_to_input(scene, model.config.variant)
    return model(scene.means, feats, torch.tensor([len(scene)]))


# ---------------------------------------------------------------------------- config and inputs
def test_config_presets_and_validation():
    paper, small = EncoderConfig.paper(), EncoderConfig.small()
    assert paper.out_dim == 48 + 96 + 192 + 384 + 512 == 1232
    assert paper.in_channels == 11 and EncoderConfig(variant="point").in_channels == 9
    assert small.num_stages == 5 and small.out_dim < paper.out_dim
    assert EncoderConfig.from_dict(small.to_dict()) == small
    with pytest.raises(ValueError, match="in_channels"):
        EncoderConfig(variant="point", in_channels=11)
    with pytest.raises(ValueError, match="heads"):
        EncoderConfig(heads=(5, 6, 12, 24, 32))
    with pytest.raises(ValueError, match="orders"):
        EncoderConfig(orders=("peano",))
    with pytest.raises(ValueError, match="depths"):
        EncoderConfig(depths=(1, 2))


def test_scene_to_input_channels():
    scene = plane_scene(4000)
    scene.scales[0] = 3.0
    x = scene_to_input(scene)
    assert x.shape == (4000, 11)
    assert torch.allclose(x[:, :3], scene.colors) and torch.allclose(x[:, 3], scene.opacities)
    assert torch.allclose(x[:, 4:8], scene.quats, atol=1e-6)
    assert float(x[0, 8:].max()) == 1.5
    p = scene_to_input(scene, "point")
    assert p.shape == (4000, 9)
    assert torch.allclose(p[:, :3].mean(0), torch.zeros(3), atol=1e-5)
    floor = scene.means[:, 2] == 0
    floor &= (scene.means[:, 0] > 1.0) & (scene.means[:, 0] < 2.0) & (scene.means[:, 1] > 1.0) & (scene.means[:, 1] < 3.0)
    assert torch.allclose(p[floor, 6:], torch.tensor([0.0, 0.0, 1.0]).expand(int(floor.sum()), 3), atol=1e-4)
    with pytest.raises(ValueError, match="variant"):
        scene_to_input(scene, "mesh")


# ---------------------------------------------------------------------------- grid
def test_voxelize_inverse_and_lattice_alignment():
    scene = plane_scene(2000)
    offset = torch.tensor([2000])
    vox = voxelize(scene.means + 0.37, offset, 0.1, align=4)
    assert vox.inverse.shape == (2000,) and int(vox.inverse.max()) == vox.num_voxels - 1
    absolute = torch.floor((scene.means.double() + 0.37) / 0.1).long()
    assert torch.equal(vox.grid_coord[vox.inverse] + vox.origin[0], absolute)  # every point lands in its own voxel
    assert bool((vox.origin % 4 == 0).all())
    assert vox.grid_coord.unique(dim=0).shape[0] == vox.num_voxels
    coarse, _, cluster = pool_grid(vox.grid_coord, vox.batch, 2)
    assert torch.equal(coarse[cluster], vox.grid_coord // 2)


# ---------------------------------------------------------------------------- attention
def test_patch_attention_matches_per_patch_loop():
    """Masked, padded SDPA over serialized patches == plain softmax attention patch by patch, scene by scene."""
    torch.manual_seed(0)
    grid = torch.randint(0, 20, (300, 3)).unique(dim=0)
    batch = (torch.arange(grid.shape[0]) >= 100).long()  # scenes of 100 and the rest
    codes, order, _ = serialize(grid, batch, ("hilbert",), depth=5)
    points = SerializedPoints(grid, batch, 2, codes, patch_size=24)
    attn = PatchAttention(16, heads=2).eval()
    x = torch.randn(grid.shape[0], 16)
    out = attn(x, points.layout(0))
    qkv = attn.qkv(x)
    expected = torch.empty_like(x)
    for b in range(2):
        seq = order[0][batch[order[0]] == b]
        for start in range(0, seq.numel(), 24):
            idx = seq[start : start + 24]
            q, k, v = qkv[idx].view(-1, 3, 2, 8).permute(1, 2, 0, 3)
            w = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(8), -1)
            expected[idx] = (w @ v).transpose(0, 1).reshape(-1, 16)
    assert torch.allclose(out, attn.proj(expected), atol=1e-5)


# ---------------------------------------------------------------------------- encoder invariances
def test_output_shape_and_input_order():
    model = ChorusEncoder(tiny_config()).eval()
    scene = plane_scene(1500)
    with torch.no_grad():
        out = encode(model, scene)
    assert out.shape == (1500, model.out_dim) and model.out_dim == 40
    assert torch.isfinite(out).all()
    vox = voxelize(scene.means, torch.tensor([1500]), 0.1, align=4)
    same_voxel = vox.inverse == vox.inverse[0]
    assert torch.equal(out[same_voxel], out[0].expand(int(same_voxel.sum()), -1))


def test_permutation_invariance():
    model = ChorusEncoder(tiny_config()).eval()
    scene = plane_scene(3000)
    perm = torch.randperm(3000)
    with torch.no_grad():
        out = encode(model, scene)
        out_perm = encode(model, scene.subset(perm))
    assert torch.allclose(out[perm], out_perm, atol=1e-4)


def test_batch_of_two_equals_each_alone():
    """Scenes of different sizes (one smaller than a patch) do not see each other in a batch."""
    model = ChorusEncoder(tiny_config(patch_size=64)).eval()
    small = plane_scene(80, size=(0.4, 0.5, 0.3), seed=1, name="small")
    big = plane_scene(2500, seed=2, name="big")
    big.means += torch.tensor([10.0, -3.0, 0.5])
    batch, offset = collate_scenes([small, big])
    with torch.no_grad():
        together = model(batch.means, scene_to_input(batch), offset)
        alone = torch.cat([encode(model, small), encode(model, big)])
    assert torch.allclose(together, alone, atol=1e-4)


def test_gradients_reach_every_parameter():
    model = ChorusEncoder(tiny_config(drop_path=0.1, shuffle_orders=True)).train()
    batch, offset = collate_scenes([plane_scene(1200, seed=3), plane_scene(900, seed=4)])
    out = model(batch.means, scene_to_input(batch), offset)
    (out * torch.randn_like(out)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing


def test_point_variant_runs():
    model = ChorusEncoder(tiny_config(variant="point")).eval()
    with torch.no_grad():
        out = encode(model, plane_scene(600))
    assert out.shape == (600, 40)
    with pytest.raises(ValueError, match="expected \\(N, 9\\)"):
        model(torch.zeros(5, 3), torch.zeros(5, 11), torch.tensor([5]))


# ---------------------------------------------------------------------------- checkpoints
def test_save_load_round_trip(tmp_path):
    model = ChorusEncoder(tiny_config(variant="point", pool_reduce="mean")).eval()
    scene = plane_scene(1000)
    path = model.save_pretrained(tmp_path / "enc")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = ChorusEncoder.from_pretrained(path).eval()
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(encode(model, scene), encode(loaded, scene))
    (path / "config.json").write_text('{"variant": "gaussian", "channels": [8, 16, 16], "depths": [1, 1, 1], "heads": [2, 2, 4]}')
    with pytest.raises(ValueError, match="weights do not match"):
        ChorusEncoder.from_pretrained(path)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        ChorusEncoder.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------- predictor
def test_chunked_encoding_agrees_with_unchunked_near_borders():
    torch.manual_seed(0)
    model = ChorusEncoder(tiny_config(patch_size=16)).eval()
    scene = plane_scene(6000, size=(6.0, 4.0, 2.0), seed=5)
    full = EncoderPredictor(model, chunk_size=10_000).encode(scene)
    chunked_predictor = EncoderPredictor(model, chunk_size=3500, chunk_overlap=1.0)
    chunks = chunked_predictor.chunks(scene)
    assert len(chunks) >= 2
    cores = torch.cat([c.members[c.core] for c in chunks])
    assert torch.equal(cores.sort().values, torch.arange(6000))  # every Gaussian in exactly one core
    chunked = chunked_predictor.encode(scene)
    border = torch.zeros(6000, dtype=torch.bool)  # Gaussians within 0.3 m of an inner core face
    for c in chunks:
        pts = scene.means[c.members[c.core]].double()
        near = ((pts - c.lo).abs() < 0.3) | ((pts - c.hi).abs() < 0.3)
        border[c.members[c.core][near.any(1)]] = True
    assert int(border.sum()) > 100
    cos = F.cosine_similarity(full, chunked, dim=1)
    assert float(cos[border].mean()) > 0.98 and float(cos[border].min()) > 0.8
    no_context = EncoderPredictor(model, chunk_size=3500, chunk_overlap=0.0).encode(scene)
    assert float(F.cosine_similarity(full, no_context, dim=1)[border].mean()) < float(cos[border].mean()) - 0.05  # the overlap matters
    half = chunked_predictor.encode(scene, half=True)
    assert half.dtype == torch.float16 and torch.allclose(half.float(), chunked, atol=1e-2, rtol=1e-2)


def test_stage_features_chunked_equals_unchunked_cells():
    model = ChorusEncoder(tiny_config()).eval()
    scene = plane_scene(4000, size=(6.0, 4.0, 2.0), seed=6)
    coords_full, feats_full = EncoderPredictor(model, chunk_size=10_000).stage_features(scene, 2)
    coords_chunk, feats_chunk = EncoderPredictor(model, chunk_size=2500, chunk_overlap=0.5).stage_features(scene, 2)
    assert feats_full.shape[1] == 16 and coords_full.shape == coords_chunk.shape
    assert torch.allclose(coords_full, coords_chunk, atol=1e-5)  # every 0.4 m cell exactly once, complete
    cell = torch.floor(coords_full / 0.4)
    assert cell.unique(dim=0).shape[0] <= coords_full.shape[0]
    assert F.cosine_similarity(feats_full, feats_chunk, dim=1).mean() > 0.9
