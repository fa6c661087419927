"""`argus eval`: per-domain accuracy of a trained run."""

from __future__ import annotations

import json

import click

from argus.commands.shared import cli_errors


@click.command("eval")
@click.option("--model", "run_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Run folder (model.pt + model.json).")
@click.option("--data", "data_root", required=True, type=click.Path(exists=True, file_okay=False), help="Dataset folder.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False), help="Also write the JSON report to this file.")
@cli_errors
def evaluate(run_dir, data_root, split, device, as_json, out_file):
    """Evaluate a model per domain: table of domain, n, accuracy, majority flag."""
    from training.evaluate import evaluate_run, format_domain_table

    report = evaluate_run(run_dir, data_root, split=split, device=device)
    if out_file:
        with open(out_file, "w") as fh:
            json.dump(report, fh, indent=2)
            fh.write("\n")
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(f"{report['arch']} ({report['method']}) on {data_root} [{split}]")
        click.echo(format_domain_table(report))
