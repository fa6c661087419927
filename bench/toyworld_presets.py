"""Which toy worlds can tell blind-domain methods apart? A search over world settings.

For each candidate world (minority share, domain-shift strength, spurious cue; 32 px) it trains
ERM until validation stops improving (`--epochs`, and a run twice as long to show that ERM has
converged), the domain-balanced oracle (proof that the gap can be closed) and center-distance,
then reports per candidate the worst-domain gap of converged ERM (majority minus worst domain,
test, worst-class validation selection) and the oracle's worst-domain gain. A world
*discriminates* when converged ERM keeps a gap of >= 15 points and the oracle closes part of it.

    python bench/toyworld_presets.py --quick                 # CPU smoke run (2 tiny candidates)
    python bench/toyworld_presets.py --workers 14 --device cuda --budget-s 240

Writes `bench/results/gpu/toyworld_presets.json` (cuda) or `bench/results/toyworld_presets.json`
and one JSON line per figure. Runs are resumable (`--work`).
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

# name: (domains, shift, spurious)
CANDIDATES = {
    "d85-s1.0": ("day=0.85,night=0.10,fog=0.05", 1.0, 0.0),
    "d95-s1.0": ("day=0.95,night=0.035,fog=0.015", 1.0, 0.0),
    "d95-s1.25": ("day=0.95,night=0.035,fog=0.015", 1.25, 0.0),
    "d97-s1.25": ("day=0.97,night=0.02,fog=0.01", 1.25, 0.0),
    "d95-s1.5": ("day=0.95,night=0.035,fog=0.015", 1.5, 0.0),
    "d98-s1.25": ("day=0.98,night=0.015,fog=0.005", 1.25, 0.0),
    "d95-s1.25-sp0.9": ("day=0.95,night=0.035,fog=0.015", 1.25, 0.9),
    "d97-s1.0-sp0.9": ("day=0.97,night=0.02,fog=0.01", 1.0, 0.9),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--digits-epochs", type=int, default=100)
    ap.add_argument("--budget-s", type=float, default=None, help="claim no new run after this many seconds")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench" / "toyworld_presets"))
    args = ap.parse_args()

    from argus.pipelines.blind_domains import collect_results, job, launch_workers, write_plan
    from training.digits import generate_digits
    from training.toyworld import generate_toyworld

    t0 = time.time()
    work = Path(args.work)
    names = [c for c in args.candidates.split(",") if c]
    n_train, n_val, n_test, epochs = args.n_train, 1000, 1200, args.epochs
    widths = (32, 64, 128, 128)
    if args.quick:
        names, n_train, n_val, n_test, epochs, widths = names[:2], 200, 60, 60, 2, (8, 16, 16, 16)
    train = {"batch_size": 128 if not args.quick else 32, "device": args.device, "image_size": 32,
             "model_kwargs": {"widths": widths}}
    worlds = {}
    for name in names:
        domains, shift, spurious = CANDIDATES[name]
        root = work / "worlds" / name
        if not (root / "samples.csv").exists():
            generate_toyworld(root, n_train=n_train, n_val=n_val, n_test=n_test, image_size=32, domains=domains,
                              shift=shift, spurious=spurious, seed=0, progress=False,
                              workers=min(16, os.cpu_count() or 1))
        worlds[name] = root
    digits = work / "worlds" / "digits"
    if not (digits / "digits.json").exists():
        generate_digits(digits, progress=False)
    print(json.dumps({"bench": "toyworld_presets", "figure": "data_ready_s", "value": round(time.time() - t0, 1)}), flush=True)

    jobs = []
    d_epochs = args.digits_epochs if not args.quick else 2
    sets = [(n, w, epochs) for n, w in worlds.items()] + [("digits", digits, d_epochs)]
    # most informative first: converged ERM, the oracle, ERM twice as long, center-distance, a 2nd ERM seed
    for method, seed, mult in (("erm", 0, 1), ("domain-balanced-oracle", 0, 1), ("erm", 0, 2),
                               ("center-distance", 0, 1), ("erm", 1, 1), ("jtt", 0, 1)):
        for name, root, e in sets:
            jobs.append(job(f"{name}/{method}-e{e * mult}/seed{seed}", root, method, seed, epochs=e * mult, train=train,
                            candidate=name, label=method, budget=f"{e * mult} epochs"))
    out = work / "exp"
    write_plan(out, jobs)
    deadline = t0 + args.budget_s if args.budget_s else None
    codes = launch_workers(out, args.workers, threads=1, deadline=deadline, gpus=1 if args.device == "cuda" else 0)
    results = collect_results(out, jobs)
    report = summarise(results)
    for name, row in report.items():
        print(json.dumps({"bench": "toyworld_presets", "figure": f"{name}", **row}), flush=True)
    doc = {"bench": "toyworld_presets", "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                                   "device": args.device, "gpu": _gpu_name(args.device)},
           "n_train": n_train, "image_size": 32, "widths": widths, "epochs": epochs, "digits_epochs": d_epochs,
           "candidates": {n: dict(zip(("domains", "shift", "spurious"), CANDIDATES[n])) for n in names},
           "workers": args.workers, "wall_s": round(time.time() - t0, 1), "worker_exit_codes": codes,
           "runs_done": len(results), "runs_planned": len(jobs), "report": report,
           "curves": {r["key"]: r["curve"] for r in results}}
    dest = ROOT / "bench" / "results" / ("gpu" if args.device == "cuda" else "") / "toyworld_presets.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(doc, indent=1, default=str))


def _gpu_name(device: str):
    if device != "cuda":
        return None
    import torch

    return torch.cuda.get_device_name(0)


def summarise(results: list[dict]) -> dict:
    """Per candidate: test accuracy per domain (%) of each run at its worst-class-selected epoch."""
    report: dict = {}
    for r in results:
        sel = r["selections"]["worst_class"]
        per = {d: round(100 * v["accuracy"], 1) for d, v in sel["test"]["per_domain"].items()}
        m = sel["metrics"]
        row = report.setdefault(r["candidate"], {})
        row[r["key"].split("/", 1)[1]] = {
            "per_domain": per, "majority": round(100 * m["majority_accuracy"], 1),
            "worst": round(100 * m["worst_domain_accuracy"], 1),
            "gap": round(100 * (m["majority_accuracy"] - m["worst_domain_accuracy"]), 1),
            "epoch": sel["epoch"], "epochs": r["epochs"], "train_s": r.get("train_time_s")}
    return report


if __name__ == "__main__":
    main()
