"""SIMULATED judgment exports with known worker types, for the worker-quality tests and the
flag-precision benchmark (bench/worker_flags.py). No server is involved: the frame has the
columns of the crowd export (`task, worker, label, item, kind, is_gold, gold_label,
duration_s`) and is built the way the server deals out work: visits of `tasks_per_visit` tasks
of one kind, `gold_per_visit` of them gold, real tasks going to whoever has the fewest answers.

Worker types (the `roster`):

- `reliable`: right with probability U(0.8, 0.97) per answer;
- `weak` (honest but weak): right with probability U(0.5, 0.75); its mistakes favour one
  neighbouring label, as tired people's do;
- `spammer`: ignores the item: `random` (uniform), `constant` (always the same label, e.g.
  "yes") or `biased` (random, with 70% on one label); half are fast, half take normal time;
- `adversarial`: gives a wrong answer on purpose with probability U(0.7, 0.9).

Participation is uneven: each worker does 1 + Poisson(`extra_visits`) visits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crowd import judgments

WORKER_TYPES = ("reliable", "weak", "spammer", "adversarial")
RATINGS = np.array(judgments.RATINGS, dtype=object)


def random_mix(rng, max_spammers: float = 0.3) -> dict:
    """Shares of worker types for one simulated crowd: spammers U(0, max_spammers), adversarial
    U(0, 0.05), weak U(0.1, 0.3), the rest reliable."""
    spam = rng.uniform(0.0, max_spammers)
    adv = rng.uniform(0.0, 0.05)
    weak = rng.uniform(0.1, 0.3)
    return {"reliable": 1.0 - spam - adv - weak, "weak": weak, "spammer": spam, "adversarial": adv}


def _roster(n_workers, mix, rng) -> pd.DataFrame:
    shares = np.array([mix.get(t, 0.0) for t in WORKER_TYPES], float)
    if (shares < 0).any() or shares.sum() <= 0:
        raise ValueError(f"worker mix {mix}: shares must be >= 0 and not all 0")
    counts = np.floor(shares / shares.sum() * n_workers).astype(int)
    for i in np.argsort(-(shares / shares.sum() * n_workers - counts))[:n_workers - counts.sum()]:
        counts[i] += 1
    types = np.repeat(np.array(WORKER_TYPES, dtype=object), counts)
    rng.shuffle(types)
    acc = np.where(types == "reliable", rng.uniform(0.8, 0.97, n_workers),
                   np.where(types == "weak", rng.uniform(0.5, 0.75, n_workers),
                            np.where(types == "adversarial", 1 - rng.uniform(0.7, 0.9, n_workers), np.nan)))
    strategy = np.where(types == "spammer", rng.choice(["random", "constant", "biased"], n_workers), "")
    base = {"reliable": 20.0, "weak": 12.0, "spammer": 15.0, "adversarial": 15.0}
    seconds = np.array([base[t] for t in types]) * rng.lognormal(0.0, 0.35, n_workers)
    fast_spammer = (types == "spammer") & (rng.random(n_workers) < 0.5)
    seconds[fast_spammer] = rng.uniform(1.5, 4.0, fast_spammer.sum())
    width = len(str(n_workers - 1))
    return pd.DataFrame({"worker": [f"w{i:0{width}d}" for i in range(n_workers)], "type": types,
                         "strategy": strategy, "accuracy": acc, "seconds": seconds})


def _answer(truth: np.ndarray, labels: np.ndarray, worker: pd.Series, rng, favourite: int) -> np.ndarray:
    """Codes (into `labels`) of one worker's answers to items whose true codes are `truth`."""
    K = len(labels)
    n = len(truth)
    if worker.type == "spammer":
        if worker.strategy == "constant":
            return np.full(n, favourite)
        if worker.strategy == "biased":
            return np.where(rng.random(n) < 0.7, favourite, rng.integers(0, K, n))
        return rng.integers(0, K, n)
    right = rng.random(n) < worker.accuracy
    if worker.type == "adversarial":  # a consistent wrong answer: the next label
        wrong = (truth + 1) % K
    elif worker.type == "weak":  # mistakes lean on one neighbour, the rest uniform among wrong labels
        other = (truth + rng.integers(1, K, n)) % K
        wrong = np.where(rng.random(n) < 0.6, (truth + 1) % K, other)
    else:
        wrong = (truth + rng.integers(1, K, n)) % K
    return np.where(right, truth, wrong)


