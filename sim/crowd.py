"""A SIMULATED crowd through the real worker pages: worker models answering from the toy
world's ground truth, run concurrently against a live server.

This is a simulation. No person is involved: each crowd member is a `sim.worker.SimulatedWorker`
that opens the entry link, ticks the consent form, reads the instructions, opens task pages,
answers them and posts the answer exactly as `static/worker.js` does, visit after visit, until
the server has no task left for it.

Answers come from the ground truth of the toy world (`sim.truth.GroundTruth`), bent by a
worker model (`WorkerProfile`):

- `reliable`: the truth with small noise;
- `sloppy`: more noise, faster (shorter `duration_s`);
- `spammer`: random answers, or always "yes" (strategy `random` | `always_yes`);
- `adversarial`: the truth inverted.

Feature names come with synonyms and typos. Each member's *true accuracy* is recorded:
`nominal_accuracy` (the model's design value on a binary question) and `accuracy` (the share of
its answers that equal the ground truth, measured from its own answers), so aggregation methods
(Dawid-Skene) can be checked against it.

    truth = GroundTruth("runs/demo/sheets", "runs/demo/data")
    crowd = make_crowd(20, {"reliable": 12, "sloppy": 3, "spammer": 3, "adversarial": 2}, seed=0)
    result = run_crowd("http://127.0.0.1:5000", batch_id, crowd, truth, api_token=token)
    result.roster()   # DataFrame: worker, kind, strategy, nominal_accuracy, accuracy, n_tasks, ...
"""

from __future__ import annotations

import json
import math
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np

from crowd.judgments import CANT_TELL
from sim.truth import GroundTruth, dilate
from crowd.client import CrowdClient
from sim.worker import Page, SimulatedWorker, SimulationError, WorkerLog

WORKER_KINDS = ("reliable", "sloppy", "spammer", "adversarial")
SPAM_WORDS = ["thing", "idk", "nothing", "good", "stuff", "asdf", "image", "yes", "ok", "pattern"]


# ------------------------------------------------------------------------------ worker models

@dataclass(frozen=True)
class WorkerProfile:
    """One simulated worker's answer model.

    `noise`: probability that one answer departs from the model's intended answer;
    `cant_tell`: probability of "can't tell" on an argument; `typo`: probability of a typo in
    a feature name; `seconds`: mean simulated time per task (reported as `duration_s`, the
    simulation does not sleep); `strategy`: spammers only, `random` or `always_yes`.
    """

    kind: str
    noise: float = 0.05
    cant_tell: float = 0.02
    typo: float = 0.1
    seconds: float = 20.0
    strategy: str = ""

    def __post_init__(self):
        if self.kind not in WORKER_KINDS:
            raise ValueError(f"worker kind {self.kind!r}: expected one of {', '.join(WORKER_KINDS)}")
        if not 0.0 <= self.noise <= 1.0 or not 0.0 <= self.cant_tell <= 1.0:
            raise ValueError(f"worker {self.kind}: noise and cant_tell must be in [0, 1]")
        if self.kind == "spammer" and self.strategy not in ("random", "always_yes"):
            raise ValueError(f"spammer strategy {self.strategy!r}: expected random or always_yes")

    @property
    def nominal_accuracy(self) -> float:
        """Chance of matching the truth on a balanced yes/no question, by design."""
        if self.kind == "spammer":
            return 1.0 / 3.0 if self.strategy == "random" else 0.5
        p_answer = 1.0 - self.cant_tell
        correct = 1.0 - self.noise
        return p_answer * (correct if self.kind != "adversarial" else 1.0 - correct)


DEFAULT_PROFILES = {
    "reliable": dict(noise=0.06, cant_tell=0.02, typo=0.08, seconds=25.0),
    "sloppy": dict(noise=0.25, cant_tell=0.05, typo=0.3, seconds=8.0),
    "spammer": dict(noise=1.0, cant_tell=0.0, typo=0.0, seconds=2.5),
    "adversarial": dict(noise=0.08, cant_tell=0.0, typo=0.05, seconds=15.0),
}


@dataclass
class CrowdMember:
    """A simulated person: worker id (starts with `sim-`, so nobody takes it for a person),
    answer model and its own random stream."""

    worker_id: str
    profile: WorkerProfile
    seed: int

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)
        self.answered: Counter = Counter()  # task key -> times answered (seeds its answer stream)


