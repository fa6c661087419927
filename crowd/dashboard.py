"""What the researcher's dashboard pages show, read from the database: cost (spent, committed,
projected, MTurk's fees included), visits, answers per task, flags, throughput with an
estimated finish, and the event log. Read-only functions over a `Session`; the views in
`crowd.admin` render them.

Money is in USD `Decimal`s rounded to cents. MTurk's fees come from the MTurk adapter's one
fee rule (`crowd.providers.mturk_client.mturk_fee`, `bonus_fee`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from crowd import service as S
from crowd import speed
from crowd.models import Assignment, Event, GoldAnswer, Judgment, Task, Visit, VisitStatus, Worker, utcnow
from crowd.providers.mturk_client import bonus_fee, mturk_fee

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
# HITs of at most 9 assignments keep MTurk's fee at 20% (the launcher's default split)
DEFAULT_HIT_SIZE = 9


def _usd(cents: int) -> Decimal:
    return (Decimal(int(cents)) / 100).quantize(CENT)


def _has_table(session: Session, name: str) -> bool:
    return inspect(session.connection()).has_table(name)


def gold_per_visit(tasks_per_visit: int, gold_rate: float) -> int:
    """Gold tasks in a visit of `tasks_per_visit` tasks (the lease's deterministic mixing)."""
    return sum(S._gold_turn(i, gold_rate) for i in range(tasks_per_visit))


def missing_judgments(session: Session, batch_id: int) -> int:
    """Judgments still needed for every (non-gold) task of the batch to have its R."""
    batch = S.get_batch(session, batch_id)
    done = session.scalars(select(Task.n_done).where(Task.batch_id == batch_id, Task.is_gold.is_(False))).all()
    return sum(max(0, batch.redundancy - int(n)) for n in done)


def batch_cost(session: Session, batch_id: int) -> dict:
    """What a batch has cost and will cost, in USD.

    - `spent`: approved visits (reward + MTurk's fee on the reward of their HIT) and paid bonuses
      (+ MTurk's 20% bonus fee, at least $0.01 each);
    - `committed`: owed but not paid yet: completed visits not reviewed (MTurk approves them by
      itself after the auto-approval delay) and planned bonuses, with fees;
    - `projected`: spent + committed + the visits still needed to give every task its R
      judgments (judgments still missing / real tasks per visit, rounded up; visits under way
      count among them) at the price of one visit.
    A visit's fee is MTurk's rule for its HIT's size (and Masters); visits not from MTurk pay no
    fee. The projection prices new visits as the batch's latest HIT, or, before any launch,
    as HITs of 9 assignments on MTurk (`fee_basis` says which).
    """
    batch = S.get_batch(session, batch_id)
    reward = _usd(batch.reward_cents)
    hit_fee: dict[str, Decimal] = {}
    latest_fee, basis = None, f"not launched: priced as MTurk HITs of {DEFAULT_HIT_SIZE} assignments"
    bonuses = {"paid": [ZERO, ZERO, 0], "planned": [ZERO, ZERO, 0]}
    if _has_table(session, "mturk_hit"):
        from crowd.providers.mturk_models import MTurkBonus, MTurkHit, MTurkHitType

        masters = {t.hit_type_id: bool((t.params or {}).get("masters"))
                   for t in session.scalars(select(MTurkHitType).where(MTurkHitType.batch_id == batch_id))}
        for h in session.scalars(select(MTurkHit).where(MTurkHit.batch_id == batch_id).order_by(MTurkHit.id)):
            r = _usd(h.reward_cents)
            fee = mturk_fee(r, h.max_assignments, masters.get(h.hit_type_id, False)) if r > 0 else ZERO
            if h.hit_id:
                hit_fee[h.hit_id] = fee
            latest_fee = fee
            basis = (f"MTurk: latest HIT has {h.max_assignments} assignments"
                     f"{' (Masters)' if masters.get(h.hit_type_id) else ''}")
        for b in session.scalars(select(MTurkBonus).where(MTurkBonus.batch_id == batch_id)):
            amount = _usd(b.amount_cents)
            row = bonuses[b.status.value]
            row[0] += amount
            row[1] += bonus_fee(amount)
            row[2] += 1
    if latest_fee is None:
        latest_fee = mturk_fee(reward, DEFAULT_HIT_SIZE) if reward > 0 else ZERO

    counts: Counter = Counter()
    money = {"spent": [ZERO, ZERO], "committed": [ZERO, ZERO]}
    for status, hit_id in session.execute(select(Visit.status, Visit.hit_id).where(Visit.batch_id == batch_id)):
        counts[status.value] += 1
        where = {VisitStatus.approved: "spent", VisitStatus.completed: "committed"}.get(status)
        if where:
            money[where][0] += reward
            money[where][1] += hit_fee.get(hit_id, ZERO) if reward > 0 else ZERO

    missing = missing_judgments(session, batch_id)
    real_per_visit = max(1, batch.tasks_per_visit - gold_per_visit(batch.tasks_per_visit, batch.gold_rate))
    in_progress = counts["started"] + counts["consented"]
    visits_needed = math.ceil(missing / real_per_visit) if missing else 0
    per_visit = reward + latest_fee

    def part(name: str, bonus_key: str) -> dict:
        rewards, fees = money[name]
        b_amount, b_fees, b_n = bonuses[bonus_key]
        return {"rewards": rewards, "fees": fees, "bonuses": b_amount, "bonus_fees": b_fees, "bonus_count": b_n,
                "total": (rewards + fees + b_amount + b_fees).quantize(CENT)}

    spent, committed = part("spent", "paid"), part("committed", "planned")
    remaining = (per_visit * visits_needed).quantize(CENT)
    return {
        "batch": batch_id, "reward": reward, "fee_per_visit": latest_fee, "per_visit": per_visit, "fee_basis": basis,
        "visits": {"approved": counts["approved"], "completed": counts["completed"], "rejected": counts["rejected"],
                   "in_progress": in_progress},
        "spent": spent, "committed": committed,
        "judgments_missing": missing, "real_tasks_per_visit": real_per_visit, "visits_needed": visits_needed,
        "remaining": remaining, "projected": (spent["total"] + committed["total"] + remaining).quantize(CENT),
    }


def visits(session: Session, batch_id: int) -> list[dict]:
    """Every visit of a batch, newest first: worker, provider, status, completion code and kind,
    tasks done, active time (the sum of the seconds the pages counted on its answers) and
    elapsed time (start to completion, or to now while under way); `time_doubtful` when the
    answers claim more active time than the visit lasted."""
    S.get_batch(session, batch_id)
    active = dict(session.execute(
        select(Assignment.visit_id, func.sum(Judgment.duration_s))
        .join(Judgment, Judgment.assignment_id == Assignment.id)
        .where(Assignment.batch_id == batch_id).group_by(Assignment.visit_id)).all())
    now = utcnow()
    out = []
    for v, w in session.execute(select(Visit, Worker).join(Worker, Worker.id == Visit.worker_id)
                                .where(Visit.batch_id == batch_id).order_by(Visit.id.desc())):
        end = v.completed_at or now
        active_s = None if active.get(v.id) is None else round(float(active[v.id]), 1)
        elapsed_s = round((end - v.started_at).total_seconds(), 1)
        out.append({
            "id": v.id, "worker": w.label, "worker_id": w.id, "provider": v.provider.value, "status": v.status.value,
            "assignment": v.external_assignment_id or "", "completion_code": v.completion_code or "",
            "completion": v.completion or "", "partial_reason": v.partial_reason or "", "tasks_done": v.n_submitted,
            "active_s": active_s, "elapsed_s": elapsed_s,
            # the pages report their own seconds: more than the visit lasted was not measured there
            "time_doubtful": active_s is not None and active_s > elapsed_s + 1.0,
            "started_at": v.started_at, "completed_at": v.completed_at, "review_note": v.review_note or "",
        })
    return out


def task_list(session: Session, batch_id: int) -> list[dict]:
    """The batch's tasks with how many answers each has and how many were reviewed."""
    S.get_batch(session, batch_id)
    answers = {tid: (n, acc, rej) for tid, n, acc, rej in session.execute(
        select(Judgment.task_id, func.count(Judgment.id),
               func.count(Judgment.id).filter(Judgment.review == "accepted"),
               func.count(Judgment.id).filter(Judgment.review == "rejected"))
        .where(Judgment.batch_id == batch_id).group_by(Judgment.task_id))}
    return [{"id": t.id, "kind": t.kind, "sheet": t.sheet or "", "is_gold": t.is_gold,
             "answers": answers.get(t.id, (0, 0, 0))[0], "accepted": answers.get(t.id, (0, 0, 0))[1],
             "rejected": answers.get(t.id, (0, 0, 0))[2]}
            for t in session.scalars(select(Task).where(Task.batch_id == batch_id).order_by(Task.id))]


def task_answers(session: Session, task_id: int, *, config: Mapping | None = None) -> dict:
    """One task (kind, payload, gold answer) and every answer to it with its worker, time and
    review; `too_fast` marks answers under the batch's speed floor (`speed_floor`)."""
    task = session.get(Task, task_id)
    if task is None:
        raise S.NotFound(f"task {task_id} not found", "task")
    gold = session.scalar(select(GoldAnswer.answer).where(GoldAnswer.task_id == task_id))
    floors = speed_floors(session, task.batch_id, config)
    rows = []
    for j, w in session.execute(select(Judgment, Worker).join(Worker, Worker.id == Judgment.worker_id)
                                .where(Judgment.task_id == task_id).order_by(Judgment.id)):
        floor = floors.get(task.kind)
        rows.append({"id": j.id, "worker": w.label, "worker_id": w.id, "answer": j.answer,
                     "duration_s": j.duration_s, "submitted_at": j.submitted_at, "gold_score": j.gold_score,
                     "review": j.review or "", "review_note": j.review_note or "",
                     "too_fast": floor is not None and j.duration_s is not None and j.duration_s < floor})
    return {"id": task.id, "batch": task.batch_id, "kind": task.kind, "sheet": task.sheet or "",
            "is_gold": task.is_gold, "payload": task.payload, "gold": gold, "judgments": rows,
            "speed_floor": floors.get(task.kind)}


def speed_floors(session: Session, batch_id: int, config: Mapping | None = None) -> dict[str, float]:
    """Per task kind, the seconds below which an answer counts as too fast (`crowd.speed`'s
    rule: the batch's or the server's minimum, else SPEED_FAST_RATIO x the median of the
    workers' medians); kinds without a threshold yet are left out."""
    limits = speed.thresholds(session, S.get_batch(session, batch_id), config)
    return {k: v["min_seconds"] for k, v in limits.items() if v["min_seconds"] is not None}


def flags(session: Session, batch_id: int, *, config: Mapping | None = None,
          low_agreement: float = 0.5) -> list[dict]:
    """Workers of a batch with a reason to look at their answers, one row each with every
    reason found: `too_fast` (`crowd.speed`'s worker flag: at least half of their timed answers,
    and two, under the kind's threshold), `gold` (the worker is flagged: by the gold check, or
    by a researcher), `low_agreement` (share of answers equal to the item's majority,
    `service.worker_stats`, below `low_agreement`)."""
    _, per_worker = speed.worker_speed(session, S.get_batch(session, batch_id), config)
    out = []
    for w in S.worker_stats(session, batch_id):
        reasons = []
        sp = per_worker.get(w["id"], {})
        if sp.get("flag_fast"):
            reasons.append(f"too fast: {sp['too_fast']} of {sp['timed']} answers under the speed floor")
        if w["status"] == "flagged":
            reasons.append("gold: flagged by the gold check" if w["gold_answers"] else "flagged by a researcher")
        agreement = w["agreement_with_majority"]
        if agreement is not None and agreement < low_agreement:
            reasons.append(f"low agreement: {agreement:.0%} of answers agree with the item majority")
        if reasons:
            out.append({**w, "too_fast": sp.get("too_fast", 0), "reasons": reasons})
    return out


ANALYSIS_FLAGS_EVENT = "analysis_flags"


def record_analysis_flags(session: Session, batch_id: int, rows: list[dict], source: str) -> None:
    """Store the worker flags an analysis computed (`argus crowd flags --record`: the worker
    quality model of `analysis.quality`) as one event, for the flags page to show: `crowd` does
    not import `analysis`, the CLI brings the two together. `rows`: `worker, action, reasons,
    n_answers, gold_n, gold_accuracy, min_kappa` (None for a statistic without data)."""
    S.get_batch(session, batch_id)
    keep = ("worker", "flagged", "action", "reasons", "n_answers", "gold_n", "gold_accuracy", "min_kappa")
    S.log_event(session, ANALYSIS_FLAGS_EVENT, batch_id=batch_id, source=source,
                workers=[{k: r.get(k) for k in keep} for r in rows])


def analysis_flags(session: Session, batch_id: int) -> dict | None:
    """The latest recorded analysis flags of a batch: `{"at", "source", "workers"}`, or None."""
    e = session.scalar(select(Event).where(Event.batch_id == batch_id, Event.type == ANALYSIS_FLAGS_EVENT)
                       .order_by(Event.id.desc()).limit(1))
    if e is None:
        return None
    return {"at": e.at, "source": e.data.get("source", ""), "workers": e.data.get("workers", [])}


def throughput(session: Session, batch_id: int, *, window_h: float = 1.0, now: datetime | None = None) -> dict:
    """Judgments per hour (all and over the last `window_h` hours), a histogram by hour of the
    last 24 hours, and the estimated finish: judgments still missing / recent rate."""
    now = now or utcnow()
    st = S.batch_status(session, batch_id)
    times = session.scalars(select(Judgment.submitted_at).join(Task, Task.id == Judgment.task_id).where(
        Judgment.batch_id == batch_id, Task.is_gold.is_(False)).order_by(Judgment.submitted_at)).all()
    recent = [t for t in times if t >= now - timedelta(hours=window_h)]
    rate_recent = len(recent) / window_h
    span_h = (now - times[0]).total_seconds() / 3600 if times else 0.0
    rate_all = len(times) / span_h if span_h > 0 else 0.0
    missing = missing_judgments(session, batch_id)
    rate = rate_recent or rate_all
    eta = None if missing == 0 or rate <= 0 else now + timedelta(hours=missing / rate)
    hours = []
    for i in range(23, -1, -1):
        start = (now - timedelta(hours=i)).replace(minute=0, second=0, microsecond=0)
        hours.append({"hour": start, "judgments": sum(1 for t in times if start <= t < start + timedelta(hours=1))})
    peak = max((h["judgments"] for h in hours), default=0)
    for h in hours:
        h["share"] = h["judgments"] / peak if peak else 0.0
    return {"judgments": len(times), "needed": st["judgments_needed"], "missing": missing,
            "rate_recent_per_h": round(rate_recent, 2), "rate_all_per_h": round(rate_all, 2), "window_h": window_h,
            "finished": missing == 0, "eta": eta, "hours": hours, "status": st["status"]}


def events(session: Session, batch_id: int, *, type_: str | None = None, before: int | None = None,
           limit: int = 100) -> list[dict]:
    """The batch's event log, newest first, `limit` at a time (`before`: an event id to page on)."""
    S.get_batch(session, batch_id)
    q = select(Event).where(Event.batch_id == batch_id)
    if type_:
        q = q.where(Event.type == type_)
    if before:
        q = q.where(Event.id < before)
    labels = {}
    rows = session.scalars(q.order_by(Event.id.desc()).limit(limit)).all()
    ids = {e.worker_id for e in rows if e.worker_id}
    if ids:
        labels = {w.id: w.label for w in session.scalars(select(Worker).where(Worker.id.in_(ids)))}
    return [{"id": e.id, "at": e.at, "type": e.type, "worker": labels.get(e.worker_id, ""), "task": e.task_id,
             "assignment": e.assignment_id, "data": e.data or {}} for e in rows]


def event_types(session: Session, batch_id: int) -> list[str]:
    return list(session.scalars(select(Event.type).where(Event.batch_id == batch_id).distinct().order_by(Event.type)))
