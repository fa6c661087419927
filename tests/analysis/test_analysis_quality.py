"""Worker quality: gold per part, posteriors, flags with reasons (analysis/quality.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.quality import QUALITY_COLUMNS, crowd_prior, gold_parts, worker_flags, worker_quality
from sim.crowd_judgments import simulate_judgments


def _rate_rows(task, worker, answers, match, gold=None, gold_match=None, seconds=20.0):
    rows = []
    for r, a in enumerate(answers, start=1):
        rows.append({"task": task, "worker": worker, "label": a, "item": f"arg:{r}", "kind": "rate_arguments",
                     "is_gold": gold is not None, "gold_label": gold[r - 1] if gold else "", "duration_s": seconds})
    rows.append({"task": task, "worker": worker, "label": str(match), "item": "match", "kind": "rate_arguments",
                 "is_gold": gold is not None, "gold_label": str(gold_match) if gold else "", "duration_s": seconds})
    return rows


def test_gold_is_scored_per_part():
    rows = _rate_rows("g1", "a", ["yes", "no", "cant_tell"], 4, gold=["yes", "yes", "no"], gold_match=2)
    rows += [{"task": "g2", "worker": "a", "label": "wing", "item": "name", "kind": "name_feature", "is_gold": True,
              "gold_label": "feather|wing"},
             {"task": "g3", "worker": "a", "label": "c1", "item": "label", "kind": "label", "is_gold": True,
              "gold_label": "c2"},
             {"task": "g4", "worker": "a", "label": "2", "item": "rationale", "kind": "mark_rationale", "is_gold": True,
              "gold_label": "[[0, 0, 0.5, 0.5]]", "points": "[[0.1, 0.1], [0.9, 0.9]]", "boxes": "[]"},
             {"task": "g5", "worker": "a", "label": "0", "item": "rationale", "kind": "mark_rationale", "is_gold": True,
              "gold_label": "[[0, 0, 0.5, 0.5]]", "points": "[]", "boxes": "[]"},
             {"task": "t9", "worker": "a", "label": "c1", "item": "label", "kind": "label", "is_gold": False,
              "gold_label": ""}]
    parts = gold_parts(pd.DataFrame(rows))
    # 3 arguments + the match rating (|4 - 2| > 1: wrong), a name among the gold names, a wrong
    # label, a rationale with half its marks in the box, one without marks; the non-gold row is no part
    assert parts["correct"].tolist() == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert parts.groupby("kind").size().to_dict() == {"label": 1, "mark_rationale": 2, "name_feature": 1,
                                                      "rate_arguments": 4}


def _label_frame(n_units=40, spammer="constant", seed=0):
    """6 workers who answer the truth, one spammer, one adversarial worker (next label)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n_units)
    labels = np.array(["a", "b", "c"], dtype=object)
    rows = []
    for u in range(n_units):
        for w in range(6):
            rows.append((f"t{u}", f"good{w}", labels[truth[u]], 20.0))
        spam = "a" if spammer == "constant" else labels[rng.integers(0, 3)]
        rows.append((f"t{u}", "spam", spam, 2.0))
        rows.append((f"t{u}", "adv", labels[(truth[u] + 1) % 3], 18.0))
    return pd.DataFrame(rows, columns=["task", "worker", "label", "duration_s"])


@pytest.mark.parametrize("spammer", ["constant", "random"])
def test_consensus_flags_spammer_and_adversary_not_good_workers(spammer):
    q = worker_quality(_label_frame(spammer=spammer)).set_index("worker")
    assert list(q.reset_index().columns) == QUALITY_COLUMNS
    assert q.loc["spam", "flag_consensus"] and q.loc["spam", "action"] == "reject"
    assert "barely depend on the item" in q.loc["spam", "reasons"]
    assert q.loc["adv", "flag_consensus"] and "against the consensus" in q.loc["adv", "reasons"]
    assert q.loc["adv", "kappa_high"] < 0
    good = q.loc[[f"good{w}" for w in range(6)]]
    assert not good["flagged"].any() and (good["action"] == "approve").all()
    assert (good["kappa_low"] > 0.5).all()
    # speed: the spammer took 2 s against a crowd median of 20 s
    assert q.loc["spam", "speed_ratio"] == pytest.approx(0.1)
    assert q.loc["spam", "flag_fast"] and "fast: median 2.0 s" in q.loc["spam", "reasons"]


