"""Ground truth of a simulated crowd: what a careful person would answer on every task of a
toy-world sheets folder, from the dataset's part masks (`GroundTruth`).

- an argument is *relevant* when the hot part of its heatmap (`heatmap_grid` upsampled to the
  mask, values >= half its maximum) puts at least `overlap_threshold` of its mass on a
  discriminative part of the predicted class (parts dilated by `tolerance_px`);
- rationale marks land on the discriminative parts of the sheet's class;
- a feature (channel) is named after the part its heatmaps overlap most over all sheets (or the
  background kind when most mass is off the creature), with synonyms;
- labels follow a class-confusion model: classes that share discriminative parts are confused
  more often.

    truth = GroundTruth("runs/demo/sheets", "runs/demo/data")
    truth.argument_truth("test-000001", rank=1)   # "yes" | "no"
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from analysis.model_human import upsample

# Names people give the background kinds of the toy world (the shortcut a model may learn).
BACKGROUND_SYNONYMS = {
    "grass": ["grass", "green grass", "lawn"],
    "sand": ["sand", "desert", "beach"],
    "sky": ["sky", "blue sky", "clouds"],
    "stone": ["stone", "rock", "pebbles"],
    "water": ["water", "waves", "sea"],
    "snow": ["snow", "white snow", "ice"],
}


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
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
            target = dilate(np.isin(mask, self.disc.get(pred, [])), self.tolerance_px)
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
