"""Methods through the plug-in interface, with a stand-in trainer (no images)."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from training.methods import build_method

LABELS = torch.tensor([0, 0, 0, 1, 1, 1])


def prepared(name, domains=None, **opts):
    m = build_method(name, **opts)
    if domains is not None:
        m.domains = torch.as_tensor(domains)
        m.domain_names = ["day", "night"]
    m.prepare(SimpleNamespace(num_classes=2, num_train=len(LABELS), train_labels=LABELS, epochs=8))
    return m


def test_center_distance_loss_is_ce_plus_center_term_and_updates_after_step():
    m = prepared("center-distance", center_weight=1.0, center_alpha=0.5, warmup_epochs=1, floor=0.0)
    feats = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]], requires_grad=True)
    logits = torch.zeros(3, 2)
    y, idx = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 3])
    loss = m.loss(logits, feats, y, idx)
    assert loss.item() == pytest.approx(math.log(2))  # first batch: no center yet, CE only
    m.after_step()  # centers <- class means (2, 0) and (0, 2)
    assert torch.allclose(m.centers.centers, torch.tensor([[2.0, 0.0], [0.0, 2.0]]))
    loss = m.loss(logits, feats, y, idx)
    assert loss.item() == pytest.approx(math.log(2) + 0.5 * (1 + 1 + 0) / 3)
    stats = m.end_epoch(0)
    # distances count only once the class has a center: the second pass, |x - c| = 1, 1, 0
    assert stats["sampler_seen_fraction"] == pytest.approx(0.5)
    assert m.sampler.distances[[0, 1, 3]].tolist() == pytest.approx([1.0, 1.0, 0.0])
    assert stats["center_loss"] == pytest.approx(1 / 3 / 2)


def test_distance_sampling_draws_far_rows_more_after_warmup():
    m = prepared("distance-sampling", warmup_epochs=1, floor=0.0, power=2.0)
    g = torch.Generator().manual_seed(0)
    assert sorted(m.epoch_indices(0, g).tolist()) == list(range(6))  # warm-up: a permutation
    m.sampler.record(torch.arange(6), torch.tensor([1.0, 1.0, 4.0, 1.0, 1.0, 1.0]))
    m.end_epoch(0)
    draws = torch.cat([m.epoch_indices(1, torch.Generator().manual_seed(s)) for s in range(500)])
    share = (draws == 2).double().mean().item()
    # z = (0.5, 0.5, 2) -> z^2 = (0.25, 0.25, 4), class mass kept at 3/6: p(row 2) = 0.5 * 4 / 4.5
    assert share == pytest.approx(0.5 * 4 / 4.5, abs=0.02)
    assert m.loss(torch.zeros(2, 2), torch.ones(2, 3), torch.tensor([0, 1]), torch.tensor([0, 3])).item() \
        == pytest.approx(math.log(2))  # no center-loss term


def test_center_state_roundtrip_before_first_batch():
    a = prepared("center-distance")
    a.loss(torch.zeros(6, 2), torch.randn(6, 4), LABELS, torch.arange(6))
    a.after_step()
    a.end_epoch(0)
    b = prepared("center-distance")
    b.load_state_dict(a.state_dict())  # centers restored lazily at the first batch
    b.loss(torch.zeros(1, 2), torch.zeros(1, 4), LABELS[:1], torch.tensor([0]))
    assert torch.equal(a.centers.centers, b.centers.centers)
    assert torch.equal(a.sampler.distances.nan_to_num(-1), b.sampler.distances.nan_to_num(-1))


def test_class_balanced_focal_and_jtt():
    labels = torch.tensor([0, 0, 0, 0, 0, 1])
    cb = build_method("class-balanced")
    cb.prepare(SimpleNamespace(num_classes=2, num_train=6, train_labels=labels))
    draws = torch.cat([cb.epoch_indices(e, torch.Generator().manual_seed(e)) for e in range(300)])
    assert (draws == 5).double().mean().item() == pytest.approx(0.5, abs=0.03)
    focal = build_method("focal", gamma=0.0)
    logits = torch.randn(4, 2)
    assert focal.loss(logits, None, labels[:4], None).item() == pytest.approx(F.cross_entropy(logits, labels[:4]).item())
    jtt = build_method("jtt", upweight=3)
    jtt.num_train = 6
    jtt.set_error_set([True, False, False, False, False, True])
    rows = jtt.epoch_indices(0, torch.Generator().manual_seed(0))
    assert sorted(rows.tolist()) == [0, 0, 0, 1, 2, 3, 4, 5, 5, 5]


def test_groupdro_oracle_weights_the_worse_domain():
    m = prepared("groupdro-oracle", domains=[0, 0, 0, 0, 1, 1], eta=1.0)
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])  # domain 0 right, domain 1 wrong
    m.loss(logits, None, torch.tensor([0, 0]), torch.tensor([0, 4]), domains=torch.tensor([0, 1]))
    q = m.end_epoch(0)
    assert q["groupdro_q/night"] > 0.9 > q["groupdro_q/day"]
    with pytest.raises(RuntimeError, match="domain labels"):
        m.loss(logits, None, torch.tensor([0, 0]), torch.tensor([0, 4]))


def test_groupdro_oracle_draws_every_domain_equally_unless_told_not_to():
    # 4 day rows, 2 night rows: P(day row) = 1/(2*4) = 1/8, P(night row) = 1/(2*2) = 1/4
    m = prepared("groupdro-oracle", domains=[0, 0, 0, 0, 1, 1])
    assert m._probabilities.tolist() == [0.125] * 4 + [0.25] * 2
    draw = m.epoch_indices(0, torch.Generator().manual_seed(0))
    assert draw.shape == (6,) and draw.max() < 6
    assert prepared("groupdro-oracle", domains=[0, 0, 0, 0, 1, 1], balance=False).epoch_indices(
        0, torch.Generator().manual_seed(0)) is None


@pytest.mark.parametrize("name,opts,match", [
    ("center", {"power": 2}, "unknown option"),
    ("distance-sampling", {"center_weight": 1.0}, "no center loss"),
    ("center-distance", {"center_weight": 0}, "center_weight"),
    ("focal", {"gamma": -1}, "gamma"),
    ("jtt", {"upweight": 0}, "upweight"),
    ("groupdro-oracle", {"groups": "writer"}, "groups"),
    ("center-distance", {"distances": "test"}, "distances='test' must be 'train' or 'eval'"),
    ("center-distance", {"anneal_epochs": -1}, "anneal_epochs=-1 must be >= 0"),
    ("center", {"center_warmup_epochs": -2}, "center_warmup_epochs=-2 must be >= 0"),
    ("distance-sampling", {"center_warmup_epochs": 2}, "no center loss"),
    ("domain-balanced-oracle", {"eta": 1}, "unknown option"),
], ids=["center-no-sampler-option", "ds-no-center-weight", "cd-zero-weight", "focal-gamma", "jtt-upweight", "dro-groups",
        "cd-distances", "cd-anneal", "center-warmup", "ds-no-warmup", "dbo-no-options"])
def test_bad_method_options_are_named(name, opts, match):
    with pytest.raises((TypeError, ValueError), match=match):
        build_method(name, **opts)


def test_center_warmup_ramps_the_center_term():
    full = prepared("center", center_weight=1.0)
    ramped = prepared("center", center_weight=1.0, center_warmup_epochs=4)
    feats = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    y, idx = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 3])
    for m in (full, ramped):
        m.epoch_indices(0, torch.Generator().manual_seed(0))
        m.loss(torch.zeros(3, 2), feats, y, idx)
        m.after_step()  # centers (2, 0), (0, 2): center term 0.5 * (1 + 1 + 0) / 3 = 1/3
    term = lambda m: m.loss(torch.zeros(3, 2), feats, y, idx).item() - math.log(2)  # noqa: E731
    assert term(full) == pytest.approx(1 / 3) and term(ramped) == pytest.approx(1 / 3 / 4)  # epoch 1 of 4
    ramped.epoch_indices(2, torch.Generator().manual_seed(0))
    assert term(ramped) == pytest.approx(1 / 3 * 3 / 4)
    ramped.epoch_indices(9, torch.Generator().manual_seed(0))
    assert term(ramped) == pytest.approx(1 / 3)
    assert ramped.config()["center_warmup_epochs"] == 4


def test_annealed_sampling_scales_the_power():
    from training.samplers import distance_weights

    m = prepared("distance-sampling", warmup_epochs=1, floor=0.0, power=2.0, anneal_epochs=4)
    m.sampler.record(torch.arange(6), torch.tensor([1.0, 1.0, 4.0, 1.0, 1.0, 1.0]))
    m.end_epoch(0)
    assert [m.sampler.strength(e) for e in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]
    assert torch.allclose(m.sampler.probabilities(m.sampler.strength(2)),
                          distance_weights(m.sampler.distances, LABELS, power=1.0, floor=0.0))
    assert torch.allclose(m.sampler.probabilities(0.0), torch.full((6,), 1 / 6, dtype=torch.float64))


def test_eval_distances_come_from_an_eval_pass_over_the_training_rows():
    feats_eval = torch.tensor([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0], [0.0, 1.0], [0.0, 3.0], [0.0, 5.0]])
    calls = []

    def predict(split, model, features=False):
        calls.append((split, model, features))
        return torch.zeros(6, 2), feats_eval

    m = build_method("center-distance", distances="eval", floor=0.0)
    m.prepare(SimpleNamespace(num_classes=2, num_train=6, train_labels=LABELS, epochs=8, model="the model",
                              predict=predict))
    m.loss(torch.zeros(6, 2), feats_eval, LABELS, torch.arange(6))
    m.after_step()  # centers = class means of the batch: (2, 0) and (0, 3)
    m.end_epoch(0)
    assert calls == [("train", "the model", True)]
    assert m.sampler.distances.tolist() == pytest.approx([2.0, 0.0, 2.0, 2.0, 0.0, 2.0])
    assert m.config()["distances"] == "eval"
