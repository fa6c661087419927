"""The blind-domains experiment as a grid of runs: plan, run (sharded, resumable), summarise.

A *plan* is a list of jobs (`plan.json` in the experiment folder); each job is one training run
(dataset, method, options, seed, budget) with a unique `key`, which is also its folder under
`runs/`. One `result.json` per job (written by `training.experiments.train_and_evaluate`) is the
unit of work: a job whose file exists is skipped, so an interrupted grid resumes where it
stopped, on this machine or another one the result files were copied to.

Jobs may depend on other jobs, resolved when the job starts:

* `options: {"tuned": {...}}` -- the configuration of a small grid that won on the *blind*
  tuning criterion (mean worst-class validation accuracy over the tuning seeds; never domains);
* `epochs: {"match_rows_of": [...]}` -- as many epochs as make the run's sample visits equal the
  mean `rows_seen` of those jobs (e.g. every method at JTT's compute).

`run_jobs` is the worker loop: it takes the first job whose dependencies are done and that no
live process has claimed (a claim is a file created with O_EXCL), runs it, and repeats; several
workers (`launch_workers`: one process each, one torch thread each, sharing a GPU) work on the
same folder. `deadline` stops claiming new jobs after that time (running jobs finish), so a
grid fits into a time-limited session and the next session picks up the rest.

The tables, intervals and tests come from `analysis.method_comparison`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

PLAN_FILE = "plan.json"
RUNS = "runs"
CLAIMS = "claims"
TUNING_SCORE = "val_worst_class_accuracy"  # the blind tuning criterion (labels only)


# ----------------------------------------------------------------------------- plan

def job(key: str, data, method: str, seed: int, *, options=None, epochs=None, train=None, deps=(), **extra) -> dict:
    """One job of a plan (a JSON-able dict). `extra` fields land in its `result.json`."""
    return {"key": key, "data": str(data), "method": method, "seed": int(seed), "options": options or {},
            "epochs": epochs, "train": dict(train or {}), "deps": list(deps), "extra": extra}


def result_path(out, key: str) -> Path:
    return Path(out) / RUNS / key / "result.json"


def read_result(out, key: str) -> dict | None:
    path = result_path(out, key)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_plan(out, jobs: list[dict]) -> Path:
    keys = [j["key"] for j in jobs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"plan: duplicate job key {dup[0]!r}")
    known = set(keys)
    for j in jobs:
        missing = [d for d in j["deps"] if d not in known]
        if missing:
            raise ValueError(f"plan: job {j['key']!r} depends on {missing[0]!r}, which is not in the plan")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / PLAN_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(jobs, indent=1))
    os.replace(tmp, path)
    return path


def select_config(out, grid: dict[str, dict], keys_by_config: dict[str, list[str]]) -> tuple[str, dict, dict]:
    """The grid configuration with the best mean worst-class validation accuracy (at each run's
    selected epoch) over its tuning runs; ties go to the first configuration (the default).
    Returns `(name, options, scores)`."""
    scores = {}
    for name, keys in keys_by_config.items():
        vals = []
        for k in keys:
            r = read_result(out, k)
            if r is None:
                raise RuntimeError(f"tuning run {k!r} has no result yet")
            vals.append(r["selections"]["worst_class"][TUNING_SCORE])
        scores[name] = float(sum(vals) / len(vals))
    best = max(scores, key=lambda n: (scores[n], -list(grid).index(n)))
    return best, dict(grid[best]), scores


def resolve_job(out, j: dict, n_train: int) -> tuple[dict, int | None, dict, dict]:
    """(method options, epochs, training options, extra fields) of a job whose dependencies are done."""
    extra = dict(j["extra"])
    options = j["options"]
    train = dict(j["train"])
    if isinstance(options, dict) and "tuned" in options:
        t = options["tuned"]
        name, chosen, scores = select_config(out, t["grid"], t["keys"])
        options, overrides = _split_config(chosen)
        train.update(overrides)
        extra.update(chosen_config=name, tuning_scores=scores)
    epochs = j["epochs"]
    if isinstance(epochs, dict):
        rows = [read_result(out, k)["rows_seen"] for k in epochs["match_rows_of"]]
        target = sum(rows) / len(rows)
        epochs = max(1, int(round(target / n_train)))
        extra.update(matched_rows=target)
    return options, epochs, train, extra


# ----------------------------------------------------------------------------- the protocol

BLIND_METHODS = ("erm", "class-balanced", "focal", "center", "distance-sampling", "center-distance", "jtt")
ORACLE = "domain-balanced-oracle"
DEFAULT_METHODS = BLIND_METHODS + (ORACLE,)
PRIORITY = ("erm", "center-distance", "jtt", ORACLE)  # the cells run first
# Variants of the dissertation's method (blind options of `center-distance`), run as extra rows
VARIANTS = {
    "center-distance+eval-distances": {"distances": "eval"},
    "center-distance+anneal": {"anneal_epochs": 10},
    "center-distance+center-warmup": {"center_warmup_epochs": 5},
}


def tuning_grids(epochs: int) -> dict[str, dict[str, dict]]:
    """The blind tuning grid of every method: the same budget (4 configurations, the first is the
    default) for each, chosen on worst-class validation accuracy. A configuration is method
    options; a `train` entry changes training options (weight decay for the methods without
    options of their own). JTT's ranges follow its paper (first stage a fraction of the run,
    up-weight 5-50); ours: center weight, power, floor, warm-ups."""
    q = max(1, round(epochs / 4))
    wd = {"c0": {}, "c1": {"train": {"weight_decay": 1e-3}}, "c2": {"train": {"weight_decay": 2e-3}},
          "c3": {"train": {"weight_decay": 5e-3}}}
    return {
        "erm": wd, "class-balanced": wd, ORACLE: wd,
        "focal": {"c0": {}, "c1": {"gamma": 0.5}, "c2": {"gamma": 1.0}, "c3": {"gamma": 5.0}},
        "center": {"c0": {}, "c1": {"center_weight": 0.003}, "c2": {"center_weight": 0.03},
                   "c3": {"center_weight": 0.03, "center_warmup_epochs": 5}},
        "distance-sampling": {"c0": {}, "c1": {"power": 2.0}, "c2": {"floor": 0.3}, "c3": {"power": 2.0, "floor": 0.3}},
        "center-distance": {"c0": {}, "c1": {"center_weight": 0.03}, "c2": {"power": 2.0},
                            "c3": {"center_weight": 0.03, "power": 2.0, "center_warmup_epochs": 5}},
        "jtt": {"c0": {"first_epochs": q}, "c1": {"first_epochs": q, "upweight": 20},
                "c2": {"first_epochs": max(1, q // 2)}, "c3": {"first_epochs": max(1, q // 2), "upweight": 20}},
    }


def _split_config(cfg: dict) -> tuple[dict, dict]:
    cfg = dict(cfg)
    return {k: v for k, v in cfg.items() if k != "train"}, dict(cfg.get("train", {}))


def plan_protocol(datasets: dict[str, dict], methods=DEFAULT_METHODS, seeds=range(10), tune: bool = False,
                  tune_seeds=(1000, 1001), equal_compute=("erm", "center-distance"), variants=VARIANTS,
                  priority=PRIORITY) -> list[dict]:
    """Jobs of the whole protocol, the most important first.

    `datasets`: name -> {"data": folder, "epochs": own budget, "train": TrainConfig options}.
    Per dataset: (tuning runs, when `tune`;) every method at its own budget (`own/`); the
    `equal_compute` methods at JTT's compute (`jtt-compute/`: epochs that match JTT's mean
    sample visits); the `variants` of center-distance at their own budget. Keys:
    `<dataset>/<budget>/<label>/<config>/seed<k>` with config `default`, `tuned` or a grid name.
    Order: the priority methods of every dataset, their equal-compute arm, the other methods, their
    equal-compute arm, the variants -- so a grid cut short by a deadline has the key cells on all
    its seeds.
    """
    seeds = list(seeds)
    jobs: list[dict] = []
    tuned_keys: dict = {}
    for ds, spec in datasets.items():
        grids = tuning_grids(spec["epochs"])
        for m in methods:
            if not tune:
                continue
            keys = {}
            for name, cfg in grids.get(m, {"c0": {}}).items():
                opts, train = _split_config(cfg)
                keys[name] = []
                for s in tune_seeds:
                    key = f"{ds}/tune/{m}/{name}/seed{s}"
                    jobs.append(job(key, spec["data"], m, s, options=opts, epochs=spec["epochs"],
                                    train={**spec["train"], **train}, dataset=ds, label=m, budget="tune", config=name,
                                    phase="tune"))
                    keys[name].append(key)
            tuned_keys[(ds, m)] = keys

    def options_of(ds, m):
        grid = tuning_grids(datasets[ds]["epochs"]).get(m, {"c0": {}})
        if tune:
            keys = tuned_keys[(ds, m)]
            return {"tuned": {"grid": grid, "keys": keys}}, "tuned", [k for ks in keys.values() for k in ks]
        opts, _ = _split_config(grid["c0"])
        return opts, "default", []

    def own(ds, m, seed):
        spec = datasets[ds]
        opts, cfg, deps = options_of(ds, m)
        return job(f"{ds}/own/{m}/{cfg}/seed{seed}", spec["data"], m, seed, options=opts, epochs=spec["epochs"],
                   train=spec["train"], deps=deps, dataset=ds, label=m, budget="own", config=cfg, phase="own")

    def at_jtt(ds, m, seed):
        spec = datasets[ds]
        opts, cfg, deps = options_of(ds, m)
        _, jcfg, _ = options_of(ds, "jtt")
        jtt_keys = [f"{ds}/own/jtt/{jcfg}/seed{s}" for s in seeds]
        return job(f"{ds}/jtt-compute/{m}/{cfg}/seed{seed}", spec["data"], m, seed, options=opts,
                   epochs={"match_rows_of": jtt_keys}, train=spec["train"], deps=deps + jtt_keys, dataset=ds, label=m,
                   budget="jtt-compute", config=cfg, phase="jtt-compute")

    first = [m for m in priority if m in methods]
    rest = [m for m in methods if m not in first]
    for ds in datasets:
        for s in seeds:
            jobs += [own(ds, m, s) for m in first]
    equal = [m for m in equal_compute if m in methods and m != "jtt"] if "jtt" in methods else []
    for group in ([m for m in equal if m in first], None, [m for m in equal if m not in first]):
        for ds in datasets:
            for s in seeds:
                jobs += [own(ds, m, s) for m in rest] if group is None else [at_jtt(ds, m, s) for m in group]
    for ds, spec in datasets.items():
        for s in seeds:
            for label, opts in variants.items():
                jobs.append(job(f"{ds}/own/{label}/default/seed{s}", spec["data"], "center-distance", s, options=opts,
                                epochs=spec["epochs"], train=spec["train"], dataset=ds, label=label, budget="own",
                                config="default", phase="variant"))
    return jobs


# ----------------------------------------------------------------------------- workers

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim(out: Path, key: str) -> bool:
    """Create the job's claim file; a claim left by a dead process of this host is taken over."""
    path = out / CLAIMS / (key.replace("/", "__") + ".claim")
    path.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                host, pid = path.read_text().split()
            except (OSError, ValueError):
                return False
            if host != socket.gethostname() or _alive(int(pid)):
                return False
            path.unlink(missing_ok=True)  # its process died: the job is free again
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return True
    return False


