"""Real handwriting with synthetic, imbalanced style domains, from scikit-learn's bundled digits.

`sklearn.datasets.load_digits` ships its 1,797 handwritten digits (8x8, 16 grey levels, 10
classes, written by 43 people; UCI "Optical Recognition of Handwritten Digits") inside the
package, so nothing is downloaded. `generate_digits` upsamples them to `image_size` px and
renders each in a *style* (the domain):

=============  ==========================================================================
style          rendering
=============  ==========================================================================
`ink`          dark ink on light paper (the majority: how the digits were written)
`inverted`     light strokes on a dark, coloured board (inversion + colour)
`textured`     thick coloured strokes on a textured, lined background (stroke width + texture)
=============  ==========================================================================

The output is an ImageFolder tree (`<digit>/<id>.png`) with `domains.csv` (`path,domain`) and
`dataset.json` (`augment: ["shift"]`: digits must not be mirrored). With several styles the split
is designed and recorded (`argus_split.csv`): the digits are split by class into train/val/test;
train and val digits get one style each, drawn with the `styles` proportions (about 90/7/3 by
default), and every test digit is rendered in *every* style, so each domain is measured on the
same ~450 digits. With one style (`plain=True`) the tree has no domains and no recorded split:
Argus splits it like any user folder.
"""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from training.toyworld import largest_remainder_counts, parse_proportions

DEFAULT_STYLES = {"ink": 0.90, "inverted": 0.07, "textured": 0.03}
STYLES = ("ink", "inverted", "textured")
VAL_FRACTION = 0.15
TEST_FRACTION = 0.25


def parse_styles(text: str | dict) -> dict[str, float]:
    """`ink=0.9,inverted=0.07,textured=0.03` -> proportions (known names, each >= 0, sum 1)."""
    return parse_proportions(text, STYLES, "--styles", "style")


def _ink_map(digit8: np.ndarray, size: int) -> np.ndarray:
    """8x8 grey levels 0..16 -> stroke coverage `[size, size]` float32 in [0, 1] (bicubic)."""
    im = Image.fromarray(np.round(digit8 / 16.0 * 255.0).astype(np.uint8), "L")
    up = np.asarray(im.resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0
    return np.clip(up, 0.0, 1.0)


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def render_digit(digit8: np.ndarray, style: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """One digit (`[8, 8]` grey levels 0..16) in one style, as a PIL RGB image `size`²."""
    ink = _ink_map(digit8, size)
    if style == "ink":
        paper = _rgb(rng.uniform(0.08, 0.15), rng.uniform(0.0, 0.12), rng.uniform(0.88, 1.0))
        pen = _rgb(rng.uniform(0.55, 0.7), rng.uniform(0.0, 0.5), rng.uniform(0.0, 0.25))
        a = ink[..., None]
        out = paper * (1 - a) + pen * a
    elif style == "inverted":
        board = _rgb(rng.random(), rng.uniform(0.3, 0.8), rng.uniform(0.15, 0.35))
        chalk = _rgb(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.8, 1.0))
        a = ink[..., None]
        out = board * (1 - a) + chalk * a
    elif style == "textured":
        thick = np.asarray(Image.fromarray(np.round(ink * 255).astype(np.uint8)).filter(
            ImageFilter.MaxFilter(3 if size < 48 else 5)), dtype=np.float32) / 255.0
        grain = rng.random((size, size)).astype(np.float32)
        blotch = np.asarray(Image.fromarray((rng.random((5, 5)) * 255).astype(np.uint8)).resize(
            (size, size), Image.BILINEAR), dtype=np.float32) / 255.0
        period = rng.uniform(4.0, 7.0) * size / 32.0
        lines = (np.arange(size)[:, None] % period < 1.0).astype(np.float32) * np.ones((1, size), np.float32)
        hue = rng.random()
        t = (0.5 * blotch + 0.3 * grain + 0.35 * lines)[..., None]
        ground = _rgb(hue, rng.uniform(0.2, 0.5), rng.uniform(0.55, 0.75)) * (0.75 + 0.35 * t)
        pen = _rgb(hue + rng.uniform(0.3, 0.7), rng.uniform(0.6, 1.0), rng.uniform(0.2, 0.6))
        a = thick[..., None]
        out = ground * (1 - a) + pen * a
    else:
        raise ValueError(f"unknown digit style {style!r}; choose one of {', '.join(STYLES)}")
    return Image.fromarray(np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8), "RGB")


