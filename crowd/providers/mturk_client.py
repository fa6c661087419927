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
* calls that spend money or create HITs take a `UniqueRequestToken`; when MTurk refuses a
  repeated token (the first try went through but its response was lost), the wrapper reads the
  state back (the HIT by its annotation, the bonus in `ListBonusPayments`) instead of failing.
  Errors are told apart by their code (`RequestError` and MTurk's `TurkErrorCode`), never
  by the wording of the message;
* an `endpoint_url` override is accepted only for a loopback address (the offline fake) or
  the chosen environment's own endpoint, so a stray setting can never send sandbox commands to
  production (where they would spend real money without the `--live` confirmation);
* every request is checked locally first against MTurk's documented limits
  (`check_hit_type`, `check_lifetime`, `check_worker_id`), with an error
  naming the field and the value, so a bad launch fails before anything is created.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import ipaddress
import logging
import re
import urllib.parse
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

# System qualification type ids (identical in sandbox and production) ...
QUAL_PERCENT_APPROVED = "000000000000000000L0"  # Worker_PercentAssignmentsApproved
QUAL_NUMBER_APPROVED = "00000000000000000040"  # Worker_NumberHITsApproved
QUAL_LOCALE = "00000000000000000071"
# ... except Masters, which differs per environment (and adds 5% to MTurk's fee).
QUAL_MASTERS = {"sandbox": "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6", "live": "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH"}

# MTurk's documented limits (API reference and the 2014 CreateHIT reference it replaced).
MAX_AUTO_APPROVAL_S = 30 * 86400
MIN_DURATION_S, MAX_DURATION_S = 30, 365 * 86400  # assignment duration and HIT lifetime
MAX_TITLE, MAX_DESCRIPTION, MAX_KEYWORDS, MAX_ANNOTATION = 128, 2000, 1000, 255
WORKER_ID_RE = re.compile(r"^A[A-Z0-9]+$")  # the service model's CustomerId pattern
HIT_ALREADY_EXISTS = "AWS.MechanicalTurk.HitAlreadyExists"

EXTERNAL_QUESTION_NS = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"
)
MAX_TOKEN_LEN = 64  # MTurk's limit on UniqueRequestToken
NOTIFY_CHUNK = 100  # NotifyWorkers accepts at most 100 worker ids per call
HIT_ID_RE = re.compile(r"\b[A-Z0-9]{30}\b")
CENT = Decimal("0.01")


