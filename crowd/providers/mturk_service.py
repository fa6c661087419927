"""MTurk service layer: reconciles Amazon Mechanical Turk with the Argus crowd database.

MTurk is the source of truth for HITs, assignment statuses and payments; the Argus database
is the source of truth for the work (visits, judgments, gold scores). Every operation here is
safe to re-run after any failure:

* **launch** checks every setting against MTurk's limits, then writes one `mturk_hit` row per
  HIT (with its `UniqueRequestToken`: deterministic, and salted with a random value kept in
  this database, so another database never shares it) before calling `CreateHITWithHITType`;
  a retry sends the same token, so MTurk refuses it (`AWS.MechanicalTurk.HitAlreadyExists`)
  instead of making a second HIT. Rows that were attempted before are first looked up in
  `ListHITs` by their annotation (the token is written there too), which also covers MTurk's
  24-hour token memory; a HIT is adopted only if its annotation and its URL are ours;
* **sync** and **expire** first do the same look-up, so a HIT whose create answer was lost is
  never left live and untracked; sync pulls every assignment (`ListAssignmentsForHIT`, all
  pages) and overwrites the local status with MTurk's. An assignment is matched to the visit of
  the same (assignmentId, workerId): MTurk gives a returned assignment's id to the next worker,
  so the id alone may point at someone else's work. Visits MTurk never received (an
  `externalSubmit` that failed, a returned HIT) are reported as not submitted;
* **review** approves submitted assignments whose gold accuracy reaches the threshold and flags
  the rest; rejecting needs feedback and an explicit confirmation; a call whose outcome is
  unknown is settled by reading the assignment back (`GetAssignment`);
* **bonus** writes the ledger row first, then `SendBonus` with a token; rows still "planned"
  are matched against `ListBonusPayments` (the reason carries a `[ref ...]` tag) before any
  new attempt, so a payment is never sent twice.

Functions take an `crowd.db.Database` and an `MTurkClient`. Worker and visit
statuses change only through the crowd service's review functions (`review_worker`,
`record_provider_review`), so the server's rules and event log see every change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Iterable

from sqlalchemy import func, select
from training.progress import progress_bar as tqdm

from crowd.db import Database
from crowd.models import Assignment, Batch, Judgment, Provider, Task, Visit, Worker, WorkerStatus, utcnow
from crowd.service import ServiceError, log_event, record_provider_review, review_worker
from crowd.providers.mturk_client import (
    EXTERNAL_QUESTION_NS, CostEstimate, MTurkClient, MTurkError, bonus_fee, check_hit_type, check_lifetime,
    check_worker_id, check_worker_ids, chunked, estimate_hits, external_question_xml, money, mturk_fee,
    qualification_requirements, split_assignments, unique_request_token,
)
from crowd.providers.mturk_models import (
    BlockStatus, BonusStatus, Decision, HitState, MTurkAssignment, MTurkAssignmentStatus, MTurkBlock, MTurkBonus,
    CompensationStatus, ExtensionStatus, MTurkCompensation, MTurkEnv, MTurkExtension, MTurkHit, MTurkHitType,
    MTurkNotification, MTurkQualificationGrant, MTurkRevocation, MTurkSetting, NoticeStatus, ensure_tables,
)

PARTICIPATED_PREFIX = "Argus participated: "
LOW_QUALITY_QUALIFICATION = "Argus excluded: low-quality work"
COMPENSATION_PREFIX = "Argus compensation "
NOTIFICATION_VERSION = "2014-08-15"  # the only version UpdateNotificationSettings accepts
EVENT_TYPES = ("AssignmentAccepted", "AssignmentAbandoned", "AssignmentReturned", "AssignmentSubmitted",
               "AssignmentRejected", "AssignmentApproved", "HITCreated", "HITExpired", "HITReviewable",
               "HITExtended", "HITDisposed")
DESTINATIONS = {  # what MTurk accepts as a destination per transport
    "SNS": re.compile(r"^arn:aws:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$"),
    "SQS": re.compile(r"^https://sqs\.[a-z0-9-]+\.amazonaws\.com/\d{12}/[A-Za-z0-9_-]{1,80}$"),
}
QUESTION_FORM_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2017-11-06/QuestionForm.xsd"


class MTurkServiceError(ServiceError):
    """A request the adapter refuses (bad input, budget, missing confirmation)."""


class BudgetExceeded(MTurkServiceError):
    pass


def _cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value())


def _usd(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(Decimal("0.01"))


# MTurk's settled outcome of an assignment -> the visit review action it means
PROVIDER_REVIEW = {MTurkAssignmentStatus.Approved: "approve", MTurkAssignmentStatus.Rejected: "reject"}


@dataclasses.dataclass
class LaunchSettings:
    """What a launch asks MTurk for. Durations in seconds, money in USD."""

    entry_url: str
    title: str
    description: str
    keywords: str = "image, rating, research"
    reward: Decimal | str | None = None  # None: the batch's reward_cents
    assignments: int | None = None  # total worker visits; None: enough for R judgments per task
    per_hit: int = 9  # <= 9 keeps MTurk's fee at 20%
    assignment_duration_s: int = 3600
    lifetime_s: int = 7 * 86400
    auto_approval_delay_s: int = 3 * 86400
    min_approval_rate: int | None = 95  # PercentAssignmentsApproved
    min_approved_hits: int | None = None  # NumberHITsApproved
    masters: bool = False  # only Masters workers (MTurk adds 5% to its fee)
    exclude_low_quality: bool = True  # hide from workers `review` excluded for low-quality work
    locales: tuple[str, ...] = ()
    study: str | None = None  # participated-qualification scope; None: "batch-<id>"
    exclude_studies: tuple[str, ...] = ()  # also hide from workers of these earlier studies
    qualification_test: str | None = None  # QuestionForm XML
    qualification_answer_key: str | None = None
    qualification_min_score: int = 1
    planned_bonuses: Decimal | str = "0"
    planned_bonus_count: int | None = None  # payments the bonus budget is split into; None: one per assignment
    frame_height: int = 0
    round: int = 1
    allow_http: bool = False  # only for offline tests against a local server


@dataclasses.dataclass
class LaunchResult:
    batch_id: int
    environment: str
    estimate: CostEstimate
    dry_run: bool
    hit_type_id: str | None = None
    hits: list[dict] = dataclasses.field(default_factory=list)  # {"chunk", "hit_id", "max_assignments", "new"}
    created: int = 0
    recovered: int = 0


@dataclasses.dataclass
class ReviewPolicy:
    """How `MTurkService.review` decides. Safe by default: approve every submission with
    work recorded here, exclude workers the quality model flags from later batches, reject
    nobody.

    * `reject_below`: reject a worker's submissions when their gold accuracy is below this
      (0-1) *and* they answered at least `min_gold` gold questions; None (default): never.
    * `exclude`: grant flagged workers the low-quality qualification (later HITs hide).
    * `feedback`: text put before the reason a rejected worker reads.
    * `bonus` (USD) for approved work of workers whose gold accuracy is at least
      `bonus_min_gold` (any, if None) and who are not excluded; paid once per
      (assignment, `bonus_key`).
    """

    reject_below: float | None = None
    min_gold: int = 10
    exclude: bool = True
    feedback: str = ""
    approve_feedback: str = "Thank you for your work."
    bonus: Decimal | str | None = None
    bonus_min_gold: float | None = None
    bonus_reason: str = "Bonus for careful, accurate work. Thank you!"
    bonus_key: str = "review"

    def check(self) -> None:
        if self.reject_below is not None and not 0 < float(self.reject_below) <= 1:
            raise MTurkServiceError(f"reject_below: {self.reject_below!r} must be in (0, 1]")
        if int(self.min_gold) < 1:
            raise MTurkServiceError(f"min_gold: {self.min_gold!r} must be >= 1 (never reject without evidence)")
        if self.bonus is not None and money(self.bonus, "bonus") <= 0:
            raise MTurkServiceError(f"bonus: {self.bonus!r} must be positive")
        if self.bonus_min_gold is not None and not 0 <= float(self.bonus_min_gold) <= 1:
            raise MTurkServiceError(f"bonus_min_gold: {self.bonus_min_gold!r} must be in [0, 1]")


@dataclasses.dataclass(frozen=True)
class WorkerQuality:
    """What review needs to know about one worker: the quality model's verdict
    (`analysis.quality.worker_flags`: `action` approve | review | reject, `flagged`,
    `reasons`) and the worker's scored gold answers in the batch."""

    flagged: bool = False
    action: str = "approve"
    reasons: str = ""
    gold_n: int = 0
    gold_accuracy: float | None = None


def review_actions(row: MTurkAssignment, quality: WorkerQuality | None, policy: ReviewPolicy) -> list[tuple[str, str]]:
    """The review decision for one submitted assignment: (action, reason) pairs.

    Without a `quality` record the visit's own gold answers are used (and nobody is flagged).

    * no work recorded here for this (assignment, worker): `hold` for a person;
    * gold accuracy below `policy.reject_below` over at least `policy.min_gold` gold
      answers: `reject`, with the numbers as the reason the worker reads;
    * otherwise `approve`; when the quality model flags the worker on evidence (its
      `reject` verdict) also `exclude` them from later batches (`policy.exclude`);
    * `bonus` for approved work when `policy.bonus` is set and the worker qualifies.
    """
    q = quality or WorkerQuality(gold_n=row.gold_n, gold_accuracy=row.gold_accuracy)  # this visit's gold alone
    acc = q.gold_accuracy if q.gold_accuracy is not None and not math.isnan(q.gold_accuracy) else None
    if not row.has_local_work:
        return [("hold", "no work recorded by the Argus server for this worker under this assignment")]
    if (policy.reject_below is not None and acc is not None and q.gold_n >= policy.min_gold
            and acc < policy.reject_below):
        return [("reject", f"{round(acc * q.gold_n)} of {q.gold_n} check questions with known answers were "
                           f"answered correctly ({acc:.0%}); this study required at least "
                           f"{float(policy.reject_below):.0%}.")]
    gold = f"gold {acc:.0%} of {q.gold_n}" if acc is not None else "no gold answers scored"
    excluded = policy.exclude and q.flagged and q.action == "reject"
    out = [("approve", f"work recorded here; {gold}" + (f"; flagged: {q.reasons}" if q.flagged else ""))]
    if excluded:
        out.append(("exclude", q.reasons or "flagged by the quality model"))
    if policy.bonus is not None and not excluded and (
            policy.bonus_min_gold is None or (acc is not None and acc >= float(policy.bonus_min_gold))):
        out.append(("bonus", f"{gold}" + (f" >= {float(policy.bonus_min_gold):.0%}" if policy.bonus_min_gold
                                           is not None else "")))
    return out


