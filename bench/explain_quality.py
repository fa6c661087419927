"""Explanation quality on the toy world: pointing game and relevance mass by domain.

Runs `argus explain` on a trained run (or trains the default small-cnn on the default toy world
first) and records the pointing game of the top argument against the predicted class's
discriminative parts, strict (0 px) and with the default tolerance, next to a chance baseline
(a uniformly random point) and the accuracy per domain. Beside the top argument, on the same
model and test images, per domain: Grad-CAM at the explained layer for the predicted class (ours
and pytorch-grad-cam's, peak = argmax of the map upsampled to the image), the full class map
(all channels' contributions to "k rather than j" spread over space), and the top argument of
the plain contribution ranking. Results: one JSON line per figure.

    python bench/explain_quality.py --model RUN --data DIR     # an existing run
    python bench/explain_quality.py [--quick]                  # make the world and train first
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def chance_pointing(sheets_dir: Path, data_dir: Path, tolerance: int, domain: str | None) -> dict:
    """Hit rate of a uniformly random point (= the area of the dilated part masks)."""
    from scipy.ndimage import binary_dilation

    from explain.sheet_files import load_sheets
    from training.datasets import read_part_mask, read_parts

    parts = read_parts(data_dir)
    disc = {c["name"]: c["discriminative_parts"] for c in parts["classes"]}
    strict, tol = [], []
    for s in load_sheets(sheets_dir).values():
        if domain is not None and s["domain"] != domain:
            continue
        gt = np.isin(read_part_mask(data_dir, s["sample_id"]), disc[s["prediction"]["class"]])
        strict.append(gt.mean())
        tol.append(binary_dilation(gt, np.ones((2 * tolerance + 1,) * 2, bool)).mean() if tolerance else gt.mean())
    return {"strict": float(np.mean(strict)), "tolerance": float(np.mean(tol)), "n": len(strict)}


def method_points(run: Path, data: Path, device: str, limit: int | None) -> dict:
    """Pointing-game peaks `{sample_id: {method: (x, y)}}` of every method on the test split."""
    import warnings

    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from explain.contributions import LayerContributions
    from explain.pipeline import SplitBatches, _input_size, evenly_spaced, open_split
    from explain.sheets import analyse_batch, peak_locations
    from training.checkpoint import load_checkpoint
    from training.datasets import load_dataset
    from training.evaluate import resolve_device

    dev = resolve_device(device)
    model, meta = load_checkpoint(run, device=str(dev))
    model.eval()
    info = load_dataset(data)
    size = _input_size(meta)
    norm = meta.get("normalization") or {}
    mean, std = tuple(norm.get("mean", (0.5,) * 3)), tuple(norm.get("std", (0.25,) * 3))
    table = info.split_table("test")
    ds = open_split(info, "test", size, mean, std)
    explainer = LayerContributions(model, meta.get("explained_layer"))
    points: dict = {}

    def upsampled(maps):  # the pointing-game peak of a map: argmax once upsampled to the image
        return peak_locations(maps[:, None].float(), (size, size), "upsampled")[:, 0]

    for x, _y, idx in SplitBatches(ds, evenly_spaced(len(table), limit), 64):
        x = x.to(dev)
        e = explainer.explain(x, contrast="runner_up")
        top = analyse_batch(explainer, x, e, 3)  # the sheets' own records: their top argument
        ours = upsampled(explainer.grad_cam(x, e=e))
        by_contribution = torch.topk(e.contrast_contributions, 1, dim=1).indices[:, 0]
        rows = torch.arange(x.shape[0], device=x.device)
        plain_top = peak_locations(e.maps[rows, by_contribution][:, None].float().clamp_min(0), (size, size))[:, 0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cam = GradCAM(model=model, target_layers=[explainer.layer])
            try:
                ref = torch.as_tensor(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(k)) for k in e.target]))
            finally:
                cam.activations_and_grads.release()
        ref = upsampled(ref.to(x.device))
        full = upsampled(e.class_map())
        for i, row in enumerate(idx.tolist()):
            sid = str(table.iloc[row]["sample_id"])
            points[sid] = {"top_argument": tuple(float(v) for v in top[i]["peaks"][0]),
                           "top_argument_by_contribution": tuple(plain_top[i].tolist()),
                           "grad_cam": tuple(ours[i].tolist()), "grad_cam_reference": tuple(ref[i].tolist()),
                           "class_map": tuple(full[i].tolist()), "target": int(e.target[i]),
                           "domain": str(table.iloc[row].get("domain"))}
    return points, list(meta["classes"])


def pointing_by_method(points: dict, classes: list[str], data: Path, tolerance: int) -> dict:
    """`{method: {domain: {"pointing_game", "pointing_game_strict", "n"}}}` (domain "all" too)."""
    from training.datasets import read_part_mask, read_parts

    disc = {c["name"]: c["discriminative_parts"] for c in read_parts(data)["classes"]}
    methods = [k for k in next(iter(points.values())) if k not in ("target", "domain")]
    hits = {m: {} for m in methods}
    for sid, p in points.items():
        gt = np.isin(read_part_mask(data, sid), disc[classes[p["target"]]])
        h, w = gt.shape
        for m in methods:
            x, y = p[m]
            px, py = min(int(x * w), w - 1), min(int(y * h), h - 1)
            for key, t in (("pointing_game", tolerance), ("pointing_game_strict", 0)):
                hit = bool(gt[max(0, py - t):py + t + 1, max(0, px - t):px + t + 1].any())
                for d in (p["domain"], "all"):
                    hits[m].setdefault(d, {}).setdefault(key, []).append(hit)
    return {m: {d: {k: float(np.mean(v)) for k, v in by.items()} | {"n": len(by["pointing_game"])}
                for d, by in sorted(doms.items())} for m, doms in hits.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="Trained run folder (default: train one).")
    ap.add_argument("--data", default=None, help="Toy-world folder (default: make the default one).")
    ap.add_argument("--quick", action="store_true", help="A small world and 2 epochs (smoke run; quality will be low).")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "explain_quality.json"))
    args = ap.parse_args(argv)
    from explain.pipeline import run_explain

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else None
        if data is None:
            from training.toyworld import generate_toyworld

            sizes = {"n_train": 600, "n_val": 120, "n_test": 180} if args.quick else {}
            data = generate_toyworld(Path(tmp) / "data", **sizes)
        run = Path(args.model) if args.model else None
        if run is None:
            from training.trainer import TrainConfig, Trainer

            run = Path(tmp) / "run"
            Trainer(data, run, TrainConfig(epochs=2 if args.quick else 8, device=args.device)).fit()
        out = Path(tmp) / "sheets"
        summary = run_explain(run, data, out, limit=args.limit, device=args.device, progress=False)
        gt = summary["ground_truth"]
        major = gt["majority_domain"]
        tol = summary["pointing_tolerance_px"]
        chance = chance_pointing(out, data, tol, major)
        meta = json.loads((run / "model.json").read_text())
        points, classes = method_points(run, data, args.device, args.limit)
        methods = pointing_by_method(points, classes, data, tol)
    # The sheets' figure and this pass's top argument are the same computation.
    for d, block in gt["by_domain"].items():
        ours = methods["top_argument"][d]["pointing_game"]
        if abs(block["pointing_game"] - ours) > 1e-9:
            raise RuntimeError(f"top argument pointing game on {d}: sheets {block['pointing_game']} vs bench {ours}")
    rows = [{"figure": "config", "benchmark": "explain_quality", "arch": meta.get("arch"),
             "model_kwargs": meta.get("model_kwargs"), "explained_layer": summary["model"]["layer"],
             "train_config": {k: meta.get("config", {}).get(k) for k in ("epochs", "seed", "method")},
             "majority_domain": major, "pointing_tolerance_px": tol, "n_test": summary["n_sheets"],
             "target": "pointing game >= 0.85 on majority-domain test images; top argument >= Grad-CAM on every domain",
             "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                         "device": args.device}}]
    for m, doms in methods.items():
        for d, v in doms.items():
            rows.append({"figure": "pointing_game", "method": m, "domain": d, "value": round(v["pointing_game"], 4),
                         "strict": round(v["pointing_game_strict"], 4), "tolerance_px": tol, "n": v["n"]})
    for d in list(gt["by_domain"]) + ["all"]:
        rows.append({"figure": "top_argument_minus_grad_cam", "domain": d, "tolerance_px": tol,
                     "value": round(methods["top_argument"][d]["pointing_game"] - methods["grad_cam"][d]["pointing_game"], 4)})
    rows.append({"figure": "chance_pointing_majority_domain", "domain": major, "value": round(chance["tolerance"], 4),
                 "strict": round(chance["strict"], 4), "n": chance["n"]})
    for d, block in gt["by_domain"].items():
        rows.append({"figure": "relevance_mass", "method": "class_map", "domain": d, "value": round(block["relevance_mass"], 4)})
    for d, block in summary["per_domain"].items():
        rows.append({"figure": "accuracy", "domain": d, "value": block["accuracy"], "n": block["n"]})
    rows.append({"figure": "faithfulness", **summary["faithfulness"]})
    rows.append({"figure": "names", **summary["names"]})
    for row in rows[1:]:
        print(json.dumps(row))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
