"""`run_explain`: checkpoint + dataset folder -> a sheets folder (what `argus explain` runs).

Steps: load the checkpoint and dataset; mine (or reuse) the exemplar index on the training split;
load crowd names and add NetDissect reference names where part masks exist; explain the chosen
split in batches (one forward pass each); fix the heatmap colour scale for the run; check the
arguments against part masks (pointing game, relevance mass); render sheets on all cores; write
`index.html` and `summary.json`.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from training.progress import progress_bar as tqdm

from explain.contributions import LayerContributions
from explain.exemplars import file_hash, mine_exemplars
from explain.names import ConceptNames, reference_names
from explain.render import render_sheets, write_index
from explain.sheet_files import validate_sheet, write_summary
from explain.sheets import analyse_batch, build_sheet, ground_truth
from training.evaluate import resolve_device

HEATMAP_QUANTILE = 99.5  # percentile of the run's argument activations drawn at full colour


def _input_size(meta: dict) -> int:
    size = meta.get("input_size", 64)
    if isinstance(size, (list, tuple)):
        if len(set(size[-2:])) != 1:
            raise ValueError(f"model.json: input_size {size} must be square")
        size = size[-1]
    return int(size)


def evenly_spaced(n_total: int, limit: int | None) -> list[int]:
    """`limit` row positions spread evenly over `n_total` rows (all rows when limit is None)."""
    if limit is None or limit >= n_total:
        return list(range(n_total))
    if limit <= 0:
        raise ValueError(f"--limit must be positive, got {limit}")
    return sorted(set(np.linspace(0, n_total - 1, limit).round().astype(int).tolist()))


CACHE_LIMIT_BYTES = 2 << 30  # decode a split into memory once when it fits in this much


class SplitBatches:
    """Batches `(images [B,3,S,S] normalised, labels [B], rows [B])` of one split, in row order.

    Small splits are decoded once into memory (the foundation's uint8 cache) and normalised per
    batch; large ones stream from disk through a DataLoader with worker processes."""

    def __init__(self, dataset, rows: list[int], batch_size: int, workers: int = 0):
        self.dataset, self.rows, self.batch_size = dataset, rows, batch_size
        self.cached = getattr(dataset, "_images", None) is not None
        self.workers = workers

    def __len__(self):
        return (len(self.rows) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        from training.datasets import normalize_uint8

        if self.cached:
            images, targets = self.dataset._images, self.dataset.targets
            for start in range(0, len(self.rows), self.batch_size):
                rows = torch.as_tensor(self.rows[start:start + self.batch_size])
                yield normalize_uint8(images[rows], self.dataset.mean, self.dataset.std), targets[rows], rows
        else:
            subset = torch.utils.data.Subset(self.dataset, self.rows)
            yield from torch.utils.data.DataLoader(subset, batch_size=self.batch_size, shuffle=False, num_workers=self.workers)


def open_split(info, split: str, size: int, mean, std):
    """`ImageDataset` for a split, decoded into memory when it is small enough."""
    from training.datasets import ImageDataset

    n = int((info.table["split"] == split).sum())
    cache = n * 3 * size * size <= CACHE_LIMIT_BYTES
    return ImageDataset(info, split, image_size=size, mean=mean, std=std, cache=cache)


def state_hash(model: torch.nn.Module) -> str:
    """SHA-256 (first 16 hex chars) of a model's state dict: keys the exemplar index when no
    checkpoint file is at hand."""
    import hashlib

    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _stats(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def run_explain(model_dir, data_dir, out, *, split: str = "test", limit: int | None = None, top_m: int = 3,
                device: str = "auto", workers: int | None = None, batch_size: int = 64, exemplar_split: str = "train",
                top_n: int = 9, pointing_tolerance: int | None = None, layer: str | None = None, progress: bool = True) -> dict:
    """Write a sheets folder for `split` of `data_dir` explained by the checkpoint in `model_dir`.

    Returns the summary dict (also written to `OUT/summary.json`): counts, accuracy, faithfulness
    means, ground-truth figures by domain (pointing game, relevance mass) and timings.
    pointing_tolerance: pixels of slack for the pointing game; `None` = the original protocol's
    15 px at 224 px scaled to the input size (4 px at 64 px). The strict (0 px) figure is always
    reported as well.
    """
    from training.checkpoint import load_checkpoint

    model_dir = Path(model_dir)
    dev = resolve_device(device)
    model, meta = load_checkpoint(model_dir, device=str(dev))
    return explain_dataset(model, meta, data_dir, out, name=model_dir.name, checkpoint_hash=file_hash(model_dir / "model.pt"),
                           split=split, limit=limit, top_m=top_m, device=dev, workers=workers, batch_size=batch_size,
                           exemplar_split=exemplar_split, top_n=top_n, pointing_tolerance=pointing_tolerance,
                           layer=layer, progress=progress)


def explain_dataset(model, meta: dict, data_dir, out, *, name: str = "model", checkpoint_hash: str | None = None,
                    split: str = "test", limit: int | None = None, top_m: int = 3, device="auto", workers: int | None = None,
                    batch_size: int = 64, exemplar_split: str = "train", top_n: int = 9, pointing_tolerance: int | None = None,
                    layer: str | None = None, progress: bool = True) -> dict:
    """`run_explain` for a model already in memory; `meta` holds the checkpoint's model.json fields
    (`classes, input_size, normalization, explained_layer, arch`)."""
    from training.datasets import has_part_masks, load_dataset, read_part_mask, read_parts

    t_start = time.perf_counter()
    data_dir, out = Path(data_dir), Path(out)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    info = load_dataset(data_dir)
    classes = list(meta.get("classes") or info.classes)
    unknown = sorted(set(info.table["label"].astype(str)) - set(classes))
    if unknown:
        raise ValueError(f"{data_dir}/samples.csv: labels {unknown[:5]} are not classes of model {name!r} ({classes})")
    size = _input_size(meta)
    norm = meta.get("normalization") or {}
    mean, std = tuple(norm.get("mean", (0.5, 0.5, 0.5))), tuple(norm.get("std", (0.25, 0.25, 0.25)))
    layer = layer or meta.get("explained_layer") or getattr(model, "explained_layer", None)
    if pointing_tolerance is None:
        pointing_tolerance = pointing_tolerance_px(size)
    ckpt_hash = checkpoint_hash or state_hash(model)
    out.mkdir(parents=True, exist_ok=True)
    has_parts = has_part_masks(data_dir)
    parts_doc = read_parts(data_dir) if has_parts else None

    # 1. Exemplars (once per checkpoint) and names.
    t0 = time.perf_counter()
    exemplars = None
    ex_table = info.split_table(exemplar_split)
    if len(ex_table):
        ex_data = open_split(info, exemplar_split, size, mean, std)
        ex_batches = SplitBatches(ex_data, list(range(len(ex_data))), batch_size, workers=min(8, os.cpu_count() or 1))
        exemplars = mine_exemplars(model, layer, ex_data, top_n=top_n, out_dir=out / "exemplars", checkpoint_hash=ckpt_hash,
                                   batch_size=batch_size, device=dev, mean=mean, std=std, loader=ex_batches,
                                   sample_ids=ex_table["sample_id"].astype(str).tolist(), progress=progress)
    mining_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    names = ConceptNames.load(out / "names.json")
    explainer = LayerContributions(model, layer)
    if names.checkpoint_hash not in (None, ckpt_hash):
        # Another checkpoint's reference names do not apply; crowd names are kept, with a warning.
        crowd = {k: v for k, v in names.channels.items() if v.get("source") == "crowd"}
        if crowd:
            warnings.warn(f"{out / 'names.json'}: {len(crowd)} crowd names were given for checkpoint "
                          f"{names.checkpoint_hash}, now explaining {ckpt_hash}; check they still fit", stacklevel=2)
        names.channels = crowd
    if has_parts and exemplars is not None and (not exemplars.reused or names.checkpoint_hash != ckpt_hash):
        ids = ex_table["sample_id"].astype(str).tolist()
        refs = reference_names(model, layer, ex_data, exemplars, lambda i: read_part_mask(data_dir, ids[i]),
                               parts_doc["parts"], device=dev, progress=progress)
        for c, ref in refs.items():
            names.set(c, ref["name"], "reference", confidence=ref["confidence"], iou=ref["iou"], part_key=ref["part_key"])
    names.layer, names.checkpoint_hash = layer, ckpt_hash
    names.save(out / "names.json")
    names_s = time.perf_counter() - t0

    # 2. Explain the split (one forward pass per batch).
    t0 = time.perf_counter()
    table = info.split_table(split)
    rows = evenly_spaced(len(table), limit)
    if not rows:
        raise ValueError(f"{data_dir}: split {split!r} is empty")
    data = open_split(info, split, size, mean, std)
    loader = SplitBatches(data, rows, batch_size, workers=min(8, os.cpu_count() or 1))
    records, images = [], []
    for x, _y, idx in tqdm(loader, desc="explaining", unit="batch", disable=not progress, leave=False):
        x = x.to(dev)
        e = explainer.explain(x, contrast="runner_up")
        batch_records = analyse_batch(explainer, x, e, top_m)
        for r, i in zip(batch_records, idx.tolist()):
            r["row"] = i
            records.append(r)
            images.append(data.uint8(i).permute(1, 2, 0).numpy())
    explain_s = time.perf_counter() - t0
    all_maps = np.concatenate([r["maps"].ravel() for r in records])
    heatmap_scale = float(np.percentile(all_maps, HEATMAP_QUANTILE)) if all_maps.size else 1.0
    heatmap_scale = heatmap_scale if heatmap_scale > 0 else max(float(all_maps.max(initial=0.0)), 1.0)

    # 3. Sheets (+ ground truth where masks exist).
    model_info = {"name": name, "arch": str(meta.get("arch", type(model).__name__)), "layer": explainer.layer_name,
                  "decomposition": explainer.decomposition}
    part_names = {int(p["id"]): p["name"] for p in parts_doc["parts"]} if parts_doc else {}
    disc = {c["name"]: [int(i) for i in c["discriminative_parts"]] for c in parts_doc["classes"]} if parts_doc else {}
    sheets, strict_hits = [], {}
    for r in records:
        row = table.iloc[r["row"]]
        sid = str(row["sample_id"])
        domain = row.get("domain")
        domain = str(domain) if isinstance(domain, str) and domain.strip() else None
        pred = classes[r["target"]]
        gt = gt_parts = None
        if has_parts and pred in disc:
            part_map = read_part_mask(data_dir, sid)
            gt = ground_truth(r, part_map, disc[pred], tolerance_px=pointing_tolerance)
            strict_hits[sid] = ground_truth(r, part_map, disc[pred], tolerance_px=0)["pointing_hit"]
            gt_parts = [part_names[i] for i in disc[pred]]
        sheet = build_sheet(r, sample_id=sid, classes=classes, label=str(row["label"]), domain=domain, split=split,
                            model_info=model_info, names=names, exemplars=exemplars, heatmap_scale=heatmap_scale,
                            image_path=f"images/{sid}.png",
                            heatmap_paths=[f"heatmaps/{sid}_{k}.png" for k in range(1, len(r["channels"]) + 1)],
                            gt=gt, gt_parts=gt_parts)
        sheets.append(sheet)
    validate_sheet(sheets[0])
    t0 = time.perf_counter()
    jobs = ((s, img, r["maps"]) for s, img, r in zip(sheets, images, records))
    render_sheets(jobs, out, heatmap_scale, workers=workers, total=len(sheets), progress=progress)
    render_s = time.perf_counter() - t0

    summary = summarise(sheets, info, split, model_info, heatmap_scale, strict_hits)
    summary["exemplars"] = None if exemplars is None else {
        "index": "exemplars/index.json", "reused": exemplars.reused, "split": exemplar_split, "top_n": top_n,
        "n_images": exemplars.data["n_images"], "receptive_field": exemplars.data["receptive_field"]}
    summary["names"] = {src: sum(1 for c in range(len(exemplars.channels) if exemplars else 0) if names.lookup(c)[1] == src)
                        for src in ("crowd", "reference", "fallback")}
    summary["timing_s"] = {"mining": round(mining_s, 3), "names": round(names_s, 3), "explain": round(explain_s, 3), "render": round(render_s, 3),
                           "total": round(time.perf_counter() - t_start, 3),
                           "sheets_per_s_render": round(len(sheets) / max(render_s, 1e-9), 2)}
    summary["checkpoint_hash"] = ckpt_hash
    summary["dataset"] = str(data_dir.resolve())
    summary["pointing_tolerance_px"] = pointing_tolerance
    write_summary(out, summary, classes=classes)
    write_index(out, sheets, summary, classes)
    return summary


def pointing_tolerance_px(image_size: int) -> int:
    """The pointing game's slack: 15 px at 224 px (Zhang et al. 2018) scaled to `image_size`."""
    return int(round(15 * image_size / 224))


def summarise(sheets: list[dict], info, split: str, model_info: dict, heatmap_scale: float,
              strict_hits: dict[str, bool] | None = None) -> dict:
    """Run-level figures from sheet documents: accuracy, faithfulness, ground truth by domain.

    strict_hits: sample_id -> pointing hit with no tolerance (reported as `pointing_game_strict`)."""
    strict_hits = strict_hits or {}
    correct = [s["correct"] for s in sheets if s["correct"] is not None]
    by_domain = defaultdict(list)
    for s in sheets:
        by_domain[s["domain"] or "unknown"].append(s)
    train = info.split_table("train")
    majority = None
    if "domain" in train and train["domain"].notna().any():
        counts = train["domain"].dropna().astype(str)
        counts = counts[counts.str.strip() != ""].value_counts()
        majority = str(counts.index[0]) if len(counts) else None

    def gt_block(group):
        g = [s["ground_truth"] for s in group if s["ground_truth"] is not None]
        if not g:
            return None
        strict = [float(strict_hits[s["sample_id"]]) for s in group if s["sample_id"] in strict_hits]
        return {"n": len(g), "pointing_game": _stats([float(x["pointing_hit"]) for x in g]),
                "pointing_game_strict": _stats(strict), "relevance_mass": _stats([x["relevance_mass"] for x in g])}

    gt = None
    if any(s["ground_truth"] is not None for s in sheets):
        gt = {"overall": gt_block(sheets), "by_domain": {d: gt_block(g) for d, g in sorted(by_domain.items()) if gt_block(g)},
              "majority_domain": majority,
              "majority_domain_pointing_game": (gt_block(by_domain[majority]) or {}).get("pointing_game") if majority in by_domain else None,
              "correct_only": gt_block([s for s in sheets if s["correct"]])}
    faith = [s["faithfulness"] for s in sheets]
    return {
        "schema_version": "1", "model": model_info, "split": split, "n_sheets": len(sheets),
        "accuracy": _stats([float(c) for c in correct]),
        "per_domain": {d: {"n": len(g), "accuracy": _stats([float(s["correct"]) for s in g if s["correct"] is not None])}
                       for d, g in sorted(by_domain.items())},
        "heatmap_scale": heatmap_scale,
        "faithfulness": {
            "mean_margin_left_fraction": _stats([f["margin_after_removal"] / s["margin"] for f, s in zip(faith, sheets) if s["margin"] > 1e-9]),
            "flip_rate": _stats([float(f["prediction_flips"]) for f in faith]),
            "mean_deletion_auc": _stats([f["deletion_auc"] for f in faith]),
        },
        "ground_truth": gt,
        "sheets": sorted(s["sample_id"] for s in sheets),
    }
