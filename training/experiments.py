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
        row = {"method": r["method"], "seed": int(r["seed"]), "epoch": sel.get("epoch"),
               "rows_seen": r.get("rows_seen")}
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
        if m not in gap:
            row["gap closure"] = ""
        elif math.isnan(gap[m]["value"]):
            row["gap closure"] = "undefined (oracle WDA <= ERM)"
        else:
            row["gap closure"] = "{:.2f} [{:.2f}, {:.2f}]".format(gap[m]["value"], gap[m]["ci_low"], gap[m]["ci_high"])
        rows_m, rows_ref = (by[k]["rows_seen"].astype(float).mean() if k in by and "rows_seen" in by[k] else np.nan
                            for k in (m, reference))
        row["compute vs ERM"] = "" if np.isnan(rows_m) or np.isnan(rows_ref) else f"{rows_m / rows_ref:.2f}x"
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
            # undefined unless the oracle beats ERM: a negative or zero gap has nothing to close
            den = o[ix].mean() - r[ix].mean()
            return (a[ix].mean() - r[ix].mean()) / den if den > 1e-9 else float("nan")

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
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(min(16, 6 + 0.3 * len(methods) * max(1, len(domains))), 5),
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


# ----------------------------------------------------------------------------- running

class PerDomainEpochReports:
    """Trainer callback: after every epoch, per-domain accuracy on val and test.

    Adds to the epoch record `val_per_domain`, `val_worst_domain_accuracy` (the oracle
    selection score), `test_per_domain` ({domain: {accuracy, n}}) and the worst-class numbers,
    and keeps them in `RUN/per_domain_epochs.json` (written every epoch, so an interrupted run
    resumes without losing earlier epochs; see `merge_epoch_reports`). Reads domain
    labels: evaluation only, never passed to the method.
    """

    FILE = "per_domain_epochs.json"

    def __init__(self, info, run_dir=None, splits=("val", "test")):
        from training.evaluate import training_majority_domain

        self.info = info
        self.path = Path(run_dir) / self.FILE if run_dir is not None else None
        self.splits = tuple(splits)
        self.majority = training_majority_domain(info)
        self._images: dict = {}

    def _report(self, trainer, split: str) -> dict | None:
        from training.datasets import load_split_uint8
        from training.evaluate import evaluate_predictions, predict_uint8

        if split not in self._images:
            n = int((self.info.table["split"] == split).sum())
            self._images[split] = None if n == 0 else (
                load_split_uint8(self.info, split, trainer.image_size, progress=False),
                self.info.labels(split).numpy(), self.info.domains(split))
        cached = self._images[split]
        if cached is None:
            return None
        images, labels, domains = cached
        logits = predict_uint8(trainer.model, images, trainer.normalization["mean"], trainer.normalization["std"],
                               trainer.device, trainer.config.eval_batch_size)
        return evaluate_predictions(logits.argmax(1).numpy(), labels, domains, trainer.classes, self.majority)

    def __call__(self, trainer, epoch: int, record: dict) -> None:
        added = {}
        for split in self.splits:
            rep = self._report(trainer, split)
            if rep is None:
                continue
            added[f"{split}_per_domain"] = {d: {"accuracy": v["accuracy"], "n": v["n"]}
                                            for d, v in rep["per_domain"].items()}
            added[f"{split}_worst_domain_accuracy"] = rep["worst_domain_accuracy"]
            added[f"{split}_worst_class_accuracy"] = rep["worst_class_accuracy"]
        record.update(added)
        if self.path is not None:
            saved = json.loads(self.path.read_text()) if self.path.exists() else {}
            saved[str(record["epoch"])] = added
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(saved))
            os.replace(tmp, self.path)


def merge_epoch_reports(history: list[dict], run_dir) -> list[dict]:
    """Epoch records completed with the per-domain reports saved in `RUN/per_domain_epochs.json`."""
    path = Path(run_dir) / PerDomainEpochReports.FILE
    saved = json.loads(path.read_text()) if path.exists() else {}
    merged = [{**saved.get(str(r["epoch"]), {}), **r} for r in history]
    missing = [r["epoch"] for r in merged if "test_per_domain" not in r]
    if missing:
        raise ValueError(f"{run_dir}: no per-domain test report for epoch(s) {missing}; delete the run folder to redo it")
    return merged


def select_epochs(history: list[dict]) -> dict:
    """Epoch chosen by each selection rule from a run's epoch records (1-based epochs).

    `worst_class`: highest `val_worst_class_accuracy` (what the trainer saves as model.pt);
    `oracle_worst_domain`: highest `val_worst_domain_accuracy` (needs domain labels on val).
    Ties go to the earlier epoch, as in the trainer. Without a val split: the last epoch.
    """
    out = {}
    for name, key in (("worst_class", "val_worst_class_accuracy"), ("oracle_worst_domain", "val_worst_domain_accuracy")):
        scored = [r for r in history if r.get(key) is not None]
        best = max(scored, key=lambda r: (r[key], -r["epoch"])) if scored else history[-1]
        out[name] = best
    return out


