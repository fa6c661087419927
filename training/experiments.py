"""The blind-domains experiment: every method on the same splits and seeds, tested per domain.

`run_blind_domains` trains each (method, seed) pair (resumable: a run whose `result.json`
exists is skipped), selects its epoch twice -- by worst-class validation accuracy (no domain
labels: the default, the headline) and by worst-domain validation accuracy (the oracle choice,
reported beside it) -- and `summarize` turns the per-run test results into one table:

per-domain accuracy, majority-domain accuracy, minority mean, worst-domain accuracy (WDA),
10th-percentile domain accuracy (with >= 5 domains), majority retention and minority gain vs
ERM (points), gap closure `(WDA - WDA_ERM) / (WDA_oracle - WDA_ERM)` with GroupDRO (oracle) as
the oracle; every figure as mean +- std over seeds with a 95% bootstrap CI (scipy), and paired
Wilcoxon signed-rank tests vs ERM and vs JTT over seeds (scipy).

Domain labels are read here, and only here, for evaluation; the methods never see them (except
`groupdro-oracle`, which is an oracle by construction).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_METHODS = ("erm", "class-balanced", "focal", "center", "distance-sampling",
                   "center-distance", "jtt", "groupdro-oracle")
ORACLE_METHOD = "groupdro-oracle"
SELECTIONS = ("worst_class", "oracle_worst_domain")
# metrics compared across methods, with the column label used in tables
METRIC_LABELS = {
    "overall_accuracy": "overall",
    "majority_accuracy": "majority",
    "minority_mean_accuracy": "minority mean",
    "worst_domain_accuracy": "worst domain",
    "p10_domain_accuracy": "p10 domain",
}
MANY_DOMAINS = 5


# ----------------------------------------------------------------------------- data

def subsample_domains(table: pd.DataFrame, ratio: float, seed: int = 0,
                      splits=("train", "val")) -> pd.DataFrame:
    """Subsample minority domains so that each has at most `1/ratio` of the largest domain.

    Applies to the rows of `splits` (train and val by default: the distribution the model
    learns and is selected on); the test split is kept whole so every domain is measured on as
    many samples as exist. The largest domain (counted in the first of `splits`) keeps all its
    rows; every other labelled domain keeps `min(n_d, floor(n_major / ratio))` rows per split,
    drawn stratified by class with a seeded generator. Rows with an empty domain are kept.

    `table` is a `samples.csv` frame (`sample_id, path, label, domain, split`); returns a new
    frame with the original row order.
    """
    if not ratio >= 1:
        raise ValueError(f"--imbalance: ratio={ratio} must be >= 1 (majority : minority)")
    for col in ("label", "domain", "split"):
        if col not in table.columns:
            raise ValueError(f"--imbalance: samples.csv has no '{col}' column")
    dom = table["domain"].fillna("").astype(str)
    first = table[(table["split"] == splits[0]) & (dom != "")]
    if first.empty:
        raise ValueError(f"--imbalance: no domain-labelled rows in split '{splits[0]}'; "
                         "the dataset needs a domain column (samples.csv or domains.csv)")
    counts = first.groupby(dom[first.index]).size()
    major = counts.idxmax()
    rng = np.random.default_rng(seed)
    keep = np.ones(len(table), dtype=bool)
    pos = pd.Series(np.arange(len(table)), index=table.index)
    for split in splits:
        in_split = table["split"] == split
        n_major = int(((dom == major) & in_split).sum())
        target = int(math.floor(n_major / ratio))
        for d in sorted(set(dom[in_split]) - {major, ""}):
            rows = table[in_split & (dom == d)]
            if len(rows) <= target:
                continue
            # stratified by class: each class keeps its share, largest remainders first
            by_class = rows.groupby("label").size()
            quota = by_class / len(rows) * target
            take = np.floor(quota).astype(int)
            rest = target - int(take.sum())
            if rest > 0:
                order = (quota - take).sort_values(ascending=False, kind="stable").index[:rest]
                take[order] += 1
            for label, n_take in take.items():
                idx = rows.index[rows["label"] == label].to_numpy()
                drop = rng.permutation(len(idx))[n_take:]
                keep[pos[idx[drop]].to_numpy()] = False
    return table[keep].copy()


def write_imbalanced_dataset(src_root, out_root, ratio: float, seed: int = 0) -> Path:
    """Write a dataset folder at `out_root` whose samples.csv is `subsample_domains` of the source.

    Images are not copied: `path` is rewritten relative to `out_root`. Returns `out_root`.
    """
    src_root, out_root = Path(src_root).resolve(), Path(out_root)
    csv = src_root / "samples.csv"
    if not csv.exists():
        # ImageFolder + domains.csv: let the dataset loader make (and record) the split first
        from training.datasets import load_dataset

        table = load_dataset(src_root).table
    else:
        table = pd.read_csv(csv, keep_default_na=False)
    sub = subsample_domains(table, ratio, seed)
    out_root.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(src_root, out_root.resolve())
    sub["path"] = [os.path.normpath(os.path.join(rel, p)) for p in sub["path"].astype(str)]
    sub.to_csv(out_root / "samples.csv", index=False)
    for extra in ("parts.json",):
        if (src_root / extra).exists():
            (out_root / extra).write_text((src_root / extra).read_text())
    (out_root / "imbalance.json").write_text(json.dumps(
        {"source": str(src_root), "ratio": ratio, "seed": seed,
         "train_domain_counts": sub[sub["split"] == "train"]["domain"].astype(str).value_counts().to_dict()},
        indent=2))
    return out_root


# ----------------------------------------------------------------------------- metrics

def domain_metrics(per_domain: dict, majority_domain: str) -> dict:
    """Headline numbers of one run from its per-domain accuracies.

    `per_domain`: domain -> {"accuracy": float in [0, 1], "n": int} (or domain -> float).
    `majority_domain`: the domain with most *training* rows. Returns accuracies in [0, 1]:
    majority_accuracy, minority_mean_accuracy (unweighted mean over the other domains),
    worst_domain_accuracy, p10_domain_accuracy (10th percentile over domains, linear
    interpolation; NaN with fewer than 5 domains), overall_accuracy (sample-weighted).
    """
    acc = {d: (v["accuracy"] if isinstance(v, dict) else float(v)) for d, v in per_domain.items()}
    n = {d: (v.get("n", 1) if isinstance(v, dict) else 1) for d, v in per_domain.items()}
    if majority_domain not in acc:
        raise ValueError(f"majority domain {majority_domain!r} has no test accuracy; domains: {sorted(acc)}")
    minority = [a for d, a in acc.items() if d != majority_domain]
    values = np.array(list(acc.values()), dtype=float)
    total = sum(n.values())
    return {
        "majority_accuracy": acc[majority_domain],
        "minority_mean_accuracy": float(np.mean(minority)) if minority else float("nan"),
        "worst_domain_accuracy": float(values.min()),
        "p10_domain_accuracy": float(np.percentile(values, 10)) if len(values) >= MANY_DOMAINS else float("nan"),
        "overall_accuracy": float(sum(acc[d] * n[d] for d in acc) / total) if total else float("nan"),
    }


def bootstrap_ci(values, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0):
    """Percentile bootstrap CI of the mean over seeds (scipy.stats.bootstrap). `(low, high)`."""
    from scipy import stats

    x = np.asarray([v for v in values if not np.isnan(v)], dtype=float)
    if len(x) == 0:
        return (float("nan"), float("nan"))
    if np.all(x == x[0]):  # one seed, or no spread: the bootstrap is degenerate
        return (float(x[0]), float(x[0]))
    res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", random_state=np.random.default_rng(seed))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def paired_wilcoxon(a, b) -> dict:
    """Two-sided paired Wilcoxon signed-rank test over seeds (scipy.stats.wilcoxon).

    `a`, `b`: per-seed values in the same seed order. Returns `{"n", "mean_diff", "p"}`; `p` is
    NaN when fewer than 2 pairs or all differences are zero (the test is undefined there).
    With 5 seeds the smallest two-sided exact p-value is 0.0625.
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


