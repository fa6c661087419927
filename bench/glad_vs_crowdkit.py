"""GLAD posteriors against crowd-kit's GLAD on 100,000 judgments, side by side in one run.

Two simulated crowds (sim.frames.simulate_crowd): 20,000 tasks x 5 answers, 100 workers,
3 classes; and 10,000 tasks x 10 answers, 1,000 workers, 5 classes. Figures: max absolute
posterior difference, share of equal labels, EM iterations and loss history of both, seconds.
crowd-kit takes 10-15 minutes per crowd on the 2-core machine.

Usage: python bench/glad_vs_crowdkit.py   (writes bench/results/glad_vs_crowdkit.json)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis.aggregate import GLAD  # noqa: E402
from sim.frames import simulate_crowd  # noqa: E402
from analysis_speed import machine  # noqa: E402

CROWDS = {
    "20k_tasks_x5_100_workers_3_classes": dict(n_tasks=20000, n_workers=100, n_classes=3, per_task=5, seed=0),
    "10k_tasks_x10_1000_workers_5_classes": dict(n_tasks=10000, n_workers=1000, n_classes=5, per_task=10, seed=0,
                                                 accuracy=(0.3, 0.9)),
}


def main():
    from crowdkit.aggregation import GLAD as CrowdKitGLAD

    results = []
    for name, kw in CROWDS.items():
        frame, _ = simulate_crowd(**kw)
        t = time.perf_counter()
        ours = GLAD().fit(frame)
        t_ours = time.perf_counter() - t
        ref = CrowdKitGLAD().fit(frame)
        t_ref = time.perf_counter() - t - t_ours
        p, q = ours.probas_.sort_index(), ref.probas_.sort_index()[ours.probas_.columns]
        row = {"figure": f"glad_vs_crowdkit_{name}", "judgments": len(frame),
               "max_proba_diff": float(np.abs(p.to_numpy() - q.to_numpy()).max()),
               "labels_equal": float((ours.labels_.sort_index() == ref.labels_.sort_index()).mean()),
               "iterations": [ours.n_iter_, len(ref.loss_history_)],
               "loss_history": [ours.loss_history_, [float(v) for v in ref.loss_history_]],
               "seconds": [round(t_ours, 2), round(t_ref, 2)]}
        print(json.dumps(row), flush=True)
        results.append(row)
    out = Path(__file__).resolve().parent / "results" / "glad_vs_crowdkit.json"
    out.write_text(json.dumps({"bench": "glad_vs_crowdkit", "machine": machine(), "results": results,
                               "note": "CPU, shared 2-core machine under load; seconds are [argus, crowd-kit]."},
                              indent=2) + "\n")


if __name__ == "__main__":
    main()
