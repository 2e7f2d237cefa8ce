"""Contrastive loss on features: symmetric multi-positive InfoNCE with a learnable temperature.

CLIP's loss treats only the diagonal as positive. Here any pair that shares a label or group
is a positive, so two images of a seven are never pushed apart as false negatives. For each
anchor the loss averages -log p over its positives (the "outside" form of supervised
contrastive loss), which pulls every positive up rather than only the easiest one.
"""

from __future__ import annotations

import torch


def positive_mask(a_labels: torch.Tensor, a_groups: torch.Tensor,
                  b_labels: torch.Tensor, b_groups: torch.Tensor) -> torch.Tensor:
    """Pairs sharing a label or a group (ids < 0 mean 'none' and match nothing)."""
    same_label = (a_labels[:, None] == b_labels[None, :]) & (a_labels[:, None] >= 0)
    same_group = (a_groups[:, None] == b_groups[None, :]) & (a_groups[:, None] >= 0)
    return same_label | same_group


def multi_positive_infonce(a: torch.Tensor, b: torch.Tensor, pos: torch.Tensor,
                           logit_scale: torch.Tensor, exclude_diagonal: bool = False) -> torch.Tensor:
    """Symmetric loss between normalised features ``a`` (N, D) and ``b`` (M, D).

    ``exclude_diagonal`` is for a modality against itself: an item is not its own positive
    nor a candidate.
    """
    logits = logit_scale.exp() * a @ b.t()
    if exclude_diagonal:
        eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(eye, float("-inf"))
        pos = pos & ~eye
        log_prob_r = logits.log_softmax(dim=1).masked_fill(eye, 0.0)
        log_prob_c = logits.t().log_softmax(dim=1).masked_fill(eye, 0.0)
        return 0.5 * (_from_log_prob(log_prob_r, pos) + _from_log_prob(log_prob_c, pos.t()))
    return 0.5 * (_from_log_prob(logits.log_softmax(dim=1), pos)
                  + _from_log_prob(logits.t().log_softmax(dim=1), pos.t()))


def _from_log_prob(log_prob: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Mean over anchors with at least one positive of -mean log p(positive)."""
    count = pos.sum(dim=1)
    valid = count > 0
    if not valid.any():
        return log_prob.masked_fill(~torch.isfinite(log_prob), 0.0).sum() * 0.0
    return (-(log_prob * pos).sum(dim=1)[valid] / count[valid]).mean()
