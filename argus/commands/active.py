"""`argus active ...`: active-learning rounds (see docs/active.md)."""

from __future__ import annotations

import click

from argus.commands.shared import NameChoice, cli_errors


@click.group("active", help="Run active-learning rounds.")
def active():
    pass


@active.command("run")
@click.option("--data", type=click.Path(exists=True, file_okay=False), default=None,
              help="Dataset folder: its train split is the pool, its test split the test set. Default: the lazily rendered toy world.")
@click.option("--pool-size", type=int, default=20000, show_default=True, help="Toy-world pool items (rendered on demand).")
@click.option("--test-size", type=int, default=1800, show_default=True, help="Toy-world test items (balanced over domains).")
@click.option("--image-size", type=int, default=32, show_default=True)
@click.option("--domains", default=None, help="Toy-world pool proportions, e.g. day=0.85,night=0.10,fog=0.05.")
@click.option("--pool-seed", type=int, default=0, show_default=True)
@click.option("--strategy", default="margin", show_default=True, type=NameChoice("active.strategies:STRATEGIES"),
              help="Query strategy.")
@click.option("--train-method", default="erm", show_default=True, type=NameChoice("training.methods:METHODS"),
              help="Training method.")
@click.option("--rounds", type=int, default=5, show_default=True)
@click.option("--budget", type=int, default=100, show_default=True, help="Labels bought per round.")
@click.option("--initial", "initial_size", type=int, default=100, show_default=True, help="Initial random labelled set.")
@click.option("--retrain", type=click.Choice(["scratch", "warm"]), default="scratch", show_default=True)
@click.option("--epochs", type=int, default=8, show_default=True)
@click.option("--arch", default="small-cnn", show_default=True)
@click.option("--pool-subsample", type=float, default=None,
              help="Score only this fraction (<=1) or number (>1) of the unlabelled pool per round (recorded).")
@click.option("--oracle", type=click.Choice(["simulated", "crowd"]), default="simulated", show_default=True)
@click.option("--label-noise", type=float, default=0.0, show_default=True, help="Simulated oracle: wrong-label rate.")
@click.option("--crowd-url", default=None, help="Crowd oracle: the Argus server URL.")
@click.option("--crowd-token", default=None, envvar="ARGUS_API_TOKEN", help="Crowd oracle: API token (or ARGUS_API_TOKEN).")
@click.option("--redundancy", type=int, default=3, show_default=True, help="Crowd oracle: judgments per item.")
@click.option("--crowd-timeout", type=float, default=3600.0, show_default=True, help="Crowd oracle: seconds to wait per round.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True, help="Pool scoring batch size.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (re-run to resume).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@cli_errors
def run(data, pool_size, test_size, image_size, domains, pool_seed, strategy, train_method, rounds, budget, initial_size,
        retrain, epochs, arch, pool_subsample, oracle, label_noise, crowd_url, crowd_token, redundancy, crowd_timeout,
        seed, device, batch_size, out, quiet):
    """Rounds of train -> per-domain test -> query -> label; writes history.csv, table.md, curve.png,
    ledger.csv and state.json into OUT."""
    from pathlib import Path

    from active.runner import build_oracle, build_pools, run_active

    pool, test, majority = build_pools(data, pool_size, test_size, image_size, domains, pool_seed)
    orc = build_oracle(oracle, seed=seed, label_noise=label_noise, crowd_url=crowd_url, crowd_token=crowd_token,
                       redundancy=redundancy, crowd_timeout=crowd_timeout, media_dir=Path(out) / "crowd-media",
                       progress=not quiet)
    history = run_active(out, pool, test, majority, strategy=strategy, train_method=train_method, rounds=rounds,
                         budget=budget, initial_size=initial_size, seed=seed, retrain=retrain,
                         pool_subsample=pool_subsample, epochs=epochs, arch=arch, device=device,
                         batch_size=batch_size, oracle=orc, progress=not quiet)
    from active.loop import history_table

    click.echo(history_table(history))
    click.echo(f"wrote {out}/history.csv, table.md, curve.png, ledger.csv, state.json")


@active.command("strategies")
def strategies():
    """List the registered query strategies."""
    from active.strategies import STRATEGIES

    for name, cls in STRATEGIES.items():
        click.echo(f"{name:18s} {(cls.__doc__ or '').strip().splitlines()[0]}")
