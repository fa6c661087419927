"""Argument-sheet data: the top-M arguments, faithfulness, ground truth, sentence, sheet JSON.

Computation only (no files): `analyse_batch` turns an `Explanation` into per-image records,
`build_sheet` turns one record into the sheet document of docs/contracts.md
(schema, reading and writing: `explain.sheet_files`). Rendering lives in `explain.render`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from explain.contributions import Explanation, LayerContributions
from explain.sheet_files import SCHEMA_VERSION

DELETION_POINTS = 64  # deletion curve sampled at most at this many channel counts (+ the ends)


def region_name(x: float, y: float) -> str:
    """Words for a normalised image position: thirds of the image, e.g. `"lower left"`, `"center"`."""
    col = "left" if x < 1 / 3 else ("right" if x > 2 / 3 else "")
    row = "upper" if y < 1 / 3 else ("lower" if y > 2 / 3 else "")
    if row and col:
        return f"{row} {col}"
    if row:
        return {"upper": "top", "lower": "bottom"}[row]
    return col or "center"


def spatial_relevance(e: Explanation) -> torch.Tensor:
    """Class-discriminative relevance `[B, h, w]` (logit units): each channel's contrast
    contribution spread over space in proportion to its activation, summed over channels.

    For GAP-linear heads this is `sum_c (W[k,c] - W[j,c]) * A_c(x) / (h*w)` and sums to the
    explained part of the margin (a CAM for "k rather than j")."""
    maps = e.maps.float().clamp_min(0)
    total = maps.sum(dim=(2, 3), keepdim=True)
    share = torch.where(total > 0, maps / total.clamp_min(1e-12), torch.zeros_like(maps))
    return (share * e.contrast_contributions.float()[:, :, None, None]).sum(dim=1)


def peak_locations(maps: torch.Tensor, size: tuple[int, int], method: str = "centroid") -> torch.Tensor:
    """Peak of each map in normalised image coordinates: `maps [B, M, h, w]` -> `[B, M, 2]` (x, y).

    `"centroid"`: the activation-weighted centroid of the 3x3 cells around the strongest cell
    (sub-cell precision: a feature between two cells is placed between them);
    `"upsampled"`: the argmax of the map bilinearly upsampled to the image (pixel centre).
    """
    b, m, h, w = maps.shape
    if method == "upsampled":
        up = F.interpolate(maps.float(), size=size, mode="bilinear", align_corners=False)
        flat = up.flatten(2).argmax(dim=2)
        py, px = flat // size[1], flat % size[1]
        return torch.stack([(px.float() + 0.5) / size[1], (py.float() + 0.5) / size[0]], dim=2)
    if method != "centroid":
        raise ValueError(f"peak method must be 'centroid' or 'upsampled'; got {method!r}")
    flat = maps.float().reshape(b * m, 1, h, w)
    idx = flat.flatten(1).argmax(dim=1)  # [BM]
    r, c = idx // w, idx % w
    patches = F.unfold(flat, kernel_size=3, padding=1)  # [BM, 9, h*w]
    weights = patches.gather(2, idx.view(-1, 1, 1).expand(-1, 9, 1))[:, :, 0].clamp_min(0)  # [BM, 9]
    dy = torch.tensor([-1, -1, -1, 0, 0, 0, 1, 1, 1], dtype=weights.dtype, device=weights.device)
    dx = torch.tensor([-1, 0, 1, -1, 0, 1, -1, 0, 1], dtype=weights.dtype, device=weights.device)
    total = weights.sum(dim=1).clamp_min(1e-12)
    has = weights.sum(dim=1) > 0
    oy = torch.where(has, (weights * dy).sum(1) / total, torch.zeros_like(total))
    ox = torch.where(has, (weights * dx).sum(1) / total, torch.zeros_like(total))
    x = ((c.float() + ox + 0.5) / w).clamp(0, 1)
    y = ((r.float() + oy + 0.5) / h).clamp(0, 1)
    return torch.stack([x, y], dim=1).view(b, m, 2)


def _class_prob(logits: torch.Tensor, target: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Probability of `target` [...] from logits [..., K]."""
    t = target.view(*target.shape, *([1] * (logits.dim() - 1 - target.dim())), 1).expand(*logits.shape[:-1], 1)
    if multilabel:
        return torch.sigmoid(logits.gather(-1, t))[..., 0]
    return torch.softmax(logits.float(), dim=-1).gather(-1, t)[..., 0]


