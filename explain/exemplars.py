"""Streaming exemplar index: the training patches where each channel fires most.

`mine_exemplars` streams a dataset once and keeps, per channel, the top-N images by the
channel's spatial peak (a running `topk` merge on the device: memory `O(C * N)` whatever the
dataset size; one entry per image and channel, so exemplars are de-duplicated by image). It then
crops the receptive field of each peak (computed from the architecture), writes one strip PNG per
channel plus the crops, and an `index.json` keyed by the checkpoint hash, so a second call for
the same checkpoint is skipped.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from training.progress import progress_bar as tqdm

from explain.contributions import LayerContributions
from explain.receptive_fields import ReceptiveField, receptive_field
from training.evaluate import resolve_device

INDEX_SCHEMA_VERSION = "1"
TILE_PX = 64  # exemplar crops are resized to this side in strips
GAP_PX = 2


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex, first 16 chars) of a file, e.g. a checkpoint's `model.pt`."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def to_uint8_image(image: torch.Tensor, mean=None, std=None) -> np.ndarray:
    """A normalised `[3, H, W]` tensor back to an `[H, W, 3]` uint8 RGB array."""
    x = image.detach().float().cpu()
    if mean is not None and std is not None:
        x = x * torch.as_tensor(std, dtype=torch.float32)[:, None, None] + torch.as_tensor(mean, dtype=torch.float32)[:, None, None]
    x = x.clamp(0, 1).mul(255).round().to(torch.uint8)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.permute(1, 2, 0).numpy()


def _split_batch(batch):
    """Images from a batch that is a tensor, (images, labels) or (images, labels, index)."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise ValueError(f"dataset items must be an image tensor or a tuple starting with one; got {type(batch).__name__}")


@dataclass
class ExemplarIndex:
    """The mined index (the JSON document) and where it lives."""

    data: dict
    path: Path | None = None
    reused: bool = False

    @property
    def channels(self) -> dict:
        return self.data["channels"]

    def strip(self, channel: int) -> str:
        """Strip PNG path (relative to the sheets root) of `channel`."""
        return self.channels[str(channel)]["strip"]

    def crops(self, channel: int) -> list[str]:
        return [e["crop"] for e in self.channels[str(channel)]["exemplars"] if e.get("crop")]

    def top_samples(self, channel: int) -> list[int]:
        """Dataset positions of the channel's exemplars, strongest first."""
        return [e["sample_index"] for e in self.channels[str(channel)]["exemplars"]]

    @classmethod
    def load(cls, path: str | Path) -> "ExemplarIndex":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read exemplar index ({exc})") from exc
        if data.get("schema_version") != INDEX_SCHEMA_VERSION or "channels" not in data:
            raise ValueError(f"{path}: not an exemplar index of schema version {INDEX_SCHEMA_VERSION}")
        return cls(data=data, path=path, reused=True)


