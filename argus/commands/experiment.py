"""`argus experiment`: comparison experiments (blind imbalanced domains; active learning)."""

from __future__ import annotations

import click

from argus.commands.shared import KeyValue, LazyDefault, NameChoice, Seeds, cli_errors, list_option, options_dict

METHODS = "training.methods:METHODS"
STRATEGIES = "active.strategies:STRATEGIES"


def _default_methods():
    from argus.pipelines.blind_domains import DEFAULT_METHODS

    return DEFAULT_METHODS


@click.group("experiment")
def experiment():
    """Run comparison experiments (blind domains, active learning)."""


@experiment.command("blind-domains")
@click.option("--data", "data_root", required=True, type=click.Path(exists=True, file_okay=False),
              help="Domain-labelled dataset folder (Argus format, or ImageFolder + domains.csv).")
@click.option("--out", default="runs/blind-domains", show_default=True, type=click.Path(file_okay=False),
              help="Experiment folder (plan.json, runs/, summary.csv/.md/.json/.png, summary_per_seed.csv, ...).")
@list_option("--methods", item=NameChoice(METHODS, validate=False), default=LazyDefault(_default_methods),
             show_default=True, help="Training methods (comma-separated or repeated).")
@click.option("--seeds", default="5", show_default=True, type=Seeds(),
              help="Number of seeds (0..N-1) or a comma-separated list of seeds.")
@click.option("--epochs", default=8, show_default=True, type=click.IntRange(min=1), help="Every method's own budget.")
@click.option("--tune", is_flag=True, help="Blind tuning first: every method picks one of 4 configurations on "
                                           "worst-class validation accuracy (2 tuning seeds), then runs the seeds.")
@list_option("--equal-compute", item=NameChoice(METHODS, validate=False), default=(),
             help="Also run these methods at JTT's compute (epochs matching JTT's mean sample visits).")
@click.option("--variants", is_flag=True, help="Also run the center-distance variants (eval-mode distances, "
                                               "annealed sampling, center-loss warm-up).")
@click.option("--imbalance", default=None, type=click.FloatRange(min=1.0),
              help="Subsample minority domains (train/val) to at most 1/RATIO of the largest domain.")
@click.option("--imbalance-seed", default=0, show_default=True, type=int)
@click.option("--method-option", "method_options", multiple=True, type=KeyValue(scope="METHOD"),
              help="Option of one method, e.g. center-distance.power=2 (repeatable; JSON values).")
@click.option("--arch", default="small-cnn", show_default=True, type=NameChoice("training.models:ARCHITECTURES"))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=0.05, show_default=True, type=float)
@click.option("--image-size", default=None, type=click.IntRange(min=16), help="Model input side (default: the dataset's).")
@click.option("--model-widths", default=None, metavar="W1,W2,...",
              help="small-cnn conv widths (default 32,64,128,128); smaller is faster on CPU.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes working on the plan (e.g. 10-14 sharing one GPU, or one per CPU core); starting the "
                   "same command again on the same --out adds more.")
@click.option("--threads", default=None, type=click.IntRange(min=1), help="torch CPU threads per process.")
@click.option("--time-limit", default=None, type=click.FloatRange(min=0), metavar="SECONDS",
              help="Start no new run after this many seconds (rerun later to finish).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@cli_errors
def blind_domains(data_root, out, methods, seeds, epochs, tune, equal_compute, variants, imbalance, imbalance_seed,
                  method_options, arch, batch_size, lr, image_size, model_widths, device, workers, threads, time_limit,
                  quiet):
    """Every method on the same split and seeds, tested per domain.

    Writes tables (per-domain accuracy, majority, minority mean, worst domain with bootstrap
    intervals, paired gains vs ERM and vs JTT with intervals and Wilcoxon p-values, gap closure
    vs the oracle), plots (per-domain bars, learning curves), per-seed CSV and JSON. Rerun the
    same command to resume: finished runs are read back.
    """
    import time

    from argus.pipelines.blind_domains import VARIANTS, run_blind_domains

    train_options = {"arch": arch, "batch_size": batch_size, "lr": lr, "device": device}
    if image_size:
        train_options["image_size"] = image_size
    if model_widths:
        try:
            train_options["model_kwargs"] = {"widths": tuple(int(w) for w in model_widths.split(","))}
        except ValueError:
            raise click.BadParameter(f"expected comma-separated integers, got {model_widths!r}",
                                     param_hint="--model-widths") from None
    deadline = time.time() + time_limit if time_limit is not None else None
    verdicts = run_blind_domains(data_root, out, list(methods), seeds, epochs, imbalance=imbalance,
                                 imbalance_seed=imbalance_seed, method_options=options_dict(method_options),
                                 train_options=train_options, tune=tune, equal_compute=list(equal_compute),
                                 variants=VARIANTS if variants else None, workers=workers, threads=threads,
                                 deadline=deadline, progress=not quiet)
    if verdicts is None:
        click.echo("runs are left (time limit, or other processes still running them): rerun the same command to finish")
        return
    from pathlib import Path

    click.echo(Path(out, "summary.md").read_text())
    click.echo(f"written: {out}/summary.csv, summary.md, summary.json, summary_per_seed.csv, summary.png, "
               "summary_curves.png, summary_verdicts.json")


@experiment.command("active")
@list_option("--strategies", names=STRATEGIES, default=("random", "margin", "entropy", "coreset", "badge"),
             show_default=True, help="Query strategies (comma-separated or repeated).")
@list_option("--train-methods", names=METHODS, default=("erm", "center-distance"), show_default=True,
             help="Training methods (comma-separated or repeated).")
@click.option("--seeds", default="3", show_default=True, type=Seeds(),
              help="Number of seeds (0..N-1) or a comma-separated list.")
@click.option("--data", type=click.Path(exists=True, file_okay=False), default=None,
              help="Dataset folder (train split = pool). Default: the lazily rendered toy world.")
@click.option("--pool-size", type=int, default=3000, show_default=True)
@click.option("--test-size", type=int, default=600, show_default=True)
@click.option("--image-size", type=int, default=32, show_default=True)
@click.option("--rounds", type=int, default=5, show_default=True)
@click.option("--budget", type=int, default=150, show_default=True)
@click.option("--initial", "initial_size", type=int, default=150, show_default=True)
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--out", default="runs/experiment-active", show_default=True, type=click.Path(file_okay=False))
@click.option("--quiet", is_flag=True)
@cli_errors
def active_experiment(strategies, train_methods, seeds, data, pool_size, test_size, image_size, rounds, budget,
                      initial_size, epochs, lr, device, out, quiet):
    """Strategies x training methods x seeds: accuracy vs labels (overall, minority mean, worst
    domain), normalised AUBC, labels to 95% of full-pool worst-domain accuracy, minority share of
    queries, query vs retrain time. Writes summary.csv/.md/.json, curves.csv, active_curves.png."""
    from active.experiment import markdown, run_experiment

    res = run_experiment(out, list(strategies), list(train_methods), seeds, pool_size=pool_size, test_size=test_size,
                         image_size=image_size, rounds=rounds, budget=budget, initial_size=initial_size,
                         epochs=epochs, device=device, train_options={"lr": lr}, data=data, progress=not quiet)
    click.echo(markdown(res["summary"]))
    for k, v in res["verdict"].items():
        click.echo(f"{k}: {v}")
    click.echo(f"written: {out}/summary.csv, summary.md, summary.json, curves.csv, active_curves.png")
