"""`argus demo` end to end on a reduced run: it must get the right answers where the truth is
known, not only finish."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def test_dawid_skene_tracks_the_simulated_worker_accuracies(demo_run):
    out, summary, _ = demo_run
    checks = summary["checks"]
    assert checks["n_workers_compared"] == summary["config"]["n_workers"]
    assert checks["ds_vs_true_accuracy_pearson"] >= 0.9
    # recompute from the files the demo wrote, not from its own summary
    m = pd.read_csv(out / "crowd" / "workers_vs_truth.csv")
    r = m[["skill", "accuracy"]].corr().iloc[0, 1]
    assert r == pytest.approx(checks["ds_vs_true_accuracy_pearson"], abs=1e-3)


def test_every_spammer_is_flagged(demo_run):
    out, summary, _ = demo_run
    roster = pd.read_csv(out / "crowd" / "roster.csv")
    true_spammers = set(roster.loc[roster["kind"] == "spammer", "worker"])
    assert len(true_spammers) == summary["config"]["mix"]["spammer"] == 3
    assert true_spammers <= set(summary["checks"]["flagged_spammers"])
    # Dawid-Skene ranks every spammer below every reliable worker
    m = pd.read_csv(out / "crowd" / "workers_vs_truth.csv")
    assert m.loc[m["kind"] == "spammer", "skill"].max() < m.loc[m["kind"] == "reliable", "skill"].min()


def test_the_improvement_clue_names_the_spurious_background(demo_run):
    out, summary, stdout = demo_run
    clue = summary["checks"]["clue"]
    assert clue is not None and clue["cue"] == "background"
    parts = json.loads((out / "data" / "parts.json").read_text())
    assert clue["group"] in set(parts["spurious_backgrounds"].values()) | set(parts["spurious_backgrounds"])
    assert "improvement clue found:" in stdout and clue["suggestion"] in stdout


def test_outputs_and_printed_summary(demo_run):
    out, summary, stdout = demo_run
    for key in ("report", "judgments", "roster", "summary"):
        assert (out / summary["paths"][key].split(str(out) + "/")[-1]).exists(), key
    html = (out / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3  # the plots are embedded
    frame = pd.read_csv(out / "crowd" / "judgments.csv", dtype={"label": str})
    assert set(frame["kind"]) == {"rate_arguments", "mark_rationale", "name_feature", "label"}
    regular = frame[~frame["is_gold"]].drop_duplicates(["task", "worker"])
    assert regular.groupby("task")["worker"].nunique().eq(summary["config"]["redundancy"]).all()
    assert frame["is_gold"].any() and frame["worker"].str.startswith("sim-").all()
    assert set(summary["accuracy"]["per_domain"]) == {"day", "night", "fog"}
    for name in ("data", "train", "eval", "explain", "server", "batch", "crowd", "export", "report", "checks", "improve"):
        assert f"{name}] done in" in stdout
    assert "Krippendorff's alpha" in stdout and "pointing game" in stdout and "model vs human" in stdout


def test_rerun_reuses_dataset_model_and_sheets(demo_run):
    from argus.pipelines.demo import STAGES, DemoRun, Progress, demo_config, run_stages

    out, summary, _ = demo_run
    cfg = demo_config(**{k: v for k, v in summary["config"].items() if k in ("n_train", "n_test", "n_sheets", "seed")},
                      small=True, device="cpu")
    reusable = [s for s in STAGES if s.name in ("data", "train", "explain")]
    lines = []
    run = run_stages(DemoRun(cfg, out, Progress(lines.append)), reusable)
    assert run.progress.reused == {"data": True, "train": True, "explain": True}
    assert run["train"] == out / "run" and run["explain"] == out / "sheets"
    # the reuse rule on a small dataset stage: same options -> reused; another spurious share
    # is another dataset -> made again, and so is every stage after it
    other = out / "other"
    small = demo_config(small=True, n_train=60, n_test=30, device="cpu")
    data = [s for s in STAGES if s.name == "data"]
    for spurious, reused in ((0.9, False), (0.9, True), (0.5, False)):
        run = run_stages(DemoRun(replace(small, spurious=spurious), other, Progress(lines.append)), data)
        assert run.progress.reused.get("data", False) is reused, spurious
    assert json.loads((other / "data" / "toyworld.json").read_text())["spurious"] == 0.5


def test_the_demo_acts_on_the_clue_and_measures_before_and_after(demo_run):
    out, summary, stdout = demo_run
    imp = summary["improvement"]
    assert imp is not None and imp["correction"] == "counterfactual" and not imp["fine_tune"]
    assert imp["epochs"] == summary["config"]["epochs"]
    assert imp["clues"]["cue"] == "background"
    doc = json.loads((out / "improve" / "improve.json").read_text())
    before, after = doc["results"]["before"], doc["results"]["counterfactual"]
    assert imp["cue_free_accuracy"] == {"before": before["cue_free"]["overall"], "after": after["cue_free"]["overall"],
                                        "gain_points": round(100 * (after["cue_free"]["overall"]
                                                                    - before["cue_free"]["overall"]), 1)}
    # the judged model is measured on the same test split the eval stage used
    assert before["test"]["overall"] == pytest.approx(summary["accuracy"]["overall"], abs=1e-9)
    # the cue-free twin holds the same test rows without the cue
    cue_free = pd.read_csv(out / "improve" / "cue_free" / "samples.csv")
    test = pd.read_csv(out / "data" / "samples.csv").query("split == 'test'")
    assert cue_free["sample_id"].tolist() == test["sample_id"].tolist() and cue_free["spurious"].sum() == 0
    assert "after the fix (counterfactual, retrained" in stdout and "cue-free test accuracy" in stdout
    html = (out / "report" / "report.html").read_text()
    assert html.count('<section id="improvement">') == 1 and "After the fix" in html
    assert (out / "report" / "figures" / "improvement.png").stat().st_size > 1000

