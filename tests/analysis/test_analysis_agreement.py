"""Agreement statistics: hand-checked 5x5 values and cross-checks against statsmodels,
krippendorff and irrCAC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.agreement import (agreement_by, agreement_table, cohen_kappa, fleiss_kappa, gwet_ac1, gwet_ac2,
                                infer_level, krippendorff_alpha, percent_agreement)
from analysis.frames import from_matrix


# --- hand-checked on the 5x5 frame of conftest.py (unit value counts (a, b)):
# u1 (5,0), u2 (4,1), u3 (2,3), u4 (0,5), u5 (1,4); m = 5 so m(m-1) = 20.
# P_u = sum c(c-1)/20 -> 1, 12/20, 8/20, 1, 12/20 -> P-bar = 3.6/5 = 0.72.
def test_percent_agreement_by_hand(frame_5x5):
    assert percent_agreement(frame_5x5, n_boot=0).value == pytest.approx(0.72, abs=1e-12)


def test_fleiss_by_hand(frame_5x5):
    # p_a = 12/25 = 0.48, p_b = 0.52, P_e = 0.48^2 + 0.52^2 = 0.5008
    # kappa = (0.72 - 0.5008) / (1 - 0.5008) = 0.2192 / 0.4992
    assert fleiss_kappa(frame_5x5, n_boot=0).value == pytest.approx(0.2192 / 0.4992, abs=1e-12)


def test_krippendorff_nominal_by_hand(frame_5x5):
    # o_ab = sum_u c_a c_b / (m - 1) = (0 + 4 + 6 + 0 + 4) / 4 = 3.5 -> D_o sum = 2 * 3.5 = 7
    # expected: 2 n_a n_b / (n - 1) = 2 * 12 * 13 / 24 = 13 -> alpha = 1 - 7/13 = 6/13
    assert krippendorff_alpha(frame_5x5, "nominal", n_boot=0).value == pytest.approx(6 / 13, abs=1e-12)


def test_gwet_ac1_by_hand(frame_5x5):
    # p_a = P-bar = 0.72; pi = (0.48, 0.52); p_e = 2/(2*1) * (0.48*0.52 + 0.52*0.48) = 0.4992
    # AC1 = (0.72 - 0.4992) / (1 - 0.4992) = 0.2208 / 0.5008
    assert gwet_ac1(frame_5x5, n_boot=0).value == pytest.approx(0.2208 / 0.5008, abs=1e-12)


def test_cohen_by_hand(frame_5x5):
    # r1 vs r2: (a,a) x3, (b,b) x1, (a,b) x1 -> Po = 0.8; r1 a/b = 0.8/0.2, r2 = 0.6/0.4
    # Pe = 0.8*0.6 + 0.2*0.4 = 0.56 -> kappa = 0.24 / 0.44 = 6/11
    assert cohen_kappa(frame_5x5, ("r1", "r2"), n_boot=0).value == pytest.approx(6 / 11, abs=1e-12)


def _two_raters(seed=0, n=80, k=4):
    rng = np.random.default_rng(seed)
    a = rng.integers(1, k + 1, n)
    b = np.where(rng.random(n) < 0.6, a, rng.integers(1, k + 1, n))
    frame = pd.DataFrame({"task": np.r_[np.arange(n), np.arange(n)].astype(str), "worker": ["A"] * n + ["B"] * n,
                          "label": np.r_[a, b]})
    table = pd.crosstab(a, b).reindex(index=range(1, k + 1), columns=range(1, k + 1), fill_value=0).to_numpy()
    return frame, table


@pytest.mark.parametrize("weights,wt", [(None, None), ("linear", "linear"), ("quadratic", "quadratic")],
                         ids=["unweighted", "linear", "quadratic"])
def test_cohen_matches_statsmodels(weights, wt):
    from statsmodels.stats.inter_rater import cohens_kappa
    frame, table = _two_raters()
    ours = cohen_kappa(frame, weights=weights, n_boot=0).value
    ref = cohens_kappa(table, wt=wt).kappa
    assert ours == pytest.approx(ref, abs=1e-12)


def test_fleiss_matches_statsmodels():
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa as sm_fleiss
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 60)
    ratings = np.where(rng.random((60, 6)) < 0.7, truth[:, None], rng.integers(0, 3, (60, 6)))
    ours = fleiss_kappa(from_matrix(ratings.T.astype(float)), n_boot=0).value
    assert ours == pytest.approx(sm_fleiss(aggregate_raters(ratings)[0]), abs=1e-12)


def _reliability(seed=1, raters=7, units=120, missing=0.3):
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, units)
    m = np.where(rng.random((raters, units)) < 0.65, truth, rng.integers(1, 6, (raters, units))).astype(float)
    m[rng.random(m.shape) < missing] = np.nan
    return m


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_alpha_matches_krippendorff_package(level):
    import krippendorff
    m = _reliability()
    ref = krippendorff.alpha(reliability_data=m, level_of_measurement=level)
    assert krippendorff_alpha(m, level, n_boot=0).value == pytest.approx(ref, abs=1e-9)
    # the long-frame path gives the same number
    assert krippendorff_alpha(from_matrix(m), level, n_boot=0).value == pytest.approx(ref, abs=1e-9)


def test_alpha_non_integer_values_match():
    import krippendorff
    m = _reliability(seed=4) * 0.37 + 0.1
    for level in ("interval", "ratio"):
        assert krippendorff_alpha(m, level, n_boot=0).value == pytest.approx(
            krippendorff.alpha(reliability_data=m, level_of_measurement=level), abs=1e-9)


@pytest.mark.parametrize("weights", ["identity", "linear", "quadratic"])
def test_gwet_matches_irrcac(weights):
    from irrCAC.raw import CAC
    m = _reliability(seed=5, raters=5, units=80, missing=0.2)
    ratings = pd.DataFrame(m.T, columns=[f"r{i}" for i in range(m.shape[0])])
    ref = CAC(ratings, weights=weights, digits=15).gwet()["est"]["coefficient_value"]
    ours = gwet_ac2(from_matrix(m), weights, n_boot=0).value
    assert ours == pytest.approx(ref, abs=1e-9)


def test_bootstrap_is_seeded_and_brackets_the_value():
    m = _reliability(seed=2, units=300)
    a = krippendorff_alpha(m, "ordinal", n_boot=300, seed=11)
    b = krippendorff_alpha(m, "ordinal", n_boot=300, seed=11)
    c = krippendorff_alpha(m, "ordinal", n_boot=300, seed=12)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert a.ci_low < a.value < a.ci_high
    assert 0.02 < a.ci_high - a.ci_low < 0.3


def test_bootstrap_clusters_by_task():
    """Items of one task move together: with every task's two items identical, clustered and
    unclustered intervals differ, the point estimate does not."""
    m = _reliability(seed=6, units=60)
    base = from_matrix(m)
    frame = pd.concat([base.assign(item="arg:1"), base.assign(item="arg:2")], ignore_index=True)
    clustered = percent_agreement(frame, n_boot=400, seed=0)
    flat = percent_agreement(frame, n_boot=400, seed=0, cluster=None)
    assert clustered.value == pytest.approx(flat.value)
    assert (clustered.ci_high - clustered.ci_low) > 1.2 * (flat.ci_high - flat.ci_low)


def test_level_inferred_from_kind_and_never_defaulted(frame_5x5):
    with pytest.raises(ValueError, match="level of measurement is required"):
        krippendorff_alpha(frame_5x5, n_boot=0)
    likert = frame_5x5.assign(label=frame_5x5["label"].map({"a": "1", "b": "4"}), kind="rate_arguments", item="match")
    assert infer_level(likert) == "ordinal"
    assert krippendorff_alpha(likert, n_boot=0).level == "ordinal"
    mixed = pd.concat([likert, likert.assign(item="arg:1")])
    with pytest.raises(ValueError, match="mixes items of different levels"):
        krippendorff_alpha(mixed, n_boot=0)
    with pytest.raises(ValueError, match="cannot infer the level"):
        infer_level(frame_5x5.assign(kind="survey", item="q1"))


def test_bad_input_errors_name_the_problem(frame_5x5):
    with pytest.raises(ValueError, match="needs numeric labels"):
        krippendorff_alpha(frame_5x5, "interval", n_boot=0)
    dup = pd.concat([frame_5x5, frame_5x5.iloc[[0]]])
    with pytest.raises(ValueError, match="answered unit .* 2 times"):
        percent_agreement(dup, n_boot=0)
    with pytest.raises(ValueError, match="two raters"):
        cohen_kappa(frame_5x5, n_boot=0)
    # string labels at ordinal level work with an explicit order
    ordered = krippendorff_alpha(frame_5x5, "ordinal", categories=["a", "b"], n_boot=0)
    assert ordered.value == pytest.approx(6 / 13)  # two categories: ordinal = nominal


def test_light_kappa_is_mean_of_pairs(frame_5x5):
    pairs = [("r1", "r2"), ("r1", "r3"), ("r1", "r4"), ("r1", "r5"), ("r2", "r3"), ("r2", "r4"), ("r2", "r5"),
             ("r3", "r4"), ("r3", "r5"), ("r4", "r5")]
    expected = np.mean([cohen_kappa(frame_5x5, p, n_boot=0).value for p in pairs])
    light = cohen_kappa(frame_5x5, "all", n_boot=50)
    assert light.statistic == "light_kappa" and light.extra["pairs"] == 10
    assert light.value == pytest.approx(expected, abs=1e-12)


def test_breakdowns_and_table(frame_5x5):
    frame = frame_5x5.assign(batch=np.where(frame_5x5["task"].isin(["u1", "u2"]), "b1", "b2"),
                             kind="label", item="label")
    by = agreement_by(frame, "batch", "percent_agreement", n_boot=0)
    # b1: P_u = 1, 0.6 -> 0.8 ; b2: 0.4, 1, 0.6 -> 2/3
    assert by.set_index("batch")["value"].to_dict() == pytest.approx({"b1": 0.8, "b2": 2 / 3})
    table = agreement_table(frame, n_boot=50)
    assert set(table["statistic"]) == {"percent_agreement", "krippendorff_alpha", "fleiss_kappa", "gwet_ac1"}
    alpha = table.set_index("statistic").loc["krippendorff_alpha"]
    assert alpha["value"] == pytest.approx(6 / 13) and alpha["level"] == "nominal"
