"""`argus demo`: the whole pipeline on the embedded toy world, reusing finished stages.

Stages so far: toy world -> train (small-cnn, ERM) -> per-domain evaluation. Each stage writes
into `OUT/` and is skipped when its output is already complete, so re-running the demo after an
interruption continues where it stopped (training resumes from `OUT/run/last.pt`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

FULL = {"n_train": 6000, "n_val": 1200, "n_test": 1800, "epochs": 8}
QUICK = {"n_train": 600, "n_val": 120, "n_test": 180, "epochs": 2}


def stage_data(out: Path, sizes: dict, seed: int, echo) -> Path:
    from training.toyworld import generate_toyworld

    root = out / "data"
    wanted = {k: sizes[k] for k in ("n_train", "n_val", "n_test")}
    done = root / "toyworld.json"
    if done.exists() and (root / "samples.csv").exists():
        opts = json.loads(done.read_text())
        if all(opts.get(k) == v for k, v in wanted.items()) and opts.get("seed") == seed:
            echo(f"[data] reusing {root}")
            return root
    echo(f"[data] rendering the toy world into {root}")
    generate_toyworld(root, seed=seed, **wanted)
    return root


def stage_train(out: Path, data_root: Path, epochs: int, seed: int, device: str, echo) -> Path:
    from training.trainer import TrainConfig, Trainer

    run = out / "run"
    metrics_file = run / "metrics.json"
    resume = False
    if metrics_file.exists() and (run / "model.json").exists():
        metrics = json.loads(metrics_file.read_text())
        done_epochs = len(metrics.get("epochs", []))
        cfg = json.loads((run / "model.json").read_text()).get("config", {})
        if cfg.get("epochs") == epochs and cfg.get("seed") == seed:
            if metrics.get("complete"):
                echo(f"[train] reusing {run} ({done_epochs} epochs)")
                return run
            resume = (run / "last.pt").exists()
    echo(f"[train] small-cnn, ERM, {epochs} epochs -> {run}" + (" (resuming)" if resume else ""))
    Trainer(data_root, run, TrainConfig(epochs=epochs, seed=seed, device=device)).fit(resume=resume)
    return run


def stage_eval(out: Path, run: Path, data_root: Path, device: str, echo) -> dict:
    from training.evaluate import evaluate_run, format_domain_table

    report = evaluate_run(run, data_root, split="test", device=device)
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    echo("[eval] per-domain test accuracy (small-cnn, ERM):")
    echo(format_domain_table(report))
    return report


@click.command("demo")
@click.option("--out", "out", default="runs/demo", show_default=True, type=click.Path(file_okay=False), help="Folder for every stage's output.")
@click.option("--quick", is_flag=True, help="A small world and 2 epochs (a smoke run of the pipeline).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
def demo(out, quick, seed, device):
    """Run data -> train -> eval on the embedded toy world; finished stages are reused."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = QUICK if quick else FULL
    t0 = time.perf_counter()
    data_root = stage_data(out, sizes, seed, click.echo)
    run = stage_train(out, data_root, sizes["epochs"], seed, device, click.echo)
    stage_eval(out, run, data_root, device, click.echo)
    click.echo(f"demo finished in {time.perf_counter() - t0:.0f}s; outputs in {out}")
