"""Strategies on hand-checkable inputs: exact selections, tie rules, memory-bounded behaviour."""

import tracemalloc

import numpy as np
import pytest
import torch

from active.strategies import (PoolOutputs, available_strategies, get_strategy, k_center_greedy,
                               kmeans_pp_gradient, top_b)

PROBS = torch.tensor([
    [0.90, 0.05, 0.05],  # confident
    [0.40, 0.35, 0.25],  # small margin 0.05
    [0.34, 0.33, 0.33],  # near uniform: margin 0.01, highest entropy
    [0.60, 0.40, 0.00],  # margin 0.2
    [0.50, 0.50, 0.00],  # margin 0.0, entropy log 2
])


def test_registry_lists_all_issue_strategies():
    assert set(available_strategies()) == {"random", "least-confidence", "margin", "entropy", "bald",
                                           "coreset", "cluster-margin", "badge"}
    assert get_strategy("k-center").name == "coreset"
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        get_strategy("nope")


@pytest.mark.parametrize("name,expected", [
    ("least-confidence", [2, 1, 4]),  # 1-max: .66, .60, .50
    ("margin", [4, 2, 1]),            # margins 0, .01, .05
    ("entropy", [2, 1, 4]),           # 1.0985, 1.0805, 0.6931
], ids=["least-confidence", "margin", "entropy"])
def test_uncertainty_exact_selection(name, expected):
    s = get_strategy(name, device="cpu")
    scores = s.score_batch(PROBS).numpy()
    out = PoolOutputs(indices=np.arange(100, 105), scores=scores)
    assert s.select(out, 3).tolist() == [100 + i for i in expected]


def test_margin_and_entropy_values():
    m = get_strategy("margin", device="cpu").score_batch(PROBS)
    assert m.tolist() == pytest.approx([-0.85, -0.05, -0.01, -0.2, 0.0])
    e = get_strategy("entropy", device="cpu").score_batch(PROBS)
    assert e[4].item() == pytest.approx(np.log(2))


def test_top_b_ties_go_to_lower_position():
    scores = np.array([1.0, 3.0, 2.0, 3.0, 2.0, 2.0, 0.0])
    assert top_b(scores, 4, "cpu").tolist() == [1, 3, 2, 4]
    assert top_b(scores, 7, "cpu").tolist() == [1, 3, 2, 4, 5, 0, 6]
    assert top_b(scores, 0, "cpu").tolist() == []
    with pytest.raises(ValueError, match="NaN"):
        top_b(np.array([1.0, np.nan]), 1, "cpu")


def test_top_b_matches_full_sort_on_many_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, size=5000).astype(np.float32)
    ref = np.lexsort((np.arange(5000), -scores))[:321]
    assert top_b(scores, 321, "cpu").tolist() == ref.tolist()


def test_bald_scores():
    # two MC samples that disagree completely -> mutual information log 2; agreeing -> 0
    mc = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])  # [T=2, B=2, K=2]
    s = get_strategy("bald", mc_samples=2, device="cpu").score_batch(mc.mean(0), mc)
    assert s.tolist() == pytest.approx([np.log(2), 0.0], abs=1e-6)


def test_random_is_seeded_and_without_replacement():
    out = PoolOutputs(indices=np.arange(50, 80))
    s = get_strategy("random")
    a = s.select(out, 10, np.random.default_rng(3))
    b = s.select(out, 10, np.random.default_rng(3))
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 10 and set(a) <= set(range(50, 80))


def test_k_center_exact_on_a_line():
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [5.0]], dtype=np.float32)
    # initial center at 0: farthest is 11 (pos 4); then 5 (dist 5 from both sides: pos 5);
    # then 2 or 10 tie? dist(2)=min(4,3,..)=3 ... 2 -> nearest 0/5 = 2 vs 3 ; 10 -> 1. picks 2
    picks = k_center_greedy(x, 3, centers=np.array([[0.0]], dtype=np.float32), device="cpu", chunk_size=2)
    assert picks.tolist() == [4, 5, 2]


def test_k_center_tie_lowest_position_and_no_center_uses_rng():
    x = np.array([[-1.0], [1.0], [0.0]], dtype=np.float32)
    assert k_center_greedy(x, 1, centers=np.zeros((1, 1), np.float32), device="cpu").tolist() == [0]
    a = k_center_greedy(x, 2, device="cpu", rng=np.random.default_rng(7))
    assert a.tolist() == k_center_greedy(x, 2, device="cpu", rng=np.random.default_rng(7)).tolist()