def run_jobs(out, jobs: list[dict] | None = None, deadline: float | None = None, progress: bool = True,
             poll_s: float = 2.0) -> dict:
    """Worker loop over the plan in `out` (or `jobs`): run every job this process can claim.

    Returns `{"ran": [...keys], "left": [...keys not done]}`. `deadline` (a `time.time()`
    value): claim nothing new after it.
    """
    from training.progress import progress_bar as tqdm

    from training.datasets import load_dataset
    from training.experiments import train_and_evaluate

    out = Path(out)
    jobs = jobs if jobs is not None else json.loads((out / PLAN_FILE).read_text())
    infos: dict = {}
    ran = []
    bar = tqdm(total=len(jobs), desc=f"blind-domains {os.getpid()}", unit="run", disable=not progress)
    while True:
        done = {j["key"] for j in jobs if result_path(out, j["key"]).exists()}
        bar.n = len(done)
        bar.refresh()
        pending = [j for j in jobs if j["key"] not in done]
        if not pending or (deadline is not None and time.time() > deadline):
            break
        ready = [j for j in pending if all(d in done for d in j["deps"])]
        picked = next((j for j in ready if _claim(out, j["key"])), None)
        if picked is None:
            time.sleep(poll_s)  # the rest is claimed by other workers or waits for their results
            continue
        data = picked["data"]
        if data not in infos:
            infos[data] = load_dataset(data)
        info = infos[data]
        n_train = int((info.table["split"] == "train").sum())
        options, epochs, train, extra = resolve_job(out, picked, n_train)
        extra = {"key": picked["key"], **extra}
        bar.set_postfix_str(picked["key"])
        try:
            train_and_evaluate(info, out / RUNS / picked["key"], picked["method"], picked["seed"], epochs=epochs,
                               method_options=options, train_options=train, extra=extra)
        finally:
            (out / CLAIMS / (picked["key"].replace("/", "__") + ".claim")).unlink(missing_ok=True)
        ran.append(picked["key"])
    bar.close()
    left = [j["key"] for j in jobs if not result_path(out, j["key"]).exists()]
    return {"ran": ran, "left": left}


