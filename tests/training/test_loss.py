"""Multi-positive InfoNCE on real torch tensors, checked against a plain-Python reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from crossmodal.training.loss import multi_positive_infonce, positive_mask


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def _reference(a: torch.Tensor, b: torch.Tensor, pos: torch.Tensor, logit_scale: float,
               exclude_diagonal: bool = False) -> float:
    """The loss written out with loops: for each anchor with positives, -mean log softmax over its
    positives; averaged over such anchors; the two directions averaged."""
    s = math.exp(logit_scale)
    av, bv, pv = a.tolist(), b.tolist(), pos.tolist()
    logits = [[s * sum(x * y for x, y in zip(ai, bj)) for bj in bv] for ai in av]

    def one_direction(mat, mask):
        per_anchor = []
        for i, row in enumerate(mat):
            candidates = [j for j in range(len(row)) if not (exclude_diagonal and i == j)]
            lse = math.log(sum(math.exp(row[j]) for j in candidates))
            positives = [j for j in candidates if mask[i][j]]
            if positives:
                per_anchor.append(-sum(row[j] - lse for j in positives) / len(positives))
        return sum(per_anchor) / len(per_anchor) if per_anchor else 0.0

    transpose = [list(col) for col in zip(*logits)]
    mask_t = [list(col) for col in zip(*pv)]
    return 0.5 * (one_direction(logits, pv) + one_direction(transpose, mask_t))


def _scale(value: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(math.log(value), dtype=torch.float64, requires_grad=grad)


def _normalised(gen: torch.Generator, n: int, d: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=gen, dtype=torch.float64), dim=-1)


# --------------------------------------------------------------------------- positive_mask


def test_positive_mask_labels_and_groups():
    a_labels, a_groups = _t([0, 1, -1, 2]), _t([-1, 5, -1, 7])
    b_labels, b_groups = _t([0, -1, -1, 3, 2]), _t([-1, 5, -1, 7, -1])
    mask = positive_mask(a_labels, a_groups, b_labels, b_groups)
    assert mask.dtype == torch.bool
    assert mask.tolist() == [
        [True, False, False, False, False],   # label 0
        [False, True, False, False, False],   # group 5 (label 1 appears nowhere in b)
        [False, False, False, False, False],  # -1 label and group match nothing, not even -1
        [False, False, False, True, True],    # group 7 with b3, label 2 with b4
    ]


def test_positive_mask_same_set_is_symmetric_with_diagonal_for_real_ids():
    labels, groups = _t([4, 4, -1, 9]), _t([-1, -1, -1, -1])
    mask = positive_mask(labels, groups, labels, groups)
    assert torch.equal(mask, mask.t())
    assert mask.diagonal().tolist() == [True, True, False, True]
    assert mask.sum().item() == 5


# --------------------------------------------------------------------------- loss values


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_on_random_batches(seed):
    gen = torch.Generator().manual_seed(seed)
    a, b = _normalised(gen, 5, 8), _normalised(gen, 7, 8)
    pos = positive_mask(torch.randint(-1, 3, (5,), generator=gen), torch.randint(-1, 4, (5,), generator=gen),
                        torch.randint(-1, 3, (7,), generator=gen), torch.randint(-1, 4, (7,), generator=gen))
    loss = multi_positive_infonce(a, b, pos, _scale(3.0))
    assert loss.shape == ()
    assert loss.item() == pytest.approx(_reference(a, b, pos, math.log(3.0)), rel=1e-10)
    # symmetric in its two sides
    swapped = multi_positive_infonce(b, a, pos.t(), _scale(3.0))
    assert swapped.item() == pytest.approx(loss.item(), rel=1e-12)


def test_aligned_features_beat_shuffled_ones():
    gen = torch.Generator().manual_seed(0)
    feats = _normalised(gen, 8, 16)
    labels = torch.arange(8)
    none = torch.full((8,), -1)
    pos = positive_mask(labels, none, labels, none)
    aligned = multi_positive_infonce(feats, feats, pos, _scale(20.0))
    shuffled = multi_positive_infonce(feats, feats[torch.roll(torch.arange(8), 1)], pos, _scale(20.0))
    assert aligned.item() < 0.5
    assert shuffled.item() > aligned.item() + 3.0


def test_identical_same_label_pair_hand_computed():
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    feats = torch.tensor([e1, e1, e2], dtype=torch.float64)
    labels, none = _t([0, 0, 1]), _t([-1, -1, -1])
    pos = positive_mask(labels, none, labels, none)
    loss = multi_positive_infonce(feats, feats, pos, _scale(10.0))
    # rows/columns 0 and 1: logits (10, 10, 0), two positives -> log(2 + e^-10);
    # row/column 2: logits (0, 0, 10), one positive -> log(1 + 2 e^-10)
    want = (2 * math.log(2 + math.exp(-10)) + math.log(1 + 2 * math.exp(-10))) / 3
    assert loss.item() == pytest.approx(want, rel=1e-12)


def _loss_as_angle_grows(same_label: bool) -> float:
    """d loss / d theta where item 1 sits at angle theta from item 0 in both modalities."""
    theta = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    e = torch.eye(3, dtype=torch.float64)
    rotated = torch.cos(theta) * e[0] + torch.sin(theta) * e[1]
    feats = torch.stack([e[0], rotated, e[2]])
    labels, none = _t([0, 0 if same_label else 1, 2]), _t([-1, -1, -1])
    loss = multi_positive_infonce(feats, feats, positive_mask(labels, none, labels, none), _scale(10.0))
    (grad,) = torch.autograd.grad(loss, theta)
    return grad.item()


def test_items_sharing_a_label_are_not_negatives():
    # Same label: moving the two items apart raises the loss (they are pulled together).
    assert _loss_as_angle_grows(same_label=True) > 0.1
    # Different labels: moving them apart lowers the loss (they are pushed apart), as in plain CLIP.
    assert _loss_as_angle_grows(same_label=False) < -0.1


def test_shared_group_counts_like_a_shared_label():
    gen = torch.Generator().manual_seed(5)
    a, b = _normalised(gen, 4, 6), _normalised(gen, 4, 6)
    none = _t([-1, -1, -1, -1])
    by_label = positive_mask(_t([0, 0, 1, 2]), none, _t([0, 0, 1, 2]), none)
    by_group = positive_mask(none, _t([3, 3, 8, 9]), none, _t([3, 3, 8, 9]))
    assert torch.equal(by_label, by_group)
    assert multi_positive_infonce(a, b, by_group, _scale(5.0)).item() == pytest.approx(
        multi_positive_infonce(a, b, by_label, _scale(5.0)).item(), rel=1e-12)


# --------------------------------------------------------------------------- exclude_diagonal


def test_exclude_diagonal_hand_computed():
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    feats = torch.tensor([e1, e1, e2], dtype=torch.float64)
    labels, none = _t([0, 0, 1]), _t([-1, -1, -1])
    pos = positive_mask(labels, none, labels, none)
    loss = multi_positive_infonce(feats, feats, pos, _scale(10.0), exclude_diagonal=True)
    # items 0 and 1: the only candidates are the other two items, logits (10, 0) -> log(1 + e^-10);
    # item 2's only positive would be itself, so it is ignored
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-10)), rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_exclude_diagonal_matches_reference_with_finite_gradients(seed):
    gen = torch.Generator().manual_seed(seed)
    feats = _normalised(gen, 9, 6).requires_grad_(True)
    labels = torch.randint(0, 4, (9,), generator=gen)
    groups = torch.randint(-1, 3, (9,), generator=gen)
    pos = positive_mask(labels, groups, labels, groups)
    assert pos.diagonal().all()
    scale = _scale(7.0, grad=True)
    loss = multi_positive_infonce(feats, feats, pos, scale, exclude_diagonal=True)
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx(_reference(feats.detach(), feats.detach(), pos, math.log(7.0), True),
                                        rel=1e-10)
    loss.backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    assert torch.isfinite(scale.grad) and scale.grad.item() != 0.0
    # the diagonal mask is not modified in place
    assert pos.diagonal().all()


def test_exclude_diagonal_never_counts_an_item_as_its_own_positive():
    gen = torch.Generator().manual_seed(2)
    feats = _normalised(gen, 5, 4)
    labels, none = torch.arange(5), torch.full((5,), -1)
    pos = positive_mask(labels, none, labels, none)
    assert torch.equal(pos, torch.eye(5, dtype=torch.bool))
    # every item's only positive is itself: with the diagonal excluded nobody has a positive
    loss = multi_positive_infonce(feats, feats, pos, _scale(10.0), exclude_diagonal=True)
    assert loss.item() == 0.0
    # whereas without exclusion the diagonal is the whole positive set
    assert multi_positive_infonce(feats, feats, pos, _scale(10.0)).item() > 0.0


def test_exclude_diagonal_with_two_items():
    feats = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64, requires_grad=True)
    labels, none = _t([1, 1]), _t([-1, -1])
    loss = multi_positive_infonce(feats, feats, positive_mask(labels, none, labels, none), _scale(4.0),
                                  exclude_diagonal=True)
    # each item has exactly one candidate, which is its positive: -log 1 = 0
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    loss.backward()
    assert torch.isfinite(feats.grad).all()


# --------------------------------------------------------------------------- anchors without positives


def test_anchor_without_positive_is_ignored():
    e = torch.eye(4, dtype=torch.float64)
    a = F.normalize(torch.stack([e[0] + 0.5 * e[1], e[1] + 0.5 * e[2], e[2] + 0.5 * e[0]]), dim=-1)
    b = e[:3]
    labels, groups = _t([0, 1, 2]), _t([-1, -1, -1])
    pos = positive_mask(labels, groups, labels, groups)
    base = multi_positive_infonce(a, b, pos, _scale(30.0))

    # an extra anchor orthogonal to everything, with no label or group
    a_x = torch.cat([a, e[3:4]])
    pos_x = positive_mask(torch.cat([labels, _t([-1])]), torch.cat([groups, _t([-1])]), labels, groups)
    assert not pos_x[3].any()
    with_x = multi_positive_infonce(a_x, b, pos_x, _scale(30.0))
    assert math.isfinite(with_x.item())
    want = _reference(a_x, b, pos_x, math.log(30.0))
    assert with_x.item() == pytest.approx(want, rel=1e-10)
    # its row is left out of the mean rather than counted as zero
    assert with_x.item() > base.item()

    # far from every gallery item it adds nothing to any softmax, so the loss is unchanged
    far = -F.normalize(e[0] + e[1] + e[2], dim=0)
    with_far = multi_positive_infonce(torch.cat([a, far[None]]), b, pos_x, _scale(30.0))
    assert with_far.item() == pytest.approx(base.item(), rel=1e-9)
    assert base.item() > 1e-7


def test_no_positive_anywhere_gives_zero():
    gen = torch.Generator().manual_seed(0)
    a, b = _normalised(gen, 3, 4), _normalised(gen, 2, 4)
    pos = positive_mask(_t([0, 1, 2]), _t([-1, -1, -1]), _t([5, 6]), _t([-1, -1]))
    assert not pos.any()
    assert multi_positive_infonce(a, b, pos, _scale(10.0)).item() == 0.0


# --------------------------------------------------------------------------- logit scale


def test_gradient_flows_to_logit_scale():
    feats = torch.eye(4, dtype=torch.float64)
    labels, none = torch.arange(4), torch.full((4,), -1)
    pos = positive_mask(labels, none, labels, none)
    scale = _scale(5.0, grad=True)
    loss = multi_positive_infonce(feats, feats, pos, scale)
    loss.backward()
    # loss = log(e^s + 3) - s with s = e^scale, so d loss / d scale = s (p - 1), p = e^s / (e^s + 3)
    s = 5.0
    p = math.exp(s) / (math.exp(s) + 3)
    assert loss.item() == pytest.approx(math.log(math.exp(s) + 3) - s, rel=1e-12)
    assert scale.grad.item() == pytest.approx(s * (p - 1), rel=1e-9)
    assert scale.grad.item() < 0  # sharper temperature helps perfectly aligned features


def test_logit_scale_gradient_matches_finite_difference():
    gen = torch.Generator().manual_seed(11)
    a, b = _normalised(gen, 6, 5), _normalised(gen, 6, 5)
    labels = _t([0, 0, 1, 1, 2, 3])
    groups = _t([-1, 4, -1, -1, -1, 4])
    pos = positive_mask(labels, groups, labels, groups)
    scale = _scale(8.0, grad=True)
    multi_positive_infonce(a, b, pos, scale).backward()
    h = 1e-6
    up = multi_positive_infonce(a, b, pos, torch.tensor(math.log(8.0) + h, dtype=torch.float64))
    down = multi_positive_infonce(a, b, pos, torch.tensor(math.log(8.0) - h, dtype=torch.float64))
    assert scale.grad.item() == pytest.approx((up - down).item() / (2 * h), rel=1e-5)
