"""SQLAlchemy 2 models of the crowd task server.

Entities: batch, task (sheet ref + kind + payload), assignment
(worker x task with a lease), judgment, worker, gold answer, consent record, visit (one worker's
pass through a batch: an MTurk assignment, a Prolific session or a lab visit) and an append-only
event log. Other packages (the MTurk adapter) may add their own tables on `Base`.

Counters `Task.n_done` / `Task.n_active` are kept in the same transaction as the assignment rows
they count, so the lease query can check capacity (`n_done + n_active < R`) on one locked row.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """Timezone-aware UTC now (stored as UTC)."""
    return datetime.now(timezone.utc)


class TZDateTime(TypeDecorator):
    """Store UTC, return aware datetimes on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        if value is not None and dialect.name == "sqlite":
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None:
            value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value


class Base(DeclarativeBase):
    """Declarative base shared by every Argus crowd table."""

    type_annotation_map = {dict: JSON, list: JSON}


class BatchStatus(str, enum.Enum):
    active = "active"
    paused = "paused"  # no new visits or leases; may resume
    closed = "closed"  # finished: no new visits or leases; running leases may still submit
    expired = "expired"  # closed and every running lease ended at once


class AssignmentStatus(str, enum.Enum):
    leased = "leased"  # handed to a worker, lease running
    submitted = "submitted"  # judgment stored
    expired = "expired"  # lease ran out; the task went back to the queue


class WorkerStatus(str, enum.Enum):
    active = "active"
    flagged = "flagged"  # low gold accuracy or flagged by a researcher: needs review
    approved = "approved"  # reviewed and cleared
    blocked = "blocked"  # gets no more tasks


class VisitStatus(str, enum.Enum):
    started = "started"
    consented = "consented"
    completed = "completed"
    approved = "approved"
    rejected = "rejected"


class Provider(str, enum.Enum):
    mturk = "mturk"
    prolific = "prolific"
    lab = "lab"


def enum_type(cls):
    """Column type of a `str` Enum: stored by value as VARCHAR(16), checked on write (no native
    database enum, so adding a member needs no migration)."""
    return Enum(cls, name=cls.__name__.lower(), native_enum=False, length=16, validate_strings=True)


class Batch(Base):
    __tablename__ = "batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kinds: Mapped[list] = mapped_column(JSON)  # task kinds in this batch, e.g. ["rate_arguments"]
    media_root: Mapped[str] = mapped_column(Text)  # sheets folder (or common image folder)
    redundancy: Mapped[int] = mapped_column(Integer)  # R judgments per task
    gold_rate: Mapped[float] = mapped_column(Float, default=0.0)
    tasks_per_visit: Mapped[int] = mapped_column(Integer, default=5)  # k
    reward_cents: Mapped[int] = mapped_column(Integer, default=0)  # pay per visit
    lease_seconds: Mapped[int] = mapped_column(Integer, default=900)
    classes: Mapped[list] = mapped_column(JSON, default=list)
    exclude_batches: Mapped[list] = mapped_column(JSON, default=list)  # retake blocking
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[BatchStatus] = mapped_column(enum_type(BatchStatus), default=BatchStatus.active)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)

    tasks: Mapped[list["Task"]] = relationship(back_populates="batch", lazy="raise_on_sql")


