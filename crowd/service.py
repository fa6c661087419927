"""Service layer: every rule of the task server, called by the blueprints, the CLI, the MTurk
adapter and tests alike.

Most functions take a `Session` that is already inside a write transaction
(`Database.transaction()`: SQLite `BEGIN IMMEDIATE`, PostgreSQL READ COMMITTED with row locks), so
callers can compose them atomically. `submit` takes the `Database` itself because it commits the
judgment first and scores gold afterwards in a second transaction ("stored before anything
else happens").

Rules enforced here:
- a task gets at most R judgments, from R distinct workers (capacity `n_done + n_active < R`
  checked on the locked task row; `UNIQUE(task, worker)` on assignments and judgments);
- a worker never gets a task twice, nor any task of a batch whose `exclude_batches` lists a
  batch they took part in (retake blocking);
- expired leases return the task to the queue; least-judged tasks go first, and among equals
  each worker gets the tasks in their own random order (seeded: `order_prefix`);
- a worker gets at most one task per image in a batch, but for a gold copy of a question they
  answered (option `allow_same_image` lifts the rule);
- gold tasks are mixed in at `gold_rate` and score workers; low scorers are flagged, never dropped;
- submissions are idempotent by client token.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import exists, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from crowd import judgments, media, practice, speed
from crowd import kinds as K
from crowd.db import Database, is_postgres, task_rank
from crowd.models import (
    Assignment,
    AssignmentStatus,
    Batch,
    BatchStatus,
    Consent,
    Event,
    GoldAnswer,
    Judgment,
    Provider,
    Task,
    Visit,
    VisitStatus,
    Worker,
    WorkerStatus,
    utcnow,
)
from crowd.sheets import TaskSpec, sheet_batch, tasks_from_images


class ServiceError(Exception):
    """A request the rules refuse; `status` is the HTTP status, `field` the offending field."""

    status = 400

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(ServiceError):
    status = 404


class Forbidden(ServiceError):
    status = 403


class Conflict(ServiceError):
    status = 409


class RateLimited(ServiceError):
    """Too many requests of one kind (leases, logins) in a window; `retry_after` in seconds."""

    status = 429

    def __init__(self, message: str, field: str | None = None, retry_after_s: float = 1.0):
        super().__init__(message, field)
        self.retry_after = max(1, int(math.ceil(retry_after_s)))


def log_event(session: Session, type_: str, *, batch_id=None, worker_id=None, task_id=None,
              assignment_id=None, **data) -> None:
    """Append one event to the log (in the caller's transaction)."""
    session.add(Event(type=type_, batch_id=batch_id, worker_id=worker_id, task_id=task_id,
                      assignment_id=assignment_id, data=data))


# ----------------------------------------------------------------------------------- batches

def _check_batch_params(redundancy, gold_rate, tasks_per_visit, reward_cents, lease_seconds):
    if not isinstance(redundancy, int) or isinstance(redundancy, bool) or not 1 <= redundancy <= 100:
        raise ServiceError(f"redundancy must be an integer 1..100, got {redundancy!r}", "redundancy")
    if not isinstance(gold_rate, (int, float)) or not 0.0 <= gold_rate < 1.0:
        raise ServiceError(f"gold_rate must be in [0, 1), got {gold_rate!r}", "gold_rate")
    if not isinstance(tasks_per_visit, int) or not 1 <= tasks_per_visit <= 500:
        raise ServiceError(f"tasks_per_visit must be an integer 1..500, got {tasks_per_visit!r}", "tasks_per_visit")
    if not isinstance(reward_cents, int) or reward_cents < 0:
        raise ServiceError(f"reward_cents must be a non-negative integer, got {reward_cents!r}", "reward_cents")
    if not isinstance(lease_seconds, int) or not 10 <= lease_seconds <= 7 * 86400:
        raise ServiceError(f"lease_seconds must be an integer 10..604800, got {lease_seconds!r}", "lease_seconds")


def create_batch(session: Session, *, name: str, kinds: list[str], media_root: str, specs: list[TaskSpec],
                 classes: list[str], redundancy: int = 3, gold_rate: float = 0.0, tasks_per_visit: int = 5,
                 reward_cents: int = 0, lease_seconds: int = 900, exclude_batches: list[int] | None = None,
                 gold: list[dict] | None = None, options: dict | None = None,
                 manifest: dict[str, str] | None = None, outside: list[dict] | None = None) -> Batch:
    """Create a batch with one task per spec plus gold copies.

    `manifest` (`{key: file}`) lists the only files the batch serves (`crowd.media`); every
    file a task or practice payload names must be in it. `outside`: items (`{"kind", "sheet",
    "payload"}`) of sheets that are not tasks of the batch, where practice items
    (`options["practice"]`, see `crowd.practice`) and the example shown by the preview come from.

    `gold` entries are `{"sheet": sample_id, "kind": kind, "answer": {...}}` (see
    `kinds.validate_gold`); each becomes an extra gold task with the same payload, shown to any
    number of workers (gold tasks are not limited to R).
    """
    _check_batch_params(redundancy, gold_rate, tasks_per_visit, reward_cents, lease_seconds)
    exclude_batches = [int(b) for b in (exclude_batches or [])]
    for b in exclude_batches:
        if session.get(Batch, b) is None:
            raise ServiceError(f"exclude_batches: batch {b} does not exist", "exclude_batches")
    if gold_rate > 0 and not gold:
        raise ServiceError("gold_rate > 0 needs gold answers", "gold")
    manifest = dict(manifest or {})
    outside = list(outside or [])
    payloads = {(p["kind"], str(p["payload"]["channel"]) if p["kind"] == "name_feature" else p["sheet"]): p["payload"]
                for p in outside}
    tasks = {(spec.kind, str(spec.payload["channel"]) if spec.kind == "name_feature" else spec.sheet) for spec in specs}

    def practice_payload(kind, key):
        if (kind, key) in tasks:  # a practice item shows its image again when the task comes
            raise practice.PracticeError("practice", f"{kind} {key!r} is a task of this batch; practice items "
                                                     "come from sheets outside the batch's tasks")
        return payloads.get((kind, key))

    options = dict(options or {})
    if "speed_min_seconds" in options:
        try:
            options["speed_min_seconds"] = speed.check_options(options["speed_min_seconds"])
        except ValueError as exc:
            raise ServiceError(str(exc), "speed_min_seconds") from None
    seed = options.setdefault("order_seed", secrets.randbits(32))
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ServiceError(f"order_seed must be an integer, got {seed!r}", "order_seed")
    try:
        options = practice.resolve_practice(options, practice_payload)
    except practice.PracticeError as exc:
        raise ServiceError(str(exc), exc.field) from None
    if outside:  # shown by the MTurk preview and, without checked practice, the instructions
        options["example"] = {k: outside[0][k] for k in ("kind", "sheet", "payload")}
    for payload in [spec.payload for spec in specs] + [p["payload"] for p in outside]:
        missing = [k for k in media.payload_media(payload) if k not in manifest]
        if missing:
            raise ServiceError(f"media {missing[0]!r} of sheet {payload.get('sheet')!r} is not in the batch's "
                               "media manifest", "media")
    batch = Batch(name=name, kinds=list(kinds), media_root=str(media_root), redundancy=redundancy,
                  gold_rate=float(gold_rate), tasks_per_visit=tasks_per_visit, reward_cents=reward_cents,
                  lease_seconds=lease_seconds, classes=list(classes), exclude_batches=exclude_batches,
                  options=options, status=BatchStatus.active)
    session.add(batch)
    session.flush()
    media.add_manifest(session, batch.id, manifest)
    by_key = {}
    rows = []
    for spec in specs:
        rows.append(dict(batch_id=batch.id, kind=spec.kind, sheet=spec.sheet, payload=spec.payload,
                         is_gold=False, n_done=0, n_active=0))
        by_key.setdefault((spec.kind, spec.sheet if spec.kind != "name_feature" else str(spec.payload["channel"])), spec)
    if rows:
        session.execute(Task.__table__.insert(), rows)
    for i, entry in enumerate(gold or []):
        if not isinstance(entry, dict):
            raise ServiceError(f"gold[{i}] must be an object", f"gold.{i}")
        kind = entry.get("kind") or (kinds[0] if len(kinds) == 1 else None)
        key = entry.get("channel") if kind == "name_feature" else entry.get("sheet")
        spec = by_key.get((kind, str(key)))
        if spec is None:
            raise ServiceError(f"gold[{i}]: no {kind} task for {key!r} in this batch", f"gold.{i}")
        try:
            answer = K.validate_gold(kind, spec.payload, entry.get("answer"))
        except K.AnswerError as exc:
            raise ServiceError(f"gold[{i}]: {exc}", f"gold.{i}.{exc.field}") from None
        task = Task(batch_id=batch.id, kind=kind, sheet=spec.sheet, payload=spec.payload, is_gold=True,
                    n_done=0, n_active=0)
        session.add(task)
        session.flush()
        session.add(GoldAnswer(task_id=task.id, answer=answer))
    log_event(session, "batch_created", batch_id=batch.id, tasks=len(rows), gold=len(gold or []), kinds=list(kinds))
    return batch


def create_batch_from_sheets(session: Session, sheets_dir: str, *, kinds: list[str] | str, name: str | None = None,
                             max_arguments: int = 3, max_marks: int = K.DEFAULT_MAX_MARKS,
                             classes: list[str] | None = None, limit: int | None = None,
                             practice_sheets: list[str] | None = None, **params) -> Batch:
    """Create a batch from an argument-sheets folder (one task per sheet and kind; one
    `name_feature` task per explained channel; practice items and media manifest as
    `crowd.sheets.sheet_batch` makes them). Other keyword arguments go to `create_batch`."""
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    if not kinds:
        raise ServiceError("kinds: need at least one task kind", "kinds")
    for kind in kinds:
        if kind not in judgments.KINDS:
            raise ServiceError(f"unknown task kind {kind!r}; expected one of {', '.join(judgments.KINDS)}", "kind")
    options = dict(params.pop("options", None) or {})
    # the sheets of checked practice items are held out of the tasks (practice comes from outside)
    held = list(practice_sheets or [])
    for item in options.get("practice") or [] if isinstance(options.get("practice"), list) else []:
        if isinstance(item, dict) and item.get("kind") != "name_feature" and isinstance(item.get("sheet"), str) \
                and (Path(sheets_dir) / "sheets" / f"{item['sheet']}.json").is_file():  # else refused by name below
            held.append(item["sheet"])
    made = sheet_batch(sheets_dir, kinds, max_arguments=max_arguments, max_marks=max_marks, classes=classes,
                       limit=limit, practice_sheets=list(dict.fromkeys(held)) or None)
    options.update(max_arguments=max_arguments, max_marks=max_marks)
    root = Path(sheets_dir).resolve()
    return create_batch(session, name=name or f"{'+'.join(kinds)} {root.name}", kinds=kinds,
                        media_root=str(root), specs=made.specs, classes=made.classes, options=options,
                        manifest=made.manifest, outside=made.outside, **params)


def create_label_batch(session: Session, images: list, classes: list[str], *, name: str | None = None,
                       **params) -> Batch:
    """Create a `label` batch for arbitrary image files (active learning's oracle).
    `images` are paths or `{"id": item_id, "image": path}`; gold entries use `sheet = item id`."""
    manifest, specs = tasks_from_images(images, classes)
    # no media root: the batch serves its manifest's files only, wherever they lie
    return create_batch(session, name=name or f"label {len(specs)} images", kinds=["label"],
                        media_root="", specs=specs, classes=list(classes), manifest=manifest, **params)


def get_batch(session: Session, batch_id: int) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFound(f"batch {batch_id} not found", "batch")
    return batch


# action -> (states it may start from, state it leads to). Closed and expired are final.
BATCH_ACTIONS = {
    "pause": ((BatchStatus.active,), BatchStatus.paused),
    "resume": ((BatchStatus.paused,), BatchStatus.active),
    "close": ((BatchStatus.active, BatchStatus.paused), BatchStatus.closed),
    "expire": ((BatchStatus.active, BatchStatus.paused, BatchStatus.closed), BatchStatus.expired),
}
_ACTION_FOR_STATUS = {to: action for action, (_, to) in BATCH_ACTIONS.items()}


def change_batch(session: Session, batch_id: int, action: str, now: datetime | None = None) -> dict:
    """Pause, resume, close or expire a batch (`BATCH_ACTIONS`). Paused and closed batches give
    out no new visits or tasks, but a running lease may still be submitted; expiring also ends
    every running lease now (its task returns to the queue). Returns
    `{"batch", "before", "after", "leases_ended"}`; a move the rules refuse is a `Conflict`."""
    if action not in BATCH_ACTIONS:
        raise ServiceError(f"action must be one of {', '.join(BATCH_ACTIONS)}, got {action!r}", "action")
    q = select(Batch).where(Batch.id == batch_id)
    if is_postgres(session):
        q = q.with_for_update()
    batch = session.scalar(q)
    if batch is None:
        raise NotFound(f"batch {batch_id} not found", "batch")
    before = batch.status
    allowed, after = BATCH_ACTIONS[action]
    if before == after:
        raise Conflict(f"batch {batch_id} is already {after.value}", "status")
    if before not in allowed:
        final = " (closed and expired batches stay so; create a new batch instead)" \
            if before in (BatchStatus.closed, BatchStatus.expired) else ""
        raise Conflict(f"batch {batch_id} is {before.value}: cannot {action} it; {action} works on "
                       f"{' or '.join(s.value for s in allowed)} batches{final}", "status")
    batch.status = after
    ended = _end_leases(session, batch_id, now or utcnow()) if after == BatchStatus.expired else 0
    log_event(session, "batch_status", batch_id=batch_id, status=after.value, before=before.value, action=action,
              leases_ended=ended)
    return {"batch": batch_id, "before": before.value, "after": after.value, "leases_ended": ended}


def _end_leases(session: Session, batch_id: int, now: datetime) -> int:
    """End every running lease of a batch now (expire): the tasks go back to the queue."""
    q = select(Assignment).where(Assignment.batch_id == batch_id, Assignment.status == AssignmentStatus.leased)
    if is_postgres(session):
        q = q.with_for_update()
    leases = session.scalars(q.order_by(Assignment.id)).all()
    for a in leases:
        a.status, a.expires_at = AssignmentStatus.expired, min(a.expires_at, now)
        session.execute(update(Task).where(Task.id == a.task_id).values(n_active=Task.n_active - 1))
        log_event(session, "lease_expired", batch_id=batch_id, worker_id=a.worker_id, task_id=a.task_id,
                  assignment_id=a.id, reason="batch expired")
    return len(leases)


def set_batch_status(session: Session, batch_id: int, status: str) -> Batch:
    """Set a batch's status by name (the API's PATCH): the same moves as `change_batch`;
    asking for the status it already has changes nothing."""
    batch = get_batch(session, batch_id)
    try:
        target = BatchStatus(status)
    except ValueError:
        raise ServiceError(f"status must be {'|'.join(s.value for s in BatchStatus)}, got {status!r}",
                           "status") from None
    if batch.status != target:
        change_batch(session, batch_id, _ACTION_FOR_STATUS[target])
    return batch


def batch_status(session: Session, batch_id: int) -> dict:
    """Progress of one batch: task counts, judgments, leases, visits, workers, completeness."""
    batch = get_batch(session, batch_id)
    R = batch.redundancy
    row = session.execute(
        select(func.count(Task.id), func.coalesce(func.sum(Task.n_done), 0),
               func.coalesce(func.sum(Task.n_active), 0))
        .where(Task.batch_id == batch_id, Task.is_gold.is_(False))).one()
    n_tasks, n_done_sum, n_active = int(row[0]), int(row[1]), int(row[2])
    complete = session.scalar(select(func.count(Task.id)).where(
        Task.batch_id == batch_id, Task.is_gold.is_(False), Task.n_done >= R)) or 0
    n_gold = session.scalar(select(func.count(Task.id)).where(Task.batch_id == batch_id, Task.is_gold.is_(True))) or 0
    judgments = session.scalar(select(func.count(Judgment.id)).where(Judgment.batch_id == batch_id)) or 0
    visits = dict(session.execute(select(Visit.status, func.count(Visit.id)).where(Visit.batch_id == batch_id)
                                  .group_by(Visit.status)).all())
    workers = session.scalar(select(func.count(func.distinct(Judgment.worker_id))).where(Judgment.batch_id == batch_id)) or 0
    by_kind = {k: int(n) for k, n in session.execute(
        select(Task.kind, func.count(Task.id)).where(Task.batch_id == batch_id, Task.is_gold.is_(False)).group_by(Task.kind))}
    needed = n_tasks * R
    return {
        "id": batch.id, "name": batch.name, "kinds": batch.kinds, "status": batch.status.value,
        "redundancy": R, "gold_rate": batch.gold_rate, "tasks_per_visit": batch.tasks_per_visit,
        "reward_cents": batch.reward_cents, "lease_seconds": batch.lease_seconds,
        "exclude_batches": batch.exclude_batches, "classes": batch.classes,
        "tasks": n_tasks, "tasks_by_kind": by_kind, "gold_tasks": int(n_gold), "tasks_complete": int(complete),
        "judgments": int(judgments), "judgments_needed": needed, "active_leases": n_active,
        "progress": round(min(n_done_sum, needed) / needed, 4) if needed else 1.0,
        "complete": n_tasks > 0 and complete == n_tasks, "workers": int(workers),
        "visits": {s.value if hasattr(s, "value") else str(s): int(n) for s, n in visits.items()},
        "created_at": batch.created_at.isoformat(),
    }


def list_batches(session: Session) -> list[dict]:
    return [batch_status(session, b) for b in session.scalars(select(Batch.id).order_by(Batch.id))]


# ---------------------------------------------------------------------------- workers, visits

def get_or_create_worker(session: Session, provider: Provider | str, external_id: str) -> Worker:
    """The worker with this provider id, created on first sight (race-safe on both backends)."""
    provider = Provider(provider)
    external_id = str(external_id).strip()
    if not external_id or len(external_id) > 200 or "\x00" in external_id:
        raise ServiceError("worker id must be 1..200 characters, without NUL", "worker")
    worker = session.scalar(select(Worker).where(Worker.provider == provider, Worker.external_id == external_id))
    if worker is not None:
        return worker
    dialect = postgresql if is_postgres(session) else sqlite
    session.execute(dialect.insert(Worker).values(provider=provider, external_id=external_id,
                                                 status=WorkerStatus.active, blocked=False, gold_correct=0.0,
                                                 gold_total=0, created_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["provider", "external_id"]))
    return session.scalar(select(Worker).where(Worker.provider == provider, Worker.external_id == external_id))


@dataclass
class Identity:
    """Who opened the entry link: provider, worker id and the provider's per-visit id (MTurk
    assignmentId, Prolific SESSION_ID) with the HIT/study and MTurk's return URL.

    Only identities the server can stand behind reach here: a researcher-signed worker link,
    a server-minted anonymous id, or a provider's (worker id, per-visit id) pair. A visit is
    resumed only by the same pair, so knowing someone's worker id is not enough."""

    provider: Provider
    worker: str
    assignment_id: str | None = None
    hit_id: str | None = None
    turk_submit_to: str | None = None
    client_addr: str | None = None


class AlreadyDone(ServiceError):
    """The worker has already finished this batch (as many visits as it allows): the entry link
    shows a "you are done" page and opens no new visit; it carries the last finished visit's id,
    code and completion kind."""

    status = 409

    def __init__(self, visit: Visit):
        super().__init__("you have already completed this study; thank you", "batch")
        self.visit_id, self.code, self.completion = visit.id, visit.completion_code, visit.completion


def check_excluded(session: Session, batch: Batch, worker: Worker) -> None:
    """Raise Forbidden when the worker is blocked or took part in an excluded batch."""
    if worker.blocked or worker.status == WorkerStatus.blocked:
        raise Forbidden("this worker is blocked", "worker")
    if batch.exclude_batches:
        took_part = session.scalar(select(exists().where(
            Visit.worker_id == worker.id, Visit.batch_id.in_(batch.exclude_batches))))
        if took_part:
            raise Forbidden("you already took part in a related study, so you cannot take this one", "worker")


FINISHED = (VisitStatus.completed, VisitStatus.approved, VisitStatus.rejected)
OPEN = (VisitStatus.started, VisitStatus.consented)


def visits_per_worker(batch: Batch) -> int:
    """How many visits one worker may make to a batch (batch option, default 1)."""
    return int(batch.options.get("visits_per_worker") or 1)


def start_visit(session: Session, batch_id: int, ident: Identity) -> Visit:
    """Open (or resume) a worker's visit to a batch.

    MTurk and Prolific visits are keyed on (per-visit id, worker id): the same pair resumes the
    visit; MTurk's re-issue of a returned assignment's id to another worker opens a new visit for
    that worker (the earlier holder's visit ends as `returned`, its lease goes back). Lab visits
    (signed link or anonymous id) resume the worker's open visit. A worker who has finished the
    batch's allowed number of visits gets `AlreadyDone`."""
    batch = get_batch(session, batch_id)
    worker = get_or_create_worker(session, ident.provider, ident.worker)
    keyed = ident.provider in (Provider.mturk, Provider.prolific)
    if keyed:
        if not ident.assignment_id:
            field = "assignmentId" if ident.provider == Provider.mturk else "SESSION_ID"
            raise ServiceError(f"{field} is required with a {ident.provider.value} worker id", field)
        visit = session.scalar(select(Visit).where(Visit.provider == ident.provider,
                                                   Visit.external_assignment_id == ident.assignment_id,
                                                   Visit.worker_id == worker.id))
        if visit is not None:
            if visit.batch_id != batch_id:
                raise Forbidden("this assignment belongs to another batch", "assignmentId")
            if visit.status in FINISHED:
                raise AlreadyDone(visit)
            return visit
    else:
        visit = session.scalar(select(Visit).where(
            Visit.worker_id == worker.id, Visit.batch_id == batch_id,
            Visit.status.in_(OPEN)).order_by(Visit.id.desc()).limit(1))
        if visit is not None:
            return visit
    finished = session.scalars(select(Visit).where(Visit.worker_id == worker.id, Visit.batch_id == batch_id,
                                                   Visit.status.in_(FINISHED),
                                                   func.coalesce(Visit.partial_reason, "") != "returned")
                               .order_by(Visit.id)).all()
    if len(finished) >= visits_per_worker(batch):
        raise AlreadyDone(finished[-1])
    if batch.status != BatchStatus.active:
        raise Forbidden(f"batch {batch_id} is {batch.status.value}", "batch")
    check_excluded(session, batch, worker)
    if ident.provider == Provider.mturk:
        # MTurk gave this assignment to this worker, so whoever held it before returned or
        # abandoned it: end their visit and free its lease.
        for earlier in session.scalars(select(Visit).where(
                Visit.provider == Provider.mturk, Visit.external_assignment_id == ident.assignment_id,
                Visit.worker_id != worker.id, Visit.status.in_(OPEN))):
            end_visit(session, earlier, "returned")
    visit = Visit(batch_id=batch_id, worker_id=worker.id, provider=ident.provider,
                  external_assignment_id=ident.assignment_id, client_addr=ident.client_addr,
                  hit_id=ident.hit_id, turk_submit_to=ident.turk_submit_to, status=VisitStatus.started, n_submitted=0)
    session.add(visit)
    session.flush()
    log_event(session, "visit_started", batch_id=batch_id, worker_id=worker.id, visit=visit.id,
              provider=ident.provider.value, assignment=ident.assignment_id, hit=ident.hit_id)
    return visit


def get_visit(session: Session, visit_id: int) -> Visit:
    visit = session.get(Visit, visit_id)
    if visit is None:
        raise NotFound(f"visit {visit_id} not found", "visit")
    return visit


def record_consent(session: Session, visit: Visit, version: str) -> Consent:
    """Record consent (version + time) once per visit; later calls return the first record."""
    if not isinstance(version, str) or not version or len(version) > 40:
        raise ServiceError("consent version must be 1..40 characters", "version")
    consent = session.scalar(select(Consent).where(Consent.visit_id == visit.id))
    if consent is None:
        consent = Consent(worker_id=visit.worker_id, batch_id=visit.batch_id, visit_id=visit.id, version=version)
        session.add(consent)
        if visit.status == VisitStatus.started:
            visit.status = VisitStatus.consented
        log_event(session, "consent", batch_id=visit.batch_id, worker_id=visit.worker_id, visit=visit.id, version=version)
        session.flush()
    return consent


def has_consented(session: Session, visit: Visit) -> bool:
    return session.scalar(select(exists().where(Consent.visit_id == visit.id))) or False


# --------------------------------------------------------------------------------- assignment

def expire_leases(session: Session, batch_id: int | None = None, now: datetime | None = None) -> int:
    """Return the tasks of expired leases to the queue. Returns how many leases expired."""
    now = now or utcnow()
    q = select(Assignment).where(Assignment.status == AssignmentStatus.leased, Assignment.expires_at < now)
    if batch_id is not None:
        q = q.where(Assignment.batch_id == batch_id)
    if is_postgres(session):
        q = q.with_for_update(skip_locked=True)
    expired = session.scalars(q.order_by(Assignment.id)).all()
    for a in expired:
        a.status = AssignmentStatus.expired
        session.execute(update(Task).where(Task.id == a.task_id).values(n_active=Task.n_active - 1))
        log_event(session, "lease_expired", batch_id=a.batch_id, worker_id=a.worker_id, task_id=a.task_id,
                  assignment_id=a.id)
    return len(expired)


def _gold_turn(position: int, rate: float) -> bool:
    """Deterministic mixing: the (position+1)-th task is gold when it crosses a multiple of 1/rate
    (rate 0.25 -> every 4th task), so a visit of k tasks holds round(k*rate) gold tasks."""
    return rate > 0 and math.floor((position + 1) * rate + 1e-9) > math.floor(position * rate + 1e-9)


def order_prefix(batch: Batch, worker: Worker) -> str:
    """What a worker's task order is drawn from: the batch's seed and the worker's id (so the
    order is reproducible: `db.rank_key(order_prefix(batch, worker), task_id)`)."""
    seed = (batch.options or {}).get("order_seed", batch.id)
    return f"{seed}:{worker.provider.value}:{worker.external_id}:"


def _pick_task(session: Session, batch: Batch, worker: Worker, gold: bool, lock: bool = True) -> Task | None:
    taken = exists().where(Assignment.task_id == Task.id, Assignment.worker_id == worker.id)
    # Only kinds this server can render and validate (a task row of an unknown kind, e.g. written
    # by a newer Argus, is never handed out).
    q = select(Task).where(Task.batch_id == batch.id, Task.is_gold.is_(gold), Task.kind.in_(judgments.KINDS), ~taken)
    if not gold:
        q = q.where(Task.n_done + Task.n_active < batch.redundancy)
    if not (batch.options or {}).get("allow_same_image"):
        # One image per worker and batch: a worker who marked the evidence for a class is not
        # then asked which class the image shows (the sheet's other kinds show the same image;
        # name_feature shows a strip instead). The one exception: a gold copy of the very
        # question the worker already answered (no hint across kinds), so that gold still
        # reaches everyone when the gold items are copies of the batch's own images.
        seen = aliased(Task)
        shown = (select(seen.sheet).join(Assignment, Assignment.task_id == seen.id)
                 .where(Assignment.worker_id == worker.id, Assignment.batch_id == batch.id,
                        seen.kind != "name_feature", seen.sheet.is_not(None)))
        if gold:
            shown = shown.where(seen.kind != Task.kind)
        q = q.where(or_(Task.kind == "name_feature", Task.sheet.is_(None), Task.sheet.not_in(shown)))
    # Least-judged first keeps the fill even; among equals, the worker's own random order.
    q = q.order_by(Task.n_done + Task.n_active, task_rank(order_prefix(batch, worker), Task.id), Task.id).limit(1)
    if lock and is_postgres(session):
        # Concurrent leasers skip each other's locked rows instead of queueing on them; the
        # capacity condition is re-checked on the locked row version (READ COMMITTED).
        q = q.with_for_update(skip_locked=True, of=Task)
    return session.scalar(q)


@dataclass(frozen=True)
class LeaseLimits:
    """Caps on leasing (0: no cap): tasks one worker, or one client address, may hold at once,
    and new leases per worker / per address within `window_s` seconds (429 above)."""

    per_worker: int = 1
    per_address: int = 0
    window_s: int = 60
    rate_per_worker: int = 0
    rate_per_address: int = 0

    @classmethod
    def from_config(cls, config: Mapping) -> "LeaseLimits":
        return cls(int(config["MAX_LEASES_PER_WORKER"]), int(config["MAX_LEASES_PER_ADDRESS"]),
                   int(config["LEASE_RATE_WINDOW_S"]), int(config["LEASE_RATE_PER_WORKER"]),
                   int(config["LEASE_RATE_PER_ADDRESS"]))


def _check_limits(session: Session, limits: LeaseLimits, worker_id: int, addr: str | None, now: datetime) -> None:
    running = (Assignment.status == AssignmentStatus.leased) & (Assignment.expires_at >= now)
    for who, cap, where in (("you", limits.per_worker, Assignment.worker_id == worker_id),
                            ("your network address", limits.per_address, Assignment.client_addr == addr)):
        if cap > 0 and (addr is not None or who == "you"):
            held = session.scalar(select(func.count(Assignment.id)).where(where, running)) or 0
            if held >= cap:
                raise Conflict(f"{who} already hold{'s' if who != 'you' else ''} {held} task(s) at once, the most "
                               "allowed; finish or give back a task (another tab or study) first", "visit_token")
    since = now - timedelta(seconds=limits.window_s)
    for cap, where in ((limits.rate_per_worker, Assignment.worker_id == worker_id),
                       (limits.rate_per_address, Assignment.client_addr == addr)):
        if cap > 0 and (addr is not None or cap == limits.rate_per_worker):
            n, oldest = session.execute(select(func.count(Assignment.id), func.min(Assignment.leased_at))
                                        .where(where, Assignment.leased_at > since)).one()
            if n >= cap:
                wait = (oldest + timedelta(seconds=limits.window_s) - now).total_seconds() if oldest else limits.window_s
                raise RateLimited(f"more than {cap} tasks within {limits.window_s} s; please slow down", "visit_token",
                                  wait)


def lease_next(session: Session, visit: Visit, now: datetime | None = None, *, limits: LeaseLimits | None = None,
               client_addr: str | None = None) -> Assignment | None:
    """Lease the next task for this visit, or return its running lease; None when the visit has
    done its k tasks or no task is left for this worker. `limits` (None: none) caps what one
    worker and one `client_addr` may hold and how fast they may lease (`Conflict` / `RateLimited`)."""
    now = now or utcnow()
    batch = get_batch(session, visit.batch_id)
    if visit.status not in (VisitStatus.started, VisitStatus.consented):
        return None
    if visit.n_submitted >= batch.tasks_per_visit:
        return None
    current = session.scalar(select(Assignment).where(
        Assignment.visit_id == visit.id, Assignment.status == AssignmentStatus.leased,
        Assignment.expires_at >= now).order_by(Assignment.id).limit(1))
    if current is not None:
        return current
    if batch.status != BatchStatus.active:
        return None
    # One lease at a time per worker (two tabs, retries): on PostgreSQL a concurrent lease by the
    # same worker could otherwise pick the same task from an older snapshot (SQLite's BEGIN
    # IMMEDIATE already serialises every lease).
    worker = session.get(Worker, visit.worker_id, with_for_update=is_postgres(session))
    check_excluded(session, batch, worker)
    expire_leases(session, batch.id, now)
    if limits is not None:
        _check_limits(session, limits, worker.id, client_addr, now)
    done_by_worker = session.scalar(select(func.count(Assignment.id)).where(
        Assignment.batch_id == batch.id, Assignment.worker_id == worker.id,
        Assignment.status == AssignmentStatus.submitted)) or 0
    task = None
    if _gold_turn(done_by_worker, batch.gold_rate):
        task = _pick_task(session, batch, worker, gold=True)
    if task is None:
        task = _pick_task(session, batch, worker, gold=False)
    if task is None:
        return None
    assignment = Assignment(task_id=task.id, worker_id=worker.id, batch_id=batch.id, visit_id=visit.id,
                            status=AssignmentStatus.leased, leased_at=now, client_addr=client_addr,
                            expires_at=now + timedelta(seconds=batch.lease_seconds))
    session.add(assignment)
    session.execute(update(Task).where(Task.id == task.id).values(n_active=Task.n_active + 1))
    session.flush()
    log_event(session, "lease", batch_id=batch.id, worker_id=worker.id, task_id=task.id, assignment_id=assignment.id)
    return assignment


# --------------------------------------------------------------------------------- submission

def _result(j: Judgment, duplicate: bool) -> dict:
    return {"judgment": j.id, "assignment": j.assignment_id, "task": j.task_id,
            "submitted_at": j.submitted_at.isoformat(), "duplicate": duplicate}


def _store(session: Session, assignment_id: int, worker_id: int, answer, client_token: str,
           duration_s: float | None, now: datetime, check_token: bool) -> tuple[dict, bool]:
    if check_token:
        first = session.scalar(select(Judgment).where(Judgment.client_token == client_token))
        if first is not None:
            if first.assignment_id != assignment_id:
                raise Conflict("client_token was already used for another assignment", "client_token")
            return _result(first, True), False
    # Hot path in Core statements (no ORM unit of work): lock the assignment, then its task.
    A, T = Assignment.__table__, Task.__table__
    q = select(A.c.id, A.c.worker_id, A.c.status, A.c.task_id, A.c.batch_id, A.c.visit_id).where(A.c.id == assignment_id)
    if is_postgres(session):
        q = q.with_for_update()
    a = session.execute(q).first()
    if a is None:
        raise NotFound(f"assignment {assignment_id} not found", "assignment")
    if a.worker_id != worker_id:
        raise Forbidden("this assignment is not leased to you", "assignment")
    if a.status == AssignmentStatus.submitted:
        # A replay with a new client token still gets the first result, never a second judgment.
        return _result(session.scalar(select(Judgment).where(Judgment.assignment_id == a.id)), True), False
    tq = (select(T.c.id, T.c.kind, T.c.payload, T.c.is_gold, T.c.n_done, T.c.n_active, Batch.__table__.c.redundancy)
          .join(Batch.__table__, Batch.__table__.c.id == T.c.batch_id).where(T.c.id == a.task_id))
    if is_postgres(session):
        tq = tq.with_for_update(of=T)
    task = session.execute(tq).one()
    try:
        clean = K.validate_answer(task.kind, task.payload, answer)
    except K.AnswerError as exc:
        raise ServiceError(exc.message, exc.field) from None
    if a.status == AssignmentStatus.expired:
        if not task.is_gold and task.n_done + task.n_active >= task.redundancy:
            raise Conflict("the lease expired and the task already has its judgments", "assignment")
        session.execute(update(T).where(T.c.id == task.id).values(n_done=T.c.n_done + 1))
    else:
        session.execute(update(T).where(T.c.id == task.id).values(n_done=T.c.n_done + 1, n_active=T.c.n_active - 1))
    session.execute(update(A).where(A.c.id == a.id).values(status=AssignmentStatus.submitted, submitted_at=now))
    jid = session.execute(insert(Judgment.__table__).values(
        assignment_id=a.id, task_id=task.id, worker_id=worker_id, batch_id=a.batch_id, client_token=client_token,
        answer=clean, submitted_at=now, duration_s=None if duration_s is None else round(float(duration_s), 3))
        .returning(Judgment.__table__.c.id)).scalar_one()
    if a.visit_id is not None:
        session.execute(update(Visit).where(Visit.id == a.visit_id).values(n_submitted=Visit.n_submitted + 1))
    session.execute(insert(Event.__table__).values(type="submit", at=now, batch_id=a.batch_id, worker_id=worker_id,
                                                   task_id=task.id, assignment_id=a.id, data={"judgment": jid}))
    return {"judgment": jid, "assignment": a.id, "task": task.id, "submitted_at": now.isoformat(),
            "duplicate": False}, task.is_gold


def _check_submit_args(client_token, duration_s):
    if not isinstance(client_token, str) or not 8 <= len(client_token) <= 80 or "\x00" in client_token:
        raise ServiceError("client_token must be a string of 8..80 characters, without NUL", "client_token")
    if duration_s is not None:
        if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)) or not math.isfinite(duration_s) \
                or not 0 <= duration_s <= 86400:
            raise ServiceError("duration_s must be a number of seconds in [0, 86400]", "duration_s")


