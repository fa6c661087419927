"""The sheet renderer as it was before the evidence pictures (frozen for `explain_speed.py`).

Per sheet: a matplotlib-colormap tint over the image at the image's own size (no outline, no
brightening, no colour bar), Pillow's PNG encoder, FreeType for every string, exemplar strips
resized per sheet, and each worker importing matplotlib for its colormap. Kept only to measure
the current renderer against it in one run (`render_before_vs_after`); nothing else uses it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from explain.render import jinja_env
from explain.sheet_files import write_sheet

COLORMAP = "inferno"
HEAT_PX = 128  # side of a heatmap in the composite PNG (small keeps PNG encoding cheap)
_STATE: dict = {}


def colormap_lut(name: str = COLORMAP) -> np.ndarray:
    """`[256, 3]` uint8 lookup table of a matplotlib colormap."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def css_gradient(lut: np.ndarray, stops: int = 6) -> str:
    idx = np.linspace(0, 255, stops).round().astype(int)
    return ", ".join(f"rgb({r},{g},{b})" for r, g, b in lut[idx])


def heatmap_overlay(image: np.ndarray, grid: np.ndarray, scale: float, lut: np.ndarray, alpha: float = 0.75) -> np.ndarray:
    """Blend a channel map over an image on a fixed scale.

    image: `[H, W, 3]` uint8; grid: `[h, w]` activations (>= 0); scale: activation drawn at
    full colour (values above are clipped). Returns `[H, W, 3]` uint8. Opacity grows with the
    value, so where the feature is silent the image shows through.
    """
    h, w = image.shape[:2]
    up = np.asarray(Image.fromarray(grid.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR))
    v = np.clip(up / max(scale, 1e-12), 0.0, 1.0)
    colour = lut[(v * 255).astype(np.uint8)].astype(np.float32)
    a = (alpha * np.sqrt(v))[..., None]
    grey = image.astype(np.float32).mean(axis=2, keepdims=True) * 0.6 + image.astype(np.float32) * 0.4
    return ((1 - a) * grey + a * colour).round().clip(0, 255).astype(np.uint8)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def composite_png(sheet: dict, image: np.ndarray, overlays: list[np.ndarray], strips: list[Image.Image | None]) -> Image.Image:
    """One PNG per sheet: the input, the sentence, and one row per argument (heatmap, name, share, exemplars)."""
    font, small = _font(15), _font(12)
    pad, side = 10, HEAT_PX
    width = 2 * pad + side + pad + 520
    sentence = textwrap.wrap(sheet["sentence"], width=86)
    head_h = pad + 20 * len(sentence) + 18 + pad
    row_h = side + pad
    height = head_h + max(side + pad, 0) + row_h * len(overlays) + pad
    canvas = Image.new("RGB", (width, height), (250, 251, 252))
    draw = ImageDraw.Draw(canvas)
    y = pad
    for line in sentence:
        draw.text((pad, y), line, fill=(29, 31, 35), font=font)
        y += 20
    status = {True: "correct", False: f"wrong (true: {sheet['label']})", None: ""}[sheet["correct"]]
    draw.text((pad, y), f"{sheet['sample_id']}  {sheet['domain'] or ''}  {status}  margin {sheet['margin']:.2f}  "
                        f"after removing top {sheet['faithfulness']['top_m']}: {sheet['faithfulness']['margin_after_removal']:.2f}",
              fill=(91, 98, 112), font=small)
    y = head_h
    canvas.paste(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR), (pad, y))
    draw.text((pad + side + pad, y), f"input · predicted '{sheet['prediction']['class']}' ({sheet['prediction']['probability']:.2f})",
              fill=(29, 31, 35), font=font)
    y += side + pad
    for arg, overlay, strip in zip(sheet["arguments"], overlays, strips):
        canvas.paste(Image.fromarray(overlay).resize((side, side), Image.Resampling.BILINEAR), (pad, y))
        x = pad + side + pad
        draw.text((x, y), f"#{arg['rank']} '{arg['name']}'  ({arg['name_source']}, channel {arg['channel']})", fill=(29, 31, 35), font=font)
        draw.text((x, y + 20), f"{100 * arg['share_of_margin']:.0f}% of the margin · {arg['contribution']:+.3f} logits · {arg['region']}",
                  fill=(91, 98, 112), font=small)
        share = max(0.0, min(1.0, arg["share_of_margin"]))
        draw.rectangle((x, y + 38, x + 300, y + 44), fill=(232, 235, 239))
        draw.rectangle((x, y + 38, x + int(300 * share), y + 44), fill=(11, 92, 173))
        if strip is not None:
            scale = min(520 / strip.width, (side - 54) / strip.height)
            canvas.paste(strip.resize((max(1, int(strip.width * scale)), max(1, int(strip.height * scale)))), (x, y + 52))
        y += row_h
    return canvas


def _init_worker(root: str, scale: float):
    _STATE["root"] = Path(root)
    _STATE["scale"] = scale
    _STATE["lut"] = colormap_lut()
    _STATE["env"] = jinja_env()
    _STATE["gradient"] = css_gradient(_STATE["lut"])
    _STATE["strips"] = {}


def _strip(rel: str | None):
    if rel is None:
        return None
    cache = _STATE["strips"]
    if rel not in cache:
        path = _STATE["root"] / rel
        cache[rel] = Image.open(path).convert("RGB") if path.exists() else None
    return cache[rel]


def render_one(job: tuple[dict, np.ndarray, np.ndarray]) -> str:
    """Write one sheet's files. job: `(sheet dict, image [H,W,3] uint8, maps [M,h,w])`."""
    sheet, image, maps = job
    root, scale, lut = _STATE["root"], _STATE["scale"], _STATE["lut"]
    sid = sheet["sample_id"]
    Image.fromarray(image).save(root / sheet["image"], compress_level=1)
    overlays = []
    for arg, grid in zip(sheet["arguments"], maps):
        overlay = heatmap_overlay(image, grid, scale, lut)
        Image.fromarray(overlay).save(root / arg["heatmap"], compress_level=1)
        overlays.append(overlay)
    write_sheet(root, sheet)
    html = _STATE["env"].get_template("sheet.html").render(s=sheet, gradient=_STATE["gradient"])
    (root / "sheets" / f"{sid}.html").write_text(html)
    strips = [_strip(a["exemplar_strip"]) for a in sheet["arguments"]]
    composite_png(sheet, image, overlays, strips).save(root / "sheets" / f"{sid}.png", compress_level=1)
    return sid


def render_sheets(jobs, root: str | Path, heatmap_scale: float, workers: int | None = None, total: int | None = None,
                  progress: bool = True) -> list[str]:
    """Render sheets (iterable of `render_one` jobs) under `root` with `workers` processes.

    workers: `None` = all cores; `1` = in this process. Returns the sample ids written.
    """
    root = Path(root)
    for sub in ("sheets", "images", "heatmaps"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    done = []
    if workers <= 1:
        _init_worker(str(root), heatmap_scale)
        for job in jobs:
            done.append(render_one(job))
    else:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(workers, initializer=_init_worker, initargs=(str(root), heatmap_scale)) as pool:
            for sid in pool.imap_unordered(render_one, jobs, chunksize=8):
                done.append(sid)
        return done
