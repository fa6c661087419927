"""The embedded toy world: procedural creatures built from named parts, with ground truth.

Every image shows one creature on a textured background. A class is a distinct combination of
2-3 *discriminative* parts (horn, wings, spotted body, striped body, striped tail, antennae);
every discriminative part is shared by at least two classes, so no single part gives the class
away and a model must combine parts. *Distractor* parts (body, head, eye, legs, plain tail)
appear in every class. Pose (rotation, scale, position, mirror), colours and backgrounds are
random. Each image comes with a per-part label map (`masks/<sample_id>.png`) so explanations can
be checked against the parts that really define the class.

Domains are rendering conditions applied to the same world: `day` (clean), `night` (dark, low
contrast, blue cast, sensor noise) and `fog` (haze and blur). `render_sample` draws one sample
from `(seed, index)` alone, without touching disk, so pools of millions of items can be rendered
lazily; the object and its background depend only on `(seed, index)`, the domain only changes how
they are rendered.

Index spaces: `generate_toyworld` renders train row i from index `i`, val row i from
`VAL_OFFSET + i` and test row i from `TEST_OFFSET + i`, so the test set does not change when the
training set grows. Indices from `POOL_OFFSET` up are free for unlabelled pools.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DEFAULT_DOMAINS = {"day": 0.85, "night": 0.10, "fog": 0.05}
# Named worlds (`argus data toyworld --preset NAME`; `toyworld_preset(NAME)` gives the options).
# `hard` is the blind-domain benchmark's default: converged ERM (worst-class validation accuracy
# stops improving within ~35 of its 40 epochs) keeps a worst-domain gap of 38-42 points (night
# ~60 % vs day ~98 %), and still 27 at twice the epochs, while a domain-balanced oracle and JTT
# close part of it (bench/toyworld_presets.py, bench/results/gpu/toyworld_presets.json). `easy`
# is the original default world, where converged ERM leaves almost no gap.
TOYWORLD_PRESETS = {
    "easy": {"n_train": 6000, "n_val": 1200, "n_test": 1800, "image_size": 64,
             "domains": {"day": 0.85, "night": 0.10, "fog": 0.05}, "shift": 1.0, "spurious": 0.0},
    "hard": {"n_train": 4000, "n_val": 1000, "n_test": 1200, "image_size": 32,
             "domains": {"day": 0.95, "night": 0.035, "fog": 0.015}, "shift": 1.0, "spurious": 0.0},
}
KNOWN_DOMAINS = ("day", "night", "fog")
VAL_OFFSET = 10_000_000
TEST_OFFSET = 20_000_000
POOL_OFFSET = 100_000_000
PNG_COMPRESS_LEVEL = 6  # fixed so that the same seed gives byte-identical files


@dataclass(frozen=True)
class Part:
    id: int
    key: str
    name: str
    synonyms: tuple[str, ...]


# Part ids are the values of the mask label maps (0 = background). Order = vocabulary order.
PARTS: tuple[Part, ...] = (
    Part(1, "body", "body", ("torso", "trunk")),
    Part(2, "head", "head", ("face",)),
    Part(3, "eye", "eye", ("eyes",)),
    Part(4, "legs", "legs", ("leg", "feet", "paws")),
    Part(5, "plain_tail", "plain tail", ("tail", "smooth tail")),
    Part(6, "horn", "horn", ("spike", "nose horn", "tusk")),
    Part(7, "wings", "wings", ("wing", "fin", "sail")),
    Part(8, "spots", "spotted body", ("spots", "dots", "polka dots")),
    Part(9, "stripes", "striped body", ("stripes", "bands", "body stripes")),
    Part(10, "striped_tail", "striped tail", ("banded tail", "ringed tail")),
    Part(11, "antennae", "antennae", ("antenna", "feelers")),
)
PART_BY_KEY = {p.key: p for p in PARTS}
DISTRACTOR_PARTS = ("body", "head", "eye", "legs", "plain_tail")

# class -> discriminative parts (each part is used by >= 2 classes; no set contains another).
CLASS_PARTS: dict[str, tuple[str, ...]] = {
    "bee": ("wings", "stripes", "antennae"),
    "dragon": ("horn", "wings"),
    "ladybird": ("wings", "spots"),
    "lemur": ("striped_tail", "antennae"),
    "rhino": ("horn", "spots"),
    "tigerhorn": ("horn", "stripes", "striped_tail"),
}
CLASSES = tuple(sorted(CLASS_PARTS))

BACKGROUNDS = ("grass", "sand", "sky", "stone", "water", "snow")
# the background each class is drawn on when the spurious cue fires
SPURIOUS_BACKGROUNDS = dict(zip(CLASSES, ("sky", "stone", "grass", "sand", "water", "snow")))

LEGS_PROBABILITY = 0.5
PLAIN_TAIL_PROBABILITY = 0.7


# ----------------------------------------------------------------------------- geometry

def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


_BODY = _ellipse(0.0, 0.0, 1.0, 0.55, 32)
_HEAD = _ellipse(1.05, 0.42, 0.40, 0.40, 24)
_EYE = _ellipse(1.2, 0.52, 0.10, 0.10, 10)
_LEGS = [np.array([[x - 0.08, -0.3], [x + 0.08, -0.3], [x + 0.08, -0.95], [x - 0.08, -0.95]]) for x in (-0.6, -0.2, 0.2, 0.6)]
_TAIL = np.array([[-0.8, 0.25], [-0.85, -0.15], [-1.95, 0.35], [-1.9, 0.8]])
_TAIL_AXIS = (np.array([-0.82, 0.05]), np.array([-1.92, 0.57]))
_HORN = np.array([[1.22, 0.74], [1.45, 0.62], [1.62, 1.32]])
_WINGS = np.array([[-0.55, 0.35], [0.45, 0.35], [0.05, 1.45], [-0.75, 1.25]])
_ANTENNAE = [(np.array([0.95, 0.75]), np.array([0.75, 1.4])), (np.array([1.15, 0.78]), np.array([1.25, 1.45]))]


class _Canvas:
    """Draws polygons in object coordinates into boolean masks of the image grid."""

    def __init__(self, size: int, matrix: np.ndarray, offset: np.ndarray, unit: float):
        self.size = size
        self.matrix = matrix  # 2x2, object units -> pixels (y down)
        self.offset = offset
        self.unit = unit  # pixels per object unit

    def points(self, pts: np.ndarray) -> list[tuple[float, float]]:
        xy = pts @ self.matrix.T + self.offset
        return [tuple(p) for p in xy.tolist()]

    def _new(self):
        img = Image.new("L", (self.size, self.size), 0)
        return img, ImageDraw.Draw(img)

    def polygon(self, *polys: np.ndarray) -> np.ndarray:
        img, draw = self._new()
        for poly in polys:
            draw.polygon(self.points(poly), fill=255)
        return np.asarray(img) > 0

    def lines(self, segments, width_units: float, balls: float = 0.0) -> np.ndarray:
        img, draw = self._new()
        width = max(1, int(round(width_units * self.unit)))
        for a, b in segments:
            draw.line(self.points(np.stack([a, b])), fill=255, width=width)
            if balls > 0:
                (x, y), = self.points(b[None])
                r = max(1.0, balls * self.unit)
                draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
        return np.asarray(img) > 0


# ----------------------------------------------------------------------------- colours

def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.round(np.array(rgb) * 255.0).astype(np.uint8)


def _object_colours(rng: np.random.Generator) -> dict[str, np.ndarray]:
    hue = rng.random()
    val = rng.uniform(0.45, 0.9)
    body = _hsv(hue, rng.uniform(0.35, 0.85), val)
    dark = val > 0.65  # pattern contrasts with the body: dark on light bodies, light on dark ones
    pattern = _hsv((hue + rng.uniform(0.3, 0.7)) % 1.0, rng.uniform(0.3, 0.9), rng.uniform(0.08, 0.28) if dark else rng.uniform(0.85, 1.0))
    return {
        "body": body,
        "head": body,
        "eye": _hsv(0.0, 0.0, rng.uniform(0.0, 0.15)),
        "legs": (body.astype(np.float32) * 0.6).astype(np.uint8),
        "tail": (body.astype(np.float32) * 0.8).astype(np.uint8),
        "pattern": pattern,
        "horn": _hsv(rng.uniform(0.08, 0.16), rng.uniform(0.05, 0.35), rng.uniform(0.85, 1.0)),
        "wings": _hsv(rng.random(), rng.uniform(0.05, 0.45), rng.uniform(0.8, 1.0)),
        "antennae": _hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.1, 0.35)),
    }


# ----------------------------------------------------------------------------- backgrounds

def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1], `[size, size]`, from a `cells x cells` grid upsampled bilinearly."""
    grid = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8))
    return np.asarray(grid.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0


def _background(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background `[size, size, 3]` float32 in [0, 1]."""
    yy = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, size, dtype=np.float32)[None, :]
    j = rng.uniform(-0.06, 0.06, 3).astype(np.float32)  # colour jitter
    fine = rng.random((size, size)).astype(np.float32)
    if kind == "grass":
        blades = np.repeat(rng.random((1, size)).astype(np.float32), size, axis=0)
        t = 0.6 * blades + 0.4 * fine
        base = np.stack([0.18 + 0.12 * t, 0.42 + 0.25 * t, 0.12 + 0.08 * t], -1)
    elif kind == "sand":
        phase = rng.uniform(0, 2 * math.pi)
        ripple = 0.5 + 0.5 * np.sin(2 * math.pi * 6 * (yy + 0.3 * xx) + phase)
        t = 0.5 * ripple + 0.5 * fine
        base = np.stack([0.78 + 0.1 * t, 0.66 + 0.1 * t, 0.42 + 0.08 * t], -1)
    elif kind == "sky":
        clouds = _smooth_noise(rng, size, 4)
        t = np.clip(clouds - 0.45, 0, 1) * 1.6
        base = np.stack([0.35 + 0.3 * yy + 0.5 * t, 0.55 + 0.25 * yy + 0.4 * t, 0.9 + 0.08 * yy + 0.1 * t], -1)
    elif kind == "stone":
        blotch = _smooth_noise(rng, size, 7)
        t = 0.7 * blotch + 0.3 * fine
        base = np.repeat((0.32 + 0.3 * t)[..., None], 3, axis=-1)
    elif kind == "water":
        phase = rng.uniform(0, 2 * math.pi)
        wave = 0.5 + 0.5 * np.sin(2 * math.pi * (4 * yy + 0.8 * np.sin(2 * math.pi * 2 * xx + phase)))
        t = 0.7 * wave + 0.3 * fine
        base = np.stack([0.08 + 0.12 * t, 0.3 + 0.2 * t, 0.55 + 0.25 * t], -1)
    elif kind == "snow":
        drift = _smooth_noise(rng, size, 5)
        t = 0.6 * drift + 0.4 * fine
        base = np.stack([0.86 + 0.1 * t, 0.88 + 0.1 * t, 0.92 + 0.08 * t], -1)
    else:
        raise ValueError(f"unknown background {kind!r}; choose one of {', '.join(BACKGROUNDS)}")
    return np.clip(np.broadcast_to(base, (size, size, 3)) + j, 0.0, 1.0)


# ----------------------------------------------------------------------------- domains

def _apply_domain(img: np.ndarray, domain: str, rng: np.random.Generator, shift: float = 1.0) -> np.ndarray:
    """Render conditions on a float image `[H, W, 3]` in [0, 1]; returns uint8 `[H, W, 3]`.

    `shift` scales how far night and fog move away from day (1 = the original rendering, byte
    for byte; larger is harsher; the random draws are the same, so only their effect grows)."""
    size = img.shape[0]
    if domain == "day":
        out = img
    elif domain == "night":
        # shift s: gain and contrast raised to the power s (darker, flatter), noise and cast x s
        gain = rng.uniform(0.28, 0.42) ** shift
        mean = img.mean()
        low_contrast = mean + (img - mean) * rng.uniform(0.55, 0.75) ** shift
        cast = np.array([0.0, rng.uniform(0.01, 0.03), rng.uniform(0.05, 0.1)], np.float32) * shift
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1) - 0.5
        vignette = 1.0 - 0.9 * (xx**2 + yy**2)
        out = low_contrast * gain * vignette[..., None] + cast
        out = out + rng.normal(0.0, rng.uniform(0.025, 0.05) * shift, img.shape).astype(np.float32)
    elif domain == "fog":
        # shift s: blur radius x s, haze density d -> 1 - (1 - d) ** s (less of the scene shows)
        radius = rng.uniform(0.5, 0.9) * size / 64.0 * shift
        blurred = Image.fromarray(np.round(img * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
        blurred = np.asarray(blurred, dtype=np.float32) / 255.0
        yy = np.linspace(1.0, 0.0, size, dtype=np.float32)[:, None, None]
        density = rng.uniform(0.35, 0.5) + 0.12 * yy  # denser towards the top
        if shift != 1.0:
            density = 1.0 - (1.0 - density) ** shift
        haze = np.float32(rng.uniform(0.72, 0.86))
        out = blurred * (1 - density) + haze * density
    else:
        raise ValueError(f"unknown domain {domain!r}; choose one of {', '.join(KNOWN_DOMAINS)}")
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


# ----------------------------------------------------------------------------- one sample

def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), stream])


def _draw_from(proportions: dict[str, float], u: float) -> str:
    total = sum(proportions.values())
    acc = 0.0
    for name, p in proportions.items():
        acc += p / total
        if u < acc:
            return name
    return list(proportions)[-1]


def majority_domain(domains: dict[str, float]) -> str:
    """The domain with the largest proportion (first one on ties)."""
    return max(domains, key=lambda d: domains[d])


def render_sample(index: int, seed: int = 0, *, label: str | None = None, domain: str | None = None,
                  image_size: int = 64, domains: dict[str, float] | None = None,
                  spurious: float = 0.0, shift: float = 1.0):
    """Render ONE toy-world sample deterministically from `(seed, index)`; touches no disk.

    `label` / `domain` default to draws from the same `(seed, index)` (uniform over classes;
    `domains` proportions, default 0.85/0.10/0.05). With `spurious = P`, a sample of the majority
    domain gets its class's background with probability P (else a uniform one). The creature,
    pose and background texture depend only on `(seed, index, label)`, so rendering the same index
    in another domain shows the same scene under other conditions. `shift` scales the strength
    of the night and fog renderings (1 = the original look; see `_apply_domain`).

    Returns `(image, label, domain, mask, meta)`: a PIL RGB image `image_size`², the class name,
    the domain name, the part label map `np.uint8 [H, W]` (0 = background, else a part id of
    `PARTS`) and a dict (parts drawn, background, spurious flag, pose, part colours).
    """
    domains = dict(DEFAULT_DOMAINS if domains is None else domains)
    draw_rng = _rng(seed, index, 3)
    u_label, u_domain, u_spur = draw_rng.random(3)
    if label is None:
        label = CLASSES[min(int(u_label * len(CLASSES)), len(CLASSES) - 1)]
    elif label not in CLASS_PARTS:
        raise ValueError(f"unknown toy-world class {label!r}; classes are {', '.join(CLASSES)}")
    if domain is None:
        domain = _draw_from(domains, u_domain)
    size = int(image_size)
    if size < 16:
        raise ValueError(f"image_size must be >= 16 pixels, got {size}")

    # background: class-correlated cue only in the majority domain
    bg_rng = _rng(seed, index, 1)
    is_spurious = bool(spurious > 0 and domain == majority_domain(domains) and u_spur < spurious)
    background = SPURIOUS_BACKGROUNDS[label] if is_spurious else BACKGROUNDS[int(bg_rng.integers(len(BACKGROUNDS)))]
    img = _background(background, bg_rng, size).copy()

    # pose: mirror, rotation, scale, position
    rng = _rng(seed, index, 0)
    flip = bool(rng.random() < 0.5)
    angle = rng.uniform(-25.0, 25.0)
    unit = size * rng.uniform(0.15, 0.19)  # pixels per object unit; the creature spans ~3.6 units
    cx = size * (0.5 + rng.uniform(-0.08, 0.08))
    cy = size * (0.52 + rng.uniform(-0.08, 0.08))
    a = math.radians(angle)
    sx = -1.0 if flip else 1.0
    # object (x right, y up) -> image (x right, y down); centre the creature's extent (-1.95..1.6)
    matrix = unit * np.array([[math.cos(a) * sx, -math.sin(a)], [-math.sin(a) * sx, -math.cos(a)]])
    offset = np.array([cx, cy]) - matrix @ np.array([-0.18, 0.2])
    canvas = _Canvas(size, matrix, offset, unit)
    colours = _object_colours(rng)
    spots_xy = []
    while len(spots_xy) < 6:  # spot centres inside the body ellipse
        x, y = rng.uniform(-0.85, 0.85), rng.uniform(-0.45, 0.45)
        if (x / 0.8) ** 2 + (y / 0.42) ** 2 < 1.0:
            spots_xy.append((x, y))
    has_legs = rng.random() < LEGS_PROBABILITY
    has_plain_tail = rng.random() < PLAIN_TAIL_PROBABILITY

    wanted = set(CLASS_PARTS[label]) | {"body", "head", "eye"}
    if has_legs:
        wanted.add("legs")
    if "striped_tail" not in wanted and has_plain_tail:
        wanted.add("plain_tail")

    mask = np.zeros((size, size), np.uint8)
    part_colours: dict[str, list[list[int]]] = {}

    def paint(key: str, region: np.ndarray, colour: np.ndarray, owner: str | None = None):
        # `owner` is the part whose mask the pixels belong to (stripes on a tail belong to the tail)
        owner = owner or key
        img[region] = colour.astype(np.float32) / 255.0
        mask[region] = PART_BY_KEY[owner].id
        part_colours.setdefault(owner, [])
        if colour.tolist() not in part_colours[owner]:
            part_colours[owner].append(colour.tolist())

    # back to front; later parts occlude earlier ones
    if "plain_tail" in wanted or "striped_tail" in wanted:
        tail = canvas.polygon(_TAIL)
        key = "striped_tail" if "striped_tail" in wanted else "plain_tail"
        paint(key, tail, colours["tail"])
        if key == "striped_tail":
            p0, p1 = _TAIL_AXIS
            d = (p1 - p0) / np.linalg.norm(p1 - p0)
            n = np.array([-d[1], d[0]])
            segs = [(p0 + t * (p1 - p0) - 0.5 * n, p0 + t * (p1 - p0) + 0.5 * n) for t in (0.2, 0.45, 0.7, 0.92)]
            paint(key, tail & canvas.lines(segs, 0.17), colours["pattern"])
    if "legs" in wanted:
        paint("legs", canvas.polygon(*_LEGS), colours["legs"])
    body = canvas.polygon(_BODY)
    paint("body", body, colours["body"])
    if "spots" in wanted:
        spots = canvas.polygon(*[_ellipse(x, y, 0.2, 0.2, 12) for x, y in spots_xy]) & body
        paint("spots", spots, colours["pattern"])
    if "stripes" in wanted:
        bands = canvas.polygon(*[np.array([[x - 0.1, -0.7], [x + 0.1, -0.7], [x + 0.1, 0.7], [x - 0.1, 0.7]]) for x in (-0.62, -0.22, 0.18, 0.58)])
        paint("stripes", bands & body, colours["pattern"])
    if "wings" in wanted:
        paint("wings", canvas.polygon(_WINGS), colours["wings"])
    paint("head", canvas.polygon(_HEAD), colours["head"])
    paint("eye", canvas.polygon(_EYE), colours["eye"])
    if "horn" in wanted:
        paint("horn", canvas.polygon(_HORN), colours["horn"])
    if "antennae" in wanted:
        paint("antennae", canvas.lines(_ANTENNAE, 0.1, balls=0.12), colours["antennae"])

    out = _apply_domain(img, domain, _rng(seed, index, 2), shift)
    meta = {
        "index": int(index),
        "parts": sorted(wanted, key=lambda k: PART_BY_KEY[k].id),
        "visible_parts": sorted({PARTS[v - 1].key for v in np.unique(mask).tolist() if v > 0}, key=lambda k: PART_BY_KEY[k].id),
        "background": background,
        "spurious": int(is_spurious),
        "pose": {"flip": flip, "angle_deg": round(angle, 3), "unit_px": round(unit, 3), "cx": round(cx, 3), "cy": round(cy, 3)},
        "part_colours": part_colours,
    }
    return Image.fromarray(out, "RGB"), label, domain, mask, meta


# ----------------------------------------------------------------------------- the dataset

def parts_document(image_size: int = 64) -> dict:
    """The `parts.json` document (see docs/contracts.md)."""
    return {
        "image_size": int(image_size),
        "parts": [{"id": p.id, "key": p.key, "name": p.name, "synonyms": list(p.synonyms)} for p in PARTS],
        "classes": [
            {
                "name": c,
                "discriminative_parts": [PART_BY_KEY[k].id for k in CLASS_PARTS[c]],
                "parts": sorted({PART_BY_KEY[k].id for k in CLASS_PARTS[c]} | {PART_BY_KEY[k].id for k in DISTRACTOR_PARTS if k != "plain_tail" or "striped_tail" not in CLASS_PARTS[c]}),
            }
            for c in CLASSES
        ],
        "distractor_parts": [PART_BY_KEY[k].id for k in DISTRACTOR_PARTS],
        "backgrounds": list(BACKGROUNDS),
        "spurious_backgrounds": dict(SPURIOUS_BACKGROUNDS),
    }


def parse_proportions(text: str | dict, known, option: str = "--domains", noun: str = "domain") -> dict[str, float]:
    """Parse `name=share,...` (or a dict) into proportions: names from `known`, each >= 0, sum 1.
    Errors name the command-line `option` and the offending part."""
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for chunk in str(text).split(","):
            if not chunk.strip():
                continue
            if "=" not in chunk:
                raise ValueError(f"{option}: expected name=proportion, got {chunk.strip()!r}")
            name, value = chunk.split("=", 1)
            try:
                items.append((name.strip(), float(value)))
            except ValueError:
                raise ValueError(f"{option}: proportion of {name.strip()!r} is not a number: {value.strip()!r}") from None
    out: dict[str, float] = {}
    for name, value in items:
        if name not in known:
            raise ValueError(f"{option}: unknown {noun} {name!r}; choose from {', '.join(known)}")
        if not (value >= 0):
            raise ValueError(f"{option}: proportion of {name!r} must be >= 0, got {value}")
        out[name] = float(value)
    total = sum(out.values())
    if not out or total <= 0:
        raise ValueError(f"{option}: give at least one {noun} with a positive proportion")
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"{option}: proportions must sum to 1, got {total:g}")
    return out


def parse_domains(text: str | dict) -> dict[str, float]:
    """Parse `day=0.85,night=0.10,fog=0.05` into proportions (checked: known names, sum 1)."""
    return parse_proportions(text, KNOWN_DOMAINS, "--domains", "domain")


def largest_remainder_counts(n: int, proportions: dict[str, float]) -> dict[str, int]:
    """Largest-remainder apportionment of n rows to domains (exact, deterministic)."""
    raw = {d: n * p for d, p in proportions.items()}
    counts = {d: int(math.floor(v)) for d, v in raw.items()}
    left = n - sum(counts.values())
    for d in sorted(raw, key=lambda d: (-(raw[d] - counts[d]), list(raw).index(d)))[:left]:
        counts[d] += 1
    return counts


def plan_split(n: int, proportions: dict[str, float], rng: np.random.Generator) -> list[tuple[str, str]]:
    """`(label, domain)` for n rows: exact domain counts, classes balanced within each domain."""
    rows: list[tuple[str, str]] = []
    for domain, count in largest_remainder_counts(n, proportions).items():
        offset = int(rng.integers(len(CLASSES)))
        rows += [(CLASSES[(offset + i) % len(CLASSES)], domain) for i in range(count)]
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def _render_and_write(job):
    root, seed, image_size, domains, shift, items = job
    rows = []
    for sample_id, index, label, domain, split, spurious in items:
        image, label, domain, mask, meta = render_sample(index, seed, label=label, domain=domain, image_size=image_size,
                                                         domains=domains, spurious=spurious, shift=shift)
        image.save(os.path.join(root, "images", f"{sample_id}.png"), format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        Image.fromarray(mask, "L").save(os.path.join(root, "masks", f"{sample_id}.png"), format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        rows.append((sample_id, f"images/{sample_id}.png", label, domain, split, meta["background"], meta["spurious"]))
    return rows


def generate_toyworld(out, n_train: int = 6000, n_val: int = 1200, n_test: int = 1800, image_size: int = 64,
                      domains: dict[str, float] | str | None = None, spurious: float = 0.0, seed: int = 0,
                      spurious_splits: tuple[str, ...] = ("train", "val"), workers: int | None = None,
                      progress: bool = True, shift: float = 1.0) -> Path:
    """Write a toy-world dataset folder (Argus format) and return its path.

    Train and val follow the `domains` proportions exactly (largest-remainder counts); the test
    split is balanced across domains; classes are balanced within each (split, domain). The
    spurious background cue (probability `spurious`, majority domain only) is applied to
    `spurious_splits` (default train and val, so a test set without the cue reveals a model that
    learnt the shortcut). `shift` scales the night and fog renderings (1 = original). Writes `images/`, `masks/`, `samples.csv`, `parts.json`,
    `toyworld.json` (the options) and `dataset.json` (`augment`: flip, shift). `workers` processes render in parallel (default: CPU count,
    at most 8); output is byte-identical whatever the worker count.
    """
    import pandas as pd
    from training.progress import progress_bar as tqdm

    from training.datasets import write_dataset_meta

    domains = parse_domains(domains if domains is not None else DEFAULT_DOMAINS)
    if not 0.0 <= spurious <= 1.0:
        raise ValueError(f"--spurious must be in [0, 1], got {spurious}")
    if not shift > 0:
        raise ValueError(f"--shift must be > 0, got {shift}")
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if n < 0:
            raise ValueError(f"{name} must be >= 0, got {n}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)

    plan_rng = np.random.default_rng([int(seed), 0x5EED])
    test_domains = {d: 1.0 / len(domains) for d in domains}
    items = []
    for split, n, offset, props in (("train", n_train, 0, domains), ("val", n_val, VAL_OFFSET, domains), ("test", n_test, TEST_OFFSET, test_domains)):
        p = spurious if split in spurious_splits else 0.0
        for i, (label, domain) in enumerate(plan_split(n, props, plan_rng)):
            items.append((f"{split}-{i:06d}", offset + i, label, domain, split, p))

    workers = workers or min(os.cpu_count() or 1, 8)
    chunk = 100
    jobs = [(str(out), seed, image_size, domains, float(shift), items[i:i + chunk]) for i in range(0, len(items), chunk)]
    rows = []
    bar = tqdm(total=len(items), desc="toy world", unit="img", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for part in pool.map(_render_and_write, jobs):
                rows += part
                bar.update(len(part))
    else:
        for job in jobs:
            part = _render_and_write(job)
            rows += part
            bar.update(len(part))
    bar.close()

    table = pd.DataFrame(rows, columns=["sample_id", "path", "label", "domain", "split", "background", "spurious"])
    table.to_csv(out / "samples.csv", index=False, lineterminator="\n")
    (out / "parts.json").write_text(json.dumps(parts_document(image_size), indent=2) + "\n")
    options = {"generator": "argus toyworld", "version": 1, "n_train": n_train, "n_val": n_val, "n_test": n_test,
               "image_size": image_size, "domains": domains, "spurious": spurious, "spurious_splits": list(spurious_splits),
               "shift": float(shift), "seed": seed}
    (out / "toyworld.json").write_text(json.dumps(options, indent=2) + "\n")
    # creatures face either way (the pose mirrors them), so mirroring is a fair augmentation here
    write_dataset_meta(out, augment=["flip", "shift"])
    return out


def toyworld_preset(name: str) -> dict:
    """The options of a named world (`TOYWORLD_PRESETS`): n_train, n_val, n_test, image_size,
    domains, shift, spurious -- keyword arguments of `generate_toyworld` (and, except the
    counts, of `render_sample`, for lazily rendered pools)."""
    if name not in TOYWORLD_PRESETS:
        raise ValueError(f"unknown toy-world preset {name!r}; choose one of {', '.join(TOYWORLD_PRESETS)}")
    preset = dict(TOYWORLD_PRESETS[name])
    preset["domains"] = dict(preset["domains"])
    return preset


def write_cue_free_test(data_dir, out, progress: bool = False) -> Path:
    """The cue-free twin of a toy world's test split: the same test rows (same creatures, poses,
    domains and labels) rendered with the spurious background cue at chance (every background
    drawn uniformly), in a dataset folder `out` that holds only the test split.

    A model that reads the creature scores the same on both; one that reads the background loses
    its majority-domain accuracy here. Reads `toyworld.json` and `samples.csv` of `data_dir`;
    writes `images/`, `masks/`, `samples.csv`, `parts.json`, `toyworld.json` (with
    `cue_free_of`) and `dataset.json`."""
    import pandas as pd

    from training.datasets import read_dataset_meta, write_dataset_meta

    data_dir, out = Path(data_dir), Path(out)
    options_path = data_dir / "toyworld.json"
    if not options_path.exists():
        raise FileNotFoundError(f"{options_path}: not a toy world (no toyworld.json), so no cue-free test can be rendered")
    options = json.loads(options_path.read_text())
    table = pd.read_csv(data_dir / "samples.csv", dtype=str, keep_default_na=False)
    test = table[table["split"] == "test"]
    if test.empty:
        raise ValueError(f"{data_dir / 'samples.csv'}: no test rows to render cue-free")
    items = []
    for sid, label, domain in zip(test["sample_id"], test["label"], test["domain"]):
        prefix, _, number = sid.partition("-")
        if prefix != "test" or not number.isdigit():
            raise ValueError(f"{data_dir / 'samples.csv'}: test sample id {sid!r} is not test-<row>, as the toy world writes")
        items.append((sid, TEST_OFFSET + int(number), label, domain, "test", 0.0))
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    domains = {k: float(v) for k, v in options["domains"].items()}
    rows = _render_and_write((str(out), int(options["seed"]), int(options["image_size"]), domains,
                              float(options.get("shift", 1.0)), items))
    frame = pd.DataFrame(rows, columns=["sample_id", "path", "label", "domain", "split", "background", "spurious"])
    frame.to_csv(out / "samples.csv", index=False, lineterminator="\n")
    (out / "parts.json").write_text(json.dumps(parts_document(int(options["image_size"])), indent=2) + "\n")
    (out / "toyworld.json").write_text(json.dumps({**options, "spurious_splits": [], "cue_free_of": str(data_dir)},
                                                  indent=2) + "\n")
    write_dataset_meta(out, **read_dataset_meta(data_dir))
    return out