def submit(db: Database, assignment_id: int, worker_id: int, answer, client_token: str,
           duration_s: float | None = None, *, gold_threshold: float = 0.7, gold_min_answers: int = 3,
           gold_confidence: float = 0.95, now: datetime | None = None) -> dict:
    """Store one judgment (idempotent by `client_token`); returns
    `{judgment, assignment, task, submitted_at, duplicate}`.

    The judgment is committed first; gold scoring follows in its own transaction, so a failure
    there can never lose an acknowledged judgment (`rescore_gold` repairs scores).
    """
    _check_submit_args(client_token, duration_s)
    now = now or utcnow()
    for attempt in range(3):
        try:
            with db.transaction() as session:
                # The common case (a new token) skips the token lookup; a reused token then trips
                # the UNIQUE constraint and the retry looks it up.
                result, is_gold = _store(session, assignment_id, worker_id, answer, client_token, duration_s, now,
                                         check_token=attempt > 0)
            break
        except IntegrityError:
            # A token used before, or a concurrent retry of the same assignment that won the
            # race: loop, find the first judgment and return it.
            if attempt == 2:
                raise
    if is_gold and not result["duplicate"]:
        with db.transaction() as session:
            score_gold(session, result["judgment"], threshold=gold_threshold, min_answers=gold_min_answers,
                       confidence=gold_confidence)
    return result