def simulate_judgments(n_workers: int = 100, mix: dict | None = None, *, n_tasks: int = 300,
                       kinds=("rate_arguments", "label"), n_classes: int = 4, n_arguments: int = 3,
                       redundancy: int = 5, tasks_per_visit: int = 10, gold_per_visit: int = 2,
                       n_gold: int = 20, extra_visits: float = 2.0, seed=0):
    """A simulated judgment export and the truth about its workers.

    Args:
        n_workers: crowd size; `mix` maps worker type -> share (default `random_mix`).
        n_tasks: real tasks per kind (each wants `redundancy` answers; the crowd's work decides
            how many it gets); `n_gold` gold tasks per kind.
        kinds: "rate_arguments" (items `arg:<rank>` yes|no|cant_tell and `match` 1..5) and/or
            "label" (item `label`, classes `c0..c<n_classes-1>`).

    Returns:
        (frame, roster): the export, and one row per worker with `worker, type, strategy,
        accuracy` (NaN for spammers), `seconds` (typical time per task).
    """
    rng = np.random.default_rng(seed)
    mix = mix or random_mix(rng)
    roster = _roster(n_workers, mix, rng)
    class_labels = np.array([f"c{k}" for k in range(n_classes)], dtype=object)
    likert = np.array([str(v) for v in judgments.LIKERT], dtype=object)
    tasks = {}
    for kind in kinds:
        total = n_tasks + n_gold
        if kind == "rate_arguments":
            args = np.where(rng.random((total, n_arguments)) < 0.55, 0, 1)  # yes | no
            match = rng.integers(0, 5, total)
            tasks[kind] = {"args": args, "match": match}
        elif kind == "label":
            tasks[kind] = {"label": rng.integers(0, n_classes, total)}
        else:
            raise ValueError(f"simulate_judgments: unknown kind {kind!r} (rate_arguments, label)")
    answers = {kind: np.zeros(n_tasks, int) for kind in kinds}
    done: dict = {}
    visits = [(w, kinds[rng.integers(len(kinds))]) for w in range(n_workers)
              for _ in range(1 + rng.poisson(extra_visits))]
    order = rng.permutation(len(visits))
    rows = []
    favourite = rng.integers(0, 3, n_workers)
    for v in order:
        w, kind = visits[v]
        seen = done.setdefault((w, kind), set())
        free = np.array([t for t in range(n_tasks) if t not in seen], int)
        if free.size == 0:
            continue
        load = answers[kind][free] + rng.random(free.size) * 0.5
        real = free[np.argsort(load)[:tasks_per_visit - gold_per_visit]]
        gold_free = [n_tasks + g for g in range(n_gold) if n_tasks + g not in seen]
        gold = rng.choice(gold_free, size=min(gold_per_visit, len(gold_free)), replace=False) if gold_free else []
        picked = list(real) + list(gold)
        seen.update(picked)
        answers[kind][real] += 1
        worker = roster.iloc[w]
        for t in picked:
            is_gold = t >= n_tasks
            secs = float(worker.seconds * rng.lognormal(0, 0.3))
            tid = f"{kind[0]}{t}"
            if kind == "rate_arguments":
                truth = tasks[kind]["args"][t]
                got = _answer(truth, RATINGS, worker, rng, favourite[w] % 3)
                for r in range(n_arguments):
                    rows.append((tid, worker.worker, RATINGS[got[r]], f"arg:{r + 1}", kind, is_gold,
                                 RATINGS[truth[r]] if is_gold else "", secs))
                m = tasks[kind]["match"][t]
                if worker.type == "spammer":
                    got_m = 2 if worker.strategy == "constant" else rng.integers(0, 5)
                elif worker.type == "adversarial":
                    got_m = 4 - m
                else:
                    sd = 0.6 if worker.type == "reliable" else 1.2
                    got_m = int(np.clip(np.rint(m + rng.normal(0, sd)), 0, 4))
                rows.append((tid, worker.worker, likert[got_m], "match", kind, is_gold,
                             likert[m] if is_gold else "", secs))
            else:
                truth = tasks[kind]["label"][t:t + 1]
                got = _answer(truth, class_labels, worker, rng, favourite[w] % n_classes)
                rows.append((tid, worker.worker, class_labels[got[0]], "label", kind, is_gold,
                             class_labels[truth[0]] if is_gold else "", secs))
    frame = pd.DataFrame(rows, columns=["task", "worker", "label", "item", "kind", "is_gold", "gold_label",
                                        "duration_s"])
    return frame, roster
