"""Toy-world generation speed: 10,000 images (+ masks) on the CPU cores of this machine.

Figures (one JSON line each), measured side by side in one run:
- `generate_10k`: `generate_toyworld` with 10,000 images of 64 px, all cores (target <= 30 s on 2);
- `generate_10k_one_worker`: the same with one process (parallel speed-up = ratio);
- `png_write_floor_10k`: only encoding + writing 10,000 images and masks as PNG, one process
  (the floor for a world that is written to disk; render cost = the difference);
- `render_only`: `render_sample` without disk (what a lazily generated pool pays per item).

    python bench/toyworld.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from PIL import Image  # noqa: E402

from training.toyworld import PNG_COMPRESS_LEVEL, generate_toyworld, render_sample  # noqa: E402


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cpu_seconds() -> float:
    """CPU time of this process plus its reaped children (the rendering pool)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,000 images instead of 10,000")
    args = ap.parse_args(argv)
    n = 1000 if args.quick else 10_000
    n_train, n_val = int(n * 0.7), int(n * 0.1)
    n_test = n - n_train - n_val
    workers = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="argus-bench-toyworld-"))
    load_start = os.getloadavg()[0]
    try:
        gen = lambda out, w: generate_toyworld(tmp / out, n_train=n_train, n_val=n_val, n_test=n_test, seed=0, workers=w, progress=False)  # noqa: E731
        c0 = cpu_seconds()
        t_all = timed(lambda: gen("all", workers))
        c_all = cpu_seconds() - c0
        c0 = cpu_seconds()
        t_one = timed(lambda: gen("one", 1))
        c_one = cpu_seconds() - c0
        same = all((tmp / "all" / p).read_bytes() == (tmp / "one" / p).read_bytes() for p in ("samples.csv", "images/train-000000.png", "masks/test-000001.png"))
        samples = [render_sample(i, 0) for i in range(200)]
        t_render = timed(lambda: [render_sample(i, 0) for i in range(n // 10)]) * 10

        def write_only():
            (tmp / "floor").mkdir()
            for i in range(n):
                image, _, _, mask, _ = samples[i % len(samples)]
                image.save(tmp / "floor" / f"{i}.png", format="PNG", compress_level=PNG_COMPRESS_LEVEL)
                Image.fromarray(mask, "L").save(tmp / "floor" / f"m{i}.png", format="PNG", compress_level=PNG_COMPRESS_LEVEL)

        t_floor = timed(write_only)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures = [
        {"figure": "generate_10k" if not args.quick else "generate_1k", "images": n, "workers": workers, "seconds": round(t_all, 2),
         "images_per_s": round(n / t_all, 1), "cpu_s": round(c_all, 2), "idle_equivalent_s": round(c_all / workers, 2),
         "target_s": 30 if not args.quick else None,
         "meets_target_wall": (t_all <= 30) if not args.quick else None,
         "meets_target_idle_equivalent": (c_all / workers <= 30) if not args.quick else None},
        {"figure": "generate_one_worker", "images": n, "workers": 1, "seconds": round(t_one, 2), "cpu_s": round(c_one, 2),
         "speedup_all_workers": round(t_one / t_all, 2),
         "byte_identical_to_parallel": same},
        {"figure": "png_write_floor", "images": n, "workers": 1, "seconds": round(t_floor, 2), "generate_one_worker_over_floor": round(t_one / t_floor, 2)},
        {"figure": "render_only", "images": n, "workers": 1, "seconds": round(t_render, 2), "ms_per_image": round(1000 * t_render / n, 3)},
    ]
    for f in figures:
        print(json.dumps(f), flush=True)
    result = {"bench": "toyworld", "quick": args.quick, "figures": figures,
              "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
                          "numpy": np.__version__, "device": "cpu (no torch used)", "load_avg_1m_at_start": load_start,
                          "load_avg_1m_at_end": os.getloadavg()[0]},
              "note": ("Shared machine: other engineers' jobs ran at the same time (load average above), so wall times are "
                       "upper bounds; idle_equivalent_s = CPU time of the process and its workers / workers estimates "
                       "the time on idle cores.")}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / ("toyworld_quick.json" if args.quick else "toyworld.json")).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
