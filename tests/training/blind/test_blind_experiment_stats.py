"""Experiment table numbers on hand-made per-run results (analysis.method_comparison), and
--imbalance subsampling (training.experiments)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis._bootstrap import bootstrap
from analysis.method_comparison import (gap_closure, markdown_table, mean_ci, paired_difference, paired_wilcoxon,
                                        plot_curves, plot_summary, summarize)
from training.experiments import domain_metrics, subsample_domains

# method -> per-seed (day, night, fog) test accuracies in [0, 1]
ACC = {
    "erm": [(0.90, 0.60, 0.50), (0.92, 0.62, 0.52), (0.91, 0.58, 0.48)],
    "jtt": [(0.88, 0.66, 0.60), (0.90, 0.66, 0.58), (0.89, 0.64, 0.62)],
    "center-distance": [(0.90, 0.70, 0.65), (0.92, 0.72, 0.66), (0.91, 0.68, 0.64)],
    "groupdro-oracle": [(0.86, 0.75, 0.70), (0.88, 0.76, 0.72), (0.87, 0.74, 0.68)],
}


def records(acc=ACC):
    out = []
    for m, rows in acc.items():
        for seed, (day, night, fog) in enumerate(rows):
            per_domain = {"day": {"accuracy": day, "n": 100}, "night": {"accuracy": night, "n": 20},
                          "fog": {"accuracy": fog, "n": 20}}
            sel = {"epoch": 3, "metrics": domain_metrics(per_domain, "day"), "test": {"per_domain": per_domain}}
            out.append({"method": m, "seed": seed, "selections": {"worst_class": sel, "oracle_worst_domain": sel}})
    return out


def test_domain_metrics_by_hand():
    m = domain_metrics({"day": {"accuracy": 0.9, "n": 80}, "night": {"accuracy": 0.6, "n": 10},
                        "fog": {"accuracy": 0.5, "n": 10}}, "day")
    assert m["majority_accuracy"] == 0.9
    assert m["minority_mean_accuracy"] == pytest.approx(0.55)
    assert m["worst_domain_accuracy"] == 0.5
    assert m["overall_accuracy"] == pytest.approx((72 + 6 + 5) / 100)
    assert math.isnan(m["p10_domain_accuracy"])  # only 3 domains
    many = domain_metrics({f"w{i}": 0.1 * i for i in range(1, 11)}, "w10")
    assert many["p10_domain_accuracy"] == pytest.approx(np.percentile([0.1 * i for i in range(1, 11)], 10))
    with pytest.raises(ValueError, match="majority domain 'dusk'"):
        domain_metrics({"day": 0.9}, "dusk")


def test_summary_numbers_by_hand():
    s = summarize(records())
    cd = s["numbers"]["center-distance"]
    assert cd["worst_domain_accuracy"]["mean"] == pytest.approx(65.0)
    assert cd["worst_domain_accuracy"]["std"] == pytest.approx(1.0)
    # minority mean per seed: cd (67.5, 69, 66) vs erm (55, 57, 53) -> gains 12.5, 12, 13
    assert cd["minority_gain"]["mean"] == pytest.approx(12.5)
    assert cd["majority_retention"]["mean"] == pytest.approx(0.0)
    # gap closure from means: WDA erm 50, oracle 70, cd 65 -> 0.75; jtt 60 -> 0.5
    assert s["gap_closure"]["center-distance"]["value"] == pytest.approx(0.75)
    assert s["gap_closure"]["jtt"]["value"] == pytest.approx(0.5)
    assert s["gap_closure"]["groupdro-oracle"]["value"] == pytest.approx(1.0)
    lo, hi = cd["worst_domain_accuracy"]["ci_low"], cd["worst_domain_accuracy"]["ci_high"]
    assert 64.0 <= lo <= 65.0 <= hi <= 66.0
    t = s["tests"]["center-distance"]["vs_erm"]["worst_domain_accuracy"]
    assert t["p"] == pytest.approx(stats.wilcoxon([65, 66, 64], [50, 52, 48]).pvalue)
    assert "vs_jtt" in s["tests"]["center-distance"] and "vs_jtt" not in s["tests"]["jtt"]
    table = s["table"]
    row = table[table["method"] == "center-distance"].iloc[0]
    assert row["worst domain"] == "65.0 ± 1.0" and row["min. gain vs ERM"] == "+12.5 ± 0.5"
    assert "groupdro-oracle (oracle)" in set(table["method"])
    assert "p10 domain" not in table.columns
    assert markdown_table(table).count("\n") == len(table) + 1


def test_gap_closure_undefined_when_the_oracle_does_not_beat_erm():
    acc = dict(ACC)
    acc["groupdro-oracle"] = [(0.5, 0.5, 0.45), (0.5, 0.5, 0.45), (0.5, 0.5, 0.45)]
    s = summarize(records(acc))
    assert math.isnan(s["gap_closure"]["center-distance"]["value"])
    row = s["table"][s["table"]["method"] == "center-distance"].iloc[0]
    assert row["gap closure"].startswith("undefined")


def test_bootstrap_and_wilcoxon_edge_cases():
    assert mean_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)
    assert mean_ci([2.0]) == (2.0, 2.0)
    lo, hi = mean_ci([1.0, 2, 3, 4, 5])
    assert 1.0 <= lo < 3.0 < hi <= 5.0
    # the one bootstrap of analysis: the same resamples give the same interval as a direct call
    x = np.array([1.0, 2, 3, 4, 5])
    _, lo2, hi2, _ = bootstrap(lambda s: s["x"] / s["n"], {"x": x, "n": np.ones(5)}, n_boot=2000, seed=0)
    assert (lo, hi) == (lo2, hi2)
    d = paired_difference([3.0, 4, 5, 6], [1.0, 1, 1, 1])
    assert d["mean"] == pytest.approx(3.5) and d["std"] == pytest.approx(np.std([2, 3, 4, 5], ddof=1))
    assert d["p"] == pytest.approx(stats.wilcoxon([2, 3, 4, 5]).pvalue) and 2.0 <= d["ci_low"] < 3.5 < d["ci_high"] <= 5.0
    assert math.isnan(paired_wilcoxon([1, 2], [1, 2])["p"])
    assert paired_wilcoxon([1, 2, 3, 4, 5], [0] * 5)["p"] == pytest.approx(0.0625)


def test_gap_closure_bootstraps_seeds_jointly():
    g = gap_closure([65, 66, 64], [50, 52, 48], [70, 72, 68])
    assert g["value"] == pytest.approx(0.75) and g["oracle_minus_erm_wda"] == pytest.approx(20)
    assert g["ci_low"] <= 0.75 <= g["ci_high"]
    # every resample keeps each seed's triple together: constant per-seed closure -> a point interval
    g = gap_closure([60, 70, 80], [50, 60, 70], [70, 80, 90])
    assert g["value"] == pytest.approx(0.5) and g["ci_low"] == pytest.approx(0.5) and g["ci_high"] == pytest.approx(0.5)


def test_plot_written(tmp_path):
    s = summarize(records())
    path = plot_summary(s, tmp_path / "p.png", oracle_summary=summarize(records(), selection="oracle_worst_domain"))
    assert path.stat().st_size > 10_000
    recs = records()
    for r in recs:
        r["curve"] = [{"epoch": e, "val_worst_class_accuracy": 0.1 * e, "test": {"day": 0.1 * e, "night": 0.05 * e}}
                      for e in range(1, 5)]
    assert plot_curves(recs, tmp_path / "c.png").stat().st_size > 10_000


def _table():
    rows = []
    for split, n_day, n_night, n_fog in (("train", 40, 20, 10), ("val", 20, 10, 10), ("test", 10, 10, 10)):
        for dom, n in (("day", n_day), ("night", n_night), ("fog", n_fog)):
            for i in range(n):
                rows.append({"sample_id": f"{split}-{dom}-{i}", "path": f"images/{split}-{dom}-{i}.png",
                             "label": ["cat", "dog"][i % 2], "domain": dom, "split": split})
    rows.append({"sample_id": "u", "path": "images/u.png", "label": "cat", "domain": "", "split": "train"})
    return pd.DataFrame(rows)


def test_subsample_domains_ratio_stratified_and_seeded():
    t = _table()
    sub = subsample_domains(t, ratio=4, seed=0)
    counts = sub.groupby(["split", "domain"]).size()
    assert counts["train"].to_dict() == {"": 1, "day": 40, "fog": 10, "night": 10}
    assert counts["val"].to_dict() == {"day": 20, "fog": 5, "night": 5}
    assert counts["test"].to_dict() == {"day": 10, "fog": 10, "night": 10}  # test kept whole
    night = sub[(sub["split"] == "train") & (sub["domain"] == "night")]
    assert night["label"].value_counts().to_dict() == {"cat": 5, "dog": 5}
    assert sub.equals(subsample_domains(t, 4, seed=0))
    assert not sub.equals(subsample_domains(t, 4, seed=1))
    with pytest.raises(ValueError, match="ratio"):
        subsample_domains(t, 0.5)
    with pytest.raises(ValueError, match="no domain-labelled rows"):
        subsample_domains(t.assign(domain=""), 2)
