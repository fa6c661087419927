"""Analysts' extras: per-item / per-worker / per-category agreement, ICC against
pingouin, Fleiss with unequal raters against irrCAC, BCa intervals, Dawid-Skene smoothing,
predict, confusion CSV and calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import aggregate as agg
from analysis import agreement as agr
from analysis._bootstrap import bootstrap
from sim.frames import simulate_crowd


def test_item_agreement_by_hand(frame_5x5):
    t = agr.item_agreement(frame_5x5).set_index("task")
    # u1: a a a a a ; u3: a a b b b -> modal b (3/5), pairs (3*2 + 2*1) / 20 = 0.4
    assert t.loc["u1", ["n_ratings", "modal_label", "modal_share", "pairwise_agreement"]].tolist() == [5, "a", 1.0, 1.0]
    assert t.loc["u3", "modal_label"] == "b" and t.loc["u3", "modal_share"] == pytest.approx(0.6)
    assert t.loc["u3", "pairwise_agreement"] == pytest.approx(0.4)
    # the mean of the per-unit pair shares is percent agreement
    assert t["pairwise_agreement"].mean() == pytest.approx(agr.percent_agreement(frame_5x5, n_boot=0).value)


def test_worker_agreement_by_hand(frame_5x5):
    w = agr.worker_agreement(frame_5x5).set_index("worker")
    # r1 = a a a b a; others per unit: u1 4/4 a, u2 3/4 a, u3 1/4 a, u4 4/4 b, u5 0/4 a
    assert w.loc["r1", "agreement"] == pytest.approx((1 + 0.75 + 0.25 + 1 + 0) / 5)
    # chance: r1's shares (a 4/5, b 1/5) x the others' shares (a 8/20, b 12/20)
    assert w.loc["r1", "chance"] == pytest.approx(0.8 * 0.4 + 0.2 * 0.6)
    assert w.loc["r1", "kappa"] == pytest.approx((0.6 - 0.44) / 0.56)
    assert (w["n_units"] == 5).all()


def test_fleiss_per_category_by_hand_and_identity(frame_5x5):
    t = agr.fleiss_kappa_per_category(frame_5x5).set_index("label")
    # x_a per unit = 5, 4, 2, 0, 1 (m = 5): sum x(5 - x) = 0 + 4 + 6 + 0 + 4 = 14; p_a = 12/25
    p = 12 / 25
    assert t.loc["a", "kappa"] == pytest.approx(1 - 14 / (p * (1 - p) * 5 * 20))
    assert t.loc["a", "kappa"] == pytest.approx(t.loc["b", "kappa"])  # two categories: equal
    w = t["share"] * (1 - t["share"])
    assert (w * t["kappa"]).sum() / w.sum() == pytest.approx(agr.fleiss_kappa(frame_5x5, n_boot=0).value)


def test_fleiss_unequal_raters_gwet_marginals_match_irrcac():
    from irrCAC.raw import CAC

    rng = np.random.default_rng(3)
    m = rng.integers(0, 3, (30, 5)).astype(float)
    m[rng.random(m.shape) < 0.35] = np.nan
    m[0, 1:] = np.nan  # a single-rated unit
    m = m[np.isfinite(m).sum(1) >= 1]
    frame = pd.DataFrame([(f"u{i}", f"r{j}", m[i, j]) for i in range(len(m)) for j in range(5) if np.isfinite(m[i, j])],
                         columns=["task", "worker", "label"])
    ref = CAC(pd.DataFrame(m), digits=15).fleiss()["est"]["coefficient_value"]
    got = agr.fleiss_kappa(frame, marginals="gwet", n_boot=0)
    assert got.value == pytest.approx(ref, abs=1e-12)
    pooled = agr.fleiss_kappa(frame, n_boot=0)
    assert pooled.value != pytest.approx(ref, abs=1e-6)  # the two definitions differ here


def _icc_frame(seed=0, n=12, k=4, same_raters=True):
    rng = np.random.default_rng(seed)
    true = rng.normal(3, 1, n)
    rows = []
    for i in range(n):
        raters = [f"r{j}" for j in range(k)] if same_raters else [f"w{i}_{j}" for j in range(k)]
        for j, r in enumerate(raters):
            rows.append((f"t{i}", r, float(np.clip(np.rint(true[i] + rng.normal(0, 0.8) + 0.3 * j), 1, 5))))
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


@pytest.mark.parametrize("form", agr.ICC_FORMS)
def test_icc_matches_pingouin(form):
    pg = pytest.importorskip("pingouin")
    frame = _icc_frame()
    ref = pg.intraclass_corr(frame, targets="task", raters="worker", ratings="label").set_index("Type")
    got = agr.icc(frame, form)
    assert got.value == pytest.approx(ref.loc[form, "ICC"], abs=1e-12)
    assert [got.ci_low, got.ci_high] == pytest.approx(list(ref.loc[form, "CI95%"]), abs=0.006)  # pingouin rounds to 2


def test_icc1_ignores_rater_identity():
    pg = pytest.importorskip("pingouin")
    frame = _icc_frame(seed=1, same_raters=False)
    slots = frame.assign(worker=frame.groupby("task").cumcount())
    ref = pg.intraclass_corr(slots, targets="task", raters="worker", ratings="label").set_index("Type")
    assert agr.icc(frame, "ICC1").value == pytest.approx(ref.loc["ICC1", "ICC"], abs=1e-12)
    assert agr.icc(frame, "ICC1k").value == pytest.approx(ref.loc["ICC1k", "ICC"], abs=1e-12)


def test_icc_degenerate_is_nan_with_reason():
    frame = _icc_frame().assign(label=3.0)
    est = agr.icc(frame, "ICC1")
    assert np.isnan(est.value) and "no variance" in est.reason


def test_bca_matches_scipy_on_a_mean():
    # mean of per-unit values written as a ratio of sums: sum(x) / sum(1)
    x = np.random.default_rng(0).exponential(1.0, 80)
    stat = lambda s: s["x"] / s["one"]  # noqa: E731
    _, lo, hi, _ = bootstrap(stat, {"x": x, "one": np.ones_like(x)}, n_boot=20000, seed=1, method="bca")
    ref = stats.bootstrap((x,), np.mean, n_resamples=20000, method="BCa", random_state=2).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.02) and hi == pytest.approx(ref.high, abs=0.03)
    _, plo, phi, _ = bootstrap(stat, {"x": x, "one": np.ones_like(x)}, n_boot=20000, seed=1)
    assert lo > plo and hi > phi  # skewed data: BCa shifts the interval right


def test_bca_option_on_a_statistic(frame_5x5):
    est = agr.krippendorff_alpha(frame_5x5, "nominal", n_boot=300, ci="bca")
    assert est.ci_method == "bca" and est.ci_low <= est.value <= est.ci_high


def test_dawid_skene_dirichlet_smoothing():
    frame, truth = simulate_crowd(n_tasks=150, n_workers=12, per_task=4, seed=5)
    plain = agg.DawidSkene().fit(frame)
    smooth = agg.DawidSkene(alpha=1.0).fit(frame)
    # every cell gets mass: no exact zeros for labels a worker never gave for some truth
    assert smooth.confusions_.min() > 0
    np.testing.assert_allclose(smooth.confusions_.sum(axis=1), 1.0)
    assert (smooth.labels_ == plain.labels_).mean() > 0.95
    # a worker with 3 judgments: smoothing pulls the confusion towards uniform
    few = pd.concat([frame, pd.DataFrame({"task": ["t0", "t1", "t2"], "worker": "new", "label": ["c0", "c0", "c0"]})])
    e_plain = agg.DawidSkene().fit(few).errors_.loc["new"]
    e_smooth = agg.DawidSkene(alpha=1.0).fit(few).errors_.loc["new"]
    assert e_smooth.to_numpy().max() < e_plain.to_numpy().max()
    with pytest.raises(ValueError, match="alpha"):
        agg.DawidSkene(alpha=-1)


def test_predict_on_new_tasks_with_fitted_skills():
    frame, truth = simulate_crowd(n_tasks=300, n_workers=10, per_task=5, seed=2)
    train = frame[frame["task"].isin(truth.index[:200])]
    new = frame[~frame["task"].isin(truth.index[:200])]
    ds = agg.DawidSkene().fit(train)
    p = ds.predict_proba(new)
    # by hand for one task: prior x prod_j P(label_j | c), normalised
    t = new["task"].iloc[0]
    rows = new[new["task"] == t]
    ll = np.log(ds.priors_.to_numpy()).copy()
    for w, lab in zip(rows["worker"], rows["label"]):
        ll += np.log(ds.errors_.loc[(w, lab)].to_numpy())
    np.testing.assert_allclose(p.loc[t].to_numpy(), np.exp(ll) / np.exp(ll).sum(), rtol=1e-10)
    assert (ds.predict(new) == truth.reindex(p.index)).mean() > 0.8
    # an unseen worker carries no fitted skill: its vote is ignored
    extra = pd.concat([rows, pd.DataFrame({"task": [t], "worker": ["stranger"], "label": ["c0"]})])
    np.testing.assert_allclose(ds.predict_proba(extra).loc[t], p.loc[t])


def test_confusion_table_is_tidy():
    frame, _ = simulate_crowd(n_tasks=100, n_workers=6, per_task=3, seed=1)
    ds = agg.DawidSkene().fit(frame)
    t = agg.confusion_table(ds)
    assert list(t.columns) == ["worker", "true_label", "observed_label", "probability"]
    assert len(t) == 6 * 3 * 3
    sums = t.groupby(["worker", "true_label"])["probability"].sum()
    np.testing.assert_allclose(sums, 1.0)
    row = t[(t.worker == "w0") & (t.true_label == "c1") & (t.observed_label == "c2")]["probability"].item()
    assert row == pytest.approx(ds.errors_.loc[("w0", "c2"), "c1"])


def test_calibration_by_hand():
    probas = pd.DataFrame({"a": [0.9, 0.6, 0.2, 0.55], "b": [0.1, 0.4, 0.8, 0.45]}, index=["t1", "t2", "t3", "t4"])
    truth = pd.Series({"t1": "a", "t2": "b", "t3": "b", "t4": "a"})
    bins, summary = agg.calibration_table(probas, truth, n_bins=2)
    # bin [0.5, 1]: all four (confidences .9 .6 .8 .55, hits 1 0 1 1)
    assert bins["n"].tolist() == [0, 4]
    assert bins.loc[1, "mean_confidence"] == pytest.approx((0.9 + 0.6 + 0.8 + 0.55) / 4)
    assert summary["accuracy"] == pytest.approx(0.75)
    assert summary["ece"] == pytest.approx(abs(0.75 - 0.7125))
    assert summary["brier"] == pytest.approx(np.mean([2 * 0.01, 2 * 0.36, 2 * 0.04, 2 * 0.2025]))
    assert summary["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.8, 0.55])))
