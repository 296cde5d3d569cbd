"""Distillation losses and group InfoNCE against brute-force references."""

import math

import pytest
import torch
import torch.nn.functional as F

from encoder.heads import HeadsConfig, MultiTeacherHeads, TeacherProjector
from encoder.losses import distill_loss, group_infonce, loss_subset, split_group_halves, vocab_kl


def test_distill_loss_matches_formula_and_zero_at_target():
    pred, target = torch.randn(50, 8), torch.randn(50, 8)
    total, parts = distill_loss(pred, target, cos_weight=2.0, l1_weight=0.5)
    cos_ref = sum(1 - torch.dot(p, t) / (p.norm() * t.norm()) for p, t in zip(pred, target)) / 50
    d = (pred - target).abs()
    l1_ref = torch.where(d < 1, 0.5 * d**2, d - 0.5).mean()
    assert torch.allclose(parts["cos"], cos_ref, atol=1e-5)
    assert torch.allclose(parts["l1"], l1_ref, atol=1e-6)
    assert torch.allclose(total, 2.0 * cos_ref + 0.5 * l1_ref, atol=1e-5)
    zero, _ = distill_loss(target.clone(), target)
    assert zero.item() == pytest.approx(0.0, abs=1e-6)


def test_distill_loss_empty_keeps_graph():
    pred = torch.randn(0, 4, requires_grad=True)
    total, _ = distill_loss(pred, torch.zeros(0, 4))
    total.backward()
    assert total.item() == 0.0