class MTurkError(RuntimeError):
    """An MTurk call failed after botocore's retries.

    `code` is the AWS error code (`RequestError`, `ServiceFault`, `ThrottlingException`,
    `ParameterValidationError` ... or the botocore exception name for transport errors),
    `turk_code` MTurk's finer `TurkErrorCode` when it sends one (e.g.
    `AWS.MechanicalTurk.HitAlreadyExists`), `operation` the API operation.
    """

    def __init__(self, operation: str, code: str, message: str, turk_code: str | None = None):
        super().__init__(f"MTurk {operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.message = message
        self.turk_code = turk_code


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


def check_worker_id(worker_id: Any, field: str = "worker id") -> str:
    """`worker_id` if it is an MTurk WorkerId (`^A[A-Z0-9]+$`), else `ValueError`."""
    if not isinstance(worker_id, str) or not WORKER_ID_RE.match(worker_id) or len(worker_id) > 64:
        raise ValueError(f"{field}: {worker_id!r} is not an MTurk worker id (they look like A1B2C3D4E5F6G7)")
    return worker_id


def check_worker_ids(worker_ids: Iterable[Any], field: str = "worker id") -> list[str]:
    return [check_worker_id(w, field) for w in worker_ids]


def _check_seconds(value: Any, field: str, low: int, high: int, what: str) -> int:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: {value!r} is not a number of seconds") from None
    if not low <= seconds <= high:
        raise ValueError(f"{field}: {seconds} s is outside MTurk's limits for {what} "
                         f"({_human(low)} to {_human(high)})")
    return seconds


def _human(seconds: int) -> str:
    for unit, n in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{seconds // n} {unit}"
    return f"{seconds} s"


def check_hit_type(title: Any, description: Any, reward: Any, assignment_duration_s: Any,
                   auto_approval_delay_s: Any, keywords: Any = "") -> Decimal:
    """Check a HIT type against MTurk's limits before any call; returns the reward as Decimal.

    Title 1-128 characters, description 1-2000, keywords <= 1000, reward >= $0.01, assignment
    duration 30 s to 365 days, auto-approval delay 0 to 30 days. Raises `ValueError` naming the
    field and the value.
    """
    for field, value, limit in (("title", title, MAX_TITLE), ("description", description, MAX_DESCRIPTION)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{field}: {value!r} must be a non-empty text")
        if len(value) > limit:
            raise ValueError(f"{field}: {len(value)} characters, MTurk allows at most {limit}")
    if keywords is not None and len(str(keywords)) > MAX_KEYWORDS:
        raise ValueError(f"keywords: {len(str(keywords))} characters, MTurk allows at most {MAX_KEYWORDS}")
    amount = money(reward, "reward")
    if amount <= 0:
        raise ValueError(f"reward: ${amount} must be at least $0.01 (MTurk refuses unpaid HITs)")
    _check_seconds(assignment_duration_s, "assignment duration", MIN_DURATION_S, MAX_DURATION_S,
                   "the time a worker has")
    _check_seconds(auto_approval_delay_s, "auto-approval delay", 0, MAX_AUTO_APPROVAL_S, "auto-approval")
    return amount


def check_lifetime(lifetime_s: Any) -> int:
    """A HIT lifetime must be 30 s to 365 days."""
    return _check_seconds(lifetime_s, "lifetime", MIN_DURATION_S, MAX_DURATION_S, "a HIT's lifetime")


def check_endpoint(environment: str, endpoint_url: str | None) -> str:
    """The endpoint to use: the environment's own, or an override that is a loopback address
    (the offline fake) or exactly that environment's endpoint. Anything else (in particular the
    production endpoint while the environment is the sandbox) raises `ValueError`: the
    environment decides where money moves, and only `--live` may choose production."""
    own = ENDPOINTS[environment]
    if not endpoint_url or endpoint_url.rstrip("/") == own:
        return own
    parts = urllib.parse.urlsplit(endpoint_url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback and parts.scheme in ("http", "https"):
        return endpoint_url
    other = [env for env, url in ENDPOINTS.items() if url == endpoint_url.rstrip("/")]
    hint = (f"it is the {other[0]} endpoint; choose the environment with "
            f"{'--live' if other[0] == 'live' else '--sandbox'} instead") if other else \
        "only a loopback address (an offline fake) or the environment's own endpoint is accepted"
    raise ValueError(f"endpoint URL {endpoint_url!r} refused for the {environment} environment: {hint}")


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
    masters: bool = False,
    environment: str = "sandbox",
    required_qualification_ids: Sequence[tuple[str, int]] = (),
) -> list[dict]:
    """MTurk `QualificationRequirements` for a HIT type.

    * `min_approval_rate`: percent of a worker's past assignments approved (0-100;
      PercentAssignmentsApproved).
    * `min_approved_hits`: number of HITs approved (NumberHITsApproved).
    * `locales`: `"US"` or `"US-CA"` (ISO 3166 country, optionally a 2-character
      subdivision, as MTurk requires).
    * `participated_qualification_ids`: Argus "participated"/"excluded" qualifications; a
      worker who holds any of them cannot discover, preview or accept the HIT (`DoesNotExist`),
      which blocks retakes and low-quality workers across batches.
    * `qualification_test_id`: a qualification type with a test the worker must pass with
      score >= `qualification_test_min_score`.
    * `masters`: only Masters workers (MTurk adds 5% to its fee); the id depends on
      `environment`.
    * `required_qualification_ids`: (type id, value) pairs the worker must hold with exactly
      that value, hidden from everyone else (used for a compensation HIT meant for one worker).
    MTurk allows at most 10 requirements per HIT type.
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
            m = re.fullmatch(r"([A-Z]{2})(?:-([A-Z0-9]{2}))?", str(code).strip().upper())
            if not m:
                raise ValueError(f"locale: {code!r} is not a country code like 'US' or a country and a "
                                 "2-character subdivision like 'US-CA'")
            values.append({"Country": m.group(1), **({"Subdivision": m.group(2)} if m.group(2) else {})})
        reqs.append({
            "QualificationTypeId": QUAL_LOCALE,
            "Comparator": "In",
            "LocaleValues": values,
            "ActionsGuarded": "Accept",
        })
    if masters:
        reqs.append({"QualificationTypeId": QUAL_MASTERS[environment], "Comparator": "Exists",
                     "ActionsGuarded": "Accept"})
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
    for qid, value in required_qualification_ids:
        reqs.append({"QualificationTypeId": qid, "Comparator": "EqualTo", "IntegerValues": [int(value)],
                     "ActionsGuarded": "DiscoverPreviewAndAccept"})
    if len(reqs) > 10:
        raise ValueError(f"qualification requirements: {len(reqs)}, MTurk allows at most 10 per HIT "
                         "(drop some --exclude-study)")
    return reqs


def mturk_fee(reward: Decimal, max_assignments: int, masters: bool = False) -> Decimal:
    """MTurk's commission on one assignment's reward, in USD.

    20% (minimum $0.01), another 20% for HITs with 10 or more assignments, and another 5% for
    HITs that require Masters.
    """
    rate = Decimal("0.40") if max_assignments >= 10 else Decimal("0.20")
    if masters:
        rate += Decimal("0.05")
    return max(CENT, (reward * rate).quantize(CENT, rounding=ROUND_HALF_UP))


def bonus_fee(amount: Decimal) -> Decimal:
    """MTurk's 20% commission on one bonus payment (minimum $0.01 per payment), in USD."""
    return max(CENT, (amount * Decimal("0.20")).quantize(CENT, rounding=ROUND_HALF_UP))


def planned_bonus_fees(total: Decimal, count: int) -> Decimal:
    """MTurk's fees on a bonus budget `total` paid as up to `count` payments.

    The $0.01 minimum applies per payment, so 100 bonuses of $0.01 cost $1.00 in fees, not 20%
    of $1.00. The estimate is the larger of `count` equal payments (cents spread as evenly as
    possible) and one single payment, so rounding never makes it too low for either plan.
    """
    cents = _cents(total)
    if cents <= 0:
        return Decimal("0.00")
    count = max(1, min(int(count), cents))  # a payment is at least $0.01
    base, extra = divmod(cents, count)
    even = extra * bonus_fee(Decimal(base + 1) / 100) + (count - extra) * bonus_fee(Decimal(base) / 100)
    return max(even, bonus_fee(Decimal(total))).quantize(CENT)


def _cents(amount: Decimal) -> int:
    return int((Decimal(amount) * 100).to_integral_value())


@dataclasses.dataclass(frozen=True)
class CostEstimate:
    """What a launch will cost at most, in USD (Decimals, cents).

    `rewards` = reward x assignments; `fees` = MTurk's commission on them (20%, 40% on
    HITs with >= 10 assignments, +5% with Masters); `bonuses` + `bonus_fees` = the planned
    bonus budget and MTurk's fees on it (20% per payment, at least $0.01 each, for
    `bonus_count` payments); `total` = the sum.
    """

    hit_sizes: tuple[int, ...]
    reward: Decimal
    rewards: Decimal
    fees: Decimal
    bonuses: Decimal
    bonus_fees: Decimal
    total: Decimal
    bonus_count: int = 0
    masters: bool = False

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
        extra = 5 if self.masters else 0
        tiers = sorted({f"{40 + extra}%" if k >= 10 else f"{20 + extra}%" for k in sizes})
        bonus_label = (f"MTurk fee on {self.bonus_count} bonuses (20%, at least $0.01 each)" if self.bonus_count
                       else "MTurk fee on bonuses (20%)")
        return [
            ("HITs", f"{layout} = {self.assignments} assignments"),
            ("reward per assignment", f"${self.reward}"),
            ("rewards", f"${self.rewards}"),
            (f"MTurk fee ({' and '.join(tiers)}{', Masters' if self.masters else ''})", f"${self.fees}"),
            ("planned bonuses", f"${self.bonuses}"),
            (bonus_label, f"${self.bonus_fees}"),
            ("total", f"${self.total}"),
        ]


def estimate_hits(reward: Any, hit_sizes: Sequence[int], planned_bonuses: Any = 0, bonus_count: int | None = None,
                  masters: bool = False) -> CostEstimate:
    """Worst-case cost of HITs with `hit_sizes` assignments each (every one approved).

    `planned_bonuses` is the total bonus budget (USD), paid as up to `bonus_count` payments
    (default: one per assignment, the most a per-assignment bonus run pays); MTurk charges 20%
    on each bonus with a $0.01 minimum per payment (`planned_bonus_fees`). HITs with >= 10
    assignments pay a 40% fee, which is why the launcher splits batches into HITs of at most 9
    by default; Masters adds 5%.
    """
    reward = money(reward, "reward")
    bonuses = money(planned_bonuses, "planned bonuses")
    sizes = tuple(int(n) for n in hit_sizes)
    if any(n < 1 for n in sizes):
        raise ValueError(f"hit sizes: {sizes!r}: every HIT needs >= 1 assignment")
    count = sum(sizes) if bonus_count is None else int(bonus_count)
    if bonuses > 0 and count < 1:
        raise ValueError(f"planned bonus count: {bonus_count!r} must be >= 1 when bonuses are planned")
    rewards = reward * sum(sizes)
    fees = sum(((mturk_fee(reward, n, masters) if reward > 0 else Decimal("0.00")) * n for n in sizes),
               Decimal("0.00"))
    bfees = planned_bonus_fees(bonuses, count) if bonuses > 0 else Decimal("0.00")
    return CostEstimate(hit_sizes=sizes, reward=reward, rewards=rewards.quantize(CENT), fees=fees.quantize(CENT),
                        bonuses=bonuses, bonus_fees=bfees, total=(rewards + fees + bonuses + bfees).quantize(CENT),
                        bonus_count=count if bonuses > 0 else 0, masters=masters)


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

    `endpoint_url` overrides the endpoint, only with a loopback address (tests point it at a
    local fake) or the environment's own endpoint (`check_endpoint`). Retries use
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
    endpoint = check_endpoint(environment, endpoint_url)
    config = Config(
        region_name=REGION,
        retries={"mode": retry_mode, "total_max_attempts": int(max_attempts)},  # first try included
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        user_agent_extra="argus-mturk",
    )
    session = boto3.session.Session(profile_name=profile) if profile else boto3.session.Session()
    return session.client("mturk", endpoint_url=endpoint, config=config)


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
            raise MTurkError(operation, err.get("Code", "ClientError"), err.get("Message", str(exc)),
                             exc.response.get("TurkErrorCode") or err.get("TurkErrorCode")) from exc
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
        races a lost earlier create is refused with `RequestError` and resolved by looking up
        again (the answer decides, not the wording of the error).
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
            if exc.code != "RequestError":
                raise
            found = self.find_qualification_type(name)
            if not found:
                raise
            return found["QualificationTypeId"]

    def grant_qualification(self, qualification_type_id: str, worker_id: str, value: int = 1,
                            notify: bool = False) -> None:
        """Give `worker_id` the qualification (silently unless `notify`). Idempotent on MTurk."""
        self._call("AssociateQualificationWithWorker", QualificationTypeId=qualification_type_id,
                   WorkerId=check_worker_id(worker_id), IntegerValue=int(value), SendNotification=bool(notify))

    def qualification_score(self, qualification_type_id: str, worker_id: str) -> dict | None:
        """The worker's qualification (`IntegerValue`, `Status` Granted|Revoked), or None if
        MTurk has none for them."""
        try:
            return self._call("GetQualificationScore", QualificationTypeId=qualification_type_id,
                              WorkerId=check_worker_id(worker_id))["Qualification"]
        except MTurkError as exc:
            if exc.code != "RequestError":
                raise
            return None

    def revoke_qualification(self, qualification_type_id: str, worker_id: str, reason: str = "") -> bool:
        """Take a qualification away. Returns False if the worker no longer held it (an earlier
        try went through, or it was never granted): the state is read back, not the message."""
        try:
            self._call("DisassociateQualificationFromWorker", QualificationTypeId=qualification_type_id,
                       WorkerId=check_worker_id(worker_id), **({"Reason": reason} if reason else {}))
        except MTurkError as exc:
            if exc.code != "RequestError":
                raise
            held = self.qualification_score(qualification_type_id, worker_id)
            if held is not None and held.get("Status") == "Granted":
                raise
            return False
        return True

    def list_qualification_requests(self, qualification_type_id: str | None = None) -> list[dict]:
        """Workers' pending requests for your qualification types (all pages)."""
        params = {"QualificationTypeId": qualification_type_id} if qualification_type_id else {}
        return list(self._paginate("ListQualificationRequests", "QualificationRequests", **params))

    def accept_qualification_request(self, request_id: str, value: int = 1) -> None:
        self._call("AcceptQualificationRequest", QualificationRequestId=request_id, IntegerValue=int(value))

    def reject_qualification_request(self, request_id: str, reason: str) -> None:
        if not reason or not reason.strip():
            raise ValueError("reason: rejecting a qualification request needs a reason the worker can read")
        self._call("RejectQualificationRequest", QualificationRequestId=request_id, Reason=reason)

    # -- HITs -----------------------------------------------------------------------
    def create_hit_type(self, title: str, description: str, reward: Any, assignment_duration_s: int,
                        auto_approval_delay_s: int, keywords: str = "",
                        qualification_requirements: list[dict] | None = None) -> str:
        """Register (or find: MTurk returns the same id for the same parameters) a HIT type."""
        amount = check_hit_type(title, description, reward, assignment_duration_s, auto_approval_delay_s, keywords)
        params = dict(
            Title=title, Description=description, Reward=str(amount),
            AssignmentDurationInSeconds=int(assignment_duration_s),
            AutoApprovalDelayInSeconds=int(auto_approval_delay_s),
            Keywords=keywords, QualificationRequirements=qualification_requirements or [],
        )
        return self._call("CreateHITType", **params)["HITTypeId"]

    def create_hit(self, hit_type_id: str, question_xml: str, max_assignments: int, lifetime_s: int,
                   unique_request_token: str, annotation: str = "") -> dict:
        """Create one HIT, or return the one this token already created.

        Returns the HIT as a dict (`HITId`, `HITStatus`, `MaxAssignments` ...) plus
        `"Recovered": True` when MTurk refused the token as used (`TurkErrorCode`
        `AWS.MechanicalTurk.HitAlreadyExists`) and the existing HIT was found instead: by the
        id in the message if MTurk names one, otherwise by its `annotation` in `ListHITs`.
        Either way the HIT must carry `annotation`; callers still check its URL.
        """
        if len(unique_request_token) > MAX_TOKEN_LEN:
            raise ValueError(f"UniqueRequestToken: {unique_request_token!r} is longer than 64 characters")
        if len(annotation) > MAX_ANNOTATION:
            raise ValueError(f"annotation: {len(annotation)} characters, MTurk allows at most {MAX_ANNOTATION}")
        check_lifetime(lifetime_s)
        try:
            hit = self._call(
                "CreateHITWithHITType", HITTypeId=hit_type_id, MaxAssignments=int(max_assignments),
                LifetimeInSeconds=int(lifetime_s), Question=question_xml,
                RequesterAnnotation=annotation, UniqueRequestToken=unique_request_token,
            )["HIT"]
        except MTurkError as exc:
            if exc.turk_code != HIT_ALREADY_EXISTS:
                raise
            hit = self._existing_hit(exc, annotation)
            log.info("UniqueRequestToken already used; recovered existing HIT %s", hit["HITId"])
            hit = dict(hit, Recovered=True)
        return hit

    def _existing_hit(self, exc: MTurkError, annotation: str) -> dict:
        """The HIT a refused token made: named in the message (as the API reference says) or
        found by annotation (the developer guide only promises a request id in the message)."""
        for hit_id in HIT_ID_RE.findall(exc.message):
            try:
                hit = self.get_hit(hit_id)
            except MTurkError:
                continue
            if annotation and hit.get("RequesterAnnotation") == annotation:
                return hit
        hit = self.find_hit_by_annotation(annotation) if annotation else None
        if hit is None:
            raise MTurkError(exc.operation, exc.code, f"{exc.message} (and no HIT with annotation "
                                                      f"{annotation!r} was found)", exc.turk_code) from exc
        return hit

    def find_hit_by_annotation(self, annotation: str) -> dict | None:
        """The requester's HIT whose `RequesterAnnotation` is exactly `annotation`, or None."""
        return next((h for h in self.list_hits() if h.get("RequesterAnnotation") == annotation), None)

    def get_hit(self, hit_id: str) -> dict:
        return self._call("GetHIT", HITId=hit_id)["HIT"]

    def list_hits(self) -> Iterator[dict]:
        """All of the requester's HITs (paginated)."""
        return self._paginate("ListHITs", "HITs")

    def update_expiration(self, hit_id: str, expire_at: dt.datetime) -> None:
        """Set when the HIT stops taking new workers (in the past: now)."""
        self._call("UpdateExpirationForHIT", HITId=hit_id, ExpireAt=expire_at)

    def expire_hit(self, hit_id: str) -> bool:
        """Stop new workers from accepting the HIT; accepted assignments can still be submitted.

        MTurk de-duplicates UpdateExpirationForHIT on (HITId, ExpireAt) for 24 hours, so a retry
        after a lost answer, or a re-run after a crash, is refused with `RequestError`. Then the
        HIT is read back: if it has already expired, that is the outcome we wanted. Returns True
        if this call expired it, False if it was already expired.
        """
        try:
            self.update_expiration(hit_id, PAST)
        except MTurkError as exc:
            if exc.code != "RequestError":
                raise
            expiration = self.get_hit(hit_id).get("Expiration")
            if expiration is None or expiration > dt.datetime.now(dt.timezone.utc):
                raise
            return False
        return True

    def add_assignments(self, hit_id: str, n: int, unique_request_token: str) -> None:
        """CreateAdditionalAssignmentsForHIT with a token (MTurk refuses a repeat within 24 h).
        MTurk does not allow a HIT created with fewer than 10 assignments to reach 10 or more."""
        if int(n) < 1:
            raise ValueError(f"assignments: {n!r} must be >= 1")
        self._call("CreateAdditionalAssignmentsForHIT", HITId=hit_id, NumberOfAdditionalAssignments=int(n),
                   UniqueRequestToken=unique_request_token)

    def delete_hit(self, hit_id: str) -> None:
        """Delete a HIT (MTurk allows it only once it is expired and every assignment reviewed)."""
        self._call("DeleteHIT", HITId=hit_id)

    # -- notifications --------------------------------------------------------------
    def update_notifications(self, hit_type_id: str, notification: dict | None, active: bool = True) -> None:
        """Send events of a HIT type to SNS/SQS (UpdateNotificationSettings); `notification`
        None only switches the existing specification on or off."""
        params: dict = dict(HITTypeId=hit_type_id, Active=bool(active))
        if notification is not None:
            params["Notification"] = notification
        self._call("UpdateNotificationSettings", **params)

    def send_test_event(self, notification: dict, event_type: str = "Ping") -> None:
        self._call("SendTestEventNotification", Notification=notification, TestEventType=event_type)

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
        """Pay a bonus once. Returns True if paid now, False if MTurk already has this payment
        (an earlier try went through and its answer was lost).

        A repeated token is refused with `RequestError`; whatever its wording, the payment is
        then looked up in `ListBonusPayments` (same assignment, amount and reason) and the
        error is raised if it is not there.
        """
        if not reason or not reason.strip():
            raise ValueError("reason: a bonus needs a reason the worker can read")
        check_worker_id(worker_id)
        amount = money(amount, "bonus amount")
        if amount <= 0:
            raise ValueError(f"bonus amount: {amount} must be positive")
        try:
            self._call("SendBonus", WorkerId=worker_id, AssignmentId=assignment_id, BonusAmount=str(amount),
                       Reason=reason, UniqueRequestToken=unique_request_token)
        except MTurkError as exc:
            if exc.code != "RequestError":
                raise
            paid = any(b.get("Reason") == reason and Decimal(b["BonusAmount"]) == amount and b["WorkerId"] == worker_id
                       for b in self.list_bonus_payments(assignment_id=assignment_id))
            if not paid:
                raise
            return False
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
        self._call("CreateWorkerBlock", WorkerId=check_worker_id(worker_id), Reason=reason)

    def unblock_worker(self, worker_id: str, reason: str = "") -> None:
        self._call("DeleteWorkerBlock", WorkerId=check_worker_id(worker_id), **({"Reason": reason} if reason else {}))

    def list_worker_blocks(self) -> list[dict]:
        return list(self._paginate("ListWorkerBlocks", "WorkerBlocks"))

    def notify_workers(self, worker_ids: Iterable[str], subject: str, message: str) -> list[dict]:
        """E-mail workers through MTurk, 100 ids per call. Returns MTurk's per-worker failure
        statuses (`WorkerId`, `NotifyWorkersFailureCode`, `NotifyWorkersFailureMessage`)."""
        ids = check_worker_ids(dict.fromkeys(worker_ids))  # de-duplicate, keep order
        if not subject or not message:
            raise ValueError("subject and message are required")
        if len(subject) > 200 or len(message) > 4096:
            raise ValueError("subject is limited to 200 and message to 4096 characters by MTurk")
        failures: list[dict] = []
        for chunk in chunked(ids, NOTIFY_CHUNK):
            out = self._call("NotifyWorkers", Subject=subject, MessageText=message, WorkerIds=chunk)
            failures.extend(out.get("NotifyWorkersFailureStatuses", []))
        return failures


PAST = dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc)  # an ExpireAt in the past expires a HIT at once


def chunked(items: Sequence, size: int) -> Iterator[list]:
    """Consecutive slices of `items` of length <= `size`."""
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def _snake(operation: str) -> str:
    # CreateHITWithHITType -> create_hit_with_hit_type (boto3's method names)
    from botocore import xform_name

    return xform_name(operation)
