"""The demo pipeline: the whole idea of Argus at once, on the embedded toy world.

Stages (one function each; every stage writes into `OUT/` and the first three are reused
when their output is complete and was made with the same options, unless `fresh`):

1. `stage_data`     toy world with a spurious background cue in part of the majority domain;
2. `stage_train`    small-cnn, ERM (resumes from `OUT/run/last.pt` after an interruption);
3. `stage_eval`     per-domain test accuracy;
4. `stage_explain`  exemplar index (reused per checkpoint) + argument sheets for a test subset
                    spread across domains;
5. `CrowdServer`    the real crowd server (Flask app, SQLite in WAL mode) on a free localhost
                    port, served by werkzeug's threaded server in a background thread;
6. `stage_batch`    one batch of `rate_arguments`, `mark_rationale`, `name_feature` and `label` tasks
                    (R judgments per task, gold questions mixed in), created over HTTP through
                    the researcher API;
7. `stage_crowd`    a SIMULATED crowd (`crowd.simulate`): N HTTP clients that go through the
                    worker pages concurrently;
8. `stage_export`   the judgments export (CSV + Parquet) through the API;
9. `stage_report`   `analysis.report.build_report` -> `OUT/report/report.html`;
10. `stage_checks`  what shows that it works where the truth is known: Dawid-Skene's worker
                    accuracies vs the simulated ones (Pearson), spammers flagged vs the true
                    ones, the improvement clue naming the spurious background cue.

`run_demo(config, out)` runs them all and returns the summary (also `OUT/summary.json`);
`format_summary` prints it; `serve_for_people` keeps the server up with a fresh batch.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

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
    """Prints `[i/N stage] ...` lines and records each stage's wall time."""

    STAGES = ("data", "train", "eval", "explain", "server", "batch", "crowd", "export", "report", "checks")

    def __init__(self, echo=print):
        self.echo = echo
        self.times: dict[str, float] = {}
        self.reused: dict[str, bool] = {}
        self.t0 = time.perf_counter()

    @contextmanager
    def stage(self, name: str):
        i = self.STAGES.index(name) + 1 if name in self.STAGES else 0
        self.echo(f"[{i}/{len(self.STAGES)} {name}] ...")
        t = time.perf_counter()
        yield self
        self.times[name] = round(time.perf_counter() - t, 2)
        self.echo(f"[{i}/{len(self.STAGES)} {name}] done in {self.times[name]:.1f}s"
                  + (" (reused)" if self.reused.get(name) else ""))

    def say(self, name: str, text: str):
        self.echo(f"    {text}")

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.t0, 2)


# ----------------------------------------------------------------------------------- stages

def stage_data(cfg: DemoConfig, out: Path, progress: Progress, fresh: bool = False) -> Path:
    """Toy world with part masks and the spurious cue -> `OUT/data`; reused when its
    `toyworld.json` records the same options."""
    from training.toyworld import generate_toyworld

    root = out / "data"
    wanted = {"n_train": cfg.n_train, "n_val": cfg.n_val, "n_test": cfg.n_test, "image_size": cfg.image_size,
              "spurious": cfg.spurious, "spurious_splits": list(cfg.spurious_splits), "seed": cfg.seed}
    done = root / "toyworld.json"
    if not fresh and done.exists() and (root / "samples.csv").exists():
        opts = json.loads(done.read_text())
        if all(opts.get(k) == v for k, v in wanted.items()):
            progress.reused["data"] = True
            progress.say("data", f"reusing {root}")
            return root
    if root.exists():
        shutil.rmtree(root)
    progress.say("data", f"rendering {cfg.n_train}+{cfg.n_val}+{cfg.n_test} images ({cfg.image_size}px), spurious "
                 f"background cue on {cfg.spurious:.0%} of majority-domain images ({', '.join(cfg.spurious_splits)})")
    generate_toyworld(root, n_train=cfg.n_train, n_val=cfg.n_val, n_test=cfg.n_test, image_size=cfg.image_size,
                      spurious=cfg.spurious, spurious_splits=tuple(cfg.spurious_splits), seed=cfg.seed)
    return root