def test_split_group_halves_sizes():
    groups = torch.tensor([3] * 7 + [-1] * 2 + [5] * 4)
    keys, slot, counts = split_group_halves(groups, torch.Generator().manual_seed(1))
    assert keys.tolist() == [3, 5] and counts.tolist() == [7, 4]
    assert (slot[7:9] == -1).all()
    assert torch.bincount(slot[slot >= 0], minlength=4).tolist() == [3, 4, 2, 2]
    assert set((slot[:7] // 2).tolist()) == {0} and set((slot[9:] // 2).tolist()) == {1}


def _reference_infonce(features, groups, batch, min_size, temperature, slot, keys):
    """Brute force from the slot assignment: loop over scenes and groups."""
    span = int(groups.max()) + 1
    losses = []
    for s in batch.unique().tolist():
        a, b = [], []
        for gi, k in enumerate(keys.tolist()):
            if k // span != s:
                continue
            rows = slot // 2 == gi
            if int(rows.sum()) < min_size:
                continue
            a.append(features[slot == 2 * gi].mean(0))
            b.append(features[slot == 2 * gi + 1].mean(0))
        if len(a) < 2:
            continue
        a, b = F.normalize(torch.stack(a), dim=-1), F.normalize(torch.stack(b), dim=-1)
        n = len(a)
        tot = 0.0
        for i in range(n):
            row = torch.stack([torch.dot(a[i], b[j]) for j in range(n)]) / temperature
            col = torch.stack([torch.dot(a[j], b[i]) for j in range(n)]) / temperature
            tot = tot + 0.5 * (-(row[i] - torch.logsumexp(row, 0)) - (col[i] - torch.logsumexp(col, 0)))
        losses.append(tot / n)
    return torch.stack(losses).mean()


def test_group_infonce_matches_brute_force():
    torch.manual_seed(0)
    n = 300
    features = torch.randn(n, 6)
    groups = torch.randint(-1, 5, (n,))
    batch = torch.cat([torch.zeros(170, dtype=torch.long), torch.ones(130, dtype=torch.long)])
    gen_state = torch.Generator().manual_seed(7)
    loss, used = group_infonce(features, groups, batch, min_group_size=20, temperature=0.2, generator=gen_state)
    # replay the same random split
    span = int(groups.max()) + 1
    key = torch.where(groups >= 0, batch * span + groups, torch.full_like(groups, -1))
    keys, slot, _ = split_group_halves(key, torch.Generator().manual_seed(7))
    ref = _reference_infonce(features, groups, batch, 20, 0.2, slot, keys)
    assert used == int(sum(int(((groups == g) & (batch == s)).sum()) >= 20 for s in (0, 1) for g in range(5)))
    assert torch.allclose(loss, ref, atol=1e-5)


def test_group_infonce_separated_groups_low_loss_and_skips_small():
    centers = torch.eye(4) * 10
    groups = torch.arange(4).repeat_interleave(50)
    features = centers[groups] + 0.01 * torch.randn(200, 4)
    loss, used = group_infonce(features, groups, torch.zeros(200, dtype=torch.long), min_group_size=10)
    assert used == 4 and loss.item() == pytest.approx(math.log(1 + 3 * math.exp(-1 / 0.2)), rel=1e-2)  # orthogonal means
    # all groups below the minimum size -> zero loss, still differentiable
    f = features.clone().requires_grad_(True)
    loss, used = group_infonce(f, groups, torch.zeros(200, dtype=torch.long), min_group_size=100)
    loss.backward()
    assert used == 0 and loss.item() == 0.0
    # one group alone gives no negatives: skipped
    _, used = group_infonce(features[:50], groups[:50], torch.zeros(50, dtype=torch.long), min_group_size=10)
    assert used == 0


def test_projector_shapes_and_heads_roundtrip(tmp_path):
    proj = TeacherProjector(16, 5)
    assert proj(torch.randn(3, 16)).shape == (3, 5)
    assert proj.fc1.out_features == 64
    heads = MultiTeacherHeads(HeadsConfig(in_dim=16, teacher_dims={"caption-minilm": 384, "a.b": 7}))
    out = heads(torch.randn(4, 16))
    assert {k: v.shape[1] for k, v in out.items()} == {"caption-minilm": 384, "a.b": 7}
    heads.save_pretrained(tmp_path / "h")
    again = MultiTeacherHeads.from_pretrained(tmp_path / "h")
    x = torch.randn(4, 16)
    assert torch.equal(heads.project("a.b", x), again.project("a.b", x))
    with pytest.raises(ValueError, match="teacher_dims"):
        HeadsConfig(in_dim=16, teacher_dims={"x": 0})


@pytest.mark.parametrize("power, share", [(0.0, 0.1), (0.5, 0.25), (1.0, 0.5)])
def test_loss_subset_shares_follow_the_class_power(power, share):
    """9,000 wall Gaussians and 1,000 cup Gaussians: the cups' expected share of a small draw is
    n_cup^(1-p) / (n_cup^(1-p) + n_wall^(1-p)): 10 % uniform, 25 % at p = 0.5, 50 % at p = 1."""
    labels = torch.cat([torch.zeros(9000, dtype=torch.long), torch.ones(1000, dtype=torch.long)])
    shares = []
    for seed in range(20):
        pick = loss_subset(labels, 300, power, torch.Generator().manual_seed(seed))
        assert pick.shape == (300,) and pick.unique().numel() == 300  # distinct rows
        shares.append(labels[pick].float().mean().item())
    assert abs(sum(shares) / len(shares) - share) < 0.03


def test_loss_subset_keeps_everything_when_small_and_counts_unlabelled_as_a_class():
    labels = torch.tensor([3, -1, 3, -5])
    assert loss_subset(labels, 4, 1.0).tolist() == [0, 1, 2, 3]
    # 2 labelled-3 rows and 2 unlabelled rows: at p = 1 both classes get half the mass
    labels = torch.cat([torch.full((900,), 3), torch.full((100,), -1), torch.full((100,), -7)])
    picks = torch.cat([loss_subset(labels, 50, 1.0, torch.Generator().manual_seed(s)) for s in range(20)])
    assert abs((labels[picks] < 0).float().mean().item() - 0.5) < 0.05


def test_vocab_kl_matches_formula_and_vanishes_on_scaled_targets():
    g = torch.Generator().manual_seed(0)
    pred, target, vocab = torch.randn(20, 6, generator=g), torch.randn(20, 6, generator=g), torch.randn(9, 6, generator=g)
    tau = 0.07
    ref = 0.0
    for p, t in zip(pred, target):
        cp = torch.stack([torch.dot(p, v) / (p.norm() * v.norm()) for v in vocab]) / tau
        ct = torch.stack([torch.dot(t, v) / (t.norm() * v.norm()) for v in vocab]) / tau
        qp, qt = torch.softmax(cp, 0), torch.softmax(ct, 0)
        ref += float((qt * (qt.log() - qp.log())).sum())
    assert vocab_kl(pred, target, vocab, tau).item() == pytest.approx(ref / 20, rel=1e-4)
    # scale of the features and of the vocabulary rows does not matter; the ranking of the vocabulary does
    assert vocab_kl(3.0 * target, target, 5.0 * vocab, tau).item() == pytest.approx(0.0, abs=1e-6)
    assert vocab_kl(pred, target, vocab, tau).item() > 0.01
    empty = torch.zeros(0, 6, requires_grad=True)
    out = vocab_kl(empty, torch.zeros(0, 6), vocab)
    out.backward()
    assert out.item() == 0.0
    with pytest.raises(ValueError, match="disagree"):
        vocab_kl(pred, target, torch.randn(9, 5))
    with pytest.raises(ValueError, match="temperature"):
        vocab_kl(pred, target, vocab, 0.0)


def test_vocab_kl_teaches_the_teachers_ranking_of_the_words():
    """Descending on the KL alone makes the student pick the teacher's nearest word on every row, and moves it
    there even when the cosine to the target is already high (the case cosine distillation handles badly)."""
    g = torch.Generator().manual_seed(1)
    vocab = F.normalize(torch.randn(12, 16, generator=g), dim=-1)
    target = vocab[torch.arange(40) % 12] + 0.3 * torch.randn(40, 16, generator=g)
    shared = 3.0 * torch.randn(16, generator=g)  # a big common part: both start with cosine ~0.9 to each other
    pred = (shared + 0.5 * torch.randn(40, 16, generator=g)).requires_grad_(True)
    nearest = lambda x: (F.normalize(x, dim=-1) @ vocab.T).argmax(1)
    assert (nearest(pred.detach()) == nearest(target)).float().mean() < 0.5
    opt = torch.optim.Adam([pred], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        vocab_kl(pred, target, vocab, 0.05).backward()
        opt.step()
    assert torch.equal(nearest(pred.detach()), nearest(target))
