"""Evidence pictures: where an argument's feature fired, legible on any image (numpy + Pillow only).

An evidence panel is the input image (brightened when it is dark or hazy), the feature's map in
colour on the run's fixed scale, and the *top region* (where the map reaches `TOP_FRACTION` of
its own peak) outlined by a white line with a black casing: whatever the pixels beside it, one of
the two tones stands out (WCAG contrast >= 4.58 against any colour). A colour bar under the panel
says what the colours mean. The argument sheets and the crowd worker pages show the same PNG.

`outline_contrast` and `mean_luminance` measure legibility (tests and `bench/explain_speed.py`).
Everything here is vectorised over the arguments of a sheet; the only matplotlib use is the
colormap table, built once per run.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLORMAP = "inferno"
EVIDENCE_PX = 192  # side of an evidence panel: the size the pages show it at (no browser upscaling blur)
TOP_FRACTION = 0.5  # the top region: where the map reaches this fraction of its own peak
SILENT_FRACTION = 0.02  # a map whose peak is below this share of the run's scale has no top region
HEAT_FLOOR = 0.08  # no colour below this share of the scale (no tint over the whole image)
HEAT_FULL = 0.8  # share of the scale drawn at the strongest opacity
HEAT_ALPHA = 0.6  # strongest opacity: the image stays visible under the colour
DARK_MEAN = 0.35  # mean luma (0..1) below which an image is brightened ...
FLAT_SPREAD = 0.35  # ... or a 1st-99th percentile luma spread below which (haze, fog) ...
MIN_SPREAD = 0.05  # ... but above which: a plain image has nothing to stretch
TARGET_MEAN = 0.5  # mean luma a brightened image is lifted to (never darkened)
CORE_RGB = (255, 255, 255)
CASING_RGB = (0, 0, 0)
BAR_H = 36  # colour bar band under a panel
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# ------------------------------------------------------------------------------------- colour

def colormap_lut(name: str = COLORMAP) -> np.ndarray:
    """`[256, 3]` uint8 lookup table of a matplotlib colormap (built once per run)."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def relative_luminance(rgb) -> np.ndarray:
    """WCAG 2 relative luminance of sRGB colours `[..., 3]` (uint8 or 0..255 floats) in [0, 1]."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def contrast_ratio(l1, l2) -> np.ndarray:
    """WCAG contrast ratio (1..21) of two relative luminances (broadcasting)."""
    l1, l2 = np.asarray(l1, dtype=np.float64), np.asarray(l2, dtype=np.float64)
    return (np.maximum(l1, l2) + 0.05) / (np.minimum(l1, l2) + 0.05)


def luma(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an `[H, W, 3]` uint8 image, in [0, 1]."""
    return image.astype(np.float32) @ (_LUMA / 255.0)


# --------------------------------------------------------------------------------- brightening

def needs_brightening(image: np.ndarray) -> bool:
    """A dark (mean luma < `DARK_MEAN`) or hazy (1st-99th percentile luma spread in
    [`MIN_SPREAD`, `FLAT_SPREAD`)) image."""
    y = luma(image)
    lo, hi = np.percentile(y, [1, 99])
    return bool(y.mean() < DARK_MEAN or MIN_SPREAD <= hi - lo < FLAT_SPREAD)


def brighten(image: np.ndarray) -> np.ndarray:
    """Levels and gamma for a dark or hazy image: the 1st-99th percentile of luma stretched to 0..1
    (one stretch for all channels, so hues keep their relations; none when the spread is below
    `MIN_SPREAD`), then a gamma <= 1 that lifts the mean luma to `TARGET_MEAN`. Returns
    `[H, W, 3]` uint8."""
    x = image.astype(np.float32) / 255.0
    y = x @ _LUMA
    lo, hi = np.percentile(y, [1, 99])
    if hi - lo >= MIN_SPREAD:
        x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    mean = float((x @ _LUMA).mean())
    if 0.0 < mean < TARGET_MEAN:
        x = x ** max(np.log(TARGET_MEAN) / np.log(mean), 0.0)  # exponent in (0, 1): brighter
    return (x * 255.0).round().astype(np.uint8)


# ------------------------------------------------------------------------------------ geometry

@lru_cache(maxsize=16)
def bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear interpolation from `n_in` to `n_out` samples as two taps per output `(i0, i1,
    frac)` (pixel centres, edges clamped: the convention of PIL and of torch's
    `align_corners=False`)."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(pos).astype(np.intp)
    return i0, np.minimum(i0 + 1, n_in - 1), (pos - i0).astype(np.float32)