def gold_below_probability(correct: float, total: int, threshold: float) -> float:
    """P(gold accuracy < `threshold`) under a Beta(1 + correct, 1 + total - correct) posterior
    (uniform prior; a partly right gold task counts as its fraction of a success)."""
    from scipy.stats import beta

    return float(beta.cdf(threshold, 1.0 + correct, 1.0 + total - correct))


def score_gold(session: Session, judgment_id: int, *, threshold: float = 0.7, min_answers: int = 3,
               confidence: float = 0.95) -> float | None:
    """Score a gold judgment, update the worker's gold accuracy and flag a worker only on
    evidence: at least `min_answers` gold tasks and P(accuracy < `threshold`) >= `confidence`
    (a mean below the threshold after three partly right answers is no evidence)."""
    j = session.get(Judgment, judgment_id)
    if j is None or j.gold_score is not None:
        return None if j is None else j.gold_score
    task = session.get(Task, j.task_id)
    gold = session.scalar(select(GoldAnswer).where(GoldAnswer.task_id == task.id))
    if gold is None:
        return None
    score = K.score_gold(task.kind, gold.answer, j.answer)
    j.gold_score = score
    q = select(Worker).where(Worker.id == j.worker_id)
    if is_postgres(session):
        q = q.with_for_update()
    worker = session.scalar(q)
    worker.gold_correct += score
    worker.gold_total += 1
    log_event(session, "gold_scored", batch_id=j.batch_id, worker_id=worker.id, task_id=task.id, judgment=j.id, score=score)
    if worker.status == WorkerStatus.active and worker.gold_total >= min_answers:
        p_below = gold_below_probability(worker.gold_correct, worker.gold_total, threshold)
        if p_below >= confidence:
            worker.status = WorkerStatus.flagged
            log_event(session, "worker_flagged", batch_id=j.batch_id, worker_id=worker.id,
                      reason="gold accuracy below threshold", gold_accuracy=round(worker.gold_accuracy, 4),
                      threshold=threshold, p_below=round(p_below, 4), confidence=confidence)
    return score