def make_crowd(n_workers: int = 20, mix: dict | None = None, *, seed: int = 0, prefix: str = "sim") -> list[CrowdMember]:
    """A simulated crowd of `n_workers`.

    `mix` maps worker kind -> count (ints summing to n_workers) or share (floats summing to 1);
    default 14 reliable, 2 sloppy, 3 spammers, 1 adversarial per 20. Spammers alternate between
    the `random` and `always_yes` strategies. Worker ids are `<prefix>-NN`, shuffled so that the
    id says nothing about the kind.
    """
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    mix = dict(mix or {"reliable": 0.7, "sloppy": 0.1, "spammer": 0.15, "adversarial": 0.05})
    unknown = sorted(set(mix) - set(WORKER_KINDS))
    if unknown:
        raise ValueError(f"crowd mix: unknown worker kind(s) {unknown}; expected {', '.join(WORKER_KINDS)}")
    if all(isinstance(v, int) for v in mix.values()):
        counts = dict(mix)
        if sum(counts.values()) != n_workers:
            raise ValueError(f"crowd mix counts {counts} sum to {sum(counts.values())}, not n_workers={n_workers}")
    else:
        total = float(sum(mix.values()))
        if total <= 0:
            raise ValueError("crowd mix shares must sum to a positive number")
        raw = {k: n_workers * v / total for k, v in mix.items()}
        counts = {k: int(math.floor(v)) for k, v in raw.items()}
        for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[:n_workers - sum(counts.values())]:
            counts[k] += 1  # largest remainder
    kinds = [k for k in WORKER_KINDS for _ in range(counts.get(k, 0))]
    rng = np.random.default_rng([seed, 0xC0D])
    order = rng.permutation(len(kinds))
    crowd, n_spam = [], 0
    for slot, i in enumerate(order):
        kind = kinds[i]
        strategy = ""
        if kind == "spammer":
            strategy = ("random", "always_yes")[n_spam % 2]
            n_spam += 1
        profile = WorkerProfile(kind, strategy=strategy, **DEFAULT_PROFILES[kind])
        crowd.append(CrowdMember(f"{prefix}-{slot + 1:02d}", profile, seed=int(rng.integers(2 ** 31))))
    return crowd


# ------------------------------------------------------------------------------ answering

def _typo(word: str, rng) -> str:
    """One keyboard slip: swap two neighbours, drop or double a letter."""
    if len(word) < 3:
        return word
    i = int(rng.integers(1, len(word) - 1))
    op = int(rng.integers(3))
    if op == 0:
        return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]
    if op == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def _flip(answer: str) -> str:
    return {"yes": "no", "no": "yes"}.get(answer, answer)


def _points_in(mask: np.ndarray, n: int, rng, jitter: float = 0.0) -> list[list[float]]:
    H, W = mask.shape
    ys, xs = np.nonzero(mask)
    if not len(xs):
        ys, xs = np.nonzero(np.ones_like(mask, dtype=bool))
    pick = rng.integers(len(xs), size=n)
    pts = []
    for k in pick:
        x = (xs[k] + 0.5) / W + rng.normal(0, jitter)
        y = (ys[k] + 0.5) / H + rng.normal(0, jitter)
        pts.append([round(float(np.clip(x, 0, 1)), 4), round(float(np.clip(y, 0, 1)), 4)])
    return pts