def test_fast_alone_is_review_not_reject():
    frame = _label_frame()
    frame.loc[frame["worker"] == "good0", "duration_s"] = 1.0
    q = worker_quality(frame).set_index("worker")
    assert q.loc["good0", "flag_fast"] and not q.loc["good0", "flag_consensus"]
    assert q.loc["good0", "action"] == "review"


def test_gold_posterior_with_a_fixed_beta_prior_by_hand():
    # worker x: 2 of 10 gold labels right; worker y: 0 of 4 (fewer than min_gold=5)
    rows = [{"task": f"g{i}", "worker": "x", "label": "a" if i < 2 else "b", "gold_label": "a", "is_gold": True}
            for i in range(10)]
    rows += [{"task": f"g{i}", "worker": "y", "label": "b", "gold_label": "a", "is_gold": True} for i in range(4)]
    q = worker_quality(pd.DataFrame(rows), prior=(1.0, 1.0)).set_index("worker")
    assert q.loc["x", "p_gold_below"] == pytest.approx(stats.beta.cdf(0.6, 3, 9))
    assert q.loc["x", "gold_low"] == pytest.approx(stats.beta.ppf(0.025, 3, 9))
    assert q.loc["x", "flag_gold"] and q.loc["x", "gold_n"] == 10 and q.loc["x", "gold_correct"] == 2
    assert "gold accuracy 0.20 (2 of 10 parts)" in q.loc["x", "reasons"]
    assert q.loc["y", "p_gold_below"] == pytest.approx(stats.beta.cdf(0.6, 1, 5))
    assert not q.loc["y", "flagged"] and "not enough answers" in q.loc["y", "reasons"]


def test_crowd_prior_is_the_npmle():
    grid = (np.arange(100) + 0.5) / 100
    hits = np.array([2, 3, 2, 18, 19, 18, 17], float)
    n = np.full(7, 20.0)
    ll = hits[:, None] * np.log(grid) + (n - hits)[:, None] * np.log1p(-grid)
    w = crowd_prior(ll, pseudo_workers=0.0)
    assert w.sum() == pytest.approx(1.0)
    # the fitted mixture has a higher marginal likelihood than the uniform prior or a point mass
    def marginal(weights):
        return np.log(np.exp(ll) @ weights).sum()
    assert marginal(w) > marginal(np.full(100, 0.01))
    assert marginal(w) > marginal(np.eye(100)[50])
    # two clusters: mass near 0.1 and near 0.9, little in between
    assert w[(grid > 0.3) & (grid < 0.7)].sum() < 0.01
    assert w[grid < 0.3].sum() == pytest.approx(3 / 7, abs=0.01)


def test_worker_flags_summarises_kinds():
    q = pd.DataFrame({"worker": ["a", "a", "b"], "kind": ["label", "rate_arguments", "label"],
                      "flagged": [False, True, False], "action": ["approve", "reject", "review"],
                      "reasons": ["", "why", ""], "n_answers": [10, 20, 5], "gold_n": [4, 6, 0],
                      "gold_correct": [4.0, 1.0, 0.0], "kappa": [0.8, 0.1, np.nan]})
    f = worker_flags(q).set_index("worker")
    assert f.loc["a", "flagged"] and f.loc["a", "action"] == "reject"
    assert f.loc["a", "kinds_flagged"] == "rate_arguments" and f.loc["a", "reasons"] == "rate_arguments: why"
    assert f.loc["a", "gold_accuracy"] == pytest.approx(0.5) and f.loc["a", "min_kappa"] == pytest.approx(0.1)
    assert not f.loc["b", "flagged"] and f.loc["b", "action"] == "review" and np.isnan(f.loc["b", "gold_accuracy"])


def test_simulated_crowd_flags_spammers_not_reliable_workers():
    frame, roster = simulate_judgments(120, {"reliable": 0.5, "weak": 0.15, "spammer": 0.3, "adversarial": 0.05},
                                       seed=7)
    f = worker_flags(worker_quality(frame)).merge(roster, on="worker")
    by = f.groupby("type")["flagged"].mean()
    assert by["reliable"] == 0.0
    assert by["spammer"] >= 0.85
    assert by["adversarial"] >= 0.8


def test_model_workers_are_left_out():
    frame = _label_frame()
    frame = pd.concat([frame, frame[frame["worker"] == "good0"].assign(worker="model:cnn")])
    assert "model:cnn" not in set(worker_quality(frame)["worker"])
