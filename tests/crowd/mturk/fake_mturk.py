"""An in-process fake of the MTurk requester API, for offline tests.

It speaks the service's JSON 1.1 protocol (`X-Amz-Target: MTurkRequesterServiceV20170117.<Op>`,
`application/x-amz-json-1.1` bodies, `__type` errors), so the *real* boto3 client can be
pointed at it with `endpoint_url`. It keeps MTurk's rules that matter for money and data:
`UniqueRequestToken` de-duplication (a repeat answers `RequestError` naming the existing
HIT), assignment state machine (Submitted -> Approved | Rejected, OverrideRejection),
qualifications with `DoesNotExist` and worker blocks enforced when a worker accepts, HIT
expiry and deletion rules, paginated lists, and a balance that pays reward + fee on approval
and bonus + fee on each bonus.

Simulated workers use `FakeMTurk.accept` (what clicking "Accept" does), open the
returned ExternalQuestion URL, and POST the finished assignment to `/mturk/externalSubmit`.

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
import socket
import string
import threading
import time
import urllib.parse
from decimal import ROUND_HALF_UP, Decimal
from xml.etree import ElementTree

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

TARGET_PREFIX = "MTurkRequesterServiceV20170117."


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # keep test output readable
        pass


class FakeError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _now() -> float:
    return time.time()


def _fee(amount: Decimal, rate: Decimal) -> Decimal:
    return max(Decimal("0.01"), (amount * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# A client's read time-out in tests, and how long the fake holds a "timeout" answer: the margin
# keeps the injected time-out the only one, even on a loaded 2-core machine.
CLIENT_READ_TIMEOUT = 1.0
TIMEOUT_HOLD = 1.4


class FakeMTurk:
    """The fake service; `start()` serves it on 127.0.0.1 and returns its base URL."""

    def __init__(self, balance: str = "10000.00", seed: int = 0, timeout_sleep: float = TIMEOUT_HOLD):
        self._rng = random.Random(seed)
        self.lock = threading.RLock()
        self.balance = Decimal(balance)
        self.timeout_sleep = timeout_sleep
        self.hit_types: dict[str, dict] = {}
        self.hits: dict[str, dict] = {}
        self.assignments: dict[str, dict] = {}
        self.bonuses: list[dict] = []
        self.blocks: dict[str, str] = {}
        self.qual_types: dict[str, dict] = {}
        self.worker_quals: dict[tuple[str, str], int] = {}
        self.notifications: list[dict] = []
        self.hit_tokens: dict[str, str] = {}
        self.bonus_tokens: set[str] = set()
        self.applied: collections.Counter = collections.Counter()  # op -> calls applied
        self.requests: collections.Counter = collections.Counter()  # op -> requests received
        self.injections: dict[str, collections.deque] = collections.defaultdict(collections.deque)
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

    def inject(self, operation: str, *modes: str) -> None:
        """Queue failures for `operation` (e.g. `"CreateHITWithHITType"`, `"externalSubmit"`)."""
        for mode in modes:
            if mode not in ("pass", "drop", "timeout", "fault", "throttle"):
                raise ValueError(mode)
            self.injections[operation].append(mode)

    def _new_id(self, n: int = 30) -> str:
        return "".join(self._rng.choice(string.ascii_uppercase + string.digits) for _ in range(n))

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
        if mode == "throttle":
            return self._error(FakeError("ThrottlingException", "Rate exceeded"))(environ, start_response)
        handler = getattr(self, "op_" + op, None)
        if handler is None:
            return self._error(FakeError("RequestError", f"operation {op} is not supported by the fake"))(environ, start_response)
        try:
            params = json.loads(request.get_data() or b"{}")
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

    @staticmethod
    def _error(exc: FakeError) -> Response:
        body = {"__type": exc.code, "Message": exc.message}
        if exc.code in ("RequestError", "ServiceFault"):
            body["TurkErrorCode"] = exc.code
        return Response(json.dumps(body), status=exc.status, content_type="application/x-amz-json-1.1")

    @staticmethod
    def _page(items: list, params: dict, key: str) -> dict:
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults") or 10)
        page = items[start:start + size]
        out = {key: page, "NumResults": len(page)}
        if start + size < len(items):
            out["NextToken"] = str(start + size)
        return out

    # -- operations -------------------------------------------------------------------
    def op_GetAccountBalance(self, p):
        return {"AvailableBalance": str(self.balance.quantize(Decimal("0.01"))), "OnHoldBalance": "0.00"}

    def op_CreateQualificationType(self, p):
        for qt in self.qual_types.values():
            if qt["Name"] == p["Name"]:
                raise FakeError("RequestError", "You have already created a QualificationType with this name.")
        qid = self._new_id()
        self.qual_types[qid] = {
            "QualificationTypeId": qid, "Name": p["Name"], "Description": p["Description"],
            "QualificationTypeStatus": p["QualificationTypeStatus"], "CreationTime": _now(),
            "IsRequestable": bool(p.get("Test")), "AutoGranted": False, **({"Test": p["Test"]} if p.get("Test") else {}),
        }
        return {"QualificationType": self.qual_types[qid]}

    def op_ListQualificationTypes(self, p):
        query = (p.get("Query") or "").lower()
        items = [q for q in self.qual_types.values() if query in q["Name"].lower()]
        return self._page(items, p, "QualificationTypes")

    def op_AssociateQualificationWithWorker(self, p):
        if p["QualificationTypeId"] not in self.qual_types:
            raise FakeError("RequestError", f"QualificationType {p['QualificationTypeId']} does not exist")
        self.worker_quals[(p["QualificationTypeId"], p["WorkerId"])] = int(p.get("IntegerValue", 1))
        return {}

    def op_CreateHITType(self, p):
        key = json.dumps({k: p.get(k) for k in sorted(p)}, sort_keys=True)
        for tid, t in self.hit_types.items():
            if t["_key"] == key:  # MTurk returns the same id for identical parameters
                return {"HITTypeId": tid}
        for req in p.get("QualificationRequirements", []):
            qid = req["QualificationTypeId"]
            if not qid.startswith("000000") and qid not in self.qual_types:
                raise FakeError("RequestError", f"QualificationType {qid} does not exist")
        tid = self._new_id()
        self.hit_types[tid] = dict(p, _key=key)
        return {"HITTypeId": tid}

    def op_CreateHITWithHITType(self, p):
        token = p.get("UniqueRequestToken")
        if token and token in self.hit_tokens:
            hit_id = self.hit_tokens[token]
            raise FakeError("RequestError", f"The HIT with ID \"{hit_id}\" already exists. "
                                            f"The UniqueRequestToken {token} has already been used.")
        ht = self.hit_types.get(p["HITTypeId"])
        if ht is None:
            raise FakeError("RequestError", f"HITType {p['HITTypeId']} does not exist")
        ElementTree.fromstring(p["Question"].encode())  # MTurk validates the XML
        hit_id = self._new_id()
        now = _now()
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
            self.hit_tokens[token] = hit_id
        self._refresh(hit_id)
        return {"HIT": self._hit_view(hit_id)}

    def _hit(self, hit_id):
        if hit_id not in self.hits:
            raise FakeError("RequestError", f"Hit {hit_id} does not exist. (1111111111111)")
        return self.hits[hit_id]

    def _refresh(self, hit_id):
        hit = self.hits[hit_id]
        asg = [a for a in self.assignments.values() if a["HITId"] == hit_id]
        pending = sum(a["AssignmentStatus"] == "Accepted" for a in asg)
        done = sum(a["AssignmentStatus"] in ("Submitted", "Approved", "Rejected") for a in asg)
        available = max(0, hit["MaxAssignments"] - pending - done)
        expired = hit["Expiration"] <= _now()
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
        hit["Expiration"] = float(p["ExpireAt"])
        self._refresh(p["HITId"])
        return {}

    def op_DeleteHIT(self, p):
        hit = self._hit(p["HITId"])
        self._refresh(p["HITId"])
        asg = [a for a in self.assignments.values() if a["HITId"] == p["HITId"]]
        if hit["HITStatus"] != "Reviewable" or any(a["AssignmentStatus"] in ("Submitted", "Accepted") for a in asg):
            raise FakeError("RequestError", "This HIT is currently in the state 'Assignable' or has assignments to review. "
                                            "This operation can be called with a status of: Reviewable")
        hit["HITStatus"] = "Disposed"
        return {}

    def op_ListAssignmentsForHIT(self, p):
        self._hit(p["HITId"])
        statuses = set(p.get("AssignmentStatuses") or ["Submitted", "Approved", "Rejected"])
        items = [self._asg_view(a) for a in self.assignments.values()
                 if a["HITId"] == p["HITId"] and a["AssignmentStatus"] in statuses]
        return self._page(items, p, "Assignments")

    def _asg_view(self, a):
        return {k: v for k, v in a.items() if v is not None}

    def _asg(self, aid):
        a = self.assignments.get(aid)
        if a is None or a["AssignmentStatus"] == "Accepted":
            raise FakeError("RequestError", f"Assignment {aid} does not exist. (1111111111111)")
        return a

    def op_GetAssignment(self, p):
        a = self._asg(p["AssignmentId"])
        return {"Assignment": self._asg_view(a), "HIT": self._hit_view(a["HITId"])}

    def _pay_reward(self, a):
        hit = self.hits[a["HITId"]]
        reward = Decimal(hit["Reward"])
        rate = Decimal("0.40") if hit["MaxAssignments"] >= 10 else Decimal("0.20")
        self.balance -= reward + (_fee(reward, rate) if reward > 0 else 0)

    def op_ApproveAssignment(self, p):
        a = self._asg(p["AssignmentId"])
        if a["AssignmentStatus"] == "Rejected" and p.get("OverrideRejection"):
            pass
        elif a["AssignmentStatus"] != "Submitted":
            raise FakeError("RequestError", "This operation can be called with a status of: Submitted "
                                            f"(current status {a['AssignmentStatus']})")
        a["AssignmentStatus"] = "Approved"
        a["ApprovalTime"] = _now()
        a["RequesterFeedback"] = p.get("RequesterFeedback")
        self._pay_reward(a)
        return {}

    def op_RejectAssignment(self, p):
        a = self._asg(p["AssignmentId"])
        if a["AssignmentStatus"] != "Submitted":
            raise FakeError("RequestError", "This operation can be called with a status of: Submitted")
        if not p.get("RequesterFeedback"):
            raise FakeError("RequestError", "RequesterFeedback is required")
        a["AssignmentStatus"] = "Rejected"
        a["RejectionTime"] = _now()
        a["RequesterFeedback"] = p["RequesterFeedback"]
        return {}

    def op_SendBonus(self, p):
        token = p.get("UniqueRequestToken")
        if token and token in self.bonus_tokens:
            raise FakeError("RequestError", f"The UniqueRequestToken {token} has already been used "
                                            "for a bonus payment (request id 1111111111111).")
        a = self._asg(p["AssignmentId"])
        if a["WorkerId"] != p["WorkerId"]:
            raise FakeError("RequestError", f"Worker {p['WorkerId']} did not work on assignment {p['AssignmentId']}")
        amount = Decimal(p["BonusAmount"])
        self.balance -= amount + _fee(amount, Decimal("0.20"))
        self.bonuses.append({"WorkerId": p["WorkerId"], "BonusAmount": str(amount), "AssignmentId": p["AssignmentId"],
                             "Reason": p["Reason"], "GrantTime": _now(), "_hit": a["HITId"], "_token": token})
        if token:
            self.bonus_tokens.add(token)
        return {}

    def op_ListBonusPayments(self, p):
        if p.get("HITId"):
            items = [b for b in self.bonuses if b["_hit"] == p["HITId"]]
        elif p.get("AssignmentId"):
            items = [b for b in self.bonuses if b["AssignmentId"] == p["AssignmentId"]]
        else:
            raise FakeError("RequestError", "Either HITId or AssignmentId must be given")
        items = [{k: v for k, v in b.items() if not k.startswith("_")} for b in items]
        return self._page(items, p, "BonusPayments")

    def op_CreateWorkerBlock(self, p):
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
        if len(ids) > 100:
            raise FakeError("RequestError", "WorkerIds: at most 100 workers per call")
        known = {a["WorkerId"] for a in self.assignments.values()}
        self.notifications.append({"Subject": p["Subject"], "MessageText": p["MessageText"], "WorkerIds": list(ids)})
        return {"NotifyWorkersFailureStatuses": [
            {"NotifyWorkersFailureCode": "HardFailure", "NotifyWorkersFailureMessage": "Worker has never worked for you",
             "WorkerId": w} for w in ids if w not in known]}

    # -- the worker side ----------------------------------------------------------------
    def worker_can_accept(self, hit_id: str, worker_id: str) -> str | None:
        """Why `worker_id` cannot accept `hit_id` (None if they can)."""
        with self.lock:
            hit = self._hit(hit_id)
            self._refresh(hit_id)
            if worker_id in self.blocks:
                return "blocked"
            for req in hit["QualificationRequirements"]:
                has = (req["QualificationTypeId"], worker_id) in self.worker_quals
                if req["Comparator"] == "DoesNotExist" and has:
                    return "qualification"
            if any(a["HITId"] == hit_id and a["WorkerId"] == worker_id for a in self.assignments.values()):
                return "already worked on this HIT"
            if hit["HITStatus"] != "Assignable":
                return "not assignable"
            return None

    def accept(self, hit_id: str, worker_id: str) -> str:
        """The worker accepts the HIT: returns the ExternalQuestion URL with MTurk's parameters."""
        with self.lock:
            reason = self.worker_can_accept(hit_id, worker_id)
            if reason:
                raise FakeError("RequestError", f"worker {worker_id} cannot accept {hit_id}: {reason}")
            aid = self._new_id()
            now = _now()
            hit = self.hits[hit_id]
            self.assignments[aid] = {
                "AssignmentId": aid, "WorkerId": worker_id, "HITId": hit_id, "AssignmentStatus": "Accepted",
                "AcceptTime": now, "Deadline": now + int(hit["AssignmentDurationInSeconds"]),
                "AutoApprovalTime": None, "SubmitTime": None, "ApprovalTime": None, "RejectionTime": None,
                "Answer": None, "RequesterFeedback": None,
            }
            self._refresh(hit_id)
            url = ElementTree.fromstring(hit["Question"].encode()).findtext(
                "{http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd}ExternalURL")
            query = urllib.parse.urlencode({"assignmentId": aid, "hitId": hit_id, "turkSubmitTo": self.url,
                                            "workerId": worker_id})
            return url + ("&" if "?" in url else "?") + query

    def return_assignment(self, assignment_id: str) -> None:
        """The worker returns (or abandons) an accepted assignment: MTurk reissues the slot."""
        with self.lock:
            a = self.assignments[assignment_id]
            if a["AssignmentStatus"] != "Accepted":
                raise FakeError("RequestError", "only accepted assignments can be returned")
            del self.assignments[assignment_id]
            self._refresh(a["HITId"])

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
            from xml.sax.saxutils import escape
            for k, v in fields:
                answer.append(f"<Answer><QuestionIdentifier>{escape(k)}</QuestionIdentifier>"
                              f"<FreeText>{escape(v)}</FreeText></Answer>")
            answer.append("</QuestionFormAnswers>")
            now = _now()
            hit = self.hits[a["HITId"]]
            a.update(AssignmentStatus="Submitted", SubmitTime=now, Answer="".join(answer),
                     AutoApprovalTime=now + int(hit["AutoApprovalDelayInSeconds"]))
            self.applied["externalSubmit"] += 1
            self._refresh(a["HITId"])
        return Response("<html><body>Your work was submitted.</body></html>", content_type="text/html")

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
