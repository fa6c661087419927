"""Thin layer over boto3's `mturk` client.

Everything here is a direct, typed wrapper of one MTurk API call (or a paginated walk of
one), plus the pure helpers a launch needs: the ExternalQuestion XML, qualification
requirements, deterministic `UniqueRequestToken`s and the cost estimate. No database, no
policy: the service layer (`crowd.providers.mturk_service`) decides *what* to call and
reconciles the answers with the Argus database.

Safety rules built in here:

* the **sandbox** endpoint is the default; production needs `environment="live"`, which the
  CLI only passes after `--live` and a typed confirmation;
* credentials come only from boto3's standard chain (environment, shared profile, instance
  role); this module never reads, logs or stores them;
* transient errors and throttling are retried by botocore's own retry modes
  (`standard` or `adaptive`); every error that is left raises `MTurkError`
  (nothing is swallowed);
* calls that spend money or create HITs take a `UniqueRequestToken`; when MTurk answers
  that the token "has already been used" (the first try went through but its response was
  lost), the wrapper recovers the existing object instead of failing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import re
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Iterator, Sequence
from xml.sax.saxutils import escape

log = logging.getLogger("argus.mturk")

SANDBOX_ENDPOINT = "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
LIVE_ENDPOINT = "https://mturk-requester.us-east-1.amazonaws.com"
SANDBOX_SUBMIT_URL = "https://workersandbox.mturk.com/mturk/externalSubmit"
LIVE_SUBMIT_URL = "https://www.mturk.com/mturk/externalSubmit"
REGION = "us-east-1"  # MTurk's API only exists in us-east-1
ENDPOINTS = {"sandbox": SANDBOX_ENDPOINT, "live": LIVE_ENDPOINT}

# System qualification type ids (identical in sandbox and production).
QUAL_PERCENT_APPROVED = "000000000000000000L0"
QUAL_NUMBER_APPROVED = "00000000000000000040"
QUAL_LOCALE = "00000000000000000071"

EXTERNAL_QUESTION_NS = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"
)
MAX_TOKEN_LEN = 64  # MTurk's limit on UniqueRequestToken
NOTIFY_CHUNK = 100  # NotifyWorkers accepts at most 100 worker ids per call
HIT_ID_RE = re.compile(r"\b[A-Z0-9]{30}\b")
CENT = Decimal("0.01")


class MTurkError(RuntimeError):
    """An MTurk call failed after botocore's retries.

    `code` is the AWS error code (`RequestError`, `ServiceFault`, `Throttling` ...
    or the botocore exception name for transport errors), `operation` the API operation.
    """

    def __init__(self, operation: str, code: str, message: str):
        super().__init__(f"MTurk {operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.message = message


# --------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------


def money(value: Any, field: str = "amount") -> Decimal:
    """Parse a USD amount (`"0.50"`, `0.5`, `Decimal`) to a Decimal rounded to cents.

    Raises `ValueError` naming `field` for negatives, non-numbers or sub-cent amounts.
    """
    try:
        amount = Decimal(str(value).strip().lstrip("$"))
    except Exception:
        raise ValueError(f"{field}: {value!r} is not a USD amount") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{field}: {value!r} must be a non-negative USD amount")
    if amount != amount.quantize(CENT):
        raise ValueError(f"{field}: {value!r} has fractions of a cent")
    return amount.quantize(CENT)


def unique_request_token(*parts: Any) -> str:
    """A deterministic `UniqueRequestToken` (<= 64 chars) for the given parts.

    The same parts always give the same token, so a retried or re-run call is recognised by
    MTurk as a repeat instead of creating a second HIT or a second payment. Example:
    `unique_request_token("hit", "sandbox", batch_id, chunk_index)`.
    """
    if not parts:
        raise ValueError("unique_request_token needs at least one part")
    prefix = re.sub(r"[^A-Za-z0-9]", "", str(parts[0]))[:8] or "argus"
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    token = f"argus-{prefix}-{digest[:48]}"
    assert len(token) <= MAX_TOKEN_LEN
    return token


def external_question_xml(url: str, frame_height: int = 0, allow_http: bool = False) -> str:
    """The ExternalQuestion XML that makes MTurk show `url` in its iframe.

    MTurk appends `assignmentId, hitId, workerId, turkSubmitTo` to `url`. It requires
    HTTPS; `allow_http` exists for offline tests against a local fake. `frame_height` in
    pixels, 0 = let MTurk size the frame to the window.
    """
    if not isinstance(url, str) or not re.match(r"^https?://[^\s<>\"]+$", url):
        raise ValueError(f"entry URL: {url!r} is not an absolute http(s) URL")
    if url.startswith("http://") and not allow_http:
        raise ValueError(f"entry URL: {url!r} must use https (MTurk refuses plain http)")
    if not 0 <= int(frame_height) <= 5000:
        raise ValueError(f"frame_height: {frame_height!r} must be between 0 and 5000 pixels")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ExternalQuestion xmlns="{EXTERNAL_QUESTION_NS}">'
        f"<ExternalURL>{escape(url)}</ExternalURL>"
        f"<FrameHeight>{int(frame_height)}</FrameHeight>"
        "</ExternalQuestion>"
    )


def qualification_requirements(
    min_approval_rate: int | None = 95,
    min_approved_hits: int | None = None,
    locales: Sequence[str] = (),
    participated_qualification_ids: Sequence[str] = (),
    qualification_test_id: str | None = None,
    qualification_test_min_score: int = 1,
) -> list[dict]:
    """MTurk `QualificationRequirements` for a HIT type.

    * `min_approval_rate`: percent of a worker's past assignments approved (0-100).
    * `min_approved_hits`: number of HITs approved.
    * `locales`: `"US"` or `"US-CA"` (country or country-subdivision) codes.
    * `participated_qualification_ids`: Argus "participated" qualifications; a worker who
      holds any of them cannot discover, preview or accept the HIT (`DoesNotExist`), which
      blocks retakes across batches.
    * `qualification_test_id`: a qualification type with a test the worker must pass with
      score >= `qualification_test_min_score`.
    """
    reqs: list[dict] = []
    if min_approval_rate is not None:
        if not 0 <= int(min_approval_rate) <= 100:
            raise ValueError(f"min_approval_rate: {min_approval_rate!r} must be in 0..100")
        reqs.append({
            "QualificationTypeId": QUAL_PERCENT_APPROVED,
            "Comparator": "GreaterThanOrEqualTo",
            "IntegerValues": [int(min_approval_rate)],
            "ActionsGuarded": "Accept",
        })
    if min_approved_hits is not None:
        if int(min_approved_hits) < 0:
            raise ValueError(f"min_approved_hits: {min_approved_hits!r} must be >= 0")
        reqs.append({
            "QualificationTypeId": QUAL_NUMBER_APPROVED,
            "Comparator": "GreaterThanOrEqualTo",
            "IntegerValues": [int(min_approved_hits)],
            "ActionsGuarded": "Accept",
        })
    if locales:
        values = []
        for code in locales:
            m = re.fullmatch(r"([A-Z]{2})(?:-([A-Z0-9]{1,3}))?", str(code).strip().upper())
            if not m:
                raise ValueError(f"locale: {code!r} is not a country code like 'US' or 'US-CA'")
            values.append({"Country": m.group(1), **({"Subdivision": m.group(2)} if m.group(2) else {})})
        reqs.append({
            "QualificationTypeId": QUAL_LOCALE,
            "Comparator": "In",
            "LocaleValues": values,
            "ActionsGuarded": "Accept",
        })
    for qid in participated_qualification_ids:
        reqs.append({
            "QualificationTypeId": qid,
            "Comparator": "DoesNotExist",
            "ActionsGuarded": "DiscoverPreviewAndAccept",
        })
    if qualification_test_id:
        reqs.append({
            "QualificationTypeId": qualification_test_id,
            "Comparator": "GreaterThanOrEqualTo",
            "IntegerValues": [int(qualification_test_min_score)],
            "ActionsGuarded": "Accept",
        })
    return reqs


def mturk_fee(reward: Decimal, max_assignments: int) -> Decimal:
    """MTurk's commission on one assignment's reward, in USD.

    20% (minimum $0.01), plus another 20% for HITs with 10 or more assignments.
    """
    rate = Decimal("0.40") if max_assignments >= 10 else Decimal("0.20")
    return max(CENT, (reward * rate).quantize(CENT, rounding=ROUND_HALF_UP))


def bonus_fee(amount: Decimal) -> Decimal:
    """MTurk's 20% commission on a bonus (minimum $0.01), in USD."""
    return max(CENT, (amount * Decimal("0.20")).quantize(CENT, rounding=ROUND_HALF_UP))


