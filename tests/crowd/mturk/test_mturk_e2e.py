"""End to end on the fake MTurk endpoint and the real Argus server over HTTP:
launch -> simulated workers (ExternalQuestion URL with MTurk's parameters, tasks on the server,
externalSubmit) -> sync -> review -> bonus, with failures injected at every step and every
command re-run until it converges; then no duplicate HIT, no double payment, and the local
state equals the fake MTurk's."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from sqlalchemy import select

from crowd.models import Visit, VisitStatus, Worker, WorkerStatus
from crowd.providers.mturk_client import MTurkClient, MTurkError
from crowd.providers.mturk_models import BonusStatus, MTurkAssignment, MTurkBonus, MTurkHit
from crowd.providers.mturk_service import LaunchSettings, MTurkService
from fake_mturk import CLIENT_READ_TIMEOUT
from mturk_sim import do_assignment

MUTATING = ("CreateHITWithHITType", "ApproveAssignment", "RejectAssignment", "SendBonus", "CreateWorkerBlock")


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
def test_launch_work_sync_review_bonus_with_failures_everywhere(crowd_db, fake, make_batch, argus_server):
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
    assert len(fake.hits) == 2 and len(fake.qual_types) == 1 and len(fake.hit_types) == 1
    hit1, hit2 = [h["hit_id"] for h in launched.hits]

    # ---- workers do the tasks on the Argus server and submit to MTurk
    results = {}
    for worker, hit in [("W1", hit1), ("W2", hit1), ("W3", hit1), ("W4", hit2), ("W5", hit2)]:
        results[worker] = do_assignment(fake, hit, worker, argus_server, good=worker != "W5")
    fake.inject("externalSubmit", "fault")  # W6's submit to MTurk fails ...
    results["W6"] = do_assignment(fake, hit2, "W6", argus_server)
    assert results["W6"]["submit_status"] == 503
    fake.return_assignment(results["W6"]["assignment_id"])  # ... W6 gives up, MTurk reissues the slot
    results["W7"] = do_assignment(fake, hit2, "W7", argus_server)
    assert all(r["tasks"] == 3 for r in results.values())
    assert fake.worker_can_accept(hit1, "W8") == "not assignable"  # both HITs are full

    # ---- sync: failures while reading and while granting the participated qualification
    fake.inject("GetHIT", "fault")
    fake.inject("ListAssignmentsForHIT", "pass", "drop")
    fake.inject("AssociateQualificationWithWorker", "pass", "pass", "timeout")
    report, failed = converge(lambda: svc.sync(bid))
    assert failed == 3
    assert len(fake.worker_quals) == 6  # every worker MTurk knows, once
    status = svc.status(bid)
    assert status["assignments"] == {"Submitted": 6}
    assert [v["assignment_id"] for v in status["not_submitted"]] == [results["W6"]["assignment_id"]]

    # ---- review: approvals applied on MTurk but answers lost
    fake.inject("ApproveAssignment", "drop", "pass", "timeout")
    fake.inject("GetAssignment", "fault")
    review, failed = converge(lambda: svc.review(bid, threshold=0.7))
    assert failed >= 2
    assert Counter(a["AssignmentStatus"] for a in fake.assignments.values()) == {"Approved": 5, "Submitted": 1}
    assert fake.assignments[results["W5"]["assignment_id"]]["AssignmentStatus"] == "Submitted"  # flagged
    assert fake.requests["ApproveAssignment"] <= 5 + 3  # retries only for the three failed calls

    # ---- bonus: SendBonus applied but answers lost, and a faulty ListBonusPayments
    good = svc.plan_bonuses(bid, amount="0.25", min_gold=1.0)
    assert sorted(p["worker_id"] for p in good) == ["W1", "W2", "W3", "W4", "W7"]
    fake.inject("SendBonus", "drop", "pass", "timeout")
    fake.inject("ListBonusPayments", "pass", "fault")
    paid, failed = converge(lambda: svc.bonus(bid, good, "Accurate answers", dry_run=False))
    assert failed >= 2 and paid["planned"] == 5

    # ---- every command once more: nothing new happens on MTurk
    before = {op: fake.applied[op] for op in MUTATING}
    svc.launch(bid, plan, dry_run=False)
    svc.sync(bid)
    svc.review(bid, threshold=0.7)
    again = svc.bonus(bid, svc.plan_bonuses(bid, amount="0.25", min_gold=1.0), "Accurate answers", dry_run=False)
    assert again["paid_now"] == 0 and again["already_paid"] == 5
    assert {op: fake.applied[op] for op in MUTATING} == before

    # ---- no duplicate HIT, no double payment
    assert len(fake.hits) == 2 and len(fake.hit_tokens) == 2
    assert Counter(b["WorkerId"] for b in fake.bonuses) == {w: 1 for w in ("W1", "W2", "W3", "W4", "W7")}
    rewards = 5 * (Decimal("0.50") + Decimal("0.10"))
    bonuses = 5 * (Decimal("0.25") + Decimal("0.05"))
    assert fake.balance == Decimal("10000.00") - rewards - bonuses

    # ---- local state equals the fake MTurk's
    with crowd_db.reading() as s:
        hits = {h.hit_id: h.max_assignments for h in s.scalars(select(MTurkHit).where(MTurkHit.batch_id == bid))}
        asg = {a.assignment_id: a.status.value for a in s.scalars(select(MTurkAssignment))}
        ledger = Counter((b.assignment_id, b.amount_cents) for b in s.scalars(select(MTurkBonus))
                         if b.status == BonusStatus.paid)
        visits = {v.external_assignment_id: v.status for v in s.scalars(select(Visit).where(Visit.batch_id == bid))}
        w5 = s.scalar(select(Worker).where(Worker.external_id == "W5"))
    assert hits == {h["HITId"]: h["MaxAssignments"] for h in fake.live_hits()}
    assert asg == {a["AssignmentId"]: a["AssignmentStatus"] for a in fake.assignments.values()}
    assert ledger == Counter((b["AssignmentId"], int(Decimal(b["BonusAmount"]) * 100)) for b in fake.bonuses)
    assert all(visits[a] == VisitStatus.approved for a, st in asg.items() if st == "Approved")
    assert visits[results["W6"]["assignment_id"]] == VisitStatus.completed  # work kept, never paid via MTurk
    assert w5.status == WorkerStatus.flagged
