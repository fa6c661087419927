"""SIMULATED crowd workers: HTTP clients that take tasks through the real worker pages.

This is a simulation. No person is involved: each simulated worker is a `requests` session
that opens the entry link, ticks the consent form, reads the instructions, opens task pages,
answers them and posts the answer exactly as `static/worker.js` does (JSON to the form's
`data-submit-url`, same client token on every retry), then follows `data-next-url` until the
server sends it to the finish page. It repeats visits until the server has no task left for it.

Answers come from the ground truth of the toy world (`GroundTruth`), bent by a worker model:

- `reliable`: the truth with small noise;
- `sloppy`: more noise, faster (shorter `duration_s`);
- `spammer`: random answers, or always "yes" (strategy `random` | `always_yes`);
- `adversarial`: the truth inverted.

Ground truth (`GroundTruth`, from the sheets folder and the dataset's part masks):

- an argument is *relevant* when the hot part of its heatmap (`heatmap_grid` upsampled to the
  mask, values >= half its maximum) puts at least `overlap_threshold` of its mass on a
  discriminative part of the predicted class (parts dilated by `tolerance_px`);
- rationale marks land on the discriminative parts of the sheet's class;
- a feature (channel) is named after the part its heatmaps overlap most over all sheets (or the
  background kind when most mass is off the creature), with synonyms and typos;
- labels follow a class-confusion model: classes that share discriminative parts are confused
  more often.

Each worker's *true accuracy* is recorded: `nominal_accuracy` (the model's design value on a
binary question) and `accuracy` (the share of its argument ratings that equal the ground truth,
measured from its own answers), so aggregation methods (Dawid-Skene) can be checked against it.

    truth = GroundTruth("runs/demo/sheets", "runs/demo/data")
    crowd = make_crowd(20, {"reliable": 12, "sloppy": 3, "spammer": 3, "adversarial": 2}, seed=0)
    result = run_crowd("http://127.0.0.1:5000", batch_id, crowd, truth)
    result.roster()   # DataFrame: worker, kind, strategy, nominal_accuracy, accuracy, n_tasks, ...
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
import zlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlparse


import numpy as np

WORKER_KINDS = ("reliable", "sloppy", "spammer", "adversarial")
RETRY_STATUS = {429, 500, 502, 503, 504}

# Names people give the background kinds of the toy world (the shortcut a model may learn).
BACKGROUND_SYNONYMS = {
    "grass": ["grass", "green grass", "lawn"],
    "sand": ["sand", "desert", "beach"],
    "sky": ["sky", "blue sky", "clouds"],
    "stone": ["stone", "rock", "pebbles"],
    "water": ["water", "waves", "sea"],
    "snow": ["snow", "white snow", "ice"],
}
SPAM_WORDS = ["thing", "idk", "nothing", "good", "stuff", "asdf", "image", "yes", "ok", "pattern"]


class SimulationError(RuntimeError):
    """The simulated crowd could not use the server (message names the URL and status)."""


# ------------------------------------------------------------------------------ worker models

@dataclass(frozen=True)
class WorkerProfile:
    """One simulated worker's answer model.

    `noise`: probability that one answer departs from the model's intended answer;
    `cant_tell`: probability of "can't tell" on an argument; `typo`: probability of a typo in
    a feature name; `seconds`: mean simulated time per task (reported as `duration_s`, the
    simulation does not sleep); `strategy`: spammers only, `random` or `always_yes`.
    """

    kind: str
    noise: float = 0.05
    cant_tell: float = 0.02
    typo: float = 0.1
    seconds: float = 20.0
    strategy: str = ""

    def __post_init__(self):
        if self.kind not in WORKER_KINDS:
            raise ValueError(f"worker kind {self.kind!r}: expected one of {', '.join(WORKER_KINDS)}")
        if not 0.0 <= self.noise <= 1.0 or not 0.0 <= self.cant_tell <= 1.0:
            raise ValueError(f"worker {self.kind}: noise and cant_tell must be in [0, 1]")
        if self.kind == "spammer" and self.strategy not in ("random", "always_yes"):
            raise ValueError(f"spammer strategy {self.strategy!r}: expected random or always_yes")

    @property
    def nominal_accuracy(self) -> float:
        """Chance of matching the truth on a balanced yes/no question, by design."""
        if self.kind == "spammer":
            return 1.0 / 3.0 if self.strategy == "random" else 0.5
        p_answer = 1.0 - self.cant_tell
        correct = 1.0 - self.noise
        return p_answer * (correct if self.kind != "adversarial" else 1.0 - correct)


DEFAULT_PROFILES = {
    "reliable": dict(noise=0.06, cant_tell=0.02, typo=0.08, seconds=25.0),
    "sloppy": dict(noise=0.25, cant_tell=0.05, typo=0.3, seconds=8.0),
    "spammer": dict(noise=1.0, cant_tell=0.0, typo=0.0, seconds=2.5),
    "adversarial": dict(noise=0.08, cant_tell=0.0, typo=0.05, seconds=15.0),
}


@dataclass
class SimulatedWorker:
    """A simulated worker: id (starts with `sim-`, so nobody takes it for a person), profile
    and its own random stream."""

    worker_id: str
    profile: WorkerProfile
    seed: int

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)
        self.answered: Counter = Counter()  # task key -> times answered (seeds its answer stream)


def make_crowd(n_workers: int = 20, mix: dict | None = None, *, seed: int = 0, prefix: str = "sim") -> list[SimulatedWorker]:
    """A simulated crowd of `n_workers`.

    `mix` maps worker kind -> count (ints summing to n_workers) or share (floats summing to 1);
    default 14 reliable, 2 sloppy, 3 spammers, 1 adversarial per 20. Spammers alternate between
    the `random` and `always_yes` strategies. Worker ids are `<prefix>-NN`, shuffled so that the
    id says nothing about the kind.
    """
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    mix = dict(mix or {"reliable": 0.7, "sloppy": 0.1, "spammer": 0.15, "adversarial": 0.05})
    unknown = sorted(set(mix) - set(WORKER_KINDS))
    if unknown:
        raise ValueError(f"crowd mix: unknown worker kind(s) {unknown}; expected {', '.join(WORKER_KINDS)}")
    if all(isinstance(v, int) for v in mix.values()):
        counts = dict(mix)
        if sum(counts.values()) != n_workers:
            raise ValueError(f"crowd mix counts {counts} sum to {sum(counts.values())}, not n_workers={n_workers}")
    else:
        total = float(sum(mix.values()))
        if total <= 0:
            raise ValueError("crowd mix shares must sum to a positive number")
        raw = {k: n_workers * v / total for k, v in mix.items()}
        counts = {k: int(math.floor(v)) for k, v in raw.items()}
        for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[:n_workers - sum(counts.values())]:
            counts[k] += 1  # largest remainder
    kinds = [k for k in WORKER_KINDS for _ in range(counts.get(k, 0))]
    rng = np.random.default_rng([seed, 0xC0D])
    order = rng.permutation(len(kinds))
    crowd, n_spam = [], 0
    for slot, i in enumerate(order):
        kind = kinds[i]
        strategy = ""
        if kind == "spammer":
            strategy = ("random", "always_yes")[n_spam % 2]
            n_spam += 1
        profile = WorkerProfile(kind, strategy=strategy, **DEFAULT_PROFILES[kind])
        crowd.append(SimulatedWorker(f"{prefix}-{slot + 1:02d}", profile, seed=int(rng.integers(2 ** 31))))
    return crowd


# ------------------------------------------------------------------------------ ground truth

def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return mask
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, iterations=r)


class GroundTruth:
    """What a careful person would answer on every task of a sheets folder, from the toy
    world's part masks (a simulation's oracle; see the module docstring for the rules).

    Args:
        sheets_dir: SHEETS folder written by `argus explain` (sheet JSON with `heatmap_grid`).
        data_dir: dataset folder with `parts.json`, `masks/<sample_id>.png` and `samples.csv`.
        overlap_threshold: share of an argument's hot heatmap mass on discriminative parts
            above which the argument counts as relevant.
        tolerance_px: pixels of slack around the parts (a person forgives a near miss).
    """

    def __init__(self, sheets_dir, data_dir, *, overlap_threshold: float = 0.3, tolerance_px: int = 2):
        from analysis.model_human import upsample
        from explain.sheet_files import load_sheets
        from training.datasets import read_part_mask, read_parts, read_samples_table

        self.sheets_dir, self.data_dir = Path(sheets_dir), Path(data_dir)
        self.parts_doc = read_parts(self.data_dir)
        self.parts = {int(p["id"]): p for p in self.parts_doc["parts"]}
        self.classes = [c["name"] for c in self.parts_doc["classes"]]
        self.disc = {c["name"]: [int(i) for i in c["discriminative_parts"]] for c in self.parts_doc["classes"]}
        self.overlap_threshold, self.tolerance_px = float(overlap_threshold), int(tolerance_px)
        samples = read_samples_table(self.data_dir)
        backgrounds = samples["background"] if "background" in samples else [""] * len(samples)
        self.background = dict(zip(samples["sample_id"], backgrounds))
        self.sheets: dict[str, dict] = load_sheets(self.sheets_dir)
        self.by_image = {s["image"]: sid for sid, s in self.sheets.items()}
        self.masks: dict[str, np.ndarray] = {sid: read_part_mask(self.data_dir, sid) for sid in self.sheets}
        self.overlap: dict[tuple[str, int], float] = {}
        self.strip_channel: dict[str, int] = {}
        part_mass: dict[int, Counter] = defaultdict(Counter)
        for sid, s in self.sheets.items():
            mask = self.masks[sid]
            pred = s["prediction"]["class"]
            target = _dilate(np.isin(mask, self.disc.get(pred, [])), self.tolerance_px)
            for a in s["arguments"]:
                c = int(a["channel"])
                if a.get("exemplar_strip"):
                    self.strip_channel[a["exemplar_strip"]] = c
                self.strip_channel.setdefault(f"exemplars/channel_{c}.png", c)
                heat = upsample(a["heatmap_grid"], mask.shape) if a.get("heatmap_grid") else np.zeros(mask.shape)
                hot = np.where(heat >= 0.5 * heat.max(), heat, 0.0) if heat.max() > 0 else heat
                total = hot.sum()
                self.overlap[(sid, int(a["rank"]))] = float(hot[target].sum() / total) if total > 0 else 0.0
                if total > 0:
                    for part_id in np.unique(mask):
                        part_mass[c][int(part_id)] += float(hot[mask == part_id].sum() / total)
                    part_mass[c][("bg", self.background.get(sid, ""))] += float(hot[mask == 0].sum() / total)
        self.channel_concept: dict[int, dict] = {c: self._concept(m) for c, m in part_mass.items()}
        self.confusion = self._class_confusion()

    # -- arguments
    def argument_relevant(self, sheet: str, rank: int) -> bool:
        """True when argument `rank` of `sheet` overlaps a discriminative part of the predicted class."""
        return self.overlap[(str(sheet), int(rank))] >= self.overlap_threshold

    def argument_truth(self, sheet: str, rank: int) -> str:
        return "yes" if self.argument_relevant(sheet, rank) else "no"

    # -- rationale
    def evidence_mask(self, sheet: str, cls: str | None = None) -> np.ndarray:
        """Boolean mask `[H, W]` of the discriminative parts of `cls` (default: the sheet's
        true class, else its predicted class) present in the sheet's image."""
        s = self.sheets[str(sheet)]
        cls = cls or s.get("label") or s["prediction"]["class"]
        return np.isin(self.masks[str(sheet)], self.disc.get(cls, []))

    def evidence_boxes(self, sheet: str, cls: str | None = None, pad: float = 0.03) -> list[list[float]]:
        """Bounding boxes `[x0, y0, x1, y1]` (normalised) of each discriminative part present."""
        s = self.sheets[str(sheet)]
        cls = cls or s.get("label") or s["prediction"]["class"]
        mask = self.masks[str(sheet)]
        H, W = mask.shape
        boxes = []
        for pid in self.disc.get(cls, []):
            ys, xs = np.nonzero(mask == pid)
            if len(xs):
                boxes.append([max(0.0, xs.min() / W - pad), max(0.0, ys.min() / H - pad),
                              min(1.0, (xs.max() + 1) / W + pad), min(1.0, (ys.max() + 1) / H + pad)])
        return boxes

    # -- names
    def _concept(self, mass: Counter) -> dict:
        bg = sum(v for k, v in mass.items() if isinstance(k, tuple))
        parts = {k: v for k, v in mass.items() if isinstance(k, int) and k > 0}
        total = bg + sum(parts.values())
        if total <= 0:
            return {"key": "unknown", "names": ["unclear"], "share": 0.0, "is_background": False}
        if bg >= max(parts.values(), default=0.0):
            kinds = Counter({k[1]: v for k, v in mass.items() if isinstance(k, tuple) and k[1]})
            kind = kinds.most_common(1)[0][0] if kinds else "background"
            names = BACKGROUND_SYNONYMS.get(kind, [kind])
            return {"key": f"background:{kind}", "names": names, "share": bg / total, "is_background": True}
        pid = max(parts, key=parts.get)
        p = self.parts[pid]
        return {"key": p["key"], "names": [p["name"], *p.get("synonyms", [])], "share": parts[pid] / total,
                "is_background": False}

    def channel_names(self, channel: int) -> list[str]:
        """Accepted names of a channel's concept (first = canonical)."""
        return list(self.channel_concept.get(int(channel), {"names": ["unclear"]})["names"])

    # -- labels
    def _class_confusion(self) -> np.ndarray:
        """`[K, K]` P(answer j | true i) shape for mistakes: Jaccard of discriminative parts,
        diagonal zero, rows normalised (a uniform row where a class shares nothing)."""
        K = len(self.classes)
        m = np.zeros((K, K))
        for i, a in enumerate(self.classes):
            for j, b in enumerate(self.classes):
                if i != j:
                    sa, sb = set(self.disc[a]), set(self.disc[b])
                    m[i, j] = len(sa & sb) / max(1, len(sa | sb))
        for i in range(K):
            if m[i].sum() == 0:
                m[i] = 1.0
                m[i, i] = 0.0
            m[i] /= m[i].sum()
        return m

    def gold(self, kinds, n_per_kind: int = 3, *, max_arguments: int = 3, seed: int = 0,
             sheets: list[str] | None = None) -> list[dict]:
        """Gold answers for `crowd.service.create_batch` (`{"sheet", "kind", "answer"}` or
        `{"channel", ...}` for names), picked from clear-cut sheets (of `sheets`, default all)
        and channels."""
        rng = np.random.default_rng([seed, 0x601D])
        out = []
        sids = sorted(sheets if sheets is not None else self.sheets)
        if "rate_arguments" in kinds:
            clear = []
            for sid in sids:
                args = sorted(self.sheets[sid]["arguments"], key=lambda a: a["rank"])[:max_arguments]
                ov = [self.overlap[(sid, int(a["rank"]))] for a in args]
                if args and all(o >= 0.6 or o <= 0.05 for o in ov):
                    clear.append(sid)
            for sid in rng.permutation(clear)[:n_per_kind]:
                args = sorted(self.sheets[sid]["arguments"], key=lambda a: a["rank"])[:max_arguments]
                out.append({"sheet": str(sid), "kind": "rate_arguments",
                            "answer": {"arguments": {str(a["rank"]): self.argument_truth(sid, a["rank"]) for a in args}}})
        if "mark_rationale" in kinds:
            ok = [sid for sid in sids if len(self.evidence_boxes(sid)) >= 2]
            for sid in rng.permutation(ok)[:n_per_kind]:
                out.append({"sheet": str(sid), "kind": "mark_rationale", "answer": {"boxes": self.evidence_boxes(sid)}})
        if "name_feature" in kinds:
            used = {int(a["channel"]) for sid in sids for a in self.sheets[sid]["arguments"][:max_arguments]}
            clear = sorted(c for c, v in self.channel_concept.items() if v["share"] >= 0.5 and c in used)
            for c in rng.permutation(clear)[:n_per_kind]:
                out.append({"channel": int(c), "kind": "name_feature", "answer": {"names": self.channel_names(c)}})
        if "label" in kinds:
            for sid in rng.permutation([s for s in sids if self.sheets[s].get("label")])[:n_per_kind]:
                out.append({"sheet": str(sid), "kind": "label", "answer": {"label": self.sheets[sid]["label"]}})
        return out