def stage_train(cfg: DemoConfig, out: Path, data_root: Path, progress: Progress, fresh: bool = False) -> Path:
    """small-cnn ERM -> `OUT/run`; reused when complete with the same epochs/seed on the same
    data, resumed from `last.pt` when interrupted."""
    from training.trainer import TrainConfig, Trainer

    run = out / "run"
    data_stamp = json.loads((data_root / "toyworld.json").read_text())
    resume = False
    if fresh and run.exists():
        shutil.rmtree(run)
    metrics_file, stamp_file = run / "metrics.json", run / "demo_data.json"
    if metrics_file.exists() and (run / "model.json").exists() and stamp_file.exists():
        same_data = json.loads(stamp_file.read_text()) == data_stamp
        conf = json.loads((run / "model.json").read_text()).get("config", {})
        if same_data and conf.get("epochs") == cfg.epochs and conf.get("seed") == cfg.seed:
            if json.loads(metrics_file.read_text()).get("complete"):
                progress.reused["train"] = True
                progress.say("train", f"reusing {run}")
                return run
            resume = (run / "last.pt").exists()
    if not resume and run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(json.dumps(data_stamp, indent=2) + "\n")
    progress.say("train", f"small-cnn, ERM, {cfg.epochs} epochs" + (" (resuming)" if resume else ""))
    Trainer(data_root, run, TrainConfig(epochs=cfg.epochs, seed=cfg.seed, device=cfg.device)).fit(resume=resume)
    return run


def stage_eval(cfg: DemoConfig, out: Path, run: Path, data_root: Path, progress: Progress) -> dict:
    """Per-domain test accuracy -> `OUT/eval.json`."""
    from training.evaluate import evaluate_run, format_domain_table

    report = evaluate_run(run, data_root, split="test", device=cfg.device)
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    for line in format_domain_table(report).splitlines():
        progress.say("eval", line)
    return report


