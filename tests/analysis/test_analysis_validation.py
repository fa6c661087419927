"""One validation step for every entry point: NaN, mixed types, duplicates,
degenerate inputs, ties, undefined bootstrap resamples."""

from __future__ import annotations

import warnings

import krippendorff
import numpy as np
import pandas as pd
import pytest

from analysis import aggregate as agg
from analysis import agreement as agr
from crowd.judgments import JudgmentFrameError
from analysis.model_human import model_vs_human
from analysis.quality import worker_quality
from analysis.validation import prepare_judgments

AGREEMENT = {
    "percent_agreement": lambda f, **kw: agr.percent_agreement(f, n_boot=0, **kw),
    "fleiss_kappa": lambda f, **kw: agr.fleiss_kappa(f, n_boot=0, **kw),
    "krippendorff_alpha": lambda f, **kw: agr.krippendorff_alpha(f, "nominal", n_boot=0, **kw),
    "gwet_ac1": lambda f, **kw: agr.gwet_ac1(f, n_boot=0, **kw),
    "light_kappa": lambda f, **kw: agr.cohen_kappa(f, "all", n_boot=0, **kw),
}
AGGREGATORS = {"mv": agg.MajorityVote, "wawa": agg.Wawa, "ds": agg.DawidSkene, "onecoin": agg.OneCoinDawidSkene,
               "glad": agg.GLAD}


def _entry_points():
    for name, fn in AGREEMENT.items():
        yield pytest.param(fn, id=name)
    for name, cls in AGGREGATORS.items():
        yield pytest.param(lambda f, cls=cls, **kw: cls(**kw).fit(f), id=name)
    yield pytest.param(lambda f, **kw: model_vs_human(f, "model:m", n_boot=0, **kw), id="model_vs_human")
    yield pytest.param(lambda f, **kw: worker_quality(f, **kw), id="worker_quality")


def _frame(labels=None):
    # 4 tasks x 3 workers + the model
    grid = labels or {"a": "xxyy", "b": "xxyx", "c": "xyyy", "model:m": "xxyy"}
    return pd.DataFrame([(f"t{j}", w, lab) for w, ls in grid.items() for j, lab in enumerate(ls)],
                        columns=["task", "worker", "label"])


@pytest.mark.parametrize("entry", list(_entry_points()))
def test_nan_label_is_an_error_unless_dropped(entry):
    f = _frame()
    f.loc[1, "label"] = np.nan
    with pytest.raises(JudgmentFrameError, match=r"column 'label' is empty .* row 1.*dropna=True"):
        entry(f)
    entry(f, dropna=True)  # opting in works


@pytest.mark.parametrize("col", ["task", "worker"])
@pytest.mark.parametrize("entry", list(_entry_points()))
def test_nan_id_is_an_error(entry, col):
    f = _frame()
    f[col] = f[col].astype(object)
    f.loc[2, col] = None
    with pytest.raises(JudgmentFrameError, match=rf"column '{col}' is empty .* row 2"):
        entry(f)
    with pytest.raises(JudgmentFrameError, match=rf"column '{col}' is empty"):
        entry(f, dropna=True)  # dropna is for labels only


@pytest.mark.parametrize("col,a,b", [("worker", 1, "1"), ("label", 1, "1"), ("task", 7, "7")])
@pytest.mark.parametrize("entry", list(_entry_points()))
def test_mixed_types_in_a_column_are_an_error(entry, col, a, b):
    f = _frame()
    f[col] = f[col].astype(object)
    rows = f.index[~f["worker"].astype(str).str.startswith("model:")][:2]
    f.loc[rows[0], col] = a
    f.loc[rows[1], col] = b
    with pytest.raises(JudgmentFrameError, match=rf"column '{col}' mixes types"):
        entry(f)


@pytest.mark.parametrize("entry", list(_entry_points()))
def test_duplicate_answers_are_an_error_unless_one_is_chosen(entry):
    f = pd.concat([_frame(), _frame().iloc[[0]].assign(label="y")], ignore_index=True)
    with pytest.raises(JudgmentFrameError, match=r"worker 'a' answered unit \('t0',\) 2 times"):
        entry(f)
    entry(f, duplicates="first")


def test_duplicates_first_and_last_keep_that_answer():
    f = pd.concat([_frame(), _frame().iloc[[0]].assign(label="y")], ignore_index=True)
    first = prepare_judgments(f, duplicates="first")
    last = prepare_judgments(f, duplicates="last")
    assert len(first) == len(last) == len(_frame())
    pick = lambda d: d[(d.task == "t0") & (d.worker == "a")]["label"].item()  # noqa: E731
    assert pick(first) == "x" and pick(last) == "y"
    assert first.attrs["dropped_duplicates"] == 1
    # t0: a's last answer y, then x from b, c and the model (counting both of a's answers gave 4/5)
    mv = agg.MajorityVote(duplicates="last").fit(f)
    assert mv.probas_.loc["t0", "x"] == pytest.approx(3 / 4)


