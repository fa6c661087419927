"""Tables of the MTurk adapter, declared on the crowd server's SQLAlchemy `Base`.

They mirror what Argus asked MTurk to do and what MTurk reports, so every money-moving step
is written down *before* it is attempted (a "pending"/"planned" row with its deterministic
`UniqueRequestToken`) and confirmed after. A crash or a lost response between the two
leaves a row that the next run finishes instead of repeating.

Money is stored in integer cents. Statuses are Enums (stored as strings).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from crowd.models import Base, TZDateTime, enum_type, utcnow


class MTurkEnv(str, enum.Enum):
    sandbox = "sandbox"
    live = "live"


class HitState(str, enum.Enum):
    pending = "pending"  # row written, CreateHITWithHITType not confirmed yet
    live = "live"  # created on MTurk
    expired = "expired"  # UpdateExpirationForHIT to the past: no new workers
    deleted = "deleted"  # DeleteHIT done (after review)


class MTurkAssignmentStatus(str, enum.Enum):
    """MTurk's own AssignmentStatus (MTurk is the source of truth)."""

    Submitted = "Submitted"
    Approved = "Approved"
    Rejected = "Rejected"


class Decision(str, enum.Enum):
    """Argus's review decision for one MTurk assignment."""

    pending = "pending"  # not reviewed yet
    approve = "approve"  # gold accuracy >= threshold (or approved by hand)
    flag = "flag"  # needs a person: low gold accuracy or no local work
    reject = "reject"  # rejected by hand with feedback


class BonusStatus(str, enum.Enum):
    planned = "planned"  # ledger row written; SendBonus not confirmed
    paid = "paid"  # MTurk confirmed (directly, by "token already used", or in ListBonusPayments)


class BlockStatus(str, enum.Enum):
    pending = "pending"
    blocked = "blocked"
    unblocked = "unblocked"


class NoticeStatus(str, enum.Enum):
    pending = "pending"
    sent = "sent"


class ExtensionStatus(str, enum.Enum):
    planned = "planned"  # ledger row written; CreateAdditionalAssignmentsForHIT not confirmed
    done = "done"  # MTurk shows the HIT with the added assignments


class CompensationStatus(str, enum.Enum):
    pending = "pending"  # qualification and HIT being set up
    live = "live"  # the HIT waits for the worker
    paid = "paid"  # the worker's assignment was approved


