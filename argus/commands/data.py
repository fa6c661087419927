"""`argus data toyworld` and `argus data check`."""

from __future__ import annotations

import click


@click.group("data", help="Make the embedded toy world or check a dataset folder.")
def data():
    pass


@data.command("toyworld")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder to write the dataset into.")
@click.option("--n-train", default=6000, show_default=True, type=click.IntRange(min=0), help="Training images.")
@click.option("--n-val", default=1200, show_default=True, type=click.IntRange(min=0), help="Validation images (same domain mix as train).")
@click.option("--n-test", default=1800, show_default=True, type=click.IntRange(min=0), help="Test images (balanced across domains).")
@click.option("--image-size", default=64, show_default=True, type=click.IntRange(min=16), help="Image side in pixels.")
@click.option("--domains", default="day=0.85,night=0.10,fog=0.05", show_default=True, help="Train/val domain proportions.")
@click.option("--spurious", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="P(background = class cue) in the majority domain (train/val).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Rendering processes (default: CPU count).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def toyworld(out, n_train, n_val, n_test, image_size, domains, spurious, seed, workers, quiet):
    """Render the embedded toy world (images, part masks, parts.json, samples.csv)."""
    from training.toyworld import generate_toyworld, parse_domains

    try:
        props = parse_domains(domains)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--domains") from None
    path = generate_toyworld(out, n_train=n_train, n_val=n_val, n_test=n_test, image_size=image_size, domains=props,
                             spurious=spurious, seed=seed, workers=workers, progress=not quiet)
    click.echo(f"wrote {n_train + n_val + n_test} images to {path} (samples.csv, parts.json, masks/)")


@data.command("check")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(root, as_json):
    """Check a dataset folder (Argus format or ImageFolder + domains.csv); exit 1 on errors."""
    import json

    from training.datasets import check_dataset

    report = check_dataset(root)
    if as_json:
        doc = {"root": str(report.root), "kind": report.kind, "ok": report.ok, "errors": report.errors, "warnings": report.warnings,
               "modes": report.modes, "counts": None if report.summary is None else json.loads(report.summary.to_json(orient="index"))}
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(report.format())
    if not report.ok:
        raise SystemExit(1)
