"""GaussianScene: validation, subset, batching with offsets."""

import numpy as np
import pytest
import torch

from data import GaussianScene, SceneFormatError, batch_to_offset, collate_scenes, offset_to_batch


def make_scene(n, seed=0, labels=True, feat_dim=4):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g)
    q = q / q.norm(dim=1, keepdim=True)
    q[q[:, 0] < 0] *= -1
    feats = {}
    if feat_dim:
        index = torch.arange(0, n, 2)
        feats["lang"] = (torch.randn(len(index), feat_dim, generator=g).half(), index)
    return GaussianScene(
        means=torch.randn(n, 3, generator=g),
        quats=q,
        scales=torch.rand(n, 3, generator=g) * 0.1 + 0.01,
        opacities=torch.rand(n, generator=g),
        colors=torch.rand(n, 3, generator=g),
        semantic=torch.randint(-1, 5, (n,), generator=g) if labels else None,
        instance=torch.randint(-1, 9, (n,), generator=g) if labels else None,
        class_names=[f"c{i}" for i in range(5)],
        features=feats,
        name=f"s{seed}",
    )


def test_numpy_inputs_become_tensors_with_contract_dtypes():
    n = 5
    s = GaussianScene(
        means=np.zeros((n, 3), np.float64),
        quats=np.tile([1.0, 0, 0, 0], (n, 1)),
        scales=np.ones((n, 3)),
        opacities=np.ones(n),
        colors=np.zeros((n, 3)),
        semantic=np.arange(n, dtype=np.int32),
    )
    assert s.means.dtype == torch.float32 and s.semantic.dtype == torch.int64
    assert len(s) == n and s.sh_degree == 0


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("colors", torch.zeros(4, 3), "has 4 rows, expected 5"),
        ("quats", torch.zeros(5, 3), "expected (N, 4)"),
        ("opacities", torch.zeros(5, 1), "expected (N)"),
    ],
)
def test_shape_errors_name_the_field(field, value, expected):
    kwargs = dict(means=torch.zeros(5, 3), quats=torch.zeros(5, 4), scales=torch.ones(5, 3),
                  opacities=torch.ones(5), colors=torch.zeros(5, 3), name="room.ply")
    kwargs[field] = value
    with pytest.raises(SceneFormatError) as err:
        GaussianScene(**kwargs)
    assert f"field '{field}'" in str(err.value) and "room.ply" in str(err.value) and expected in str(err.value)


def test_feature_index_out_of_range_is_an_error():
    with pytest.raises(SceneFormatError, match="lang_feat_index"):
        GaussianScene(means=torch.zeros(2, 3), quats=torch.zeros(2, 4), scales=torch.ones(2, 3),
                      opacities=torch.ones(2), colors=torch.zeros(2, 3),
                      features={"lang": (torch.zeros(1, 3), torch.tensor([2]))})


def test_subset_keeps_rows_and_reindexes_features():
    s = make_scene(10)
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[1, 2, 4, 7, 8]] = True
    sub = s.subset(mask)
    assert torch.equal(sub.means, s.means[mask]) and torch.equal(sub.semantic, s.semantic[mask])
    feat, index = sub.features["lang"]
    # Gaussians 2, 4, 8 had features (rows 1, 2, 4 of the original feature array); now at positions 1, 2, 4
    assert index.tolist() == [1, 2, 4]
    assert torch.equal(feat, s.features["lang"][0][[1, 2, 4]])
    # integer indices select in the given order
    rev = s.subset(torch.tensor([3, 0]))
    assert torch.equal(rev.means, s.means[[3, 0]]) and rev.features["lang"][1].tolist() == [1]


def test_collate_concatenates_with_offsets_and_shifted_feature_indices():
    a, b = make_scene(6, seed=1), make_scene(4, seed=2)
    batch, offset = collate_scenes([a, b])
    assert offset.tolist() == [6, 10]
    assert torch.equal(batch.means[6:], b.means)
    feat, index = batch.features["lang"]
    assert index.tolist() == [0, 2, 4, 6, 8]
    assert torch.equal(feat[3:], b.features["lang"][0])
    assert offset_to_batch(offset).tolist() == [0] * 6 + [1] * 4
    assert torch.equal(batch_to_offset(offset_to_batch(offset)), offset)


def test_collate_drops_fields_missing_in_any_scene():
    a, b = make_scene(3, seed=1), make_scene(3, seed=2, labels=False, feat_dim=0)
    batch, _ = collate_scenes([a, b])
    assert batch.semantic is None and batch.features == {}


def test_to_and_clone_are_deep_copies():
    s = make_scene(4)
    c = s.clone()
    c.means += 1
    c.features["lang"][0].zero_()
    assert not torch.equal(c.means, s.means)
    assert s.features["lang"][0].abs().sum() > 0
    assert s.to("cpu").means.device.type == "cpu"