def rescore_gold(db: Database, batch_id: int, **kw) -> int:
    """Score every gold judgment of a batch that has no score yet. Returns how many."""
    with db.reading() as session:
        ids = session.scalars(select(Judgment.id).join(Task, Task.id == Judgment.task_id).where(
            Judgment.batch_id == batch_id, Task.is_gold.is_(True), Judgment.gold_score.is_(None))).all()
    for jid in ids:
        with db.transaction() as session:
            score_gold(session, jid, **kw)
    return len(ids)


#: why a visit ended before its quota of tasks: the worker left early, the researcher paused or
#: closed the batch, no task was left for this worker, the worker failed a screening (practice)
#: item, or MTurk gave the assignment to another worker (the first one returned it)
PARTIAL_REASONS = ("early_exit", "batch_paused", "batch_closed", "no_tasks_left", "screening_failed", "returned")


def _new_code(prefix: str = "") -> str:
    return prefix + secrets.token_hex(4).upper()


def _release_leases(session: Session, visit: Visit) -> int:
    """Give the visit's running leases back to the queue (the task is free for others at once)."""
    running = session.scalars(select(Assignment).where(Assignment.visit_id == visit.id,
                                                       Assignment.status == AssignmentStatus.leased)).all()
    for a in running:
        a.status = AssignmentStatus.expired
        session.execute(update(Task).where(Task.id == a.task_id).values(n_active=Task.n_active - 1))
        log_event(session, "lease_released", batch_id=a.batch_id, worker_id=a.worker_id, task_id=a.task_id,
                  assignment_id=a.id, visit=visit.id)
    return len(running)


