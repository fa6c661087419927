"""The sharded, resumable experiment grid: task order, deadlines between rounds, no task run
twice by concurrent workers, resume and config checks, prefix comparison of partial runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from active.grid import GridConfig, Task, plan_tasks, prefix_summary, run_grid, save_or_check_config, task_status
from active.loop import ActiveLoop, LoopConfig
from active.oracles import SimulatedOracle
from active.strategies import get_strategy


def test_tasks_come_in_priority_order():
    cfg = GridConfig(strategies=["random", "margin", "entropy"], methods=["erm", "center-distance"], seeds=[0, 1],
                     priority=[["margin", "center-distance"], ["random", "erm"]])
    names = [t.name for t in plan_tasks(cfg)]
    assert names[:4] == ["full-erm-s0", "full-center-distance-s0", "margin-center-distance-s0", "random-erm-s0"]
    assert names[4:8] == ["full-erm-s1", "full-center-distance-s1", "margin-center-distance-s1", "random-erm-s1"]
    assert names[8:12] == ["random-center-distance-s0", "margin-erm-s0", "entropy-erm-s0", "entropy-center-distance-s0"]
    assert len(names) == len(set(names)) == 2 * 2 + 3 * 2 * 2


def test_fractions_give_initial_budget_and_rounds():
    cfg = GridConfig(pool_size=50_000)
    assert (cfg.initial_size, cfg.budget, cfg.rounds) == (500, 500, 19)  # 1% then 1% rounds to 20%


def test_loop_starts_no_round_after_the_deadline_and_resumes(blob_pool, centroid_train_fn, tmp_path, monkeypatch):
    import active.loop as loop_mod

    clock = {"t": 0.0}
    monkeypatch.setattr(loop_mod.time, "time", lambda: clock["t"])

    def train(*a, **k):
        clock["t"] += 10.0  # every round takes 10 "seconds"
        return centroid_train_fn(*a, **k)

    def loop():
        return ActiveLoop(blob_pool(), blob_pool(30, seed=1), get_strategy("margin", device="cpu"), SimulatedOracle(),
                          train, tmp_path, LoopConfig(rounds=4, budget=5, initial_size=6, strategy="margin"))

    history = loop().run(deadline=15.0)  # round 0 ends at t=10, round 1 at t=20: round 2 never starts
    assert [r["round"] for r in history] == [0, 1]
    assert json.loads((tmp_path / "state.json").read_text())["next_round"] == 2
    history = loop().run()
    assert [r["round"] for r in history] == [0, 1, 2, 3, 4] and history[-1]["n_labelled"] == 6 + 4 * 5


def test_prefix_summary_uses_the_longest_prefix_every_pair_reached():
    rows = []
    for (s, m), rounds in {("margin", "erm"): {0: 5, 1: 3}, ("random", "erm"): {0: 4, 1: 4}}.items():
        for seed, r_done in rounds.items():
            for r in range(r_done):
                rows.append({"strategy": s, "method": m, "seed": seed, "round": r, "n_labelled": 10 * (r + 1),
                             "fraction_labelled": 0.1 * (r + 1), "overall_accuracy": 0.5, "minority_mean_accuracy": 0.4,
                             "worst_domain_accuracy": 0.1 * r + (0.2 if s == "margin" else 0.0)})
    table, r, seeds = prefix_summary(pd.DataFrame(rows), [("margin", "erm"), ("random", "erm")])
    assert (r, seeds) == (3, [0, 1])
    worst = dict(zip(table["strategy"], table["aubc_worst"]))
    # rounds 0..2: worst = 0.0, 0.1, 0.2 (+0.2 for margin); trapezoid mean over the range = 0.1 (+0.2)
    assert worst["random"] == pytest.approx(0.1) and worst["margin"] == pytest.approx(0.3)
    assert table.loc[table.strategy == "margin", "aubc_worst_ci95"].iloc[0] == pytest.approx(0.0)


def test_config_mismatch_on_resume_is_an_error(tmp_path):
    save_or_check_config(tmp_path, GridConfig(pool_size=1000))
    save_or_check_config(tmp_path, GridConfig(pool_size=1000))  # same: fine
    with pytest.raises(ValueError, match="other settings \\(pool_size\\)"):
        save_or_check_config(tmp_path, GridConfig(pool_size=2000))


TINY = dict(strategies=["random", "margin"], methods=["erm"], seeds=[0], priority=[["margin", "erm"]],
            pool_size=80, val_size=24, test_size=30, image_size=16, initial_fraction=0.25, round_fraction=0.25,
            final_fraction=0.5, epochs=1, min_steps=2, full_epochs=1, batch_size=16, score_batch_size=64,
            device="cpu")


@pytest.mark.slow
def test_two_workers_finish_a_tiny_grid_each_task_once_and_a_rerun_skips_it(tmp_path):
    cfg = GridConfig(**TINY)
    res = run_grid(tmp_path / "g", cfg, processes=2, render_workers=1, progress=False)
    assert res["coverage"] == {"full done": 1, "run done": 2}
    logs = "".join(p.read_text() for p in (tmp_path / "g" / "logs").glob("*.log"))
    for t in plan_tasks(cfg):
        assert logs.count(f"{t.name} starts") == 1, logs  # never two workers on one task
        assert task_status(tmp_path / "g", cfg, t)[0] == "done"
    curves = pd.read_csv(tmp_path / "g" / "curves.csv")
    assert sorted(curves.groupby("strategy")["n_labelled"].max().items()) == [("margin", 40), ("random", 40)]
    for f in ("summary.csv", "summary.md", "coverage.csv", "per_round_means.csv", "active_curves.png"):
        assert (tmp_path / "g" / f).exists(), f
    before = (tmp_path / "g" / "runs" / "margin-erm-s0" / "state.json").read_text()
    run_grid(tmp_path / "g", None, processes=1, render_workers=1, progress=False)
    assert (tmp_path / "g" / "runs" / "margin-erm-s0" / "state.json").read_text() == before
    logs = "".join(p.read_text() for p in (tmp_path / "g" / "logs").glob("*.log"))
    assert logs.count(" starts") == 3  # the rerun found every task done and started none
    np.testing.assert_array_equal(sorted(t.kind for t in plan_tasks(cfg)), ["full", "run", "run"])
    assert Task("run", "erm", 0, "margin").name == "margin-erm-s0"
