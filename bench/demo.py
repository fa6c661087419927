"""Benchmark: the full `argus demo` (what `make demo` runs after install), per-stage wall times.

    python bench/demo.py [--quick] [--out DIR]

Runs every stage from scratch (`fresh`) into DIR (default: a temporary folder), prints one
JSON line per stage time and the total, and writes `bench/results/demo.json` with the machine
(platform, CPU count, torch device / GPU name), the configuration and the demo's checks. The
target is <= 600 s for all stages on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def machine() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "device": "cuda" if cuda else "cpu",
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "load_average_at_start": None if load is None else [round(x, 2) for x in load]}


def main(argv=None) -> dict:
    from argus.pipelines.demo import demo_config, run_demo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the --small demo instead of the full one")
    ap.add_argument("--out", default=None, help="run folder (default: a temporary folder)")
    ap.add_argument("--note", default="", help="free text stored with the result")
    args = ap.parse_args(argv)
    cfg = demo_config(small=args.quick)
    info = machine()
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="argus-bench-demo-")
    out = Path(args.out or tmp.name)
    summary, _ = run_demo(cfg, out, fresh=True, echo=lambda s: print(s, file=sys.stderr))
    rows = [{"figure": f"demo.stage_seconds.{k}", "value": v, "unit": "s"} for k, v in summary["stage_seconds"].items()]
    rows.append({"figure": "demo.total_seconds", "value": summary["total_seconds"], "unit": "s", "target": 600})
    for r in rows:
        print(json.dumps(r))
    result = {"benchmark": "demo", "preset": "small" if args.quick else "full", "machine": info,
              "stage_seconds": summary["stage_seconds"], "total_seconds": summary["total_seconds"],
              "target_seconds": 600, "within_target": summary["total_seconds"] <= 600,
              "config": summary["config"], "checks": summary["checks"], "accuracy": summary["accuracy"],
              "note": args.note}
    dest = Path(__file__).resolve().parent / "results" / ("demo.json" if not args.quick else "demo_quick.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
