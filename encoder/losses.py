"""Distillation losses: per-teacher cosine + SmoothL1, and group-pooled InfoNCE.

Pure functions over plain tensors.

- :func:`distill_loss` compares projected student features with lifted teacher
  targets on the Gaussians that have a target:
  ``cos_weight * mean(1 - cos(p, t)) + l1_weight * SmoothL1(p, t)``.
- :func:`group_infonce` pools the student features of each group (semantic
  class for the language teacher, instance for the object-aware teacher) within
  each scene, splits every group at random into two halves, and asks the mean
  of one half to pick out the mean of the other half of the same group among
  all groups of the scene (symmetric InfoNCE, temperature 0.2 in the paper).
  Groups smaller than ``min_group_size`` are skipped; a scene with fewer than
  two usable groups contributes nothing.
- :func:`loss_subset` picks the Gaussians that enter the losses: uniformly, or
  class-balanced (each drawn with weight count(its class)^-power).
- :func:`vocab_kl` matches how the student and the teacher rank a fixed text
  vocabulary: KL(softmax(cos(t, V) / tau) || softmax(cos(p, V) / tau)). Cosine
  distillation spends its effort on the large shared part of the language
  targets; open-vocabulary queries read only the small part that tells one
  word from another, which this term weighs directly. No labels are used:
  the teacher's own similarities are the soft targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distill_loss(
    pred: torch.Tensor,  # [M, D] student features on Gaussians with a target
    target: torch.Tensor,  # [M, D] lifted teacher features
    cos_weight: float = 1.0,
    l1_weight: float = 1.0,
    smooth_l1_beta: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cosine + SmoothL1 distillation loss. Returns (total, {"cos": ..., "l1": ...}).

    With M == 0 every term is a zero that still carries a gradient to ``pred``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"distill_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} must match")
    target = target.to(pred.dtype)
    if pred.shape[0] == 0:
        zero = pred.sum() * 0.0
        return zero, {"cos": zero.detach(), "l1": zero.detach()}
    cos = (1.0 - F.cosine_similarity(pred, target, dim=-1, eps=1e-6)).mean()
    l1 = F.smooth_l1_loss(pred, target, beta=smooth_l1_beta)
    total = cos_weight * cos + l1_weight * l1
    return total, {"cos": cos.detach(), "l1": l1.detach()}


def vocab_kl(
    pred: torch.Tensor,  # [M, D] student features in the teacher's (text-aligned) space
    target: torch.Tensor,  # [M, D] lifted teacher features
    vocab: torch.Tensor,  # [V, D] text embeddings of a vocabulary (normalised here)
    temperature: float = 0.03,
) -> torch.Tensor:
    """Mean over rows of KL(q_t || q_p), q_x = softmax(cos(x, vocab) / temperature). Zero (with a gradient)
    when M == 0 and exactly zero where pred is a positive multiple of target."""
    if pred.shape != target.shape or vocab.shape[-1] != pred.shape[-1]:
        raise ValueError(f"vocab_kl: pred {tuple(pred.shape)}, target {tuple(target.shape)} and vocab "
                         f"{tuple(vocab.shape)} disagree (expected [M, D], [M, D], [V, D])")
    if temperature <= 0:
        raise ValueError(f"vocab_kl: temperature={temperature}, expected > 0")
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    v = F.normalize(vocab.to(pred.device, pred.dtype), dim=-1)
    log_q_p = F.log_softmax(F.normalize(pred, dim=-1, eps=1e-6) @ v.T / temperature, dim=-1)
    log_q_t = F.log_softmax(F.normalize(target.to(pred.dtype), dim=-1, eps=1e-6) @ v.T / temperature, dim=-1)
    return F.kl_div(log_q_p, log_q_t, log_target=True, reduction="batchmean")


def loss_subset(
    labels: torch.Tensor,  # [N] int64 class per candidate (any negative value counts as one more class)
    k: int,
    power: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``k`` distinct positions into ``labels`` (all of them, in order, when N <= k).

    power 0 draws uniformly (``torch.randperm``: the classes in proportion to their size, walls and floors
    first); power p > 0 draws without replacement with each row weighted by count(its class)^-p, so p = 1 gives
    every class the same expected share of the first draws and p = 0.5 shares in proportion to sqrt(size)."""
    n = labels.shape[0]
    if n <= k:
        return torch.arange(n, device=labels.device)
    if power <= 0:
        return torch.randperm(n, generator=generator)[:k].to(labels.device)
    _, inv, counts = torch.unique(labels.cpu().clamp(min=-1), return_inverse=True, return_counts=True)
    weights = counts.double().pow(-power)[inv]
    return torch.multinomial(weights, k, replacement=False, generator=generator).to(labels.device)


