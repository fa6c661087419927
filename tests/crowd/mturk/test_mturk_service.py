"""The service layer against the fake MTurk endpoint and the real Argus database/server:
launch, sync (including reissued assignments), review, bonus ledger, blocks, notify,
expire/delete, each re-run after injected failures."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from crowd.models import Visit, VisitStatus, Worker
from crowd.providers.mturk_client import MTurkClient, MTurkError
from crowd.providers.mturk_models import BonusStatus, Decision, HitState, MTurkBonus, MTurkHit
from crowd.providers.mturk_service import (
    BudgetExceeded, LaunchSettings, MTurkService, MTurkServiceError,
)
from fake_mturk import CLIENT_READ_TIMEOUT
from mturk_sim import do_assignment


def settings(server, batch_id, **kw):
    return LaunchSettings(entry_url=f"{server}/w/{batch_id}", title="Label small images",
                          description="Pick the class of each image", allow_http=True, **kw)


def one_shot_service(crowd_db, fake):
    """A service whose client makes a single attempt per call, so injected failures surface."""
    client = MTurkClient.connect("sandbox", endpoint_url=fake.url, max_attempts=1, read_timeout=CLIENT_READ_TIMEOUT)
    return MTurkService(crowd_db, client, progress=False)


def test_dry_run_estimates_and_calls_nothing(service, fake, make_batch, argus_server):
    bid = make_batch(n_images=6, redundancy=2, tasks_per_visit=3, gold_rate=0.34)
    # 6 tasks x R=2 = 12 judgments; 3 tasks per visit of which 1 gold -> 2 real -> 6 visits
    assert service.planned_assignments(bid) == 6
    res = service.launch(bid, settings(argus_server, bid))
    assert res.dry_run and res.estimate.hit_sizes == (6,)
    assert res.estimate.total == Decimal("3.60")  # 6 x $0.50 + 20%
    assert sum(fake.requests.values()) == 0
    with pytest.raises(BudgetExceeded, match="max-budget"):
        service.launch(bid, settings(argus_server, bid), dry_run=False, max_budget="3.59")
    fake.balance = Decimal("1.00")
    with pytest.raises(BudgetExceeded, match="balance"):
        service.launch(bid, settings(argus_server, bid), dry_run=False)
    assert not fake.hits


@pytest.mark.parametrize("mode", ["drop", "timeout", "fault"])
def test_launch_converges_after_failures_without_duplicates(crowd_db, fake, make_batch, argus_server, mode):
    bid = make_batch(n_images=6, redundancy=3, tasks_per_visit=2, gold_rate=0.0)
    svc = one_shot_service(crowd_db, fake)
    plan = settings(argus_server, bid, assignments=18)  # two HITs of 9
    fake.inject("CreateHITWithHITType", "throttle")  # run 1: refused before MTurk applies anything
    with pytest.raises(MTurkError):
        svc.launch(bid, plan, dry_run=False)
    assert len(fake.hits) == 0
    fake.inject("CreateHITWithHITType", "pass", mode)  # run 2: HIT 1 ok, HIT 2 fails (drop/timeout: applied)
    with pytest.raises(MTurkError):
        svc.launch(bid, plan, dry_run=False)
    assert len(fake.hits) == (1 if mode == "fault" else 2)
    res = svc.launch(bid, plan, dry_run=False)  # run 3 converges
    assert len(res.hits) == 2 and res.created + res.recovered == 1
    res = svc.launch(bid, plan, dry_run=False)  # run 4 changes nothing
    assert res.created == 0 and res.recovered == 0
    assert sorted(h["MaxAssignments"] for h in fake.live_hits()) == [9, 9]
    with crowd_db.reading() as s:
        rows = s.scalars(select(MTurkHit).where(MTurkHit.batch_id == bid)).all()
    assert {r.hit_id for r in rows} == set(fake.hits) and all(r.state == HitState.live for r in rows)


def test_launch_recovers_hit_after_token_memory_expired(crowd_db, fake, make_batch, argus_server):
    """MTurk forgets tokens after 24 h: a HIT whose creation answer was lost is found by its
    annotation in ListHITs instead of being created a second time."""
    bid = make_batch(n_images=4, redundancy=1, tasks_per_visit=4, gold_rate=0.0)
    svc = one_shot_service(crowd_db, fake)
    fake.inject("CreateHITWithHITType", "drop")
    with pytest.raises(MTurkError):
        svc.launch(bid, settings(argus_server, bid), dry_run=False)
    assert len(fake.hits) == 1
    fake.hit_tokens.clear()  # 24 hours later
    res = svc.launch(bid, settings(argus_server, bid), dry_run=False)
    assert len(fake.hits) == 1 and res.recovered == 1 and res.hits[0]["hit_id"] in fake.hits


def test_sync_review_and_retake_blocking(service, fake, make_batch, argus_server, crowd_db):
    bid = make_batch(n_images=6, redundancy=2, tasks_per_visit=3, gold_rate=0.34)
    res = service.launch(bid, settings(argus_server, bid, study="pilot"), dry_run=False)
    hit = res.hits[0]["hit_id"]
    good = do_assignment(fake, hit, "AWGOOD", argus_server, good=True)
    bad = do_assignment(fake, hit, "AWBAD", argus_server, good=False)
    assert good["submit_status"] == bad["submit_status"] == 200
    report = service.sync(bid)
    assert report["Submitted"] == 2 and report["new"] == 2 and report["granted"] == 2
    # one gold answer each is no evidence: the safe review approves both, rejects and excludes nobody
    plan = {p["worker_id"]: p for p in service.plan_review(bid)}
    assert plan["AWGOOD"]["action"] == plan["AWBAD"]["action"] == "approve"
    assert "gold 100% of 1" in plan["AWGOOD"]["reason"] and "gold 0% of 1" in plan["AWBAD"]["reason"]
    # a person rejects the bad one by hand, then the review approves the rest
    # rejecting needs feedback and confirmation; OverrideRejection reverses it
    with pytest.raises(MTurkServiceError, match="feedback"):
        service.reject([bad["assignment_id"]], "bad", confirm=True)
    with pytest.raises(MTurkServiceError, match="confirmation"):
        service.reject([bad["assignment_id"]], "Most gold answers were wrong.")
    assert service.reject([bad["assignment_id"]], "Most gold answers were wrong.", confirm=True) == {
        bad["assignment_id"]: "rejected"}
    assert service.approve([bad["assignment_id"]], "Sorry, our mistake.", override_rejection=True) == {
        bad["assignment_id"]: "approved"}
    assert fake.assignments[bad["assignment_id"]]["AssignmentStatus"] == "Approved"
    assert [(p["worker_id"], p["outcome"]) for p in service.review(bid)] == [("AWGOOD", "approved")]
    statuses = {a["WorkerId"]: a["AssignmentStatus"] for a in fake.assignments.values()}
    assert statuses == {"AWGOOD": "Approved", "AWBAD": "Approved"}
    with crowd_db.reading() as s:
        good_visit = s.scalar(select(Visit).where(Visit.external_assignment_id == good["assignment_id"]))
    assert good_visit.status == VisitStatus.approved
    # a second batch of the same study hides from both workers; a new worker may take it
    bid2 = make_batch(n_images=2, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    hit2 = service.launch(bid2, settings(argus_server, bid2, study="pilot"), dry_run=False).hits[0]["hit_id"]
    assert fake.worker_can_accept(hit2, "AWGOOD") == "qualification"
    assert fake.worker_can_accept(hit2, "AWNEW") is None


def test_sync_reconciles_a_reissued_assignment(service, fake, make_batch, argus_server):
    """Worker A accepts and returns the HIT without opening it; MTurk re-issues the slot, with the
    same assignment id, to B, who does the work and is approved. (When A had opened the task
    first, see test_mturk_defects.py: B must never be credited with A's work.)"""
    bid = make_batch(n_images=4, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    hit = service.launch(bid, settings(argus_server, bid, assignments=1), dry_run=False).hits[0]["hit_id"]
    first = fake.accept(hit, "AWA")
    fake.return_assignment(first.split("assignmentId=")[1].split("&")[0])
    b = do_assignment(fake, hit, "AWB", argus_server)
    assert b["submit_status"] == 200 and b["assignment_id"] in first
    report = service.sync(bid)
    assert report["Submitted"] == 1 and report["not_submitted"] == 0 and "no_local_work" not in report
    assert service.status(bid)["assignments"] == {"Submitted": 1}
    plan = service.plan_review(bid)
    assert [(p["worker_id"], p["action"]) for p in plan] == [("AWB", "approve")]


def test_submission_without_local_work_is_flagged(service, fake, make_batch, argus_server):
    bid = make_batch(n_images=2, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    hit = service.launch(bid, settings(argus_server, bid, assignments=1), dry_run=False).hits[0]["hit_id"]
    url = fake.accept(hit, "AWSKIP")
    aid = url.split("assignmentId=")[1].split("&")[0]
    import requests

    assert requests.post(f"{fake.url}/mturk/externalSubmit", data={"assignmentId": aid}).status_code == 200
    assert service.sync(bid)["no_local_work"] == 1
    assert service.review(bid)[0]["outcome"].startswith("held")


def test_bonus_ledger_pays_once_after_lost_response(crowd_db, fake, make_batch, argus_server, service):
    bid = make_batch(n_images=4, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    hit = service.launch(bid, settings(argus_server, bid), dry_run=False).hits[0]["hit_id"]
    for w in ("AW1", "AW2"):
        do_assignment(fake, hit, w, argus_server)
    service.sync(bid)
    service.review(bid)
    plan = service.plan_bonuses(bid, amount="0.40")
    assert [p["amount"] for p in plan] == [Decimal("0.40")] * 2
    assert service.bonus(bid, plan, "Careful work")["planned"] == 2  # dry run
    assert fake.bonuses == []
    svc1 = one_shot_service(crowd_db, fake)
    fake.inject("SendBonus", "drop")  # W1's bonus is paid but the answer is lost
    with pytest.raises(MTurkError):
        svc1.bonus(bid, plan, "Careful work", dry_run=False)
    with crowd_db.reading() as s:
        rows = s.scalars(select(MTurkBonus).where(MTurkBonus.batch_id == bid)).all()
    assert [r.status for r in rows] == [BonusStatus.planned, BonusStatus.planned]  # ledger written first
    out = svc1.bonus(bid, plan, "Careful work", dry_run=False)
    assert out == dict(planned=2, paid_now=1, already_paid=1, total_usd=Decimal("0.80"), fees_usd=Decimal("0.16"))
    again = svc1.bonus(bid, service.plan_bonuses(bid, amount="0.40"), "Careful work", dry_run=False)
    assert again["paid_now"] == 0 and again["already_paid"] == 2
    assert sorted(b["WorkerId"] for b in fake.bonuses) == ["AW1", "AW2"]
    assert fake.requests["SendBonus"] == 2  # the re-run found W1's payment in ListBonusPayments
    with pytest.raises(MTurkServiceError, match="another --key"):
        svc1.bonus(bid, service.plan_bonuses(bid, amount="0.50"), "Careful work", dry_run=False)
    with pytest.raises(BudgetExceeded):
        svc1.bonus(bid, plan, "x", key="round2", dry_run=False, max_budget="0.50")


def test_block_notify_expire_delete(service, fake, make_batch, argus_server, crowd_db):
    bid = make_batch(n_images=4, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    hit = service.launch(bid, settings(argus_server, bid), dry_run=False).hits[0]["hit_id"]
    do_assignment(fake, hit, "AW1", argus_server)
    service.sync(bid)
    fake.inject("CreateWorkerBlock", "drop")
    assert service.block(["AW1"], "Copied answers") == {"AW1": "blocked"}
    assert service.block(["AW1"], "Copied answers") == {"AW1": "already blocked"}
    assert fake.blocks == {"AW1": "Copied answers"} and fake.worker_can_accept(hit, "AW1") == "blocked"
    with crowd_db.reading() as s:
        assert s.scalar(select(Worker).where(Worker.external_id == "AW1")).blocked
    workers = ["AW1"] + [f"AX{i:03d}" for i in range(249)]
    out = service.notify(workers, "Thanks", "A new batch is up.", bid)
    assert fake.requests["NotifyWorkers"] == 3 and out["sent"] == 1 and len(out["failures"]) == 249
    assert service.notify(workers, "Thanks", "A new batch is up.", bid)["skipped"] == 250
    assert fake.requests["NotifyWorkers"] == 3
    # delete only after expiry and review
    assert service.delete(bid)["waiting"] == [(hit, "not expired (run expire first)")]
    assert service.expire(bid) == 1 and fake.hits[hit]["HITStatus"] == "Reviewable"
    assert service.delete(bid)["waiting"] == [(hit, "has assignments to review")]
    service.review(bid)
    assert service.delete(bid)["deleted"] == 1 and fake.hits[hit]["HITStatus"] == "Disposed"
    with crowd_db.reading() as s:
        assert s.scalar(select(MTurkHit.state).where(MTurkHit.hit_id == hit)) == HitState.deleted
    assert service.review(bid) == [] and service.plan_review(bid) == []
    assert Decision.approve.value in service.status(bid)["decisions"]