def upsample_maps(maps: np.ndarray, size: int) -> np.ndarray:
    """`[M, h, w]` maps -> `[M, size, size]`, bilinear, all maps at once (two gathers per axis;
    no BLAS, whose threads only contend on a busy machine)."""
    maps = np.asarray(maps, dtype=np.float32)
    r0, r1, fr = bilinear_taps(maps.shape[1], size)
    c0, c1, fc = bilinear_taps(maps.shape[2], size)
    rows = maps[:, r0] * (1.0 - fr)[:, None] + maps[:, r1] * fr[:, None]  # [M, size, w]
    return rows[:, :, c0] * (1.0 - fc) + rows[:, :, c1] * fc


def _shift_or(mask: np.ndarray, r: int, axis: int) -> np.ndarray:
    out = mask.copy()
    n = mask.shape[axis]
    for s in range(1, min(r, n - 1) + 1):
        a = [slice(None)] * mask.ndim
        b = [slice(None)] * mask.ndim
        a[axis], b[axis] = slice(s, None), slice(None, n - s)
        out[tuple(a)] |= mask[tuple(b)]
        out[tuple(b)] |= mask[tuple(a)]
    return out


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation of the last two axes by a `(2r+1)` square (pixels beyond the frame ignored)."""
    return _shift_or(_shift_or(mask, r, -1), r, -2) if r > 0 else mask.copy()


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion (a region running off the frame is not eroded from the frame)."""
    return ~dilate(~mask, r)


# ------------------------------------------------------------------------------------- panels

def heat_alpha(v: np.ndarray) -> np.ndarray:
    """Opacity of the colour at `v` (share of the scale, 0..1)."""
    return HEAT_ALPHA * np.clip((np.asarray(v, dtype=np.float64) - HEAT_FLOOR) / (HEAT_FULL - HEAT_FLOOR), 0.0, 1.0)


_TABLES: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}


