"""`argus experiment active`: strategies x training methods x seeds on the toy world (or a dataset).

For every combination it runs the loop (`active.runner.run_active`) and, per training method and
seed, a full-pool reference (every pool item labelled). Figures per run, then mean +- std over
seeds per (strategy, method):

- accuracy vs labels: overall, minority-domain mean, worst domain (curves.csv, active_curves.png);
- normalised area under the budget curve (AUBC): trapezoid area of accuracy over the labelled
  fraction, divided by the fraction range, i.e. the mean accuracy over the budget range (in [0, 1]);
- labels needed to reach 95% of the full-pool worst-domain accuracy of the same training method
  (first round at or above it; empty when never reached) and that as a share of the pool;
- share of queries from minority domains per round;
- wall-clock per round: query (scoring + selection) vs retraining.

Outputs: summary.csv / summary.md / summary.json / curves.csv / active_curves.png.
Rerunning the same command resumes finished and half-finished runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ("overall_accuracy", "minority_mean_accuracy", "worst_domain_accuracy")


def aubc(fractions, values) -> float:
    """Normalised area under the budget curve: trapezoid area over `fractions`, / their range.

    `fractions` `[R]` labelled share of the pool (increasing), `values` `[R]` accuracies in [0, 1].
    A single point returns its value.
    """
    x = np.asarray(fractions, float)
    y = np.asarray(values, float)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"aubc: need equal, non-empty lengths (got {len(x)} and {len(y)})")
    if len(x) == 1 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.sum((y[1:] + y[:-1]) / 2.0 * np.diff(x)) / (x[-1] - x[0]))


def labels_to_reach(n_labelled, values, target: float):
    """First `n_labelled` whose value is >= `target`, or None."""
    for n, v in zip(n_labelled, values):
        if v is not None and v >= target:
            return int(n)
    return None


def full_pool_reference(out, pool, test_pool, majority, method: str, seed: int, epochs: int, train_options: dict,
                        device: str, batch_size: int, val_pool=None, min_steps: int = 0,
                        keep_runs: bool = True) -> dict:
    """Train on the whole pool (all labels) once; cached in `out/full/<method>-s<seed>.json`.
    With `val_pool` the epoch is chosen by blind model selection on it, like every round."""
    from active.loop import evaluate_per_domain
    from active.pool import pool_labels
    from active.trainers import TrainerFn

    path = Path(out) / "full" / f"{method}-s{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    idx = np.arange(len(pool))
    labels = pool_labels(pool)
    t0 = time.perf_counter()
    fn = TrainerFn(Path(out) / "full" / f"{method}-s{seed}", method=method, epochs=epochs, device=device,
                   val_pool=val_pool, min_steps=min_steps, keep_runs=keep_runs, **train_options)
    pred, _ = fn(pool, idx, labels, round=0, seed=seed * 1000, init_state=None)
    rep = evaluate_per_domain(pred, test_pool, majority, batch_size)
    res = {"method": method, "seed": seed, "n_labelled": int(len(pool)), "train_s": time.perf_counter() - t0,
           **{m: rep[m] for m in METRICS}, "per_domain": {d: v["accuracy"] for d, v in rep["per_domain"].items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2) + "\n")
    return res


def summarize(curves: pd.DataFrame, full: pd.DataFrame, pool_size: int) -> pd.DataFrame:
    """One row per (strategy, method): mean and std over seeds of every figure."""
    rows = []
    for (strategy, method, seed), g in curves.groupby(["strategy", "method", "seed"]):
        g = g.sort_values("round")
        ref = full[(full["method"] == method) & (full["seed"] == seed)]
        if ref.empty:  # references trained for fewer seeds: use the method's mean reference
            ref = full[full["method"] == method].mean(numeric_only=True).to_frame().T if (full["method"] == method).any() else ref
        target = 0.95 * float(ref["worst_domain_accuracy"].iloc[0]) if len(ref) else np.nan
        reach = labels_to_reach(g["n_labelled"], g["worst_domain_accuracy"], target) if len(ref) else None
        q = g.dropna(subset=["query_s"]) if "query_s" in g else g.iloc[0:0]
        rows.append({"strategy": strategy, "method": method, "seed": seed,
                     **{f"aubc_{m.split('_')[0]}": aubc(g["fraction_labelled"], g[m]) for m in METRICS},
                     **{f"final_{m.split('_')[0]}": float(g[m].iloc[-1]) for m in METRICS},
                     "full_pool_worst": float(ref["worst_domain_accuracy"].iloc[0]) if len(ref) else np.nan,
                     "labels_to_95pct_worst": reach,
                     "pool_share_to_95pct_worst": (reach / pool_size) if reach is not None else np.nan,
                     "query_minority_share": float(q["query_minority_share"].mean()) if len(q) else np.nan,
                     "query_s_per_round": float(q["query_s"].mean()) if len(q) else np.nan,
                     "train_s_per_round": float(g["train_s"].mean())})
    per_seed = pd.DataFrame(rows)
    figures = [c for c in per_seed.columns if c not in ("strategy", "method", "seed")]
    agg = []
    for (strategy, method), g in per_seed.groupby(["strategy", "method"], sort=False):
        row = {"strategy": strategy, "method": method, "seeds": len(g)}
        for c in figures:
            vals = pd.to_numeric(g[c], errors="coerce")
            row[c] = float(vals.mean()) if vals.notna().any() else np.nan
            row[c + "_std"] = float(vals.std(ddof=0)) if vals.notna().sum() > 1 else np.nan
        row["reached_95pct_worst"] = f"{int(g['labels_to_95pct_worst'].notna().sum())}/{len(g)}"
        agg.append(row)
    return pd.DataFrame(agg), per_seed


def t_half_width(values) -> float:
    """Half-width of the 95% t-interval of the mean of `values` (NaNs dropped; NaN for fewer
    than 2 values)."""
    from scipy import stats

    v = np.asarray([x for x in values if x == x], float)
    if len(v) < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def paired_gain(per_seed: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], key: str) -> dict | None:
    """Mean of `a - b` over the seeds both ran, with its 95% t-interval; `result` is "better" or
    "worse" only when the interval excludes 0 (None when no seed is shared)."""
    def col(pair):
        rows = per_seed[(per_seed["strategy"] == pair[0]) & (per_seed["method"] == pair[1])]
        return rows.set_index("seed")[key]

    diff = (col(a) - col(b)).dropna()
    if diff.empty:
        return None
    mean = float(diff.mean())
    half = t_half_width(diff)
    lo, hi = mean - half, mean + half
    result = "better" if lo > 0 else "worse" if hi < 0 else "no evidence"
    return {"gain": mean, "ci95": [lo, hi], "seeds": len(diff), "result": result}


def verdict(summary: pd.DataFrame, per_seed: pd.DataFrame) -> dict:
    """The dissertation's claim, checked with paired seeds: margin + center-distance against
    random + ERM and margin + ERM (gain, interval, result; None where a combination is missing),
    whether it has the best mean worst-domain AUBC of the pairs run, and whether every seed reaches
    95% of the full-pool worst-domain accuracy with at most 30% of the pool labelled."""
    mc = ("margin", "center-distance")
    have = set(zip(summary["strategy"], summary["method"]))
    out = {}
    for key in ("aubc_minority", "aubc_worst"):
        for other in (("random", "erm"), ("margin", "erm")):
            name = f"margin+cd {key} vs {other[0]}+{other[1]}"
            out[name] = paired_gain(per_seed, mc, other, key) if {mc, other} <= have else None
    if mc in have:
        best = summary.sort_values("aubc_worst", ascending=False).iloc[0]
        out["margin+cd best aubc_worst of the pairs run"] = {
            "result": bool((best["strategy"], best["method"]) == mc), "pairs_run": len(have)}
        r = summary[(summary["strategy"] == mc[0]) & (summary["method"] == mc[1])].iloc[0]
        reached, seeds = (int(x) for x in r["reached_95pct_worst"].split("/"))
        out["margin+cd reaches 95% full-pool worst with <= 30% labelled (all seeds)"] = bool(
            reached == seeds and r["pool_share_to_95pct_worst"] <= 0.30)
    else:
        out["margin+cd best aubc_worst of the pairs run"] = None
        out["margin+cd reaches 95% full-pool worst with <= 30% labelled (all seeds)"] = None
    return out


def markdown(summary: pd.DataFrame) -> str:
    cols = ["strategy", "method", "seeds", "aubc_overall", "aubc_minority", "aubc_worst", "final_worst",
            "full_pool_worst", "labels_to_95pct_worst", "reached_95pct_worst", "query_minority_share",
            "query_s_per_round", "train_s_per_round"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in summary.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, float):
                sd = r.get(c + "_std", np.nan)
                cells.append("" if np.isnan(v) else (f"{v:.3f}" + (f" ± {sd:.3f}" if isinstance(sd, float) and not np.isnan(sd) else "")))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(curves: pd.DataFrame, path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for (strategy, method), g in curves.groupby(["strategy", "method"]):
        mean = g.groupby("n_labelled")[list(METRICS) + ["query_minority_share"]].mean()
        label = f"{strategy} + {method}"
        for ax, m in zip(axes, list(METRICS) + ["query_minority_share"]):
            ax.plot(mean.index, mean[m], marker="o", ms=3, label=label)
    for ax, title in zip(axes, ("overall accuracy", "minority-domain mean accuracy", "worst-domain accuracy",
                                "minority share of queries")):
        ax.set_title(title)
        ax.set_xlabel("labelled items")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def collect_finished(out, rounds: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curves of the runs under `out/runs/` that completed `rounds` rounds, and the full-pool
    references in `out/full/` (for summarising an experiment that was stopped early)."""
    curves, full = [], []
    for hist in sorted(Path(out).glob("runs/*/history.csv")):
        h = pd.read_csv(hist)
        if len(h) < rounds + 1:
            continue
        cfg = json.loads((hist.parent / "state.json").read_text())["config"]
        strategy, method, seed = cfg["strategy"], cfg["train_method"], cfg["seed"]
        curves += [{"strategy": strategy, "method": method, "seed": seed, **r} for r in h.to_dict("records")]
    for ref in sorted(Path(out).glob("full/*.json")):
        full.append(json.loads(ref.read_text()))
    return pd.DataFrame(curves), pd.DataFrame(full)