def stage_explain(cfg: DemoConfig, out: Path, run: Path, data_root: Path, progress: Progress) -> dict:
    """Exemplar index (mined once per checkpoint, then reused) and `n_sheets` argument sheets
    spread over the test split -> `OUT/sheets`. Adds `dataset` to `summary.json` so that the
    report finds the part masks."""
    from explain.pipeline import run_explain

    sheets = out / "sheets"
    summary = run_explain(run, data_root, sheets, split="test", limit=cfg.n_sheets, top_m=cfg.top_m,
                          device=cfg.device, progress=True)
    summary["dataset"] = str(data_root.resolve())
    (sheets / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    ex = summary.get("exemplars") or {}
    progress.reused["explain"] = bool(ex.get("reused"))
    progress.say("explain", f"{summary['n_sheets']} sheets, exemplar index "
                 f"{'reused' if ex.get('reused') else 'mined'}; {sheets / 'index.html'}")
    return summary


class CrowdServer:
    """The crowd app (`crowd.app.create_app`) on a free 127.0.0.1 port with a SQLite database,
    served by werkzeug's threaded WSGI server in a daemon thread. Use as a context manager.

    Attributes: `url`, `api_token`, `admin_password`, `database_url`.
    """

    def __init__(self, folder: Path, *, host: str = "127.0.0.1", port: int = 0, fresh_db: bool = True):
        from crowd.simulate import new_token

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        db = self.folder / "argus.db"
        if fresh_db:
            for p in (db, db.with_name("argus.db-wal"), db.with_name("argus.db-shm")):
                p.unlink(missing_ok=True)
        self.database_url = f"sqlite:///{db.resolve()}"
        self.api_token, self.admin_password = new_token(), new_token()
        self.host, self.port = host, port
        self._server = self._thread = None

    def start(self) -> "CrowdServer":
        import logging

        from werkzeug.serving import make_server

        from crowd.app import create_app
        from crowd.simulate import new_token

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        app = create_app({"DATABASE_URL": self.database_url, "SECRET_KEY": new_token() + new_token(),
                          "API_TOKEN": self.api_token, "ADMIN_PASSWORD": self.admin_password,
                          "GOLD_MIN_ANSWERS": 2, "STUDY_TITLE": "Argus demo: how does a computer recognise creatures?"})
        self._server = make_server(self.host, self.port, app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="argus-demo-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def api(self, method: str, path: str, **kw):
        import requests

        r = requests.request(method, self.url + path, headers={"Authorization": f"Bearer {self.api_token}"},
                             timeout=120, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {r.status_code} {r.text[:500]}")
        return r

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def stage_batch(cfg: DemoConfig, server: CrowdServer, sheets_dir: Path, truth, *, name: str = "argus demo",
                gold: bool = True, redundancy: int | None = None) -> dict:
    """Create the batch through `POST /api/batches` (gold answers from the ground truth)."""
    body = {"sheets_dir": str(Path(sheets_dir).resolve()), "kinds": list(cfg.kinds), "name": name,
            "redundancy": redundancy or cfg.redundancy, "tasks_per_visit": cfg.tasks_per_visit,
            "max_arguments": cfg.top_m}
    if gold and cfg.gold_per_kind > 0:
        body["gold"] = truth.gold(cfg.kinds, cfg.gold_per_kind, max_arguments=cfg.top_m, seed=cfg.seed)
        body["gold_rate"] = cfg.gold_rate if body["gold"] else 0.0
    return server.api("POST", "/api/batches", json=body).json()


def stage_crowd(cfg: DemoConfig, server: CrowdServer, batch: dict, truth, out: Path, progress: Progress):
    """Run the simulated crowd over HTTP; writes `OUT/crowd/roster.csv` (who is what, true
    accuracy) and `OUT/crowd/simulated_answers.csv`."""
    from crowd.simulate import make_crowd, run_crowd

    crowd = make_crowd(cfg.n_workers, dict(cfg.mix), seed=cfg.seed)
    total = batch["tasks"] * batch["redundancy"]
    progress.say("crowd", f"SIMULATED crowd: {cfg.n_workers} workers "
                 f"({', '.join(f'{v} {k}' for k, v in cfg.mix.items() if v)}) on {batch['tasks']} tasks x R="
                 f"{batch['redundancy']} (+{batch['gold_tasks']} gold) at {server.url}")
    result = run_crowd(server.url, batch["id"], crowd, truth, total_tasks=total)
    (out / "crowd").mkdir(parents=True, exist_ok=True)
    result.answers().to_csv(out / "crowd" / "simulated_answers.csv", index=False)
    status = server.api("GET", f"/api/batches/{batch['id']}").json()
    progress.say("crowd", f"{sum(log.tasks for log in result.logs)} tasks answered in {result.seconds:.1f}s "
                 f"({sum(log.tasks for log in result.logs) / max(result.seconds, 1e-9):.0f} tasks/s); batch "
                 f"complete: {status['complete']} ({status['tasks_complete']}/{status['tasks']} tasks)")
    return result, status


def stage_export(server: CrowdServer, batch_id: int, out: Path) -> Path:
    """Judgments export (CSV and Parquet) -> `OUT/crowd/judgments.{csv,parquet}`."""
    folder = out / "crowd"
    folder.mkdir(parents=True, exist_ok=True)
    for fmt in ("csv", "parquet"):
        r = server.api("GET", f"/api/batches/{batch_id}/judgments?format={fmt}")
        (folder / f"judgments.{fmt}").write_bytes(r.content)
    return folder / "judgments.csv"


def stage_report(cfg: DemoConfig, judgments: Path, sheets_dir: Path, data_root: Path, out: Path) -> Path:
    """`OUT/report/report.html` (+ tables/*.csv, figures/*.png)."""
    from analysis.report import build_report

    return build_report(judgments, sheets_dir, out / "report", data_dir=data_root, n_boot=cfg.n_boot,
                        seed=cfg.seed, title="Argus demo report (simulated crowd)")


def aggregation_source(cfg: DemoConfig) -> str:
    """The question the report aggregates with Dawid-Skene (labels when asked, else argument ratings)."""
    return "label" if "label" in cfg.kinds else "rate_arguments"


def clue_names_cue(clues, spurious_backgrounds: dict, majority_domain: str | None) -> dict | None:
    """The first improvement clue that names the spurious background cue, or None.

    A clue names it when it says the arguments fire on the background (`cue == "background"`)
    and points at the cue: a background kind the shortcut uses, a class whose sheets sit mostly
    on that class's spurious background, or the majority domain (the only one with the cue).
    """
    for _, c in clues.iterrows():
        if str(c.get("cue")) != "background":
            continue
        g, gt = str(c["group"]), str(c["group_type"])
        if (gt == "background" and g in set(spurious_backgrounds.values())) or \
                (gt == "class" and str(c.get("top_background")) == spurious_backgrounds.get(g)) or \
                (gt == "domain" and g == majority_domain):
            return {k: (v.item() if hasattr(v, "item") else v) for k, v in c.items()}
    return None


def stage_checks(cfg: DemoConfig, out: Path, result, data_root: Path, sheets_summary: dict,
                 server_workers: list[dict] | None = None) -> dict:
    """What shows the pipeline gets the right answers where the truth is known:

    - Pearson r between Dawid-Skene's estimated worker accuracy (`skill`, report's
      `tables/workers.csv`) and each simulated worker's true accuracy;
    - workers flagged vs the simulated spammers: a worker is flagged when the report's worker
      quality model flags it (`tables/workers.csv` `flagged`, analysis/quality.py); the server's
      own gold flags (`server_workers`: `GET /api/batches/<id>/workers`) are listed apart;
    - whether an improvement clue names the spurious background cue.
    """
    import numpy as np
    import pandas as pd

    rep = out / "report" / "tables"
    roster = result.roster(aggregation_source(cfg))
    roster.to_csv(out / "crowd" / "roster.csv", index=False)
    checks: dict = {"aggregation_source": aggregation_source(cfg)}
    workers = pd.read_csv(rep / "workers.csv") if (rep / "workers.csv").exists() else pd.DataFrame()
    if len(workers):
        workers["worker"] = workers["worker"].astype(str)
        m = roster.merge(workers[["worker", "skill", "flagged", "reasons"]], on="worker", how="left")
        m["flagged"] = m["flagged"].fillna(False).astype(bool)  # the report's worker-quality verdict
        gold_flag = {w["worker"]: w["status"] == "flagged" for w in server_workers or []}
        m["flagged_server"] = m["worker"].map(gold_flag).fillna(False).astype(bool)
        ok = m["skill"].notna() & m["accuracy"].notna()
        r = float(np.corrcoef(m.loc[ok, "skill"], m.loc[ok, "accuracy"])[0, 1]) if ok.sum() >= 3 else float("nan")
        true_spam = set(m.loc[m["is_spammer"], "worker"])
        flagged = set(m.loc[m["flagged"], "worker"])
        checks.update({
            "ds_vs_true_accuracy_pearson": round(r, 4), "n_workers_compared": int(ok.sum()),
            "true_spammers": sorted(true_spam), "flagged_spammers": sorted(flagged),
            "spammers_caught": len(true_spam & flagged), "spammers_missed": sorted(true_spam - flagged),
            "false_flags": sorted(flagged - true_spam),
            "flagged_by": {w: r for w, f, r in zip(m["worker"], m["flagged"], m["reasons"].fillna("")) if f},
            # the crowd server's live gold rule (accuracy < 0.7 after 3 gold answers) marks workers
            # for review; it is not the analysis verdict and is reported apart
            "server_gold_flags": sorted(m.loc[m["flagged_server"], "worker"]),
            "kind_of": dict(zip(m["worker"], m["kind"])),
            "all_spammers_flagged": bool(true_spam) and true_spam <= flagged,
        })
        m.to_csv(out / "crowd" / "workers_vs_truth.csv", index=False)
    clues = pd.read_csv(rep / "clues.csv") if (rep / "clues.csv").exists() else pd.DataFrame()
    parts = json.loads((data_root / "parts.json").read_text())
    majority = ((sheets_summary.get("ground_truth") or {}).get("majority_domain"))
    found = clue_names_cue(clues, parts.get("spurious_backgrounds", {}), majority) if len(clues) else None
    checks["n_clues"] = int(len(clues))
    checks["clue"] = found
    checks["clue_names_spurious_background"] = found is not None
    return checks


# ---------------------------------------------------------------------------------- summary

def _estimate_row(df, **match):
    import pandas as pd

    if df is None or not len(df):
        return None
    sel = pd.Series(True, index=df.index)
    for k, v in match.items():
        sel &= df[k].astype(str) == str(v)
    rows = df[sel]
    return None if rows.empty else rows.iloc[0].to_dict()


def collect_summary(cfg: DemoConfig, out: Path, eval_report: dict, sheets_summary: dict, checks: dict,
                    progress: Progress, server_url: str | None, batch: dict | None) -> dict:
    """The figures the demo prints, from the stages' files (also `OUT/summary.json`)."""
    import pandas as pd

    rep = out / "report" / "tables"

    def table(name):
        return pd.read_csv(rep / f"{name}.csv") if (rep / f"{name}.csv").exists() else None

    agree = table("agreement")
    alpha = []
    if agree is not None and len(agree):
        a = agree[(agree["statistic"].astype(str) == "krippendorff_alpha")]
        for _, r in a.iterrows():
            alpha.append({"kind": str(r["kind"]), "item": str(r.get("item", "")), "value": float(r["value"]),
                          "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]), "n_units": int(r["n_units"])})
    mvh = table("model_vs_human")
    validity = table("validity_by_rank")
    gt = sheets_summary.get("ground_truth") or {}
    summary = {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "accuracy": {"overall": eval_report.get("overall_accuracy"),
                     "per_domain": eval_report.get("per_domain"),
                     "majority_domain": eval_report.get("majority_domain"),
                     "minority_mean": eval_report.get("minority_mean_accuracy")},
        "worker_agreement_alpha": alpha,
        "model_vs_human": None if mvh is None else mvh.to_dict("records"),
        "argument_validity_by_rank": None if validity is None else validity.to_dict("records"),
        "pointing_game": {"overall": (gt.get("overall") or {}).get("pointing_game"),
                          "by_domain": {d: v.get("pointing_game") for d, v in (gt.get("by_domain") or {}).items()}},
        "checks": checks,
        "stage_seconds": dict(progress.times), "reused": dict(progress.reused), "total_seconds": progress.total,
        "batch": batch and {k: batch.get(k) for k in ("id", "tasks", "gold_tasks", "redundancy", "tasks_by_kind")},
        "paths": {"out": str(out), "data": str(out / "data"), "model": str(out / "run"),
                  "sheets": str(out / "sheets" / "index.html"), "judgments": str(out / "crowd" / "judgments.csv"),
                  "report": str(out / "report" / "report.html"), "roster": str(out / "crowd" / "roster.csv"),
                  "summary": str(out / "summary.json")},
        "server": server_url,
    }
    return summary


def _f(v, d=3):
    return "n/a" if v is None or v != v else f"{v:.{d}f}"


def format_summary(s: dict) -> str:
    """The printed summary: accuracy per domain, agreement, spammers, validity, pointing game,
    the improvement clue, the checks and the paths."""
    lines = ["", "=" * 72, "Argus demo summary  (the crowd is SIMULATED; see docs/demo.md)", "=" * 72]
    acc = s["accuracy"]
    lines.append(f"test accuracy: {_f(acc['overall'])} overall; by domain:")
    for d, v in (acc.get("per_domain") or {}).items():
        mark = " (majority)" if d == acc.get("majority_domain") else ""
        lines.append(f"    {d:<8} {_f(v.get('accuracy'))}  (n={v.get('n')}){mark}")
    for a in s.get("worker_agreement_alpha") or []:
        lines.append(f"worker agreement, Krippendorff's alpha, {a['kind']} {a['item']}: {_f(a['value'])} "
                     f"[{_f(a['ci_low'])}, {_f(a['ci_high'])}] over {a['n_units']} units")
    c = s["checks"]
    if "ds_vs_true_accuracy_pearson" in c:
        lines.append(f"Dawid-Skene worker accuracy ({c['aggregation_source']}) vs simulated truth: Pearson r = "
                     f"{_f(c['ds_vs_true_accuracy_pearson'])} ({c['n_workers_compared']} workers)")
        lines.append(f"spammers flagged: {c['spammers_caught']}/{len(c['true_spammers'])} true spammers caught"
                     + (f"; missed {', '.join(c['spammers_missed'])}" if c["spammers_missed"] else "")
                     + (f"; also flagged {', '.join(w + ' (' + c['kind_of'][w] + ')' for w in c['false_flags'])}"
                        if c["false_flags"] else "; no other worker flagged")
                     + " [by the worker-quality model]")
    ranks = s.get("argument_validity_by_rank") or []
    if ranks:
        lines.append("arguments judged valid by the crowd: " + ", ".join(
            f"rank {r['rank']} {_f(r.get('validity'))} [{_f(r.get('ci_low'))}, {_f(r.get('ci_high'))}]" for r in ranks))
    for r in s.get("model_vs_human") or []:
        if not r.get("chance_corrected"):
            lines.append(f"model vs human ({r['item']}): model agreement {_f(r['model_agreement'])}, human ceiling "
                         f"{_f(r['human_ceiling'])}, ratio {_f(r['ratio'])} [{_f(r['ratio_ci_low'])}, {_f(r['ratio_ci_high'])}]")
    pg = s["pointing_game"]
    lines.append(f"pointing game (arguments on discriminative parts): {_f(pg['overall'])} overall; "
                 + ", ".join(f"{d} {_f(v)}" for d, v in pg["by_domain"].items()))
    clue = c.get("clue")
    if clue:
        lines.append(f"improvement clue found: {clue['suggestion']}")
    else:
        lines.append(f"improvement clue: none names the spurious background cue ({c.get('n_clues', 0)} clues in the report)")
    verdict = [("DS vs truth r >= 0.9", (c.get("ds_vs_true_accuracy_pearson") or 0) >= 0.9),
               ("every spammer flagged", bool(c.get("all_spammers_flagged"))),
               ("clue names the spurious cue", bool(c.get("clue_names_spurious_background")))]
    lines.append("checks: " + "; ".join(f"{name}: {'PASS' if ok else 'FAIL'}" for name, ok in verdict))
    lines.append("stage times: " + ", ".join(f"{k} {v:.0f}s" + (" (reused)" if s['reused'].get(k) else "")
                                             for k, v in s["stage_seconds"].items()) + f"; total {s['total_seconds']:.0f}s")
    lines.append("outputs:")
    for k, v in s["paths"].items():
        lines.append(f"    {k:<10} {v}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------- the run

def run_demo(cfg: DemoConfig, out, *, fresh: bool = False, echo=print, keep_server: bool = False):
    """Run every stage into `out`; returns `(summary, server)` where `server` is the running
    `CrowdServer` when `keep_server` (the caller stops it), else None."""
    from crowd.simulate import GroundTruth

    cfg.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if fresh:
        for sub in ("sheets", "crowd", "report"):
            shutil.rmtree(out / sub, ignore_errors=True)
    progress = Progress(echo)
    with progress.stage("data"):
        data_root = stage_data(cfg, out, progress, fresh)
    with progress.stage("train"):
        run = stage_train(cfg, out, data_root, progress, fresh)
    with progress.stage("eval"):
        eval_report = stage_eval(cfg, out, run, data_root, progress)
    with progress.stage("explain"):
        sheets_summary = stage_explain(cfg, out, run, data_root, progress)
    sheets = out / "sheets"
    truth = GroundTruth(sheets, data_root, overlap_threshold=cfg.overlap_threshold)
    server = CrowdServer(out / "crowd")
    try:
        with progress.stage("server"):
            server.start()
            progress.say("server", f"crowd server at {server.url} (SQLite {server.database_url})")
        with progress.stage("batch"):
            batch = stage_batch(cfg, server, sheets, truth)
            progress.say("batch", f"batch {batch['id']}: {batch['tasks']} tasks {batch['tasks_by_kind']}, "
                         f"{batch['gold_tasks']} gold, R={batch['redundancy']}")
        with progress.stage("crowd"):
            result, _status = stage_crowd(cfg, server, batch, truth, out, progress)
        with progress.stage("export"):
            judgments = stage_export(server, batch["id"], out)
            progress.say("export", f"{judgments} (+ .parquet)")
        with progress.stage("report"):
            report = stage_report(cfg, judgments, sheets, data_root, out)
            progress.say("report", str(report))
        with progress.stage("checks"):
            server_workers = server.api("GET", f"/api/batches/{batch['id']}/workers").json()["workers"]
            checks = stage_checks(cfg, out, result, data_root, sheets_summary, server_workers)
    except BaseException:
        server.stop()
        raise
    summary = collect_summary(cfg, out, eval_report, sheets_summary, checks, progress,
                              server.url if keep_server else None, batch)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if not keep_server:
        server.stop()
        return summary, None
    return summary, server


def serve_for_people(cfg: DemoConfig, server: CrowdServer, sheets_dir: Path, data_root: Path, echo=print,
                     wait=None) -> dict:
    """Create a fresh batch (R = 1, no gold) for a person and keep the server running until
    Ctrl-C (or until `wait()` returns). Returns the batch."""
    from crowd.simulate import GroundTruth

    truth = GroundTruth(sheets_dir, data_root, overlap_threshold=cfg.overlap_threshold)
    batch = stage_batch(replace(cfg, tasks_per_visit=min(cfg.tasks_per_visit, 10)), server, sheets_dir, truth,
                        name="argus demo: try it yourself", gold=False, redundancy=1)
    echo("")
    echo(f"Crowd server running at {server.url}")
    echo(f"  try the tasks:  {server.url}/w/{batch['id']}?worker=me   (any name instead of 'me')")
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
