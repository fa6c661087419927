"""Per-run pieces of the blind-domains experiment: one (method, seed) trained and tested per domain.

`train_and_evaluate` trains one run (resumable: a run whose `result.json` exists is read back, an
interrupted one continues from its `last.pt`), records per-domain validation and test accuracy
after every epoch (`PerDomainEpochReports`), and writes `result.json`: the run's epoch chosen twice
-- by worst-class validation accuracy (no domain labels: the default, the headline) and by
worst-domain validation accuracy (the oracle choice, reported beside it) -- with its per-domain
test accuracy, the compute it spent (`rows_seen`) and its learning curve.

Comparing methods over seeds (intervals, paired tests, tables, plots) is `analysis.method_comparison`;
running a whole grid of runs is `argus.pipelines.blind_domains`. Domain labels are read here, and
only here, for evaluation; the methods never see them (except oracle methods, which declare
`reads_domains`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

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
            # kept on the trainer's device: every epoch evaluates the same images again
            self._images[split] = None if n == 0 else (
                load_split_uint8(self.info, split, trainer.image_size, progress=False).to(trainer.device),
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
    """The per-run record (`result.json`) from the epoch history of a finished run: the epoch of
    each selection rule with its per-domain test accuracy and headline metrics, and the learning
    curve (train/val accuracy and per-domain test accuracy of every epoch)."""
    selections = {}
    for name, rec in select_epochs(history).items():
        per_domain = rec["test_per_domain"]
        selections[name] = {"epoch": rec["epoch"],
                            "val_worst_class_accuracy": rec.get("val_worst_class_accuracy"),
                            "val_worst_domain_accuracy": rec.get("val_worst_domain_accuracy"),
                            "metrics": domain_metrics(per_domain, majority_domain),
                            "test": {"per_domain": per_domain}}
    curve = [{"epoch": r["epoch"], "train_accuracy": r.get("train_accuracy"), "val_accuracy": r.get("val_accuracy"),
              "val_worst_class_accuracy": r.get("val_worst_class_accuracy"),
              "val_worst_domain_accuracy": r.get("val_worst_domain_accuracy"),
              "test": {d: v["accuracy"] for d, v in r["test_per_domain"].items()}} for r in history]
    return {"method": method, "seed": int(seed), "majority_domain": majority_domain,
            "train_time_s": history[-1].get("train_time_s"), "epochs": len(history), "selections": selections,
            "curve": curve}


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


def train_and_evaluate(info, run_dir, method: str, seed: int, epochs: int | None = None,
                       method_options: dict | None = None, train_options: dict | None = None,
                       extra: dict | None = None) -> dict:
    """Train one (method, seed) run into `run_dir` and write its `result.json` (returned).

    `info`: a `DatasetInfo` with domain labels (read for evaluation only). `train_options`: extra
    `TrainConfig` fields (arch, batch_size, lr, device, image_size, model_kwargs, ...). `extra`
    is merged into the record (e.g. the label, budget and configuration of a grid). A finished
    run is read back without training; an interrupted one resumes from `last.pt` (or starts
    again when that checkpoint belongs to another method or architecture).
    """
    from training.evaluate import training_majority_domain
    from training.trainer import TrainConfig, Trainer

    run_dir = Path(run_dir)
    result_path = run_dir / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    majority = training_majority_domain(info)
    if majority is None:
        raise ValueError(f"{info.root}: the train split has no domain labels; blind-domains needs them for evaluation")
    cfg = TrainConfig(method=method, method_options=dict(method_options or {}), epochs=epochs, seed=seed,
                      **dict(train_options or {}))

    def fresh_trainer():
        return Trainer(info, run_dir, cfg, callbacks=[PerDomainEpochReports(info, run_dir)], progress=False)

    from training.trainer import UndertrainedWarning

    trainer = fresh_trainer()
    resume = (run_dir / "last.pt").exists()
    with warnings.catch_warnings():  # kept in the record (`undertrained`) instead
        warnings.simplefilter("ignore", UndertrainedWarning)
        try:
            metrics = trainer.fit(resume=resume)
        except ValueError as exc:
            if not resume:
                raise
            # an unusable last.pt (other arch/method): start the run again
            warnings.warn(f"{run_dir}: cannot resume ({exc}); training from scratch")
            (run_dir / "last.pt").unlink()
            (run_dir / PerDomainEpochReports.FILE).unlink(missing_ok=True)
            trainer = fresh_trainer()
            metrics = trainer.fit()
    if not trainer.is_main:
        return {}
    record = run_result(method, seed, merge_epoch_reports(metrics["epochs"], run_dir), majority)
    record["rows_seen"] = rows_seen(run_dir)
    record["n_train"] = trainer.num_train
    record["method_config"] = trainer.method.config()
    record["undertrained"] = metrics.get("undertrained")
    record["device"] = str(trainer.device)
    record.update(extra or {})
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, result_path)
    return record