def faithfulness(explainer: LayerContributions, images: torch.Tensor, e: Explanation, top_m: int) -> dict[str, torch.Tensor]:
    """Faithfulness of the top-`top_m` arguments of each image.

    Returns `margin_after_removal [B]` (logit units: margin once the top-M channels are zeroed),
    `prediction_flips [B]` (bool: the explained class is no longer the top class, or below
    logit 0 for multi-label), and `deletion_auc [B]` (area under the explained class's
    probability as channels are zeroed in argument order, x = fraction of channels in [0, 1];
    lower = the ranking finds what matters). Exact heads: computed from the decomposition (zeroing a
    channel removes exactly its contribution); other heads: real intervention forward passes.
    """
    b, c = e.contrast_contributions.shape
    m = min(top_m, c)
    order = e.argument_order()  # [B, C], the sheets' argument order
    steps = torch.unique(torch.cat([
        torch.linspace(0, c, min(c + 1, DELETION_POINTS + 1)).round().long(), torch.tensor([0, m, c])]))
    steps = steps.to(e.logits.device)
    rows = torch.arange(b, device=e.logits.device)
    if e.exact:
        curve_logits = e.logits_after_removal(order, steps)  # [B, S, K], one product on pooled features
        after = curve_logits[:, int((steps == m).nonzero()[0, 0])]
    else:
        curve = []
        for s in steps.tolist():
            keep = torch.ones(b, c, device=images.device)
            if s:
                keep.scatter_(1, order[:, :s].to(images.device), 0.0)
            curve.append(explainer.logits_with_channels_removed(images, keep))
        curve_logits = torch.stack(curve, dim=1)
        after = curve_logits[:, int((steps == m).nonzero()[0, 0])]
    if e.contrast is None:
        margin_after = after[rows, e.target]
    else:
        margin_after = after[rows, e.target] - after[rows, e.contrast]
    if e.multilabel:
        flips = after[rows, e.target] <= 0
    else:
        flips = after.argmax(dim=1) != e.target
    probs = _class_prob(curve_logits, e.target.unsqueeze(1).expand(-1, len(steps)), e.multilabel)  # [B, S]
    x = steps.float() / max(c, 1)
    auc = torch.trapezoid(probs.float(), x.unsqueeze(0).expand_as(probs), dim=1)
    return {"margin_after_removal": margin_after, "prediction_flips": flips, "deletion_auc": auc}


