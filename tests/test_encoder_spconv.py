"""The spconv compatibility layer: CPU fixes applied once, convs equal a dense conv3d reference."""

import pytest
import torch
import torch.nn.functional as F

from encoder import spconv_compat
from encoder.spconv_compat import SubMConv3d, sparse_tensor, spconv_module


def random_voxels(n: int, extent: int, batch_size: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    grid = torch.randint(0, extent, (n, 3), generator=g)
    batch = torch.randint(0, batch_size, (n,), generator=g)
    key = torch.unique(batch * extent**3 + (grid[:, 0] * extent + grid[:, 1]) * extent + grid[:, 2])
    batch, rest = key // extent**3, key % extent**3
    grid = torch.stack([rest // extent**2, (rest // extent) % extent, rest % extent], 1)
    return grid, batch


def dense_reference(feats, grid, batch, batch_size, weight, bias):
    """Dense conv3d over the voxel grid, read back at the active voxels (= submanifold conv)."""
    k = weight.shape[1]
    shape = (grid.max(0).values + 1 + 2 * (k // 2)).tolist()
    dense = feats.new_zeros(batch_size, feats.shape[1], *shape)
    g = grid + k // 2
    dense[batch, :, g[:, 0], g[:, 1], g[:, 2]] = feats
    out = F.conv3d(dense, weight.permute(0, 4, 1, 2, 3), bias=bias, padding=k // 2)
    return out[batch, :, g[:, 0], g[:, 1], g[:, 2]]


def test_patch_applied_once_and_module_is_cached():
    first = spconv_module()
    assert spconv_compat.is_patched()
    assert spconv_module() is first
    if not torch.cuda.is_available():
        import spconv.pytorch.ops as ops

        assert ops.get_current_stream() == 0


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("threads", [1, 2])
def test_subm_conv_matches_dense_conv_forward_and_backward(kernel, threads):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        grid, batch = random_voxels(3000, 16)
        conv = SubMConv3d(6, 5, kernel, indice_key="k")
        with torch.no_grad():
            conv.bias.normal_()
        feats = torch.randn(grid.shape[0], 6, requires_grad=True)
        sp = sparse_tensor(feats, grid, batch, 2)
        out = conv(sp, feats)
        out_again = conv(sp, feats)  # cached rule book
        ref_feats = feats.detach().clone().requires_grad_(True)
        ref = dense_reference(ref_feats, grid, batch, 2, conv.conv.weight, conv.bias)
        assert torch.allclose(out, ref, atol=1e-5) and torch.equal(out, out_again)
        upstream = torch.randn_like(out)
        grads = torch.autograd.grad(out, [feats, conv.conv.weight, conv.bias], upstream)
        ref_grads = torch.autograd.grad(ref, [ref_feats, conv.conv.weight, conv.bias], upstream)
        for got, want in zip(grads, ref_grads):
            assert torch.allclose(got, want, atol=1e-4)
    finally:
        torch.set_num_threads(old)


def test_spconv_own_backward_runs_on_cpu():
    """spconv's autograd function itself (not our torch path): backward needs the stream fix on CPU."""
    spconv_torch = spconv_module()
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # spconv's CPU scatter races with more threads
    try:
        grid, batch = random_voxels(800, 10, batch_size=1, seed=1)
        conv = spconv_torch.SubMConv3d(4, 3, 3, padding=1, bias=False, algo=spconv_torch.ConvAlgo.Native)
        feats = torch.randn(grid.shape[0], 4, requires_grad=True)
        out = conv(sparse_tensor(feats, grid, batch, 1)).features
        (out**2).sum().backward()
        ref_feats = feats.detach().clone().requires_grad_(True)
        ref = dense_reference(ref_feats, grid, batch, 1, conv.weight, None)
        (ref**2).sum().backward()
        assert torch.allclose(out, ref, atol=1e-5)
        assert torch.allclose(feats.grad, ref_feats.grad, atol=1e-4)
    finally:
        torch.set_num_threads(old)
