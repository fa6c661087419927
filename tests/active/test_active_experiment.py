"""Experiment figures on hand-checkable curves, and a tiny end-to-end grid through the CLI."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from active.experiment import aubc, collect_finished, labels_to_reach, summarize, verdict


def test_aubc_is_mean_accuracy_over_the_budget_range():
    assert aubc([0.1, 0.2, 0.3], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    # trapezoids: (0.2+0.4)/2*0.1 + (0.4+1.0)/2*0.1 = 0.03 + 0.07 = 0.10, range 0.2 -> 0.5
    assert aubc([0.1, 0.2, 0.3], [0.2, 0.4, 1.0]) == pytest.approx(0.5)
    assert aubc([0.1], [0.7]) == 0.7
    with pytest.raises(ValueError, match="equal"):
        aubc([0.1, 0.2], [0.5])


def test_labels_to_reach():
    assert labels_to_reach([10, 20, 30], [0.1, 0.5, 0.9], 0.5) == 20
    assert labels_to_reach([10, 20, 30], [0.1, 0.5, 0.9], 0.95) is None


def _curves():
    rows = []
    for s, m, worst in (("random", "erm", [0.2, 0.3]), ("margin", "erm", [0.2, 0.4]),
                        ("margin", "center-distance", [0.3, 0.6])):
        for seed in (0, 1):
            for r, w in enumerate(worst):
                rows.append({"strategy": s, "method": m, "seed": seed, "round": r, "n_labelled": 10 * (r + 1),
                             "fraction_labelled": 0.1 * (r + 1), "overall_accuracy": w + 0.2,
                             "minority_mean_accuracy": w + 0.1, "worst_domain_accuracy": w,
                             "query_minority_share": 0.5 if r == 0 else np.nan, "query_s": 1.0 if r == 0 else np.nan,
                             "train_s": 2.0})
    return pd.DataFrame(rows)


def test_summary_and_verdict():
    full = pd.DataFrame([{"method": m, "seed": s, "worst_domain_accuracy": 0.6}
                         for m in ("erm", "center-distance") for s in (0, 1)])
    summary, per_seed = summarize(_curves(), full, pool_size=100)
    mc = summary[(summary.strategy == "margin") & (summary.method == "center-distance")].iloc[0]
    assert mc["aubc_worst"] == pytest.approx(0.45) and mc["aubc_worst_std"] == 0.0
    assert mc["labels_to_95pct_worst"] == 20 and mc["pool_share_to_95pct_worst"] == pytest.approx(0.2)
    assert mc["reached_95pct_worst"] == "2/2"
    re = summary[(summary.strategy == "random")].iloc[0]
    assert np.isnan(re["labels_to_95pct_worst"]) and re["reached_95pct_worst"] == "0/2"
    assert mc["query_minority_share"] == 0.5 and mc["train_s_per_round"] == 2.0
    v = verdict(summary, per_seed)
    assert v["margin+cd aubc_worst vs random+erm"]["result"] == "better"
    assert v["margin+cd aubc_worst vs margin+erm"]["gain"] == pytest.approx(0.15)  # same on both seeds
    assert v["margin+cd best aubc_worst of the pairs run"] == {"result": True, "pairs_run": 3}
    assert v["margin+cd reaches 95% full-pool worst with <= 30% labelled (all seeds)"] is True


def test_paired_gain_interval_decides_the_verdict():
    from active.experiment import paired_gain

    ps = pd.DataFrame([{"strategy": s, "method": "erm", "seed": i, "aubc_worst": v}
                       for s, vals in (("a", [0.5, 0.6, 0.7]), ("b", [0.4, 0.55, 0.6])) for i, v in enumerate(vals)])
    g = paired_gain(ps, ("a", "erm"), ("b", "erm"), "aubc_worst")
    # differences 0.1, 0.05, 0.1: mean 0.08333, sd 0.028868, t(0.975, 2) = 4.302653
    assert g["gain"] == pytest.approx(0.0833333) and g["seeds"] == 3
    assert g["ci95"] == pytest.approx([0.0833333 - 0.0717109, 0.0833333 + 0.0717109], abs=1e-6)
    assert g["result"] == "better"
    ps.loc[(ps.strategy == "b") & (ps.seed == 0), "aubc_worst"] = 0.7  # differences -0.2, 0.05, 0.1
    assert paired_gain(ps, ("a", "erm"), ("b", "erm"), "aubc_worst")["result"] == "no evidence"


@pytest.mark.slow
def test_experiment_cli_tiny_grid(tmp_path):
    from argus.cli import cli

    res = CliRunner().invoke(cli, ["experiment", "active", "--strategies", "random,margin", "--train-methods", "erm",
                                   "--seeds", "1", "--pool-size", "120", "--test-size", "30", "--image-size", "16",
                                   "--rounds", "1", "--budget", "20", "--initial", "20", "--epochs", "1",
                                   "--device", "cpu", "--out", str(tmp_path), "--quiet"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert {(r["strategy"], r["method"]) for r in doc["summary"]} == {("random", "erm"), ("margin", "erm")}
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert curves.groupby("strategy")["n_labelled"].apply(list).to_dict() == {"margin": [20, 40], "random": [20, 40]}
    assert (tmp_path / "active_curves.png").exists() and (tmp_path / "full" / "erm-s0.json").exists()
    assert doc["verdict"]["margin+cd aubc_worst vs random+erm"] is None  # combination not run
    # an experiment stopped early is summarised from its finished runs
    got, full = collect_finished(tmp_path, rounds=1)
    assert len(got) == 4 and set(got["strategy"]) == {"random", "margin"} and full["method"].tolist() == ["erm"]
    assert collect_finished(tmp_path, rounds=2)[0].empty