@dataclasses.dataclass(frozen=True)
class CostEstimate:
    """What a launch will cost at most, in USD (Decimals, cents).

    `rewards` = reward x assignments; `fees` = MTurk's commission on them (20%, 40% on
    HITs with >= 10 assignments); `bonuses` + `bonus_fees` = the planned bonus budget;
    `total` = the sum.
    """

    hit_sizes: tuple[int, ...]
    reward: Decimal
    rewards: Decimal
    fees: Decimal
    bonuses: Decimal
    bonus_fees: Decimal
    total: Decimal

    @property
    def n_hits(self) -> int:
        return len(self.hit_sizes)

    @property
    def assignments(self) -> int:
        return sum(self.hit_sizes)

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) rows for a table."""
        sizes = Counter(self.hit_sizes)
        layout = " + ".join(f"{n} HIT{'s' if n > 1 else ''} x {k}" for k, n in sorted(sizes.items(), reverse=True))
        tiers = sorted({"40%" if k >= 10 else "20%" for k in sizes})
        return [
            ("HITs", f"{layout} = {self.assignments} assignments"),
            ("reward per assignment", f"${self.reward}"),
            ("rewards", f"${self.rewards}"),
            (f"MTurk fee ({' and '.join(tiers)})", f"${self.fees}"),
            ("planned bonuses", f"${self.bonuses}"),
            ("MTurk fee on bonuses (20%)", f"${self.bonus_fees}"),
            ("total", f"${self.total}"),
        ]


def estimate_hits(reward: Any, hit_sizes: Sequence[int], planned_bonuses: Any = 0) -> CostEstimate:
    """Worst-case cost of HITs with `hit_sizes` assignments each (every one approved).

    `planned_bonuses` is the total bonus budget (USD); MTurk charges 20% on bonuses too, so
    that is added. HITs with >= 10 assignments pay a 40% fee, which is why the launcher splits
    batches into HITs of at most 9 by default.
    """
    reward = money(reward, "reward")
    bonuses = money(planned_bonuses, "planned bonuses")
    sizes = tuple(int(n) for n in hit_sizes)
    if any(n < 1 for n in sizes):
        raise ValueError(f"hit sizes: {sizes!r}: every HIT needs >= 1 assignment")
    rewards = reward * sum(sizes)
    fees = sum(((mturk_fee(reward, n) if reward > 0 else Decimal("0.00")) * n for n in sizes), Decimal("0.00"))
    bfees = bonus_fee(bonuses) if bonuses > 0 else Decimal("0.00")
    return CostEstimate(hit_sizes=sizes, reward=reward, rewards=rewards.quantize(CENT), fees=fees.quantize(CENT),
                        bonuses=bonuses, bonus_fees=bfees, total=(rewards + fees + bonuses + bfees).quantize(CENT))


def estimate_cost(reward: Any, n_hits: int, assignments_per_hit: int, planned_bonuses: Any = 0) -> CostEstimate:
    """`estimate_hits` for `n_hits` HITs of `assignments_per_hit` assignments each."""
    if int(n_hits) < 0 or int(assignments_per_hit) < 1:
        raise ValueError(f"n_hits={n_hits!r}, assignments_per_hit={assignments_per_hit!r}: need n_hits >= 0 and >= 1 assignment")
    return estimate_hits(reward, [int(assignments_per_hit)] * int(n_hits), planned_bonuses)


def split_assignments(total: int, per_hit: int = 9) -> list[int]:
    """Split `total` assignments into HIT sizes of at most `per_hit` (default 9, to stay
    in MTurk's 20% fee tier), e.g. `split_assignments(20, 9) == [9, 9, 2]`."""
    if int(total) < 1 or int(per_hit) < 1:
        raise ValueError(f"assignments={total!r}, per_hit={per_hit!r}: both must be >= 1")
    full, rest = divmod(int(total), int(per_hit))
    return [int(per_hit)] * full + ([rest] if rest else [])


# --------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------


def make_boto_client(
    environment: str = "sandbox",
    endpoint_url: str | None = None,
    retry_mode: str = "standard",
    max_attempts: int = 5,
    connect_timeout: float = 10,
    read_timeout: float = 30,
    profile: str | None = None,
):
    """A boto3 `mturk` client for `environment` (`"sandbox"` or `"live"`).

    `endpoint_url` overrides the endpoint (tests point it at a local fake). Retries use
    botocore's `retry_mode` (`"standard"` or `"adaptive"`, which also rate-limits the
    client side when MTurk throttles) with `max_attempts` attempts in total. Credentials
    come from boto3's standard chain (`profile` selects a named profile).
    """
    import boto3
    from botocore.config import Config

    if environment not in ENDPOINTS:
        raise ValueError(f"environment: {environment!r} must be 'sandbox' or 'live'")
    if retry_mode not in ("standard", "adaptive", "legacy"):
        raise ValueError(f"retry_mode: {retry_mode!r} must be 'standard' or 'adaptive'")
    config = Config(
        region_name=REGION,
        retries={"mode": retry_mode, "total_max_attempts": int(max_attempts)},  # first try included
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        user_agent_extra="argus-mturk",
    )
    session = boto3.session.Session(profile_name=profile) if profile else boto3.session.Session()
    return session.client("mturk", endpoint_url=endpoint_url or ENDPOINTS[environment], config=config)


class MTurkClient:
    """One method per MTurk call Argus uses; raises `MTurkError` on failure.

    Build it with `connect` (real boto3 client) or pass any boto3 `mturk` client
    (e.g. one wrapped by botocore's `Stubber` in tests).
    """

    def __init__(self, boto_client, environment: str = "sandbox"):
        if environment not in ENDPOINTS:
            raise ValueError(f"environment: {environment!r} must be 'sandbox' or 'live'")
        self.boto = boto_client
        self.environment = environment

    @classmethod
    def connect(cls, environment: str = "sandbox", **kwargs) -> "MTurkClient":
        """Connect to the sandbox (default) or live endpoint; kwargs go to `make_boto_client`."""
        return cls(make_boto_client(environment, **kwargs), environment)

    @property
    def submit_url(self) -> str:
        """Where workers' pages POST the finished assignment (`externalSubmit`)."""
        return LIVE_SUBMIT_URL if self.environment == "live" else SANDBOX_SUBMIT_URL

    # -- plumbing -------------------------------------------------------------------
    def _call(self, operation: str, **params) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        method = getattr(self.boto, _snake(operation))
        try:
            response = method(**params)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise MTurkError(operation, err.get("Code", "ClientError"), err.get("Message", str(exc))) from exc
        except BotoCoreError as exc:  # connection dropped, read time-out after all retries
            raise MTurkError(operation, type(exc).__name__, str(exc)) from exc
        response.pop("ResponseMetadata", None)
        log.debug("mturk %s ok", operation)
        return response

    def _paginate(self, operation: str, key: str, page_size: int = 100, **params) -> Iterator[dict]:
        token = None
        while True:
            page = self._call(operation, MaxResults=page_size, **params, **({"NextToken": token} if token else {}))
            yield from page.get(key, [])
            token = page.get("NextToken")
            if not token or not page.get(key):
                return

    # -- account --------------------------------------------------------------------
    def balance(self) -> Decimal:
        """Available balance in USD (the sandbox always reports $10,000.00)."""
        return Decimal(self._call("GetAccountBalance")["AvailableBalance"])

    # -- qualifications -------------------------------------------------------------
    def find_qualification_type(self, name: str) -> dict | None:
        """The caller's qualification type named exactly `name`, or None."""
        for qt in self._paginate("ListQualificationTypes", "QualificationTypes", Query=name,
                                 MustBeRequestable=False, MustBeOwnedByCaller=True):
            if qt.get("Name") == name:
                return qt
        return None

    def ensure_qualification_type(self, name: str, description: str, keywords: str = "argus",
                                  test: str | None = None, answer_key: str | None = None,
                                  test_duration_s: int = 600, retry_delay_s: int | None = None) -> str:
        """Id of the caller's qualification type `name`, creating it if it does not exist.

        Names are unique per requester, so look-up-then-create is idempotent; a create that
        races a lost earlier create is resolved by looking up again.
        """
        found = self.find_qualification_type(name)
        if found:
            return found["QualificationTypeId"]
        params = dict(Name=name, Description=description, Keywords=keywords, QualificationTypeStatus="Active")
        if test:
            params.update(Test=test, TestDurationInSeconds=int(test_duration_s))
            if answer_key:
                params["AnswerKey"] = answer_key
            if retry_delay_s is not None:
                params["RetryDelayInSeconds"] = int(retry_delay_s)
        try:
            return self._call("CreateQualificationType", **params)["QualificationType"]["QualificationTypeId"]
        except MTurkError as exc:
            if exc.code != "RequestError" or "already" not in exc.message.lower():
                raise
            found = self.find_qualification_type(name)
            if not found:
                raise
            return found["QualificationTypeId"]

    def grant_qualification(self, qualification_type_id: str, worker_id: str, value: int = 1) -> None:
        """Give `worker_id` the qualification (silently, no e-mail). Idempotent on MTurk."""
        self._call("AssociateQualificationWithWorker", QualificationTypeId=qualification_type_id,
                   WorkerId=worker_id, IntegerValue=int(value), SendNotification=False)

    # -- HITs -----------------------------------------------------------------------
    def create_hit_type(self, title: str, description: str, reward: Any, assignment_duration_s: int,
                        auto_approval_delay_s: int, keywords: str = "",
                        qualification_requirements: list[dict] | None = None) -> str:
        """Register (or find: MTurk returns the same id for the same parameters) a HIT type."""
        if not title or not description:
            raise ValueError("title and description are required for a HIT type")
        params = dict(
            Title=title, Description=description, Reward=str(money(reward, "reward")),
            AssignmentDurationInSeconds=int(assignment_duration_s),
            AutoApprovalDelayInSeconds=int(auto_approval_delay_s),
            Keywords=keywords, QualificationRequirements=qualification_requirements or [],
        )
        return self._call("CreateHITType", **params)["HITTypeId"]

    def create_hit(self, hit_type_id: str, question_xml: str, max_assignments: int, lifetime_s: int,
                   unique_request_token: str, annotation: str = "") -> dict:
        """Create one HIT, or return the one this token already created.

        Returns the HIT as a dict (`HITId`, `HITStatus`, `MaxAssignments` ...) plus
        `"Recovered": True` when MTurk reported the token as used and the existing HIT was
        fetched instead.
        """
        if len(unique_request_token) > MAX_TOKEN_LEN:
            raise ValueError(f"UniqueRequestToken: {unique_request_token!r} is longer than 64 characters")
        try:
            hit = self._call(
                "CreateHITWithHITType", HITTypeId=hit_type_id, MaxAssignments=int(max_assignments),
                LifetimeInSeconds=int(lifetime_s), Question=question_xml,
                RequesterAnnotation=annotation[:255], UniqueRequestToken=unique_request_token,
            )["HIT"]
        except MTurkError as exc:
            hit_id = self._used_token_hit_id(exc)
            if hit_id is None:
                raise
            log.info("UniqueRequestToken already used; recovered existing HIT %s", hit_id)
            hit = dict(self.get_hit(hit_id), Recovered=True)
        return hit

    @staticmethod
    def _used_token_hit_id(exc: MTurkError) -> str | None:
        """The existing HIT id from MTurk's "token already used" error, or None."""
        if exc.code != "RequestError":
            return None
        msg = exc.message.lower()
        if "already" not in msg or ("token" not in msg and "exists" not in msg):
            return None
        m = HIT_ID_RE.search(exc.message)
        return m.group(0) if m else None

    def get_hit(self, hit_id: str) -> dict:
        return self._call("GetHIT", HITId=hit_id)["HIT"]

    def list_hits(self) -> Iterator[dict]:
        """All of the requester's HITs (paginated)."""
        return self._paginate("ListHITs", "HITs")

    def expire_hit(self, hit_id: str) -> None:
        """Stop new workers from accepting the HIT (`ExpireAt` in the past); accepted
        assignments can still be submitted."""
        self._call("UpdateExpirationForHIT", HITId=hit_id, ExpireAt=dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc))

    def delete_hit(self, hit_id: str) -> None:
        """Delete a HIT (MTurk allows it only once it is expired and every assignment reviewed)."""
        self._call("DeleteHIT", HITId=hit_id)

    # -- assignments ----------------------------------------------------------------
    def list_assignments(self, hit_id: str, statuses: Sequence[str] = ("Submitted", "Approved", "Rejected")) -> list[dict]:
        """Every assignment of `hit_id` in `statuses` (walks all pages)."""
        return list(self._paginate("ListAssignmentsForHIT", "Assignments", HITId=hit_id,
                                   AssignmentStatuses=list(statuses)))

    def get_assignment(self, assignment_id: str) -> dict:
        return self._call("GetAssignment", AssignmentId=assignment_id)["Assignment"]

    def approve(self, assignment_id: str, feedback: str | None = None, override_rejection: bool = False) -> None:
        """Approve (pay) a submitted assignment; `override_rejection` reverses a rejection."""
        params: dict = dict(AssignmentId=assignment_id)
        if feedback:
            params["RequesterFeedback"] = feedback[:1024]
        if override_rejection:
            params["OverrideRejection"] = True
        self._call("ApproveAssignment", **params)

    def reject(self, assignment_id: str, feedback: str) -> None:
        """Reject a submitted assignment; MTurk shows `feedback` (required) to the worker."""
        if not feedback or not feedback.strip():
            raise ValueError("feedback: rejecting needs a reason the worker can read")
        self._call("RejectAssignment", AssignmentId=assignment_id, RequesterFeedback=feedback[:1024])

    # -- bonuses --------------------------------------------------------------------
    def send_bonus(self, worker_id: str, assignment_id: str, amount: Any, reason: str,
                   unique_request_token: str) -> bool:
        """Pay a bonus once. Returns True if paid now, False if MTurk reports this token was
        already used (the bonus went through on an earlier try)."""
        if not reason or not reason.strip():
            raise ValueError("reason: a bonus needs a reason the worker can read")
        amount = money(amount, "bonus amount")
        if amount <= 0:
            raise ValueError(f"bonus amount: {amount} must be positive")
        try:
            self._call("SendBonus", WorkerId=worker_id, AssignmentId=assignment_id, BonusAmount=str(amount),
                       Reason=reason, UniqueRequestToken=unique_request_token)
        except MTurkError as exc:
            msg = exc.message.lower()
            if exc.code == "RequestError" and "already" in msg and ("token" in msg or "used" in msg):
                return False
            raise
        return True

    def list_bonus_payments(self, hit_id: str | None = None, assignment_id: str | None = None) -> list[dict]:
        """Bonuses already paid for a HIT or an assignment (exactly one of them)."""
        if (hit_id is None) == (assignment_id is None):
            raise ValueError("list_bonus_payments needs exactly one of hit_id, assignment_id")
        params = {"HITId": hit_id} if hit_id else {"AssignmentId": assignment_id}
        return list(self._paginate("ListBonusPayments", "BonusPayments", **params))

    # -- workers --------------------------------------------------------------------
    def block_worker(self, worker_id: str, reason: str) -> None:
        if not reason or not reason.strip():
            raise ValueError("reason: blocking a worker needs a reason")
        self._call("CreateWorkerBlock", WorkerId=worker_id, Reason=reason)

    def unblock_worker(self, worker_id: str, reason: str = "") -> None:
        self._call("DeleteWorkerBlock", WorkerId=worker_id, **({"Reason": reason} if reason else {}))

    def list_worker_blocks(self) -> list[dict]:
        return list(self._paginate("ListWorkerBlocks", "WorkerBlocks"))

    def notify_workers(self, worker_ids: Iterable[str], subject: str, message: str) -> list[dict]:
        """E-mail workers through MTurk, 100 ids per call. Returns MTurk's per-worker failure
        statuses (`WorkerId`, `NotifyWorkersFailureCode`, `NotifyWorkersFailureMessage`)."""
        ids = list(dict.fromkeys(worker_ids))  # de-duplicate, keep order
        if not subject or not message:
            raise ValueError("subject and message are required")
        if len(subject) > 200 or len(message) > 4096:
            raise ValueError("subject is limited to 200 and message to 4096 characters by MTurk")
        failures: list[dict] = []
        for chunk in chunked(ids, NOTIFY_CHUNK):
            out = self._call("NotifyWorkers", Subject=subject, MessageText=message, WorkerIds=chunk)
            failures.extend(out.get("NotifyWorkersFailureStatuses", []))
        return failures


def chunked(items: Sequence, size: int) -> Iterator[list]:
    """Consecutive slices of `items` of length <= `size`."""
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def _snake(operation: str) -> str:
    # CreateHITWithHITType -> create_hit_with_hit_type (boto3's method names)
    from botocore import xform_name

    return xform_name(operation)