def _records_frame(records: list[dict], selection: str) -> pd.DataFrame:
    """One row per (method, seed): headline metrics + `acc:<domain>` columns, in points."""
    rows = []
    for r in records:
        sel = r["selections"][selection]
        test = sel["test"]
        row = {"method": r["method"], "seed": int(r["seed"]), "epoch": sel.get("epoch")}
        for key in METRIC_LABELS:
            row[key] = 100.0 * sel["metrics"][key]
        for d, v in test["per_domain"].items():
            row[f"acc:{d}"] = 100.0 * (v["accuracy"] if isinstance(v, dict) else float(v))
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(records: list[dict], selection: str = "worst_class", reference: str = "erm",
              oracle: str = ORACLE_METHOD, jtt: str = "jtt", domains: list[str] | None = None) -> dict:
    """Aggregate per-run results into the comparison table (all accuracies in points).

    `records`: per-run dicts as written by `run_blind_domains` (`method`, `seed`,
    `selections[selection]` with `metrics` and `test.per_domain`). Returns a dict with
    `table` (DataFrame, one row per method, "mean ± std" strings), `numbers` (nested floats:
    method -> column -> {mean, std, ci_low, ci_high}), `tests` (Wilcoxon vs reference and
    vs JTT), `gap_closure` and `per_seed` (the long frame).
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection={selection!r} must be one of {SELECTIONS}")
    if not records:
        raise ValueError("summarize: no finished runs")
    frame = _records_frame(records, selection)
    methods = list(dict.fromkeys(frame["method"]))
    if domains is None:
        domains = sorted({c[4:] for c in frame.columns if c.startswith("acc:")})
    metric_cols = list(METRIC_LABELS) + [f"acc:{d}" for d in domains]
    by = {m: frame[frame["method"] == m].sort_values("seed").set_index("seed") for m in methods}

    def paired(m, ref, col):
        if ref not in by:
            return None, None
        common = by[m].index.intersection(by[ref].index)
        return by[m].loc[common, col].to_numpy(float), by[ref].loc[common, col].to_numpy(float)

    numbers: dict = {}
    tests: dict = {}
    for m in methods:
        numbers[m] = {}
        for col in metric_cols:
            v = by[m][col].to_numpy(float) if col in by[m] else np.array([np.nan])
            lo, hi = bootstrap_ci(v)
            numbers[m][col] = {"mean": float(np.nanmean(v)) if np.any(~np.isnan(v)) else float("nan"),
                               "std": float(np.nanstd(v, ddof=1)) if np.sum(~np.isnan(v)) > 1 else 0.0,
                               "ci_low": lo, "ci_high": hi, "n": int(np.sum(~np.isnan(v)))}
        # paired differences vs ERM: majority retention and minority gain
        for name, col in (("majority_retention", "majority_accuracy"), ("minority_gain", "minority_mean_accuracy")):
            a, b = paired(m, reference, col)
            if a is not None and len(a):
                d = a - b
                lo, hi = bootstrap_ci(d)
                numbers[m][name] = {"mean": float(d.mean()), "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
                                    "ci_low": lo, "ci_high": hi, "n": int(len(d))}
        tests[m] = {}
        for ref in (reference, jtt):
            if ref == m or ref not in by:
                continue
            tests[m][f"vs_{ref}"] = {col: paired_wilcoxon(*paired(m, ref, col))
                                     for col in ("worst_domain_accuracy", "minority_mean_accuracy",
                                                 "majority_accuracy")}

    gap = _gap_closure(by, reference, oracle)
    rows = []
    for m in methods:
        row = {"method": m, "seeds": numbers[m]["worst_domain_accuracy"]["n"]}
        for col in domains:
            row[col] = _fmt(numbers[m][f"acc:{col}"])
        for key, label in METRIC_LABELS.items():
            if key == "p10_domain_accuracy" and len(domains) < MANY_DOMAINS:
                continue
            row[label] = _fmt(numbers[m][key])
        row["WDA 95% CI"] = "[{:.1f}, {:.1f}]".format(numbers[m]["worst_domain_accuracy"]["ci_low"],
                                                    numbers[m]["worst_domain_accuracy"]["ci_high"])
        for name, label in (("majority_retention", "maj. retention vs ERM"), ("minority_gain", "min. gain vs ERM")):
            row[label] = _fmt(numbers[m][name], signed=True) if name in numbers[m] else ""
        row["gap closure"] = "" if m not in gap or math.isnan(gap[m]["value"]) else \
            "{:.2f} [{:.2f}, {:.2f}]".format(gap[m]["value"], gap[m]["ci_low"], gap[m]["ci_high"])
        for ref in (reference, jtt):
            t = tests[m].get(f"vs_{ref}", {}).get("worst_domain_accuracy")
            row[f"p WDA vs {ref.upper()}"] = "" if t is None or math.isnan(t["p"]) else f"{t['p']:.3g}"
        rows.append(row)
    table = pd.DataFrame(rows)
    table["method"] = [m + (" (oracle)" if m == oracle else "") for m in table["method"]]
    return {"selection": selection, "domains": domains, "table": table, "numbers": numbers,
            "tests": tests, "gap_closure": gap, "per_seed": frame}


def _gap_closure(by: dict, reference: str, oracle: str, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Gap closure of every method from seed means, with a paired bootstrap CI over seeds."""
    if reference not in by or oracle not in by:
        return {}
    out = {}
    rng = np.random.default_rng(seed)
    ref = by[reference]["worst_domain_accuracy"]
    orc = by[oracle]["worst_domain_accuracy"]
    for m, f in by.items():
        seeds = f.index.intersection(by[reference].index).intersection(by[oracle].index)
        if len(seeds) == 0:
            continue
        a, r, o = (s.loc[seeds].to_numpy(float) for s in (f["worst_domain_accuracy"], ref, orc))

        def closure(ix):
            den = o[ix].mean() - r[ix].mean()
            return (a[ix].mean() - r[ix].mean()) / den if abs(den) > 1e-9 else float("nan")

        value = closure(np.arange(len(seeds)))
        boots = np.array([closure(rng.integers(0, len(seeds), len(seeds))) for _ in range(n_resamples)])
        boots = boots[~np.isnan(boots)]
        lo, hi = (np.percentile(boots, [2.5, 97.5]) if len(boots) else (float("nan"), float("nan")))
        out[m] = {"value": float(value), "ci_low": float(lo), "ci_high": float(hi),
                  "oracle_minus_erm_wda": float(o.mean() - r.mean())}
    return out