def generate_digits(out, styles: dict[str, float] | str | None = None, image_size: int = 32, seed: int = 0,
                    plain: bool = False, limit: int | None = None, progress: bool = True) -> Path:
    """Write the digits as an ImageFolder tree under `out` (see the module docstring).

    `styles`: style proportions of the train and val digits (default ink/inverted/textured =
    0.90/0.07/0.03); `plain=True` writes every digit once in the `ink` style with no domains
    and no recorded split. `limit` keeps only the first `limit` digits (quick tests).
    Deterministic in `seed`. Returns `out`.
    """
    from sklearn.datasets import load_digits
    from training.progress import progress_bar as tqdm

    from training.datasets import record_split, write_dataset_meta

    styles = parse_styles(styles if styles is not None else DEFAULT_STYLES)
    if image_size < 8:
        raise ValueError(f"--image-size must be >= 8 pixels, got {image_size}")
    digits = load_digits()
    images, targets = digits.images, digits.target.astype(int)
    if limit is not None:
        images, targets = images[:limit], targets[:limit]
    out = Path(out)
    rng = np.random.default_rng([int(seed), 0xD161])
    jobs = []  # (relative path, digit index, style, split)
    if plain:
        jobs = [(f"{targets[i]}/{i:04d}.png", i, "ink", None) for i in range(len(targets))]
    else:
        split_of = {}
        for c in sorted(set(targets)):
            idx = np.flatnonzero(targets == c)
            idx = idx[rng.permutation(len(idx))]
            n_test, n_val = round(len(idx) * TEST_FRACTION), round(len(idx) * VAL_FRACTION)
            for k, i in enumerate(idx):
                split_of[int(i)] = "test" if k < n_test else "val" if k < n_test + n_val else "train"
        for split in ("train", "val"):
            idx = np.array(sorted(i for i, s in split_of.items() if s == split))
            counts = largest_remainder_counts(len(idx), styles)
            assigned = np.concatenate([[s] * n for s, n in counts.items()])[rng.permutation(len(idx))]
            jobs += [(f"{targets[i]}/{i:04d}_{s}.png", int(i), s, split) for i, s in zip(idx, assigned)]
        test = sorted(i for i, s in split_of.items() if s == "test")
        jobs += [(f"{targets[i]}/{i:04d}_{s}.png", int(i), s, "test") for i in test for s in styles]
    for c in sorted(set(targets)):
        (out / str(c)).mkdir(parents=True, exist_ok=True)
    for rel, i, style, _split in tqdm(jobs, desc="digits", unit="img", disable=not progress):
        # one random stream per (seed, image, style): the same digit looks the same whatever else is written
        r = np.random.default_rng([int(seed), i, STYLES.index(style)])
        render_digit(images[i], style, r, image_size).save(out / rel, format="PNG", compress_level=6)
    write_dataset_meta(out, augment=["shift"], source="sklearn.datasets.load_digits", image_size=int(image_size))
    options = {"generator": "argus digits", "version": 1, "image_size": int(image_size), "seed": int(seed),
               "plain": bool(plain), "styles": styles if not plain else {"ink": 1.0},
               "val_fraction": VAL_FRACTION, "test_fraction": TEST_FRACTION,
               "test": "every test digit in every style" if not plain else "split by Argus (70/10/20)"}
    (out / "digits.json").write_text(json.dumps(options, indent=2) + "\n")
    if not plain:
        import pandas as pd

        pd.DataFrame({"path": [j[0] for j in jobs], "domain": [j[2] for j in jobs]}).to_csv(
            out / "domains.csv", index=False, lineterminator="\n")
        record_split(out, {j[0]: j[3] for j in jobs})
    return out
