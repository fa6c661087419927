"""The demo pipeline: the whole idea of Argus at once, on the embedded toy world.

The demo is the list `STAGES`; each `Stage` names its function and, when its output can be
reused, the options that define that output. Stages run in order; each writes into `OUT/` and
returns what later stages read (`run.results[name]`):

    data     toy world with a spurious background cue in part of the majority domain -> OUT/data
    train    small-cnn, ERM -> OUT/run
    eval     per-domain test accuracy -> OUT/eval.json
    explain  exemplar index (kept per checkpoint) + argument sheets for a test subset -> OUT/sheets
    server   the real crowd server (Flask app, SQLite in WAL mode) on a free localhost port
    batch    rate_arguments, mark_rationale, name_feature and label tasks (R judgments per task,
             gold questions mixed in), created over HTTP through the researcher API
    crowd    a SIMULATED crowd (`sim.crowd`): N HTTP clients that go through the worker pages
    export   the judgments export (CSV + Parquet) through the API
    report   `analysis.report.build_report` -> OUT/report/report.html
    checks   what shows that it works where the truth is known (`sim.checks`)
    improve  the loop closed (`argus.pipelines.improve`): the report's clues -> the model
             retrained with a correction (counterfactual backgrounds, as many epochs as `train`)
             -> measured again on the test split and its cue-free twin -> OUT/improve/ and an
             "After the fix" section in report.html

The one reuse rule: a stage with a `key` is skipped when `OUT/stages.json` records that it
finished with the same key (its options plus the keys of the stages it reads, `after`) and its
folder is there. Otherwise it runs; `run.resume` tells it that an unfinished run with the same
key is in its folder, so it may continue it (train resumes from `last.pt`). `--fresh` ignores
the record. Adding a stage is one line in `STAGES`.

`run_demo(config, out)` runs them all and returns the summary (also `OUT/summary.json`,
`argus.pipelines.demo_summary`, which also prints it); `serve_for_people` keeps the server up
with a fresh batch.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from explain.sheet_files import read_summary

# `label` gives every worker a question whose truth is balanced by construction (the image's
# class), on which Dawid-Skene scores the workers; the argument ratings carry the validity story.
DEMO_KINDS = ("rate_arguments", "mark_rationale", "name_feature", "label")


@dataclass
class DemoConfig:
    """Every option of the demo (recorded in `OUT/summary.json`).

    Sizes: `n_train/n_val/n_test` images, `image_size` pixels, `epochs`. `spurious`: share of
    majority-domain images drawn on their class's background (the shortcut), applied to
    `spurious_splits`. `n_sheets` test images get sheets (evenly spread, so every domain is
    covered), `top_m` arguments each. Crowd: `redundancy` judgments per task, `gold_per_kind`
    gold tasks per kind mixed in at `gold_rate`, `n_workers` simulated workers with `mix`
    (kind -> count). `n_boot` bootstrap resamples in the report.
    """

    n_train: int = 3000
    n_val: int = 600
    n_test: int = 600
    image_size: int = 64
    epochs: int = 6
    spurious: float = 0.9
    spurious_splits: tuple = ("train", "val", "test")
    seed: int = 0
    device: str = "auto"
    n_sheets: int = 60
    top_m: int = 3
    kinds: tuple = DEMO_KINDS
    redundancy: int = 5
    gold_per_kind: int = 4
    gold_rate: float = 0.25
    tasks_per_visit: int = 10
    n_workers: int = 20
    mix: dict = field(default_factory=lambda: {"reliable": 13, "sloppy": 3, "spammer": 3, "adversarial": 1})
    n_boot: int = 500
    overlap_threshold: float = 0.3
    improve_corrections: tuple = ("counterfactual",)
    improve_epochs: int | None = None
    improve_fine_tune: bool = False

    def check(self) -> "DemoConfig":
        for name in ("n_train", "n_test", "epochs", "n_sheets", "n_workers", "redundancy"):
            if getattr(self, name) < 1:
                raise ValueError(f"demo option {name} must be >= 1, got {getattr(self, name)}")
        if self.redundancy > self.n_workers:
            raise ValueError(f"redundancy {self.redundancy} needs at least as many workers (n_workers={self.n_workers})")
        if sum(self.mix.values()) != self.n_workers:
            raise ValueError(f"crowd mix {self.mix} sums to {sum(self.mix.values())}, not n_workers={self.n_workers}")
        if not 0.0 <= self.spurious <= 1.0:
            raise ValueError(f"spurious must be in [0, 1], got {self.spurious}")
        return self


#: the small run (`argus demo --small`, CI): a few minutes on 2 CPU cores
SMALL = dict(n_train=900, n_val=150, n_test=240, image_size=32, epochs=5, n_sheets=36, n_workers=12,
             mix={"reliable": 7, "sloppy": 1, "spammer": 3, "adversarial": 1}, redundancy=4, gold_per_kind=3,
             tasks_per_visit=8, n_boot=200)


def demo_config(small: bool = False, **overrides) -> DemoConfig:
    """The default (or `small`) configuration with `overrides` (None values ignored)."""
    cfg = DemoConfig(**SMALL) if small else DemoConfig()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "n_workers" in overrides and "mix" not in overrides:
        overrides["mix"] = scale_mix(cfg.mix, overrides["n_workers"])
    return replace(cfg, **overrides).check()


def scale_mix(mix: dict, n: int) -> dict:
    """Keep the spammer/adversarial counts (capped) and fill the rest with reliable/sloppy."""
    out = {"spammer": min(mix.get("spammer", 0), max(0, n - 2)), "adversarial": min(mix.get("adversarial", 0), max(0, n // 8))}
    rest = n - out["spammer"] - out["adversarial"]
    out["sloppy"] = min(mix.get("sloppy", 0), rest // 4)
    out["reliable"] = rest - out["sloppy"]
    return out


# --------------------------------------------------------------------------------- progress

class Progress:
    """Prints `[i/N stage] ...` lines and records each stage's wall time and reuse."""

    def __init__(self, echo=print, names=None):
        self.echo = echo
        self.names = tuple(names or (s.name for s in STAGES))
        self.times: dict[str, float] = {}
        self.reused: dict[str, bool] = {}
        self.t0 = time.perf_counter()

    @contextmanager
    def stage(self, name: str):
        i = self.names.index(name) + 1 if name in self.names else 0
        self.echo(f"[{i}/{len(self.names)} {name}] ...")
        t = time.perf_counter()
        yield self
        self.times[name] = round(time.perf_counter() - t, 2)
        self.echo(f"[{i}/{len(self.names)} {name}] done in {self.times[name]:.1f}s"
                  + (" (reused)" if self.reused.get(name) else ""))

    def say(self, text: str):
        self.echo(f"    {text}")

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.t0, 2)