def launch_workers(out, workers: int, threads: int = 1, deadline: float | None = None, gpus: int = 0,
                   quiet: bool = True) -> list[int]:
    """Run the plan in `out` with `workers` processes (this interpreter, `threads` torch threads
    each; with `gpus` > 0 worker i sees GPU i % gpus); waits for them and returns their exit codes."""
    procs = []
    for i in range(workers):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2])] +
                                            ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        if gpus > 0:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        cmd = [sys.executable, "-m", "argus.pipelines.blind_domains", str(out), "--threads", str(threads)]
        if deadline is not None:
            cmd += ["--deadline", str(deadline)]
        if quiet:
            cmd.append("--quiet")
        procs.append(subprocess.Popen(cmd, env=env))
    return [p.wait() for p in procs]


def _worker_main(argv: list[str]) -> None:
    """`python -m argus.pipelines.blind_domains OUT [--threads N] [--deadline T] [--quiet]`."""
    out = Path(argv[0])
    threads = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else None
    deadline = float(argv[argv.index("--deadline") + 1]) if "--deadline" in argv else None
    if threads:
        import torch

        torch.set_num_threads(threads)
    run_jobs(out, deadline=deadline, progress="--quiet" not in argv)


# ----------------------------------------------------------------------------- reading results

def collect_results(out, jobs: list[dict] | None = None) -> list[dict]:
    """The `result.json` records of the plan's finished jobs, in plan order."""
    out = Path(out)
    jobs = jobs if jobs is not None else json.loads((out / PLAN_FILE).read_text())
    return [r for r in (read_result(out, j["key"]) for j in jobs) if r is not None]