def blend_tables(lut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per colour index i (value i/255 of the scale): `keep [256]` = 256 * (1 - alpha) and
    `add [256, 3]` = 256 * alpha * colour, uint16 (their sum never exceeds 255 * 256)."""
    key = lut.tobytes()
    if key not in _TABLES:
        a = np.round(256 * heat_alpha(np.arange(256) / 255.0)).astype(np.uint16)
        _TABLES[key] = (256 - a, a[:, None] * lut.astype(np.uint16))
    return _TABLES[key]


@dataclass
class Evidence:
    """Panels `[M, S, S, 3]` uint8 (no colour bar), top regions, outline masks `[M, S, S]` bool,
    and whether the base image was brightened."""

    panels: np.ndarray
    regions: np.ndarray
    core: np.ndarray
    casing: np.ndarray
    brightened: bool


def base_image(image: np.ndarray, px: int = EVIDENCE_PX) -> tuple[np.ndarray, bool]:
    """The panel's base: the image (brightened when dark or flat) at `px` x `px`."""
    bright = needs_brightening(image)
    base = brighten(image) if bright else image
    if base.shape[:2] != (px, px):
        base = np.asarray(Image.fromarray(base).resize((px, px), Image.Resampling.BILINEAR))
    return base, bright


def evidence_panels(image: np.ndarray, maps: np.ndarray, scale: float, lut: np.ndarray,
                    px: int = EVIDENCE_PX, base: np.ndarray | None = None) -> Evidence:
    """Evidence panels for the `[M, h, w]` maps (>= 0) of one `[H, W, 3]` uint8 image.

    The colour of a map value is fixed by `scale` (the run's activation at full colour), so the
    same colour means the same activation on every sheet; opacity rises from 0 at `HEAT_FLOOR`
    to `HEAT_ALPHA` at `HEAT_FULL` of the scale. The top region is `map >= TOP_FRACTION * peak`
    (none when the peak is below `SILENT_FRACTION` of the scale); its outline is a 2 px white
    line with a 1 px black casing on both sides. `base`: the picture to draw on when the caller
    has decided it (the image, or `brighten(image)`); by default `base_image(image)`.
    """
    if base is None:
        base, bright = base_image(image, px)
    else:
        bright = base is not image
        if base.shape[:2] != (px, px):
            base = np.asarray(Image.fromarray(base).resize((px, px), Image.Resampling.BILINEAR))
    up = upsample_maps(maps, px)  # [M, S, S]
    idx = np.clip(up * (255.0 / max(float(scale), 1e-12)), 0.0, 255.0).astype(np.uint8)  # colour index per pixel
    keep, add = blend_tables(lut)
    # base * (1 - alpha) + colour * alpha in 8-bit fixed point, both terms looked up by colour index
    acc = add[idx]  # [M, S, S, 3] uint16
    acc += base.astype(np.uint16)[None] * keep[idx][..., None]
    acc += 128
    acc >>= 8
    panels = acc.astype(np.uint8)
    peak = up.reshape(len(up), -1).max(axis=1)
    live = (peak >= SILENT_FRACTION * scale)[:, None, None]
    regions = (up >= TOP_FRACTION * peak[:, None, None]) & live
    core = dilate(regions, 1) & ~erode(regions, 1)
    casing = dilate(regions, 2) & ~erode(regions, 2) & ~core
    panels[core] = CORE_RGB
    panels[casing] = CASING_RGB
    return Evidence(panels, regions, core, casing, bright)


# --------------------------------------------------------------------------------- legibility

def _box_mean(values: np.ndarray, weights: np.ndarray, r: int) -> np.ndarray:
    """Weighted mean over the `(2r+1)` square around each pixel of a 2-D array (integral images)."""
    def box(a):
        c = np.pad(a, ((r + 1, r), (r + 1, r))).cumsum(0).cumsum(1)
        k = 2 * r + 1
        return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    w = box(weights.astype(np.float64))
    return np.where(w > 0, box(values * weights) / np.maximum(w, 1e-12), np.nan)


def outline_contrast(panel: np.ndarray, region: np.ndarray, core: np.ndarray, casing: np.ndarray,
                     reach: int = 4) -> dict:
    """How well an outline stands out from the pixels beside it.

    For every pixel of the white core, the mean relative luminance of the displayed pixels within
    `reach` px beyond the line is taken separately inside and outside the region; the outline's
    contrast there is the better of its two tones (core, casing) against that side, and the
    weaker side counts. Returns `{"pixels", "min", "mean"}` (WCAG ratios; None without a line).
    """
    line = core | casing
    if not core.any():
        return {"pixels": 0, "min": None, "mean": None}
    lum = relative_luminance(panel)
    beside = dilate(line, reach) & ~line
    tones = relative_luminance(np.array([CORE_RGB, CASING_RGB]))
    worst = np.full(core.shape, np.inf)
    for side in (beside & region, beside & ~region):
        bg = _box_mean(lum, side, reach + 2)
        c = np.maximum(contrast_ratio(tones[0], bg), contrast_ratio(tones[1], bg))
        worst = np.where(np.isnan(c), worst, np.minimum(worst, c))
    per = worst[core]
    per = per[np.isfinite(per)]
    return {"pixels": int(per.size), "min": float(per.min()), "mean": float(per.mean())}


def mean_luminance(panel: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean WCAG relative luminance of a panel's pixels (inside `mask` when given)."""
    lum = relative_luminance(panel)
    return float(lum[mask].mean() if mask is not None else lum.mean())


# ------------------------------------------------------------------------------- text and bars

def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


class TextPainter:
    """Text from a glyph cache: FreeType renders each character once per painter, then a line is
    the glyphs side by side (no kerning), blended with numpy. Much cheaper than drawing every
    string through FreeType."""

    def __init__(self, size: int):
        self.font = font(size)
        ascent, descent = self.font.getmetrics()
        self.height = ascent + descent
        self.glyphs: dict[str, tuple[np.ndarray, float]] = {}
        self.words: dict[str, tuple[np.ndarray, float]] = {}

    def glyph(self, ch: str) -> tuple[np.ndarray, float]:
        """The coverage of one character (`[height, w]` uint16 in 0..256) and its advance in px."""
        g = self.glyphs.get(ch)
        if g is None:
            advance = self.font.getlength(ch)
            im = Image.new("L", (int(np.ceil(advance)) + 2, self.height), 0)
            ImageDraw.Draw(im).text((0, 0), ch, font=self.font, fill=255)
            a = np.asarray(im, dtype=np.uint16)
            g = self.glyphs[ch] = (a + (a >> 7), advance)  # 0..255 -> 0..256, so full coverage is exact
        return g

    def _run(self, text: str) -> tuple[np.ndarray, float]:
        """Coverage of a run of characters (glyphs at their rounded fractional positions, spacing
        as FreeType's) and its advance; cached, since words repeat from sheet to sheet."""
        run = self.words.get(text)
        if run is None:
            glyphs = [self.glyph(c) for c in text]
            xs = np.round(np.cumsum([0.0] + [adv for _, adv in glyphs])).astype(int)
            out = np.zeros((self.height, max(x + g.shape[1] for (g, _), x in zip(glyphs, xs))), np.uint16)
            for (g, _), x in zip(glyphs, xs):
                np.maximum(out[:, x:x + g.shape[1]], g, out=out[:, x:x + g.shape[1]])
            run = (out, float(sum(adv for _, adv in glyphs)))
            if len(self.words) < 20000:
                self.words[text] = run
        return run

    def mask(self, text: str) -> np.ndarray:
        """Coverage of a line: its words (cached) and spaces at their fractional positions."""
        if not text:
            return np.zeros((self.height, 0), np.uint16)
        parts, x = [], 0.0
        for i, word in enumerate(text.split(" ")):
            if i:
                x += self.glyph(" ")[1]
            if word:
                m, adv = self._run(word)
                parts.append((int(round(x)), m))
                x += adv
        out = np.zeros((self.height, max([p + m.shape[1] for p, m in parts] + [int(round(x))])), np.uint16)
        for p, m in parts:
            np.maximum(out[:, p:p + m.shape[1]], m, out=out[:, p:p + m.shape[1]])
        return out

    def width(self, text: str) -> int:
        return int(round(sum(self.glyph(c)[1] for c in text)))

    def draw(self, canvas: np.ndarray, x: int, y: int, text: str, rgb) -> None:
        """Blend `text` onto `canvas [H, W, 3]` uint8 at `(x, y)` (clipped to the canvas)."""
        m = self.mask(text)
        h = min(m.shape[0], canvas.shape[0] - y)
        w = min(m.shape[1], canvas.shape[1] - x)
        if h <= 0 or w <= 0:
            return
        m = m[:h, :w, None]
        region = canvas[y:y + h, x:x + w].astype(np.uint16)
        ink = np.asarray(rgb, np.uint16)
        canvas[y:y + h, x:x + w] = ((region * (256 - m) + ink * m + 128) >> 8).astype(np.uint8)


def colour_bar(lut: np.ndarray, width: int = EVIDENCE_PX, painter: TextPainter | None = None) -> np.ndarray:
    """The band under a panel (`[BAR_H, width, 3]` uint8): the colour scale from weak to strong,
    and the outline's meaning. The same for every panel of a run: render it once."""
    painter = painter or TextPainter(11)
    band = np.full((BAR_H, width, 3), 255, np.uint8)
    ink = (26, 26, 26)
    left, right = painter.width("weak") + 8, width - painter.width("strong") - 8
    painter.draw(band, 3, 1, "weak", ink)
    painter.draw(band, right + 5, 1, "strong", ink)
    idx = np.linspace(0, 255, max(right - left, 1)).round().astype(int)
    band[3:13, left:right] = lut[idx][None]
    band[2, left - 1:right + 1] = band[13, left - 1:right + 1] = 26
    band[2:14, left - 1] = band[2:14, right] = 26
    # outline swatch: the same white line with a black casing, then its meaning
    y0, x0 = 20, 4
    band[y0:y0 + 12, x0:x0 + 16] = CASING_RGB
    band[y0 + 1:y0 + 11, x0 + 1:x0 + 15] = CORE_RGB
    band[y0 + 3:y0 + 9, x0 + 3:x0 + 13] = CASING_RGB
    band[y0 + 4:y0 + 8, x0 + 4:x0 + 12] = (235, 235, 235)
    painter.draw(band, x0 + 22, y0 - 1, "where it fired most", ink)
    return band


# --------------------------------------------------------------------------------------- PNG

def encode_png(image: np.ndarray, level: int = 1) -> bytes:
    """An `[H, W, 3]` uint8 array as PNG bytes: every row "Up"-filtered in one numpy step, then
    deflate at `level` (ISA-L; zlib with run-length matching without it): together about 15x
    faster than Pillow's adaptive filtering with zlib, at a similar size."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = image.shape[:2]
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"encode_png takes [H, W, 3] uint8 images; got shape {image.shape}")
    flat = image.reshape(h, w * 3)
    rows = np.empty((h, w * 3 + 1), np.uint8)
    rows[:, 0] = 2  # PNG filter type 2: Up
    rows[0, 1:] = flat[0]
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG wants
    rows[0, 0] = 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", _deflate(rows, level)) + chunk(b"IEND", b""))


try:  # ISA-L: the same zlib stream, 4x faster than zlib's fastest setting here and smaller
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - isal is a dependency; zlib keeps the PNGs valid without it
    _isal = None


def _deflate(rows: np.ndarray, level: int) -> bytes:
    if _isal is not None:
        return _isal.compress(rows, min(level, 3))
    z = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    return z.compress(rows) + z.flush()


def write_png(path, image: np.ndarray) -> None:
    with open(path, "wb") as fh:
        fh.write(encode_png(image))