def end_visit(session: Session, visit: Visit, reason: str) -> Visit:
    """End a visit before its quota of tasks: completion `partial` with `partial_reason = reason`;
    its leases go back to the queue and it gets a code distinct from the completion code (`P-...`,
    `S-...` when screened out; Prolific: the batch's `prolific_partial_code` /
    `prolific_screenout_code`; docs/crowd.md has the pay policy). Idempotent: a visit that has
    already ended keeps its outcome and code. `reason` is one of `PARTIAL_REASONS`.

    This is the one function the worker pages call to end a visit early (the finish link, a
    paused batch, a failed practice item)."""
    if reason not in PARTIAL_REASONS:
        raise ServiceError(f"reason must be one of {', '.join(PARTIAL_REASONS)}, got {reason!r}", "reason")
    if visit.status not in (VisitStatus.started, VisitStatus.consented):
        return visit
    _release_leases(session, visit)
    batch = session.get(Batch, visit.batch_id)
    visit.status = VisitStatus.completed
    visit.completed_at = utcnow()
    visit.completion = "partial"
    visit.partial_reason = reason
    if reason == "returned":
        visit.completion_code = None  # MTurk took the assignment back: nothing to submit
    elif visit.provider == Provider.prolific:
        key = "prolific_screenout_code" if reason == "screening_failed" else "prolific_partial_code"
        visit.completion_code = batch.options.get(key) or _new_code("S-" if reason == "screening_failed" else "P-")
    else:
        visit.completion_code = _new_code("S-" if reason == "screening_failed" else "P-")
    log_event(session, "visit_ended", batch_id=visit.batch_id, worker_id=visit.worker_id, visit=visit.id,
              completion=visit.completion, reason=reason, submitted=visit.n_submitted)
    return visit


