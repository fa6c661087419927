"""Property-based cross-checks (hypothesis) against the reference packages on random frames
with missing cells, NaN labels, duplicate answers and mixed types."""

from __future__ import annotations

import warnings

import krippendorff
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis import agreement as agr
from analysis.aggregate import MajorityVote
from analysis.frames import JudgmentFrameError

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def matrices(draw, min_units=2, max_units=12, min_raters=2, max_raters=6):
    """`[raters, units]` float matrix of labels 0..q-1 with NaN for missing cells."""
    r = draw(st.integers(min_raters, max_raters))
    u = draw(st.integers(min_units, max_units))
    q = draw(st.integers(1, 4))
    cells = draw(st.lists(st.integers(0, q - 1), min_size=r * u, max_size=r * u))
    miss = draw(st.lists(st.booleans(), min_size=r * u, max_size=r * u))
    m = np.asarray(cells, float).reshape(r, u)
    m[np.asarray(miss).reshape(r, u) & (draw(st.floats(0, 1)) < 0.7)] = np.nan
    return m


def to_frame(m: np.ndarray, labels=("a", "b", "c", "d")) -> pd.DataFrame:
    r, u = np.nonzero(np.isfinite(m))
    return pd.DataFrame({"task": [f"t{j}" for j in u], "worker": [f"w{i}" for i in r],
                         "label": np.asarray(labels, dtype=object)[m[r, u].astype(int)]})


def ref_alpha(m):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = krippendorff.alpha(reliability_data=m, level_of_measurement="nominal")
    except (ValueError, ZeroDivisionError):
        return np.nan
    return v


@SETTINGS
@given(matrices())
def test_alpha_matches_krippendorff_or_both_undefined(m):
    frame = to_frame(m)
    if frame.empty:
        return
    got = agr.krippendorff_alpha(frame, "nominal", n_boot=0)
    ref = ref_alpha(m)
    pairable = (np.isfinite(m).sum(0) >= 2).any()
    distinct = len(np.unique(m[:, np.isfinite(m).sum(0) >= 2][np.isfinite(m[:, np.isfinite(m).sum(0) >= 2])])) >= 2
    if pairable and distinct:
        assert got.value == pytest.approx(ref, abs=1e-9)
    else:
        assert np.isnan(got.value) and got.reason


@SETTINGS
@given(matrices(), st.data())
def test_nan_labels_raise_or_drop_to_the_reference(m, data):
    frame = to_frame(m).astype({"label": object})
    if len(frame) < 2:
        return
    i = data.draw(st.integers(0, len(frame) - 1))
    frame.loc[i, "label"] = data.draw(st.sampled_from([np.nan, None, ""]))
    with pytest.raises(JudgmentFrameError, match="column 'label' is empty"):
        agr.krippendorff_alpha(frame, "nominal", n_boot=0)
    dropped = frame.drop(index=i)
    if dropped.empty:
        return
    got = agr.krippendorff_alpha(frame, "nominal", n_boot=0, dropna=True)
    same = agr.krippendorff_alpha(dropped, "nominal", n_boot=0)
    assert (np.isnan(got.value) and np.isnan(same.value)) or got.value == pytest.approx(same.value, abs=1e-12)
    # and the dropped cell is just a missing cell for the reference
    mm = m.copy()
    w, t = int(frame.loc[i, "worker"][1:]), int(frame.loc[i, "task"][1:])
    mm[w, t] = np.nan
    ref = ref_alpha(mm)
    if np.isfinite(got.value):
        assert got.value == pytest.approx(ref, abs=1e-9)


@SETTINGS
@given(matrices(), st.data(), st.sampled_from(["first", "last"]))
def test_duplicates_raise_or_keep_one(m, data, keep):
    frame = to_frame(m)
    if frame.empty:
        return
    i = data.draw(st.integers(0, len(frame) - 1))
    other = {"a": "b", "b": "c", "c": "d", "d": "a"}[frame.loc[i, "label"]]
    dup = pd.concat([frame, frame.iloc[[i]].assign(label=other)], ignore_index=True)
    for fn in (lambda f, **k: agr.fleiss_kappa(f, n_boot=0, **k), lambda f, **k: MajorityVote(**k).fit(f)):
        with pytest.raises(JudgmentFrameError, match="answered unit"):
            fn(dup)
    expect = frame if keep == "first" else frame.assign(label=frame["label"].where(frame.index != i, other))
    got = agr.fleiss_kappa(dup, n_boot=0, duplicates=keep)
    ref = agr.fleiss_kappa(expect, n_boot=0)
    assert (np.isnan(got.value) and np.isnan(ref.value)) or got.value == pytest.approx(ref.value, abs=1e-12)


@SETTINGS
@given(matrices(), st.data(), st.sampled_from(["task", "worker", "label"]))
def test_mixed_types_raise_naming_the_column(m, data, col):
    frame = to_frame(m)
    if len(frame) < 2:
        return
    frame[col] = frame[col].astype(object)
    i = data.draw(st.integers(0, len(frame) - 1))
    frame.loc[i, col] = data.draw(st.sampled_from([1, 2.5, True]))
    for fn in (lambda f: agr.percent_agreement(f, n_boot=0), lambda f: agr.gwet_ac1(f, n_boot=0),
               lambda f: MajorityVote().fit(f)):
        with pytest.raises(JudgmentFrameError, match=f"column '{col}' mixes types"):
            fn(frame)


@SETTINGS
@given(matrices(min_raters=3, max_raters=3, min_units=3))
def test_fleiss_equal_counts_matches_statsmodels(m):
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    m = m[:, np.isfinite(m).all(0)]  # statsmodels needs the same raters on every unit
    if m.shape[1] < 2:
        return
    frame = to_frame(m)
    got = agr.fleiss_kappa(frame, n_boot=0)
    table, _ = aggregate_raters(m.T.astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fleiss_kappa(table)
    if len(np.unique(m)) < 2:
        assert np.isnan(got.value) and "every rating is" in got.reason
    else:
        assert got.value == pytest.approx(ref, abs=1e-12)
        gw = agr.fleiss_kappa(frame, n_boot=0, marginals="gwet")  # equal counts: one definition
        assert gw.value == pytest.approx(ref, abs=1e-12)


@SETTINGS
@given(matrices(min_units=2))
def test_gwet_ac1_and_fleiss_gwet_match_irrcac(m):
    from irrCAC.raw import CAC

    rated = np.isfinite(m).sum(0) >= 1
    m = m[:, rated]
    if m.shape[1] < 2 or not (np.isfinite(m).sum(0) >= 2).any():
        return
    frame = to_frame(m)
    if frame["label"].nunique() < 2:
        return
    data = pd.DataFrame(m.T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_ac1 = CAC(data.copy(), digits=15).gwet()["est"]["coefficient_value"]
        ref_fl = CAC(data.copy(), digits=15).fleiss()["est"]["coefficient_value"]
    frame_num = to_frame(m, labels=(0, 1, 2, 3))
    assert agr.gwet_ac1(frame_num, n_boot=0).value == pytest.approx(ref_ac1, abs=1e-9)
    assert agr.fleiss_kappa(frame, n_boot=0, marginals="gwet").value == pytest.approx(ref_fl, abs=1e-9)


@SETTINGS
@given(matrices(min_raters=2, max_raters=7))
def test_majority_vote_matches_crowdkit(m):
    from crowdkit.aggregation import MajorityVote as CKMV

    frame = to_frame(m)
    if frame.empty:
        return
    got = MajorityVote().fit(frame).labels_.sort_index()
    ref = CKMV().fit_predict(frame).sort_index()
    assert got.to_dict() == ref.to_dict()