def run_experiment(out, strategies, methods, seeds, *, pool_size=3000, test_size=600, image_size=32, rounds=5,
                   budget=150, initial_size=150, epochs=10, full_epochs=None, device="auto", batch_size=256,
                   train_options=None, data=None, progress=True, combos=None, full_seeds=None) -> dict:
    """Run the grid (or only the `(strategy, method)` pairs in `combos`) and write the summary
    files; returns `{"summary", "per_seed", "verdict", ...}`. `full_seeds` limits the full-pool
    references to those seeds (their mean is the reference of the other seeds)."""
    from training.progress import progress_bar as tqdm

    from active.runner import build_pools, run_active

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_options = dict(train_options or {})
    curves, full = [], []
    pairs = list(combos) if combos else [(s, m) for m in methods for s in strategies]
    methods = sorted({m for _, m in pairs})
    grid = [(s, m, seed) for seed in seeds for s, m in pairs]
    t_start = time.perf_counter()
    for seed in (seeds if full_seeds is None else full_seeds):
        pool, test, majority = build_pools(data, pool_size, test_size, image_size, None, seed)
        for m in methods:
            full.append(full_pool_reference(out, pool, test, majority, m, seed, full_epochs or epochs, train_options,
                                            device, batch_size))
    for s, m, seed in tqdm(grid, desc="experiment runs", disable=not progress):
        pool, test, majority = build_pools(data, pool_size, test_size, image_size, None, seed)
        hist = run_active(out / "runs" / f"{s}-{m}-s{seed}", pool, test, majority, strategy=s, train_method=m,
                          rounds=rounds, budget=budget, initial_size=initial_size, seed=seed, epochs=epochs,
                          device=device, batch_size=batch_size, train_options=train_options, progress=False)
        for row in hist:
            curves.append({"strategy": s, "method": m, "seed": seed, **row})
    curves_df = pd.DataFrame(curves)
    full_df = pd.DataFrame(full)
    summary, per_seed = summarize(curves_df, full_df, pool_size if data is None else len(pool))
    ver = verdict(summary, per_seed)
    curves_df.to_csv(out / "curves.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    per_seed.to_csv(out / "per_seed.csv", index=False)
    (out / "summary.md").write_text(markdown(summary) + "\n")
    plot_curves(curves_df, out / "active_curves.png")
    doc = {"config": {"combinations": [list(p) for p in pairs], "seeds": list(seeds),
                      "pool_size": pool_size, "test_size": test_size, "image_size": image_size, "rounds": rounds,
                      "budget": budget, "initial_size": initial_size, "epochs": epochs, "data": data,
                      "train_options": train_options},
           "full_pool": full, "summary": json.loads(summary.to_json(orient="records")),
           "per_seed": json.loads(per_seed.to_json(orient="records")), "verdict": ver,
           "wall_s": time.perf_counter() - t_start}
    (out / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    return {"summary": summary, "per_seed": per_seed, "verdict": ver, "curves": curves_df, "doc": doc}