# ------------------------------------------------------------------------------ answering

def _typo(word: str, rng) -> str:
    """One keyboard slip: swap two neighbours, drop or double a letter."""
    if len(word) < 3:
        return word
    i = int(rng.integers(1, len(word) - 1))
    op = int(rng.integers(3))
    if op == 0:
        return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]
    if op == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def _flip(answer: str) -> str:
    return {"yes": "no", "no": "yes"}.get(answer, answer)


def _points_in(mask: np.ndarray, n: int, rng, jitter: float = 0.0) -> list[list[float]]:
    H, W = mask.shape
    ys, xs = np.nonzero(mask)
    if not len(xs):
        ys, xs = np.nonzero(np.ones_like(mask, dtype=bool))
    pick = rng.integers(len(xs), size=n)
    pts = []
    for k in pick:
        x = (xs[k] + 0.5) / W + rng.normal(0, jitter)
        y = (ys[k] + 0.5) / H + rng.normal(0, jitter)
        pts.append([round(float(np.clip(x, 0, 1)), 4), round(float(np.clip(y, 0, 1)), 4)])
    return pts


def answer_task(worker: SimulatedWorker, truth: GroundTruth, task: dict) -> tuple[dict, list[dict]]:
    """The worker's answer to one task as seen on its page.

    `task`: `{"kind", "sheet", "ranks", "channel", "classes", "max_marks"}` (parsed from the page).
    Returns `(answer JSON as worker.js posts it, log rows)`; log rows hold `item, answer, truth`
    for the questions with a ground truth (argument ratings, labels, names).
    """
    p, kind = worker.profile, task["kind"]
    # one random stream per (worker, task): answers do not depend on the order tasks arrive in
    key = f'{kind}:{task.get("sheet")}:{task.get("channel")}'
    worker.answered[key] += 1
    rng = np.random.default_rng([worker.seed, zlib.crc32(key.encode()), worker.answered[key]])
    log = []
    if kind == "rate_arguments":
        ratings, relevant = {}, []
        for rank in task["ranks"]:
            t = truth.argument_truth(task["sheet"], rank)
            relevant.append(t == "yes")
            if p.kind == "spammer":
                a = "yes" if p.strategy == "always_yes" else str(rng.choice(["yes", "no", "cant_tell"]))
            elif rng.random() < p.cant_tell:
                a = "cant_tell"
            else:
                a = t if p.kind != "adversarial" else _flip(t)
                if rng.random() < p.noise:
                    a = _flip(a)
            ratings[str(rank)] = a
            log.append({"item": f"arg:{rank}", "answer": a, "truth": t})
        share = float(np.mean(relevant)) if relevant else 0.0
        if p.kind == "spammer":
            match = int(rng.integers(1, 6)) if p.strategy == "random" else 5
        else:
            share = 1.0 - share if p.kind == "adversarial" else share
            match = int(np.clip(round(1 + 4 * share + rng.normal(0, 0.5 + 2 * p.noise)), 1, 5))
        return {"arguments": ratings, "match": match, "comment": ""}, log
    if kind == "mark_rationale":
        n_max = max(1, int(task.get("max_marks") or 5))
        n = int(min(n_max, rng.integers(1, 4)))
        evidence = truth.evidence_mask(task["sheet"], task.get("class"))
        if p.kind == "spammer":
            pts = [[round(float(v), 4) for v in rng.random(2)] for _ in range(n)]
        elif p.kind == "adversarial":
            pts = _points_in(~_dilate(truth.masks[task["sheet"]] > 0, 2), n, rng)
        else:
            pts = []
            for _ in range(n):
                stray = rng.random() < p.noise
                pts += _points_in(~evidence if stray else evidence, 1, rng, jitter=0.01 + 0.05 * p.noise)
        return {"points": pts, "boxes": []}, [{"item": "rationale", "answer": json.dumps(pts), "truth": ""}]
    if kind == "name_feature":
        names = truth.channel_names(task["channel"])
        concept = truth.channel_concept.get(int(task["channel"]), {"share": 0.0})
        if p.kind == "spammer":
            name = str(rng.choice(SPAM_WORDS)) if p.strategy == "random" else "yes"
        elif p.kind == "adversarial" or rng.random() < p.noise:
            others = [q["name"] for q in truth.parts.values() if q["name"] not in names]
            name = str(rng.choice(others)) if others else names[0]
        else:
            name = str(rng.choice(names))
            if rng.random() < p.typo:
                name = _typo(name, rng)
        coherence = int(np.clip(round(1 + 4 * concept["share"] + rng.normal(0, 0.6)), 1, 5))
        if p.kind == "spammer":
            coherence = int(rng.integers(1, 6))
        return {"name": name, "coherence": coherence}, [{"item": "name", "answer": name, "truth": names[0]}]
    if kind == "label":
        s = truth.sheets[task["sheet"]]
        true = s.get("label") or s["prediction"]["class"]
        options = task.get("classes") or truth.classes
        i = truth.classes.index(true)
        if p.kind == "spammer":
            a = str(rng.choice(options)) if p.strategy == "random" else options[0]
        elif p.kind == "adversarial":
            a = truth.classes[int(np.argmax(truth.confusion[i]))]
        elif rng.random() < p.noise:
            a = truth.classes[int(rng.choice(len(truth.classes), p=truth.confusion[i]))]
        else:
            a = true
        return {"label": a}, [{"item": "label", "answer": a, "truth": true}]
    raise SimulationError(f"task kind {kind!r} is not simulated")