class MTurkHitType(Base):
    __tablename__ = "mturk_hit_type"
    __table_args__ = (UniqueConstraint("environment", "hit_type_id", "batch_id", name="uq_mturk_hit_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[MTurkEnv] = mapped_column(enum_type(MTurkEnv))
    hit_type_id: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    reward_cents: Mapped[int] = mapped_column(Integer)
    participated_qualification_id: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict] = mapped_column(JSON, default=dict)  # the CreateHITType request
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class MTurkHit(Base):
    __tablename__ = "mturk_hit"
    __table_args__ = (
        UniqueConstraint("environment", "batch_id", "round", "chunk_index", name="uq_mturk_hit_chunk"),
        Index("ix_mturk_hit_batch", "batch_id", "environment"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[MTurkEnv] = mapped_column(enum_type(MTurkEnv))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column(Integer, default=1)
    chunk_index: Mapped[int] = mapped_column(Integer)
    unique_request_token: Mapped[str] = mapped_column(String(64), unique=True)
    hit_type_id: Mapped[str] = mapped_column(String(64))
    hit_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    max_assignments: Mapped[int] = mapped_column(Integer)
    reward_cents: Mapped[int] = mapped_column(Integer)
    lifetime_s: Mapped[int] = mapped_column(Integer)
    entry_url: Mapped[str] = mapped_column(Text)
    state: Mapped[HitState] = mapped_column(enum_type(HitState), default=HitState.pending)
    mturk_status: Mapped[str | None] = mapped_column(String(32))  # HITStatus last seen
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expiration: Mapped[datetime | None] = mapped_column(TZDateTime)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    synced_at: Mapped[datetime | None] = mapped_column(TZDateTime)


class MTurkAssignment(Base):
    __tablename__ = "mturk_assignment"
    __table_args__ = (Index("ix_mturk_assignment_batch", "batch_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[MTurkEnv] = mapped_column(enum_type(MTurkEnv))
    assignment_id: Mapped[str] = mapped_column(String(64), unique=True)
    hit_id: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    worker_id: Mapped[str] = mapped_column(String(64))  # MTurk WorkerId
    status: Mapped[MTurkAssignmentStatus] = mapped_column(enum_type(MTurkAssignmentStatus))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visit.id", ondelete="SET NULL"))
    has_local_work: Mapped[bool] = mapped_column(default=False)
    decision: Mapped[Decision] = mapped_column(enum_type(Decision), default=Decision.pending)
    gold_accuracy: Mapped[float | None] = mapped_column()
    gold_n: Mapped[int] = mapped_column(Integer, default=0)
    feedback: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    accept_time: Mapped[datetime | None] = mapped_column(TZDateTime)
    submit_time: Mapped[datetime | None] = mapped_column(TZDateTime)
    auto_approval_time: Mapped[datetime | None] = mapped_column(TZDateTime)
    approval_time: Mapped[datetime | None] = mapped_column(TZDateTime)
    rejection_time: Mapped[datetime | None] = mapped_column(TZDateTime)
    synced_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class MTurkBonus(Base):
    """The bonus ledger: one row per intended payment, written before SendBonus."""

    __tablename__ = "mturk_bonus"
    __table_args__ = (Index("ix_mturk_bonus_batch", "batch_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[MTurkEnv] = mapped_column(enum_type(MTurkEnv))
    unique_request_token: Mapped[str] = mapped_column(String(64), unique=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))  # what the bonus is for ("performance", "round2", ...)
    worker_id: Mapped[str] = mapped_column(String(64))
    assignment_id: Mapped[str] = mapped_column(String(64))
    hit_id: Mapped[str] = mapped_column(String(64))
    amount_cents: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)  # as sent, ends with "[ref <token tail>]"
    status: Mapped[BonusStatus] = mapped_column(enum_type(BonusStatus), default=BonusStatus.planned)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(TZDateTime)


class MTurkBlock(Base):
    __tablename__ = "mturk_block"
    __table_args__ = (UniqueConstraint("environment", "worker_id", name="uq_mturk_block"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[MTurkEnv] = mapped_column(enum_type(MTurkEnv))
    worker_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[BlockStatus] = mapped_column(enum_type(BlockStatus), default=BlockStatus.pending)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(TZDateTime)


class MTurkQualificationGrant(Base):
    """Workers given the "participated" qualification (so later HITs hide from them)."""

    __tablename__ = "mturk_qualification_grant"
    __table_args__ = (UniqueConstraint("environment", "qualification_type_id", "worker_id", name="uq_mturk_grant"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[MTurkEnv] = mapped_column(enum_type(MTurkEnv))
    qualification_type_id: Mapped[str] = mapped_column(String(64))
    worker_id: Mapped[str] = mapped_column(String(64))
    granted_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class MTurkRevocation(Base):
    """A qualification taken back from a worker (sync never grants it again on its own)."""

    __tablename__ = "mturk_revocation"
    __table_args__ = (UniqueConstraint("environment", "qualification_type_id", "worker_id", name="uq_mturk_revocation"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[MTurkEnv] = mapped_column(enum_type(MTurkEnv))
    qualification_type_id: Mapped[str] = mapped_column(String(64))
    worker_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    revoked_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class MTurkNotification(Base):
    """One NotifyWorkers call (<= 100 workers), recorded so a re-run never e-mails twice."""

    __tablename__ = "mturk_notification"

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[MTurkEnv] = mapped_column(enum_type(MTurkEnv))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    batch_id: Mapped[int | None] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    worker_ids: Mapped[list] = mapped_column(JSON)
    failures: Mapped[list] = mapped_column(JSON, default=list)
    status: Mapped[NoticeStatus] = mapped_column(enum_type(NoticeStatus), default=NoticeStatus.pending)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(TZDateTime)


class MTurkSetting(Base):
    """Per-database values of the adapter; `token_salt` makes every UniqueRequestToken unique
    to this database, so a re-initialised database never collides with an earlier one's HITs."""

    __tablename__ = "mturk_setting"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class MTurkExtension(Base):
    """One CreateAdditionalAssignmentsForHIT (+ new expiry), written before the call."""

    __tablename__ = "mturk_extension"

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[MTurkEnv] = mapped_column(enum_type(MTurkEnv))
    unique_request_token: Mapped[str] = mapped_column(String(64), unique=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    hit_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(64))  # what the extension is for; one per (HIT, key)
    added: Mapped[int] = mapped_column(Integer)
    max_before: Mapped[int] = mapped_column(Integer)  # MaxAssignments when the row was written
    expire_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    status: Mapped[ExtensionStatus] = mapped_column(enum_type(ExtensionStatus), default=ExtensionStatus.planned)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class MTurkCompensation(Base):
    """A one-worker compensation HIT, hidden from everyone but that worker by a qualification."""

    __tablename__ = "mturk_compensation"

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[MTurkEnv] = mapped_column(enum_type(MTurkEnv))
    unique_request_token: Mapped[str] = mapped_column(String(64), unique=True)
    worker_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(64))  # one compensation per (worker, key)
    reward_cents: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    qualification_type_id: Mapped[str | None] = mapped_column(String(64))
    hit_type_id: Mapped[str | None] = mapped_column(String(64))
    hit_id: Mapped[str | None] = mapped_column(String(64))
    assignment_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[CompensationStatus] = mapped_column(enum_type(CompensationStatus), default=CompensationStatus.pending)
    notified: Mapped[bool] = mapped_column(default=False)  # the worker was e-mailed the HIT's link
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


MTURK_TABLES = [m.__table__ for m in (MTurkHitType, MTurkHit, MTurkAssignment, MTurkBonus, MTurkBlock,
                                      MTurkQualificationGrant, MTurkRevocation, MTurkNotification, MTurkSetting, MTurkExtension,
                                      MTurkCompensation)]


def ensure_tables(engine: Engine) -> None:
    """Create the MTurk tables if they are missing (idempotent; the crowd schema must exist).

    `argus crowd init-db` creates them too once this module is imported, because they are
    declared on the crowd server's `Base`; this covers databases made before that.
    """
    Base.metadata.create_all(engine, tables=MTURK_TABLES, checkfirst=True)
