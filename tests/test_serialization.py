"""Serialization codes against brute-force references and the invariants grid pooling relies on."""

import itertools

import pytest
import torch

from encoder.serialization import encode, hilbert_encode, order_and_inverse, serialize, z_order_encode


def all_cells(depth: int) -> torch.Tensor:
    n = 1 << depth
    return torch.tensor(list(itertools.product(range(n), repeat=3)), dtype=torch.long)


def morton_reference(x: int, y: int, z: int, depth: int) -> int:
    """Bit-by-bit interleave, x most significant in each triple."""
    code = 0
    for bit in range(depth):
        code |= ((x >> bit) & 1) << (3 * bit + 2)
        code |= ((y >> bit) & 1) << (3 * bit + 1)
        code |= ((z >> bit) & 1) << (3 * bit)
    return code


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_z_order_matches_bitwise_reference(depth):
    cells = all_cells(depth)
    expected = torch.tensor([morton_reference(*c, depth) for c in cells.tolist()])
    assert torch.equal(z_order_encode(cells, depth), expected)


def test_z_order_reference_on_large_coordinates():
    g = torch.Generator().manual_seed(1)
    cells = torch.randint(0, 1 << 16, (200, 3), generator=g)
    expected = torch.tensor([morton_reference(*c, 16) for c in cells.tolist()])
    assert torch.equal(z_order_encode(cells, 16), expected)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_hilbert_is_a_hilbert_curve(depth):
    """Brute force over the whole cube: a bijection onto [0, 8**depth) whose consecutive cells are face neighbours."""
    cells = all_cells(depth)
    codes = hilbert_encode(cells, depth)
    assert sorted(codes.tolist()) == list(range(8**depth))
    path = cells[torch.argsort(codes)]
    steps = (path[1:] - path[:-1]).abs().sum(1)
    assert bool((steps == 1).all())
    assert path[0].tolist() == [0, 0, 0]


def test_hilbert_first_level_is_the_reflected_gray_code():
    """Known answer: the 2x2x2 Hilbert cell visits cells in binary-reflected Gray code order (x, y, z bits)."""
    gray = [i ^ (i >> 1) for i in range(8)]
    expected = [[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in gray]
    cells = all_cells(1)
    assert cells[torch.argsort(hilbert_encode(cells, 1))].tolist() == expected


@pytest.mark.parametrize("order", ["z", "z-trans", "hilbert", "hilbert-trans"])
@pytest.mark.parametrize("depth", [2, 3, 4])
def test_codes_nest_across_levels(order, depth):
    """code >> 3 is the parent's code one level up: what grid pooling uses to carry codes to coarser stages."""
    cells = all_cells(depth)
    assert torch.equal(encode(cells, None, order, depth) >> 3, encode(cells >> 1, None, order, depth - 1))


def test_transposed_orders_swap_x_and_y():
    g = torch.Generator().manual_seed(2)
    cells = torch.randint(0, 64, (500, 3), generator=g)
    swapped = cells[:, [1, 0, 2]]
    for base in ("z", "hilbert"):
        assert torch.equal(encode(cells, None, base + "-trans", 6), encode(swapped, None, base, 6))


def test_batch_index_sorts_above_the_curve():
    g = torch.Generator().manual_seed(3)
    cells = torch.randint(0, 1 << 16, (1000, 3), generator=g)
    batch = torch.randint(0, 5, (1000,), generator=g)
    for order in ("z", "hilbert"):
        codes = encode(cells, batch, order, 16)
        assert bool((codes >= 0).all())
        assert bool((torch.diff(batch[torch.argsort(codes)]) >= 0).all())
        assert torch.equal(codes & ((1 << 48) - 1), encode(cells, None, order, 16))


def test_order_and_inverse_are_inverse_permutations():
    g = torch.Generator().manual_seed(4)
    cells = torch.randint(0, 256, (3000, 3), generator=g).unique(dim=0)
    batch = torch.randint(0, 3, (cells.shape[0],), generator=g)
    codes, order, inverse = serialize(cells, batch, ("z", "z-trans", "hilbert", "hilbert-trans"), depth=8)
    m = cells.shape[0]
    arange = torch.arange(m)
    for o in range(4):
        assert sorted(order[o].tolist()) == list(range(m))
        assert torch.equal(order[o][inverse[o]], arange)
        assert torch.equal(inverse[o][order[o]], arange)
        assert bool((torch.diff(codes[o][order[o]]) > 0).all())  # unique voxels -> strictly increasing codes


def test_order_and_inverse_handles_ties():
    order, inverse = order_and_inverse(torch.tensor([[3, 1, 3, 0]]))
    assert order.tolist() == [[3, 1, 0, 2]]
    assert torch.equal(order[0][inverse[0]], torch.arange(4))


def test_out_of_range_coordinates_are_rejected():
    with pytest.raises(ValueError, match="grid coordinates"):
        encode(torch.tensor([[0, 0, 16]]), None, "z", 4)
    with pytest.raises(ValueError, match="unknown serialization order"):
        encode(torch.tensor([[0, 0, 1]]), None, "peano", 4)
