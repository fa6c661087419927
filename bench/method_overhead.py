"""Per-epoch cost of center loss + distance sampling vs plain ERM, measured side by side.

    python bench/method_overhead.py [--quick] [--device auto|cpu|cuda]

The same trainer, model, data and seed train with `erm`, `center`, `distance-sampling` and
`center-distance`, interleaved (ERM, CD, ERM, CD, ...) so that load changes on a shared machine
hit all methods alike. The figure is the median epoch time (training only: the epoch records'
`train_time_s` increments, validation excluded; the first epoch of each fit is dropped as
warm-up) of each method divided by ERM's, minus 1. Target (issue 8): <= 5 % for center-distance.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("erm", "center", "distance-sampling", "center-distance")


def machine(device: str) -> dict:
    import torch

    dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__, "device": dev,
            "gpu": torch.cuda.get_device_name(0) if dev.startswith("cuda") else None,
            "torch_threads": torch.get_num_threads()}


def emit(name, value, unit="", **extra) -> dict:
    line = {"bench": "method_overhead", "figure": name, "value": value, "unit": unit, **extra}
    print(json.dumps(line), flush=True)
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared CPU)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from training.datasets import load_dataset
    from training.toyworld import generate_toyworld
    from training.trainer import TrainConfig, Trainer

    mach = machine(args.device)
    cuda = mach["device"].startswith("cuda")
    n_train, size, widths, reps, epochs = ((800, 32, (16, 32, 64, 64), 2, 3) if args.quick else
                                           (2000, 32, (16, 32, 64, 64), 3, 4) if not cuda else
                                           (6000, 64, (32, 64, 128, 128), 3, 4))
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_toyworld(Path(tmp) / "world", n_train=n_train, n_val=100, n_test=0, image_size=size,
                                 seed=0, progress=False)
        info = load_dataset(data)
        times = {m: [] for m in METHODS}
        t0 = time.perf_counter()
        for rep in range(reps):
            for m in METHODS:
                cfg = TrainConfig(method=m, epochs=epochs, batch_size=128, device=mach["device"], image_size=size,
                                  model_kwargs={"widths": widths}, seed=rep)
                hist = Trainer(info, Path(tmp) / f"{m}-{rep}", cfg, progress=False).fit()["epochs"]
                cumulative = [r["train_time_s"] for r in hist]
                per_epoch = [b - a for a, b in zip(cumulative, cumulative[1:])]  # drops epoch 1
                times[m] += per_epoch
        wall = time.perf_counter() - t0
    lines = []
    erm = statistics.median(times["erm"])
    lines.append(emit("erm/epoch_s", round(erm, 4), "s", n=len(times["erm"])))
    for m in METHODS[1:]:
        med = statistics.median(times[m])
        lines.append(emit(f"{m}/epoch_s", round(med, 4), "s", n=len(times[m])))
        lines.append(emit(f"{m}/overhead_vs_erm", round(med / erm - 1.0, 4), "ratio-1",
                          target="<= 0.05" if m == "center-distance" else None))
    over = statistics.median(times["center-distance"]) / erm - 1.0
    doc = {"bench": "method_overhead", "machine": mach, "wall_s": round(wall, 1),
           "scale": {"n_train": n_train, "image_size": size, "widths": list(widths), "epochs_per_fit": epochs,
                     "repetitions": reps, "batch_size": 128},
           "note": ("shared 2-core CPU with other engineers' jobs running: epoch times are noisy; methods are "
                    "interleaved and medians taken") if not cuda else "GPU run",
           "epoch_times_s": times, "target": {"center_distance_overhead_le_5pct": over <= 0.05, "value": over},
           "figures": lines}
    out = ROOT / "bench" / "results" / "method_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