class Task(Base):
    __tablename__ = "task"
    __table_args__ = (Index("ix_task_queue", "batch_id", "is_gold", "n_done", "n_active"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    sheet: Mapped[str | None] = mapped_column(String(200))  # sample_id (or item id)
    payload: Mapped[dict] = mapped_column(JSON)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    n_done: Mapped[int] = mapped_column(Integer, default=0)
    n_active: Mapped[int] = mapped_column(Integer, default=0)

    batch: Mapped[Batch] = relationship(back_populates="tasks", lazy="raise_on_sql")


class GoldAnswer(Base):
    __tablename__ = "gold_answer"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"), unique=True)
    answer: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class Worker(Base):
    __tablename__ = "worker"
    __table_args__ = (UniqueConstraint("provider", "external_id", name="uq_worker_external"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[Provider] = mapped_column(enum_type(Provider))
    external_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[WorkerStatus] = mapped_column(enum_type(WorkerStatus), default=WorkerStatus.active)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_correct: Mapped[float] = mapped_column(Float, default=0.0)
    gold_total: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)

    @property
    def gold_accuracy(self) -> float | None:
        """Share of gold answers scored correct (None before any gold)."""
        return self.gold_correct / self.gold_total if self.gold_total else None

    @property
    def label(self) -> str:
        """The worker id as exported (`provider:external_id`, lab workers by bare id)."""
        if self.provider == Provider.lab:
            return self.external_id
        return f"{self.provider.value}:{self.external_id}"


class Visit(Base):
    """One pass of a worker through a batch (an MTurk assignment / Prolific session / lab visit).

    MTurk re-issues a returned or abandoned assignment's *same* assignmentId to the next worker,
    so an MTurk visit is keyed on (assignmentId, workerId), not on the assignmentId alone.
    """

    __tablename__ = "visit"
    __table_args__ = (
        UniqueConstraint("provider", "external_assignment_id", "worker_id", name="uq_visit_external"),
        Index("ix_visit_worker_batch", "worker_id", "batch_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    worker_id: Mapped[int] = mapped_column(ForeignKey("worker.id", ondelete="CASCADE"))
    provider: Mapped[Provider] = mapped_column(enum_type(Provider))
    external_assignment_id: Mapped[str | None] = mapped_column(String(200))
    hit_id: Mapped[str | None] = mapped_column(String(200))
    turk_submit_to: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[VisitStatus] = mapped_column(enum_type(VisitStatus), default=VisitStatus.started)
    n_submitted: Mapped[int] = mapped_column(Integer, default=0)
    completion_code: Mapped[str | None] = mapped_column(String(64))
    # "full" (the visit's quota of tasks was met) or "partial" (see `partial_reason`)
    completion: Mapped[str | None] = mapped_column(String(16))
    partial_reason: Mapped[str | None] = mapped_column(String(32))  # early_exit | batch_paused | screening_failed | ...
    # MTurk: "verified" once GetAssignment showed this worker holds the assignment on one of the
    # batch's HITs, "refused" when it did not; None = not checked (exported flagged)
    mturk_check: Mapped[str | None] = mapped_column(String(16))
    mturk_check_note: Mapped[str | None] = mapped_column(Text)
    client_addr: Mapped[str | None] = mapped_column(String(64))
    review_note: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(TZDateTime)


class Assignment(Base):
    __tablename__ = "assignment"
    __table_args__ = (
        # A worker never holds the same task twice, enforced by the database itself.
        UniqueConstraint("task_id", "worker_id", name="uq_assignment_task_worker"),
        Index("ix_assignment_lease", "batch_id", "status", "expires_at"),
        Index("ix_assignment_visit", "visit_id", "status"),
        Index("ix_assignment_worker", "worker_id", "status"),  # active leases per worker
        Index("ix_assignment_addr", "client_addr", "status"),  # ... and per client address
        Index("ix_assignment_addr_time", "client_addr", "leased_at"),  # new leases per address and window
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"))
    worker_id: Mapped[int] = mapped_column(ForeignKey("worker.id", ondelete="CASCADE"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visit.id", ondelete="SET NULL"))
    status: Mapped[AssignmentStatus] = mapped_column(enum_type(AssignmentStatus), default=AssignmentStatus.leased)
    leased_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(TZDateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    client_addr: Mapped[str | None] = mapped_column(String(64))  # who leased it (caps per address)


class Judgment(Base):
    """One submitted answer to one assignment (exploded into rows per item on export)."""

    __tablename__ = "judgment"
    __table_args__ = (
        UniqueConstraint("task_id", "worker_id", name="uq_judgment_task_worker"),
        Index("ix_judgment_batch", "batch_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id", ondelete="CASCADE"), unique=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"))
    worker_id: Mapped[int] = mapped_column(ForeignKey("worker.id", ondelete="CASCADE"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    client_token: Mapped[str] = mapped_column(String(80), unique=True)
    answer: Mapped[dict] = mapped_column(JSON)
    duration_s: Mapped[float | None] = mapped_column(Float)
    submitted_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    gold_score: Mapped[float | None] = mapped_column(Float)  # 0..1 on gold tasks, else None
    # A researcher's verdict on this one answer: None (not reviewed), "accepted" or "rejected".
    # Rejected answers stay stored but leave exports and statistics.
    review: Mapped[str | None] = mapped_column(String(16))
    review_note: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None] = mapped_column(TZDateTime)


class Media(Base):
    """The batch's media manifest: the only files `/media` serves for it (key -> file on disk).
    Keys are what task payloads name (a sheets folder's relative paths, or opaque keys for
    image batches, so file and folder names, which may carry the label, never reach a worker)."""

    __tablename__ = "media"
    __table_args__ = (UniqueConstraint("batch_id", "key", name="uq_media_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(300))
    path: Mapped[str] = mapped_column(Text)


class AdminSession(Base):
    """A dashboard login, so that logout (or expiry) revokes it on the server: the signed
    session cookie only carries the session's random id; its SHA-256 is stored here."""

    __tablename__ = "admin_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    sid_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(TZDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    client_addr: Mapped[str | None] = mapped_column(String(64))


class LoginAttempt(Base):
    """Failed dashboard logins, counted per client address (and in all) to throttle guessing."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_addr", "client_addr", "at"), Index("ix_login_attempt_at", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    client_addr: Mapped[str | None] = mapped_column(String(64))


class Consent(Base):
    __tablename__ = "consent"

    id: Mapped[int] = mapped_column(primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("worker.id", ondelete="CASCADE"))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"), unique=True)
    version: Mapped[str] = mapped_column(String(40))
    consented_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class Event(Base):
    """Append-only log: rows are inserted, never updated or deleted (enforced below)."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_batch", "batch_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    type: Mapped[str] = mapped_column(String(40))
    batch_id: Mapped[int | None] = mapped_column(Integer)
    worker_id: Mapped[int | None] = mapped_column(Integer)
    task_id: Mapped[int | None] = mapped_column(Integer)
    assignment_id: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict] = mapped_column(JSON, default=dict)


@event.listens_for(Event, "before_update")
@event.listens_for(Event, "before_delete")
def _event_log_is_append_only(mapper, connection, target):
    raise RuntimeError("the event log is append-only: events are never updated or deleted")


class SchemaVersion(Base):
    __tablename__ = "argus_schema"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    applied_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    note: Mapped[str] = mapped_column(String(200), default="")
