"""End to end on the fake MTurk endpoint and the real Argus server over HTTP:
launch -> simulated workers (ExternalQuestion URL with MTurk's parameters, tasks on the server,
externalSubmit) -> sync -> review -> bonus -> expire, with failures injected at every step and
every command re-run until it converges; then no duplicate HIT, no double payment, and the
local state equals the fake MTurk's. Every request and response of the run is validated against
botocore's service model (the Stubber's checks plus pattern/max/enum, see service_model.py)."""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal

import pytest
import requests
from sqlalchemy import select

from crowd.models import Visit, VisitStatus
from crowd.providers.mturk_client import MTurkClient, MTurkError
from crowd.providers.mturk_models import BonusStatus, MTurkAssignment, MTurkBonus, MTurkHit
from crowd.providers.mturk_service import LaunchSettings, MTurkService
from fake_mturk import CLIENT_READ_TIMEOUT
from mturk_sim import do_assignment

MUTATING = ("CreateHITWithHITType", "ApproveAssignment", "RejectAssignment", "SendBonus", "CreateWorkerBlock",
            "UpdateExpirationForHIT")


def converge(step, max_runs=8):
    """Re-run `step` after each failure, as a researcher would; return (result, failed runs)."""
    for failures in range(max_runs):
        try:
            return step(), failures
        except MTurkError:
            continue
    raise AssertionError(f"{step} did not converge in {max_runs} runs")