@dataclass
class DemoRun:
    """What the stages of one demo run share: the options, `OUT`, progress, each finished
    stage's result by name, the running server, and (set per stage) `resume`."""

    cfg: DemoConfig
    out: Path
    progress: Progress
    results: dict = field(default_factory=dict)
    server: Any = None
    resume: bool = False

    def __getitem__(self, name: str):
        return self.results[name]


# ----------------------------------------------------------------------------------- stages

def stage_data(run: DemoRun) -> Path:
    from training.toyworld import generate_toyworld

    cfg, root = run.cfg, run.out / "data"
    if root.exists():
        shutil.rmtree(root)
    run.progress.say(f"rendering {cfg.n_train}+{cfg.n_val}+{cfg.n_test} images ({cfg.image_size}px), spurious "
                     f"background cue on {cfg.spurious:.0%} of majority-domain images ({', '.join(cfg.spurious_splits)})")
    generate_toyworld(root, n_train=cfg.n_train, n_val=cfg.n_val, n_test=cfg.n_test, image_size=cfg.image_size,
                      spurious=cfg.spurious, spurious_splits=tuple(cfg.spurious_splits), seed=cfg.seed)
    return root


def stage_train(run: DemoRun) -> Path:
    from training.trainer import TrainConfig, Trainer

    cfg, folder = run.cfg, run.out / "run"
    resume = run.resume and (folder / "last.pt").exists()
    if not resume and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    run.progress.say(f"small-cnn, ERM, {cfg.epochs} epochs" + (" (resuming)" if resume else ""))
    Trainer(run["data"], folder, TrainConfig(epochs=cfg.epochs, seed=cfg.seed, device=cfg.device)).fit(resume=resume)
    return folder


