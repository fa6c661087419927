"""Worker quality for `argus mturk review`: the batch's judgments from the crowd database, read by
the analysis package's worker-quality model (`analysis.quality`: Beta-binomial gold posterior,
leave-one-out consensus kappa, speed; flags only on evidence, each with its reason), handed to the
MTurk service as one `WorkerQuality` per MTurk WorkerId. Glue only: `crowd` never imports
`analysis`, so the two meet here."""

from __future__ import annotations

import math

import pandas as pd

from crowd.db import Database
from crowd.models import Provider
from crowd.providers.mturk_service import WorkerQuality

MTURK_PREFIX = f"{Provider.mturk.value}:"


def batch_frame(db: Database, batch_id: int) -> pd.DataFrame:
    """The batch's judgments frame (one row per answer, as `argus crowd export` writes it)."""
    from crowd.service import iter_judgment_rows

    with db.reading() as s:
        return pd.DataFrame(list(iter_judgment_rows(s, batch_id)))


def mturk_worker_quality(db: Database, batch_id: int, *, gold_threshold: float = 0.6, min_gold: int = 5,
                         confidence: float = 0.95) -> dict[str, WorkerQuality]:
    """MTurk WorkerId -> `WorkerQuality` for the workers of `batch_id`.

    `gold_threshold`, `min_gold` and `confidence` go to
    `analysis.quality.worker_quality` (a worker is flagged when P(gold accuracy <
    `gold_threshold`) >= `confidence` over at least `min_gold` gold parts, or on the
    consensus test); `gold_n` and `gold_accuracy` are the worker's scored gold parts.
    """
    from analysis.quality import worker_flags, worker_quality

    frame = batch_frame(db, batch_id)
    if frame.empty:
        return {}
    flags = worker_flags(worker_quality(frame, gold_threshold=gold_threshold, min_gold=min_gold,
                                        confidence=confidence))
    out = {}
    for r in flags.itertuples():
        if not str(r.worker).startswith(MTURK_PREFIX):
            continue
        acc = float(r.gold_accuracy)
        out[str(r.worker)[len(MTURK_PREFIX):]] = WorkerQuality(
            flagged=bool(r.flagged), action=str(r.action), reasons=str(r.reasons or ""), gold_n=int(r.gold_n),
            gold_accuracy=None if math.isnan(acc) else acc)
    return out