@pytest.mark.slow
@pytest.mark.parametrize("crowd_app", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_launch_work_sync_review_bonus_with_failures_everywhere(crowd_db, fake, make_batch, argus_server,
                                                                validated_calls):
    # one attempt per call, so every injected failure reaches the command and forces a re-run
    client = MTurkClient.connect("sandbox", endpoint_url=fake.url, max_attempts=1, read_timeout=CLIENT_READ_TIMEOUT)
    svc = MTurkService(crowd_db, client, progress=False)
    bid = make_batch(n_images=7, redundancy=2, tasks_per_visit=3, gold_rate=0.34)
    plan = LaunchSettings(entry_url=f"{argus_server}/w/{bid}", title="Label small images",
                          description="Pick the class of each image", assignments=6, per_hit=3,
                          study="e2e", allow_http=True)

    # ---- launch: failures at each call of the launch
    fake.inject("ListQualificationTypes", "fault")
    fake.inject("CreateQualificationType", "drop")  # created, answer lost: found by name next run
    fake.inject("CreateHITType", "timeout")
    fake.inject("CreateHITWithHITType", "pass", "drop")  # HIT 2 created, answer lost
    fake.inject("ListHITs", "throttle")
    launched, failed = converge(lambda: svc.launch(bid, plan, dry_run=False))
    assert failed == 5
    # the study's "participated" and the requester's "low-quality" qualification types
    assert len(fake.hits) == 2 and len(fake.qual_types) == 2 and len(fake.hit_types) == 1
    hit1, hit2 = [h["hit_id"] for h in launched.hits]

    # ---- workers do the tasks on the Argus server and submit to MTurk
    results = {}
    for worker, hit in [("AW1", hit1), ("AW2", hit1), ("AW3", hit1), ("AW4", hit2), ("AW5", hit2)]:
        results[worker] = do_assignment(fake, hit, worker, argus_server, good=worker != "AW5")
    fake.inject("externalSubmit", "fault")  # AW6's submit to MTurk fails ...
    results["AW6"] = do_assignment(fake, hit2, "AW6", argus_server)
    assert results["AW6"]["submit_status"] == 503
    fake.return_assignment(results["AW6"]["assignment_id"])  # ... AW6 gives up, MTurk re-issues the slot
    url = fake.accept(hit2, "AW7")  # to AW7, under AW6's assignment id
    aw7 = re.search(r"assignmentId=([A-Z0-9]+)", url).group(1)
    assert aw7 == results["AW6"]["assignment_id"]
    # AW7 posts the submit form without doing any task (AW6's work must not pay AW7)
    assert requests.post(f"{fake.url}/mturk/externalSubmit", data={"assignmentId": aw7}).status_code == 200
    assert all(r["tasks"] == 3 for r in results.values())
    assert fake.worker_can_accept(hit1, "AW8") == "not assignable"  # both HITs are full

    # ---- sync: failures while reading and while granting the participated qualification
    fake.inject("GetHIT", "fault")
    fake.inject("ListAssignmentsForHIT", "pass", "drop")
    fake.inject("AssociateQualificationWithWorker", "pass", "pass", "timeout")
    report, failed = converge(lambda: svc.sync(bid))
    assert failed == 3
    assert len(fake.worker_quals) == 6  # every worker MTurk knows as a submitter, once
    status = svc.status(bid)
    assert status["assignments"] == {"Submitted": 6}
    assert [(v["assignment_id"], v["worker_id"]) for v in status["not_submitted"]] == [(aw7, "AW6")]

    # ---- review: approvals applied on MTurk but answers lost
    fake.inject("ApproveAssignment", "drop", "pass", "timeout")
    fake.inject("GetAssignment", "fault")
    review, failed = converge(lambda: svc.review(bid))
    assert failed >= 2
    # one wrong gold answer is no evidence: AW5 is approved (safe review rejects nobody by default);
    # AW7's submission has no work of AW7's here and is held for a person
    assert Counter(a["AssignmentStatus"] for a in fake.assignments.values()) == {"Approved": 5, "Submitted": 1}
    assert fake.assignments[aw7]["AssignmentStatus"] == "Submitted"
    assert fake.requests["ApproveAssignment"] <= 5 + 3  # retries only for the three failed calls

    # ---- bonus: SendBonus applied but answers lost, and a faulty ListBonusPayments
    good = svc.plan_bonuses(bid, amount="0.25", min_gold=1.0)
    assert sorted(p["worker_id"] for p in good) == ["AW1", "AW2", "AW3", "AW4"]
    fake.inject("SendBonus", "drop", "pass", "timeout")
    fake.inject("ListBonusPayments", "pass", "fault")
    paid, failed = converge(lambda: svc.bonus(bid, good, "Accurate answers", dry_run=False))
    assert failed >= 2 and paid["planned"] == 4

    # ---- expire: the first expiry applied but its answer lost; MTurk refuses the repeat
    fake.inject("UpdateExpirationForHIT", "drop")
    fake.inject("GetHIT", "fault")
    expired, failed = converge(lambda: svc.expire(bid))
    assert failed == 2 and {h["HITStatus"] for h in fake.live_hits()} == {"Reviewable"}

    # ---- every command once more: nothing new happens on MTurk
    before = {op: fake.applied[op] for op in MUTATING}
    svc.launch(bid, plan, dry_run=False)
    svc.sync(bid)
    svc.review(bid)
    again = svc.bonus(bid, svc.plan_bonuses(bid, amount="0.25", min_gold=1.0), "Accurate answers", dry_run=False)
    assert again["paid_now"] == 0 and again["already_paid"] == 4
    assert svc.expire(bid) == 0
    assert {op: fake.applied[op] for op in MUTATING} == before

    # ---- no duplicate HIT, no double payment
    assert len(fake.hits) == 2 and len(fake.hit_tokens) == 2
    assert Counter(b["WorkerId"] for b in fake.bonuses) == {w: 1 for w in ("AW1", "AW2", "AW3", "AW4")}
    rewards = 5 * (Decimal("0.50") + Decimal("0.10"))
    bonuses = 4 * (Decimal("0.25") + Decimal("0.05"))
    assert fake.balance == Decimal("10000.00") - rewards - bonuses

    # ---- local state equals the fake MTurk's
    with crowd_db.reading() as s:
        hits = {h.hit_id: h.max_assignments for h in s.scalars(select(MTurkHit).where(MTurkHit.batch_id == bid))}
        asg = {a.assignment_id: a.status.value for a in s.scalars(select(MTurkAssignment))}
        ledger = Counter((b.assignment_id, b.amount_cents) for b in s.scalars(select(MTurkBonus))
                         if b.status == BonusStatus.paid)
        visits = {v.external_assignment_id: v.status for v in s.scalars(select(Visit).where(Visit.batch_id == bid))}
        held = s.scalar(select(MTurkAssignment).where(MTurkAssignment.assignment_id == aw7))
    assert hits == {h["HITId"]: h["MaxAssignments"] for h in fake.live_hits()}
    assert asg == {a["AssignmentId"]: a["AssignmentStatus"] for a in fake.assignments.values()}
    assert ledger == Counter((b["AssignmentId"], int(Decimal(b["BonusAmount"]) * 100)) for b in fake.bonuses)
    assert all(visits[a] == VisitStatus.approved for a, st in asg.items() if st == "Approved")
    assert visits[results["AW6"]["assignment_id"]] == VisitStatus.completed  # work kept, never paid via MTurk
    assert (held.worker_id, held.decision.value) == ("AW7", "flag")

    # ---- every request the fake received went through the service-model validation
    assert set(fake.requests) <= set(validated_calls)
    assert {"CreateHITWithHITType", "ListAssignmentsForHIT", "ApproveAssignment", "SendBonus",
            "UpdateExpirationForHIT"} <= set(validated_calls)
