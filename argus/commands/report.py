"""`argus report --judgments FILE --sheets SHEETS --out DIR`: analyse crowd judgments."""

from __future__ import annotations

import click

from argus.commands.shared import cli_errors


@click.command("report")
@click.option("--judgments", "judgments", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Judgment export (.csv or .parquet) from `argus crowd export`.")
@click.option("--sheets", "sheets", required=True, type=click.Path(exists=True, file_okay=False),
              help="SHEETS folder written by `argus explain`.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--data", "data", default=None, type=click.Path(exists=True, file_okay=False),
              help="Dataset folder (masks/, parts.json, samples.csv) for ground-truth localisation and backgrounds.")
@click.option("--n-boot", default=1000, show_default=True, type=click.IntRange(0), help="Bootstrap resamples.")
@click.option("--seed", default=0, show_default=True, type=int, help="Bootstrap seed.")
@click.option("--confidence", default=0.95, show_default=True, type=click.FloatRange(0.5, 0.999),
              help="Confidence level of the intervals.")
@click.option("--title", default="Argus report", show_default=True)
@click.option("--dropna", is_flag=True, help="Leave out answers without a label (default: they are an error).")
@click.option("--duplicates", type=click.Choice(["error", "first", "last"]), default="error", show_default=True,
              help="Two answers of one worker to one unit: an error, or keep the first / last.")
@cli_errors
def report(judgments, sheets, out, data, n_boot, seed, confidence, title, dropna, duplicates):
    """Agreement, aggregation and model-vs-human analysis -> OUT/report.html + tables/*.csv."""
    from analysis.report import build_report

    path = build_report(judgments, sheets, out, data_dir=data, n_boot=n_boot, seed=seed, confidence=confidence,
                        title=title, dropna=dropna, duplicates=duplicates)
    click.echo(f"wrote {path}")
