"""Comparing training methods over paired seeds: the blind-domain experiment's statistics.

Input: per-run records (one `result.json` of `training.experiments.train_and_evaluate` per
method and seed: `label` or `method`, `seed`, `selections[rule].metrics` and
`selections[rule].test.per_domain`, `rows_seen`). Runs of different methods with the same seed
share the data split and initial weights, so methods are compared *paired by seed*.

Every figure is a mean over seeds in points with a 95% percentile bootstrap interval over seeds
(the one bootstrap of `analysis._bootstrap`: statistics as ratios of sums over units, here
seeds); paired differences (majority retention, minority gain, worst-domain gain vs ERM and vs
JTT) get the same interval over per-seed differences plus a two-sided Wilcoxon signed-rank test
(scipy). Gap closure is `(WDA - WDA_ERM) / (WDA_oracle - WDA_ERM)` from seed means, bootstrapped
jointly over seeds, and undefined when the oracle does not beat ERM.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ._bootstrap import bootstrap

SELECTIONS = ("worst_class", "oracle_worst_domain")
METRIC_LABELS = {  # metrics compared across methods, with their column label
    "overall_accuracy": "overall",
    "majority_accuracy": "majority",
    "minority_mean_accuracy": "minority mean",
    "worst_domain_accuracy": "worst domain",
    "p10_domain_accuracy": "p10 domain",
}
MANY_DOMAINS = 5
N_BOOT = 2000


# ----------------------------------------------------------------------------- statistics

def mean_ci(values, confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over seeds, `(low, high)`; NaNs are dropped.
    One value (or no spread) gives a degenerate interval at that value."""
    x = np.asarray([v for v in values if not np.isnan(v)], dtype=float)
    if len(x) == 0:
        return (float("nan"), float("nan"))
    _, lo, hi, _ = bootstrap(lambda s: s["x"] / s["n"], {"x": x, "n": np.ones(len(x))}, n_boot=n_boot, seed=seed,
                             confidence=confidence)
    return (float(lo), float(hi))


def describe(values) -> dict:
    """`{mean, std, ci_low, ci_high, n}` of per-seed values (std with ddof=1; 0 for one seed)."""
    v = np.asarray(values, dtype=float)
    ok = v[~np.isnan(v)]
    lo, hi = mean_ci(ok)
    return {"mean": float(ok.mean()) if len(ok) else float("nan"),
            "std": float(ok.std(ddof=1)) if len(ok) > 1 else 0.0, "ci_low": lo, "ci_high": hi, "n": int(len(ok))}


def paired_wilcoxon(a, b) -> dict:
    """Two-sided paired Wilcoxon signed-rank test over seeds (scipy.stats.wilcoxon).

    `a`, `b`: per-seed values in the same seed order. Returns `{"n", "mean_diff", "p"}`; `p` is
    NaN when fewer than 2 pairs or all differences are zero (the test is undefined there).
    With 5 seeds the smallest two-sided exact p-value is 0.0625; with 10 seeds 0.002.
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    out = {"n": int(len(a)), "mean_diff": float(np.mean(a - b)) if len(a) else float("nan"), "p": float("nan")}
    if len(a) >= 2 and np.any(a != b):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["p"] = float(stats.wilcoxon(a, b).pvalue)
    return out


def paired_difference(a, b) -> dict:
    """Per-seed differences `a - b`: `describe` (mean, std, bootstrap CI) plus the Wilcoxon p."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return {**describe(a - b), "p": paired_wilcoxon(a, b)["p"]}


def gap_closure(wda, wda_ref, wda_oracle, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """`(mean WDA - mean WDA_ref) / (mean WDA_oracle - mean WDA_ref)` over paired seeds with a
    joint bootstrap interval over seeds; NaN (undefined) where the oracle does not beat the
    reference (no gap to close), in the estimate and in each resample."""
    a, r, o = (np.asarray(x, dtype=float) for x in (wda, wda_ref, wda_oracle))

    def stat(s):
        den = s["o"] - s["r"]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 1e-9 * s["n"], (s["a"] - s["r"]) / den, np.nan)

    value, lo, hi, _ = bootstrap(stat, {"a": a, "r": r, "o": o, "n": np.ones(len(a))}, n_boot=n_boot, seed=seed)
    return {"value": float(value), "ci_low": float(lo), "ci_high": float(hi),
            "oracle_minus_erm_wda": float(o.mean() - r.mean())}