def epochs_for_rows(rows: float, n_train: int) -> int:
    """Epochs of a uniform-epoch method that visit about `rows` training rows."""
    return max(1, int(math.floor(rows / max(n_train, 1) + 0.5)))


if __name__ == "__main__":
    _worker_main(sys.argv[1:])


# ----------------------------------------------------------------------------- summaries

def summarize_protocol(out, dest, prefix: str = "blind_domains", jobs: list[dict] | None = None,
                       dataset_in_name: bool = True) -> dict:
    """Tables, plots and per-seed CSVs of every dataset of a protocol run, plus the verdicts.

    Per dataset `ds` (files in `dest`): `<prefix>_<ds>.{md,csv,json,png}` + `_per_seed.csv` (every
    label at its own budget), `<prefix>_<ds>_equal_compute.*` (the equal-compute arm beside JTT,
    whose own budget is JTT's compute), `<prefix>_<ds>_curves.png` (learning curves: ERM's
    convergence), and `<prefix>_verdicts.json` for all datasets. Returns the verdicts.
    """
    from analysis.method_comparison import finite, label_of, plot_curves, write_summary

    out, dest = Path(out), Path(dest)
    jobs = jobs if jobs is not None else json.loads((out / PLAN_FILE).read_text())
    records = collect_results(out, jobs)
    order = list(dict.fromkeys(j["extra"]["label"] for j in jobs))
    verdicts = {}
    for ds in dict.fromkeys(j["extra"]["dataset"] for j in jobs):
        base = f"{prefix}_{ds}" if dataset_in_name else prefix
        mine = [r for r in records if r.get("dataset") == ds]
        own = [r for r in mine if r.get("budget") == "own"]
        if not own:
            continue
        v = verdicts[ds] = {"runs": len(mine)}
        main = write_summary(own, dest, order, name=base,
                             title=f"{ds}: every method at its own budget")
        plot_curves(own, dest / f"{base}_curves.png",
                    labels=[m for m in ("erm", "center-distance", "jtt", ORACLE) if m in main["numbers"]],
                    title=f"{ds}: learning curves (mean over seeds)")
        v.update(_verdicts(main))
        equal = [r for r in mine if r.get("budget") == "jtt-compute"]
        if equal:
            jtt_own = [r for r in own if label_of(r) == "jtt"]
            eq = write_summary(equal + jtt_own, dest, order, name=f"{base}_equal_compute",
                               title=f"{ds}: at JTT's compute (same sample visits)")
            v["equal_compute"] = _verdicts(eq)
        tuning = [r for r in mine if r.get("budget") == "tune"]
        if tuning:
            v["tuning"] = {m: {r["config"]: r["selections"]["worst_class"][TUNING_SCORE] for r in tuning
                               if label_of(r) == m} for m in dict.fromkeys(label_of(r) for r in tuning)}
    (dest / f"{prefix}_verdicts.json").write_text(json.dumps(finite(verdicts), indent=2, default=str))
    return verdicts


