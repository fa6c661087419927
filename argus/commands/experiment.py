"""`argus experiment`: comparison experiments (blind imbalanced domains; active learning)."""

from __future__ import annotations

import click

from argus.commands.shared import KeyValue, LazyDefault, NameChoice, Seeds, cli_errors, list_option, options_dict

METHODS = "training.methods:METHODS"
STRATEGIES = "active.strategies:STRATEGIES"


def _default_methods():
    from training.experiments import DEFAULT_METHODS

    return DEFAULT_METHODS


@click.group("experiment")
def experiment():
    """Run comparison experiments (blind domains, active learning)."""


@experiment.command("blind-domains")
@click.option("--data", "data_root", required=True, type=click.Path(exists=True, file_okay=False),
              help="Domain-labelled dataset folder (Argus format, or ImageFolder + domains.csv).")
@click.option("--out", default="runs/blind-domains", show_default=True, type=click.Path(file_okay=False),
              help="Experiment folder (runs/, summary.csv/.md/.json, results.csv, blind_domains.png).")
@list_option("--methods", item=NameChoice(METHODS, validate=False), default=LazyDefault(_default_methods),
             show_default=True, help="Training methods (comma-separated or repeated).")
@click.option("--seeds", default="5", show_default=True, type=Seeds(),
              help="Number of seeds (0..N-1) or a comma-separated list of seeds.")
@click.option("--epochs", default=8, show_default=True, type=click.IntRange(min=1))
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
@click.option("--shard", default="0/1", show_default=True, metavar="I/N",
              help="Run only every N-th run starting at I (start N processes on the same --out).")
@click.option("--threads", default=None, type=click.IntRange(min=1), help="torch CPU threads of this process.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@cli_errors
def blind_domains(data_root, out, methods, seeds, epochs, imbalance, imbalance_seed, method_options, arch, batch_size,
                  lr, image_size, model_widths, device, shard, threads, quiet):
    """Every method on the same split and seeds, tested per domain.

    Writes a table (per-domain accuracy, majority, minority mean, worst domain, majority
    retention and minority gain vs ERM, gap closure vs the GroupDRO oracle, bootstrap CIs,
    Wilcoxon p-values vs ERM and JTT), a plot, CSV and JSON. Rerun the same command to resume.
    """
    from training.experiments import markdown_table, run_blind_domains

    try:
        shard_i, shard_n = (int(v) for v in shard.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected I/N, got {shard!r}", param_hint="--shard") from None
    train_options = {"arch": arch, "batch_size": batch_size, "lr": lr, "device": device}
    if image_size:
        train_options["image_size"] = image_size
    if model_widths:
        try:
            train_options["model_kwargs"] = {"widths": tuple(int(w) for w in model_widths.split(","))}
        except ValueError:
            raise click.BadParameter(f"expected comma-separated integers, got {model_widths!r}",
                                     param_hint="--model-widths") from None
    summary = run_blind_domains(data_root, out, list(methods), seeds, epochs, imbalance=imbalance,
                                imbalance_seed=imbalance_seed, method_options=options_dict(method_options),
                                train_options=train_options, progress=not quiet, shard=(shard_i, shard_n),
                                threads=threads)
    if summary is None:
        click.echo(f"shard {shard} done; runs of other shards are still missing (the last shard to finish, "
                   "or a rerun without --shard, writes the summary)")
        return
    click.echo(markdown_table(summary["table"]))
    click.echo(f"\nwritten: {out}/summary.csv, summary.md, summary.json, results.csv, blind_domains.png")


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
