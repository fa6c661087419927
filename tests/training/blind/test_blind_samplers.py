"""Distance-weighted, class-balanced and JTT draws; DDP shares."""

import math

import pytest
import torch

from training.samplers import (ClassBalancedSampler, DistanceWeightedSampler, EpochDrawSampler,
                               JTTSampler, class_balanced_probabilities, distance_weights,
                               epoch_generator, jtt_upsampled_indices, rank_share)

LABELS = torch.tensor([0, 0, 1, 1])
DIST = torch.tensor([1.0, 3.0, 2.0, 2.0])


@pytest.mark.parametrize("kw,expected", [
    (dict(power=1.0, floor=0.0), [0.125, 0.375, 0.25, 0.25]),
    (dict(power=1.0, floor=0.2), [0.15, 0.35, 0.25, 0.25]),
    (dict(power=2.0, floor=0.0), [0.05, 0.45, 0.25, 0.25]),
    (dict(power=0.0, floor=0.0), [0.25, 0.25, 0.25, 0.25]),
    (dict(weighting="softmax", temperature=1.0, floor=0.0),
     [0.5 / (1 + math.e), 0.5 * math.e / (1 + math.e), 0.25, 0.25]),
], ids=["power1", "power1-floor", "power2", "power0-uniform", "softmax"])
def test_distance_weights_by_hand(kw, expected):
    p = distance_weights(DIST, LABELS, **kw)
    assert p.tolist() == pytest.approx(expected)
    assert p.sum().item() == pytest.approx(1.0)


def test_distance_weights_keep_class_mix_and_floor():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (200,), generator=g)
    d = torch.rand(200, generator=g) ** 6 * 50  # very skewed distances
    d[:5] = 0.0
    p = distance_weights(d, labels, power=3.0, floor=0.1)
    for c in range(3):
        assert p[labels == c].sum().item() == pytest.approx((labels == c).double().mean().item())
    assert p.min().item() >= 0.1 / 200 - 1e-15  # nobody starves


def test_unseen_samples_get_class_mean():
    d = torch.tensor([1.0, float("nan"), 3.0, 2.0])
    p = distance_weights(d, LABELS, floor=0.0)
    # class 0 seen mean 1 -> z=[1, 1]; class 1 mean 2.5 -> z=[1.2, 0.8]
    assert p.tolist() == pytest.approx([0.25, 0.25, 0.3, 0.2])


@pytest.mark.parametrize("kw", [dict(weighting="cubic"), dict(power=-1), dict(weighting="softmax", temperature=0),
                                dict(floor=1.5)], ids=["weighting", "power", "temperature", "floor"])
def test_distance_weights_reject_bad_options(kw):
    with pytest.raises(ValueError, match="distance_weights"):
        distance_weights(DIST, LABELS, **kw)


def test_sampler_warmup_is_uniform_permutation_then_weighted_and_deterministic():
    labels = torch.tensor([0] * 50 + [1] * 50)
    s = DistanceWeightedSampler(labels, seed=3, warmup_epochs=2, floor=0.0, power=1.0)
    first = s.epoch_indices(0)
    assert sorted(first.tolist()) == list(range(100))
    assert torch.equal(first, DistanceWeightedSampler(labels, seed=3).epoch_indices(0))
    assert not torch.equal(first, s.epoch_indices(1))
    d = torch.ones(100)
    d[0], d[50] = 40.0, 40.0  # two far samples
    s.record(torch.arange(100), d)
    s.end_epoch()
    assert sorted(s.epoch_indices(1).tolist()) == list(range(100))  # still warming up
    draw = s.epoch_indices(2)
    assert torch.equal(draw, s.epoch_indices(2))  # same seed + epoch, same draw
    s2 = DistanceWeightedSampler(labels, seed=4, warmup_epochs=2, floor=0.0)
    s2.load_state_dict(s.state_dict())
    assert not torch.equal(draw, s2.epoch_indices(2))
    # p(far) = 40 / (40 + 49) / 2 per class; expect ~45 draws of each far sample out of 100
    big = torch.multinomial(s.probabilities(), 100000, replacement=True, generator=epoch_generator(0, 0))
    assert (big == 0).double().mean().item() == pytest.approx(40 / 89 / 2, abs=0.01)


def test_record_averages_repeats_and_keeps_stale_values():
    s = DistanceWeightedSampler(LABELS, warmup_epochs=0)
    s.record(torch.tensor([0, 1, 0]), torch.tensor([1.0, 4.0, 3.0]))
    stats = s.end_epoch()
    assert s.distances[:2].tolist() == [2.0, 4.0]
    assert math.isnan(s.distances[2].item()) and stats["sampler_seen_fraction"] == 0.5
    s.record(torch.tensor([2]), torch.tensor([5.0]))
    s.end_epoch()
    assert s.distances[:3].tolist() == [2.0, 4.0, 5.0]  # rows not drawn keep their last distance


def test_rank_share_disjoint_cover_and_padding():
    draw = torch.tensor([5, 3, 3, 9, 1, 0, 7])
    shares = [rank_share(draw, r, 3) for r in range(3)]
    assert [len(s) for s in shares] == [3, 3, 3]
    # positions are disjoint: interleaving the shares gives back the padded draw
    assert torch.stack(shares, 1).flatten().tolist() == [5, 3, 3, 9, 1, 0, 7, 5, 3]
    assert torch.equal(rank_share(draw, 0, 1), draw)
    with pytest.raises(ValueError, match="rank_share"):
        rank_share(draw, 3, 3)


def test_epoch_draw_sampler_in_dataloader_shares():
    labels = torch.tensor([0] * 7 + [1] * 3)
    src = ClassBalancedSampler(labels, seed=1)
    samplers = [EpochDrawSampler(src, rank=r, world_size=2) for r in range(2)]
    for s in samplers:
        s.set_epoch(4)
    a, b = (list(iter(s)) for s in samplers)
    assert len(a) == len(b) == len(samplers[0]) == 5
    full = src.epoch_indices(4).tolist()
    assert a == full[0::2] and b == full[1::2]


def test_class_balanced_by_hand_and_jtt():
    assert class_balanced_probabilities([0, 0, 0, 1]).tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 2])
    assert class_balanced_probabilities([0, 0, 2]).tolist() == pytest.approx([0.25, 0.25, 0.5])
    up = jtt_upsampled_indices([False, True, False, True], 3)
    assert sorted(up.tolist()) == [0, 1, 1, 1, 2, 3, 3, 3]
    s = JTTSampler([False, True, False, True], 3, seed=0)
    assert len(s) == 8 and sorted(s.epoch_indices(1).tolist()) == sorted(up.tolist())
    with pytest.raises(ValueError, match="upweight"):
        jtt_upsampled_indices([True], 0)