def analyse_batch(explainer: LayerContributions, images: torch.Tensor, e: Explanation, top_m: int,
                  peak: str = "centroid") -> list[dict]:
    """Per-image records (numpy, on CPU) with everything a sheet needs from the model.

    Each record: `target, contrast (or -1), probability, contrast_probability, margin, logits [K],
    channels [M] (in `Explanation.argument_order`), contributions [M] (k vs contrast), maps [M, h, w]
    (>= 0), peaks [M, 2] (x, y in [0, 1]: each map's peak once weighted by
    `Explanation.peak_support`, so a channel active in several places is placed where the predicted
    class's evidence is), relevance [H, W]` (upsampled class-discriminative relevance) and the
    faithfulness numbers.
    """
    size = tuple(images.shape[-2:])
    vals, chans = e.top_channels(top_m)  # [B, M]
    b, m = chans.shape
    rows = torch.arange(b, device=chans.device)
    top_maps = e.maps[rows[:, None], chans].float().clamp_min(0)  # [B, M, h, w]
    peaks = peak_locations(top_maps * e.peak_support()[:, None], size, peak)  # placed where the class evidence is
    relevance = F.interpolate(spatial_relevance(e)[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    faith = faithfulness(explainer, images, e, top_m)
    probs = e.probabilities.float()
    contrast = e.contrast if e.contrast is not None else torch.full_like(e.target, -1)
    cpu = {k: v.detach().cpu().numpy() for k, v in {
        "target": e.target, "contrast": contrast, "logits": e.logits.float(), "probs": probs, "margin": e.margin.float(),
        "channels": chans, "contributions": vals.float(), "maps": top_maps, "peaks": peaks, "relevance": relevance,
        **faith}.items()}
    records = []
    for i in range(b):
        t, j = int(cpu["target"][i]), int(cpu["contrast"][i])
        records.append({
            "target": t, "contrast": j, "probability": float(cpu["probs"][i, t]),
            "contrast_probability": float(cpu["probs"][i, j]) if j >= 0 else None,
            "margin": float(cpu["margin"][i]), "logits": cpu["logits"][i], "channels": cpu["channels"][i],
            "contributions": cpu["contributions"][i], "maps": cpu["maps"][i], "peaks": cpu["peaks"][i],
            "relevance": cpu["relevance"][i], "margin_after_removal": float(cpu["margin_after_removal"][i]),
            "prediction_flips": bool(cpu["prediction_flips"][i]), "deletion_auc": float(cpu["deletion_auc"][i]),
        })
    return records


def ground_truth(record: dict, part_map: np.ndarray, discriminative_ids: list[int], tolerance_px: int = 0) -> dict:
    """Pointing game and relevance mass for one record against a part label map `[H, W]`.

    pointing_hit: the top argument's heatmap peak lies inside (within `tolerance_px` of) a
    discriminative part of the predicted class. relevance_mass: the share of positive
    class-discriminative relevance that falls inside those parts (Arras et al. 2022).
    """
    gt = np.isin(part_map, discriminative_ids)
    h, w = gt.shape
    x, y = record["peaks"][0]
    px, py = min(int(x * w), w - 1), min(int(y * h), h - 1)
    t = tolerance_px
    hit = bool(gt[max(0, py - t):py + t + 1, max(0, px - t):px + t + 1].any())
    rel = np.clip(record["relevance"], 0, None)
    if rel.shape != gt.shape:
        raise ValueError(f"relevance map {rel.shape} and part mask {gt.shape} differ in size")
    total = float(rel.sum())
    mass = float(rel[gt].sum() / total) if total > 0 else 0.0
    return {"pointing_hit": hit, "relevance_mass": mass}


def make_sentence(pred: str, prob: float, contrast: str | None, arguments: list[dict]) -> str:
    """`Predicted 'X' (0.93) rather than 'Y' mainly because of 'a' (41% of the margin, lower left), ...`."""
    head = f"Predicted '{pred}' ({prob:.2f})"
    if contrast is not None:
        head += f" rather than '{contrast}'"
    if not arguments:
        return head + "."
    unit = "of the margin" if contrast is not None else "of the logit"
    parts = []
    for i, a in enumerate(arguments):
        share = f"{round(100 * a['share_of_margin'])}%" + (f" {unit}" if i == 0 else "")
        parts.append(f"'{a['name']}' ({share}, {a['region']})")
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{head} mainly because of {body}."


def build_sheet(record: dict, *, sample_id: str, classes: list[str], label: str | None, domain: str | None, split: str,
                model_info: dict, names, exemplars=None, heatmap_scale: float, image_path: str,
                heatmap_paths: list[str], gt: dict | None = None, gt_parts: list[str] | None = None) -> dict:
    """One sheet document (docs/contracts.md). `names` is a `ConceptNames`; `exemplars` an
    `ExemplarIndex` or None; paths are relative to the sheets root."""
    t, j = record["target"], record["contrast"]
    margin = record["margin"]
    args = []
    for rank, (c, contrib) in enumerate(zip(record["channels"].tolist(), record["contributions"].tolist()), start=1):
        name, source, iou = names.lookup(c)
        x, y = (float(v) for v in record["peaks"][rank - 1])
        ex_crops = exemplars.crops(c) if exemplars is not None and str(c) in exemplars.channels else []
        strip = exemplars.strip(c) if exemplars is not None and str(c) in exemplars.channels else None
        args.append({
            "rank": rank, "channel": int(c), "contribution": round(float(contrib), 6),
            "share_of_margin": round(float(contrib) / margin, 6) if abs(margin) > 1e-9 else 0.0,
            "heatmap": heatmap_paths[rank - 1],
            "heatmap_grid": np.round(record["maps"][rank - 1].astype(np.float64), 4).tolist(),
            "peak": {"x": round(x, 4), "y": round(y, 4)}, "region": region_name(x, y),
            "exemplars": ex_crops, "exemplar_strip": strip, "name": name, "name_source": source, "name_iou": iou,
        })
    pred, contrast = classes[t], (classes[j] if j >= 0 else None)
    correct = None if label is None else (label == pred)
    sheet = {
        "schema_version": SCHEMA_VERSION, "sample_id": sample_id, "image": image_path, "label": label,
        "domain": domain, "split": split, "model": model_info,
        "prediction": {"class": pred, "index": t, "probability": round(record["probability"], 6)},
        "contrast": None if j < 0 else {"class": contrast, "index": j, "probability": round(record["contrast_probability"], 6)},
        "margin": round(margin, 6), "correct": correct, "arguments": args,
        "sentence": make_sentence(pred, record["probability"], contrast, args),
        "faithfulness": {"top_m": len(args), "margin_after_removal": round(record["margin_after_removal"], 6),
                         "prediction_flips": record["prediction_flips"], "deletion_auc": round(record["deletion_auc"], 6)},
        "ground_truth": None if gt is None else {"discriminative_parts": list(gt_parts or []), **gt},
        "heatmap_scale": round(float(heatmap_scale), 6),
    }
    return sheet
