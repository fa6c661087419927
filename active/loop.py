"""The active-learning loop: rounds of train -> evaluate per domain -> query -> label.

The loop does not care how models train (baal style): it takes

- `train_fn(pool, indices [L] int64, labels [L] int64, *, round, seed, init_state) -> (predictor, state)`
  where `predictor(x) -> (probs [B,K], features [B,D] | None)` (see `active.pool.Predictor`) and
  `state` is whatever warm start needs next round (e.g. a model state dict) or None;
- a strategy (`active.strategies`), an oracle (`active.oracles`), and a test pool with domains.

State lives in `out_dir`: `state.json` (config, labelled indices and labels, per-round history),
`ledger.csv` (one row per label bought: round, index, label, cost, oracle, agreement),
`warm_state.pt` (warm start only), `history.csv`. A run that stops is resumed by running it again
with the same `out_dir` and config; it continues after the last completed round.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from active.pool import score_pool, subsample_candidates
from active.strategies import Strategy

LEDGER_COLUMNS = ["round", "index", "label", "cost", "oracle", "agreement"]


@dataclass
class LoopConfig:
    """What defines a run (a resumed run must match it)."""

    rounds: int = 5
    budget: int = 100
    initial_size: int = 100
    seed: int = 0
    retrain: str = "scratch"  # "scratch" (realistic default) | "warm"
    pool_subsample: float | None = None  # explicit, recorded; None = score the whole pool
    batch_size: int = 256
    strategy: str = ""
    train_method: str = ""
    oracle: str = ""
    extra: dict = field(default_factory=dict)

    def check(self):
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {self.rounds}")
        if self.budget < 1:
            raise ValueError(f"budget must be >= 1, got {self.budget}")
        if self.initial_size < 1:
            raise ValueError(f"initial_size must be >= 1, got {self.initial_size}")
        if self.retrain not in ("scratch", "warm"):
            raise ValueError(f"retrain must be 'scratch' or 'warm', got {self.retrain!r}")


def predict_pool(predictor, pool, batch_size: int = 256) -> np.ndarray:
    """Predicted class ids `[N]` for every item of `pool`."""
    from active.pool import predict_classes

    return predict_classes(predictor, pool, batch_size)


def evaluate_per_domain(predictor, test_pool, majority_domain: str | None, batch_size: int = 256) -> dict:
    """Per-domain report on the test pool (fields of `argus eval --json`)."""
    from active.pool import pool_domains, pool_labels
    from training.evaluate import evaluate_predictions

    pred = predict_pool(predictor, test_pool, batch_size)
    return evaluate_predictions(pred, pool_labels(test_pool), pool_domains(test_pool), test_pool.classes,
                                majority_domain=majority_domain)


class ActiveLoop:
    """Runs `config.rounds` query rounds after training on the initial labelled set.

    Round r trains on everything labelled so far, evaluates on `test_pool`, then (if r < rounds)
    queries `budget` items from the unlabelled part of `pool` and has `oracle` label them.
    Domains are read only for evaluation and the query-share report, never for training or
    selection.
    """

    def __init__(self, pool, test_pool, strategy: Strategy, oracle, train_fn: Callable, out_dir,
                 config: LoopConfig, majority_domain: str | None = None, progress: bool = True,
                 work_dir: str | None = None):
        config.check()
        self.pool, self.test_pool, self.strategy, self.oracle = pool, test_pool, strategy, oracle
        self.train_fn, self.config, self.progress = train_fn, config, progress
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir = Path(work_dir) if work_dir else self.out_dir / "scratch"
        self.majority_domain = majority_domain
        self.labelled = np.zeros(0, np.int64)
        self.labels = np.zeros(0, np.int64)
        self.history: list[dict] = []
        self.next_round = 0
        self._load()

    # ----------------------------------------------------------------- state
    @property
    def state_path(self) -> Path:
        return self.out_dir / "state.json"

    def _config_key(self) -> dict:
        return {k: v for k, v in asdict(self.config).items() if k not in ("rounds",)}

    def _load(self):
        if not self.state_path.exists():
            (self.out_dir / "ledger.csv").unlink(missing_ok=True)  # a crash before the first save
            return
        state = json.loads(self.state_path.read_text())
        if state["config_key"] != json.loads(json.dumps(self._config_key())):
            raise ValueError(f"{self.state_path}: exists with a different configuration "
                             f"({state['config_key']} vs {self._config_key()}); use another --out")
        self.labelled = np.asarray(state["labelled"], np.int64)
        self.labels = np.asarray(state["labels"], np.int64)
        self.history = state["history"]
        self.next_round = int(state["next_round"])
        if self.history and "queried" not in self.history[-1] and self.history[-1]["round"] < self.config.rounds:
            # the run was finished with fewer rounds; its last round made no query: redo that round
            self.next_round = int(self.history.pop()["round"])
        ledger = self.out_dir / "ledger.csv"
        if ledger.exists():  # drop purchases of a round that crashed before its state was saved
            import pandas as pd

            table = pd.read_csv(ledger, keep_default_na=False)
            keep = table["round"] <= self.next_round
            if not keep.all():
                table[keep].to_csv(ledger, index=False)

    def _save(self):
        state = {"config": asdict(self.config), "config_key": self._config_key(), "next_round": self.next_round,
                 "labelled": self.labelled.tolist(), "labels": self.labels.tolist(), "history": self.history,
                 "pool": getattr(self.pool, "describe", lambda: {"size": len(self.pool)})()}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state) + "\n")
        tmp.replace(self.state_path)
        if self.history:
            import pandas as pd

            pd.DataFrame(self.history).to_csv(self.out_dir / "history.csv", index=False)

    def _ledger(self, rnd: int, indices, labels, costs, agreement):
        path = self.out_dir / "ledger.csv"
        new = not path.exists()
        with path.open("a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(LEDGER_COLUMNS)
            for i, y, c, a in zip(indices, labels, costs, agreement):
                w.writerow([rnd, int(i), self.pool.classes[int(y)] if y >= 0 else "", float(c),
                            self.oracle.name, "" if a is None or a != a else round(float(a), 4)])

    # ----------------------------------------------------------------- steps
    def _buy(self, rnd: int, indices: np.ndarray) -> dict:
        t0 = time.perf_counter()
        res = self.oracle.label(self.pool, indices, rnd)
        ok = res.labels >= 0  # an oracle may fail to label an item (crowd timeout): it goes back to the pool
        self._ledger(rnd, indices, res.labels, res.costs, res.agreement_per_item)
        self.labelled = np.concatenate([self.labelled, indices[ok]])
        self.labels = np.concatenate([self.labels, res.labels[ok]])
        return {"label_s": time.perf_counter() - t0, "bought": int(len(indices)), "labelled_ok": int(ok.sum()),
                "label_cost": float(np.sum(res.costs)), **{f"oracle_{k}": v for k, v in res.info.items()}}

    def _initial(self) -> np.ndarray:
        rng = np.random.default_rng([self.config.seed, 0x1217])
        n = min(self.config.initial_size, len(self.pool))
        return np.sort(rng.choice(len(self.pool), size=n, replace=False)).astype(np.int64)

    def query(self, predictor, rnd: int) -> tuple[np.ndarray, dict]:
        """Select the next batch (pool indices) with the current predictor."""
        mask = np.ones(len(self.pool), bool)
        mask[self.labelled] = False
        candidates = np.flatnonzero(mask)
        info = {"candidates": int(len(candidates))}
        if self.config.pool_subsample:
            candidates = subsample_candidates(candidates, self.config.pool_subsample, self.config.seed * 1000 + rnd)
            info["pool_subsample"] = self.config.pool_subsample
        info["scored"] = int(len(candidates))
        t0 = time.perf_counter()
        out = score_pool(predictor, self.pool, self.strategy, candidates, labelled=self.labelled,
                         batch_size=self.config.batch_size, work_dir=self.work_dir / f"round{rnd}",
                         progress=self.progress, desc=f"round {rnd}: scoring {len(candidates)} items")
        score_s = time.perf_counter() - t0
        rng = np.random.default_rng([self.config.seed, rnd, 0x0A11])
        sel = self.strategy.select(out, min(self.config.budget, len(candidates)), rng)
        info.update(score_s=score_s, select_s=time.perf_counter() - t0 - score_s)
        del out
        shutil.rmtree(self.work_dir / f"round{rnd}", ignore_errors=True)  # memmapped embeddings of this round
        return np.asarray(sel, np.int64), info

    def run(self, deadline: float | None = None) -> list[dict]:
        """Run (or resume) all rounds; returns the per-round history rows. With `deadline` (a
        `time.time()` value) no new round starts after it: the run stops cleanly between rounds
        and the same call resumes it later."""
        from training.progress import progress_bar as tqdm

        cfg = self.config
        if self.next_round == 0 and len(self.labelled) == 0:
            self._buy(0, self._initial())
            self._save()
        warm_path = self.out_dir / "warm_state.pt"
        bar = tqdm(total=cfg.rounds + 1, initial=self.next_round, desc="active rounds", unit="round",
                   disable=not self.progress)
        for rnd in range(self.next_round, cfg.rounds + 1):
            if deadline is not None and time.time() > deadline:
                break
            init = None
            if cfg.retrain == "warm" and rnd > 0 and warm_path.exists():
                init = torch.load(warm_path, map_location="cpu", weights_only=False)
            t0 = time.perf_counter()
            predictor, state = self.train_fn(self.pool, self.labelled.copy(), self.labels.copy(), round=rnd,
                                             seed=cfg.seed * 1000 + rnd, init_state=init)
            train_s = time.perf_counter() - t0
            if cfg.retrain == "warm" and state is not None:
                torch.save(state, warm_path)
            t0 = time.perf_counter()
            report = evaluate_per_domain(predictor, self.test_pool, self.majority_domain, cfg.batch_size)
            eval_s = time.perf_counter() - t0
            row = {"round": rnd, "n_labelled": int(len(self.labelled)),
                   "fraction_labelled": len(self.labelled) / len(self.pool),
                   "overall_accuracy": report["overall_accuracy"], "majority_accuracy": report["majority_accuracy"],
                   "minority_mean_accuracy": report["minority_mean_accuracy"],
                   "worst_domain_accuracy": report["worst_domain_accuracy"],
                   **{f"acc_{d}": v["accuracy"] for d, v in report["per_domain"].items()},
                   "train_s": train_s, "eval_s": eval_s}
            if rnd < cfg.rounds:
                sel, qinfo = self.query(predictor, rnd)
                doms = [self.pool.domain(int(i)) for i in sel]
                maj = self.majority_domain or report["majority_domain"]
                row.update({"queried": int(len(sel)), "query_s": qinfo["score_s"] + qinfo["select_s"],
                            "query_minority_share": float(np.mean([d != maj for d in doms])) if doms else 0.0,
                            **{f"query_{k}": v for k, v in qinfo.items()}})
                row.update(self._buy(rnd + 1, sel))
            self.history.append(row)
            self.next_round = rnd + 1
            self._save()
            bar.update(1)
            if self.progress:
                bar.write(format_row(row))
        bar.close()
        return self.history


def format_row(row: dict) -> str:
    def f(v):
        return "-" if v is None else f"{v:.3f}"

    return (f"round {row['round']:>2}  labelled {row['n_labelled']:>6}  overall {f(row['overall_accuracy'])}  "
            f"minority {f(row['minority_mean_accuracy'])}  worst {f(row['worst_domain_accuracy'])}  "
            f"train {row['train_s']:.1f}s  query {row.get('query_s', 0):.1f}s")


def history_table(history: list[dict]) -> str:
    """Markdown table of the per-round history."""
    cols = ["round", "n_labelled", "overall_accuracy", "majority_accuracy", "minority_mean_accuracy",
            "worst_domain_accuracy", "query_minority_share", "train_s", "query_s"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in history:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append("" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_history(history: list[dict], path, title: str = "") -> Path:
    """Accuracy (overall, minority mean, worst domain) vs labels bought."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n_labelled"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("overall_accuracy", "overall"), ("minority_mean_accuracy", "minority mean"),
                       ("worst_domain_accuracy", "worst domain")):
        ax.plot(n, [r[key] if r[key] is not None else np.nan for r in history], marker="o", label=label)
    ax.set_xlabel("labelled items")
    ax.set_ylabel("test accuracy")
    ax.set_title(title or "active learning")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