def answer_task(worker: CrowdMember, truth: GroundTruth, task: dict) -> tuple[dict, list[dict]]:
    """The worker's answer to one task as seen on its page.

    `task`: `{"kind", "sheet", "ranks", "channel", "classes", "max_marks"}` (parsed from the page).
    Returns `(answer JSON as worker.js posts it, log rows)`; log rows hold `item, answer, truth`
    for the questions with a ground truth (argument ratings, labels, names).
    """
    p, kind = worker.profile, task["kind"]
    # one random stream per (worker, task): answers do not depend on the order tasks arrive in
    key = f'{kind}:{task.get("sheet")}:{task.get("channel")}'
    worker.answered[key] += 1
    rng = np.random.default_rng([worker.seed, zlib.crc32(key.encode()), worker.answered[key]])
    log = []
    if kind == "rate_arguments":
        ratings, relevant = {}, []
        for rank in task["ranks"]:
            t = truth.argument_truth(task["sheet"], rank)
            relevant.append(t == "yes")
            if p.kind == "spammer":
                a = "yes" if p.strategy == "always_yes" else str(rng.choice(["yes", "no", "cant_tell"]))
            elif rng.random() < p.cant_tell:
                a = "cant_tell"
            else:
                a = t if p.kind != "adversarial" else _flip(t)
                if rng.random() < p.noise:
                    a = _flip(a)
            ratings[str(rank)] = a
            log.append({"item": f"arg:{rank}", "answer": a, "truth": t})
        share = float(np.mean(relevant)) if relevant else 0.0
        if p.kind == "spammer":
            match = int(rng.integers(1, 6)) if p.strategy == "random" else 5
        else:
            share = 1.0 - share if p.kind == "adversarial" else share
            match = int(np.clip(round(1 + 4 * share + rng.normal(0, 0.5 + 2 * p.noise)), 1, 5))
        return {"arguments": ratings, "match": match, "comment": ""}, log
    if kind == "mark_rationale":
        n_max = max(1, int(task.get("max_marks") or 5))
        n = int(min(n_max, rng.integers(1, 4)))
        evidence = truth.evidence_mask(task["sheet"], task.get("class"))
        if p.kind == "spammer":
            pts = [[round(float(v), 4) for v in rng.random(2)] for _ in range(n)]
        elif p.kind == "adversarial":
            pts = _points_in(~dilate(truth.masks[task["sheet"]] > 0, 2), n, rng)
        else:
            pts = []
            for _ in range(n):
                stray = rng.random() < p.noise
                pts += _points_in(~evidence if stray else evidence, 1, rng, jitter=0.01 + 0.05 * p.noise)
        return {"points": pts, "boxes": []}, [{"item": "rationale", "answer": json.dumps(pts), "truth": ""}]
    if kind == "name_feature":
        names = truth.channel_names(task["channel"])
        concept = truth.channel_concept.get(int(task["channel"]), {"share": 0.0})
        if p.kind == "spammer":
            name = str(rng.choice(SPAM_WORDS)) if p.strategy == "random" else "yes"
        elif p.kind == "adversarial" or rng.random() < p.noise:
            others = [q["name"] for q in truth.parts.values() if q["name"] not in names]
            name = str(rng.choice(others)) if others else names[0]
        else:
            name = str(rng.choice(names))
            if rng.random() < p.typo:
                name = _typo(name, rng)
        coherence = int(np.clip(round(1 + 4 * concept["share"] + rng.normal(0, 0.6)), 1, 5))
        if p.kind == "spammer":
            coherence = int(rng.integers(1, 6))
        return {"name": name, "coherence": coherence}, [{"item": "name", "answer": name, "truth": names[0]}]
    if kind == "label":
        s = truth.sheets[task["sheet"]]
        true = s.get("label") or s["prediction"]["class"]
        options = task.get("classes") or truth.classes
        i = truth.classes.index(true)
        if p.kind == "spammer":
            a = str(rng.choice(options)) if p.strategy == "random" else options[0]
        elif p.kind == "adversarial":
            a = truth.classes[int(np.argmax(truth.confusion[i]))]
        elif rng.random() < p.noise:
            a = truth.classes[int(rng.choice(len(truth.classes), p=truth.confusion[i]))]
        else:
            a = true
        return {"label": a}, [{"item": "label", "answer": a, "truth": true}]
    raise SimulationError(f"task kind {kind!r} is not simulated")


# ------------------------------------------------------------------------------ the pages

def _media_rel(src: str) -> str:
    """`/media/<batch>/<relpath>` -> relpath."""
    parts = urlparse(src).path.split("/")
    return "/".join(parts[3:]) if len(parts) > 3 and parts[1] == "media" else ""


def task_from_page(page: Page, truth: GroundTruth) -> dict:
    """What the worker sees on a task page, in the terms `answer_task` uses."""
    form = page.form
    kind = form["data-kind"]
    media = [_media_rel(s) for s in page.images]
    task = {"kind": kind, "sheet": None, "ranks": [], "channel": None, "classes": [], "max_marks": None}
    for rel in media:
        if rel in truth.by_image:
            task["sheet"] = truth.by_image[rel]
            break
    if kind == "rate_arguments":
        task["ranks"] = [int(f[len("q-arg-"):]) for f in page.fieldsets if f.startswith("q-arg-")]
    elif kind == "name_feature":
        for rel in media:
            if rel in truth.strip_channel:
                task["channel"] = truth.strip_channel[rel]
                break
        if task["channel"] is None:
            raise SimulationError(f"name_feature page: no known exemplar strip among {media}")
        return task
    elif kind == "label":
        # "can't tell" is an answer, not a class
        task["classes"] = [i["value"] for i in page.inputs if i.get("name") == "label" and i["value"] != CANT_TELL]
    elif kind == "mark_rationale":
        task["max_marks"] = int((page.marker or {}).get("data-max") or 5)
    if task["sheet"] is None:
        raise SimulationError(f"{kind} page: image not one of the sheets ({media})")
    return task


