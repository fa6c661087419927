"""Explanation quality on the toy world: pointing game and relevance mass by domain.

Runs `argus explain` on a trained run (or trains the default small-cnn on the default toy world
first) and records the pointing game of the top argument against the predicted class's
discriminative parts, strict (0 px) and with the default tolerance, next to a chance baseline
(a uniformly random point) and the accuracy per domain.

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
        summary = run_explain(run, data, out, limit=args.limit, device=args.device)
        gt = summary["ground_truth"]
        major = gt["majority_domain"]
        tol = summary["pointing_tolerance_px"]
        chance = chance_pointing(out, data, tol, major)
        meta = json.loads((run / "model.json").read_text())
    result = {
        "benchmark": "explain_quality", "arch": meta.get("arch"), "model_kwargs": meta.get("model_kwargs"),
        "train_config": {k: meta.get("config", {}).get(k) for k in ("epochs", "seed", "method")},
        "majority_domain": major, "pointing_tolerance_px": tol,
        "majority_domain_pointing_game": gt["majority_domain_pointing_game"],
        "majority_domain_pointing_game_strict": gt["by_domain"][major]["pointing_game_strict"],
        "chance_majority_domain": chance, "by_domain": gt["by_domain"], "overall": gt["overall"],
        "accuracy_by_domain": summary["per_domain"], "faithfulness": summary["faithfulness"], "names": summary["names"],
        "target": "pointing game >= 0.85 on majority-domain test images",
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "device": args.device},
    }
    for key in ("majority_domain_pointing_game", "majority_domain_pointing_game_strict"):
        print(json.dumps({"figure": key, "value": result[key], "tolerance_px": tol if "strict" not in key else 0}))
    print(json.dumps({"figure": "chance_pointing_majority_domain", "value": chance["tolerance"], "strict": chance["strict"]}))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
