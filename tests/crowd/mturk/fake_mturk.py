"""An in-process fake of the MTurk requester API, for offline tests.

It speaks the service's JSON 1.1 protocol (`X-Amz-Target: MTurkRequesterServiceV20170117.<Op>`,
`application/x-amz-json-1.1` bodies, `__type` errors with `TurkErrorCode`), so the *real*
boto3 client can be pointed at it with `endpoint_url`. It follows what real MTurk does where
money and data depend on it (docs/mturk.md, "How the fake follows MTurk", cites the sources):

* every request is checked against botocore's service model, including the `pattern`/`max`
  constraints botocore leaves to the server: a worker id outside `^A[A-Z0-9]+$` is refused
  with `ParameterValidationError` ("The value ... is not valid for the parameter WorkerId");
  so are the documented limits (auto-approval <= 30 days, durations 30 s .. 365 days, reward >=
  $0.01, title <= 128, description <= 2000, keywords <= 1000 characters);
* `UniqueRequestToken`s are remembered for 24 hours; a repeated CreateHITWithHITType answers
  `RequestError` with `TurkErrorCode` `AWS.MechanicalTurk.HitAlreadyExists` and a message
  that names no HIT;
* UpdateExpirationForHIT is de-duplicated on (HITId, ExpireAt) for 24 hours: a repeat answers
  `RequestError` "The idempotency token "<HITId><date>" has already been processed.";
* a returned or abandoned assignment's **same AssignmentId** goes to the next worker who
  accepts the HIT;
* `ThrottlingException` "Rate exceeded" when a configured request rate is exceeded;
* CreateAdditionalAssignmentsForHIT refuses to take a HIT from < 10 to >= 10 assignments
  (`AWS.MechanicalTurk.InvalidMaximumAssignmentsIncrease`);
* the assignment state machine (Submitted -> Approved | Rejected, OverrideRejection),
  qualifications (Exists/DoesNotExist/EqualTo/In, revocation, requests), worker blocks, expiry and
  deletion rules, paginated lists, notification settings, and a balance that pays reward + fee
  (20%, 40% from 10 assignments, +5% with Masters) on approval and bonus + fee (20%, at least
  $0.01) on each bonus, refusing when the balance is short.

Simulated workers use `FakeMTurk.accept` (what clicking "Accept" does), open the
returned ExternalQuestion URL, and POST the finished assignment to `/mturk/externalSubmit`.
`FakeMTurk.advance` moves the fake's clock (token memory, expiry, abandonment).

Failure injection (`FakeMTurk.inject`), per operation, consumed in order:

* `"drop"`: apply the call, then close the connection without answering (the response is
  lost; the client cannot know the call went through);
* `"timeout"`: apply the call, then hold the answer past the client's read time-out;
* `"fault"`: answer `ServiceFault` (HTTP 500) without applying;
* `"throttle"`: answer `ThrottlingException` (HTTP 400) without applying;
* `"pass"`: answer normally (to aim a failure at a later request).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import random
import re
import socket
import string
import threading
import time
import urllib.parse
from decimal import ROUND_HALF_UP, Decimal
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from service_model import constraint_violations, operation, stubber_errors, timestamp

TARGET_PREFIX = "MTurkRequesterServiceV20170117."
TOKEN_MEMORY_S = 24 * 3600  # MTurk forgets UniqueRequestTokens after 24 hours
EXTERNAL_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"
# System qualification types MTurk knows without CreateQualificationType.
MASTERS = {"2ARFPLSP75KLA8M8DH1HTEQVJT3SY6", "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH"}  # sandbox, production
SYSTEM_QUALS = {"000000000000000000L0", "00000000000000000040", "00000000000000000071"} | MASTERS
WORKER_ID = re.compile(r"^A[A-Z0-9]+$")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # keep test output readable
        pass


class FakeError(Exception):
    def __init__(self, code: str, message: str, status: int = 400, turk_code: str | None = None):
        super().__init__(message)
        self.code, self.message, self.status, self.turk_code = code, message, status, turk_code


def _fee(amount: Decimal, rate: Decimal) -> Decimal:
    return max(Decimal("0.01"), (amount * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# A client's read time-out in tests, and how long the fake holds a "timeout" answer: the margin
# keeps the injected time-out the only one, even on a loaded 2-core machine.
CLIENT_READ_TIMEOUT = 1.0
TIMEOUT_HOLD = 1.4


class FakeMTurk:
    """The fake service; `start()` serves it on 127.0.0.1 and returns its base URL.

    `rate_limit=(per_second, burst)` answers `ThrottlingException` beyond that request rate.
    """

    def __init__(self, balance: str = "10000.00", seed: int = 0, timeout_sleep: float = TIMEOUT_HOLD,
                 rate_limit: tuple[float, int] | None = None):
        self._rng = random.Random(seed)
        self.lock = threading.RLock()
        self.balance = Decimal(balance)
        self.timeout_sleep = timeout_sleep
        self.clock = 0.0  # seconds added to the wall clock by advance()
        self.hit_types: dict[str, dict] = {}
        self.hits: dict[str, dict] = {}
        self.assignments: dict[str, dict] = {}
        self.released: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self.bonuses: list[dict] = []
        self.blocks: dict[str, str] = {}
        self.qual_types: dict[str, dict] = {}
        self.worker_quals: dict[tuple[str, str], dict] = {}  # (type, worker) -> IntegerValue, Status
        self.qual_requests: dict[str, dict] = {}
        self.notifications: list[dict] = []
        self.notification_settings: dict[str, dict] = {}  # HITTypeId -> {"Notification", "Active"}
        self.test_events: list[dict] = []
        self.hit_tokens: dict[str, tuple[str, float]] = {}  # token -> (HITId, when)
        self.bonus_tokens: dict[str, float] = {}
        self.extension_tokens: dict[str, float] = {}
        self.expirations_seen: dict[tuple[str, float], float] = {}  # (HITId, ExpireAt) -> when
        self.workers: set[str] = set()  # workers who ever accepted one of our HITs
        self.applied: collections.Counter = collections.Counter()  # op -> calls applied
        self.requests: collections.Counter = collections.Counter()  # op -> requests received
        self.injections: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self.rate_limit = rate_limit
        self._bucket = (float(rate_limit[1]) if rate_limit else 0.0, time.monotonic())
        self._server = None
        self._thread = None
        self.url = None

    # -- server ---------------------------------------------------------------------
    def start(self) -> str:
        self._server = make_server("127.0.0.1", 0, self, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def inject(self, operation_name: str, *modes: str) -> None:
        """Queue failures for `operation_name` (e.g. `"CreateHITWithHITType"`, `"externalSubmit"`)."""
        for mode in modes:
            if mode not in ("pass", "drop", "timeout", "fault", "throttle"):
                raise ValueError(mode)
            self.injections[operation_name].append(mode)

    def now(self) -> float:
        return time.time() + self.clock

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (tokens age, HITs expire, accepted work is abandoned)."""
        with self.lock:
            self.clock += seconds
            for hit_id in self.hits:
                self._refresh(hit_id)

    def _stamp(self) -> str:
        return f"({int(self.now() * 1000)} s)"  # MTurk ends messages with a request time stamp

    def _new_id(self, n: int = 30) -> str:
        return "".join(self._rng.choice(string.ascii_uppercase + string.digits) for _ in range(n))

    def _throttled(self) -> bool:
        if not self.rate_limit:
            return False
        rate, burst = self.rate_limit
        with self.lock:
            tokens, last = self._bucket
            now = time.monotonic()
            tokens = min(float(burst), tokens + (now - last) * rate)
            if tokens < 1:
                self._bucket = (tokens, now)
                return True
            self._bucket = (tokens - 1, now)
            return False

    # -- WSGI -----------------------------------------------------------------------
    def __call__(self, environ, start_response):
        request = Request(environ)
        if request.path == "/mturk/externalSubmit":
            return self._external_submit(request)(environ, start_response)
        target = request.headers.get("X-Amz-Target", "")
        if request.method != "POST" or not target.startswith(TARGET_PREFIX):
            return Response("not an MTurk call", status=404)(environ, start_response)
        op = target[len(TARGET_PREFIX):]
        self.requests[op] += 1
        mode = self.injections[op].popleft() if self.injections[op] else None
        if mode == "fault":
            return self._error(FakeError("ServiceFault", "injected service fault", 500))(environ, start_response)
        if mode == "throttle" or self._throttled():
            return self._error(FakeError("ThrottlingException", "Rate exceeded"))(environ, start_response)
        handler = getattr(self, "op_" + op, None)
        if handler is None:
            return self._error(FakeError("RequestError", f"operation {op} is not supported by the fake"))(environ, start_response)
        try:
            params = json.loads(request.get_data() or b"{}")
            self._validate(op, params)
            with self.lock:
                result = handler(params)
                self.applied[op] += 1
        except FakeError as exc:
            return self._error(exc)(environ, start_response)
        if mode == "drop":
            sock = environ.get("werkzeug.socket")
            sock.shutdown(socket.SHUT_RDWR)
            start_response("500 dropped", [("Content-Length", "0")])
            return [b""]
        if mode == "timeout":
            time.sleep(self.timeout_sleep)
        body = json.dumps(result, default=_json_default).encode()
        return Response(body, content_type="application/x-amz-json-1.1")(environ, start_response)

    def _validate(self, op: str, params: dict) -> None:
        """The server-side model checks: what botocore checks plus pattern/max/enum."""
        shape = operation(op).input_shape
        if "ExpireAt" in params:
            params = dict(params, ExpireAt=dt.datetime.fromtimestamp(timestamp(params["ExpireAt"]), dt.timezone.utc))
        errors = stubber_errors(params, shape)
        if errors:
            raise FakeError("ValidationException", errors[0])
        for path, value, _why in constraint_violations(params, shape):
            raise self._invalid(re.sub(r"\[\d+\]", "", path).split(".")[-1], value)

    @staticmethod
    def _error(exc: FakeError) -> Response:
        body = {"__type": exc.code, "Message": exc.message}
        if exc.code in ("RequestError", "ServiceFault"):
            body["TurkErrorCode"] = exc.turk_code or exc.code
        return Response(json.dumps(body), status=exc.status, content_type="application/x-amz-json-1.1")

    def _invalid(self, field: str, value) -> FakeError:
        return FakeError("ParameterValidationError", f'The value "{value}" is not valid for the parameter {field}. '
                                                     f"{self._stamp()}")

    @staticmethod
    def _page(items: list, params: dict, key: str) -> dict:
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults") or 10)
        page = items[start:start + size]
        out = {key: page, "NumResults": len(page)}
        if start + size < len(items):
            out["NextToken"] = str(start + size)
        return out

    def _token_fresh(self, when: float | None) -> bool:
        return when is not None and self.now() - when < TOKEN_MEMORY_S

    # -- account --------------------------------------------------------------------
    def op_GetAccountBalance(self, p):
        return {"AvailableBalance": str(self.balance.quantize(Decimal("0.01")))}

    def _charge(self, amount: Decimal, what: str) -> None:
        if amount > self.balance:
            raise FakeError("RequestError", f"You do not have enough funds to {what}. {self._stamp()}",
                            turk_code="AWS.MechanicalTurk.InsufficientFunds")
        self.balance -= amount

    # -- qualifications -------------------------------------------------------------
    def op_CreateQualificationType(self, p):
        for qt in self.qual_types.values():
            if qt["Name"] == p["Name"]:
                raise FakeError("RequestError", "You have already created a QualificationType with this name. "
                                                + self._stamp())
        qid = self._new_id()
        self.qual_types[qid] = {
            "QualificationTypeId": qid, "Name": p["Name"], "Description": p["Description"],
            "Keywords": p.get("Keywords", ""), "QualificationTypeStatus": p["QualificationTypeStatus"],
            "CreationTime": self.now(), "IsRequestable": True, "AutoGranted": bool(p.get("AutoGranted")),
            **({"Test": p["Test"], "TestDurationInSeconds": p["TestDurationInSeconds"]} if p.get("Test") else {}),
            **({"AnswerKey": p["AnswerKey"]} if p.get("AnswerKey") else {}),
        }
        return {"QualificationType": self._qual_view(qid)}

    def _qual_view(self, qid):
        return {k: v for k, v in self.qual_types[qid].items() if k != "AnswerKey"}

    def _qual_type(self, qid):
        if qid not in self.qual_types:
            raise FakeError("RequestError", f"QualificationType {qid} does not exist. {self._stamp()}")
        return self.qual_types[qid]

    def op_ListQualificationTypes(self, p):
        query = (p.get("Query") or "").lower()
        items = [self._qual_view(q) for q, t in self.qual_types.items() if query in t["Name"].lower()]
        return self._page(items, p, "QualificationTypes")

    def _known_worker(self, worker_id: str) -> None:
        if worker_id not in self.workers:  # MTurk refuses ids it cannot resolve in this environment
            raise self._invalid("WorkerId", worker_id)

    def op_AssociateQualificationWithWorker(self, p):
        self._qual_type(p["QualificationTypeId"])
        self._known_worker(p["WorkerId"])
        self.worker_quals[(p["QualificationTypeId"], p["WorkerId"])] = {
            "IntegerValue": int(p.get("IntegerValue", 1)), "Status": "Granted", "GrantTime": self.now()}
        return {}

    def op_DisassociateQualificationFromWorker(self, p):
        self._qual_type(p["QualificationTypeId"])
        q = self.worker_quals.get((p["QualificationTypeId"], p["WorkerId"]))
        if q is None or q["Status"] != "Granted":
            raise FakeError("RequestError", f"Worker {p['WorkerId']} does not hold Qualification "
                                            f"{p['QualificationTypeId']}. {self._stamp()}")
        q["Status"] = "Revoked"
        return {}

    def op_GetQualificationScore(self, p):
        q = self.worker_quals.get((p["QualificationTypeId"], p["WorkerId"]))
        if q is None:
            raise FakeError("RequestError", f"You requested a Qualification that does not exist. {self._stamp()}")
        return {"Qualification": {"QualificationTypeId": p["QualificationTypeId"], "WorkerId": p["WorkerId"],
                                  "GrantTime": q["GrantTime"], "IntegerValue": q["IntegerValue"],
                                  "Status": q["Status"]}}

    def _holds(self, qid: str, worker_id: str) -> dict | None:
        q = self.worker_quals.get((qid, worker_id))
        return q if q and q["Status"] == "Granted" else None

    def op_ListQualificationRequests(self, p):
        items = [{k: v for k, v in r.items() if not k.startswith("_")} for r in self.qual_requests.values()
                 if p.get("QualificationTypeId") in (None, r["QualificationTypeId"])]
        return self._page(items, p, "QualificationRequests")

    def _qual_request(self, rid):
        if rid not in self.qual_requests:
            raise FakeError("RequestError", f"QualificationRequest {rid} does not exist. {self._stamp()}")
        return self.qual_requests[rid]

    def op_AcceptQualificationRequest(self, p):
        r = self._qual_request(p["QualificationRequestId"])
        self.worker_quals[(r["QualificationTypeId"], r["WorkerId"])] = {
            "IntegerValue": int(p.get("IntegerValue", 1)), "Status": "Granted", "GrantTime": self.now()}
        del self.qual_requests[p["QualificationRequestId"]]
        return {}

    def op_RejectQualificationRequest(self, p):
        self._qual_request(p["QualificationRequestId"])
        del self.qual_requests[p["QualificationRequestId"]]
        return {}

    # -- HIT types and HITs -------------------------------------------------------------
    def _check_hit_type(self, p):
        reward = Decimal(p["Reward"])
        limits = [("Reward", reward >= Decimal("0.01"), p["Reward"]),
                  ("AssignmentDurationInSeconds", 30 <= int(p["AssignmentDurationInSeconds"]) <= 31536000,
                   p["AssignmentDurationInSeconds"]),
                  ("AutoApprovalDelayInSeconds", 0 <= int(p.get("AutoApprovalDelayInSeconds", 0)) <= 2592000,
                   p.get("AutoApprovalDelayInSeconds")),
                  ("Title", 1 <= len(p["Title"]) <= 128, p["Title"]),
                  ("Description", 1 <= len(p["Description"]) <= 2000, p["Description"]),
                  ("Keywords", len(p.get("Keywords", "")) <= 1000, p.get("Keywords")),
                  ("QualificationRequirements", len(p.get("QualificationRequirements", [])) <= 10, "...")]
        for field, ok, value in limits:
            if not ok:
                raise self._invalid(field, value)
        for req in p.get("QualificationRequirements", []):
            qid = req["QualificationTypeId"]
            if qid not in SYSTEM_QUALS and qid not in self.qual_types:
                raise FakeError("RequestError", f"QualificationType {qid} does not exist. {self._stamp()}")

    def op_CreateHITType(self, p):
        key = json.dumps({k: p.get(k) for k in sorted(p)}, sort_keys=True)
        for tid, t in self.hit_types.items():
            if t["_key"] == key:  # MTurk returns the same id for identical parameters
                return {"HITTypeId": tid}
        self._check_hit_type(p)
        tid = self._new_id()
        self.hit_types[tid] = dict(p, _key=key)
        return {"HITTypeId": tid}

    def op_CreateHITWithHITType(self, p):
        token = p.get("UniqueRequestToken")
        if token and self._token_fresh(self.hit_tokens.get(token, (None, None))[1]):
            raise FakeError("RequestError", "There is already a HIT which exists with the same client token. "
                                            + self._stamp(), turk_code="AWS.MechanicalTurk.HitAlreadyExists")
        ht = self.hit_types.get(p["HITTypeId"])
        if ht is None:
            raise FakeError("RequestError", f"HITType {p['HITTypeId']} does not exist. {self._stamp()}")
        if not 30 <= int(p["LifetimeInSeconds"]) <= 31536000:
            raise self._invalid("LifetimeInSeconds", p["LifetimeInSeconds"])
        if len(p.get("RequesterAnnotation", "")) > 255:
            raise self._invalid("RequesterAnnotation", p["RequesterAnnotation"])
        ElementTree.fromstring(p["Question"].encode())  # MTurk validates the XML
        hit_id = self._new_id()
        now = self.now()
        self.hits[hit_id] = {
            "HITId": hit_id, "HITTypeId": p["HITTypeId"], "HITGroupId": "G" + p["HITTypeId"][1:],
            "CreationTime": now, "Title": ht["Title"], "Description": ht["Description"],
            "Question": p["Question"], "Keywords": ht.get("Keywords", ""), "HITStatus": "Assignable",
            "MaxAssignments": int(p.get("MaxAssignments", 1)), "Reward": ht["Reward"],
            "AutoApprovalDelayInSeconds": ht.get("AutoApprovalDelayInSeconds", 2592000),
            "Expiration": now + int(p["LifetimeInSeconds"]),
            "AssignmentDurationInSeconds": ht["AssignmentDurationInSeconds"],
            "RequesterAnnotation": p.get("RequesterAnnotation", ""),
            "QualificationRequirements": ht.get("QualificationRequirements", []),
            "HITReviewStatus": "NotReviewed",
        }
        if token:
            self.hit_tokens[token] = (hit_id, now)
        self._refresh(hit_id)
        return {"HIT": self._hit_view(hit_id)}

    def _hit(self, hit_id):
        if hit_id not in self.hits:
            raise FakeError("RequestError", f"Hit {hit_id} does not exist. {self._stamp()}")
        return self.hits[hit_id]

    def _refresh(self, hit_id):
        hit = self.hits[hit_id]
        now = self.now()
        for a in [a for a in self.assignments.values() if a["HITId"] == hit_id]:
            if a["AssignmentStatus"] == "Accepted" and a["Deadline"] <= now:
                self._release(a["AssignmentId"])  # abandoned: the slot goes back with the same id
            elif a["AssignmentStatus"] == "Submitted" and (a["AutoApprovalTime"] or now + 1) <= now:
                self._approve(a)  # MTurk approves (and pays) on its own after the delay
        asg = [a for a in self.assignments.values() if a["HITId"] == hit_id]
        pending = sum(a["AssignmentStatus"] == "Accepted" for a in asg)
        done = sum(a["AssignmentStatus"] in ("Submitted", "Approved", "Rejected") for a in asg)
        available = max(0, hit["MaxAssignments"] - pending - done)
        expired = hit["Expiration"] <= now
        hit["NumberOfAssignmentsPending"] = pending
        hit["NumberOfAssignmentsCompleted"] = done
        hit["NumberOfAssignmentsAvailable"] = 0 if expired else available
        if hit["HITStatus"] != "Disposed":
            if not expired and available:
                hit["HITStatus"] = "Assignable"
            elif pending:
                hit["HITStatus"] = "Unassignable"
            else:
                hit["HITStatus"] = "Reviewable"

    def _hit_view(self, hit_id):
        self._refresh(hit_id)
        return dict(self.hits[hit_id])

    def op_GetHIT(self, p):
        self._hit(p["HITId"])
        return {"HIT": self._hit_view(p["HITId"])}

    def op_ListHITs(self, p):
        items = [self._hit_view(h) for h in self.hits if self.hits[h]["HITStatus"] != "Disposed"]
        return self._page(items, p, "HITs")

    def op_UpdateExpirationForHIT(self, p):
        hit = self._hit(p["HITId"])
        expire_at = timestamp(p["ExpireAt"])
        key = (p["HITId"], expire_at)
        if self._token_fresh(self.expirations_seen.get(key)):  # MTurk's idempotency on (HITId, ExpireAt)
            when = dt.datetime.fromtimestamp(expire_at, dt.timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y")
            raise FakeError("RequestError", f'The idempotency token "{p["HITId"]}{when}" has already been '
                                            f"processed. {self._stamp()}")
        if hit["HITStatus"] == "Disposed":
            raise FakeError("RequestError", f"Hit {p['HITId']} is Disposed. {self._stamp()}")
        self.expirations_seen[key] = self.now()
        hit["Expiration"] = expire_at
        self._refresh(p["HITId"])
        return {}

    def op_CreateAdditionalAssignmentsForHIT(self, p):
        hit = self._hit(p["HITId"])
        token = p.get("UniqueRequestToken")
        if token and self._token_fresh(self.extension_tokens.get(token)):
            raise FakeError("RequestError", "The request has already been processed for this unique request token. "
                                            + self._stamp())
        n = int(p["NumberOfAdditionalAssignments"])
        if n < 1:
            raise self._invalid("NumberOfAdditionalAssignments", n)
        if hit["MaxAssignments"] < 10 <= hit["MaxAssignments"] + n:
            raise FakeError("RequestError", "HITs created with fewer than 10 assignments cannot be extended to have "
                                            f"10 or more assignments. {self._stamp()}",
                            turk_code="AWS.MechanicalTurk.InvalidMaximumAssignmentsIncrease")
        hit["MaxAssignments"] += n
        if token:
            self.extension_tokens[token] = self.now()
        self._refresh(p["HITId"])
        return {}

    def op_DeleteHIT(self, p):
        hit = self._hit(p["HITId"])
        self._refresh(p["HITId"])
        asg = [a for a in self.assignments.values() if a["HITId"] == p["HITId"]]
        if hit["HITStatus"] != "Reviewable" or any(a["AssignmentStatus"] in ("Submitted", "Accepted") for a in asg):
            raise FakeError("RequestError", f"This HIT is currently in the state '{hit['HITStatus']}'. This operation "
                                            f"can be called with a status of: Reviewable {self._stamp()}")
        hit["HITStatus"] = "Disposed"
        return {}

    # -- assignments ------------------------------------------------------------------
    def op_ListAssignmentsForHIT(self, p):
        self._hit(p["HITId"])
        self._refresh(p["HITId"])
        statuses = set(p.get("AssignmentStatuses") or ["Submitted", "Approved", "Rejected"])
        items = [self._asg_view(a) for a in self.assignments.values()
                 if a["HITId"] == p["HITId"] and a["AssignmentStatus"] in statuses]
        return self._page(items, p, "Assignments")

    def _asg_view(self, a):
        return {k: v for k, v in a.items() if v is not None}

    def _asg(self, aid):
        a = self.assignments.get(aid)
        if a is not None:
            self._refresh(a["HITId"])
        if a is None or a["AssignmentStatus"] == "Accepted":
            raise FakeError("RequestError", f"Assignment {aid} does not exist. {self._stamp()}")
        return a

    def op_GetAssignment(self, p):
        a = self._asg(p["AssignmentId"])
        return {"Assignment": self._asg_view(a), "HIT": self._hit_view(a["HITId"])}

    def _reward_cost(self, hit) -> Decimal:
        reward = Decimal(hit["Reward"])
        rate = Decimal("0.40") if hit["MaxAssignments"] >= 10 else Decimal("0.20")
        if any(r["QualificationTypeId"] in MASTERS for r in hit["QualificationRequirements"]):
            rate += Decimal("0.05")
        return reward + _fee(reward, rate)

    def _approve(self, a, feedback=None):
        self._charge(self._reward_cost(self.hits[a["HITId"]]), "approve this assignment")
        a["AssignmentStatus"] = "Approved"
        a["ApprovalTime"] = self.now()
        a["RequesterFeedback"] = feedback

    def op_ApproveAssignment(self, p):
        a = self._asg(p["AssignmentId"])
        if not (a["AssignmentStatus"] == "Submitted" or (a["AssignmentStatus"] == "Rejected"
                                                          and p.get("OverrideRejection"))):
            raise FakeError("RequestError", "This operation can be called with a status of: Submitted "
                                            f"{self._stamp()}")
        self._approve(a, p.get("RequesterFeedback"))
        return {}

    def op_RejectAssignment(self, p):
        a = self._asg(p["AssignmentId"])
        if a["AssignmentStatus"] != "Submitted":
            raise FakeError("RequestError", f"This operation can be called with a status of: Submitted {self._stamp()}")
        a["AssignmentStatus"] = "Rejected"
        a["RejectionTime"] = self.now()
        a["RequesterFeedback"] = p["RequesterFeedback"]
        return {}

    # -- bonuses --------------------------------------------------------------------
    def op_SendBonus(self, p):
        token = p.get("UniqueRequestToken")
        if token and self._token_fresh(self.bonus_tokens.get(token)):
            raise FakeError("RequestError", "The request has already been processed for this unique request token. "
                                            + self._stamp())
        a = self._asg(p["AssignmentId"])
        if a["WorkerId"] != p["WorkerId"]:
            raise FakeError("RequestError", f"Worker {p['WorkerId']} did not work on assignment "
                                            f"{p['AssignmentId']}. {self._stamp()}")
        amount = Decimal(p["BonusAmount"])
        if amount <= 0:
            raise self._invalid("BonusAmount", p["BonusAmount"])
        self._charge(amount + _fee(amount, Decimal("0.20")), "pay this bonus")
        self.bonuses.append({"WorkerId": p["WorkerId"], "BonusAmount": str(amount), "AssignmentId": p["AssignmentId"],
                             "Reason": p["Reason"], "GrantTime": self.now(), "_hit": a["HITId"], "_token": token})
        if token:
            self.bonus_tokens[token] = self.now()
        return {}

    def op_ListBonusPayments(self, p):
        if p.get("HITId"):
            items = [b for b in self.bonuses if b["_hit"] == p["HITId"]]
        elif p.get("AssignmentId"):
            items = [b for b in self.bonuses if b["AssignmentId"] == p["AssignmentId"]]
        else:
            raise FakeError("RequestError", f"Either HITId or AssignmentId must be given. {self._stamp()}")
        items = [{k: v for k, v in b.items() if not k.startswith("_")} for b in items]
        return self._page(items, p, "BonusPayments")

    # -- workers --------------------------------------------------------------------
    def op_CreateWorkerBlock(self, p):
        self._known_worker(p["WorkerId"])
        self.blocks[p["WorkerId"]] = p["Reason"]
        return {}

    def op_DeleteWorkerBlock(self, p):
        self.blocks.pop(p["WorkerId"], None)
        return {}

    def op_ListWorkerBlocks(self, p):
        items = [{"WorkerId": w, "Reason": r} for w, r in self.blocks.items()]
        return self._page(items, p, "WorkerBlocks")

    def op_NotifyWorkers(self, p):
        ids = p["WorkerIds"]
        self.notifications.append({"Subject": p["Subject"], "MessageText": p["MessageText"], "WorkerIds": list(ids)})
        return {"NotifyWorkersFailureStatuses": [
            {"NotifyWorkersFailureCode": "HardFailure", "NotifyWorkersFailureMessage": "Worker has never worked for you",
             "WorkerId": w} for w in ids if w not in self.workers]}

    # -- notifications ----------------------------------------------------------------
    @staticmethod
    def _check_destination(n: dict) -> None:
        ok = {"SNS": r"^arn:aws:sns:[a-z0-9-]+:\d{12}:[\w-]+$",
              "SQS": r"^https://sqs\.[a-z0-9-]+\.amazonaws\.com/\d{12}/[\w-]+$",
              "Email": r"^[^@\s]+@[^@\s]+$"}[n["Transport"]]
        if not re.match(ok, n["Destination"]):
            raise FakeError("RequestError", f"Destination {n['Destination']} is not valid for transport "
                                            f"{n['Transport']}.")
        if n["Version"] != "2014-08-15":
            raise FakeError("RequestError", f"Version {n['Version']} is not supported; use 2014-08-15.")

    def op_UpdateNotificationSettings(self, p):
        if p["HITTypeId"] not in self.hit_types:
            raise FakeError("RequestError", f"HITType {p['HITTypeId']} does not exist. {self._stamp()}")
        current = self.notification_settings.get(p["HITTypeId"], {})
        if "Notification" in p:
            self._check_destination(p["Notification"])
            current["Notification"] = p["Notification"]
        elif "Notification" not in current:
            raise FakeError("RequestError", "There is no notification specification to activate for this HIT type.")
        if "Active" in p:
            current["Active"] = bool(p["Active"])
        current.setdefault("Active", True)
        self.notification_settings[p["HITTypeId"]] = current
        return {}

    def op_SendTestEventNotification(self, p):
        self._check_destination(p["Notification"])
        self.test_events.append(dict(p))
        return {}

    # -- the worker side ----------------------------------------------------------------
    def _meets(self, req: dict, worker_id: str) -> bool:
        qid, comparator = req["QualificationTypeId"], req["Comparator"]
        if qid in ("000000000000000000L0", "00000000000000000040", "00000000000000000071") or qid in MASTERS:
            return True  # simulated workers have a clean record in the US and are Masters
        held = self._holds(qid, worker_id)
        if comparator == "DoesNotExist":
            return held is None
        if held is None:
            return False
        value = held["IntegerValue"]
        ints = req.get("IntegerValues", [])
        return {"Exists": True, "EqualTo": value in ints[:1], "NotEqualTo": value not in ints[:1],
                "GreaterThanOrEqualTo": bool(ints) and value >= ints[0], "GreaterThan": bool(ints) and value > ints[0],
                "LessThan": bool(ints) and value < ints[0], "LessThanOrEqualTo": bool(ints) and value <= ints[0],
                "In": value in ints, "NotIn": value not in ints}[comparator]

    def worker_can_accept(self, hit_id: str, worker_id: str) -> str | None:
        """Why `worker_id` cannot accept `hit_id` (None if they can)."""
        with self.lock:
            hit = self._hit(hit_id)
            self._refresh(hit_id)
            if worker_id in self.blocks:
                return "blocked"
            if not all(self._meets(r, worker_id) for r in hit["QualificationRequirements"]):
                return "qualification"
            if any(a["HITId"] == hit_id and a["WorkerId"] == worker_id for a in self.assignments.values()):
                return "already worked on this HIT"
            if hit["HITStatus"] != "Assignable":
                return "not assignable"
            return None

    def accept(self, hit_id: str, worker_id: str) -> str:
        """The worker accepts the HIT: returns the ExternalQuestion URL with MTurk's parameters.

        A slot given back by a return or an abandonment keeps its AssignmentId: the next worker
        who accepts the HIT gets that same id (as real MTurk does).
        """
        if not WORKER_ID.match(worker_id):
            raise ValueError(f"worker id {worker_id!r}: MTurk worker ids match ^A[A-Z0-9]+$")
        with self.lock:
            reason = self.worker_can_accept(hit_id, worker_id)
            if reason:
                raise FakeError("RequestError", f"worker {worker_id} cannot accept {hit_id}: {reason}")
            aid = self.released[hit_id].popleft() if self.released[hit_id] else self._new_id()
            now = self.now()
            hit = self.hits[hit_id]
            self.workers.add(worker_id)
            self.assignments[aid] = {
                "AssignmentId": aid, "WorkerId": worker_id, "HITId": hit_id, "AssignmentStatus": "Accepted",
                "AcceptTime": now, "Deadline": now + int(hit["AssignmentDurationInSeconds"]),
                "AutoApprovalTime": None, "SubmitTime": None, "ApprovalTime": None, "RejectionTime": None,
                "Answer": None, "RequesterFeedback": None,
            }
            self._refresh(hit_id)
            url = ElementTree.fromstring(hit["Question"].encode()).findtext(f"{{{EXTERNAL_NS}}}ExternalURL")
            url = url or f"{self.url}/mturk/task"  # a QuestionForm HIT is shown on MTurk's own page
            query = urllib.parse.urlencode({"assignmentId": aid, "hitId": hit_id, "turkSubmitTo": self.url,
                                            "workerId": worker_id})
            return url + ("&" if "?" in url else "?") + query

    def _release(self, assignment_id: str) -> None:
        a = self.assignments.pop(assignment_id)
        self.released[a["HITId"]].append(assignment_id)

    def return_assignment(self, assignment_id: str) -> None:
        """The worker returns (or abandons) an accepted assignment: MTurk reissues the slot,
        with the same AssignmentId, to the next worker who accepts."""
        with self.lock:
            a = self.assignments[assignment_id]
            if a["AssignmentStatus"] != "Accepted":
                raise FakeError("RequestError", "only accepted assignments can be returned")
            self._release(assignment_id)
            self._refresh(a["HITId"])

    def request_qualification(self, qualification_type_id: str, worker_id: str, answer: str | None = None) -> str:
        """The worker asks for a requestable qualification (taking its test when it has one)."""
        with self.lock:
            qt = self._qual_type(qualification_type_id)
            if not qt["IsRequestable"]:
                raise FakeError("RequestError", "this qualification cannot be requested")
            self.workers.add(worker_id)
            rid = self._new_id()
            self.qual_requests[rid] = {"QualificationRequestId": rid, "QualificationTypeId": qualification_type_id,
                                       "WorkerId": worker_id, "SubmitTime": self.now(),
                                       **({"Test": qt["Test"]} if qt.get("Test") else {}),
                                       **({"Answer": answer} if answer else {})}
            return rid

    def _external_submit(self, request: Request) -> Response:
        mode = self.injections["externalSubmit"].popleft() if self.injections["externalSubmit"] else None
        if mode in ("fault", "throttle", "drop", "timeout"):
            return Response("Service Unavailable", status=503)
        aid = request.form.get("assignmentId", "")
        with self.lock:
            a = self.assignments.get(aid)
            if a is None or a["AssignmentStatus"] != "Accepted":
                return Response(f"assignment {aid!r} cannot be submitted", status=400)
            fields = [(k, v) for k, v in request.form.items(multi=True) if k != "assignmentId"]
            answer = ['<?xml version="1.0" encoding="UTF-8"?><QuestionFormAnswers '
                      'xmlns="http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionFormAnswers.xsd">']
            for k, v in fields:
                answer.append(f"<Answer><QuestionIdentifier>{escape(k)}</QuestionIdentifier>"
                              f"<FreeText>{escape(v)}</FreeText></Answer>")
            answer.append("</QuestionFormAnswers>")
            now = self.now()
            hit = self.hits[a["HITId"]]
            a.update(AssignmentStatus="Submitted", SubmitTime=now, Answer="".join(answer),
                     AutoApprovalTime=now + int(hit["AutoApprovalDelayInSeconds"]))
            self.applied["externalSubmit"] += 1
            self._refresh(a["HITId"])
        return Response("<html><body>Your work was submitted.</body></html>", content_type="text/html")

    def submit_answer(self, assignment_id: str, answers: dict[str, str]) -> None:
        """The worker submits a QuestionForm HIT (e.g. a compensation HIT) on MTurk's own page."""
        with self.lock:
            a = self.assignments[assignment_id]
            if a["AssignmentStatus"] != "Accepted":
                raise FakeError("RequestError", "only accepted assignments can be submitted")
            body = "".join(f"<Answer><QuestionIdentifier>{escape(k)}</QuestionIdentifier>"
                           f"<FreeText>{escape(v)}</FreeText></Answer>" for k, v in answers.items())
            now = self.now()
            a.update(AssignmentStatus="Submitted", SubmitTime=now, Answer=f"<QuestionFormAnswers>{body}</QuestionFormAnswers>",
                     AutoApprovalTime=now + int(self.hits[a["HITId"]]["AutoApprovalDelayInSeconds"]))
            self._refresh(a["HITId"])

    # -- test helpers ---------------------------------------------------------------------
    def live_hits(self) -> list[dict]:
        with self.lock:
            return [self._hit_view(h) for h in self.hits if self.hits[h]["HITStatus"] != "Disposed"]

    def total_bonus(self, worker_id: str | None = None) -> Decimal:
        return sum((Decimal(b["BonusAmount"]) for b in self.bonuses if worker_id in (None, b["WorkerId"])), Decimal("0"))


def _json_default(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.timestamp()
    raise TypeError(type(value))