class MTurkService:
    """The adapter: one instance per (database, MTurk client)."""

    def __init__(self, db: Database, client: MTurkClient, progress: bool = True):
        self.db = db
        self.client = client
        self.env = MTurkEnv(client.environment)
        self.progress = progress
        self._salt: str | None = None
        ensure_tables(db.engine)

    def _bar(self, items, desc: str):
        items = list(items)
        return tqdm(items, desc=desc, unit="call", disable=not self.progress or len(items) < 2, leave=False)

    # ------------------------------------------------------------------ planning
    def planned_assignments(self, batch_id: int) -> int:
        """Worker visits needed so every non-gold task gets R judgments.

        A worker's first visit of k = `tasks_per_visit` tasks holds floor(k x `gold_rate`)
        gold tasks (the crowd server's deterministic mixing), the rest are real tasks.
        """
        with self.db.reading() as s:
            batch = self._batch(s, batch_id)
            n_tasks = s.scalar(select(func.count()).select_from(Task).where(
                Task.batch_id == batch_id, Task.is_gold.is_(False))) or 0
            real_per_visit = max(1, batch.tasks_per_visit - math.floor(batch.tasks_per_visit * batch.gold_rate + 1e-9))
            return max(1, math.ceil(n_tasks * batch.redundancy / real_per_visit))

    @staticmethod
    def _batch(session, batch_id: int) -> Batch:
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise MTurkServiceError(f"batch {batch_id} does not exist in the Argus database")
        return batch

    def estimate(self, batch_id: int, settings: LaunchSettings) -> tuple[CostEstimate, list[int], Decimal]:
        """(cost estimate, HIT sizes, reward) for launching `batch_id` with `settings`.

        Every setting is checked against MTurk's limits first (`ValueError` naming the field),
        so a dry run already shows what MTurk would refuse.
        """
        with self.db.reading() as s:
            batch = self._batch(s, batch_id)
            reward = money(settings.reward, "reward") if settings.reward is not None else _usd(batch.reward_cents)
        self._check_settings(settings, reward)
        total = settings.assignments or self.planned_assignments(batch_id)
        if int(settings.per_hit) < 1:
            raise MTurkServiceError(f"per_hit: {settings.per_hit!r} must be >= 1")
        sizes = split_assignments(total, settings.per_hit)
        est = estimate_hits(reward, sizes, settings.planned_bonuses, settings.planned_bonus_count, settings.masters)
        return est, sizes, reward

    def _check_settings(self, settings: LaunchSettings, reward: Decimal) -> None:
        check_hit_type(settings.title, settings.description, reward, settings.assignment_duration_s,
                       settings.auto_approval_delay_s, settings.keywords)
        check_lifetime(settings.lifetime_s)
        external_question_xml(settings.entry_url, settings.frame_height, settings.allow_http)
        # the requirements as launch will build them (placeholder ids): locales, count <= 10
        n_excluded = 1 + len(set(settings.exclude_studies)) + bool(settings.exclude_low_quality)
        qualification_requirements(
            settings.min_approval_rate, settings.min_approved_hits, settings.locales, ["Q"] * n_excluded,
            "Q" if settings.qualification_test else None, settings.qualification_min_score, settings.masters,
            self.env.value)

    # ------------------------------------------------------------------ tokens
    def token_salt(self) -> str:
        """This database's random salt for UniqueRequestTokens (made on first use, never changed)."""
        import secrets

        from sqlalchemy.exc import IntegrityError

        if self._salt is None:
            with self.db.reading() as s:
                row = s.get(MTurkSetting, "token_salt")
            if row is None:
                try:
                    with self.db.transaction() as s:
                        s.add(MTurkSetting(key="token_salt", value=secrets.token_hex(16)))
                except IntegrityError:  # another process made it first: use theirs
                    pass
                with self.db.reading() as s:
                    row = s.get(MTurkSetting, "token_salt")
            self._salt = row.value
        return self._salt

    def token(self, kind: str, *parts) -> str:
        """A UniqueRequestToken for `kind` + `parts`, unique to this database and environment."""
        return unique_request_token(kind, self.env.value, self.token_salt(), *parts)

    # ------------------------------------------------------------------ launch
    def launch(self, batch_id: int, settings: LaunchSettings, *, dry_run: bool = True,
               max_budget: Decimal | str | None = None) -> LaunchResult:
        """Create the HIT type and the batch's HITs (idempotent; dry run by default).

        Refuses with `BudgetExceeded` when the estimate is above `max_budget` (USD) or
        above the account balance. Re-running after any failure creates only the HITs that
        are still missing.
        """
        est, sizes, reward = self.estimate(batch_id, settings)
        if max_budget is not None and est.total > money(max_budget, "max budget"):
            raise BudgetExceeded(f"estimated cost ${est.total} is above --max-budget ${money(max_budget)}")
        result = LaunchResult(batch_id, self.env.value, est, dry_run)
        if dry_run:
            return result
        self.token_salt()  # made (once) outside the transactions below
        with self.db.reading() as s:
            existing = s.scalars(select(MTurkHit).where(
                MTurkHit.batch_id == batch_id, MTurkHit.environment == self.env, MTurkHit.round == settings.round)).all()
        if existing and sorted((h.chunk_index, h.max_assignments) for h in existing) != sorted(
                (i, n) for i, n in enumerate(sizes) if i < len(existing)):
            raise MTurkServiceError(
                f"batch {batch_id} round {settings.round} was launched with other HIT sizes; "
                "re-run with the same --assignments/--per-hit, or launch a new --round")
        pending_cost = est.total
        if existing:  # only what is still to create counts against the balance
            done = {h.chunk_index for h in existing if h.hit_id}
            left = [n for i, n in enumerate(sizes) if i not in done]
            pending_cost = estimate_hits(reward, left, masters=settings.masters).total if left else Decimal("0")
        if pending_cost > 0:
            balance = self.client.balance()
            if balance < pending_cost:
                raise BudgetExceeded(f"estimated cost ${pending_cost} is above the available balance ${balance}")

        # 1. the "participated" qualification (blocks retakes across batches) and the HIT type
        study = settings.study or f"batch-{batch_id}"
        qual_id = self.client.ensure_qualification_type(
            PARTICIPATED_PREFIX + study,
            f"Granted by Argus to workers who took part in study {study}; HITs of the study hide from them.")
        excluded = [qual_id] + [
            self.client.ensure_qualification_type(PARTICIPATED_PREFIX + other, f"Argus study {other}")
            for other in dict.fromkeys(settings.exclude_studies) if other != study]
        if settings.exclude_low_quality:
            excluded.append(self._low_quality_qualification())
        test_id = None
        if settings.qualification_test:
            test_id = self.client.ensure_qualification_type(
                f"Argus qualification test: {study}", f"Qualification test for Argus study {study}",
                test=settings.qualification_test, answer_key=settings.qualification_answer_key)
        reqs = qualification_requirements(
            settings.min_approval_rate, settings.min_approved_hits, settings.locales, excluded, test_id,
            settings.qualification_min_score, settings.masters, self.env.value)
        hit_type_id = self.client.create_hit_type(
            settings.title, settings.description, reward, settings.assignment_duration_s,
            settings.auto_approval_delay_s, settings.keywords, reqs)
        result.hit_type_id = hit_type_id
        with self.db.transaction() as s:
            if s.scalar(select(MTurkHitType).where(MTurkHitType.environment == self.env, MTurkHitType.batch_id == batch_id,
                                                   MTurkHitType.hit_type_id == hit_type_id)) is None:
                s.add(MTurkHitType(environment=self.env, hit_type_id=hit_type_id, batch_id=batch_id,
                                   title=settings.title, reward_cents=_cents(reward),
                                   participated_qualification_id=qual_id,
                                   params=dict(keywords=settings.keywords, requirements=reqs, study=study,
                                               masters=settings.masters,
                                               assignment_duration_s=settings.assignment_duration_s,
                                               auto_approval_delay_s=settings.auto_approval_delay_s)))
            # 2. write every HIT row before any HIT is created
            for i, n in enumerate(sizes):
                if s.scalar(select(MTurkHit.id).where(
                        MTurkHit.batch_id == batch_id, MTurkHit.environment == self.env,
                        MTurkHit.round == settings.round, MTurkHit.chunk_index == i)) is None:
                    s.add(MTurkHit(environment=self.env, batch_id=batch_id, round=settings.round, chunk_index=i,
                                   unique_request_token=self.token("hit", batch_id, settings.round, i),
                                   hit_type_id=hit_type_id, max_assignments=n,
                                   reward_cents=_cents(reward), lifetime_s=settings.lifetime_s,
                                   entry_url=settings.entry_url, state=HitState.pending))
        question = external_question_xml(settings.entry_url, settings.frame_height, settings.allow_http)

        # 3. HITs tried before may exist on MTurk: find them by annotation; then create the rest
        result.recovered += self._recover_unconfirmed(batch_id, settings.round)
        with self.db.reading() as s:
            rows = s.scalars(select(MTurkHit).where(
                MTurkHit.batch_id == batch_id, MTurkHit.environment == self.env,
                MTurkHit.round == settings.round).order_by(MTurkHit.chunk_index)).all()
        for row in self._bar(rows, "creating HITs"):
            if row.hit_id:
                result.hits.append(dict(chunk=row.chunk_index, hit_id=row.hit_id, max_assignments=row.max_assignments,
                                        new=False))
                continue
            with self.db.transaction() as s:
                s.get(MTurkHit, row.id).attempts += 1
            hit = self.client.create_hit(row.hit_type_id, question, row.max_assignments, row.lifetime_s,
                                         row.unique_request_token, annotation=row.unique_request_token)
            self._adopt(row, hit)
            if hit.get("Recovered"):
                result.recovered += 1
            else:
                result.created += 1
            result.hits.append(dict(chunk=row.chunk_index, hit_id=hit["HITId"], max_assignments=row.max_assignments,
                                    new=not hit.get("Recovered")))
        return result

    def _low_quality_qualification(self) -> str:
        return self.client.ensure_qualification_type(
            LOW_QUALITY_QUALIFICATION,
            "Granted by Argus to workers whose work in a study was below the quality bar; "
            "later Argus HITs hide from them.")

    @staticmethod
    def _question_url(question: str | None) -> str | None:
        from xml.etree import ElementTree

        if not question:
            return None
        try:
            return ElementTree.fromstring(question.encode()).findtext(f"{{{EXTERNAL_QUESTION_NS}}}ExternalURL")
        except ElementTree.ParseError:
            return None

    def _adopt(self, row: MTurkHit, hit: dict) -> None:
        """Record `hit` as the HIT of `row`, after checking it is ours: our token in its
        annotation and our entry URL in its question. Anything else is refused, never adopted."""
        if hit.get("RequesterAnnotation") != row.unique_request_token:
            raise MTurkServiceError(f"HIT {hit['HITId']} does not carry this row's token "
                                    f"({hit.get('RequesterAnnotation')!r}); not adopting it")
        url = self._question_url(hit.get("Question"))
        if hit.get("Question") is not None and url != row.entry_url:
            raise MTurkServiceError(
                f"HIT {hit['HITId']} carries the token of batch {row.batch_id} chunk {row.chunk_index} but opens "
                f"{url!r}, not {row.entry_url!r}; not adopting it (inspect it on MTurk and expire it by hand)")
        with self.db.transaction() as s:
            r = s.get(MTurkHit, row.id)
            r.hit_id, r.state, r.mturk_status = hit["HITId"], HitState.live, hit.get("HITStatus")
            r.expiration = hit.get("Expiration")
            log_event(s, "mturk_hit_created", batch_id=row.batch_id, hit=hit["HITId"], env=self.env.value,
                       chunk=row.chunk_index, assignments=row.max_assignments, recovered=bool(hit.get("Recovered")))

    def _recover_unconfirmed(self, batch_id: int, round_: int | None = None) -> int:
        """Find HITs whose create was tried but never confirmed (the answer was lost, or the
        run crashed) in `ListHITs` by their annotation, and adopt them. Returns how many."""
        with self.db.reading() as s:
            q = select(MTurkHit).where(MTurkHit.batch_id == batch_id, MTurkHit.environment == self.env,
                                       MTurkHit.hit_id.is_(None), MTurkHit.attempts > 0)
            if round_ is not None:
                q = q.where(MTurkHit.round == round_)
            rows = s.scalars(q.order_by(MTurkHit.round, MTurkHit.chunk_index)).all()
        if not rows:
            return 0
        by_annotation = {h.get("RequesterAnnotation"): h for h in self.client.list_hits()}
        found = 0
        for row in rows:
            hit = by_annotation.get(row.unique_request_token)
            if hit is not None:
                self._adopt(row, dict(hit, Recovered=True))
                found += 1
        return found

    def _hits(self, session, batch_id: int, states: Iterable[HitState] | None = None) -> list[MTurkHit]:
        q = select(MTurkHit).where(MTurkHit.batch_id == batch_id, MTurkHit.environment == self.env,
                                   MTurkHit.hit_id.is_not(None))
        if states is not None:
            q = q.where(MTurkHit.state.in_(list(states)))
        return list(session.scalars(q.order_by(MTurkHit.round, MTurkHit.chunk_index)))

    # ------------------------------------------------------------------ sync
    def sync(self, batch_id: int) -> dict:
        """Pull HIT and assignment state from MTurk into the database (MTurk wins).

        Returns counts: `hits`, `assignments` by MTurk status, `new`, `changed`,
        `no_local_work` (submitted on MTurk, no visit of that worker here), `not_submitted`
        (visits here whose MTurk assignment never arrived: in progress, returned, or a failed
        `externalSubmit` whose slot MTurk gave to someone else under the same assignment id),
        `bonuses_confirmed`, `granted`, `recovered` (HITs whose create answer was lost).
        """
        recovered = self._recover_unconfirmed(batch_id)
        with self.db.reading() as s:
            hits = [(h.id, h.hit_id) for h in self._hits(s, batch_id)]
            qual = s.scalar(select(MTurkHitType.participated_qualification_id).where(
                MTurkHitType.batch_id == batch_id, MTurkHitType.environment == self.env).limit(1))
        report = Counter(recovered=recovered)
        seen: set[tuple[str, str]] = set()  # (AssignmentId, WorkerId): MTurk re-issues ids
        for row_id, hit_id in self._bar(hits, "syncing HITs"):
            hit = self.client.get_hit(hit_id)
            assignments = self.client.list_assignments(hit_id)
            with self.db.transaction() as s:
                row = s.get(MTurkHit, row_id)
                row.mturk_status, row.expiration, row.synced_at = hit.get("HITStatus"), hit.get("Expiration"), utcnow()
                if hit.get("HITStatus") == "Disposed":
                    row.state = HitState.deleted
                elif row.state == HitState.live and hit.get("Expiration") and hit["Expiration"] <= utcnow():
                    row.state = HitState.expired
                for a in assignments:
                    seen.add((a["AssignmentId"], a["WorkerId"]))
                    report[a["AssignmentStatus"]] += 1
                    self._upsert_assignment(s, batch_id, a, report)
        with self.db.transaction() as s:
            # visits of this batch that MTurk never received
            hit_ids = [h for _, h in hits]
            if hit_ids:
                report["not_submitted"] = sum(1 for key in self._mturk_visits(s, batch_id, hit_ids) if key not in seen)
        report.update(self.verify_visits(batch_id))
        report["bonuses_confirmed"] = self._confirm_bonuses(batch_id)
        if qual:
            report["granted"] = self._grant_participated(batch_id, qual)
        report["hits"] = len(hits)
        return dict(report)

    def verify_visits(self, batch_id: int, grace_s: int = 3600, now: dt.datetime | None = None) -> dict:
        """Check every MTurk visit of the batch not yet checked with `GetAssignment`: the
        assignment must exist, be held by the visit's worker and belong to one of the batch's
        HITs ("verified"), else the visit is "refused" (a made-up or borrowed assignment id). MTurk
        shows an assignment only once it is submitted, so one it does not know stays unchecked
        until the visit has ended `grace_s` seconds ago. Unchecked and refused visits are flagged
        in the export (`mturk_check`). Returns `{"verified": n, "refused": n, "unchecked": n}`."""
        now = now or utcnow()
        with self.db.reading() as s:
            hit_ids = {h.hit_id for h in self._hits(s, batch_id) if h.hit_id}
            todo = s.execute(select(Visit.id, Visit.external_assignment_id, Visit.completed_at, Visit.status,
                                    Worker.external_id).join(Worker, Worker.id == Visit.worker_id).where(
                Visit.batch_id == batch_id, Visit.provider == Provider.mturk, Visit.mturk_check.is_(None),
                func.coalesce(Visit.partial_reason, "") != "returned")).all()
        out = Counter(verified=0, refused=0, unchecked=0)
        for visit_id, aid, completed_at, status, worker in self._bar(todo, "verifying assignments"):
            check = note = None
            try:
                a = self.client.get_assignment(aid) if aid else None
            except MTurkError as exc:
                a = None
                if completed_at is not None and (now - completed_at).total_seconds() > grace_s:
                    check, note = "refused", f"GetAssignment: {exc}"[:500]
            if a is not None:
                if a.get("WorkerId") != worker:
                    check, note = "refused", f"assignment {aid} is held by another worker"
                elif a.get("HITId") not in hit_ids:
                    check, note = "refused", f"assignment {aid} is on HIT {a.get('HITId')}, not one of this batch's"
                else:
                    check, note = "verified", f"GetAssignment {a.get('AssignmentStatus')}"
            if check is None:
                out["unchecked"] += 1
                continue
            with self.db.transaction() as s:
                visit = s.get(Visit, visit_id)
                visit.mturk_check, visit.mturk_check_note = check, note
                withdrawn = self._withdraw_gold(s, visit) if check == "refused" else 0
                log_event(s, f"mturk_{check}", batch_id=batch_id, worker_id=visit.worker_id, visit=visit_id,
                          assignment=aid, note=note, gold_withdrawn=withdrawn)
            out[check] += 1
        return dict(out)

    @staticmethod
    def _mturk_visits(s, batch_id: int, hit_ids: list[str]) -> dict[tuple[str, str], Visit]:
        """The batch's MTurk visits on these HITs, keyed by (assignment id, MTurk worker id)."""
        rows = s.execute(select(Visit, Worker.external_id).join(Worker, Worker.id == Visit.worker_id).where(
            Visit.batch_id == batch_id, Visit.provider == Provider.mturk, Visit.hit_id.in_(hit_ids))).all()
        return {(v.external_assignment_id, worker): v for v, worker in rows}

    def _upsert_assignment(self, s, batch_id: int, a: dict, report: Counter) -> None:
        status = MTurkAssignmentStatus(a["AssignmentStatus"])
        row = s.scalar(select(MTurkAssignment).where(MTurkAssignment.assignment_id == a["AssignmentId"]))
        if row is not None and row.worker_id != a["WorkerId"]:
            raise MTurkServiceError(  # a submitted assignment is never re-issued: MTurk changed under us
                f"assignment {a['AssignmentId']} was synced as {row.worker_id}'s and MTurk now reports "
                f"{a['WorkerId']}; not overwriting it")
        if row is None:
            row = MTurkAssignment(environment=self.env, assignment_id=a["AssignmentId"], hit_id=a["HITId"],
                                  batch_id=batch_id, worker_id=a["WorkerId"], status=status, decision=Decision.pending)
            s.add(row)
            report["new"] += 1
        elif row.status != status:
            report["changed"] += 1
        row.status = status
        row.answer = a.get("Answer")
        row.accept_time, row.submit_time = a.get("AcceptTime"), a.get("SubmitTime")
        row.auto_approval_time = a.get("AutoApprovalTime")
        row.approval_time, row.rejection_time = a.get("ApprovalTime"), a.get("RejectionTime")
        if a.get("RequesterFeedback"):
            row.feedback = a["RequesterFeedback"]
        row.synced_at = utcnow()
        # the same assignment id may have been another worker's visit before MTurk re-issued it
        visit = s.scalar(select(Visit).join(Worker, Worker.id == Visit.worker_id).where(
            Visit.provider == Provider.mturk, Visit.external_assignment_id == a["AssignmentId"],
            Worker.provider == Provider.mturk, Worker.external_id == a["WorkerId"]))
        row.visit_id = visit.id if visit else None
        row.has_local_work = bool(visit and visit.n_submitted > 0)
        if visit is not None and visit.mturk_check != "verified":
            # MTurk lists this (assignment, worker) on one of the batch's HITs: it is genuine
            visit.mturk_check, visit.mturk_check_note = "verified", f"ListAssignmentsForHIT {a['HITId']}"
        if visit is None:
            report["no_local_work"] += 1
        else:
            acc, n = self._gold(s, visit)
            row.gold_accuracy, row.gold_n = acc, n
            # MTurk is the source of truth for the review outcome (auto-approval, manual decisions)
            if status in PROVIDER_REVIEW:
                record_provider_review(s, visit.id, PROVIDER_REVIEW[status])
        if status == MTurkAssignmentStatus.Approved and row.decision in (Decision.pending, Decision.reject):
            row.decision = Decision.approve
        elif status == MTurkAssignmentStatus.Rejected and row.decision != Decision.reject:
            row.decision = Decision.reject

    @staticmethod
    def _withdraw_gold(s, visit: Visit) -> int:
        """Take a refused visit's gold answers out of its worker's gold tally (someone else may
        have answered under that worker id). Returns how many were taken out."""
        mean, n = MTurkService._gold(s, visit)
        if n:
            worker = s.get(Worker, visit.worker_id)
            worker.gold_correct = max(0.0, worker.gold_correct - mean * n)
            worker.gold_total = max(0, worker.gold_total - n)
        return n

    @staticmethod
    def _gold(s, visit: Visit) -> tuple[float | None, int]:
        """(mean gold score, number of gold answers) of one visit."""
        scores = s.scalars(select(Judgment.gold_score).join(Assignment, Assignment.id == Judgment.assignment_id)
                           .where(Assignment.visit_id == visit.id, Judgment.gold_score.is_not(None))).all()
        return (sum(scores) / len(scores) if scores else None), len(scores)

    def _grant_participated(self, batch_id: int, qual_id: str) -> int:
        with self.db.reading() as s:
            workers = set(s.scalars(select(MTurkAssignment.worker_id).where(MTurkAssignment.batch_id == batch_id)))
            done = set(s.scalars(select(MTurkQualificationGrant.worker_id).where(
                MTurkQualificationGrant.environment == self.env,
                MTurkQualificationGrant.qualification_type_id == qual_id)))
            revoked = set(s.scalars(select(MTurkRevocation.worker_id).where(  # taken back on purpose
                MTurkRevocation.environment == self.env, MTurkRevocation.qualification_type_id == qual_id)))
        todo = sorted(workers - done - revoked)
        for worker in self._bar(todo, "granting participated"):
            self.client.grant_qualification(qual_id, worker)  # idempotent on MTurk
            with self.db.transaction() as s:
                s.add(MTurkQualificationGrant(environment=self.env, qualification_type_id=qual_id, worker_id=worker))
        return len(todo)

    # ------------------------------------------------------------------ review
    def _costs(self, batch_id: int) -> dict[str, Decimal]:
        """HIT id -> what approving one of its assignments costs (reward + MTurk's fee)."""
        with self.db.reading() as s:
            masters = {t.hit_type_id: bool((t.params or {}).get("masters"))
                       for t in s.scalars(select(MTurkHitType).where(MTurkHitType.batch_id == batch_id))}
            hits = s.scalars(select(MTurkHit).where(MTurkHit.batch_id == batch_id, MTurkHit.hit_id.is_not(None))).all()
        out = {}
        for h in hits:
            reward = _usd(h.reward_cents)
            out[h.hit_id] = reward + (mturk_fee(reward, h.max_assignments, masters.get(h.hit_type_id, False))
                                      if reward > 0 else Decimal("0.00"))
        return out

    def plan_review(self, batch_id: int, policy: ReviewPolicy | None = None,
                    quality: dict[str, WorkerQuality] | None = None) -> list[dict]:
        """Every action `review` would take, one row each: `assignment_id, worker_id,
        hit_id, action` (approve | reject | exclude | hold | bonus), `reason`, `cost_usd`
        (what MTurk charges for it), and `feedback` (what a rejected worker reads).

        `quality` maps MTurk WorkerIds to `WorkerQuality` (`argus mturk review`
        builds it with `analysis.quality.worker_flags`); without it every submission
        with work recorded here is approved and nobody is excluded. The decision for one
        assignment is `review_actions`.
        """
        policy = policy or ReviewPolicy()
        policy.check()
        quality = quality or {}
        costs = self._costs(batch_id)
        with self.db.reading() as s:
            rows = s.scalars(select(MTurkAssignment).where(
                MTurkAssignment.batch_id == batch_id, MTurkAssignment.environment == self.env,
                MTurkAssignment.status.in_([MTurkAssignmentStatus.Submitted, MTurkAssignmentStatus.Approved]))
                .order_by(MTurkAssignment.id)).all()
            paid = set(s.scalars(select(MTurkBonus.assignment_id).where(
                MTurkBonus.batch_id == batch_id, MTurkBonus.environment == self.env, MTurkBonus.key == policy.bonus_key,
                MTurkBonus.status == BonusStatus.paid)))
        plan = []
        for r in rows:
            actions = review_actions(r, quality.get(r.worker_id), policy)
            if r.status == MTurkAssignmentStatus.Approved:  # reviewed earlier: only a bonus may be left
                actions = [a for a in actions if a[0] == "bonus"]
            for action, why in actions:
                if action == "bonus" and r.assignment_id in paid:
                    continue
                item = dict(assignment_id=r.assignment_id, worker_id=r.worker_id, hit_id=r.hit_id, action=action,
                            reason=why, cost_usd=Decimal("0.00"))
                if action == "approve":
                    item["cost_usd"] = costs.get(r.hit_id, Decimal("0.00"))
                elif action == "bonus":
                    amount = money(policy.bonus, "bonus")
                    item.update(amount=amount, cost_usd=amount + bonus_fee(amount))
                elif action == "reject":
                    item["feedback"] = f"{policy.feedback.strip()} {why}".strip()
                plan.append(item)
        return plan

    def review(self, batch_id: int, policy: ReviewPolicy | None = None,
               quality: dict[str, WorkerQuality] | None = None, *, dry_run: bool = False,
               confirm_rejections: bool = False) -> list[dict]:
        """Carry out `plan_review`: approve (pay), reject (only under an explicit
        `policy.reject_below` and with `confirm_rejections`), exclude low-quality workers from
        later batches (the "low-quality" qualification, which launched HITs require not to
        hold), hold submissions without work here for a person, and pay the planned bonuses
        through the ledger. Every row gets an `outcome`; re-running finishes what is left.
        """
        policy = policy or ReviewPolicy()
        plan = self.plan_review(batch_id, policy, quality)
        if dry_run:
            return plan
        if any(p["action"] == "reject" for p in plan) and not confirm_rejections:
            raise MTurkServiceError("the plan rejects assignments: rejections need explicit confirmation "
                                    "(--yes or the prompt); nothing was done")
        excluded_qual = None
        for item in self._bar([p for p in plan if p["action"] != "bonus"], "reviewing"):
            aid, action = item["assignment_id"], item["action"]
            if action == "approve":
                item["outcome"] = self._approve_one(aid, policy.approve_feedback, override=False)
            elif action == "reject":
                item["outcome"] = self.reject([aid], item["feedback"], confirm=True)[aid]
            elif action == "exclude":
                excluded_qual = excluded_qual or self._low_quality_qualification()
                self.grant(excluded_qual, [item["worker_id"]])
                with self.db.transaction() as s:
                    row = s.scalar(select(MTurkAssignment).where(MTurkAssignment.assignment_id == aid))
                    self._flag_worker(s, row, item["reason"])
                item["outcome"] = "excluded from later batches"
            else:  # hold for a person
                with self.db.transaction() as s:
                    row = s.scalar(select(MTurkAssignment).where(MTurkAssignment.assignment_id == aid))
                    if row.decision != Decision.flag:
                        row.decision = Decision.flag
                        self._flag_worker(s, row, item["reason"])
                item["outcome"] = "held for you (decide before auto-approval)"
        bonuses = [p for p in plan if p["action"] == "bonus"]
        if bonuses:
            with self.db.reading() as s:
                approved = set(s.scalars(select(MTurkAssignment.assignment_id).where(
                    MTurkAssignment.batch_id == batch_id, MTurkAssignment.status == MTurkAssignmentStatus.Approved)))
            payable = [dict(worker_id=p["worker_id"], assignment_id=p["assignment_id"], hit_id=p["hit_id"],
                            amount=p["amount"]) for p in bonuses if p["assignment_id"] in approved]
            self.bonus(batch_id, payable, policy.bonus_reason, policy.bonus_key, dry_run=False)
            for p in bonuses:
                p["outcome"] = "paid" if p["assignment_id"] in approved else "not paid: not approved"
        return plan

    def _flag_worker(self, s, row: MTurkAssignment, reason: str) -> None:
        worker = s.scalar(select(Worker).where(Worker.provider == Provider.mturk, Worker.external_id == row.worker_id))
        if worker is not None and worker.status != WorkerStatus.blocked:
            review_worker(s, worker.id, "flag", reason=reason, batch_id=row.batch_id)
        log_event(s, "mturk_flag", batch_id=row.batch_id, worker_id=worker.id if worker else None,
                   assignment=row.assignment_id, reason=reason)

    def _settle(self, assignment_id: str) -> MTurkAssignmentStatus:
        """Read one assignment back from MTurk and store its status (for unknown outcomes)."""
        a = self.client.get_assignment(assignment_id)
        status = MTurkAssignmentStatus(a["AssignmentStatus"])
        with self.db.transaction() as s:
            row = s.scalar(select(MTurkAssignment).where(MTurkAssignment.assignment_id == assignment_id))
            row.status = status
            row.approval_time, row.rejection_time = a.get("ApprovalTime"), a.get("RejectionTime")
            if row.visit_id and status in PROVIDER_REVIEW:
                record_provider_review(s, row.visit_id, PROVIDER_REVIEW[status])
        return status

    def _row(self, assignment_id: str) -> MTurkAssignment:
        with self.db.reading() as s:
            row = s.scalar(select(MTurkAssignment).where(MTurkAssignment.assignment_id == assignment_id,
                                                         MTurkAssignment.environment == self.env))
        if row is None:
            raise MTurkServiceError(f"assignment {assignment_id!r} is not known here: run `argus mturk sync` first")
        return row

    def _approve_one(self, assignment_id: str, feedback: str | None, override: bool) -> str:
        row = self._row(assignment_id)
        if row.status == MTurkAssignmentStatus.Approved:
            return "already approved"
        if row.status == MTurkAssignmentStatus.Rejected and not override:
            raise MTurkServiceError(f"assignment {assignment_id} was rejected; approving it needs override_rejection")
        with self.db.transaction() as s:  # the decision is written before the call
            s.get(MTurkAssignment, row.id).decision = Decision.approve
        try:
            self.client.approve(assignment_id, feedback, override_rejection=override)
        except MTurkError as exc:
            if exc.code != "RequestError":
                raise  # outcome unknown: a re-run settles it (decision=approve is remembered)
            status = self._settle(assignment_id)  # "not Submitted": an earlier try went through?
            if status != MTurkAssignmentStatus.Approved:
                raise
            return "already approved"
        with self.db.transaction() as s:
            r = s.get(MTurkAssignment, row.id)
            r.status, r.approval_time = MTurkAssignmentStatus.Approved, utcnow()
            if feedback:
                r.feedback = feedback
            if r.visit_id:
                record_provider_review(s, r.visit_id, "approve")
            log_event(s, "mturk_approve", batch_id=r.batch_id, assignment=assignment_id, override=override)
        return "approved"

    def approve(self, assignment_ids: Iterable[str], feedback: str | None = None,
                override_rejection: bool = False) -> dict[str, str]:
        """Approve assignments by hand (e.g. flagged ones after a look); with
        `override_rejection` also reverse earlier rejections (`OverrideRejection`)."""
        return {a: self._approve_one(a, feedback, override_rejection) for a in self._bar(assignment_ids, "approving")}

    def reject(self, assignment_ids: Iterable[str], feedback: str, confirm: bool = False) -> dict[str, str]:
        """Reject submitted assignments. Needs `feedback` the worker will read and
        `confirm=True` (rejections hurt workers' approval rates and cannot be undone after
        30 days)."""
        if not feedback or len(feedback.strip()) < 10:
            raise MTurkServiceError("feedback: rejecting needs a reason of at least 10 characters the worker can read")
        if not confirm:
            raise MTurkServiceError("rejecting needs explicit confirmation (--yes or the typed prompt)")
        out = {}
        for aid in self._bar(list(assignment_ids), "rejecting"):
            row = self._row(aid)
            if row.status == MTurkAssignmentStatus.Rejected:
                out[aid] = "already rejected"
                continue
            if row.status == MTurkAssignmentStatus.Approved:
                raise MTurkServiceError(f"assignment {aid} is already approved and paid; it cannot be rejected")
            with self.db.transaction() as s:
                s.get(MTurkAssignment, row.id).decision = Decision.reject
            try:
                self.client.reject(aid, feedback)
            except MTurkError as exc:
                if exc.code != "RequestError" or self._settle(aid) != MTurkAssignmentStatus.Rejected:
                    raise
                out[aid] = "already rejected"
                continue
            with self.db.transaction() as s:
                r = s.get(MTurkAssignment, row.id)
                r.status, r.feedback, r.rejection_time = MTurkAssignmentStatus.Rejected, feedback, utcnow()
                if r.visit_id:
                    record_provider_review(s, r.visit_id, "reject", note=feedback)
                log_event(s, "mturk_reject", batch_id=r.batch_id, assignment=aid, feedback=feedback)
            out[aid] = "rejected"
        return out

    # ------------------------------------------------------------------ bonuses
    def plan_bonuses(self, batch_id: int, amount: Decimal | str | None = None, min_gold: float | None = None,
                     per_worker: dict[str, Decimal | str] | None = None) -> list[dict]:
        """Bonus rows for approved assignments of `batch_id`.

        Either one `amount` (USD) for every approved assignment whose gold accuracy is >=
        `min_gold` (when given), or `per_worker` = {WorkerId: USD} paid once per worker (on
        their latest approved assignment).
        """
        if (amount is None) == (per_worker is None):
            raise MTurkServiceError("give either amount or per_worker")
        with self.db.reading() as s:
            rows = s.scalars(select(MTurkAssignment).where(
                MTurkAssignment.batch_id == batch_id, MTurkAssignment.environment == self.env,
                MTurkAssignment.status == MTurkAssignmentStatus.Approved).order_by(MTurkAssignment.id)).all()
        plan = []
        if amount is not None:
            value = money(amount, "bonus amount")
            for r in rows:
                if min_gold is not None and (r.gold_accuracy is None or r.gold_accuracy < min_gold):
                    continue
                plan.append(dict(worker_id=r.worker_id, assignment_id=r.assignment_id, hit_id=r.hit_id, amount=value))
        else:
            check_worker_ids(per_worker, "bonus worker id")
            latest = {r.worker_id: r for r in rows}
            for worker, value in per_worker.items():
                if worker not in latest:
                    raise MTurkServiceError(f"worker {worker}: no approved assignment in batch {batch_id} to attach a bonus to")
                r = latest[worker]
                plan.append(dict(worker_id=worker, assignment_id=r.assignment_id, hit_id=r.hit_id,
                                 amount=money(value, f"bonus for {worker}")))
        return [p for p in plan if p["amount"] > 0]

    def bonus(self, batch_id: int, plan: list[dict], reason: str, key: str = "performance", *,
              dry_run: bool = True, max_budget: Decimal | str | None = None) -> dict:
        """Pay `plan` (from `plan_bonuses`) exactly once per (assignment, `key`).

        1. every payment gets a ledger row (status planned, deterministic token) before any
           money moves; a repeated run finds the rows instead of adding new ones;
        2. planned rows are matched against `ListBonusPayments` and marked paid if MTurk has
           them (a lost response on an earlier run);
        3. the account balance must cover what is left to pay (bonus + MTurk's fee, at least
           $0.01 per bonus), or nothing is sent (`BudgetExceeded`);
        4. the remaining planned rows are sent with `SendBonus` + their token.
        Returns `{"planned", "paid_now", "already_paid", "total_usd", "fees_usd"}`.
        """
        if not reason or not reason.strip():
            raise MTurkServiceError("reason: a bonus needs a reason the worker can read")
        total = sum((p["amount"] for p in plan), Decimal("0.00"))
        fees = sum((bonus_fee(p["amount"]) for p in plan), Decimal("0.00"))
        if max_budget is not None and total + fees > money(max_budget, "max budget"):
            raise BudgetExceeded(f"bonuses ${total} + fees ${fees} are above --max-budget ${money(max_budget)}")
        summary = dict(planned=len(plan), paid_now=0, already_paid=0, total_usd=total, fees_usd=fees)
        if dry_run:
            return summary
        self._check_bonus_balance(plan, key)
        tokens = []
        with self.db.transaction() as s:
            for p in plan:
                token = self._bonus_token(p["assignment_id"], key)
                row = s.scalar(select(MTurkBonus).where(MTurkBonus.unique_request_token == token))
                if row is None:
                    s.add(MTurkBonus(environment=self.env, unique_request_token=token, batch_id=batch_id, key=key,
                                     worker_id=p["worker_id"], assignment_id=p["assignment_id"], hit_id=p["hit_id"],
                                     amount_cents=_cents(p["amount"]), reason=f"{reason.strip()} [ref {token[-12:]}]",
                                     status=BonusStatus.planned))
                elif row.amount_cents != _cents(p["amount"]):
                    raise MTurkServiceError(
                        f"assignment {p['assignment_id']} already has a {key!r} bonus of ${_usd(row.amount_cents)}; "
                        f"use another --key to pay a second bonus")
                tokens.append(token)
        self._confirm_bonuses(batch_id)
        with self.db.reading() as s:
            rows = s.scalars(select(MTurkBonus).where(MTurkBonus.unique_request_token.in_(tokens))).all()
        summary["already_paid"] = sum(r.status == BonusStatus.paid for r in rows)
        for row in self._bar([r for r in rows if r.status == BonusStatus.planned], "paying bonuses"):
            sent = self.client.send_bonus(row.worker_id, row.assignment_id, _usd(row.amount_cents), row.reason,
                                          row.unique_request_token)
            with self.db.transaction() as s:
                r = s.get(MTurkBonus, row.id)
                r.status, r.paid_at = BonusStatus.paid, utcnow()
                log_event(s, "mturk_bonus", batch_id=batch_id, assignment=r.assignment_id,
                           amount_cents=r.amount_cents, sent_now=sent)
            summary["paid_now" if sent else "already_paid"] += 1
        return summary

    def _bonus_token(self, assignment_id: str, key: str) -> str:
        return self.token("bonus", assignment_id, key)

    def _check_bonus_balance(self, plan: list[dict], key: str) -> None:
        """Refuse before any payment when the balance cannot cover the bonuses not paid yet."""
        with self.db.reading() as s:
            paid = set(s.scalars(select(MTurkBonus.unique_request_token).where(
                MTurkBonus.status == BonusStatus.paid,
                MTurkBonus.unique_request_token.in_([self._bonus_token(p["assignment_id"], key) for p in plan]))))
        todo = [p for p in plan if self._bonus_token(p["assignment_id"], key) not in paid]
        need = sum((p["amount"] + bonus_fee(p["amount"]) for p in todo), Decimal("0.00"))
        if need > 0:
            balance = self.client.balance()
            if balance < need:
                raise BudgetExceeded(f"{len(todo)} bonuses need ${need} with MTurk's fees; the available balance "
                                     f"${balance} is not enough, so nothing was paid")

    def _confirm_bonuses(self, batch_id: int) -> int:
        """Mark planned ledger rows paid when `ListBonusPayments` shows them. Returns how many."""
        with self.db.reading() as s:
            planned = s.scalars(select(MTurkBonus).where(MTurkBonus.batch_id == batch_id,
                                                         MTurkBonus.environment == self.env,
                                                         MTurkBonus.status == BonusStatus.planned)).all()
        if not planned:
            return 0
        by_hit = defaultdict(list)
        for row in planned:
            by_hit[row.hit_id].append(row)
        confirmed = 0
        for hit_id, rows in by_hit.items():
            paid = {(b["AssignmentId"], b["Reason"], _cents(Decimal(b["BonusAmount"])))
                    for b in self.client.list_bonus_payments(hit_id=hit_id)}
            with self.db.transaction() as s:
                for row in rows:
                    if (row.assignment_id, row.reason, row.amount_cents) in paid:
                        r = s.get(MTurkBonus, row.id)
                        r.status, r.paid_at = BonusStatus.paid, utcnow()
                        confirmed += 1
        return confirmed

    # ------------------------------------------------------------------ workers
    def block(self, worker_ids: Iterable[str], reason: str) -> dict[str, str]:
        """Block MTurk workers from all your HITs and from new Argus tasks."""
        if not reason or not reason.strip():
            raise MTurkServiceError("reason: blocking needs a reason")
        worker_ids = check_worker_ids(worker_ids)
        out = {}
        for worker in self._bar(worker_ids, "blocking"):
            with self.db.transaction() as s:
                row = s.scalar(select(MTurkBlock).where(MTurkBlock.environment == self.env, MTurkBlock.worker_id == worker))
                if row is None:
                    row = MTurkBlock(environment=self.env, worker_id=worker, reason=reason, status=BlockStatus.pending)
                    s.add(row)
                elif row.status == BlockStatus.blocked:
                    out[worker] = "already blocked"
                    continue
                row.status, row.reason = BlockStatus.pending, reason
            self.client.block_worker(worker, reason)  # CreateWorkerBlock is idempotent on MTurk
            with self.db.transaction() as s:
                row = s.scalar(select(MTurkBlock).where(MTurkBlock.environment == self.env, MTurkBlock.worker_id == worker))
                row.status, row.updated_at = BlockStatus.blocked, utcnow()
                local = s.scalar(select(Worker).where(Worker.provider == Provider.mturk, Worker.external_id == worker))
                if local is not None:
                    review_worker(s, local.id, "block", reason=reason[:1000])
                log_event(s, "mturk_block", worker_id=local.id if local else None, mturk_worker=worker, reason=reason)
            out[worker] = "blocked"
        return out

    def unblock(self, worker_ids: Iterable[str], reason: str = "") -> dict[str, str]:
        out = {}
        for worker in check_worker_ids(worker_ids):
            self.client.unblock_worker(worker, reason)
            with self.db.transaction() as s:
                row = s.scalar(select(MTurkBlock).where(MTurkBlock.environment == self.env, MTurkBlock.worker_id == worker))
                if row is not None:
                    row.status, row.updated_at = BlockStatus.unblocked, utcnow()
                local = s.scalar(select(Worker).where(Worker.provider == Provider.mturk, Worker.external_id == worker))
                if local is not None:
                    review_worker(s, local.id, "unblock", reason=reason[:1000])
                log_event(s, "mturk_unblock", mturk_worker=worker, reason=reason)
            out[worker] = "unblocked"
        return out

    def notify(self, worker_ids: Iterable[str], subject: str, message: str, batch_id: int | None = None) -> dict:
        """E-mail workers in chunks of 100; each chunk is recorded and never sent twice."""
        ids = sorted(set(check_worker_ids(worker_ids)))
        if not ids:
            raise MTurkServiceError("no workers to notify")
        sent = skipped = 0
        failures: list[dict] = []
        for chunk in self._bar(list(chunked(ids, 100)), "notifying"):
            token = self.token("notify", subject, message, *chunk)
            with self.db.transaction() as s:
                row = s.scalar(select(MTurkNotification).where(MTurkNotification.token == token))
                if row is not None and row.status == NoticeStatus.sent:
                    skipped += len(chunk)
                    continue
                if row is None:
                    s.add(MTurkNotification(environment=self.env, token=token, batch_id=batch_id, subject=subject,
                                            message=message, worker_ids=chunk, status=NoticeStatus.pending))
            fails = self.client.notify_workers(chunk, subject, message)
            with self.db.transaction() as s:
                row = s.scalar(select(MTurkNotification).where(MTurkNotification.token == token))
                row.status, row.sent_at, row.failures = NoticeStatus.sent, utcnow(), fails
            failures += fails
            sent += len(chunk) - len(fails)
        return dict(sent=sent, skipped=skipped, failures=failures)

    def batch_workers(self, batch_id: int) -> list[str]:
        with self.db.reading() as s:
            return sorted(set(s.scalars(select(MTurkAssignment.worker_id).where(
                MTurkAssignment.batch_id == batch_id, MTurkAssignment.environment == self.env))))

    # ------------------------------------------------------------------ expire / delete
    def expire(self, batch_id: int) -> int:
        """Expire every live HIT of the batch now (no new workers; accepted work can finish).

        HITs whose create answer was lost are found first (by annotation), so none is left
        live. A HIT MTurk has already expired (a retry after a lost answer, a re-run after a
        crash: MTurk refuses the repeated (HITId, ExpireAt)) counts as expired once read back.
        Returns how many HITs are now expired that were live here.
        """
        self._recover_unconfirmed(batch_id)
        with self.db.reading() as s:
            rows = [(h.id, h.hit_id) for h in self._hits(s, batch_id, [HitState.live])]
        for row_id, hit_id in self._bar(rows, "expiring HITs"):
            now = self.client.expire_hit(hit_id)
            with self.db.transaction() as s:
                r = s.get(MTurkHit, row_id)
                r.state, r.expiration = HitState.expired, utcnow()
                log_event(s, "mturk_hit_expired", batch_id=batch_id, hit=hit_id, already=not now)
        return len(rows)

    def delete(self, batch_id: int) -> dict:
        """Delete expired HITs whose assignments are all reviewed (approved or rejected).

        Returns `{"deleted": n, "waiting": [hit ids not yet deletable, with why]}`.
        """
        out = {"deleted": 0, "waiting": []}
        with self.db.reading() as s:
            rows = [(h.id, h.hit_id, h.state) for h in self._hits(s, batch_id, [HitState.live, HitState.expired])]
            submitted = set(s.scalars(select(MTurkAssignment.hit_id).where(
                MTurkAssignment.batch_id == batch_id, MTurkAssignment.status == MTurkAssignmentStatus.Submitted)))
        for row_id, hit_id, state in self._bar(rows, "deleting HITs"):
            if state != HitState.expired:
                out["waiting"].append((hit_id, "not expired (run expire first)"))
                continue
            if hit_id in submitted:
                out["waiting"].append((hit_id, "has assignments to review"))
                continue
            try:
                self.client.delete_hit(hit_id)
            except MTurkError as exc:
                hit = self.client.get_hit(hit_id) if exc.code == "RequestError" else None
                if not hit or hit.get("HITStatus") != "Disposed":
                    out["waiting"].append((hit_id, exc.message))
                    continue
            with self.db.transaction() as s:
                r = s.get(MTurkHit, row_id)
                r.state, r.mturk_status = HitState.deleted, "Disposed"
                log_event(s, "mturk_hit_deleted", batch_id=batch_id, hit=hit_id)
            out["deleted"] += 1
        return out

    # ------------------------------------------------------------------ extend
    def extend(self, batch_id: int, add_assignments: int = 0, extend_s: int | None = None,
               hit_ids: Iterable[str] | None = None, key: str = "extend-1", *, dry_run: bool = True,
               max_budget: Decimal | str | None = None) -> dict:
        """Give the batch's HITs (or `hit_ids`) `add_assignments` more assignments
        (CreateAdditionalAssignmentsForHIT with a token) and/or `extend_s` more seconds from
        now before they expire. Each (HIT, `key`) is extended at most once: the ledger row is
        written first, a lost answer is settled by reading the HIT back. MTurk refuses to take a
        HIT created with fewer than 10 assignments to 10 or more; that is checked here first.

        Returns `{"hits": [{hit_id, max_before, max_after, expire_at, outcome}], "cost_usd"}`.
        """
        n = int(add_assignments)
        if n < 0 or (n == 0 and not extend_s):
            raise MTurkServiceError("extend needs --assignments N (>= 1) and/or --time")
        if extend_s is not None:
            check_lifetime(extend_s)
        with self.db.reading() as s:
            rows = [r for r in self._hits(s, batch_id, [HitState.live, HitState.expired])
                    if hit_ids is None or r.hit_id in set(hit_ids)]
            masters = {t.hit_type_id: bool((t.params or {}).get("masters"))
                       for t in s.scalars(select(MTurkHitType).where(MTurkHitType.batch_id == batch_id))}
            ledger = {e.hit_id: e for e in s.scalars(select(MTurkExtension).where(
                MTurkExtension.batch_id == batch_id, MTurkExtension.environment == self.env,
                MTurkExtension.key == key))}
        if hit_ids is not None and len(rows) != len(set(hit_ids)):
            missing = set(hit_ids) - {r.hit_id for r in rows}
            raise MTurkServiceError(f"HITs {sorted(missing)} are not live or expired HITs of batch {batch_id}")
        plan, cost = [], Decimal("0.00")
        for r in rows:
            before = ledger[r.hit_id].max_before if r.hit_id in ledger else r.max_assignments
            if n and before < 10 <= before + n:
                raise MTurkServiceError(
                    f"HIT {r.hit_id} has {before} assignments; MTurk does not let a HIT created with fewer than 10 "
                    f"reach 10 or more (AWS.MechanicalTurk.InvalidMaximumAssignmentsIncrease): add at most "
                    f"{9 - before}, or launch another --round")
            reward = _usd(r.reward_cents)
            if r.hit_id not in ledger or ledger[r.hit_id].status != ExtensionStatus.done:
                cost += n * (reward + (mturk_fee(reward, before + n, masters.get(r.hit_type_id, False))
                                       if reward > 0 else Decimal("0")))
            plan.append(dict(hit_id=r.hit_id, row_id=r.id, max_before=before, max_after=before + n,
                             expire_at=None, outcome="planned"))
        if max_budget is not None and cost > money(max_budget, "max budget"):
            raise BudgetExceeded(f"extending costs up to ${cost}, above --max-budget ${money(max_budget)}")
        out = dict(hits=plan, cost_usd=cost)
        if dry_run:
            return out
        if cost > 0:
            balance = self.client.balance()
            if balance < cost:
                raise BudgetExceeded(f"extending costs up to ${cost}, above the available balance ${balance}")
        expire_at = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=int(extend_s))).replace(microsecond=0) \
            if extend_s else None
        self.token_salt()
        with self.db.transaction() as s:  # the ledger first
            for p in plan:
                if p["hit_id"] not in ledger:
                    s.add(MTurkExtension(environment=self.env, unique_request_token=self.token("extend", p["hit_id"], key),
                                         batch_id=batch_id, hit_id=p["hit_id"], key=key, added=n,
                                         max_before=p["max_before"], expire_at=expire_at))
        with self.db.reading() as s:
            ledger = {e.hit_id: e for e in s.scalars(select(MTurkExtension).where(
                MTurkExtension.batch_id == batch_id, MTurkExtension.environment == self.env,
                MTurkExtension.key == key))}
        for p in self._bar(plan, "extending HITs"):
            e = ledger[p["hit_id"]]
            p["expire_at"] = e.expire_at
            if e.status == ExtensionStatus.done:
                p["outcome"] = "already extended"
                continue
            if e.added:
                try:
                    self.client.add_assignments(e.hit_id, e.added, e.unique_request_token)
                except MTurkError as exc:  # a repeat of an applied call is refused: read the HIT back
                    if exc.code != "RequestError" or self.client.get_hit(e.hit_id)["MaxAssignments"] < e.max_before + e.added:
                        raise
            if e.expire_at is not None:
                try:
                    self.client.update_expiration(e.hit_id, e.expire_at)
                except MTurkError as exc:  # (HITId, ExpireAt) repeats are refused: read back
                    expiration = self.client.get_hit(e.hit_id).get("Expiration") if exc.code == "RequestError" else None
                    if expiration is None or abs((expiration - e.expire_at).total_seconds()) > 1:
                        raise
            with self.db.transaction() as s:
                s.get(MTurkExtension, e.id).status = ExtensionStatus.done
                r = s.get(MTurkHit, p["row_id"])
                r.max_assignments = e.max_before + e.added
                if e.expire_at is not None:
                    r.state, r.expiration = HitState.live, e.expire_at
                log_event(s, "mturk_hit_extended", batch_id=batch_id, hit=e.hit_id, added=e.added,
                           expire_at=e.expire_at.isoformat() if e.expire_at else None)
            p["outcome"] = "extended"
        return out

    # ------------------------------------------------------------------ compensation
    def compensate(self, worker_id: str, amount: Decimal | str, reason: str, key: str = "compensation", *,
                   notify: bool = True, dry_run: bool = True, lifetime_s: int = 7 * 86400) -> dict:
        """Pay one worker through a HIT only they can see (e.g. their externalSubmit failed, or
        MTurk gave their slot to someone else): a qualification granted to that worker alone
        gates a one-assignment QuestionForm HIT with `amount` as reward; they are told by
        e-mail (`notify`). Re-running finishes the setup and approves their submission, so
        the payment happens once per (worker, `key`).

        Returns `{"worker_id", "amount_usd", "cost_usd", "hit_id", "status", "url"}`.
        """
        check_worker_id(worker_id)
        reward = money(amount, "compensation amount")
        if not reason or not reason.strip():
            raise MTurkServiceError("reason: a compensation HIT needs a reason the worker can read")
        title = "Compensation for an Argus study you worked on"
        check_hit_type(title, reason, reward, 3600, 3600)
        cost = reward + mturk_fee(reward, 1)
        out = dict(worker_id=worker_id, amount_usd=reward, cost_usd=cost, hit_id=None, status="planned", url=None)
        if dry_run:
            return out
        self.token_salt()
        token = self.token("compensation", worker_id, key)
        with self.db.transaction() as s:
            row = s.scalar(select(MTurkCompensation).where(MTurkCompensation.unique_request_token == token))
            if row is None:
                s.add(MTurkCompensation(environment=self.env, unique_request_token=token, worker_id=worker_id, key=key,
                                        reward_cents=_cents(reward), reason=reason.strip(),
                                        status=CompensationStatus.pending))
            elif row.reward_cents != _cents(reward):
                raise MTurkServiceError(f"worker {worker_id} already has a {key!r} compensation of "
                                        f"${_usd(row.reward_cents)}; use another --key for a second one")
        with self.db.reading() as s:
            row = s.scalar(select(MTurkCompensation).where(MTurkCompensation.unique_request_token == token))
        if row.status == CompensationStatus.pending:
            balance = self.client.balance()
            if balance < cost:
                raise BudgetExceeded(f"the compensation costs ${cost}, above the available balance ${balance}")
            qual = self.client.ensure_qualification_type(
                COMPENSATION_PREFIX + token[-16:], f"Lets worker {worker_id} see the compensation HIT Argus made for them.")
            self.client.grant_qualification(qual, worker_id)
            hit_type = self.client.create_hit_type(
                title, reason.strip(), reward, 3600, 3600, "compensation",
                qualification_requirements(None, required_qualification_ids=[(qual, 1)]))
            hit = self.client.create_hit(hit_type, self._compensation_form(reason.strip()), 1, lifetime_s, token,
                                         annotation=token)
            with self.db.transaction() as s:
                r = s.get(MTurkCompensation, row.id)
                r.qualification_type_id, r.hit_type_id, r.hit_id = qual, hit_type, hit["HITId"]
                r.status = CompensationStatus.live
                log_event(s, "mturk_compensation", mturk_worker=worker_id, hit=hit["HITId"],
                           amount_cents=r.reward_cents)
            with self.db.reading() as s:
                row = s.get(MTurkCompensation, row.id)
        if notify and row.status == CompensationStatus.live and not row.notified:
            self.client.notify_workers([worker_id], "A compensation HIT for you",
                                       f"{row.reason}\n\nWe made a HIT that only you can see; it pays "
                                       f"${reward}: {self._hit_group_url(self.client.get_hit(row.hit_id))}")
            with self.db.transaction() as s:
                s.get(MTurkCompensation, row.id).notified = True
        out.update(hit_id=row.hit_id, status=row.status.value)
        if row.status == CompensationStatus.live:
            done = [a for a in self.client.list_assignments(row.hit_id) if a["WorkerId"] == worker_id]
            for a in done:
                if a["AssignmentStatus"] == "Submitted":
                    self.client.approve(a["AssignmentId"], "Thank you.")
            if any(a["AssignmentStatus"] in ("Submitted", "Approved") for a in done):
                with self.db.transaction() as s:
                    r = s.get(MTurkCompensation, row.id)
                    r.status, r.assignment_id = CompensationStatus.paid, done[0]["AssignmentId"]
                out["status"] = CompensationStatus.paid.value
        out["url"] = self._hit_group_url(self.client.get_hit(row.hit_id)) if row.hit_id else None
        return out

    @staticmethod
    def _compensation_form(reason: str) -> str:
        from xml.sax.saxutils import escape

        return (f'<QuestionForm xmlns="{QUESTION_FORM_NS}"><Question>'
                "<QuestionIdentifier>confirm</QuestionIdentifier><IsRequired>true</IsRequired>"
                f"<QuestionContent><Text>{escape(reason)} Type OK and submit to receive the payment.</Text>"
                "</QuestionContent><AnswerSpecification><FreeTextAnswer/></AnswerSpecification>"
                "</Question></QuestionForm>")

    def _hit_group_url(self, hit: dict) -> str:
        site = "https://workersandbox.mturk.com" if self.env == MTurkEnv.sandbox else "https://worker.mturk.com"
        return f"{site}/projects/{hit.get('HITGroupId', '')}/tasks"

    # ------------------------------------------------------------------ qualifications
    def qualification_id(self, study: str | None = None, low_quality: bool = False,
                         qualification_type_id: str | None = None) -> str:
        """The qualification type id for a study's "participated" qualification, the low-quality
        exclusion, or an explicit id (exactly one)."""
        if sum(x is not None and x is not False for x in (study, low_quality or None, qualification_type_id)) != 1:
            raise MTurkServiceError("give exactly one of a study, the low-quality exclusion or a qualification id")
        if qualification_type_id:
            return qualification_type_id
        name = LOW_QUALITY_QUALIFICATION if low_quality else PARTICIPATED_PREFIX + study
        found = self.client.find_qualification_type(name)
        if found is None:
            raise MTurkServiceError(f"no qualification type named {name!r} on MTurk {self.env.value}")
        return found["QualificationTypeId"]

    def grant(self, qualification_type_id: str, worker_ids: Iterable[str], value: int = 1) -> dict[str, str]:
        """Give workers a qualification (e.g. exclude them for low-quality work)."""
        out = {}
        for worker in self._bar(check_worker_ids(worker_ids), "granting"):
            self.client.grant_qualification(qualification_type_id, worker, value)
            with self.db.transaction() as s:
                if s.scalar(select(MTurkQualificationGrant.id).where(
                        MTurkQualificationGrant.environment == self.env, MTurkQualificationGrant.worker_id == worker,
                        MTurkQualificationGrant.qualification_type_id == qualification_type_id)) is None:
                    s.add(MTurkQualificationGrant(environment=self.env, qualification_type_id=qualification_type_id,
                                                  worker_id=worker))
                s.execute(MTurkRevocation.__table__.delete().where(
                    MTurkRevocation.environment == self.env, MTurkRevocation.worker_id == worker,
                    MTurkRevocation.qualification_type_id == qualification_type_id))
            out[worker] = "granted"
        return out

    def revoke(self, qualification_type_id: str, worker_ids: Iterable[str], reason: str = "") -> dict[str, str]:
        """Take a qualification back (e.g. let an excluded worker in again, or allow a retake).
        `sync` will not grant it again on its own."""
        out = {}
        for worker in self._bar(check_worker_ids(worker_ids), "revoking"):
            now = self.client.revoke_qualification(qualification_type_id, worker, reason)
            with self.db.transaction() as s:
                s.execute(MTurkQualificationGrant.__table__.delete().where(
                    MTurkQualificationGrant.environment == self.env, MTurkQualificationGrant.worker_id == worker,
                    MTurkQualificationGrant.qualification_type_id == qualification_type_id))
                if s.scalar(select(MTurkRevocation.id).where(
                        MTurkRevocation.environment == self.env, MTurkRevocation.worker_id == worker,
                        MTurkRevocation.qualification_type_id == qualification_type_id)) is None:
                    s.add(MTurkRevocation(environment=self.env, qualification_type_id=qualification_type_id,
                                          worker_id=worker, reason=reason))
                log_event(s, "mturk_revoke", mturk_worker=worker, qualification=qualification_type_id, reason=reason)
            out[worker] = "revoked" if now else "already revoked"
        return out

    def qualification_requests(self, qualification_type_id: str | None = None) -> list[dict]:
        """Pending requests for your qualification types: `request_id, qualification_type_id,
        worker_id, submitted, answer` (the test answers, QuestionFormAnswers XML, when there is a test)."""
        return [dict(request_id=r["QualificationRequestId"], qualification_type_id=r["QualificationTypeId"],
                     worker_id=r["WorkerId"], submitted=r.get("SubmitTime"), answer=r.get("Answer"))
                for r in self.client.list_qualification_requests(qualification_type_id)]

    def grade_requests(self, grants: dict[str, int] | None = None, rejects: dict[str, str] | None = None) -> dict[str, str]:
        """Grant (request id -> score) or reject (request id -> reason the worker reads) pending
        qualification requests. A request no longer pending was decided earlier (by a run whose
        answer was lost, or by hand) and is reported as such, never decided twice."""
        grants, rejects = dict(grants or {}), dict(rejects or {})
        if set(grants) & set(rejects):
            raise MTurkServiceError(f"requests {sorted(set(grants) & set(rejects))} are both granted and rejected")
        for rid, why in rejects.items():
            if not why or not why.strip():
                raise MTurkServiceError(f"request {rid}: rejecting needs a reason the worker can read")
        pending = {r["QualificationRequestId"] for r in self.client.list_qualification_requests()}
        out = {}
        for rid, score in grants.items():
            if rid not in pending:
                out[rid] = "not pending (decided earlier)"
                continue
            self.client.accept_qualification_request(rid, int(score))
            out[rid] = f"granted ({int(score)})"
        for rid, why in rejects.items():
            if rid not in pending:
                out[rid] = "not pending (decided earlier)"
                continue
            self.client.reject_qualification_request(rid, why.strip())
            out[rid] = "rejected"
        return out

    # ------------------------------------------------------------------ notifications
    def notifications(self, batch_id: int, destination: str | None = None, transport: str = "SNS",
                      events: Iterable[str] = ("AssignmentSubmitted", "AssignmentReturned", "AssignmentAbandoned",
                                               "HITReviewable", "HITExpired"),
                      active: bool = True, test: bool = False) -> list[dict]:
        """Send MTurk's events for the batch's HIT types to an SNS topic or SQS queue
        (UpdateNotificationSettings, version 2014-08-15), switch them off (`active=False`
        without a destination), and optionally send a test event. Returns one row per HIT type.
        """
        spec = None
        if destination is not None:
            if transport not in DESTINATIONS:
                raise MTurkServiceError(f"transport: {transport!r} must be SNS or SQS")
            if not DESTINATIONS[transport].match(destination):
                example = ("arn:aws:sns:us-east-1:123456789012:argus-events" if transport == "SNS"
                           else "https://sqs.us-east-1.amazonaws.com/123456789012/argus-events")
                raise MTurkServiceError(f"destination: {destination!r} is not an {transport} "
                                        f"{'topic ARN' if transport == 'SNS' else 'queue URL'} like {example}")
            events = list(dict.fromkeys(events))
            bad = [e for e in events if e not in EVENT_TYPES]
            if bad or not events:
                raise MTurkServiceError(f"events: {bad or events} must be some of {', '.join(EVENT_TYPES)}")
            spec = {"Destination": destination, "Transport": transport, "Version": NOTIFICATION_VERSION,
                    "EventTypes": events}
        elif active:
            raise MTurkServiceError("give a destination to turn notifications on (or active=False to turn them off)")
        if test and spec is None:
            raise MTurkServiceError("a test event needs the destination")
        with self.db.reading() as s:
            types = sorted(set(s.scalars(select(MTurkHitType.hit_type_id).where(
                MTurkHitType.batch_id == batch_id, MTurkHitType.environment == self.env))))
        if not types:
            raise MTurkServiceError(f"batch {batch_id} has no HIT type on MTurk {self.env.value}: launch it first")
        rows = []
        for hit_type in types:
            self.client.update_notifications(hit_type, spec, active)
            rows.append(dict(hit_type_id=hit_type, active=active, destination=destination, transport=transport,
                             events=",".join(spec["EventTypes"]) if spec else ""))
        if test:
            self.client.send_test_event(spec, "Ping")
        with self.db.transaction() as s:
            log_event(s, "mturk_notifications", batch_id=batch_id, active=active, destination=destination,
                       transport=transport)
        return rows

    # ------------------------------------------------------------------ status
    def status(self, batch_id: int) -> dict:
        """Local view: HIT rows, assignment counts by status and decision, money spent."""
        with self.db.reading() as s:
            hits = s.scalars(select(MTurkHit).where(MTurkHit.batch_id == batch_id, MTurkHit.environment == self.env)
                             .order_by(MTurkHit.round, MTurkHit.chunk_index)).all()
            asg = s.scalars(select(MTurkAssignment).where(MTurkAssignment.batch_id == batch_id,
                                                          MTurkAssignment.environment == self.env)).all()
            bonuses = s.scalars(select(MTurkBonus).where(MTurkBonus.batch_id == batch_id,
                                                         MTurkBonus.environment == self.env)).all()
            hit_ids = [h.hit_id for h in hits if h.hit_id]
            visits = self._mturk_visits(s, batch_id, hit_ids) if hit_ids else {}
        known = {(a.assignment_id, a.worker_id) for a in asg}
        reward = {h.hit_id: h.reward_cents for h in hits}
        approved_cents = sum(reward.get(a.hit_id, 0) for a in asg if a.status == MTurkAssignmentStatus.Approved)
        return dict(
            environment=self.env.value,
            hits=[dict(round=h.round, chunk=h.chunk_index, hit_id=h.hit_id, state=h.state.value,
                       mturk_status=h.mturk_status, max_assignments=h.max_assignments,
                       submitted=sum(a.hit_id == h.hit_id for a in asg)) for h in hits],
            assignments=dict(Counter(a.status.value for a in asg)),
            decisions=dict(Counter(a.decision.value for a in asg)),
            flagged=[dict(assignment_id=a.assignment_id, worker_id=a.worker_id, gold_accuracy=a.gold_accuracy)
                     for a in asg if a.decision == Decision.flag and a.status == MTurkAssignmentStatus.Submitted],
            not_submitted=[dict(visit=v.id, assignment_id=aid, worker_id=worker, status=v.status.value)
                           for (aid, worker), v in sorted(visits.items(), key=lambda kv: kv[1].id)
                           if (aid, worker) not in known],
            rewards_usd=_usd(approved_cents),
            bonuses_paid_usd=_usd(sum(b.amount_cents for b in bonuses if b.status == BonusStatus.paid)),
            bonuses_planned=sum(b.status == BonusStatus.planned for b in bonuses),
        )
