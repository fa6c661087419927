"""The blind-domain protocol on the toy world (`hard` preset) and on real handwriting (digits).

    python bench/blind_domains.py --quick                      # CPU smoke run: tiny worlds, 2 seeds
    python bench/blind_domains.py --device cuda --workers 14 --time-limit 150 --pack runs.tgz
    python bench/blind_domains.py --summarize                  # tables from the runs already there

Per dataset, every method (erm, class-balanced, focal, center, distance-sampling,
center-distance, jtt, domain-balanced-oracle) on the same 10 paired seeds at its own budget
(the toy world: 40 epochs, where ERM's worst-class validation accuracy has stopped improving;
digits: 60 epochs), the equal-compute arm (methods at JTT's sample visits), the center-distance
variants (eval-mode distances, annealed sampling, center-loss warm-up) and, with `--tune`, the
blind tuning grid first. Runs are one `result.json` each under `--work`; finished runs are
skipped, so the grid finishes over several time-limited sessions (`--time-limit`, `--pack` to
carry the finished runs back, `--unpack` to bring them in again).

Writes `bench/results/gpu/blind_domains_<dataset>*.{md,csv,json,png}` (or `bench/results/` on
CPU), `blind_domains_verdicts.json` and `blind_domains.json` (machine, scale, what ran, what is
left and the command that resumes it), and one JSON line per figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCALES = {
    # dataset -> world options and training budget
    "full": {"toy": {"preset": "hard", "epochs": 40, "widths": (32, 64, 128, 128), "batch": 128},
             "digits": {"epochs": 60, "widths": (32, 64, 128, 128), "batch": 128}},
    "quick": {"toy": {"preset": "hard", "epochs": 2, "widths": (8, 16, 16, 16), "batch": 32,
                      "n_train": 200, "n_val": 60, "n_test": 60},
              "digits": {"epochs": 2, "widths": (8, 16, 16, 16), "batch": 32, "limit": 300}},
}


def emit(name: str, value, unit: str = "", **extra) -> None:
    from analysis.method_comparison import finite

    print(json.dumps(finite({"bench": "blind_domains", "figure": name, "value": value, "unit": unit, **extra})), flush=True)


def make_data(work: Path, scale: dict, datasets: list[str], generate: bool = True) -> dict:
    from training.digits import generate_digits
    from training.toyworld import generate_toyworld, toyworld_preset

    out = {}
    if "toy" in datasets:
        spec = scale["toy"]
        root = work / "data" / f"toy-{spec['preset']}"
        if generate and not (root / "samples.csv").exists():
            opts = toyworld_preset(spec["preset"])
            opts.update({k: spec[k] for k in ("n_train", "n_val", "n_test") if k in spec})
            generate_toyworld(root, seed=0, progress=False, workers=min(16, os.cpu_count() or 1), **opts)
        out["toy"] = root
    if "digits" in datasets:
        root = work / "data" / "digits"
        if generate and not (root / "digits.json").exists():
            generate_digits(root, progress=False, limit=scale["digits"].get("limit"))
        out["digits"] = root
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny worlds, 2 seeds, 2 epochs (CPU smoke run)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--datasets", default="toy,digits")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tune", action="store_true", help="blind tuning grid first (4 configs x 2 seeds per method)")
    ap.add_argument("--equal-compute", default="erm,center-distance,class-balanced,focal,center,distance-sampling,"
                                               "domain-balanced-oracle")
    ap.add_argument("--no-variants", action="store_true")
    ap.add_argument("--time-limit", type=float, default=None, help="seconds; start no new run after it")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench" / "blind_domains"))
    ap.add_argument("--pack", default=None, help="tar the finished runs' result.json files into this file")
    ap.add_argument("--unpack", action="append", default=[], help="bring in result.json files packed earlier")
    ap.add_argument("--summarize", action="store_true", help="only write the tables from the runs there")
    ap.add_argument("--no-summary", action="store_true", help="run (and pack) only; summarise elsewhere")
    args = ap.parse_args()

    from argus.pipelines.blind_domains import (VARIANTS, DEFAULT_METHODS, collect_results, launch_workers,
                                              plan_protocol, summarize_protocol, write_plan)

    t0 = time.time()
    scale_name = "quick" if args.quick else "full"
    scale = SCALES[scale_name]
    seeds = 2 if args.quick else args.seeds
    work = Path(args.work) / scale_name
    out = work / "exp"
    for pack in args.unpack:
        with tarfile.open(pack) as tar:
            tar.extractall(out, filter="data")
    datasets = [d for d in args.datasets.split(",") if d]
    roots = make_data(work, scale, datasets, generate=not args.summarize)
    emit("data_ready_s", round(time.time() - t0, 1), "s")
    spec = {ds: {"data": str(roots[ds]), "epochs": scale[ds]["epochs"],
                 "train": {"batch_size": scale[ds]["batch"], "device": args.device, "image_size": 32,
                           "model_kwargs": {"widths": list(scale[ds]["widths"])}}} for ds in datasets}
    jobs = plan_protocol(spec, DEFAULT_METHODS, range(seeds), tune=args.tune,
                         equal_compute=[m for m in args.equal_compute.split(",") if m],
                         variants={} if args.no_variants else VARIANTS)
    write_plan(out, jobs)
    if not args.summarize:
        deadline = t0 + args.time_limit if args.time_limit else None
        launch_workers(out, args.workers, threads=1, deadline=deadline, gpus=1 if args.device == "cuda" else 0)
    wall = time.time() - t0
    records = collect_results(out, jobs)
    done = {r["key"] for r in records}
    left = [j["key"] for j in jobs if j["key"] not in done]
    if args.pack:
        with tarfile.open(args.pack, "w:gz") as tar:
            for key in sorted(done):
                tar.add(out / "runs" / key / "result.json", arcname=f"runs/{key}/result.json")
    emit("runs_done", len(done), "runs", planned=len(jobs), wall_s=round(wall, 1))
    if not records or args.no_summary:
        return
    dest = ROOT / "bench" / "results" / ("gpu" if str(records[0].get("device", args.device)).startswith("cuda") else "")
    if args.quick:
        dest = work / "results"
    verdicts = summarize_protocol(out, dest, prefix="blind_domains", jobs=jobs)
    for ds, v in verdicts.items():
        for key, val in v.items():
            emit(f"{ds}/{key}", val.get("value", val.get("met")) if isinstance(val, dict) else val, "",
                 detail=val if isinstance(val, dict) else None)
    by_phase: dict = {}
    for j in jobs:
        by_phase.setdefault(f"{j['extra']['dataset']}/{j['extra']['phase']}", [0, 0])[j["key"] in done] += 1
    doc = {"bench": "blind_domains", "scale": scale_name, "scale_options": scale, "seeds": seeds,
           "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "device": args.device},
           "workers": args.workers, "wall_s_last_invocation": round(wall, 1), "runs_done": len(done),
           "runs_planned": len(jobs), "left_by_phase": {k: {"left": v[0], "done": v[1]} for k, v in by_phase.items()},
           "left": left, "selection": "worst-class validation accuracy (no domain labels)",
           "resume": ("python bench/blind_domains.py --device cuda --workers 14 --time-limit 480 "
                      "--unpack bench/results/gpu/blind_domains_runs.tgz --pack $OUT/blind_domains_runs.tgz"
                      + (" --tune" if args.tune else "")),
           "verdicts": verdicts}
    (dest / "blind_domains.json").write_text(json.dumps(doc, indent=2, default=str))


if __name__ == "__main__":
    main()