def test_nan_label_in_a_text_column_is_not_a_category():
    # the defect: NaN in an object column was counted as its own category
    f = _frame({"a": "xxyy", "b": "xxyx", "c": "xyyy"})
    f = f.astype({"label": object})
    f.loc[4, "label"] = np.nan
    dropped = f.drop(index=4)
    got = agr.krippendorff_alpha(f, "nominal", n_boot=0, dropna=True).value
    wide = dropped.pivot(index="worker", columns="task", values="label")
    codes = wide.apply(lambda c: c.map({"x": 0.0, "y": 1.0}))
    ref = krippendorff.alpha(reliability_data=codes.to_numpy(float), level_of_measurement="nominal")
    assert got == pytest.approx(ref, abs=1e-12)


def test_float_labels_with_nan():
    f = _frame({"a": "1122", "b": "1121", "c": "1222"})
    f["label"] = f["label"].astype(float)
    f.loc[0, "label"] = np.nan
    with pytest.raises(JudgmentFrameError, match="column 'label' is empty"):
        agr.fleiss_kappa(f, n_boot=0)
    assert agr.fleiss_kappa(f, n_boot=0, dropna=True).n_judgments == len(f) - 1


@pytest.mark.parametrize("name", ["fleiss_kappa", "krippendorff_alpha", "gwet_ac1", "light_kappa"])
def test_degenerate_agreement_is_nan_with_a_reason(name):
    f = _frame({"a": "xxxx", "b": "xxxx", "c": "xxxx"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from 0/0
        est = AGREEMENT[name](f)
    assert np.isnan(est.value)
    assert "every rating is 'x'" in est.reason
    assert est.n_judgments == 12


def test_no_unit_with_two_ratings_is_nan_with_a_reason():
    f = pd.DataFrame({"task": ["t1", "t2"], "worker": ["a", "b"], "label": ["x", "y"]})
    est = agr.krippendorff_alpha(f, "nominal", n_boot=0)
    assert np.isnan(est.value) and "no unit has two or more ratings" in est.reason


def test_percent_agreement_of_identical_labels_is_one():
    assert agr.percent_agreement(_frame({"a": "xxxx", "b": "xxxx"}), n_boot=0).value == 1.0


@pytest.mark.parametrize("name", list(AGGREGATORS))
def test_aggregators_return_the_unanimous_label(name):
    f = _frame({"a": "xxxx", "b": "xxxx", "c": "xxx"})
    model = AGGREGATORS[name]().fit(f)
    assert (model.labels_ == "x").all() and len(model.labels_) == 4
    assert (model.probas_["x"] == 1.0).all()
    assert "every answer is 'x'" in model.degenerate_


def test_majority_vote_ties_first_uses_the_tie_test_to_pick():
    # weighted votes 0.1 + 0.2 for "b" and 0.3 for "a": a tie (isclose), though 0.1 + 0.2 > 0.3
    f = pd.DataFrame({"task": ["t"] * 3, "worker": ["u", "v", "w"], "label": ["b", "b", "a"]})
    skills = pd.Series({"u": 0.1, "v": 0.2, "w": 0.3})
    assert 0.1 + 0.2 > 0.3
    mv = agg.MajorityVote(ties="first").fit(f, skills)
    assert mv.ties_["t"] and mv.labels_["t"] == "a"  # the tied label that sorts first
    assert agg.MajorityVote(ties="none").fit(f, skills).labels_["t"] is None


def test_bootstrap_reports_undefined_resamples():
    # 3 tasks; resamples drawing only the unanimous tasks have p_e = 1: kappa undefined
    f = _frame({"a": "xxy", "b": "xxx", "c": "xxy"})
    est = agr.fleiss_kappa(f, n_boot=400, seed=1)
    assert est.n_boot == 400
    assert 0 < est.n_boot_undefined < 400
    # P(all 3 draws among the 2 unanimous tasks) = (2/3)^3 = 0.30 of resamples
    assert est.n_boot_undefined / 400 == pytest.approx(8 / 27, abs=0.06)
    assert est.ci_unreliable and "undefined" in est.reason
    big = agr.fleiss_kappa(_frame(), n_boot=200, seed=0)
    assert not big.ci_unreliable or big.n_boot_undefined > 10


def test_cohen_pair_with_integer_worker_ids_picks_those_workers():
    # ids keep their type: integer workers sort 0, 1, 2, ..., 10 (not "0", "1", "10", "2")
    rng = np.random.default_rng(0)
    rows = [(t, w, int(rng.integers(0, 3))) for t in range(40) for w in range(11)]
    f = pd.DataFrame(rows, columns=["task", "worker", "label"])
    pair = agr.cohen_kappa(f, raters=(2, 10), n_boot=0).value
    alone = agr.cohen_kappa(f[f["worker"].isin([2, 10])], n_boot=0).value
    assert pair == pytest.approx(alone, abs=1e-12)


def test_item_agreement_rows_match_their_units_with_integer_tasks():
    f = pd.DataFrame([(t, w, "x" if t == 10 else ("x" if w else "y")) for t in range(12) for w in range(3)],
                     columns=["task", "worker", "label"])
    t = agr.item_agreement(f).set_index("task")
    assert t.loc[10, "modal_share"] == 1.0 and t.loc[2, "modal_share"] == pytest.approx(2 / 3)
