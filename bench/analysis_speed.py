"""Analysis speed, side by side in one run:

0. Every agreement statistic from a long judgment frame (validation included, n_boot=0, 100k
   units) vs the reference package on its own array input (statsmodels, krippendorff, sklearn,
   irrCAC).

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
from sim.frames import simulate_crowd  # noqa: E402


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


def long_frame(n_units: int, raters_per_unit: int, n_raters: int, seed=0):
    """A long judgment frame as the export has it (int task ids, text worker ids and labels),
    and the same ratings as the references take them: `[raters, units]` matrix with NaN."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n_units)
    start = rng.integers(0, n_raters, n_units)
    w = ((start[:, None] + np.arange(raters_per_unit)[None, :]) % n_raters).ravel()
    u = np.repeat(np.arange(n_units), raters_per_unit)
    lab = np.where(rng.random(len(u)) < 0.7, truth[u], rng.integers(0, 3, len(u)))
    names = np.array(["no", "yes", "cant_tell"], dtype=object)
    frame = pd.DataFrame({"task": u, "worker": np.char.add("w", w.astype(str)).astype(object), "label": names[lab]})
    matrix = np.full((n_raters, n_units), np.nan)
    matrix[w, u] = lab
    return frame, matrix


def _as_codes(frame):
    """The same long frame with integer-coded worker and label columns (what a user holding
    a coded export passes); task ids are integers already."""
    return frame.assign(worker=frame["worker"].str[1:].astype(int),
                        label=frame["label"].map({"no": 0, "yes": 1, "cant_tell": 2}).astype(int))


def bench_long_frame(results, quick):
    """Every agreement statistic from a long frame (validation included, n_boot=0) vs the
    reference package on its own array input, 100k units. Two inputs for Argus: integer-coded
    columns (`ids`: "int") and the export as read, text worker ids and labels (`ids`: "text")."""
    import warnings

    import krippendorff
    import pandas as pd
    from irrCAC.raw import CAC
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    from analysis import agreement as agr

    n_units = 20_000 if quick else 100_000
    repeats = 3 if quick else 5
    text, m = long_frame(n_units, 5, 5)  # every rater on every unit: statsmodels' input
    sparse_text, sparse_m = long_frame(n_units, 4, 50, seed=1)  # 4 of 50 raters per unit
    frames = {"int": (_as_codes(text), _as_codes(sparse_text)), "text": (text, sparse_text)}
    pairs = {ids: f[f["worker"].isin([0, 1, "w0", "w1"])] for ids, (f, _) in frames.items()}  # raters 0 and 1
    table = aggregate_raters(m.T.astype(int))[0]
    sparse_df = pd.DataFrame(sparse_m.T)
    cases = [
        ("fleiss_kappa", lambda f, s: agr.fleiss_kappa(f, n_boot=0).value,
         lambda: sm_fleiss(aggregate_raters(m.T.astype(int))[0]),
         "statsmodels aggregate_raters + fleiss_kappa on a [units, raters] array", repeats),
        ("fleiss_kappa_vs_count_table", lambda f, s: agr.fleiss_kappa(f, n_boot=0).value, lambda: sm_fleiss(table),
         "statsmodels fleiss_kappa on an already aggregated [units, categories] count table", repeats),
        ("krippendorff_alpha_nominal", lambda f, s: agr.krippendorff_alpha(f, "nominal", n_boot=0).value,
         lambda: krippendorff.alpha(reliability_data=m, level_of_measurement="nominal"),
         "krippendorff.alpha on a [5 raters, units] matrix", repeats),
        ("krippendorff_alpha_sparse", lambda f, s: agr.krippendorff_alpha(s, "nominal", n_boot=0).value,
         lambda: krippendorff.alpha(reliability_data=sparse_m, level_of_measurement="nominal"),
         "krippendorff.alpha on a [50 raters, units] matrix, 92% missing", repeats),
        ("cohen_kappa", lambda f, s: agr.cohen_kappa(pairs["int" if f["worker"].dtype.kind == "i" else "text"],
                                                     n_boot=0).value,
         lambda: cohen_kappa_score(m[0], m[1]), "sklearn cohen_kappa_score on two label vectors", repeats),
        ("gwet_ac1", lambda f, s: agr.gwet_ac1(s, n_boot=0).value,
         lambda: CAC(sparse_df, digits=15).gwet()["est"]["coefficient_value"],
         "irrCAC CAC.gwet on a [units, 50 raters] frame", 1),
    ]
    for name, ours, ref, ref_name, reps in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_ref, v_ref = best_of(ref, reps)
            for ids, (f, s) in frames.items():
                t_ours, v_ours = best_of(lambda: ours(f, s), reps)
                emit(results, {"figure": f"long_frame_{name}", "ids": ids, "units": n_units,
                               "argus_s": round(t_ours, 4), "reference_s": round(t_ref, 4), "reference": ref_name,
                               "speedup": round(t_ref / t_ours, 2), "abs_diff": abs(float(v_ours) - float(v_ref))})
    for ids, (f, _) in frames.items():
        t_ours, _ = best_of(lambda: agr.percent_agreement(f, n_boot=0).value, repeats)
        emit(results, {"figure": "long_frame_percent_agreement", "ids": ids, "units": n_units,
                       "argus_s": round(t_ours, 4), "reference": "none (no reference package computes it alone)"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller Dawid-Skene problem (100k judgments)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "analysis_speed.json"))
    ap.add_argument("--only", choices=["long_frame"], default=None, help="run one group of figures")
    args = ap.parse_args()
    results: list[dict] = []
    if args.only == "long_frame":
        bench_long_frame(results, args.quick)
        doc = {"bench": "analysis_speed_long_frame", "quick": args.quick, "machine": machine(), "results": results,
               "note": "CPU, shared 2-core machine under load; ratios are side by side in one run."}
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        return
    bench_long_frame(results, args.quick)
    bench_alpha(results, args.quick)
    bench_bootstrap(results, args.quick)
    bench_dawid_skene(results, args.quick)
    doc = {"bench": "analysis_speed", "quick": args.quick, "machine": machine(), "results": results,
           "note": "CPU run on a shared 2-core machine (other jobs running); ratios are side by side in one run."}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