def _fmt(stat: dict, signed: bool = False) -> str:
    if stat is None or math.isnan(stat["mean"]):
        return ""
    sign = "+" if signed else ""
    return f"{stat['mean']:{sign}.1f} ± {stat['std']:.1f}"


def plot_summary(summary: dict, path, oracle_summary: dict | None = None) -> Path:
    """Two panels: per-domain test accuracy per method (bars, ±std), and worst-domain vs
    majority accuracy per method (mean ± std; hollow markers = oracle model selection)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numbers, domains = summary["numbers"], summary["domains"]
    methods = list(numbers)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(10, 1.2 * len(methods) * max(1, len(domains)) / 2 + 5), 4.5),
                                   gridspec_kw={"width_ratios": [2, 1]})
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(domains))
    cmap = plt.get_cmap("tab10")
    for i, m in enumerate(methods):
        means = [numbers[m][f"acc:{d}"]["mean"] for d in domains]
        stds = [numbers[m][f"acc:{d}"]["std"] for d in domains]
        ax1.bar(x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
                label=m + (" (oracle)" if m == ORACLE_METHOD else ""), color=cmap(i % 10))
    ax1.set_xticks(x, domains, rotation=30 if len(domains) > 6 else 0)
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_title("per-domain accuracy (worst-class val selection)")
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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-markdown rendering of a summary table (no extra dependency)."""
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)
