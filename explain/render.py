"""Rendering of argument sheets: evidence PNGs, the sheet JSON/HTML/PNG, and `index.html`.

Rendering is spread over a process pool (`render_sheets(..., workers=N)`); each job writes
`images/<id>.png` (plus `images/<id>_bright.png` for a dark or hazy image), one evidence PNG per
argument (`heatmaps/<id>_<rank>.png`: `explain.evidence`, the picture the crowd pages show too)
and `sheets/<id>.{json,html,png}` under the sheets root. The colours use one scale for the whole
run (`heatmap_scale`), so the same colour means the same activation on every sheet. Pictures
are numpy arrays written by `explain.evidence.encode_png`; text comes from a glyph cache; the
colour bar is made once per run, each channel's resized exemplar strip once per process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import string
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

from explain.evidence import (EVIDENCE_PX, TextPainter, brighten, colour_bar, colormap_lut, evidence_panels,
                              needs_brightening, write_png)
from explain.sheet_files import write_sheet
from training.progress import progress_bar as tqdm

__all__ = ["colormap_lut", "css_gradient", "render_one", "render_sheets", "write_index", "composite_png"]

HEAT_PX = 128  # side of an evidence panel in the composite PNG (small keeps PNG encoding cheap)
_STATE: dict = {}


def css_gradient(lut: np.ndarray, stops: int = 6) -> str:
    idx = np.linspace(0, 255, stops).round().astype(int)
    return ", ".join(f"rgb({r},{g},{b})" for r, g, b in lut[idx])


def _templates_dir() -> Path:
    import templates

    return Path(templates.__file__).parent / "sheets"


def jinja_env():
    """The Jinja environment of templates/sheets (autoescaped)."""
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(_templates_dir())),
                              autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


INK, MUTED, PAPER = (29, 31, 35), (91, 98, 112), (250, 251, 252)


def _two_thirds(x: np.ndarray) -> np.ndarray:
    """Area-average downscale by 3:2 along the first two axes (uint8): each output pixel covers
    1.5 input pixels, i.e. weights (2/3, 1/3) and (1/3, 2/3)."""
    def axis0(a):
        a = a.reshape(a.shape[0] // 3, 3, *a.shape[1:])
        out = np.empty((a.shape[0], 2, *a.shape[2:]), np.uint16)
        out[:, 0] = (2 * a[:, 0] + a[:, 1] + 1) // 3
        out[:, 1] = (a[:, 1] + 2 * a[:, 2] + 1) // 3
        return out.reshape(-1, *a.shape[2:])
    x = axis0(x.astype(np.uint16))
    return axis0(x.swapaxes(0, 1)).swapaxes(0, 1).astype(np.uint8)


def _resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
    if image.shape[:2] == (h, w):
        return image
    if image.shape[:2] == (3 * h // 2, 3 * w // 2) and h % 2 == 0 and w % 2 == 0:
        return _two_thirds(image)  # an evidence panel (192 px) into the composite (128 px)
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))


def _paste(canvas: np.ndarray, x: int, y: int, image: np.ndarray) -> None:
    h, w = min(image.shape[0], canvas.shape[0] - y), min(image.shape[1], canvas.shape[1] - x)
    canvas[y:y + h, x:x + w] = image[:h, :w]


_BLANKS: dict[tuple[int, int], np.ndarray] = {}


def _blank(h: int, w: int) -> np.ndarray:
    if (h, w) not in _BLANKS:
        _BLANKS[(h, w)] = np.full((h, w, 3), PAPER, np.uint8)
    return _BLANKS[(h, w)].copy()


def composite_png(sheet: dict, image: np.ndarray, panels: list[np.ndarray], strips: list[np.ndarray | None],
                  bar: np.ndarray | None = None, text: dict | None = None, bright: np.ndarray | None = None) -> np.ndarray:
    """One picture per sheet (`[H, W, 3]` uint8): the sentence, the input, and one row per argument
    (evidence panel, name, share, exemplars). `strips` are already sized to fit a row (see
    `_strip`); `bar` is the colour bar band; `text` holds the two `TextPainter`s; `bright` the
    brightened input of a dark or hazy image."""
    text = text or {"big": TextPainter(15), "small": TextPainter(12)}
    big, small = text["big"], text["small"]
    pad, side = 10, HEAT_PX
    width = 2 * pad + side + pad + 520
    sentence = textwrap.wrap(sheet["sentence"], width=86)
    head_h = pad + 20 * len(sentence) + 18 + pad
    row_h = side + pad
    height = head_h + side + pad + row_h * len(panels) + pad
    canvas = _blank(height, width)
    y = pad
    for line in sentence:
        big.draw(canvas, pad, y, line, INK)
        y += 20
    status = {True: "correct", False: f"wrong (true: {sheet['label']})", None: ""}[sheet["correct"]]
    small.draw(canvas, pad, y, f"{sheet['sample_id']}  {sheet['domain'] or ''}  {status}  margin {sheet['margin']:.2f}  "
                               f"after removing top {sheet['faithfulness']['top_m']}: "
                               f"{sheet['faithfulness']['margin_after_removal']:.2f}", MUTED)
    y = head_h
    _paste(canvas, pad, y, _resize(image, side, side))
    x = tx = pad + side + pad
    if bright is not None:  # the brightened copy beside a dark or hazy input
        _paste(canvas, tx, y, _resize(bright, side, side))
        tx += side + pad
    big.draw(canvas, tx, y, f"input · predicted '{sheet['prediction']['class']}' ({sheet['prediction']['probability']:.2f})", INK)
    if bright is not None:
        small.draw(canvas, tx, y + 20, "(brightened copy beside it)", MUTED)
    if bar is not None:
        _paste(canvas, tx, y + 44, bar)
    y += side + pad
    for arg, panel, strip in zip(sheet["arguments"], panels, strips):
        _paste(canvas, pad, y, _resize(panel, side, side))
        big.draw(canvas, x, y, f"#{arg['rank']} '{arg['name']}'  ({arg['name_source']}, channel {arg['channel']})", INK)
        small.draw(canvas, x, y + 20, f"{100 * arg['share_of_margin']:.0f}% of the margin · {arg['contribution']:+.3f} logits"
                                      f" · {arg['region']}", MUTED)
        share = max(0.0, min(1.0, arg["share_of_margin"]))
        canvas[y + 38:y + 45, x:x + 301] = (232, 235, 239)
        canvas[y + 38:y + 45, x:x + int(300 * share) + 1] = (11, 92, 173)
        if strip is not None:
            _paste(canvas, x, y + 52, strip)
        y += row_h
    return canvas


def _init_worker(root: str, scale: float, lut: np.ndarray | None = None):
    """Everything a render needs that is the same for every sheet of the run: built once in the
    parent, which forked workers then share (a spawned worker builds its own)."""
    _STATE["root"] = Path(root)
    _STATE["scale"] = scale
    _STATE["lut"] = lut if lut is not None else colormap_lut()
    _STATE["env"] = jinja_env()
    _STATE["env"].get_template("sheet.html")  # compiled once
    _STATE["gradient"] = css_gradient(_STATE["lut"])
    _STATE["strips"] = {}
    _STATE["text"] = {"big": TextPainter(15), "small": TextPainter(12)}
    for painter in _STATE["text"].values():
        painter.mask(string.printable.strip() + " ·'")  # glyphs rendered once
    _STATE["bar"] = colour_bar(_STATE["lut"], EVIDENCE_PX, TextPainter(11))


def _strip(rel: str | None):
    """A channel's exemplar strip, read and sized for the composite once per process."""
    if rel is None:
        return None
    cache = _STATE["strips"]
    if rel not in cache:
        path = _STATE["root"] / rel
        strip = None
        if path.exists():
            im = Image.open(path).convert("RGB")
            k = min(520 / im.width, (HEAT_PX - 54) / im.height)
            strip = np.asarray(im.resize((max(1, int(im.width * k)), max(1, int(im.height * k))), Image.Resampling.BILINEAR))
        cache[rel] = strip
    return cache[rel]