def run_result(method: str, seed: int, history: list[dict], majority_domain: str) -> dict:
    """The per-run record `summarize` reads, from the epoch history of a finished run."""
    selections = {}
    for name, rec in select_epochs(history).items():
        per_domain = rec["test_per_domain"]
        selections[name] = {"epoch": rec["epoch"],
                            "val_worst_class_accuracy": rec.get("val_worst_class_accuracy"),
                            "val_worst_domain_accuracy": rec.get("val_worst_domain_accuracy"),
                            "metrics": domain_metrics(per_domain, majority_domain),
                            "test": {"per_domain": per_domain}}
    return {"method": method, "seed": int(seed), "majority_domain": majority_domain,
            "train_time_s": history[-1].get("train_time_s"), "selections": selections}


def rows_seen(run_dir) -> int | None:
    """Training rows a run processed (all epochs, all ranks; JTT's first ERM stage included):
    the compute each method spent, to read accuracy gains against."""
    run_dir = Path(run_dir)
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        meta = json.loads((run_dir / "model.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    world = int(metrics.get("world_size", 1))
    total = sum(int(r.get("train_rows", 0)) for r in metrics["epochs"]) * world
    first = (meta.get("method_config") or {}).get("first_epochs")
    if first:
        total += int(first) * int(meta["dataset"]["n_train"])
    return total


def run_blind_domains(data, out, methods=DEFAULT_METHODS, seeds: int | list[int] = 5, epochs: int = 8,
                      imbalance: float | None = None, imbalance_seed: int = 0, method_options: dict | None = None,
                      train_options: dict | None = None, progress: bool = True,
                      shard: tuple[int, int] = (0, 1), threads: int | None = None) -> dict | None:
    """Train every method on every seed (same data split, same seeds), evaluate per domain,
    write the comparison. Resumable: finished runs (`runs/<method>/seed<k>/result.json`) are
    read back, interrupted ones continue from their `last.pt`.

    Args:
        data: dataset folder (Argus format, or ImageFolder + domains.csv).
        out: experiment folder; gets `runs/`, `results.csv` (per seed), `summary.csv`,
            `summary.md`, `summary.json`, `summary_oracle_selection.csv`, `blind_domains.png`.
        methods: method names (registered in `training.methods`).
        seeds: a count (seeds 0..n-1) or an explicit list.
        epochs: training epochs of every run.
        imbalance: majority : minority ratio; subsamples the domains of `data` first.
        method_options: {method: {option: value}}.
        train_options: extra `TrainConfig` fields (arch, batch_size, lr, device, image_size, ...).
        shard: `(i, n)`: run only jobs `k` with `k % n == i` (start n processes, one per GPU or
            core, on the same `out`); the summary is written once every run has finished.
        threads: `torch.set_num_threads` for this process (1 is fastest on a busy small CPU).
    Returns the summary dict of `summarize` (worst-class selection) with `oracle_selection`,
    or None when runs of other shards are still missing.
    """
    from tqdm.auto import tqdm

    from training.datasets import load_dataset
    from training.evaluate import training_majority_domain
    from training.methods import available_methods
    from training.trainer import TrainConfig, Trainer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    methods = list(dict.fromkeys(methods))
    unknown = sorted(set(methods) - set(available_methods()))
    if unknown:
        raise ValueError(f"--methods: unknown method(s) {', '.join(unknown)}; available: {', '.join(available_methods())}")
    method_options = method_options or {}
    stray = sorted(set(method_options) - set(methods))
    if stray:
        raise ValueError(f"--method-option given for method(s) not run: {', '.join(stray)}")
    shard_index, shard_count = shard
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"--shard: expected I/N with 0 <= I < N, got {shard_index}/{shard_count}")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("--seeds: need at least one seed")
    if imbalance is not None:
        data = write_imbalanced_dataset(data, out / f"data_imbalance_{imbalance:g}", imbalance, imbalance_seed)
    info = load_dataset(data)
    majority = training_majority_domain(info)
    if majority is None:
        raise ValueError(f"{info.root}: the train split has no domain labels; blind-domains needs them for evaluation")
    train_options = dict(train_options or {})
    config_doc = {"data": str(info.root), "methods": methods, "seeds": seed_list, "epochs": epochs,
                  "imbalance": imbalance, "method_options": method_options, "train_options": train_options,
                  "majority_domain": majority}
    if shard_index == 0:
        (out / "experiment.json").write_text(json.dumps(config_doc, indent=2, default=str))

    jobs = [(m, s) for s in seed_list for m in methods]
    # rotate by seed so that one method's runs (JTT is the slow one) spread over the shards
    mine = [(m, s) for k, (m, s) in enumerate(jobs) if (k + k // len(methods)) % shard_count == shard_index]
    bar = tqdm(mine, desc="blind-domains" + (f" shard {shard_index}/{shard_count}" if shard_count > 1 else ""),
               unit="run", disable=not progress)
    for method, seed in bar:
        bar.set_postfix(method=method, seed=seed)
        run_dir = out / "runs" / method / f"seed{seed}"
        result_path = run_dir / "result.json"
        if result_path.exists():
            continue
        cfg = TrainConfig(method=method, method_options=dict(method_options.get(method, {})), epochs=epochs,
                          seed=seed, **train_options)
        trainer = Trainer(info, run_dir, cfg, callbacks=[PerDomainEpochReports(info, run_dir)], progress=False)
        resume = (run_dir / "last.pt").exists()
        try:
            metrics = trainer.fit(resume=resume)
        except ValueError as exc:
            if not resume:
                raise
            # an unusable last.pt (other arch/method): start the run again
            warnings.warn(f"{run_dir}: cannot resume ({exc}); training from scratch")
            (run_dir / "last.pt").unlink()
            (run_dir / PerDomainEpochReports.FILE).unlink(missing_ok=True)
            trainer = Trainer(info, run_dir, cfg, callbacks=[PerDomainEpochReports(info, run_dir)], progress=False)
            metrics = trainer.fit()
        if not trainer.is_main:
            continue
        record = run_result(method, seed, merge_epoch_reports(metrics["epochs"], run_dir), majority)
        record["rows_seen"] = rows_seen(run_dir)
        tmp = result_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, result_path)
    bar.close()
    paths = [out / "runs" / m / f"seed{s}" / "result.json" for m, s in jobs]
    if not all(p.exists() for p in paths):
        return None  # other shards still running; the last one to finish writes the summary
    records = [json.loads(p.read_text()) for p in paths]
    return write_summary(records, out, methods)


def write_summary(records: list[dict], out, methods=None) -> dict:
    """Summaries under both selections, CSV/markdown/JSON files and the plot in `out`."""
    out = Path(out)
    if methods:
        order = {m: i for i, m in enumerate(methods)}
        records = sorted(records, key=lambda r: (order.get(r["method"], len(order)), r["seed"]))
    for r in records:  # results written before rows_seen existed
        if r.get("rows_seen") is None:
            r["rows_seen"] = rows_seen(out / "runs" / r["method"] / f"seed{r['seed']}")
    majority = records[0].get("majority_domain")
    names = sorted({d for r in records for d in r["selections"]["worst_class"]["test"]["per_domain"]})
    domains = sorted(names, key=lambda d: (d != majority, d))  # majority first
    main = summarize(records, "worst_class", domains=domains)
    oracle = summarize(records, "oracle_worst_domain", domains=main["domains"])
    table = main["table"].copy()
    oracle_wda = {m: _fmt(oracle["numbers"][m]["worst_domain_accuracy"]) for m in oracle["numbers"]}
    insert_at = list(table.columns).index("WDA 95% CI") + 1
    table.insert(insert_at, "worst domain (oracle sel.)", [oracle_wda[m] for m in main["numbers"]])
    main["table"] = table
    main["per_seed"].to_csv(out / "results.csv", index=False)
    table.to_csv(out / "summary.csv", index=False)
    oracle["table"].to_csv(out / "summary_oracle_selection.csv", index=False)
    plot = plot_summary(main, out / "blind_domains.png", oracle_summary=oracle)
    doc = {
        "selection": "worst-class validation accuracy (no domain labels); oracle: worst-domain validation accuracy",
        "domains": main["domains"], "majority_domain": records[0].get("majority_domain"),
        "table": table.to_dict(orient="records"),
        "numbers": main["numbers"], "tests": main["tests"], "gap_closure": main["gap_closure"],
        "oracle_selection": {"numbers": oracle["numbers"], "gap_closure": oracle["gap_closure"],
                             "table": oracle["table"].to_dict(orient="records")},
        "runs": len(records), "plot": plot.name,
    }
    (out / "summary.json").write_text(json.dumps(_finite(doc), indent=2, default=_json_default))
    (out / "summary.md").write_text(
        "## Test accuracy per domain (%), model selected by worst-class val accuracy\n\n"
        + markdown_table(table)
        + "\n\n## Same runs, model selected by worst-domain val accuracy (oracle selection)\n\n"
        + markdown_table(oracle["table"]) + "\n")
    main["oracle_selection"] = oracle
    return main


def _finite(obj):
    """NaN -> None all the way down, so summary.json is valid JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and math.isnan(obj):
        return None
    return obj


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return str(obj)