def _verdicts(summary: dict) -> dict:
    """The issue's targets judged on one summary (points; paired over seeds)."""
    n = summary["numbers"]
    out: dict = {}
    if "erm" in n:
        erm = n["erm"]
        out["erm_gap_majority_minus_worst"] = erm["majority_accuracy"]["mean"] - erm["worst_domain_accuracy"]["mean"]
        out["erm_gap_ge_15_points"] = out["erm_gap_majority_minus_worst"] >= 15
    oracle = summary.get("oracle")
    if oracle in n and "wda_gain_vs_erm" in n[oracle]:
        g = n[oracle]["wda_gain_vs_erm"]
        out["oracle_beats_erm"] = {"wda_gain": g["mean"], "ci": [g["ci_low"], g["ci_high"]], "p": g["p"],
                                   "met": bool(g["ci_low"] > 0)}
    cd = n.get("center-distance")
    if cd and "minority_gain" in cd:
        gain, ret, wda = cd["minority_gain"], cd["majority_retention"], cd["wda_gain_vs_erm"]
        out["minority_gain_ge_3_points"] = {"value": gain["mean"], "ci": [gain["ci_low"], gain["ci_high"]],
                                            "p": gain["p"], "met": bool(gain["mean"] >= 3.0)}
        out["majority_drop_le_0.5_points"] = {"value": ret["mean"], "ci": [ret["ci_low"], ret["ci_high"]],
                                              "p": ret["p"], "met": bool(ret["mean"] >= -0.5)}
        out["worst_domain_gain_ci_excludes_0"] = {"value": wda["mean"], "ci": [wda["ci_low"], wda["ci_high"]],
                                                  "p": wda["p"], "met": bool(wda["ci_low"] > 0)}
        out["seeds"] = wda["n"]
    if cd and "wda_minus_jtt" in cd:
        d = cd["wda_minus_jtt"]
        out["center_distance_minus_jtt_wda"] = {"value": d["mean"], "ci": [d["ci_low"], d["ci_high"]], "p": d["p"],
                                                "beats_jtt": bool(d["ci_low"] > 0), "loses_to_jtt": bool(d["ci_high"] < 0)}
    return out