# ------------------------------------------------------------------------------ the run

@dataclass
class CrowdResult:
    """Result of `run_crowd`: the crowd members, one `WorkerLog` per member (same order) and
    the wall time."""

    members: list
    logs: list
    seconds: float
    batch_id: int

    def answers(self):
        """DataFrame of every simulated answer: worker, kind, sheet, channel, item, answer, truth, correct."""
        import pandas as pd

        rows = [{"worker": log.name, **a} for log in self.logs for a in log.answers]
        df = pd.DataFrame(rows, columns=["worker", "kind", "sheet", "channel", "item", "answer", "truth"])
        df["correct"] = np.where(df["truth"].astype(str) != "", df["answer"].astype(str) == df["truth"].astype(str), np.nan)
        return df

    def roster(self, item_kind: str = "rate_arguments"):
        """One row per simulated worker: `worker, kind, strategy, nominal_accuracy, accuracy`
        (share of its `item_kind` answers equal to the ground truth), `n_answers, n_tasks,
        visits, retries`."""
        import pandas as pd

        ans = self.answers()
        ans = ans[(ans["kind"] == item_kind) & ans["correct"].notna()]
        acc = ans.groupby("worker")["correct"].mean()
        n = ans.groupby("worker").size()
        rows = []
        for w, log in zip(self.members, self.logs):
            rows.append({"worker": w.worker_id, "kind": w.profile.kind, "strategy": w.profile.strategy,
                         "nominal_accuracy": round(w.profile.nominal_accuracy, 4),
                         "accuracy": float(acc.get(w.worker_id, np.nan)), "n_answers": int(n.get(w.worker_id, 0)),
                         "n_tasks": log.tasks, "visits": log.visits, "retries": log.retries,
                         "is_spammer": w.profile.kind == "spammer"})
        return pd.DataFrame(rows)


def run_worker(base_url: str, batch_id: int, member: CrowdMember, truth: GroundTruth, *,
               max_visits: int = 1000, on_task=None, worker_token: str | None = None) -> WorkerLog:
    """Take one crowd member through visits of the batch (the worker pages) until no task is
    left for it; its log's `answers` hold `kind, sheet, channel, item, answer, truth` rows.
    `worker_token`: its researcher-signed link token (else each visit is a new anonymous worker)."""
    worker = SimulatedWorker(base_url, member.worker_id, worker_token=worker_token)
    log = worker.log

    def answer(page: Page):
        task = task_from_page(page, truth)
        body, rows = answer_task(member, truth, task)
        log.answers += [{"kind": task["kind"], "sheet": task["sheet"], "channel": task["channel"], **row}
                        for row in rows]
        log.kinds[task["kind"]] += 1
        if on_task:
            on_task()
        return body, float(member.rng.gamma(4.0, member.profile.seconds / 4.0))

    t0 = time.perf_counter()
    for _ in range(max_visits):
        if worker.visit_pages(batch_id, answer) == 0:
            break
    log.seconds = time.perf_counter() - t0
    return log


def run_crowd(base_url: str, batch_id: int, crowd: list[CrowdMember], truth: GroundTruth, *, api_token: str,
              threads: int | None = None, progress: bool = True, total_tasks: int | None = None) -> CrowdResult:
    """Run the simulated crowd concurrently (one thread per worker, at most `threads` at once)
    against a live server until every worker has run out of tasks. Each member enters with a
    researcher-signed link in its own name (made with `api_token`), so the export names it.

    Returns a `CrowdResult`; raises `SimulationError` if a worker could not use the server.
    """
    from training.progress import progress_bar as tqdm

    t0 = time.perf_counter()
    bar = tqdm(total=total_tasks, desc="simulated crowd", unit="task", disable=not progress, leave=False)
    lock = threading.Lock()

    def tick():
        with lock:
            bar.update(1)

    with ThreadPoolExecutor(max_workers=threads or len(crowd), thread_name_prefix="sim-worker") as pool:
        links = CrowdClient(base_url, api_token).worker_links(batch_id, [w.worker_id for w in crowd])
        futures = [pool.submit(run_worker, base_url, batch_id, w, truth, on_task=tick, worker_token=links[w.worker_id])
                   for w in crowd]
        for f in as_completed(futures):
            f.result()  # the first failure, raised early
        logs = [f.result() for f in futures]
    bar.close()
    return CrowdResult(list(crowd), logs, time.perf_counter() - t0, batch_id)
