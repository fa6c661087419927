"""The toy-world active-learning experiment at a reduced scale (~15 min on 2 shared CPU cores).

Runs the combinations the issue's targets compare (random + ERM, margin + ERM, margin +
center-distance) over 3 seeds, with a
full-pool reference per method and seed, and writes the table, plot, CSV and JSON to
`bench/results/active_experiment*` with a verdict on each target.

    python bench/active_experiment.py [--quick] [--device auto|cpu|cuda]

The full grid is `argus experiment active --strategies random,margin,entropy,coreset,badge
--train-methods erm,center-distance --seeds 3` (same code, larger defaults).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    import torch

    from active.experiment import collect_finished, markdown, plot_curves, run_experiment, summarize, verdict

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, smaller pool (a smoke run)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-active-experiment"))
    ap.add_argument("--pool-size", type=int, default=None)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--summarize-only", action="store_true", help="summarise the finished runs in --out (no training)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    combos = [("random", "erm"), ("margin", "erm"), ("margin", "center-distance")]
    cfg = dict(pool_size=400, test_size=240, image_size=16, rounds=5, budget=20, initial_size=20, epochs=6)
    seeds = [0, 1, 2]
    if args.pool_size:  # a larger scale: 5% initial + 5 rounds of 5% (30% labelled at the end)
        step = max(1, args.pool_size // 20)
        cfg.update(pool_size=args.pool_size, budget=step, initial_size=step)
    if args.image_size:
        cfg["image_size"] = args.image_size
    if args.epochs:
        cfg["epochs"] = args.epochs
    if args.quick:
        cfg.update(pool_size=200, test_size=90, rounds=1, budget=20, initial_size=20, epochs=2)
        seeds = [0]
    train_options = {"lr": 0.05, "batch_size": 32, "model_kwargs": {"widths": [16, 32, 64, 64]}}
    out = Path(args.out)
    if args.summarize_only:  # an experiment stopped early: summarise the runs that finished
        curves, full = collect_finished(out, cfg["rounds"])
        summary, per_seed = summarize(curves, full, cfg["pool_size"])
        plot_curves(curves, out / "active_curves.png")
        curves.to_csv(out / "curves.csv", index=False)
        summary.to_csv(out / "summary.csv", index=False)
        ver = verdict(summary, per_seed)
        res = {"summary": summary, "verdict": ver,
               "doc": {"full_pool": full.to_dict("records"), "summary": json.loads(summary.to_json(orient="records")),
                       "verdict": ver, "wall_s": None,
                       "finished_runs": sorted({f"{r.strategy}+{r.method}+s{r.seed}" for r in curves.itertuples()})}}
    else:
        res = run_experiment(out, [], [], seeds, combos=combos, device=args.device, train_options=train_options,
                             progress=True, full_seeds=[0], **cfg)
    dev = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    machine = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__, "device": dev,
               "gpu": torch.cuda.get_device_name(0) if dev.startswith("cuda") else None}
    for _, row in res["summary"].iterrows():
        print(json.dumps({"figure": "active_experiment", "strategy": row["strategy"], "method": row["method"],
                          **{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()
                             if k.startswith(("aubc_", "final_", "labels_to", "pool_share", "query_", "train_s"))}}))
    doc = {"bench": "active_experiment", "quick": args.quick, "machine": machine, "config": cfg, "seeds": seeds,
           "train_options": train_options, **{k: res["doc"].get(k) for k in ("full_pool", "summary", "verdict", "wall_s", "finished_runs")},
           "note": "CPU run on a shared 2-core machine (about 6 other engineers' jobs running); wall-clock "
                   "figures are inflated by contention. Reduced scale forced by the shared CPU (see config); "
                   "full-pool reference trained for seed 0 only."}
    print(json.dumps({"figure": "verdict", **res["verdict"]}))
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    suffix = ("_quick" if args.quick else "") + (f"_{args.tag}" if args.tag else "")
    (results / f"active_experiment{suffix}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (results / f"active_experiment{suffix}.md").write_text(markdown(res["summary"]) + "\n\n" + "\n".join(
        f"- {k}: {v}" for k, v in res["verdict"].items()) + "\n")
    shutil.copy(out / "active_curves.png", results / f"active_experiment{suffix}.png")
    shutil.copy(out / "curves.csv", results / f"active_experiment{suffix}_curves.csv")
    shutil.copy(out / "summary.csv", results / f"active_experiment{suffix}_summary.csv")


if __name__ == "__main__":
    main()