def run_blind_domains(data, out, methods=DEFAULT_METHODS, seeds=5, epochs: int = 8, *, imbalance: float | None = None,
                      imbalance_seed: int = 0, method_options: dict | None = None, train_options: dict | None = None,
                      tune: bool = False, equal_compute=(), variants: dict | None = None, workers: int = 1,
                      threads: int | None = None, deadline: float | None = None, progress: bool = True) -> dict | None:
    """Every method on the same split and seeds of one dataset, tested per domain (what
    `argus experiment blind-domains` runs). Writes `plan.json`, `runs/`, and the summaries
    (`summary.{md,csv,json,png}`, `summary_per_seed.csv`, `summary_oracle_selection.csv`,
    `summary_curves.png`, `summary_equal_compute.*` with `equal_compute`, `summary_verdicts.json`)
    into `out`; rerun to resume. `method_options`: {method: {option: value}} fixed for every run
    of that method (overrides its default; not tuned). `workers` > 1 runs that many processes on
    the plan; several invocations on the same `out` also share the work. Returns the verdicts, or
    None when runs are left (a deadline passed, or other processes still run them).
    """
    from training.experiments import write_imbalanced_dataset

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    methods = list(dict.fromkeys(methods))
    from training.methods import available_methods

    unknown = sorted(set(methods) - set(available_methods()))
    if unknown:
        raise ValueError(f"--methods: unknown method(s) {', '.join(unknown)}; available: {', '.join(available_methods())}")
    method_options = method_options or {}
    stray = sorted(set(method_options) - set(methods))
    if stray:
        raise ValueError(f"--method-option given for method(s) not run: {', '.join(stray)}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("--seeds: need at least one seed")
    if imbalance is not None:
        data = write_imbalanced_dataset(data, out / f"data_imbalance_{imbalance:g}", imbalance, imbalance_seed)
    from training.datasets import load_dataset
    from training.evaluate import training_majority_domain

    info = load_dataset(data)
    if training_majority_domain(info) is None:
        raise ValueError(f"{info.root}: the train split has no domain labels; blind-domains needs them for evaluation")
    jobs = plan_protocol({"data": {"data": str(info.root), "epochs": epochs, "train": dict(train_options or {})}},
                         methods, seed_list, tune=tune, equal_compute=equal_compute, variants=variants or {})
    renamed = {}
    for j in jobs:  # fixed options given on the command line win over the defaults (and name the config)
        fixed = method_options.get(j["method"])
        if fixed and isinstance(j["options"], dict) and "tuned" not in j["options"]:
            j["options"] = {**j["options"], **fixed}
            tag = "opt-" + hashlib.sha1(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:8]
            renamed[j["key"]] = j["key"].replace("/default/", f"/{tag}/")
            j["extra"]["config"] = tag
    for j in jobs:
        j["key"] = renamed.get(j["key"], j["key"])
        j["deps"] = [renamed.get(d, d) for d in j["deps"]]
        if isinstance(j["epochs"], dict):
            j["epochs"]["match_rows_of"] = [renamed.get(d, d) for d in j["epochs"]["match_rows_of"]]
    write_plan(out, jobs)
    if workers > 1:
        import torch

        launch_workers(out, workers, threads=threads or 1, deadline=deadline,
                       gpus=torch.cuda.device_count() if (train_options or {}).get("device") != "cpu" else 0,
                       quiet=not progress)
    else:
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        run_jobs(out, jobs, deadline=deadline, progress=progress)
    if any(not result_path(out, j["key"]).exists() for j in jobs):
        return None
    return summarize_protocol(out, out, prefix="summary", jobs=jobs, dataset_in_name=False)