def bright_path(image_rel: str) -> str:
    """Where the brightened copy of a sheet's input goes: `images/<id>.png` -> `images/<id>_bright.png`."""
    return image_rel[:-4] + "_bright.png"


def render_one(job: tuple[dict, np.ndarray, np.ndarray]) -> str:
    """Write one sheet's files. job: `(sheet dict, image [H,W,3] uint8, maps [M,h,w])`."""
    sheet, image, maps = job
    root, scale, lut = _STATE["root"], _STATE["scale"], _STATE["lut"]
    sid = sheet["sample_id"]
    write_png(root / sheet["image"], image)
    sheet["image_brightened"], bright = None, None
    if needs_brightening(image):
        sheet["image_brightened"], bright = bright_path(sheet["image"]), brighten(image)
        write_png(root / sheet["image_brightened"], bright)
    panels = []
    if len(sheet["arguments"]):
        ev = evidence_panels(image, np.asarray(maps)[:len(sheet["arguments"])], scale, lut,
                             base=image if bright is None else bright)
        bar = _STATE["bar"]
        for arg, panel in zip(sheet["arguments"], ev.panels):
            write_png(root / arg["heatmap"], np.concatenate([panel, bar], axis=0))
            panels.append(panel)
    write_sheet(root, sheet)
    html = _STATE["env"].get_template("sheet.html").render(s=sheet, gradient=_STATE["gradient"])
    (root / "sheets" / f"{sid}.html").write_text(html)
    strips = [_strip(a["exemplar_strip"]) for a in sheet["arguments"]]
    write_png(root / "sheets" / f"{sid}.png", composite_png(sheet, image, panels, strips, _STATE["bar"], _STATE["text"], bright))
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
    lut = colormap_lut()  # matplotlib once, here, not in every worker
    _init_worker(str(root), heatmap_scale, lut)
    done = []
    bar = tqdm(total=total, desc="rendering sheets", unit="sheet", disable=not progress, leave=False)
    if workers <= 1:
        for job in jobs:
            done.append(render_one(job))
            bar.update()
    else:
        fork = "fork" in mp.get_all_start_methods()
        ctx = mp.get_context("fork") if fork else mp.get_context()
        init = {} if fork else {"initializer": _init_worker, "initargs": (str(root), heatmap_scale, lut)}
        # small chunks keep the last workers from idling at the end (the tail is at most one chunk)
        chunk = max(1, min(8, -(-total // (8 * workers)))) if total else 8
        with ctx.Pool(workers, **init) as pool:
            for sid in pool.imap_unordered(render_one, jobs, chunksize=chunk):
                done.append(sid)
                bar.update()
    bar.close()
    return done


def write_index(root: str | Path, sheets: list[dict], summary: dict, classes: list[str]) -> Path:
    """Write `index.html`: every sheet, filterable by class, domain and correctness."""
    root = Path(root)
    rows = [{"sample_id": s["sample_id"], "image": s["image"], "pred": s["prediction"]["class"],
             "prob": s["prediction"]["probability"], "label": s["label"], "domain": s["domain"], "correct": s["correct"]}
            for s in sorted(sheets, key=lambda s: s["sample_id"])]
    domains = sorted({s["domain"] for s in sheets if s["domain"]})
    html = jinja_env().get_template("index.html").render(rows=rows, summary=summary, classes=classes, domains=domains)
    path = root / "index.html"
    path.write_text(html)
    return path