# ----------------------------------------------------------------------------- tables

def label_of(record: dict) -> str:
    return record.get("label") or record["method"]


def records_frame(records: list[dict], selection: str = "worst_class") -> pd.DataFrame:
    """One row per run: label, method, seed, epoch, rows_seen, headline metrics and
    `acc:<domain>` columns, in points."""
    rows = []
    for r in records:
        sel = r["selections"][selection]
        row = {"label": label_of(r), "method": r["method"], "seed": int(r["seed"]), "epoch": sel.get("epoch"),
               "epochs": r.get("epochs"), "rows_seen": r.get("rows_seen"), "config": r.get("config", "")}
        for key in METRIC_LABELS:
            row[key] = 100.0 * sel["metrics"][key]
        for d, v in sel["test"]["per_domain"].items():
            row[f"acc:{d}"] = 100.0 * (v["accuracy"] if isinstance(v, dict) else float(v))
        rows.append(row)
    return pd.DataFrame(rows)


def _default_oracle(records: list[dict]) -> str | None:
    return next((label_of(r) for r in records if r["method"].endswith("-oracle")), None)


def summarize(records: list[dict], selection: str = "worst_class", reference: str = "erm",
              oracle: str | None = None, jtt: str = "jtt", domains: list[str] | None = None) -> dict:
    """Aggregate per-run results into the comparison table (all accuracies in points).

    Rows are labels (a record's `label`, else its `method`). Returns `table` (DataFrame, one row
    per label, "mean ± std" strings), `numbers` (label -> column -> {mean, std, ci_low, ci_high,
    n}, plus the paired differences `majority_retention`, `minority_gain`, `wda_gain_vs_erm`,
    `wda_minus_jtt`), `tests` (Wilcoxon vs the reference and vs JTT), `gap_closure` and
    `per_seed` (the long frame). `oracle`: the oracle's label (default: the first method named
    `*-oracle`).
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection={selection!r} must be one of {SELECTIONS}")
    if not records:
        raise ValueError("summarize: no finished runs")
    oracle = oracle or _default_oracle(records)
    frame = records_frame(records, selection)
    labels = list(dict.fromkeys(frame["label"]))
    if domains is None:
        domains = sorted({c[4:] for c in frame.columns if c.startswith("acc:")})
    metric_cols = list(METRIC_LABELS) + [f"acc:{d}" for d in domains]
    by = {m: frame[frame["label"] == m].sort_values("seed").set_index("seed") for m in labels}

    def paired(m, ref, col):
        common = by[m].index.intersection(by[ref].index)
        return by[m].loc[common, col].to_numpy(float), by[ref].loc[common, col].to_numpy(float)

    numbers: dict = {}
    tests: dict = {}
    for m in labels:
        numbers[m] = {col: describe(by[m][col] if col in by[m] else [np.nan]) for col in metric_cols}
        diffs = [("majority_retention", reference, "majority_accuracy"), ("minority_gain", reference, "minority_mean_accuracy"),
                 ("wda_gain_vs_erm", reference, "worst_domain_accuracy"), ("wda_minus_jtt", jtt, "worst_domain_accuracy")]
        for name, ref, col in diffs:
            if ref in by and ref != m:
                a, b = paired(m, ref, col)
                if len(a):
                    numbers[m][name] = paired_difference(a, b)
        tests[m] = {}
        for ref in (reference, jtt):
            if ref != m and ref in by:
                tests[m][f"vs_{ref}"] = {col: paired_wilcoxon(*paired(m, ref, col))
                                         for col in ("worst_domain_accuracy", "minority_mean_accuracy", "majority_accuracy")}
    gap = {}
    if reference in by and oracle in by:
        for m in labels:
            seeds = by[m].index.intersection(by[reference].index).intersection(by[oracle].index)
            if len(seeds):
                gap[m] = gap_closure(*(by[k].loc[seeds, "worst_domain_accuracy"].to_numpy(float) for k in (m, reference, oracle)))
    rows = []
    for m in labels:
        n = numbers[m]
        row = {"method": m, "seeds": n["worst_domain_accuracy"]["n"]}
        for d in domains:
            row[d] = _fmt(n[f"acc:{d}"])
        for key, label in METRIC_LABELS.items():
            if key == "p10_domain_accuracy" and len(domains) < MANY_DOMAINS:
                continue
            row[label] = _fmt(n[key])
        row["WDA 95% CI"] = _ci(n["worst_domain_accuracy"])
        for name, label in (("majority_retention", "maj. retention vs ERM"), ("minority_gain", "min. gain vs ERM"),
                            ("wda_gain_vs_erm", "WDA gain vs ERM [95% CI]"), ("wda_minus_jtt", "WDA - JTT [95% CI]")):
            row[label] = "" if name not in n else (_fmt(n[name], signed=True) if "[" not in label
                                                   else f"{n[name]['mean']:+.1f} {_ci(n[name])}")
        for ref in (reference, jtt):
            t = tests[m].get(f"vs_{ref}", {}).get("worst_domain_accuracy")
            row[f"p WDA vs {ref.upper()}"] = "" if t is None or math.isnan(t["p"]) else f"{t['p']:.3g}"
        if m not in gap:
            row["gap closure"] = ""
        elif math.isnan(gap[m]["value"]):
            row["gap closure"] = "undefined (oracle WDA <= ERM)"
        else:
            row["gap closure"] = "{:.2f} [{:.2f}, {:.2f}]".format(gap[m]["value"], gap[m]["ci_low"], gap[m]["ci_high"])
        rows_m = by[m]["rows_seen"].astype(float).mean()
        rows_ref = by[reference]["rows_seen"].astype(float).mean() if reference in by else np.nan
        row["compute vs ERM"] = "" if np.isnan(rows_m) or np.isnan(rows_ref) else f"{rows_m / rows_ref:.2f}x"
        rows.append(row)
    table = pd.DataFrame(rows)
    table["method"] = [m + (" (oracle)" if m == oracle else "") for m in table["method"]]
    return {"selection": selection, "domains": domains, "table": table, "numbers": numbers, "tests": tests,
            "gap_closure": gap, "per_seed": frame, "oracle": oracle}


def _fmt(stat: dict | None, signed: bool = False) -> str:
    if stat is None or math.isnan(stat["mean"]):
        return ""
    sign = "+" if signed else ""
    return f"{stat['mean']:{sign}.1f} ± {stat['std']:.1f}"


def _ci(stat: dict) -> str:
    return "[{:.1f}, {:.1f}]".format(stat["ci_low"], stat["ci_high"])


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-markdown rendering of a summary table (no extra dependency)."""
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def plot_summary(summary: dict, path, oracle_summary: dict | None = None, title: str | None = None) -> Path:
    """Two panels: per-domain test accuracy per method (bars, ±std), and worst-domain vs
    majority accuracy per method (mean ± std; hollow markers = oracle model selection)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numbers, domains = summary["numbers"], summary["domains"]
    methods = list(numbers)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(min(16, 6 + 0.3 * len(methods) * max(1, len(domains))), 5),
                                   gridspec_kw={"width_ratios": [2, 1]})
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(domains))
    cmap = plt.get_cmap("tab10")
    for i, m in enumerate(methods):
        means = [numbers[m][f"acc:{d}"]["mean"] for d in domains]
        stds = [numbers[m][f"acc:{d}"]["std"] for d in domains]
        ax1.bar(x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
                label=m + (" (oracle)" if m == summary.get("oracle") else ""), color=cmap(i % 10))
    ax1.set_xticks(x, domains, rotation=30 if len(domains) > 6 else 0)
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_title(title or "per-domain accuracy (worst-class val selection)")
    lows = [numbers[m][f"acc:{d}"]["mean"] for m in methods for d in domains]
    ax1.set_ylim(max(0, min(lows) - 10) if lows else 0, 100)
    ax1.legend(fontsize=7, ncol=2)
    for i, m in enumerate(methods):
        for s, hollow in ((summary, False), (oracle_summary, True)):
            if s is None or m not in s["numbers"]:
                continue
            n = s["numbers"][m]
            ax2.errorbar(n["majority_accuracy"]["mean"], n["worst_domain_accuracy"]["mean"],
                         xerr=n["majority_accuracy"]["std"], yerr=n["worst_domain_accuracy"]["std"],
                         fmt="o", mfc="none" if hollow else cmap(i % 10), color=cmap(i % 10),
                         label=None if hollow else m)
    ax2.set_xlabel("majority-domain accuracy (%)")
    ax2.set_ylabel("worst-domain accuracy (%)")
    ax2.set_title("trade-off (hollow: oracle selection)")
    return _save(fig, path, dpi=130)


def _save(fig, path, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_curves(records: list[dict], path, labels=None, title: str | None = None) -> Path:
    """Learning curves (mean over seeds): worst-class validation accuracy (the blind selection
    score) and per-domain test accuracy per epoch, one panel per label -- the evidence that a
    run has converged (validation has stopped improving) and where the minority gap sits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels or list(dict.fromkeys(label_of(r) for r in records))
    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 3.6), squeeze=False, sharey=True)
    for ax, lab in zip(axes[0], labels):
        runs = [r for r in records if label_of(r) == lab and r.get("curve")]
        if not runs:
            continue
        n = min(len(r["curve"]) for r in runs)
        epochs = np.arange(1, n + 1)
        val = np.array([[np.nan if c.get("val_worst_class_accuracy") is None else c["val_worst_class_accuracy"]
                         for c in r["curve"][:n]] for r in runs], dtype=float)
        val = np.nanmean(val, 0) if np.isfinite(val).any() else np.full(n, np.nan)
        ax.plot(epochs, 100 * val, "k--", label="val worst class")
        for d in runs[0]["curve"][0]["test"]:
            ax.plot(epochs, 100 * np.mean([[c["test"][d] for c in r["curve"][:n]] for r in runs], 0), label=f"test {d}")
        ax.set_title(f"{lab} ({len(runs)} seeds)")
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi=120)


