"""Speed checks: the minimum plausible answer time per task kind, and the judgments and workers
below it.

The rule, per batch and kind, first that applies:
1. the batch's own setting (`options["speed_min_seconds"][kind]`, `--min-seconds KIND=S`);
2. the server's (`SPEED_MIN_SECONDS[kind]`);
3. derived from the batch's own answers: `SPEED_FAST_RATIO` (batch option `speed_fast_ratio`;
   default 0.2, as `analysis.quality`) x the median over workers of each worker's median
   seconds on that kind, once at least `MIN_WORKERS` workers have timed answers of the kind.
   The median of medians is robust: neither a few slow outliers nor one prolific fast worker
   move it much. With fewer workers there is no threshold yet, and nothing is flagged.

A judgment is *too fast* when its `duration_s` is below its kind's threshold (answers without
a time, e.g. the no-JavaScript form, are never flagged). A worker is flagged *fast* when at
least `WORKER_FAST_SHARE` of their timed answers in the batch (and at least
`MIN_WORKER_ANSWERS` of them) are too fast. Flags are for review, never automatic rejection:
fast, careful people exist.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from crowd.models import Batch, Judgment, Task

MIN_WORKERS = 3
WORKER_FAST_SHARE = 0.5
MIN_WORKER_ANSWERS = 2


def _config(config: Mapping | None) -> Mapping:
    if config is not None:
        return config
    from flask import current_app, has_app_context

    if has_app_context():
        return current_app.config
    from crowd.config import DEFAULTS

    return DEFAULTS


def _durations(session: Session, batch_id: int) -> list[tuple[str, int, float]]:
    return session.execute(select(Task.kind, Judgment.worker_id, Judgment.duration_s)
                           .join(Task, Task.id == Judgment.task_id)
                           .where(Judgment.batch_id == batch_id, Judgment.duration_s.is_not(None))).all()


def thresholds(session: Session, batch: Batch, config: Mapping | None = None, rows=None) -> dict[str, dict]:
    """`{kind: {"min_seconds", "source" ("batch"|"server"|"median"|None), "median_s", "workers", "ratio"}}`
    for every kind of the batch (`min_seconds` None: no threshold yet)."""
    config = _config(config)
    options = batch.options or {}
    ratio = float(options.get("speed_fast_ratio", config.get("SPEED_FAST_RATIO", 0.2)))
    per_worker: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for kind, worker, d in rows if rows is not None else _durations(session, batch.id):
        per_worker[kind][worker].append(float(d))
    out = {}
    for kind in batch.kinds:
        medians = [statistics.median(v) for v in per_worker[kind].values()]
        median = statistics.median(medians) if medians else None
        entry = {"min_seconds": None, "source": None, "median_s": None if median is None else round(median, 3),
                 "workers": len(medians), "ratio": ratio}
        fixed_batch = (options.get("speed_min_seconds") or {}).get(kind)
        fixed_server = (config.get("SPEED_MIN_SECONDS") or {}).get(kind)
        if fixed_batch is not None:
            entry.update(min_seconds=float(fixed_batch), source="batch")
        elif fixed_server is not None:
            entry.update(min_seconds=float(fixed_server), source="server")
        elif median is not None and len(medians) >= MIN_WORKERS:
            entry.update(min_seconds=round(ratio * median, 3), source="median")
        out[kind] = entry
    return out


def too_fast(duration_s, threshold: dict | None) -> bool:
    """Whether one answer is below its kind's minimum plausible time."""
    limit = (threshold or {}).get("min_seconds")
    return duration_s is not None and limit is not None and float(duration_s) < limit


def worker_speed(session: Session, batch: Batch, config: Mapping | None = None) -> tuple[dict, dict[int, dict]]:
    """`(thresholds, {worker_id: {"timed", "too_fast", "too_fast_share", "flag_fast"}})` of a batch."""
    rows = _durations(session, batch.id)
    limits = thresholds(session, batch, config, rows)
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for kind, worker, d in rows:
        counts[worker][0] += 1
        counts[worker][1] += too_fast(d, limits.get(kind))
    out = {}
    for worker, (timed, fast) in counts.items():
        share = fast / timed if timed else 0.0
        out[worker] = {"timed": timed, "too_fast": fast, "too_fast_share": round(share, 4),
                       "flag_fast": fast >= MIN_WORKER_ANSWERS and share >= WORKER_FAST_SHARE}
    return limits, out


def check_options(value) -> dict[str, float]:
    """A batch's `speed_min_seconds` (`{kind: seconds}`), checked."""
    from crowd.judgments import KINDS

    if not isinstance(value, dict):
        raise ValueError(f"speed_min_seconds must be an object {{kind: seconds}}, got {value!r}")
    out = {}
    for kind, seconds in value.items():
        if kind not in KINDS:
            raise ValueError(f"speed_min_seconds: unknown task kind {kind!r}; expected one of {', '.join(KINDS)}")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 3600:
            raise ValueError(f"speed_min_seconds.{kind}: expected seconds in [0, 3600], got {seconds!r}")
        out[kind] = float(seconds)
    return out