def _leasable(session: Session, batch: Batch, worker_id: int) -> bool:
    worker = session.get(Worker, worker_id)
    return (_pick_task(session, batch, worker, gold=False, lock=False) is not None
            or _pick_task(session, batch, worker, gold=True, lock=False) is not None)


def finish_visit(session: Session, visit: Visit) -> Visit:
    """Close a visit (idempotent). The completion code is issued only when the visit's quota of
    tasks is met; otherwise the visit ends *partial* (`end_visit`) with the reason: the batch is
    paused or closed, no task is left for this worker, or the worker left early."""
    if visit.status not in (VisitStatus.started, VisitStatus.consented):
        return visit
    batch = session.get(Batch, visit.batch_id)
    if visit.n_submitted < batch.tasks_per_visit:
        if batch.status != BatchStatus.active:
            reason = "batch_paused" if batch.status == BatchStatus.paused else "batch_closed"
        else:
            running = session.scalar(select(exists().where(Assignment.visit_id == visit.id,
                                                           Assignment.status == AssignmentStatus.leased)))
            reason = "early_exit" if running or _leasable(session, batch, visit.worker_id) else "no_tasks_left"
        return end_visit(session, visit, reason)
    visit.status = VisitStatus.completed
    visit.completed_at = utcnow()
    visit.completion = "full"
    visit.completion_code = (batch.options.get("prolific_completion_code") if visit.provider == Provider.prolific
                             else None) or _new_code()
    log_event(session, "visit_completed", batch_id=visit.batch_id, worker_id=visit.worker_id, visit=visit.id,
              submitted=visit.n_submitted)
    return visit