def write_summary(records: list[dict], out, labels=None, name: str = "summary", title: str | None = None) -> dict:
    """Summaries under both selection rules: `<name>.{md,csv,json}`, `<name>_oracle_selection.csv`,
    `<name>_per_seed.csv` and `<name>.png` in `out`. Returns the worst-class summary with
    `oracle_selection` (the same runs selected by worst-domain validation accuracy)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if labels:
        order = {m: i for i, m in enumerate(labels)}
        records = sorted(records, key=lambda r: (order.get(label_of(r), len(order)), r["seed"]))
    majority = records[0].get("majority_domain")
    names = sorted({d for r in records for d in r["selections"]["worst_class"]["test"]["per_domain"]})
    domains = sorted(names, key=lambda d: (d != majority, d))  # majority first
    main = summarize(records, "worst_class", domains=domains)
    oracle = summarize(records, "oracle_worst_domain", domains=main["domains"])
    table = main["table"].copy()
    oracle_wda = {m: _fmt(oracle["numbers"][m]["worst_domain_accuracy"]) for m in oracle["numbers"]}
    table.insert(list(table.columns).index("WDA 95% CI") + 1, "worst domain (oracle sel.)",
                 [oracle_wda[m] for m in main["numbers"]])
    main["table"] = table
    main["per_seed"].to_csv(out / f"{name}_per_seed.csv", index=False)
    table.to_csv(out / f"{name}.csv", index=False)
    oracle["table"].to_csv(out / f"{name}_oracle_selection.csv", index=False)
    plot = plot_summary(main, out / f"{name}.png", oracle_summary=oracle, title=title)
    doc = {
        "selection": "worst-class validation accuracy (no domain labels); oracle: worst-domain validation accuracy",
        "domains": main["domains"], "majority_domain": majority, "oracle": main["oracle"],
        "table": table.to_dict(orient="records"),
        "numbers": main["numbers"], "tests": main["tests"], "gap_closure": main["gap_closure"],
        "oracle_selection": {"numbers": oracle["numbers"], "gap_closure": oracle["gap_closure"],
                             "table": oracle["table"].to_dict(orient="records")},
        "runs": len(records), "plot": plot.name,
    }
    (out / f"{name}.json").write_text(json.dumps(finite(doc), indent=2, default=_json_default))
    (out / f"{name}.md").write_text(
        (f"# {title}\n\n" if title else "")
        + "## Test accuracy per domain (%), model selected by worst-class val accuracy\n\n"
        + markdown_table(table)
        + "\n\n## Same runs, model selected by worst-domain val accuracy (oracle selection)\n\n"
        + markdown_table(oracle["table"]) + "\n")
    main["oracle_selection"] = oracle
    return main


def finite(obj):
    """NaN -> None all the way down, so a document is valid JSON."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and math.isnan(obj):
        return None
    return obj


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return str(obj)