def stage_eval(run: DemoRun) -> dict:
    from training.evaluate import evaluate_run, format_domain_table

    report = evaluate_run(run["train"], run["data"], split="test", device=run.cfg.device)
    (run.out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    for line in format_domain_table(report).splitlines():
        run.progress.say(line)
    return report


def stage_explain(run: DemoRun) -> Path:
    """Sheets folder (its `summary.json` names the dataset, so that the report finds the part masks)."""
    from explain.pipeline import run_explain

    cfg, sheets = run.cfg, run.out / "sheets"
    summary = run_explain(run["train"], run["data"], sheets, split="test", limit=cfg.n_sheets, top_m=cfg.top_m,
                          device=cfg.device, progress=True)
    ex = summary.get("exemplars") or {}
    run.progress.say(f"{summary['n_sheets']} sheets, exemplar index "
                     f"{'reused' if ex.get('reused') else 'mined'}; {sheets / 'index.html'}")
    return sheets


def stage_server(run: DemoRun):
    from sim.server import LocalServer

    run.server = LocalServer(run.out / "crowd", config={
        "GOLD_MIN_ANSWERS": 2, "STUDY_TITLE": "Argus demo: how does a computer recognise creatures?"}).start()
    run.progress.say(f"crowd server at {run.server.url} (SQLite {run.server.database_url})")
    return run.server


def create_batch(cfg: DemoConfig, server, sheets_dir: Path, data_dir: Path | None, *, name: str = "argus demo",
                 gold: bool = True, redundancy: int | None = None) -> dict:
    """Create the batch through `POST /api/batches` (gold answers from the simulated ground truth)."""
    body = {"sheets_dir": str(Path(sheets_dir).resolve()), "kinds": list(cfg.kinds), "name": name,
            "redundancy": redundancy or cfg.redundancy, "tasks_per_visit": cfg.tasks_per_visit,
            "max_arguments": cfg.top_m, "visits_per_worker": 1000,  # simulated members come back until done
            # a small simulated crowd (answers drawn from the ground truth, so one task cannot
            # hint another) could not give R judgments to each of an image's three tasks one
            # image per worker
            "allow_same_image": True}
    if gold and cfg.gold_per_kind > 0:
        body["gold"] = ground_truth(cfg, sheets_dir, data_dir).gold(cfg.kinds, cfg.gold_per_kind,
                                                                    max_arguments=cfg.top_m, seed=cfg.seed)
        body["gold_rate"] = cfg.gold_rate if body["gold"] else 0.0
    return server.client.create_batch(body)


def ground_truth(cfg: DemoConfig, sheets_dir: Path, data_dir: Path):
    from sim.truth import GroundTruth

    return GroundTruth(sheets_dir, data_dir, overlap_threshold=cfg.overlap_threshold)


def stage_batch(run: DemoRun) -> dict:
    batch = create_batch(run.cfg, run.server, run["explain"], run["data"])
    run.progress.say(f"batch {batch['id']}: {batch['tasks']} tasks {batch['tasks_by_kind']}, "
                     f"{batch['gold_tasks']} gold, R={batch['redundancy']}")
    return batch


def stage_crowd(run: DemoRun):
    """The simulated crowd over HTTP -> `OUT/crowd/simulated_answers.csv`; returns its `CrowdResult`."""
    from sim.crowd import make_crowd, run_crowd

    cfg, server, batch = run.cfg, run.server, run["batch"]
    crowd = make_crowd(cfg.n_workers, dict(cfg.mix), seed=cfg.seed)
    run.progress.say(f"SIMULATED crowd: {cfg.n_workers} workers "
                     f"({', '.join(f'{v} {k}' for k, v in cfg.mix.items() if v)}) on {batch['tasks']} tasks x R="
                     f"{batch['redundancy']} (+{batch['gold_tasks']} gold) at {server.url}")
    truth = ground_truth(cfg, run["explain"], run["data"])
    result = run_crowd(server.url, batch["id"], crowd, truth, api_token=server.api_token, total_tasks=batch["tasks"] * batch["redundancy"])
    (run.out / "crowd").mkdir(parents=True, exist_ok=True)
    result.answers().to_csv(run.out / "crowd" / "simulated_answers.csv", index=False)
    status = server.client.batch_status(batch["id"])
    n = sum(log.tasks for log in result.logs)
    run.progress.say(f"{n} tasks answered in {result.seconds:.1f}s ({n / max(result.seconds, 1e-9):.0f} tasks/s); "
                     f"batch complete: {status['complete']} ({status['tasks_complete']}/{status['tasks']} tasks)")
    return result


def stage_export(run: DemoRun) -> Path:
    folder = run.out / "crowd"
    folder.mkdir(parents=True, exist_ok=True)
    for fmt in ("csv", "parquet"):
        (folder / f"judgments.{fmt}").write_bytes(run.server.client.export(run["batch"]["id"], fmt))
    run.progress.say(f"{folder / 'judgments.csv'} (+ .parquet)")
    return folder / "judgments.csv"


def stage_report(run: DemoRun) -> Path:
    from analysis.report import build_report

    report = build_report(run["export"], run["explain"], run.out / "report", data_dir=run["data"],
                          n_boot=run.cfg.n_boot, seed=run.cfg.seed, title="Argus demo report (simulated crowd)")
    run.progress.say(str(report))
    return report


def stage_checks(run: DemoRun) -> dict:
    from sim.checks import check_against_truth

    majority = (read_summary(run["explain"]).get("ground_truth") or {}).get("majority_domain")
    return check_against_truth(run["crowd"], run.cfg.kinds, run.out / "report", run.out / "crowd", run["data"],
                               majority, run.server.client.batch_workers(run["batch"]["id"]))


def stage_improve(run: DemoRun) -> dict | None:
    """Act on the clue: retrain with `cfg.improve_corrections` (`improve_epochs`, default the
    judged model's; a fine-tune of it when `improve_fine_tune`), measure before and after
    (`OUT/improve/`), and add the before/after figure to report.html.

    Why a retrain, not a fine-tune: the judged model learnt backgrounds only (chance at night
    and in fog), so there is nothing to keep; bench/results/gpu/improve.json: a 2-epoch
    counterfactual fine-tune gains 4 points on the cue-free test, a retrain of the same length
    as the judged model 29 points (5 seeds)."""
    from analysis.report import add_improvement
    from argus.pipelines.improve import ImproveConfig, read_clues, run_improve

    cfg = run.cfg
    clues = read_clues(run.out / "report", run["export"], run["explain"])
    run.progress.say(f"clues: {clues.describe()}")
    corrections = tuple(c for c in cfg.improve_corrections if c != "counterfactual" or clues.cue == "background")
    if not corrections:
        run.progress.say("no clue to act on: the model is left as it is")
        return None
    doc = run_improve(run["train"], run["data"], run.out / "improve", clues,
                      ImproveConfig(corrections=corrections, epochs=cfg.improve_epochs or cfg.epochs,
                                    fine_tune=cfg.improve_fine_tune, seed=cfg.seed, device=cfg.device),
                      echo=run.progress.say)
    add_improvement(run.out / "report", doc, run.out / "improve" / "improve.png", run.out / "improve" / "improve.md")
    run.progress.say(f"{run.out / 'improve' / 'improve.md'}; report: 'After the fix' section")
    return doc


@dataclass(frozen=True)
class Stage:
    """One step of the demo. `key(cfg)`: the options its output depends on (None: never
    reused); `folder`: what it writes under OUT (must exist for reuse); `after`: the stages whose
    output it reads (their keys join its key)."""

    name: str
    run: Callable[[DemoRun], Any]
    key: Callable[[DemoConfig], dict] | None = None
    folder: str | None = None
    after: tuple = ()


STAGES = (
    Stage("data", stage_data, folder="data", key=lambda c: dict(
        n_train=c.n_train, n_val=c.n_val, n_test=c.n_test, image_size=c.image_size, spurious=c.spurious,
        spurious_splits=list(c.spurious_splits), seed=c.seed)),
    Stage("train", stage_train, folder="run", after=("data",), key=lambda c: dict(epochs=c.epochs, seed=c.seed)),
    Stage("eval", stage_eval),
    Stage("explain", stage_explain, folder="sheets", after=("train",), key=lambda c: dict(n_sheets=c.n_sheets,
                                                                                          top_m=c.top_m)),
    Stage("server", stage_server),
    Stage("batch", stage_batch),
    Stage("crowd", stage_crowd),
    Stage("export", stage_export),
    Stage("report", stage_report),
    Stage("checks", stage_checks),
    Stage("improve", stage_improve),
)


def run_stages(run: DemoRun, stages=STAGES, *, fresh: bool = False) -> DemoRun:
    """Run `stages` in order into `run` under the reuse rule (module docstring)."""
    run.out.mkdir(parents=True, exist_ok=True)
    record_path = run.out / "stages.json"
    record = {} if fresh or not record_path.exists() else json.loads(record_path.read_text())
    keys: dict[str, Any] = {}
    for stage in stages:
        with run.progress.stage(stage.name):
            if stage.key is not None:
                keys[stage.name] = {"options": stage.key(run.cfg), "after": {a: keys.get(a) for a in stage.after}}
            done = record.get(stage.name, {})
            same = stage.key is not None and done.get("key") == keys[stage.name]
            folder = run.out / stage.folder if stage.folder else None
            if same and done.get("finished") and (folder is None or folder.exists()):
                run.progress.reused[stage.name] = True
                run.progress.say(f"reusing {folder or stage.name}")
                run.results[stage.name] = folder
                continue
            run.resume = same
            if stage.key is not None:
                record[stage.name] = {"key": keys[stage.name], "finished": False}
                record_path.write_text(json.dumps(record, indent=2) + "\n")
            run.results[stage.name] = stage.run(run)
            if stage.key is not None:
                record[stage.name]["finished"] = True
                record_path.write_text(json.dumps(record, indent=2) + "\n")
    return run


# --------------------------------------------------------------------------------- the run

def run_demo(cfg: DemoConfig, out, *, fresh: bool = False, echo=print, keep_server: bool = False):
    """Run every stage into `out`; returns `(summary, server)` where `server` is the running
    `sim.server.LocalServer` when `keep_server` (the caller stops it), else None."""
    cfg.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if fresh:
        for stage in STAGES:
            if stage.folder:
                shutil.rmtree(out / stage.folder, ignore_errors=True)
        for sub in ("crowd", "report"):
            shutil.rmtree(out / sub, ignore_errors=True)
    run = DemoRun(cfg, out, Progress(echo))
    try:
        run_stages(run, fresh=fresh)
    except BaseException:
        if run.server is not None:
            run.server.stop()
        raise
    from argus.pipelines.demo_summary import collect_summary

    summary = collect_summary(run, run.server.url if keep_server else None)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if not keep_server:
        run.server.stop()
        return summary, None
    return summary, run.server


def serve_for_people(cfg: DemoConfig, server, sheets_dir: Path, data_root: Path, echo=print, wait=None) -> dict:
    """Create a fresh batch (R = 1, no gold) for a person and keep the server running until
    Ctrl-C (or until `wait()` returns). Returns the batch."""
    batch = create_batch(replace(cfg, tasks_per_visit=min(cfg.tasks_per_visit, 10)), server, sheets_dir, data_root,
                         name="argus demo: try it yourself", gold=False, redundancy=1)
    echo("")
    echo(f"Crowd server running at {server.url}")
    echo(f"  try the tasks:  {server.url}/w/{batch['id']}   (anonymous; argus crowd links for named workers)")
    echo(f"  admin:          {server.url}/admin   (user admin, password {server.admin_password})")
    echo(f"  researcher API: {server.url}/api/batches   (Authorization: Bearer {server.api_token})")
    echo("Press Ctrl-C to stop.")
    try:
        if wait is not None:
            wait()
        else:
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        echo("stopping the server")
    finally:
        server.stop()
    return batch