# ------------------------------------------------------------------------------ the pages

class _Page(HTMLParser):
    """Collects what a browser needs from a worker page: the task form, inputs, images, links."""

    def __init__(self):
        super().__init__()
        self.form: dict | None = None
        self.forms: list[dict] = []
        self.inputs: list[dict] = []
        self.images: list[str] = []
        self.fieldsets: list[str] = []
        self.links: dict[str, str] = {}
        self.marker: dict | None = None
        self.ids: dict[str, str] = {}
        self._capture = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self.forms.append(a)
            if a.get("id") == "task-form" and not a.get("data-practice"):
                self.form = a
        elif tag == "input" and self.forms and not self.forms[-1].get("data-practice"):
            self.inputs.append(a)
        elif tag == "img" and (self.form is not None or self.marker is not None):
            self.images.append(a.get("src", ""))
        elif tag == "fieldset" and self.form is not None and a.get("id"):
            self.fieldsets.append(a["id"])
        elif tag == "a" and a.get("id"):
            self.links[a["id"]] = a.get("href", "")
        elif tag == "div" and a.get("id") == "marker":
            self.marker = a
        if a.get("id") in ("completion-code",):
            self._capture = a["id"]

    def handle_endtag(self, tag):
        if tag == "form" and self.forms:
            self.forms[-1] = {**self.forms[-1], "_closed": "1"}

    def handle_data(self, data):
        if self._capture:
            self.ids[self._capture] = data.strip()
            self._capture = None