# ------------------------------------------------------------------------------------ review

WORKER_ACTIONS = ("approve", "reject", "flag", "unflag", "block", "unblock")


def review_worker(session: Session, worker_id: int, action: str, *, reason: str = "",
                  batch_id: int | None = None) -> Worker:
    """Apply a researcher's decision. approve/reject also settle the worker's completed visits
    (in `batch_id`, or everywhere); flag/unflag mark for review; block stops new tasks."""
    if action not in WORKER_ACTIONS:
        raise ServiceError(f"action must be one of {', '.join(WORKER_ACTIONS)}", "action")
    if not isinstance(reason, str) or len(reason) > 1000:
        raise ServiceError("reason must be a string of at most 1000 characters", "reason")
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise NotFound(f"worker {worker_id} not found", "worker")
    if action in ("approve", "reject"):
        q = select(Visit).where(Visit.worker_id == worker_id, Visit.status == VisitStatus.completed)
        if batch_id is not None:
            q = q.where(Visit.batch_id == batch_id)
        for v in session.scalars(q):
            v.status = VisitStatus.approved if action == "approve" else VisitStatus.rejected
            v.review_note = reason or None
        if action == "approve" and worker.status == WorkerStatus.flagged:
            worker.status = WorkerStatus.approved
    elif action == "flag":
        worker.status = WorkerStatus.flagged
    elif action == "unflag":
        worker.status = WorkerStatus.approved
    elif action == "block":
        worker.blocked, worker.status = True, WorkerStatus.blocked
    elif action == "unblock":
        worker.blocked, worker.status = False, WorkerStatus.active
    if reason:
        worker.note = reason
    log_event(session, f"worker_{action}", batch_id=batch_id, worker_id=worker_id, reason=reason)
    return worker


VISIT_OUTCOMES = {"approve": VisitStatus.approved, "reject": VisitStatus.rejected}


def review_visit(session: Session, visit_id: int, action: str, note: str = "") -> Visit:
    """Approve or reject one completed visit (one MTurk assignment)."""
    visit = get_visit(session, visit_id)
    if action not in VISIT_OUTCOMES:
        raise ServiceError("action must be approve or reject", "action")
    if visit.status not in (VisitStatus.completed, VisitStatus.approved, VisitStatus.rejected):
        raise Conflict(f"visit {visit_id} is {visit.status.value}, not completed", "visit")
    visit.status = VISIT_OUTCOMES[action]
    visit.review_note = note or None
    log_event(session, f"visit_{action}", batch_id=visit.batch_id, worker_id=visit.worker_id, visit=visit_id, note=note)
    return visit


def record_provider_review(session: Session, visit_id: int, action: str, note: str | None = None) -> Visit:
    """Record the outcome the provider settled for a visit's assignment (MTurk approved or
    rejected it, auto-approval included). The provider pays, so its outcome holds whatever
    the visit's local state; `note=None` keeps the review note. Its caller logs the event."""
    visit = get_visit(session, visit_id)
    if action not in VISIT_OUTCOMES:
        raise ServiceError("action must be approve or reject", "action")
    visit.status = VISIT_OUTCOMES[action]
    if note is not None:
        visit.review_note = note
    return visit


JUDGMENT_REVIEWS = {"accept": "accepted", "reject": "rejected", "clear": None}


def review_judgment(session: Session, judgment_id: int, action: str, note: str = "",
                    now: datetime | None = None) -> Judgment:
    """A researcher's verdict on one answer: `accept`, `reject` (the answer stays stored, with
    the verdict, but leaves exports and the dashboard's statistics) or `clear` (not reviewed)."""
    if action not in JUDGMENT_REVIEWS:
        raise ServiceError(f"action must be one of {', '.join(JUDGMENT_REVIEWS)}, got {action!r}", "action")
    if not isinstance(note, str) or len(note) > 1000:
        raise ServiceError("note must be a string of at most 1000 characters", "note")
    j = session.get(Judgment, judgment_id)
    if j is None:
        raise NotFound(f"judgment {judgment_id} not found", "judgment")
    j.review = JUDGMENT_REVIEWS[action]
    j.review_note = note or None
    j.reviewed_at = (now or utcnow()) if j.review else None
    log_event(session, f"judgment_{action}", batch_id=j.batch_id, worker_id=j.worker_id, task_id=j.task_id,
              assignment_id=j.assignment_id, judgment=j.id, note=note)
    return j


# ---------------------------------------------------------------------------- export, stats

def export_salt(config: Mapping) -> str:
    """The salt of hashed worker ids (`--hash-workers`, `?hash_workers=1`): `EXPORT_SALT`, else
    derived from `SECRET_KEY` so exports of one server hash alike. `config`: the app's config."""
    salt = config.get("EXPORT_SALT")
    if salt:
        return str(salt)
    return hmac.new(str(config["SECRET_KEY"]).encode(), b"argus-export-salt", hashlib.sha256).hexdigest()


def hash_worker(label: str, salt: str) -> str:
    """Salted SHA-256 of a worker id, first 16 hex digits, prefixed `h:`."""
    return "h:" + hashlib.sha256((salt + "\x1f" + label).encode("utf-8")).hexdigest()[:16]