def split_group_halves(
    groups: torch.Tensor,  # [N] int64 group key, < 0 = no group
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Assign each grouped row to a random half of its group.

    Returns (keys [U] unique group keys, slot [N] int64 in [0, 2U) or -1, counts [U]):
    row i goes to half ``slot[i] % 2`` of group ``keys[slot[i] // 2]``. A group of n rows puts
    floor(n/2) rows in half 0 and the rest in half 1.
    """
    n = groups.shape[0]
    slot = torch.full((n,), -1, dtype=torch.long, device=groups.device)
    valid = torch.nonzero(groups >= 0, as_tuple=False).squeeze(1)
    if valid.numel() == 0:
        empty = groups.new_zeros(0)
        return empty, slot, empty
    keys, inv, counts = torch.unique(groups[valid], return_inverse=True, return_counts=True)
    rand = torch.rand(valid.numel(), generator=generator, device="cpu").to(groups.device, torch.float64)
    # sort by group first, random order inside a group (rand < 1 never crosses a group boundary)
    order = torch.argsort(inv.to(torch.float64) + 0.999 * rand)
    inv_sorted = inv[order]
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(valid.numel(), device=groups.device) - starts[inv_sorted]
    half = (rank >= counts[inv_sorted] // 2).long()
    slot[valid[order]] = inv_sorted * 2 + half
    return keys, slot, counts


def group_infonce(
    features: torch.Tensor,  # [N, D]
    groups: torch.Tensor,  # [N] int64 group id (class or instance), < 0 = ignore
    batch: torch.Tensor,  # [N] int64 scene index of each row
    min_group_size: int = 100,
    temperature: float = 0.2,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """Symmetric InfoNCE between the two random halves of every group, per scene.

    Returns (loss averaged over contributing scenes, number of groups used). The loss is a
    zero with a gradient when nothing qualifies.
    """
    if features.shape[0] != groups.shape[0] or groups.shape[0] != batch.shape[0]:
        raise ValueError(f"group_infonce: features {tuple(features.shape)}, groups {tuple(groups.shape)}, batch {tuple(batch.shape)} disagree")
    if temperature <= 0:
        raise ValueError(f"group_infonce: temperature={temperature}, expected > 0")
    groups = groups.long()
    span = int(groups.max().item()) + 1 if groups.numel() else 1
    key = torch.where(groups >= 0, batch.long() * span + groups, torch.full_like(groups, -1))
    keys, slot, counts = split_group_halves(key, generator)
    zero = features.sum() * 0.0
    if keys.numel() == 0:
        return zero, 0
    keep = counts >= max(int(min_group_size), 2)
    rows = slot >= 0
    sums = features.new_zeros(2 * keys.numel(), features.shape[1])
    sums = sums.index_add(0, slot[rows], features[rows])
    sizes = torch.bincount(slot[rows], minlength=2 * keys.numel()).clamp_min(1).to(features.dtype)
    means = (sums / sizes[:, None]).view(keys.numel(), 2, -1)
    scene_of_group = keys // span
    losses, used = [], 0
    for scene in torch.unique(scene_of_group[keep]).tolist():
        sel = keep & (scene_of_group == scene)
        if int(sel.sum()) < 2:
            continue
        a = F.normalize(means[sel, 0], dim=-1)
        b = F.normalize(means[sel, 1], dim=-1)
        logits = a @ b.T / temperature
        labels = torch.arange(a.shape[0], device=a.device)
        losses.append(0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)))
        used += int(sel.sum())
    if not losses:
        return zero, 0
    return torch.stack(losses).mean(), used