def stream_top_activations(model: nn.Module, layer: str | None, loader, top_n: int, device: torch.device,
                           amp: bool = False, quantile_samples: int = 4096, progress: bool = True, seed: int = 0):
    """One pass over `loader`: per channel the top-`top_n` images by spatial peak activation.

    Returns a dict of CPU tensors: `values [C, N]`, `indices [C, N]` (dataset positions, -1 when
    fewer images), `locations [C, N]` (flat `row * w + col` of the peak), `sample [C, S]`
    (random activation values for quantiles), `max [C]`, `mean [C]`, plus `grid (h, w)`,
    `image_size (H, W)`, `n_images` and the resolved `layer` name.
    """
    explainer = LayerContributions(model, layer)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    top_vals = top_idx = top_loc = None
    samples, total, count = [], None, 0
    grid = image_size = None
    n_batches = max(1, len(loader)) if hasattr(loader, "__len__") else 100
    per_batch = max(1, math.ceil(quantile_samples / n_batches))
    autocast = torch.autocast(device_type=device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16,
                              enabled=amp)
    for batch in tqdm(loader, desc="mining exemplars", unit="batch", disable=not progress, leave=False):
        x = _split_batch(batch).to(device, non_blocking=True)
        with autocast:
            maps = explainer.layer_maps(x)
        maps = maps.float()
        b, c, h, w = maps.shape
        grid, image_size = (h, w), tuple(x.shape[-2:])
        flat = maps.flatten(2)  # [B, C, hw]
        peak, loc = flat.max(dim=2)  # [B, C]: one entry per image -> de-duplicated by image
        ids = torch.arange(count, count + b, device=device).unsqueeze(0).expand(c, b)
        if top_vals is None:
            top_vals = torch.full((c, 0), float("-inf"), device=device)
            top_idx = torch.zeros((c, 0), dtype=torch.long, device=device)
            top_loc = torch.zeros((c, 0), dtype=torch.long, device=device)
            total = torch.zeros(c, dtype=torch.float64, device=device)
        vals = torch.cat([top_vals, peak.t()], dim=1)
        k = min(top_n, vals.shape[1])
        top_vals, order = torch.topk(vals, k, dim=1)
        top_idx = torch.cat([top_idx, ids], dim=1).gather(1, order)
        top_loc = torch.cat([top_loc, loc.t()], dim=1).gather(1, order)
        total += flat.sum(dim=(0, 2), dtype=torch.float64)
        pick = torch.randint(0, b * h * w, (per_batch,), generator=gen).to(device)
        samples.append(flat.permute(1, 0, 2).reshape(c, b * h * w)[:, pick])
        count += b
    if top_vals is None:
        raise ValueError("the dataset is empty: nothing to mine")
    sample = torch.cat(samples, dim=1)
    pad = top_n - top_vals.shape[1]
    if pad > 0:
        top_vals = torch.cat([top_vals, torch.full((top_vals.shape[0], pad), float("nan"), device=device)], 1)
        top_idx = torch.cat([top_idx, torch.full((top_idx.shape[0], pad), -1, device=device)], 1)
        top_loc = torch.cat([top_loc, torch.zeros((top_loc.shape[0], pad), dtype=torch.long, device=device)], 1)
    return {
        "values": top_vals.cpu(), "indices": top_idx.cpu(), "locations": top_loc.cpu(), "sample": sample.cpu(),
        "max": top_vals[:, 0].cpu(), "mean": (total / (count * grid[0] * grid[1])).float().cpu(),
        "grid": grid, "image_size": image_size, "n_images": count, "layer": explainer.layer_name,
    }


def _tile(crop: np.ndarray, px: int = TILE_PX) -> Image.Image:
    return Image.fromarray(crop).resize((px, px), Image.Resampling.BILINEAR)


def make_strip(tiles: list[Image.Image], n: int, px: int = TILE_PX) -> Image.Image:
    """Tiles side by side (`n` slots, empty slots grey) with a small gap."""
    strip = Image.new("RGB", (n * px + (n - 1) * GAP_PX, px), (235, 235, 235))
    for i, tile in enumerate(tiles[:n]):
        strip.paste(tile, (i * (px + GAP_PX), 0))
    return strip


