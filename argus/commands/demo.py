"""`argus demo`: the whole pipeline on the embedded toy world (see `argus.pipelines.demo`).

toy world (with a spurious background cue) -> small-cnn ERM -> per-domain eval -> exemplar
index + argument sheets -> crowd server (SQLite, real HTTP) -> batch -> SIMULATED crowd ->
export -> analysis report -> summary. Finished stages (dataset, model, exemplar index) are
reused when `--out` is run again, unless `--fresh`.
"""

from __future__ import annotations

from pathlib import Path

import click

from argus.commands.shared import cli_errors


@click.command("demo")
@click.option("--out", "out", default="runs/demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for every stage's output.")
@click.option("--fresh", is_flag=True, help="Redo every stage instead of reusing dataset, model and sheets.")
@click.option("--serve", is_flag=True, help="Afterwards keep the server running with a fresh batch for a person.")
@click.option("--small", is_flag=True, help="A small world, 32px images and a 12-worker crowd (a few minutes).")
@click.option("--quick", is_flag=True, hidden=True, help="Alias of --small.")
@click.option("--n-train", type=click.IntRange(min=60), default=None, help="Training images.")
@click.option("--n-test", type=click.IntRange(min=30), default=None, help="Test images.")
@click.option("--epochs", type=click.IntRange(min=1), default=None)
@click.option("--spurious", type=click.FloatRange(0, 1), default=None,
              help="Share of majority-domain images on their class's background (the shortcut).")
@click.option("--sheets", "n_sheets", type=click.IntRange(min=4), default=None, help="Test images explained as sheets.")
@click.option("--workers", "n_workers", type=click.IntRange(min=2), default=None, help="Simulated crowd workers.")
@click.option("--redundancy", "-R", type=click.IntRange(min=1, max=10), default=None, help="Judgments per task.")
@click.option("--seed", default=None, type=int, help="Seed of every stage [default: 0].")
@click.option("--device", default=None, type=click.Choice(["auto", "cpu", "cuda"]), help="[default: auto]")
@cli_errors
def demo(out, fresh, serve, small, quick, n_train, n_test, epochs, spurious, n_sheets, n_workers, redundancy, seed,
         device):
    """Run the whole pipeline on the embedded toy world and print what it found."""
    from argus.pipelines.demo import demo_config, run_demo, serve_for_people
    from argus.pipelines.demo_summary import format_summary

    cfg = demo_config(small or quick, n_train=n_train, n_test=n_test, epochs=epochs, spurious=spurious,
                      n_sheets=n_sheets, n_workers=n_workers, redundancy=redundancy, seed=seed, device=device)
    out = Path(out)
    summary, server = run_demo(cfg, out, fresh=fresh, echo=click.echo, keep_server=serve)
    click.echo(format_summary(summary))
    if serve:
        serve_for_people(cfg, server, out / "sheets", out / "data", echo=click.echo)