def parse_page(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _media_rel(src: str) -> str:
    """`/media/<batch>/<relpath>` -> relpath."""
    parts = urlparse(src).path.split("/")
    return "/".join(parts[3:]) if len(parts) > 3 and parts[1] == "media" else ""


def task_from_page(page: _Page, truth: GroundTruth) -> dict:
    """What the worker sees on a task page, in the terms `answer_task` uses."""
    form = page.form
    kind = form["data-kind"]
    media = [_media_rel(s) for s in page.images]
    task = {"kind": kind, "sheet": None, "ranks": [], "channel": None, "classes": [], "max_marks": None}
    for rel in media:
        if rel in truth.by_image:
            task["sheet"] = truth.by_image[rel]
            break
    if kind == "rate_arguments":
        task["ranks"] = [int(f[len("q-arg-"):]) for f in page.fieldsets if f.startswith("q-arg-")]
    elif kind == "name_feature":
        for rel in media:
            if rel in truth.strip_channel:
                task["channel"] = truth.strip_channel[rel]
                break
        if task["channel"] is None:
            raise SimulationError(f"name_feature page: no known exemplar strip among {media}")
        return task
    elif kind == "label":
        task["classes"] = [i["value"] for i in page.inputs if i.get("name") == "label"]
    elif kind == "mark_rationale":
        task["max_marks"] = int((page.marker or {}).get("data-max") or 5)
    if task["sheet"] is None:
        raise SimulationError(f"{kind} page: image not one of the sheets ({media})")
    return task


# ------------------------------------------------------------------------------ the run

@dataclass
class WorkerLog:
    """What one simulated worker did: its answers with the truth, visits, completion codes."""

    worker: SimulatedWorker
    answers: list = field(default_factory=list)
    visits: int = 0
    tasks: int = 0
    codes: list = field(default_factory=list)
    retries: int = 0
    seconds: float = 0.0
    kinds: Counter = field(default_factory=Counter)


@dataclass
class CrowdResult:
    """Result of `run_crowd`: one log per worker and the wall time."""

    logs: list
    seconds: float
    batch_id: int

    def answers(self):
        """DataFrame of every simulated answer: worker, kind, sheet, channel, item, answer, truth, correct."""
        import pandas as pd

        rows = [{"worker": log.worker.worker_id, **a} for log in self.logs for a in log.answers]
        df = pd.DataFrame(rows, columns=["worker", "kind", "sheet", "channel", "item", "answer", "truth"])
        df["correct"] = np.where(df["truth"].astype(str) != "", df["answer"].astype(str) == df["truth"].astype(str), np.nan)
        return df

    def roster(self, item_kind: str = "rate_arguments"):
        """One row per simulated worker: `worker, kind, strategy, nominal_accuracy, accuracy`
        (share of its `item_kind` answers equal to the ground truth), `n_answers, n_tasks,
        visits, retries`."""
        import pandas as pd

        ans = self.answers()
        ans = ans[(ans["kind"] == item_kind) & ans["correct"].notna()]
        acc = ans.groupby("worker")["correct"].mean()
        n = ans.groupby("worker").size()
        rows = []
        for log in self.logs:
            w = log.worker
            rows.append({"worker": w.worker_id, "kind": w.profile.kind, "strategy": w.profile.strategy,
                         "nominal_accuracy": round(w.profile.nominal_accuracy, 4),
                         "accuracy": float(acc.get(w.worker_id, np.nan)), "n_answers": int(n.get(w.worker_id, 0)),
                         "n_tasks": log.tasks, "visits": log.visits, "retries": log.retries,
                         "is_spammer": w.profile.kind == "spammer"})
        return pd.DataFrame(rows)


class _Client:
    """One browser-like session: follows redirects, retries lost requests like worker.js."""

    def __init__(self, base_url: str, timeout: float = 30.0, retries: int = 6):
        import requests

        self.base = base_url.rstrip("/") + "/"
        self.http = requests.Session()
        self.http.headers["User-Agent"] = "argus-simulated-worker/1 (simulation)"
        self.timeout, self.retries = timeout, retries
        self.n_retries = 0

    def _send(self, method: str, url: str, **kw):
        import requests

        url = urljoin(self.base, url)
        for attempt in range(self.retries + 1):
            try:
                r = self.http.request(method, url, timeout=self.timeout, **kw)
            except requests.ConnectionError:
                r = None
            if r is not None and r.status_code not in RETRY_STATUS:
                return r
            if attempt < self.retries:
                self.n_retries += 1
                time.sleep(min(4.0, 0.1 * 2 ** attempt))
        status = r.status_code if r is not None else "no answer"
        raise SimulationError(f"{method} {url}: {status} after {self.retries} retries")

    def get(self, url):
        return self._send("GET", url)

    def post_form(self, url, data):
        return self._send("POST", url, data=data)

    def post_json(self, url, body):
        return self._send("POST", url, json=body)


def run_worker(base_url: str, batch_id: int, worker: SimulatedWorker, truth: GroundTruth, *,
               max_visits: int = 1000, on_task=None) -> WorkerLog:
    """Take one simulated worker through visits of the batch until no task is left for it."""
    client = _Client(base_url)
    log = WorkerLog(worker)
    t0 = time.perf_counter()
    for _ in range(max_visits):
        r = client.get(f"/w/{batch_id}?worker={worker.worker_id}")
        if r.status_code != 200:
            raise SimulationError(f"{worker.worker_id}: entry link answered HTTP {r.status_code}: {r.text[:200]}")
        if r.url.rstrip("/").endswith("/consent"):
            page = parse_page(r.text)
            action = next((f.get("action") for f in page.forms if f.get("method", "").lower() == "post"), None)
            if not action:
                raise SimulationError(f"{worker.worker_id}: consent page without a form ({r.url})")
            r = client.post_form(urljoin(r.url, action), {"agree": "yes"})
            if r.status_code != 200 or not r.url.rstrip("/").endswith("/instructions"):
                raise SimulationError(f"{worker.worker_id}: consent not accepted (HTTP {r.status_code}, {r.url})")
        page = parse_page(r.text)
        start = page.links.get("start")
        if not start:
            raise SimulationError(f"{worker.worker_id}: instructions page without a start link ({r.url})")
        log.visits += 1
        r = client.get(urljoin(r.url, start))
        n_visit = 0
        while True:
            if r.status_code != 200:
                raise SimulationError(f"{worker.worker_id}: task page answered HTTP {r.status_code}: {r.text[:200]}")
            page = parse_page(r.text)
            if page.form is None:  # finish page (or "no tasks right now")
                code = page.ids.get("completion-code")
                if code:
                    log.codes.append(code)
                break
            task = task_from_page(page, truth)
            answer, rows = answer_task(worker, truth, task)
            hidden = {i["name"]: i.get("value", "") for i in page.inputs if i.get("type") == "hidden"}
            duration = float(worker.rng.gamma(4.0, worker.profile.seconds / 4.0))
            body = {"assignment_token": hidden["assignment_token"], "client_token": hidden["client_token"],
                    "duration_s": round(duration, 1), "answer": answer}
            resp = client.post_json(urljoin(r.url, page.form["data-submit-url"]), body)
            if resp.status_code not in (200, 201):
                raise SimulationError(f"{worker.worker_id}: submit answered HTTP {resp.status_code}: {resp.text[:300]}")
            for row in rows:
                log.answers.append({"kind": task["kind"], "sheet": task["sheet"], "channel": task["channel"],
                                    **row})
            log.tasks += 1
            log.kinds[task["kind"]] += 1
            n_visit += 1
            if on_task:
                on_task()
            r = client.get(urljoin(r.url, page.form["data-next-url"]))
        if n_visit == 0:
            break
    log.retries = client.n_retries
    log.seconds = time.perf_counter() - t0
    return log


def run_crowd(base_url: str, batch_id: int, crowd: list[SimulatedWorker], truth: GroundTruth, *,
              threads: int | None = None, progress: bool = True, total_tasks: int | None = None) -> CrowdResult:
    """Run the simulated crowd concurrently (one thread per worker, at most `threads` at once)
    against a live server until every worker has run out of tasks.

    Returns a `CrowdResult`; raises `SimulationError` if a worker could not use the server.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    bar = tqdm(total=total_tasks, desc="simulated crowd", unit="task", disable=not progress, leave=False)
    lock = threading.Lock()

    def tick():
        with lock:
            bar.update(1)

    logs = []
    with ThreadPoolExecutor(max_workers=threads or len(crowd), thread_name_prefix="sim-worker") as pool:
        futures = [pool.submit(run_worker, base_url, batch_id, w, truth, on_task=tick) for w in crowd]
        for f in as_completed(futures):
            logs.append(f.result())
    bar.close()
    order = {w.worker_id: i for i, w in enumerate(crowd)}
    logs.sort(key=lambda log: order[log.worker.worker_id])
    return CrowdResult(logs, time.perf_counter() - t0, batch_id)


def new_token() -> str:
    """A random secret for the demo server (API token, admin password)."""
    return secrets.token_urlsafe(18)