def iter_judgment_rows(session: Session, batch_id: int | None = None, *, hash_salt: str | None = None,
                       chunk: int = 1000) -> Iterator[dict]:
    """Rows of the judgments frame (docs/contracts.md), one per answer, in submission order.
    `batch_id=None` exports every batch. Answers a researcher rejected are left out (they stay
    in the database). Streams from the database `chunk` judgments at a time."""
    q = (select(Judgment, Task.kind, Task.payload, Task.sheet, Task.is_gold, Worker.provider, Worker.external_id,
                GoldAnswer.answer, Batch.options, Visit.mturk_check)
         .join(Task, Task.id == Judgment.task_id).join(Worker, Worker.id == Judgment.worker_id)
         .join(Batch, Batch.id == Judgment.batch_id)
         .join(Assignment, Assignment.id == Judgment.assignment_id).outerjoin(Visit, Visit.id == Assignment.visit_id)
         .outerjoin(GoldAnswer, GoldAnswer.task_id == Task.id)
         .where(or_(Judgment.review.is_(None), Judgment.review != "rejected")).order_by(Judgment.id))
    if batch_id is not None:
        q = q.where(Judgment.batch_id == batch_id)
    # speed thresholds first: they read the batch's answer times before the stream starts
    batches = [get_batch(session, batch_id)] if batch_id is not None else session.scalars(select(Batch)).all()
    limits = {b.id: speed.thresholds(session, b) for b in batches}
    for j, kind, payload, sheet, is_gold, provider, ext, gold, options, mturk_check in session.execute(
            q.execution_options(yield_per=chunk)):
        label = ext if provider == Provider.lab else f"{provider.value}:{ext}"
        worker = hash_worker(label, hash_salt) if hash_salt else label
        common = {"task": j.task_id, "worker": worker, "kind": kind, "assignment": j.assignment_id,
                  "batch": j.batch_id, "duration_s": j.duration_s, "submitted_at": j.submitted_at.isoformat(),
                  "sheet": sheet or "", "is_gold": bool(is_gold),
                  "names_shown": kind == "rate_arguments" and K.feature_names_shown(options),
                  "mturk_check": (mturk_check or "unchecked") if provider == Provider.mturk else "",
                  "too_fast": speed.too_fast(j.duration_s, limits[j.batch_id].get(kind))}
        for row in K.export_rows(kind, payload, j.answer):
            out = {**common, **row, "gold_label": K.gold_label_for(kind, gold, row["item"]) if is_gold else ""}
            yield {c: out[c] for c in judgments.COLUMNS}


def worker_stats(session: Session, batch_id: int) -> list[dict]:
    """Per worker in a batch: tasks, median seconds per task, gold accuracy (this batch),
    agreement with the majority (share of categorical answers equal to the per-item majority,
    on items with at least two answers), answers below the kind's minimum plausible time
    (`too_fast`, `too_fast_share`, `flag_fast`: see `crowd.speed`), status."""
    rows = list(iter_judgment_rows(session, batch_id))
    durations: dict[str, list[float]] = defaultdict(list)
    tasks: Counter = Counter()
    seen = set()
    votes: dict[tuple, Counter] = defaultdict(Counter)
    for r in rows:
        if (r["assignment"], r["worker"]) not in seen:
            seen.add((r["assignment"], r["worker"]))
            tasks[r["worker"]] += 1
            if r["duration_s"] is not None:
                durations[r["worker"]].append(r["duration_s"])
        if not r["is_gold"] and r["item"] not in ("rationale", "coherence", "match"):
            votes[(r["task"], r["item"])][r["label"]] += 1
    agree: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        c = votes.get((r["task"], r["item"]))
        if c and sum(c.values()) >= 2:
            top = max(c.values())
            agree[r["worker"]].append(int(c[r["label"]] == top))
    gold = dict(session.execute(
        select(Judgment.worker_id, func.avg(Judgment.gold_score)).where(
            Judgment.batch_id == batch_id, Judgment.gold_score.is_not(None)).group_by(Judgment.worker_id)).all())
    gold_n = dict(session.execute(
        select(Judgment.worker_id, func.count(Judgment.id)).where(
            Judgment.batch_id == batch_id, Judgment.gold_score.is_not(None)).group_by(Judgment.worker_id)).all())
    _, fast = speed.worker_speed(session, get_batch(session, batch_id))
    out = []
    ids = session.scalars(select(func.distinct(Judgment.worker_id)).where(Judgment.batch_id == batch_id)).all()
    for w in session.scalars(select(Worker).where(Worker.id.in_(ids)).order_by(Worker.id)):
        label = w.label
        out.append({
            "id": w.id, "worker": label, "provider": w.provider.value, "status": w.status.value, "blocked": w.blocked,
            "tasks": tasks[label],
            "median_duration_s": round(statistics.median(durations[label]), 2) if durations[label] else None,
            "gold_answers": int(gold_n.get(w.id, 0)),
            "gold_accuracy": None if w.id not in gold else round(float(gold[w.id]), 4),
            "gold_accuracy_overall": None if w.gold_accuracy is None else round(w.gold_accuracy, 4),
            "agreement_with_majority": round(sum(agree[label]) / len(agree[label]), 4) if agree[label] else None,
            "too_fast": fast.get(w.id, {}).get("too_fast", 0),
            "too_fast_share": fast.get(w.id, {}).get("too_fast_share"),
            "flag_fast": fast.get(w.id, {}).get("flag_fast", False),
            "note": w.note or "",
        })
    return out


def worker_dict(w: Worker) -> dict:
    return {"id": w.id, "worker": w.label, "provider": w.provider.value, "external_id": w.external_id,
            "status": w.status.value, "blocked": w.blocked, "gold_total": w.gold_total,
            "gold_accuracy": None if w.gold_accuracy is None else round(w.gold_accuracy, 4),
            "note": w.note or "", "created_at": w.created_at.isoformat()}


def list_workers(session: Session, batch_id: int | None = None, status: str | None = None) -> list[dict]:
    q = select(Worker).order_by(Worker.id)
    if batch_id is not None:
        q = q.where(Worker.id.in_(select(Visit.worker_id).where(Visit.batch_id == batch_id)))
    if status:
        try:
            q = q.where(Worker.status == WorkerStatus(status))
        except ValueError:
            raise ServiceError(f"status must be one of {', '.join(s.value for s in WorkerStatus)}", "status") from None
    return [worker_dict(w) for w in session.scalars(q)]


def check_invariants(session: Session, batch_id: int) -> dict:
    """Count violations of the assignment rules in a batch (all zero when healthy): tasks over R,
    repeated worker per task, judgments without a submitted assignment, counter drift."""
    batch = get_batch(session, batch_id)
    over = session.scalar(select(func.count()).select_from(
        select(Judgment.task_id).join(Task, Task.id == Judgment.task_id)
        .where(Judgment.batch_id == batch_id, Task.is_gold.is_(False))
        .group_by(Judgment.task_id).having(func.count(Judgment.id) > batch.redundancy).subquery()))
    repeats = session.scalar(select(func.count()).select_from(
        select(Judgment.task_id, Judgment.worker_id).where(Judgment.batch_id == batch_id)
        .group_by(Judgment.task_id, Judgment.worker_id).having(func.count() > 1).subquery()))
    orphan = session.scalar(select(func.count(Judgment.id)).join(Assignment, Assignment.id == Judgment.assignment_id)
                            .where(Judgment.batch_id == batch_id, Assignment.status != AssignmentStatus.submitted))
    done = select(Judgment.task_id, func.count(Judgment.id).label("n")).where(
        Judgment.batch_id == batch_id).group_by(Judgment.task_id).subquery()
    drift = session.scalar(select(func.count(Task.id)).outerjoin(done, done.c.task_id == Task.id).where(
        Task.batch_id == batch_id, Task.n_done != func.coalesce(done.c.n, 0)))
    active = select(Assignment.task_id, func.count(Assignment.id).label("n")).where(
        Assignment.batch_id == batch_id, Assignment.status == AssignmentStatus.leased).group_by(Assignment.task_id).subquery()
    active_drift = session.scalar(select(func.count(Task.id)).outerjoin(active, active.c.task_id == Task.id).where(
        Task.batch_id == batch_id, Task.n_active != func.coalesce(active.c.n, 0)))
    return {"tasks_over_redundancy": int(over or 0), "repeated_worker": int(repeats or 0),
            "judgment_without_submitted_assignment": int(orphan or 0), "n_done_drift": int(drift or 0),
            "n_active_drift": int(active_drift or 0)}

