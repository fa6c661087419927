"""Flag precision of the worker-quality model over simulated crowds.

20 crowds (seeds 1000..1019; `--first-seed` for others), each with a different size (40..200 workers) and mix (spammers
U(0, 30%), adversarial U(0, 5%), honest-but-weak U(10, 30%), the rest reliable;
sim/crowd_judgments.py), two task kinds (rate_arguments with gold per argument, label),
visits of 10 tasks with 2 gold. For each crowd, side by side:

- `worker_quality` (analysis/quality.py): flagged = flagged in any kind;
- the previous rule: Dawid-Skene spammer score < 0.1 (the report's `is_spammer`) or gold
  accuracy < 0.7 after >= 3 gold answers (the crowd server's flag).

Figures: spammer recall (target >= 0.95), share of reliable workers flagged (target <= 0.02),
and for information honest-but-weak and adversarial workers flagged.

Usage: python bench/worker_flags.py [--crowds 20]
Prints one JSON line per crowd and a summary; writes bench/results/worker_flags.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis.aggregate import DawidSkene, spammer_scores  # noqa: E402
from analysis.quality import gold_parts, worker_flags, worker_quality  # noqa: E402
from analysis_speed import machine  # noqa: E402
from sim.crowd_judgments import random_mix, simulate_judgments  # noqa: E402


def previous_rule(frame: pd.DataFrame) -> pd.Series:
    """The flags of the earlier review rule: spammer score < 0.1 on the rate_arguments items (>= 5
    answers), or server-style gold accuracy (mean part score per gold task) < 0.7 after >= 3
    gold tasks."""
    flagged = pd.Series(False, index=pd.Index(sorted(frame["worker"].unique()), name="worker"))
    args = frame[frame["item"].str.startswith("arg:")]
    units = args.assign(task=args["task"] + ":" + args["item"])
    ds = DawidSkene().fit(units[["task", "worker", "label"]])
    score = pd.Series(spammer_scores(ds.confusions_), index=ds.skills_.index)
    n = units.groupby("worker").size().reindex(score.index)
    flagged[score.index[(score < 0.1) & (n >= 5)]] = True
    parts = gold_parts(frame)
    per_task = parts.groupby(["worker", "task"])["correct"].mean()
    gold = per_task.groupby("worker").agg(["mean", "size"])
    flagged[gold.index[(gold["mean"] < 0.7) & (gold["size"] >= 3)]] = True
    return flagged


def rates(flags: pd.Series, roster: pd.DataFrame) -> dict:
    m = roster.set_index("worker")["type"]
    f = flags.reindex(m.index).fillna(False).astype(bool)
    out = {}
    for t in ("spammer", "reliable", "weak", "adversarial"):
        sel = (m == t).to_numpy()
        out[t] = {"n": int(sel.sum()), "flagged": int(f[sel].sum())}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crowds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1000, help="crowd i uses seed first_seed + i")
    ap.add_argument("--kappa-threshold", type=float, default=None, help="default: worker_quality's")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "worker_flags.json"))
    args = ap.parse_args()
    per_crowd, totals = [], {"quality": {}, "previous": {}}
    t0 = time.perf_counter()
    for i in range(args.crowds):
        seed = args.first_seed + i
        rng = np.random.default_rng(seed)
        n_workers = int(rng.integers(40, 201))
        mix = random_mix(rng, max_spammers=0.3)
        frame, roster = simulate_judgments(n_workers, mix, seed=seed)
        t = time.perf_counter()
        kw = {} if args.kappa_threshold is None else {"kappa_threshold": args.kappa_threshold}
        q = worker_flags(worker_quality(frame, **kw)).set_index("worker")
        seconds = time.perf_counter() - t
        row = {"crowd": i, "seed": seed, "workers": n_workers, "judgments": len(frame),
               "mix": {k: round(v, 3) for k, v in mix.items()}, "seconds": round(seconds, 2),
               "quality": rates(q["flagged"], roster), "previous": rates(previous_rule(frame), roster)}
        false_flags = roster.merge(q.reset_index(), on="worker")
        row["reliable_flagged_reasons"] = false_flags.loc[(false_flags["type"] == "reliable") & false_flags["flagged"],
                                                          "reasons"].tolist()
        print(json.dumps(row), flush=True)
        per_crowd.append(row)
        for method in totals:
            for t_, v in row[method].items():
                acc = totals[method].setdefault(t_, {"n": 0, "flagged": 0})
                acc["n"] += v["n"]
                acc["flagged"] += v["flagged"]
    summary = {}
    for method, by_type in totals.items():
        share = {t: (v["flagged"] / v["n"] if v["n"] else None) for t, v in by_type.items()}
        summary[method] = {"spammer_recall": share["spammer"], "reliable_flagged": share["reliable"],
                           "weak_flagged": share["weak"], "adversarial_recall": share["adversarial"],
                           "counts": by_type,
                           "worst_crowd_spammer_recall": min(
                               (r[method]["spammer"]["flagged"] / r[method]["spammer"]["n"])
                               for r in per_crowd if r[method]["spammer"]["n"]),
                           "worst_crowd_reliable_flagged": max(
                               r[method]["reliable"]["flagged"] / r[method]["reliable"]["n"]
                               for r in per_crowd if r[method]["reliable"]["n"])}
    q = summary["quality"]
    summary["targets"] = {"spammer_recall_ge_0.95": q["spammer_recall"] >= 0.95,
                          "reliable_flagged_le_0.02": q["reliable_flagged"] <= 0.02}
    record = {"figure": "worker_flags_summary", **summary, "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(record), flush=True)
    doc = {"bench": "worker_flags", "machine": machine(), "crowds": per_crowd, "summary": record,
           "note": "CPU, shared 2-core machine; figures are counts, not timings (seconds are indicative)."}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