def mine_exemplars(model: nn.Module, layer: str | None, dataset, top_n: int = 9, *, out_dir: str | Path | None = None,
                   checkpoint_hash: str | None = None, batch_size: int = 128, device: str | torch.device = "auto",
                   amp: bool | None = None, num_workers: int = 0, mean=None, std=None,
                   sample_ids: list[str] | None = None, rf: ReceptiveField | None = None,
                   quantile: float = 0.995, save_crops: bool = True, progress: bool = True, loader=None) -> ExemplarIndex:
    """Mine the top-`top_n` exemplars of every channel of `layer` over `dataset` (one pass).

    dataset: a torch Dataset yielding `image [3, H, W]` or tuples starting with it, in the
        model's normalisation (`mean`/`std` undo it for the saved crops).
    out_dir: where strips, crops and `index.json` go (e.g. `SHEETS/exemplars`); paths in the
        index are relative to its parent. `None` keeps everything in memory.
    checkpoint_hash: key of the index (e.g. `file_hash(run/"model.pt")`): when `out_dir` holds
        an index with the same key, layer and `top_n`, it is returned without mining.
    amp: autocast on CUDA (default: on when the device is cuda).
    loader: optional iterable of batches over `dataset` in order (e.g. pre-decoded, normalised
        per batch) used for the streaming pass instead of a DataLoader over `dataset`.
    Returns an `ExemplarIndex`; per channel: `max`, `mean`, `threshold` (the `quantile` of
    the channel's activations over the dataset), `strip` and `exemplars` (rank, sample_index,
    sample_id, value, row, col, box `[x0, y0, x1, y1]` in px, crop).
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1; got {top_n}")
    dev = resolve_device(device)
    out = Path(out_dir) if out_dir is not None else None
    index_path = out / "index.json" if out is not None else None
    layer = layer or getattr(model, "explained_layer", None)
    if index_path is not None and index_path.exists() and checkpoint_hash:
        try:
            existing = ExemplarIndex.load(index_path)
        except ValueError:
            existing = None
        if existing is not None and existing.data.get("checkpoint_hash") == checkpoint_hash \
                and existing.data.get("top_n") == top_n and (layer is None or existing.data.get("layer") == layer):
            return existing
    model = model.to(dev).eval()
    if amp is None:
        amp = dev.type == "cuda"
    if loader is None:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                             pin_memory=dev.type == "cuda")
    stats = stream_top_activations(model, layer, loader, top_n, dev, amp=amp, progress=progress)
    layer = stats["layer"]
    rf = rf or receptive_field(model, layer)
    thresholds = torch.quantile(stats["sample"].float(), quantile, dim=1)
    h, w = stats["grid"]
    channels = {}
    image_cache: dict[int, np.ndarray] = {}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    rel = (lambda p: str(p.relative_to(out.parent))) if out is not None else (lambda p: None)
    n_channels = stats["values"].shape[0]
    for c in tqdm(range(n_channels), desc="exemplar strips", unit="ch", disable=not progress, leave=False):
        entries, tiles = [], []
        for r in range(top_n):
            idx = int(stats["indices"][c, r])
            if idx < 0:
                break
            loc = int(stats["locations"][c, r])
            row, col = divmod(loc, w)
            box = rf.box(row, col, stats["image_size"])
            entry = {"rank": r + 1, "sample_index": idx, "sample_id": sample_ids[idx] if sample_ids else str(idx),
                     "value": float(stats["values"][c, r]), "row": row, "col": col, "box": list(box), "crop": None}
            if out is not None:
                if idx not in image_cache:
                    image_cache[idx] = to_uint8_image(_split_batch(_as_batch(dataset[idx]))[0], mean, std)
                x0, y0, x1, y1 = box
                tile = _tile(image_cache[idx][y0:y1, x0:x1])
                tiles.append(tile)
                if save_crops:
                    crop_path = out / f"channel_{c}_{r + 1}.png"
                    tile.save(crop_path, optimize=False, compress_level=1)
                    entry["crop"] = rel(crop_path)
            entries.append(entry)
        strip_path = None
        if out is not None:
            strip_path = out / f"channel_{c}.png"
            make_strip(tiles, top_n).save(strip_path, compress_level=1)
        channels[str(c)] = {"max": float(stats["max"][c]), "mean": float(stats["mean"][c]),
                            "threshold": float(thresholds[c]), "strip": rel(strip_path) if strip_path else None,
                            "exemplars": entries}
    data = {
        "schema_version": INDEX_SCHEMA_VERSION, "checkpoint_hash": checkpoint_hash, "layer": layer, "top_n": top_n,
        "n_images": stats["n_images"], "n_channels": n_channels, "grid": list(stats["grid"]),
        "image_size": list(stats["image_size"]),
        "receptive_field": {"size": rf.size, "jump": rf.jump, "start": rf.start},
        "quantile": quantile, "channels": channels,
    }
    if index_path is not None:
        index_path.write_text(json.dumps(data, indent=1))
    return ExemplarIndex(data=data, path=index_path, reused=False)


def _as_batch(item):
    """A single dataset item as a batch of one (image tensor first)."""
    if isinstance(item, torch.Tensor):
        return item.unsqueeze(0)
    return (item[0].unsqueeze(0),)