def test_k_center_streams_a_memmap_with_bounded_memory(tmp_path):
    n, d = 200_000, 16  # 12.8 MB of embeddings on disk
    mm = np.lib.format.open_memmap(tmp_path / "e.npy", mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(0)
    for lo in range(0, n, 50_000):
        mm[lo:lo + 50_000] = rng.standard_normal((50_000, d), dtype=np.float32)
    mm.flush()
    emb = np.load(tmp_path / "e.npy", mmap_mode="r")
    tracemalloc.start()
    picks = k_center_greedy(emb, 5, centers=np.zeros((1, d), np.float32), device="cpu",
                            chunk_size=10_000, max_resident_bytes=1 << 20)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # an N x N float32 matrix would be 160 GB; an N x 5 one 4 MB. Streaming keeps numpy under 2 MB.
    assert peak < 2 << 20
    full = np.asarray(emb)
    assert picks[0] == int(np.argmax((full ** 2).sum(1)))
    assert len(set(picks.tolist())) == 5


def test_coreset_strategy_uses_labelled_centers():
    emb = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]], dtype=np.float32)
    out = PoolOutputs(indices=np.array([7, 8, 9]), embeddings=emb,
                      labelled_embeddings=np.array([[0.0, 0.0]], np.float32))
    assert get_strategy("coreset", device="cpu").select(out, 2).tolist() == [8, 9]


def test_badge_distances_equal_explicit_gradient_embeddings():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), size=40).astype(np.float32)
    h = rng.standard_normal((40, 6)).astype(np.float32)
    picks = kmeans_pp_gradient(p, h, 6, "cpu", chunk_size=7, rng=np.random.default_rng(5))
    # reference: explicit g = (p - onehot) (x) h and the same k-means++ draw sequence
    a = p.copy()
    a[np.arange(40), p.argmax(1)] -= 1
    g = (a[:, :, None] * h[:, None, :]).reshape(40, -1).astype(np.float64)
    ref_rng = np.random.default_rng(5)
    ref = [int(np.argmax((g ** 2).sum(1)))]
    while len(ref) < 6:
        d = np.min([((g - g[c]) ** 2).sum(1) for c in ref], axis=0)
        d[ref] = 0
        cum = np.cumsum(d)
        ref.append(int(np.searchsorted(cum, ref_rng.random() * cum[-1], side="right")))
    assert picks.tolist() == ref
    assert len(set(picks.tolist())) == 6


def test_cluster_margin_round_robin_over_clusters():
    # 6 low-margin candidates in two tight clusters (3 near 0, 2 near 10) + 1 alone at 50;
    # the high-margin item (pos 6) is never a candidate.
    emb = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [50.0], [0.05]], dtype=np.float32)
    scores = np.array([-0.1, -0.1, -0.1, -0.1, -0.1, -0.1, -0.9], dtype=np.float32)
    s = get_strategy("cluster-margin", margin_factor=2.0, n_clusters=3, device="cpu")
    out = PoolOutputs(indices=np.arange(7), scores=scores, embeddings=emb)
    picks = s.select(out, 3, np.random.default_rng(0)).tolist()
    # smallest cluster first ({5}), then {3,4}, then {0,1,2}: one from each
    assert picks[0] == 5 and picks[1] in (3, 4) and picks[2] in (0, 1, 2)
    s1 = get_strategy("cluster-margin", margin_factor=1.0, n_clusters=3, device="cpu")
    six = s1.select(out, 6, np.random.default_rng(0)).tolist()
    assert sorted(six) == [0, 1, 2, 3, 4, 5]


def test_cluster_margin_kmeans_fallback_above_hac_limit():
    rng = np.random.default_rng(0)
    emb = np.concatenate([rng.normal(0, .1, (30, 2)), rng.normal(5, .1, (30, 2))]).astype(np.float32)
    out = PoolOutputs(indices=np.arange(60), scores=np.zeros(60, np.float32), embeddings=emb)
    s = get_strategy("cluster-margin", margin_factor=30, n_clusters=2, hac_max_items=10, device="cpu")
    picks = s.select(out, 2, np.random.default_rng(1))
    assert sorted(int(p) >= 30 for p in picks) == [False, True]  # one from each blob


def test_bad_budget_message():
    with pytest.raises(ValueError, match="budget must be >= 0"):
        top_b(np.zeros(3), -1, "cpu")
