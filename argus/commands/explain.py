"""`argus explain`: write argument sheets for a model's predictions on a dataset split."""

from __future__ import annotations

import json

import click

from argus.commands.shared import cli_errors


def format_ground_truth(summary: dict) -> str:
    """The pointing-game / relevance-mass table by domain, as printed by `argus explain`."""
    gt = summary.get("ground_truth")
    if not gt:
        return "ground truth: no part masks in this dataset (pointing game not computed)"
    tol = summary.get("pointing_tolerance_px", 0)
    lines = [f"{'domain':<12}{'n':>6}{'pointing':>10}{'(0 px)':>8}{'rel. mass':>11}"]

    def row(name, r, mark=""):
        strict = r.get("pointing_game_strict")
        strict = f"{strict:>8.3f}" if strict is not None else f"{'-':>8}"
        return f"{name:<12}{r['n']:>6}{r['pointing_game']:>10.3f}{strict}{r['relevance_mass']:>11.3f}{mark}"

    for domain, r in gt["by_domain"].items():
        lines.append(row(domain, r, " (majority)" if domain == gt.get("majority_domain") else ""))
    lines.append(row("all", gt["overall"]))
    if gt.get("majority_domain_pointing_game") is not None:
        lines.append(f"pointing game on majority-domain ({gt['majority_domain']}) images: "
                     f"{gt['majority_domain_pointing_game']:.3f} (tolerance {tol} px)")
    return "\n".join(lines)


@click.command("explain")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Run folder (model.pt + model.json).")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Dataset folder.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Sheets folder to write.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Explain N images spread evenly over the split.")
@click.option("--top", "top_m", default=3, show_default=True, type=click.IntRange(min=1), help="Arguments (channels) per sheet.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Rendering processes [default: all cores].")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--exemplars", "top_n", default=9, show_default=True, type=click.IntRange(min=1), help="Exemplars per channel.")
@click.option("--exemplar-split", default="train", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--layer", default=None, help="Explained layer (module name) [default: the checkpoint's explained_layer].")
@click.option("--pointing-tolerance", default=None, type=click.IntRange(min=0),
              help="Pixels of slack for the pointing game [default: 15 px at 224 px, scaled to the input size].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@cli_errors
def explain(model_dir, data_dir, out, split, limit, top_m, device, workers, batch_size, top_n, exemplar_split, layer,
            pointing_tolerance, as_json, quiet):
    """Explain a model's predictions as argument sheets (JSON + HTML + PNG) with an index page."""
    from explain.pipeline import run_explain

    summary = run_explain(model_dir, data_dir, out, split=split, limit=limit, top_m=top_m, device=device, workers=workers,
                          batch_size=batch_size, exemplar_split=exemplar_split, top_n=top_n, layer=layer,
                          pointing_tolerance=pointing_tolerance, progress=not quiet)
    if as_json:
        click.echo(json.dumps({k: v for k, v in summary.items() if k != "sheets"}))
        return
    acc = summary["accuracy"]
    t = summary["timing_s"]
    click.echo(f"{summary['n_sheets']} sheets -> {out}/index.html  (model {summary['model']['name']}, layer "
               f"{summary['model']['layer']}, {summary['model']['decomposition']} decomposition)")
    if acc is not None:
        click.echo(f"accuracy on these images: {acc:.3f}")
    f = summary["faithfulness"]
    if f["flip_rate"] is not None:
        click.echo(f"faithfulness: removing the top {top_m} arguments flips {100 * f['flip_rate']:.0f}% of predictions; "
                   f"mean deletion AUC {f['mean_deletion_auc']:.3f}")
    click.echo(format_ground_truth(summary))
    ex = summary.get("exemplars") or {}
    click.echo(f"exemplars: {'reused' if ex.get('reused') else 'mined'} ({t['mining']:.1f}s); explain {t['explain']:.1f}s; "
               f"render {t['render']:.1f}s ({t['sheets_per_s_render']:.0f} sheets/s)")
