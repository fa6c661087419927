"""`argus improve`: retrain a model with a correction the crowd's report points to, and measure
the model before and after (see `argus.pipelines.improve`)."""

from __future__ import annotations

import click

from argus.commands.shared import cli_errors


@click.command("improve")
@click.option("--model", "model", required=True, type=click.Path(exists=True, file_okay=False),
              help="RUN folder of the model the crowd judged.")
@click.option("--data", "data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Dataset folder it was trained on (with masks/ for the mask-based corrections).")
@click.option("--report", "report", required=True, type=click.Path(exists=True, file_okay=False),
              help="Report folder from `argus report` (its tables/clues.csv).")
@click.option("--judgments", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Judgment export: channels judged invalid (with --sheets) and rationale marks.")
@click.option("--sheets", default=None, type=click.Path(exists=True, file_okay=False),
              help="SHEETS folder the judgments are about (which channel each argument shows).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Output folder: improve.json, improve.md, improve.png, runs/<correction>/.")
@click.option("--correction", "corrections", multiple=True,
              type=click.Choice(["rrr-contribution", "rrr-gradient", "counterfactual", "suppress"]),
              help="Correction to train (repeatable) [default: rrr-contribution, counterfactual, suppress].")
@click.option("--epochs", default=None, type=click.IntRange(min=1),
              help="Epochs of each correction [default: as many as the judged model trained].")
@click.option("--fine-tune", is_flag=True, help="Start every correction from the judged model instead of a fresh one (weak when the judged "
                   "model learnt only the shortcut: bench/results/gpu/improve.md).")
@click.option("--region", default="parts", show_default=True, type=click.Choice(["parts", "object"]),
              help="Where evidence is allowed: the class's discriminative parts, or the whole object.")
@click.option("--weight", default=None, type=float, help="Weight of the right-reasons penalty [default: the method's].")
@click.option("--counterfactual", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Also swap backgrounds with this probability in the right-reasons corrections.")
@click.option("--invalid-share", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="A channel is judged invalid when at least this share of its yes/no answers is no.")
@click.option("--explain", "n_explain", default=0, show_default=True, type=click.IntRange(min=0),
              help="Also write argument sheets of the best correction for this many test images (OUT/sheets).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@cli_errors
def improve(model, data, report, judgments, sheets, out, corrections, epochs, fine_tune, region, weight, counterfactual,
            invalid_share, n_explain, seed, device):
    """Read the report's clues, retrain with each correction, re-explain and re-measure."""
    from argus.pipelines.improve import DEFAULT_CORRECTIONS, ImproveConfig, markdown_table, read_clues, run_improve

    if (judgments is None) != (sheets is None):
        raise click.UsageError("--judgments and --sheets go together (which channel each judged argument shows)")
    clues = read_clues(report, judgments, sheets, invalid_share=invalid_share)
    click.echo(f"clues: {clues.describe()}")
    if epochs is None:
        from training.checkpoint import read_meta

        epochs = int((read_meta(model).get("config") or {}).get("epochs") or 6)
    cfg = ImproveConfig(corrections=tuple(corrections) or DEFAULT_CORRECTIONS, epochs=epochs, fine_tune=fine_tune,
                        seed=seed, device=device, region=region, weight=weight, counterfactual=counterfactual)
    doc = run_improve(model, data, out, clues, cfg, echo=click.echo)
    click.echo(markdown_table(doc["results"]))
    if doc["best"]:
        click.echo(f"best correction: {doc['best']} (model: {out}/runs/{doc['best']})")
    click.echo(f"wrote {out}/improve.json, {out}/improve.md, {out}/improve.png")
    if n_explain and doc["best"]:
        from explain.pipeline import run_explain

        summary = run_explain(f"{out}/runs/{doc['best']}", data, f"{out}/sheets", limit=n_explain, device=device,
                              progress=False)
        click.echo(f"sheets of {doc['best']}: {summary['n_sheets']} in {out}/sheets/index.html")
