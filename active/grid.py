"""The active-learning experiment as a sharded, resumable grid (the dissertation's chapter-4 experiment).

Strategies x training methods x seeds on one large toy-world pool, plus a full-pool reference
per method and seed, run by many worker processes at once (ten on one GPU; or several machines
sharing the folder). Everything lives in OUT:

- `grid.json`: the configuration (`GridConfig`); a grid resumed with another one is an error;
- `runs/<strategy>-<method>-s<seed>/`: one active-learning run (`state.json` holds the labelled
  set and one history row per finished round, `history.csv` the same rows);
- `full/<method>-s<seed>.json`: the full-pool references;
- `locks/`: one `flock` file per task: a task is run by the worker holding its lock, so two
  workers never run the same task and a killed worker's task is free again at once;
- `logs/`: one log per worker; `summary.*`, `curves.csv`, `coverage.csv`, plots: `summarize`.

Tasks run in priority order: for each seed its references and the priority pairs (margin and
random with erm and center-distance), then the other pairs seed by seed. A worker walks the list
and takes every unfinished task whose lock is free. A run resumes after its last finished round;
with a deadline no new round starts after it, so a stopped grid loses at most the rounds in
flight and the same command finishes it later:

    python -m active.grid run --out DIR [--config FILE.json] [--processes 10] [--deadline-s 600]
    python -m active.grid summarize --out DIR

The pool, validation and test images are rendered once into the uint8 shard cache
(`$ARGUS_CACHE`) before the workers start; every worker keeps its own copy on the GPU (a 50,000
item pool of 32 px is 150 MB) and trains from it in memory (`active.trainers.TrainerFn`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

PRIORITY_PAIRS = (("margin", "center-distance"), ("random", "erm"), ("margin", "erm"), ("random", "center-distance"))
ALL_STRATEGIES = ("random", "least-confidence", "margin", "entropy", "coreset", "badge", "cluster-margin")


@dataclass
class GridConfig:
    """What defines the grid. Fractions are of the pool: initial 1%, then rounds of 1% to 20%.

    The world is fixed (`world_seed`); a seed changes the initial labelled set, the training
    runs and the strategies' random draws. `epochs` per round with `min_steps` (a step-sized
    schedule for small labelled sets, see `active.trainers.TrainerFn`); blind model selection on
    the validation pool (worst-class accuracy, labels only).
    """

    strategies: list = field(default_factory=lambda: list(ALL_STRATEGIES))
    methods: list = field(default_factory=lambda: ["erm", "center-distance"])
    seeds: list = field(default_factory=lambda: [0, 1, 2, 3, 4])
    priority: list = field(default_factory=lambda: [list(p) for p in PRIORITY_PAIRS])
    pool_size: int = 50_000
    val_size: int = 2_500
    test_size: int = 3_000
    image_size: int = 32
    domains: dict = field(default_factory=lambda: {"day": 0.95, "night": 0.035, "fog": 0.015})
    world_seed: int = 0
    initial_fraction: float = 0.01
    round_fraction: float = 0.01
    final_fraction: float = 0.20
    epochs: int = 15
    min_steps: int = 600
    full_epochs: int = 15
    batch_size: int = 128
    lr: float = 0.05
    amp_dtype: str = "bfloat16"
    score_batch_size: int = 2048
    arch: str = "small-cnn"
    device: str = "auto"

    @property
    def initial_size(self) -> int:
        return int(round(self.initial_fraction * self.pool_size))

    @property
    def budget(self) -> int:
        return int(round(self.round_fraction * self.pool_size))

    @property
    def rounds(self) -> int:
        return int(round((self.final_fraction - self.initial_fraction) / self.round_fraction))

    def check(self) -> None:
        from active.strategies import get_strategy
        from training.methods import build_method

        for s in self.strategies:
            get_strategy(s, device="cpu")
        for m in self.methods:
            build_method(m)
        if self.initial_size < 1 or self.budget < 1 or self.rounds < 0:
            raise ValueError(f"grid: initial {self.initial_size}, budget {self.budget}, rounds {self.rounds}: "
                             f"fractions too small for a pool of {self.pool_size}")


def load_config(out) -> GridConfig:
    return GridConfig(**json.loads((Path(out) / "grid.json").read_text()))


def save_or_check_config(out, cfg: GridConfig) -> None:
    """Write `grid.json`, or check that an existing one matches `cfg`."""
    cfg.check()
    path = Path(out) / "grid.json"
    doc = asdict(cfg)
    if path.exists():
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(doc)):
            diff = sorted(k for k in set(old) | set(doc) if old.get(k) != json.loads(json.dumps(doc)).get(k))
            raise ValueError(f"{path}: the grid in this folder was run with other settings ({', '.join(diff)}); "
                             f"use another --out or the same configuration")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


# ------------------------------------------------------------------------------------- tasks

@dataclass(frozen=True)
class Task:
    kind: str  # "full" | "run"
    method: str
    seed: int
    strategy: str = ""

    @property
    def name(self) -> str:
        return f"full-{self.method}-s{self.seed}" if self.kind == "full" else f"{self.strategy}-{self.method}-s{self.seed}"


def plan_tasks(cfg: GridConfig) -> list[Task]:
    """Every task in priority order (see the module docstring)."""
    pairs = [(s, m) for s in cfg.strategies for m in cfg.methods]
    first = [tuple(p) for p in cfg.priority if tuple(p) in pairs]
    rest = [p for p in pairs if p not in first]
    tasks = []
    for seed in cfg.seeds:
        tasks += [Task("full", m, seed) for m in cfg.methods]
        tasks += [Task("run", m, seed, s) for s, m in first]
    for seed in cfg.seeds:
        tasks += [Task("run", m, seed, s) for s, m in rest]
    return tasks


def task_status(out, cfg: GridConfig, task: Task) -> tuple[str, int]:
    """`("done" | "partial" | "todo", rounds finished)`."""
    out = Path(out)
    if task.kind == "full":
        return ("done", 1) if (out / "full" / f"{task.method}-s{task.seed}.json").exists() else ("todo", 0)
    state = out / "runs" / task.name / "state.json"
    if not state.exists():
        return "todo", 0
    finished = int(json.loads(state.read_text())["next_round"])
    return ("done" if finished > cfg.rounds else "partial"), finished


# ------------------------------------------------------------------------------------- pools

def build_grid_pools(cfg: GridConfig, progress: bool = False, render_workers: int | None = None):
    """`(pool, val_pool, test_pool, majority_domain)`, each backed by the uint8 shard cache.

    Validation follows the pool's domain proportions exactly with classes balanced (like the
    toy world's val split); the test split is balanced over domains and classes.
    """
    from active.pool import ToyWorldPool
    from training import toyworld

    kw = dict(seed=cfg.world_seed, image_size=cfg.image_size, domains=cfg.domains, cache_images=True,
              render_workers=render_workers)
    pool = ToyWorldPool(cfg.pool_size, **kw)
    plan = toyworld.plan_split(cfg.val_size, toyworld.parse_domains(cfg.domains),
                               np.random.default_rng([cfg.world_seed, 0x7A1]))
    val = ToyWorldPool(cfg.val_size, offset=toyworld.VAL_OFFSET, labels=[p[0] for p in plan],
                       fixed_domains=[p[1] for p in plan], **kw)
    test = ToyWorldPool.balanced_test(cfg.test_size, **kw)
    for p in (pool, val, test):
        p.uint8_images(progress=progress)
    return pool, val, test, toyworld.majority_domain(pool.domains)


def _train_options(cfg: GridConfig) -> dict:
    return {"batch_size": cfg.batch_size, "lr": cfg.lr, "amp_dtype": cfg.amp_dtype}


def run_task(out, cfg: GridConfig, task: Task, pools, deadline: float | None = None) -> None:
    """Run (or resume) one task into OUT."""
    from active.experiment import full_pool_reference
    from active.runner import run_active
    from active.trainers import TrainerFn

    out = Path(out)
    pool, val, test, majority = pools
    if task.kind == "full":
        full_pool_reference(out, pool, test, majority, task.method, task.seed, cfg.full_epochs, _train_options(cfg),
                            cfg.device, cfg.score_batch_size, val_pool=val, min_steps=cfg.min_steps, keep_runs=False)
        return
    run_dir = out / "runs" / task.name
    train_fn = TrainerFn(run_dir / "train", method=task.method, epochs=cfg.epochs, min_steps=cfg.min_steps,
                         arch=cfg.arch, device=cfg.device, val_pool=val, keep_runs=False, **_train_options(cfg))
    run_active(run_dir, pool, test, majority, strategy=task.strategy, train_method=task.method, rounds=cfg.rounds,
               budget=cfg.budget, initial_size=cfg.initial_size, seed=task.seed, epochs=cfg.epochs, arch=cfg.arch,
               device=cfg.device, batch_size=cfg.score_batch_size,
               train_options={**_train_options(cfg), "min_steps": cfg.min_steps, "val_size": cfg.val_size},
               progress=False, train_fn=train_fn, deadline=deadline)


def work(out, worker: int = 0, deadline: float | None = None, log=print) -> list[str]:
    """One worker: run every unfinished task whose lock is free, in priority order, until the
    deadline. Returns the names of the tasks it worked on."""
    from training.image_cache import _locked

    out = Path(out)
    cfg = load_config(out)
    pools = build_grid_pools(cfg)
    (out / "locks").mkdir(parents=True, exist_ok=True)
    worked = []
    for task in plan_tasks(cfg):
        if deadline is not None and time.time() > deadline:
            break
        if task_status(out, cfg, task)[0] == "done":
            continue
        with _locked(out / "locks" / f"{task.name}.lock", blocking=False) as held:
            if not held or task_status(out, cfg, task)[0] == "done":
                continue
            t0 = time.time()
            log(f"worker {worker}: {task.name} starts ({task_status(out, cfg, task)[1]} rounds done)")
            try:
                run_task(out, cfg, task, pools, deadline)
            except Exception:  # one failing task must not stop the grid: log it and go on
                log(f"worker {worker}: {task.name} FAILED\n{traceback.format_exc()}")
                continue
            worked.append(task.name)
            status, rounds = task_status(out, cfg, task)
            log(f"worker {worker}: {task.name} {status} ({rounds} rounds) in {time.time() - t0:.1f}s")
    return worked


def run_grid(out, cfg: GridConfig | None = None, processes: int = 10, deadline_s: float | None = None,
             grace_s: float = 60.0, render_workers: int | None = None, progress: bool = True) -> dict:
    """Render the pools once, start `processes` workers, wait for them (killing what is left
    `grace_s` after the deadline), then summarise. Returns the coverage counts."""
    out = Path(out)
    if cfg is None:
        cfg = load_config(out)
    save_or_check_config(out, cfg)
    t0 = time.time()
    build_grid_pools(cfg, progress=progress, render_workers=render_workers)
    render_s = time.time() - t0
    deadline = None if deadline_s is None else t0 + deadline_s
    (out / "logs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    procs = []
    for i in range(processes):
        cmd = [sys.executable, "-m", "active.grid", "worker", "--out", str(out), "--worker", str(i)]
        if deadline is not None:
            cmd += ["--deadline", repr(deadline)]
        log = open(out / "logs" / f"worker-{i}.log", "a")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       cwd=str(Path(__file__).resolve().parents[1])), log))
    for p, log in procs:
        timeout = None if deadline is None else max(1.0, deadline + grace_s - time.time())
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()
    res = summarize_grid(out)
    res["render_s"] = round(render_s, 1)
    res["wall_s"] = round(time.time() - t0, 1)
    (out / "last_call.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


# ------------------------------------------------------------------------------------- summary

def coverage(out, cfg: GridConfig):
    """One row per task: status and rounds finished (what was run and what was not)."""
    import pandas as pd

    rows = []
    for t in plan_tasks(cfg):
        status, rounds = task_status(out, cfg, t)
        rows.append({"task": t.name, "kind": t.kind, "strategy": t.strategy or "(full pool)", "method": t.method,
                     "seed": t.seed, "status": status, "rounds_done": rounds,
                     "rounds_total": 1 if t.kind == "full" else cfg.rounds + 1})
    return pd.DataFrame(rows)


def prefix_summary(curves, pairs, metrics=("overall_accuracy", "minority_mean_accuracy", "worst_domain_accuracy"),
                   min_seeds: int = 2):
    """AUBC of `pairs` over their longest common prefix of rounds: the largest R such that at
    least `min_seeds` seeds have >= R finished rounds for every pair (the evidence a stopped grid
    already holds). Returns `(table, R, seeds)`; an empty table when there is no such R."""
    import pandas as pd

    from active.experiment import aubc, t_half_width

    if not len(curves):
        return pd.DataFrame(), 0, []
    done = (curves.groupby(["strategy", "method", "seed"])["round"].max() + 1).to_dict()
    seeds_all = sorted(curves["seed"].unique().tolist())
    for r in range(int(max(done.values())), 1, -1):
        seeds = [s for s in seeds_all if all(done.get((st, m, s), 0) >= r for st, m in pairs)]
        if len(seeds) >= min_seeds:
            break
    else:
        return pd.DataFrame(), 0, []
    rows = []
    for st, m in pairs:
        per_seed = []
        for s in seeds:
            g = curves[(curves.strategy == st) & (curves.method == m) & (curves.seed == s) & (curves["round"] < r)]
            g = g.sort_values("round")
            per_seed.append({k: aubc(g["fraction_labelled"], g[k]) for k in metrics})
        row = {"strategy": st, "method": m, "seeds": len(seeds), "rounds": r,
               "labelled_range": f"{int(g['n_labelled'].min())}-{int(g['n_labelled'].max())}"}
        for k in metrics:
            vals = [p[k] for p in per_seed]
            name = "aubc_" + k.split("_")[0]
            row[name], row[name + "_ci95"] = float(np.mean(vals)), t_half_width(vals)
        rows.append(row)
    return pd.DataFrame(rows), r, seeds


def summarize_grid(out) -> dict:
    """Tables, per-round CSV and plots from whatever has finished (complete runs only in the
    AUBC table; every finished round in `curves.csv`)."""
    import pandas as pd

    from active.experiment import markdown, plot_curves, summarize, t_half_width, verdict

    out = Path(out)
    cfg = load_config(out)
    cov = coverage(out, cfg)
    cov.to_csv(out / "coverage.csv", index=False)
    curves = []
    for t in plan_tasks(cfg):
        hist = out / "runs" / t.name / "state.json"
        if t.kind == "run" and hist.exists():
            h = json.loads(hist.read_text())["history"]
            done = task_status(out, cfg, t)[0] == "done"
            curves += [{"strategy": t.strategy, "method": t.method, "seed": t.seed, "complete": done, **r} for r in h]
    curves = pd.DataFrame(curves)
    full = pd.DataFrame([json.loads(p.read_text()) for p in sorted((out / "full").glob("*.json"))])
    counts = cov.groupby(["kind", "status"]).size().to_dict()
    res = {"coverage": {f"{k[0]} {k[1]}": int(v) for k, v in counts.items()}}
    if len(curves):
        curves.to_csv(out / "curves.csv", index=False)
    complete = curves[curves["complete"]] if len(curves) else curves
    if len(complete) and len(full):
        summary, per_seed = summarize(complete.drop(columns=["complete"]), full, cfg.pool_size)
        for key in ("aubc_overall", "aubc_minority", "aubc_worst"):
            summary[key + "_ci95"] = [t_half_width(per_seed[(per_seed.strategy == r.strategy) & (per_seed.method == r.method)][key])
                                      for r in summary.itertuples()]
        summary = summary.sort_values("aubc_worst", ascending=False).reset_index(drop=True)
        summary.to_csv(out / "summary.csv", index=False)
        per_seed.to_csv(out / "per_seed.csv", index=False)
        (out / "summary.md").write_text(markdown(summary) + "\n")
        plot_curves(complete, out / "active_curves.png")
        res["verdict"] = verdict(summary, per_seed)
        res["best_worst_aubc"] = f"{summary.iloc[0]['strategy']} + {summary.iloc[0]['method']}"
        res["summary"] = json.loads(summary.to_json(orient="records"))
    if len(curves):
        # every finished round, partial runs included (points average the seeds that reached them)
        plot_curves(curves.drop(columns=["complete"]), out / "active_curves_all_rounds.png")
        share = curves.dropna(subset=["query_minority_share"]).groupby(["strategy", "method", "round"])[
            ["query_minority_share", "train_s", "query_s", "query_score_s", "query_select_s"]].mean().reset_index()
        share.to_csv(out / "per_round_means.csv", index=False)
        prefix, r, seeds = prefix_summary(curves, [tuple(p) for p in cfg.priority])
        if len(prefix):
            prefix = prefix.sort_values("aubc_worst", ascending=False)
            prefix.to_csv(out / "prefix_summary.csv", index=False)
            res["prefix"] = {"rounds": r, "seeds": seeds, "table": json.loads(prefix.to_json(orient="records"))}
    if len(full):
        res["full_pool"] = json.loads(full.to_json(orient="records"))
    (out / "summary.json").write_text(json.dumps({"config": asdict(cfg), **res}, indent=2, default=str) + "\n")
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m active.grid", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="render the pools, run workers until done or the deadline, summarise")
    r.add_argument("--out", required=True)
    r.add_argument("--config", default=None, help="GridConfig fields as JSON (default: OUT/grid.json, else defaults)")
    r.add_argument("--processes", type=int, default=10)
    r.add_argument("--deadline-s", type=float, default=None, help="start no new round after this many seconds")
    r.add_argument("--render-workers", type=int, default=None)
    w = sub.add_parser("worker", help="(internal) one worker process")
    w.add_argument("--out", required=True)
    w.add_argument("--worker", type=int, default=0)
    w.add_argument("--deadline", type=float, default=None)
    s = sub.add_parser("summarize", help="tables, CSV and plots from what has finished")
    s.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "worker":
        import torch

        torch.set_num_threads(1)
        work(args.out, args.worker, args.deadline, log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True))
    elif args.cmd == "summarize":
        print(json.dumps(summarize_grid(args.out), indent=2, default=str))
    else:
        out = Path(args.out)
        if args.config:
            cfg = GridConfig(**json.loads(Path(args.config).read_text()))
        elif (out / "grid.json").exists():
            cfg = load_config(out)
        else:
            cfg = GridConfig()
        res = run_grid(out, cfg, args.processes, args.deadline_s, render_workers=args.render_workers)
        print(json.dumps({k: v for k, v in res.items() if k != "summary"}, indent=2, default=str))


if __name__ == "__main__":
    main()
