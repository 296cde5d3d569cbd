"""spconv on machines without CUDA, and a submanifold convolution that is correct on both.

Problems of spconv 2.3's CPU path (measured on our machines):

- backward calls ``torch.cuda.current_stream()`` through
  ``spconv.pytorch.ops.get_current_stream`` and fails without CUDA; we replace
  that function by one returning stream 0 (the null stream) when CUDA is absent
  (:func:`spconv_module`, applied once per process);
- a conv built with ``bias=True`` fails in forward on CPU ("cpu don't support
  act and bias"): :class:`SubMConv3d` keeps the bias as its own parameter;
- every CPU conv must use ``ConvAlgo.Native``;
- the Native CPU feature path (``SpconvOps.scatter_add_cpu``) races when torch
  runs more than one thread: outputs change from call to call and are wrong.
  On CPU tensors :class:`SubMConv3d` therefore takes only the rule book from
  spconv (``ops.get_indice_pairs``) and does gather -> matmul -> scatter-add
  with torch ops (threaded, deterministic, differentiable by autograd). On CUDA
  it calls the spconv module itself.

The weights live in the wrapped ``spconv.pytorch.SubMConv3d`` (KRSC layout in
every spconv 2.x), so checkpoints are the same on CPU and CUDA.
spconv is imported on first use only (``import encoder`` stays cheap).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

_PATCHED = False


def spconv_module():
    """``spconv.pytorch`` with the CPU fixes applied (once per process)."""
    global _PATCHED
    import spconv.pytorch as spconv_torch

    if not _PATCHED:
        if not torch.cuda.is_available():
            import spconv.pytorch.ops as spconv_ops

            spconv_ops.get_current_stream = _null_stream
            try:  # the hash table module imports the same function by name
                import spconv.pytorch.hash as spconv_hash

                spconv_hash.get_current_stream = _null_stream
            except ImportError:  # pragma: no cover - older spconv
                pass
        _PATCHED = True
    return spconv_torch


def _null_stream() -> int:
    return 0


def is_patched() -> bool:
    """Whether :func:`spconv_module` has applied its fixes in this process."""
    return _PATCHED


def sparse_tensor(feats: Tensor, grid_coord: Tensor, batch: Tensor, batch_size: int):
    """A ``spconv.SparseConvTensor`` over integer voxels.

    feats: [M, C] float; grid_coord: [M, 3] int (>= 0); batch: [M] int; voxels must be unique.
    Convs with the same ``indice_key`` share their rule book through this tensor.
    """
    spconv_torch = spconv_module()
    indices = torch.cat([batch[:, None], grid_coord], 1).int().contiguous()
    if grid_coord.shape[0]:
        spatial_shape = (grid_coord.max(0).values + 1).tolist()
    else:
        spatial_shape = [1, 1, 1]
    return spconv_torch.SparseConvTensor(feats, indices, [int(s) for s in spatial_shape], int(batch_size))


def subm_rulebook(sparse, kernel_size: int) -> list[tuple[int, Tensor, Tensor]]:
    """Neighbour pairs of a submanifold conv from spconv: [(kernel offset k, input rows, output rows)], int64.

    Offsets index the flattened (k, k, k) kernel like the spconv weight [Cout, k, k, k, Cin]; the centre
    offset (every voxel to itself) is left out.
    """
    spconv_torch = spconv_module()
    from spconv.pytorch import ops as spconv_ops

    k = kernel_size
    _, pairs, counts = spconv_ops.get_indice_pairs(
        sparse.indices, sparse.batch_size, sparse.spatial_shape, spconv_torch.ConvAlgo.Native,
        [k] * 3, [1] * 3, [k // 2] * 3, [1] * 3, [0] * 3, True, False,
    )
    counts = counts.tolist()
    volume, centre = k**3, k**3 // 2
    book = []
    for i in range(volume):
        if i == centre:
            continue
        n = counts[i] if i < centre else counts[volume - 1 - i]  # spconv stores the counts of the first half only
        if n > 0:
            book.append((i, pairs[0, i, :n].long(), pairs[1, i, :n].long()))
    return book


def subm_conv_torch(feats: Tensor, weight: Tensor, book: list[tuple[int, Tensor, Tensor]]) -> Tensor:
    """Submanifold conv by gather -> matmul -> scatter-add. feats [M, Cin], weight [Cout, k, k, k, Cin] -> [M, Cout]."""
    w = weight.reshape(weight.shape[0], -1, weight.shape[-1])  # [Cout, k^3, Cin]
    out = feats @ w[:, w.shape[1] // 2].t()
    for i, rows_in, rows_out in book:
        out = out.index_add(0, rows_out, feats.index_select(0, rows_in) @ w[:, i].t())
    return out


class SubMConv3d(nn.Module):
    """Submanifold 3D convolution with a separate bias; correct on CPU and CUDA.

    forward(sparse: SparseConvTensor over the voxels, feats [M, Cin]) -> [M, Cout].
    ``indice_key`` names the rule book shared by convs with the same kernel on the same voxels.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, indice_key: str | None = None, bias: bool = True):
        super().__init__()
        spconv_torch = spconv_module()
        self.kernel_size = kernel_size
        self.indice_key = indice_key or f"subm{kernel_size}"
        self.conv = spconv_torch.SubMConv3d(
            in_channels,
            out_channels,
            kernel_size,
            padding=kernel_size // 2,
            bias=False,
            indice_key=self.indice_key,
            algo=spconv_torch.ConvAlgo.Native,
        )
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        fan_in = in_channels * kernel_size**3
        nn.init.trunc_normal_(self.conv.weight, std=1.0 / math.sqrt(fan_in))

    def forward(self, sparse, feats: Tensor) -> Tensor:
        if feats.device.type == "cpu":
            key = f"torch-rulebook:{self.indice_key}:{self.kernel_size}"
            book = sparse.indice_dict.get(key)
            if book is None:
                book = sparse.indice_dict[key] = subm_rulebook(sparse, self.kernel_size)
            out = subm_conv_torch(feats, self.conv.weight, book)
        else:
            spconv_torch = spconv_module()
            # spconv's own default: implicit GEMM up to 32 kernel offsets, Native beyond
            self.conv.algo = spconv_torch.ConvAlgo.MaskImplicitGemm if self.kernel_size**3 <= 32 else spconv_torch.ConvAlgo.Native
            out_sparse = self.conv(sparse.replace_feature(feats))
            # spconv caches the rule book in the *output* tensor's dict; share it so later convs reuse it
            sparse.indice_dict.update(out_sparse.indice_dict)
            out = out_sparse.features
        if self.bias is not None:
            out = out + self.bias
        return out
