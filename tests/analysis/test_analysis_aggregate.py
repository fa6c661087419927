"""Aggregators: crowd-kit cross-checks on simulated data and hand-checked small frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.aggregate import (GLAD, DawidSkene, MajorityVote, OneCoinDawidSkene, Wawa, item_uncertainty,
                                spammer_scores, worker_table)
from sim.frames import simulate_crowd


def _same(ours: pd.DataFrame, ref: pd.DataFrame, tol: float):
    ref = ref.reindex(index=ours.index, columns=ours.columns)
    assert np.abs(ours.to_numpy(float) - ref.to_numpy(float)).max() < tol


@pytest.mark.parametrize("name", ["mv", "ds", "onecoin", "glad"])
def test_matches_crowdkit(name, simulated):
    import crowdkit.aggregation as ck
    frame, _ = simulated
    ours, ref = {"mv": (MajorityVote(), ck.MajorityVote()), "ds": (DawidSkene(), ck.DawidSkene()),
                 "onecoin": (OneCoinDawidSkene(), ck.OneCoinDawidSkene()), "glad": (GLAD(), ck.GLAD())}[name]
    p_ours = ours.fit_predict_proba(frame)
    p_ref = ref.fit_predict_proba(frame)
    assert (ours.labels_ == ref.labels_.reindex(ours.labels_.index)).all()
    _same(p_ours, p_ref, 1e-6)
    if name in ("ds", "onecoin", "glad"):
        assert ours.n_iter_ == len(ref.loss_history_)


def test_dawid_skene_gold_matches_crowdkit(simulated):
    import crowdkit.aggregation as ck
    frame, truth = simulated
    gold = truth.iloc[:40]
    ours = DawidSkene().fit(frame, gold)
    ref = ck.DawidSkene().fit(frame, gold)
    _same(ours.probas_, ref.probas_, 1e-6)
    assert (ours.labels_.loc[gold.index] == gold).all()


def test_wawa_matches_crowdkit_steps(simulated):
    """crowd-kit's Wawa needs sklearn < 1.6 (check_is_fitted); compose its two steps as its
    fit/_apply do: skills = agreement with MajorityVote, then a skill-weighted MajorityVote."""
    import crowdkit.aggregation as ck
    frame, _ = simulated
    skills = ck.MajorityVote().fit(frame).skills_
    ref = ck.MajorityVote().fit(frame, skills=skills)
    ours = Wawa().fit(frame)
    assert np.abs(ours.skills_ - skills.reindex(ours.skills_.index)).max() < 1e-12
    assert (ours.labels_ == ref.labels_.reindex(ours.labels_.index)).all()
    _same(ours.probas_, ref.probas_, 1e-12)


def test_ds_recovers_truth_better_than_mv():
    # three of ten workers always answer c1: majority vote is misled, Dawid-Skene learns them
    frame, truth = simulate_crowd(n_tasks=400, n_workers=10, per_task=7, seed=3, accuracy=(0.55, 0.8))
    frame.loc[frame["worker"].isin(["w0", "w1", "w2"]), "label"] = "c1"
    mv = MajorityVote().fit_predict(frame)
    ds = DawidSkene().fit_predict(frame)
    acc = lambda s: (s.reindex(truth.index) == truth).mean()  # noqa: E731
    assert acc(ds) > acc(mv) + 0.03


def test_majority_vote_ties_by_hand():
    # t1: a, a, b -> a (2/3). t2: a, b -> tie. t3: b, b -> b.
    frame = pd.DataFrame({"task": ["t1", "t1", "t1", "t2", "t2", "t3", "t3"],
                          "worker": ["x", "y", "z", "x", "y", "x", "z"],
                          "label": ["a", "a", "b", "a", "b", "b", "b"]})
    first = MajorityVote().fit(frame)
    assert first.labels_.to_dict() == {"t1": "a", "t2": "a", "t3": "b"}  # tie -> label sorting first
    assert first.probas_.loc["t1", "a"] == pytest.approx(2 / 3)
    assert first.ties_.to_dict() == {"t1": False, "t2": True, "t3": False}
    # skills: x agrees on t1,t2,t3 (3/3); y on t1 only (t2 said b vs a) -> 1/2; z on t3 (1/2)
    assert first.skills_.to_dict() == {"x": 1.0, "y": 0.5, "z": 0.5}
    assert MajorityVote(ties="none").fit_predict(frame)["t2"] is None
    picks = {MajorityVote(ties="random", seed=s).fit_predict(frame)["t2"] for s in range(20)}
    assert picks == {"a", "b"}
    with pytest.raises(ValueError, match="ties must be"):
        MajorityVote(ties="coin").fit(frame)


def test_weighted_majority_vote_by_hand():
    frame = pd.DataFrame({"task": ["t"] * 3, "worker": ["x", "y", "z"], "label": ["a", "b", "b"]})
    skills = pd.Series({"x": 0.9, "y": 0.3, "z": 0.4})
    mv = MajorityVote().fit(frame, skills)
    # a: 0.9, b: 0.7 -> a with 0.9 / 1.6
    assert mv.labels_["t"] == "a" and mv.probas_.loc["t", "a"] == pytest.approx(0.9 / 1.6)
    with pytest.raises(ValueError, match="no skill for worker"):
        MajorityVote().fit(frame, skills.drop("z"))


def test_spammer_detection_and_uncertainty():
    frame, _ = simulate_crowd(n_tasks=300, n_workers=10, per_task=6, n_classes=3, seed=9)
    spam = frame["worker"] == "w0"
    frame.loc[spam, "label"] = "c1"  # w0 always answers c1, whatever the truth
    ds = DawidSkene().fit(frame)
    table = worker_table(frame, ds).set_index("worker")
    assert table.loc["w0", "is_spammer"]
    assert table["spammer_score"].idxmin() == "w0"
    assert spammer_scores(np.eye(3)[None])[0] == pytest.approx(1.0)
    assert spammer_scores(np.full((1, 3, 3), 1 / 3))[0] == pytest.approx(0.0)
    unc = item_uncertainty(pd.DataFrame([[0.5, 0.5], [1.0, 0.0]], index=["a", "b"]))
    assert unc.loc["a", "entropy"] == pytest.approx(np.log(2)) and unc.loc["b", "entropy"] == 0
    assert unc.loc["a", "margin"] == 0 and unc.loc["b", "margin"] == 1


def test_estimator_conventions(simulated):
    frame, _ = simulated
    ds = DawidSkene(n_iter=3, tol=0.0)
    assert ds.fit(frame) is ds and ds.n_iter_ == 3
    assert ds.confusions_.shape == (25, 3, 3)
    np.testing.assert_allclose(ds.confusions_.sum(axis=1), 1.0)
    assert list(ds.probas_.columns) == ["c0", "c1", "c2"]
    assert (DawidSkene().fit(frame.assign(label="c0")).labels_ == "c0").all()  # unanimous: the label
    with pytest.raises(ValueError, match="gold label"):
        DawidSkene().fit(frame, pd.Series({"t0": "zzz"}))


@pytest.mark.parametrize("name", ["mv", "wawa", "ds", "onecoin", "glad"])
def test_aggregators_follow_crowd_kit_conventions(name):
    """Hyperparameters only in the constructor, `fit` returns self, fitted state ends in `_`,
    and the base class's `fit_predict` / `fit_predict_proba` give the fitted labels / probas."""
    from analysis.aggregate import AGGREGATORS, Aggregator

    frame = pd.DataFrame({"task": ["t1", "t1", "t1", "t2", "t2", "t2"], "worker": ["a", "b", "c"] * 2,
                          "label": ["x", "x", "y", "y", "y", "x"]})
    model = AGGREGATORS.build(name)
    assert isinstance(model, Aggregator) and not [k for k in vars(model) if k.endswith("_")]
    assert model.fit(frame) is model
    fitted = {k for k in vars(model) if not k.startswith("_")} - set(vars(AGGREGATORS.build(name)))
    assert {"labels_", "probas_"} <= fitted and all(k.endswith("_") for k in fitted)
    assert model.labels_.to_dict() == {"t1": "x", "t2": "y"}
    pd.testing.assert_series_equal(AGGREGATORS.build(name).fit_predict(frame), model.labels_)
    pd.testing.assert_frame_equal(AGGREGATORS.build(name).fit_predict_proba(frame), model.probas_)
