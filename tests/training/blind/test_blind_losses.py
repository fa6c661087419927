"""Center loss, focal loss and GroupDRO on inputs small enough to check by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import CenterLoss, GroupDROLoss, focal_loss

X = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
Y = torch.tensor([0, 0, 1])


def test_center_loss_value_and_gradient_by_hand():
    cl = CenterLoss(2, 2, lam=1.0, alpha=0.5, init="zeros")
    x = X.clone().requires_grad_(True)
    loss = cl(x, Y)
    # 1/2 * mean(|x_i|^2) = 1/2 * (1 + 9 + 4) / 3
    assert loss.item() == pytest.approx(7 / 3)
    loss.backward()
    # d/dx_i = lam * (x_i - c_yi) / B with c = 0
    assert torch.allclose(x.grad, X / 3)
    assert not cl.centers.requires_grad  # centers move by the alpha rule only


def test_center_update_follows_paper_rule_by_hand():
    cl = CenterLoss(2, 2, lam=1.0, alpha=0.5, init="zeros")
    cl.update(X, Y)
    # class 0: delta = (2*0 - (4, 0)) / (1 + 2) -> c0 = 0 - 0.5 * delta = (2/3, 0)
    # class 1: delta = (0 - (0, 2)) / (1 + 1)   -> c1 = (0, 0.5)
    assert torch.allclose(cl.centers, torch.tensor([[2 / 3, 0.0], [0.0, 0.5]]))
    cl.update(torch.tensor([[2 / 3, 3.0]]), torch.tensor([0]))
    # n=1: delta = (c0 - x) / 2 = (0, -1.5) -> c0 = (2/3, 0.75); c1 untouched (absent)
    assert torch.allclose(cl.centers, torch.tensor([[2 / 3, 0.75], [0.0, 0.5]]))


def test_center_first_batch_init_and_absent_class():
    cl = CenterLoss(3, 2, lam=1.0, init="first_batch")
    assert cl(X, Y).item() == 0.0  # no center known yet: no pull toward an arbitrary origin
    cl.update(X, Y)
    assert torch.allclose(cl.centers, torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
    assert cl.initialized.tolist() == [True, True, False]
    # class 0 spread: |1-2|^2 + |3-2|^2, class 1 at its center: 1/2 * (1 + 1 + 0) / 3
    assert cl(X, Y).item() == pytest.approx(1 / 3)
    assert cl.distances(X, Y).tolist() == pytest.approx([1.0, 1.0, 0.0])


def test_center_update_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    cl = CenterLoss(4, 5, alpha=0.3, init="zeros")
    cl.centers.copy_(torch.randn(4, 5, generator=g))
    ref = cl.centers.clone()
    x = torch.randn(32, 5, generator=g)
    y = torch.randint(0, 3, (32,), generator=g)  # class 3 absent
    cl.update(x, y)
    for j in range(4):
        m = y == j
        delta = (ref[j] - x[m]).sum(0) / (1 + m.sum())
        ref[j] = ref[j] - 0.3 * delta
    assert torch.allclose(cl.centers, ref, atol=1e-6)


def test_center_loss_under_autocast_is_float32():
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 4)
    cl = CenterLoss(2, 4, lam=1.0, init="zeros")
    cl.update(torch.randn(8, 4), torch.tensor([0, 1] * 4))
    x = torch.randn(8, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = lin(x)
        assert feats.dtype == torch.bfloat16
        loss = cl(feats, torch.tensor([0, 1] * 4))
    assert loss.dtype == torch.float32
    expected = 0.5 * ((feats.float() - cl.centers[torch.tensor([0, 1] * 4)]) ** 2).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()


@pytest.mark.parametrize("bad", [
    dict(num_classes=0, feat_dim=2), dict(num_classes=2, feat_dim=2, alpha=0.0),
    dict(num_classes=2, feat_dim=2, lam=-1), dict(num_classes=2, feat_dim=2, init="random"),
], ids=["no-classes", "alpha-0", "negative-lambda", "bad-init"])
def test_center_loss_rejects_bad_options(bad):
    with pytest.raises(ValueError, match="CenterLoss"):
        CenterLoss(**bad)


def test_center_loss_rejects_bad_shapes():
    cl = CenterLoss(2, 3)
    with pytest.raises(ValueError, match=r"features must be \[B, 3\]"):
        cl(X, Y)
    with pytest.raises(ValueError, match="labels must be in"):
        CenterLoss(2, 2)(X, torch.tensor([0, 2, 1]))


def test_focal_loss_by_hand():
    logits = torch.zeros(1, 2)
    # p = 0.5: -(1 - 0.5)^2 * ln 0.5
    assert focal_loss(logits, torch.tensor([0]), gamma=2).item() == pytest.approx(0.25 * math.log(2))
    assert focal_loss(logits, torch.tensor([0]), gamma=2, alpha=torch.tensor([0.5, 1.0])).item() \
        == pytest.approx(0.125 * math.log(2))


def test_focal_gamma_zero_is_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits, y = torch.randn(16, 5, generator=g), torch.randint(0, 5, (16,), generator=g)
    assert focal_loss(logits, y, gamma=0).item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    # focusing only ever lowers the per-sample loss
    assert (focal_loss(logits, y, 2, reduction="none") <= F.cross_entropy(logits, y, reduction="none") + 1e-7).all()


def test_groupdro_q_update_by_hand():
    loss_fn = GroupDROLoss([10, 10, 10], eta=1.0)
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)], [0.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    groups = torch.tensor([0, 1, 1])
    # group 0 loss ln 2; group 1 mean(ln 4, ln 2) = 1.5 ln 2; group 2 absent -> no q step
    loss = loss_fn(logits, labels, groups)
    w = torch.tensor([2.0, 2.0 ** 1.5, 1.0])
    q = w / w.sum()
    assert torch.allclose(loss_fn.q, q)
    assert loss.item() == pytest.approx((q[0] * math.log(2) + q[1] * 1.5 * math.log(2)).item(), rel=1e-6)
    loss_fn.eval()
    loss_fn(logits, labels, groups)
    assert torch.allclose(loss_fn.q, q)  # no update in eval


def test_groupdro_adjustment_favours_small_groups():
    loss_fn = GroupDROLoss([100, 4], eta=1.0, adjustment=2.0)
    logits = torch.zeros(2, 2)
    loss_fn(logits, torch.tensor([0, 0]), torch.tensor([0, 1]))
    # equal losses; adjustments 2/10 and 2/2 -> q ∝ exp(0.2), exp(1.0)
    assert loss_fn.q[1] / loss_fn.q[0] == pytest.approx(math.exp(0.8), rel=1e-5)
