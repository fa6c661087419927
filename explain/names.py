"""Concept names for channels: a names file, crowd names, and NetDissect-style reference names.

`SHEETS/names.json`::

    {"schema_version": "1", "layer": "features",
     "channels": {"37": {"name": "striped tail", "source": "crowd" | "reference",
                          "confidence": 0.8, "iou": 0.31 | null, ...}}}

Crowd names (written later by naming tasks) win over reference names; a channel without an
entry is called `feature <c>` (source `fallback`). Reference names come from datasets with
part masks (the toy world): a channel's top-activation mask (its map upsampled to the image and
thresholded at the channel's dataset-wide activation quantile, as in NetDissect, Bau et al. 2017)
is compared with every part mask over the channel's exemplar images; the best part by IoU names
the channel when the IoU reaches `min_iou`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from training.progress import progress_bar as tqdm

from explain.contributions import LayerContributions

NAMES_SCHEMA_VERSION = "1"
SOURCES = ("crowd", "reference", "fallback")


def fallback_name(channel: int) -> str:
    return f"feature {channel}"


class ConceptNames:
    """Channel -> (name, source, confidence, iou); crowd entries take priority over reference ones."""

    def __init__(self, channels: dict | None = None, layer: str | None = None, path: Path | None = None,
                 checkpoint_hash: str | None = None):
        self.channels: dict[str, dict] = {str(k): dict(v) for k, v in (channels or {}).items()}
        self.layer = layer
        self.path = path
        self.checkpoint_hash = checkpoint_hash  # the checkpoint the reference names were computed for

    @classmethod
    def load(cls, path: str | Path) -> "ConceptNames":
        """Read a names file; a missing file gives an empty table."""
        path = Path(path)
        if not path.exists():
            return cls(path=path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        channels = data.get("channels")
        if not isinstance(channels, dict):
            raise ValueError(f"{path}: field 'channels' must be an object channel -> entry")
        for key, entry in channels.items():
            if not str(key).isdigit():
                raise ValueError(f"{path}: channel key {key!r} is not a channel index")
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
                raise ValueError(f"{path}: channel {key}: 'name' must be a non-empty string")
            if entry.get("source") not in ("crowd", "reference"):
                raise ValueError(f"{path}: channel {key}: 'source' must be 'crowd' or 'reference', got {entry.get('source')!r}")
        return cls(channels, layer=data.get("layer"), path=path, checkpoint_hash=data.get("checkpoint_hash"))

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path or self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"schema_version": NAMES_SCHEMA_VERSION, "layer": self.layer, "checkpoint_hash": self.checkpoint_hash,
               "channels": {k: self.channels[k] for k in sorted(self.channels, key=int)}}
        path.write_text(json.dumps(doc, indent=1) + "\n")
        self.path = path
        return path

    def set(self, channel: int, name: str, source: str, confidence: float | None = None, iou: float | None = None, **extra):
        """Record a name; a reference name never replaces a crowd name."""
        if source not in ("crowd", "reference"):
            raise ValueError(f"source must be 'crowd' or 'reference'; got {source!r}")
        current = self.channels.get(str(channel))
        if current and current.get("source") == "crowd" and source == "reference":
            current.setdefault("reference", {"name": name, "iou": iou})
            return
        self.channels[str(channel)] = {"name": name, "source": source, "confidence": confidence, "iou": iou, **extra}

    def lookup(self, channel: int) -> tuple[str, str, float | None]:
        """`(name, source, iou)` of a channel; `("feature <c>", "fallback", None)` when unnamed."""
        entry = self.channels.get(str(channel))
        if not entry:
            return fallback_name(channel), "fallback", None
        iou = entry.get("iou")
        return entry["name"], entry["source"], (float(iou) if iou is not None else None)


def part_iou(masks: np.ndarray, labels: np.ndarray, part_ids: list[int]) -> dict[int, float]:
    """IoU over a set of images between a binary activation mask and each part's mask.

    masks: `[N, H, W]` bool (the channel's top-activation regions); labels: `[N, H, W]` uint8
    part label maps. Returns part id -> `sum|M & L_p| / sum|M | L_p|` (0 when both are empty).
    """
    out = {}
    for pid in part_ids:
        part = labels == pid
        inter = np.logical_and(masks, part).sum()
        union = np.logical_or(masks, part).sum()
        out[pid] = float(inter / union) if union else 0.0
    return out


def reference_names(model, layer: str | None, dataset, index, load_mask, parts: list[dict], *, batch_size: int = 64,
                    device: torch.device | str = "cpu", min_iou: float = 0.04, progress: bool = True) -> dict[int, dict]:
    """NetDissect-style names: channel -> {name, part_key, iou, confidence} (only IoU >= `min_iou`).

    dataset: the dataset the exemplar `index` was mined on; load_mask(sample_index) -> uint8
    `[H, W]` part label map; parts: `parts.json["parts"]` entries (id, key, name).
    """
    device = torch.device(device)
    explainer = LayerContributions(model, layer or index.data["layer"])
    # Keep only each channel's own map on each of its exemplar images: O(C * N * h * w) memory,
    # not O(images * C * h * w) (matters for 2048-channel layers).
    uses: dict[int, list[tuple[int, int]]] = {}
    for key, ch in index.channels.items():
        for r, e in enumerate(ch["exemplars"]):
            uses.setdefault(e["sample_index"], []).append((int(key), r))
    wanted = sorted(uses)
    if not wanted:
        return {}
    h, w = index.data["grid"]
    top_n = index.data["top_n"]
    channel_maps = torch.zeros(index.data["n_channels"], top_n, h, w)
    for start in tqdm(range(0, len(wanted), batch_size), desc="reference names", unit="batch", disable=not progress, leave=False):
        chunk = wanted[start:start + batch_size]
        x = torch.stack([_image(dataset[s]) for s in chunk]).to(device)
        maps = explainer.layer_maps(x).float().cpu()
        for i, s in enumerate(chunk):
            for c, r in uses[s]:
                channel_maps[c, r] = maps[i, c]
    size = tuple(index.data["image_size"])
    masks_by_sample = {s: np.asarray(load_mask(s)) for s in wanted}
    if next(iter(masks_by_sample.values())).shape != size:
        masks_by_sample = {s: np.array(_resize_nearest(m, size)) for s, m in masks_by_sample.items()}
    part_ids = [int(p["id"]) for p in parts]
    by_id = {int(p["id"]): p for p in parts}
    result = {}
    for key, ch in index.channels.items():
        c = int(key)
        n = len(ch["exemplars"])
        if n == 0:
            continue
        up = F.interpolate(channel_maps[c, :n, None], size=size, mode="bilinear", align_corners=False)[:, 0].numpy()
        mask = up > ch["threshold"]
        labels = np.stack([masks_by_sample[e["sample_index"]] for e in ch["exemplars"]])
        ious = part_iou(mask, labels, part_ids)
        best = max(ious, key=ious.get)
        if ious[best] >= min_iou:
            result[c] = {"name": by_id[best]["name"], "part_key": by_id[best]["key"], "iou": round(ious[best], 4),
                         "confidence": round(ious[best], 4)}
    return result


def _image(item) -> torch.Tensor:
    return item if isinstance(item, torch.Tensor) else item[0]


def _resize_nearest(mask: np.ndarray, size: tuple[int, int]):
    from PIL import Image

    return Image.fromarray(mask).resize((size[1], size[0]), Image.Resampling.NEAREST)
