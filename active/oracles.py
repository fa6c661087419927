"""Labelling oracles: simulated (ground truth with optional noise) and the crowd (Argus server).

An oracle's `label(pool, indices [B], rnd) -> OracleResult` returns class ids `[B]` (-1 where
no label could be obtained; the loop returns those items to the pool), the cost per item and
per-round info (e.g. crowd agreement).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crowd.client import CrowdClient

ORACLES = ("simulated", "crowd")


@dataclass
class OracleResult:
    labels: np.ndarray  # [B] int64 class ids, -1 = not labelled
    costs: np.ndarray  # [B] float, in the oracle's cost unit (judgments x price)
    agreement_per_item: list = field(default_factory=list)  # [B] share of judgments = final label
    info: dict = field(default_factory=dict)


class SimulatedOracle:
    """Ground-truth labels; with probability `noise` a uniformly drawn *other* class instead.

    The noise draw depends only on `(seed, index)`, so a resumed or repeated run buys the same
    labels. `cost` is charged per item.
    """

    name = "simulated"

    def __init__(self, noise: float = 0.0, seed: int = 0, cost: float = 1.0):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"--label-noise must be in [0, 1], got {noise}")
        self.noise, self.seed, self.cost = float(noise), int(seed), float(cost)

    def label(self, pool, indices, rnd: int) -> OracleResult:
        indices = np.asarray(indices, np.int64)
        truth = np.asarray([pool.label(int(i)) for i in indices], np.int64)
        labels = truth.copy()
        k = len(pool.classes)
        if self.noise > 0 and k > 1:
            for j, i in enumerate(indices):
                r = np.random.default_rng([self.seed, int(i), 0xB0B])
                if r.random() < self.noise:
                    labels[j] = (truth[j] + 1 + r.integers(k - 1)) % k
        return OracleResult(labels, np.full(len(indices), self.cost), [1.0] * len(indices),
                            {"label_accuracy": float((labels == truth).mean()) if len(truth) else None})


def aggregate_dawid_skene(frame):
    """Crowd labels per task from a `task, worker, label` frame -> pandas Series (task -> label):
    of the labels a task's workers gave, the one with the highest Dawid-Skene posterior.

    With a few workers and items per round, Dawid-Skene's per-worker confusion matrices overfit
    and can make a label that no worker gave the most probable (votes tigerhorn, tigerhorn,
    dragon -> ladybird); an oracle that bought those votes never answers such a label.
    """
    import pandas as pd

    from analysis.aggregate import DawidSkene

    data = frame[["task", "worker", "label"]]
    proba = DawidSkene(n_iter=100).fit_predict_proba(data)
    given = pd.crosstab(data["task"], data["label"]).reindex(index=proba.index, columns=proba.columns,
                                                              fill_value=0) > 0
    return proba.where(given, -1.0).idxmax(axis=1)


def save_pool_png(pool, index: int, path: Path):
    """Write the pool item as the PNG a worker sees (undoing the pool's normalisation)."""
    from PIL import Image

    x, _ = pool[int(index)]
    mean = np.asarray(getattr(pool, "mean", (0.5, 0.5, 0.5)), np.float32).reshape(3, 1, 1)
    std = np.asarray(getattr(pool, "std", (0.25, 0.25, 0.25)), np.float32).reshape(3, 1, 1)
    arr = np.clip((x.numpy() * std + mean) * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    Image.fromarray(arr, "RGB").save(path)


class CrowdOracle:
    """Label the selected items with crowd workers on the Argus server.

    For each round: write the items' images to `media_dir/round<r>/`, create a `label` batch with
    redundancy R through the HTTP API, poll until every task has R judgments or `timeout_s`
    passes (then close the batch), aggregate with Dawid-Skene, and return labels. Items without
    any judgment come back as -1 (returned to the pool). Agreement = share of an item's
    judgments equal to its aggregated label; per round its mean and the label accuracy against
    ground truth (when the pool knows it) go into `info`. Cost = judgments x `reward_cents`.
    """

    name = "crowd"

    def __init__(self, url: str, token: str | None = None, redundancy: int = 3, timeout_s: float = 3600.0,
                 poll_s: float = 2.0, media_dir: str | Path = "runs/active-crowd-media", reward_cents: int = 0,
                 seed: int = 0, progress: bool = True, client: CrowdClient | None = None,
                 batch_options: dict | None = None):
        """`batch_options`: further `POST /api/batches` fields for every round's batch (e.g.
        `visits_per_worker` when a few known workers label a whole round)."""
        if redundancy < 1:
            raise ValueError(f"--redundancy must be >= 1, got {redundancy}")
        self.client = client or CrowdClient(url, token)
        self.redundancy, self.timeout_s, self.poll_s = int(redundancy), float(timeout_s), float(poll_s)
        self.media_dir, self.reward_cents, self.seed, self.progress = Path(media_dir), int(reward_cents), seed, progress
        self.batch_options = dict(batch_options or {})
        self.batches: list[int] = []

    def label(self, pool, indices, rnd: int) -> OracleResult:
        from training.progress import progress_bar as tqdm

        indices = np.asarray(indices, np.int64)
        folder = self.media_dir / f"round{rnd}"
        folder.mkdir(parents=True, exist_ok=True)
        images = []
        for i in indices:
            path = folder / f"pool-{int(i)}.png"
            save_pool_png(pool, int(i), path)
            images.append({"id": f"pool-{int(i)}", "image": str(path.resolve())})
        batch = self.client.create_label_batch(images, list(pool.classes), self.redundancy,
                                               name=f"active round {rnd}", reward_cents=self.reward_cents,
                                               **self.batch_options)
        batch_id = int(batch["id"])
        self.batches.append(batch_id)
        t0 = time.monotonic()
        status = self.client.batch_status(batch_id)
        with tqdm(total=status.get("judgments_needed", len(indices) * self.redundancy), desc=f"crowd batch {batch_id}",
                  unit="judgment", disable=not self.progress, leave=False) as bar:
            while not status.get("complete") and time.monotonic() - t0 < self.timeout_s:
                time.sleep(self.poll_s)
                status = self.client.batch_status(batch_id)
                bar.n = min(status.get("judgments", 0), bar.total)
                bar.refresh()
        timed_out = not status.get("complete")
        if timed_out:
            self.client.close_batch(batch_id)
        frame = self.client.judgments(batch_id)
        if "is_gold" in frame:
            frame = frame[~frame["is_gold"].astype(str).str.lower().isin(["true", "1"])]  # gold copies score workers only
        if "item" in frame:
            frame = frame[frame["item"] == "label"]
        frame = frame.assign(task=frame["sheet"].astype(str))  # one task per item: key by item id
        labels = np.full(len(indices), -1, np.int64)
        agreement: list = [float("nan")] * len(indices)
        class_index = {c: k for k, c in enumerate(pool.classes)}
        if len(frame):
            agg = aggregate_dawid_skene(frame)
            pos = {f"pool-{int(i)}": j for j, i in enumerate(indices)}
            for task, lab in agg.items():
                j = pos.get(str(task))
                if j is not None:
                    labels[j] = class_index[str(lab)]
                    votes = frame.loc[frame["task"] == task, "label"].astype(str)
                    agreement[j] = float((votes == str(lab)).mean())
        n_j = frame.groupby("task").size() if len(frame) else {}
        costs = np.asarray([n_j.get(f"pool-{int(i)}", 0) * self.reward_cents / 100.0 for i in indices], float)
        truth = np.asarray([pool.label(int(i)) for i in indices])
        ok = labels >= 0
        info = {"batch": batch_id, "judgments": int(len(frame)), "timed_out": bool(timed_out),
                "unlabelled": int((~ok).sum()), "wait_s": round(time.monotonic() - t0, 2),
                "agreement": float(np.nanmean(agreement)) if ok.any() else None,
                "label_accuracy": float((labels[ok] == truth[ok]).mean()) if ok.any() else None}
        (folder / "round.json").write_text(json.dumps(info, indent=2) + "\n")
        return OracleResult(labels, costs, agreement, info)
