"""Defaults on unknown small real data: `argus train` with no options on ~1.8k handwritten digits.

    python bench/train_defaults.py            # 2 torch threads (the target machine: 2 CPU cores)

Builds `argus data digits --plain` (scikit-learn's bundled 1,797 digits, 32 px, no domains; Argus
splits it 70/10/20 like any user folder), then trains small-cnn with every default (epochs sized
by steps, augmentation from the data: shift only, no mirroring) and, side by side in the same
run, the old defaults (15 epochs, shift + mirroring). Prints one JSON line per figure and writes
`bench/results/train_defaults.json`.

Target (issue 18): the defaults reach >= 0.95 test accuracy in <= 2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench" / "train_defaults"))
    ap.add_argument("--skip-old", action="store_true", help="only the current defaults")
    ap.add_argument("--quick", action="store_true", help="300 digits, 2 epochs (a smoke run; results not kept)")
    args = ap.parse_args()

    import warnings

    import torch

    from training.digits import generate_digits
    from training.evaluate import evaluate_run
    from training.trainer import TrainConfig, Trainer, UndertrainedWarning

    warnings.simplefilter("ignore", UndertrainedWarning)  # recorded in the results instead
    torch.set_num_threads(args.threads)
    work = Path(args.work) / ("quick" if args.quick else "full")
    data = work / "digits"
    if not (data / "digits.json").exists():
        generate_digits(data, plain=True, progress=False, limit=300 if args.quick else None)
    load = os.getloadavg()[0]
    results = {}
    runs = {"defaults": TrainConfig(device="cpu", epochs=2 if args.quick else None),
            "old defaults (15 epochs, mirroring)": TrainConfig(device="cpu", epochs=2 if args.quick else 15,
                                                               augment="flip,shift")}
    for name, cfg in runs.items():
        if name != "defaults" and args.skip_old:
            continue
        run = work / name.split(" ")[0].replace(",", "")
        t0, c0 = time.perf_counter(), time.process_time()
        trainer = Trainer(data, run, cfg, progress=False)
        metrics = trainer.fit()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        report = evaluate_run(run, data, split="test", device="cpu")
        results[name] = {"test_accuracy": report["overall_accuracy"], "worst_class_accuracy": report["worst_class_accuracy"],
                         "epochs": trainer.epochs, "steps": metrics.get("steps"), "augment": list(trainer.augmentations),
                         "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                         "idle_equivalent_s": round(cpu / args.threads, 1),
                         "undertrained": metrics.get("undertrained")}
        print(json.dumps({"bench": "train_defaults", "figure": name, **results[name]}), flush=True)
    d = results["defaults"]
    doc = {"bench": "train_defaults", "data": "argus data digits --plain (1,797 digits, 32 px; 70/10/20 split)",
           "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "threads": args.threads,
                       "torch": torch.__version__, "load_avg_1m_at_start": load,
                       "note": "shared machine: wall time is an upper bound; idle_equivalent_s = CPU time / threads"},
           "results": results,
           "target": {"accuracy_ge_0.95": d["test_accuracy"] >= 0.95,
                      "within_120_s_on_2_cores": min(d["wall_s"], d["idle_equivalent_s"]) <= 120,
                      "wall_s": d["wall_s"], "idle_equivalent_s": d["idle_equivalent_s"]}}
    out = work / "train_defaults.json" if args.quick else ROOT / "bench" / "results" / "train_defaults.json"
    out.write_text(json.dumps(doc, indent=2))
    print(json.dumps({"bench": "train_defaults", "figure": "target", **doc["target"]}))


if __name__ == "__main__":
    main()
