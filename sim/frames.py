"""Simulated judgment frames for aggregator tests and benchmarks (vectorised; 1M judgments in ~1 s)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate_crowd(n_tasks: int = 200, n_workers: int = 25, n_classes: int = 3, per_task: int = 5, seed=0,
                   accuracy=(0.35, 0.95), label_prefix: str | None = "c", ids: str = "str"):
    """Workers with uniform accuracies in `accuracy` answer `per_task` distinct-worker judgments
    per task; wrong answers are uniform over all classes.

    Args:
        ids: "str" gives task/worker ids `t<i>`/`w<i>`; "int" keeps integer ids (faster, for
            millions of rows). Labels are `<label_prefix><k>` or ints when `label_prefix` is None.
    Returns:
        (frame with task, worker, label; true labels Series indexed by task)
    """
    if per_task > n_workers:
        raise ValueError(f"per_task={per_task} exceeds n_workers={n_workers}")
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_tasks)
    acc = rng.uniform(*accuracy, n_workers)
    # distinct workers per task: random offset + stride over a shuffled roster
    roster = rng.permutation(n_workers)
    start = rng.integers(0, n_workers, n_tasks)
    w = roster[(start[:, None] + np.arange(per_task)[None, :]) % n_workers].ravel()
    t = np.repeat(np.arange(n_tasks), per_task)
    correct = rng.random(len(t)) < acc[w]
    lab = np.where(correct, truth[t], rng.integers(0, n_classes, len(t)))
    if ids == "str":
        tasks = np.char.add("t", np.arange(n_tasks).astype(str)).astype(object)
        workers = np.char.add("w", np.arange(n_workers).astype(str)).astype(object)
        t_ids, w_ids = tasks[t], workers[w]
        index = tasks
    else:
        t_ids, w_ids, index = t, w, np.arange(n_tasks)
    if label_prefix is None:
        labels, true = lab, truth
    else:
        names = np.array([f"{label_prefix}{k}" for k in range(n_classes)], dtype=object)
        labels, true = names[lab], names[truth]
    frame = pd.DataFrame({"task": t_ids, "worker": w_ids, "label": labels})
    return frame, pd.Series(true, index=index, name="true_label")
