"""`argus data toyworld`, `argus data digits` and `argus data check`."""

from __future__ import annotations

import click


@click.group("data", help="Make the embedded toy world or the handwritten digits, or check a dataset folder.")
def data():
    pass


@data.command("toyworld")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder to write the dataset into.")
@click.option("--preset", default="easy", show_default=True, type=click.Choice(["easy", "hard"]),
              help="Named world: 'easy' (6,000 x 64 px, 85/10/5) or 'hard' (4,000 x 32 px, 95/3.5/1.5: the "
                   "blind-domain benchmark, where converged ERM keeps a large minority gap). Options below override it.")
@click.option("--n-train", default=None, type=click.IntRange(min=0), help="Training images [preset].")
@click.option("--n-val", default=None, type=click.IntRange(min=0), help="Validation images, same domain mix as train [preset].")
@click.option("--n-test", default=None, type=click.IntRange(min=0), help="Test images, balanced across domains [preset].")
@click.option("--image-size", default=None, type=click.IntRange(min=16), help="Image side in pixels [preset].")
@click.option("--domains", default=None, help="Train/val domain proportions, e.g. day=0.85,night=0.10,fog=0.05 [preset].")
@click.option("--shift", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Strength of the night/fog renderings (1 = original look, larger = harsher) [preset].")
@click.option("--spurious", default=None, type=click.FloatRange(0, 1), help="P(background = class cue) in the majority domain (train/val) [preset].")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Rendering processes (default: CPU count).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def toyworld(out, preset, n_train, n_val, n_test, image_size, domains, shift, spurious, seed, workers, quiet):
    """Render the embedded toy world (images, part masks, parts.json, samples.csv)."""
    from training.toyworld import generate_toyworld, parse_domains, toyworld_preset

    opts = toyworld_preset(preset)
    given = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "image_size": image_size, "shift": shift,
             "spurious": spurious}
    opts.update({k: v for k, v in given.items() if v is not None})
    if domains is not None:
        try:
            opts["domains"] = parse_domains(domains)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--domains") from None
    path = generate_toyworld(out, seed=seed, workers=workers, progress=not quiet, **opts)
    n = opts["n_train"] + opts["n_val"] + opts["n_test"]
    click.echo(f"wrote {n} images to {path} (samples.csv, parts.json, masks/)")


@data.command("digits")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder to write the ImageFolder tree into.")
@click.option("--styles", default="ink=0.90,inverted=0.07,textured=0.03", show_default=True,
              help="Style (domain) proportions of the train and val digits; every test digit is drawn in every style.")
@click.option("--plain", is_flag=True, help="Every digit once, dark ink on paper, no domains and no recorded split "
                                            "(Argus splits it 70/10/20 like any user folder).")
@click.option("--image-size", default=32, show_default=True, type=click.IntRange(min=8), help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def digits(out, styles, plain, image_size, seed, quiet):
    """Real handwriting: scikit-learn's bundled 1,797 digits (no download) with imbalanced style domains."""
    from training.digits import generate_digits, parse_styles

    try:
        props = parse_styles(styles)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--styles") from None
    path = generate_digits(out, styles=props, image_size=image_size, seed=seed, plain=plain, progress=not quiet)
    what = "ImageFolder tree, dataset.json" if plain else "ImageFolder tree, domains.csv, argus_split.csv, dataset.json"
    click.echo(f"wrote the digits to {path} ({what})")


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
