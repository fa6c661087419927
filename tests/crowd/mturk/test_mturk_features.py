"""Requester features against the fake MTurk: extending HITs, a compensation HIT for one worker,
revoking qualifications, grading qualification requests, Masters and approval requirements,
event notifications, and throttling."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from crowd.providers.mturk_client import QUAL_MASTERS, QUAL_NUMBER_APPROVED, QUAL_PERCENT_APPROVED, MTurkClient, MTurkError
from crowd.providers.mturk_models import MTurkHit
from crowd.providers.mturk_service import LaunchSettings, MTurkService, MTurkServiceError
from fake_mturk import FakeMTurk
from mturk_sim import do_assignment


def settings(server, batch_id, **kw):
    return LaunchSettings(entry_url=f"{server}/w/{batch_id}", title="Label small images",
                          description="Pick the class of each image", allow_http=True, **kw)


def one_shot(crowd_db, fake):
    client = MTurkClient.connect("sandbox", endpoint_url=fake.url, max_attempts=1)  # no "timeout" injected here
    return MTurkService(crowd_db, client, progress=False)


def test_extend_adds_assignments_and_time_exactly_once(crowd_db, fake, make_batch, argus_server):
    bid = make_batch(n_images=4, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    svc = one_shot(crowd_db, fake)
    (hit,) = [h["hit_id"] for h in svc.launch(bid, settings(argus_server, bid, assignments=3), dry_run=False).hits]
    for w in ("AW1", "AW2", "AW3"):
        fake.accept(hit, w)
    assert fake.worker_can_accept(hit, "AW4") == "not assignable"
    svc.expire(bid)
    plan = svc.extend(bid, add_assignments=2, extend_s=86400)  # dry run: 2 x ($0.50 + 20%)
    assert plan["cost_usd"] == Decimal("1.20") and plan["hits"][0]["max_after"] == 5 and not fake.extension_tokens
    fake.inject("CreateAdditionalAssignmentsForHIT", "drop")  # applied, answer lost
    with pytest.raises(MTurkError):
        svc.extend(bid, add_assignments=2, extend_s=86400, dry_run=False)
    fake.inject("UpdateExpirationForHIT", "drop")  # the new expiry applied, answer lost
    with pytest.raises(MTurkError):
        svc.extend(bid, add_assignments=2, extend_s=86400, dry_run=False)
    out = svc.extend(bid, add_assignments=2, extend_s=86400, dry_run=False)  # repeats refused, read back
    assert out["hits"][0]["outcome"] == "extended"
    assert fake.hits[hit]["MaxAssignments"] == 5 and fake.applied["CreateAdditionalAssignmentsForHIT"] == 1
    assert fake.worker_can_accept(hit, "AW4") is None  # live again, with room
    assert svc.extend(bid, add_assignments=2, extend_s=86400, dry_run=False)["hits"][0]["outcome"] == "already extended"
    with crowd_db.reading() as s:
        assert s.scalar(select(MTurkHit.max_assignments).where(MTurkHit.hit_id == hit)) == 5
    # MTurk refuses to take a HIT of < 10 assignments to >= 10: refused here before any call
    before = sum(fake.requests.values())
    with pytest.raises(MTurkServiceError, match="InvalidMaximumAssignmentsIncrease"):
        svc.extend(bid, add_assignments=5, key="more", dry_run=False)
    assert sum(fake.requests.values()) == before


def test_compensation_hit_for_one_worker(service, fake, make_batch, argus_server):
    bid = make_batch(n_images=4, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    hit = service.launch(bid, settings(argus_server, bid), dry_run=False).hits[0]["hit_id"]
    fake.accept(hit, "AW2")
    fake.inject("externalSubmit", "fault")
    do_assignment(fake, hit, "AW1", argus_server)  # AW1's work never reached MTurk
    reason = "Your submission did not reach MTurk; this HIT pays you for the work you did."
    plan = service.compensate("AW1", "1.50", reason)
    assert (plan["cost_usd"], plan["status"]) == (Decimal("1.80"), "planned") and not fake.notifications
    out = service.compensate("AW1", "1.50", reason, dry_run=False)
    comp = out["hit_id"]
    assert out["status"] == "live" and fake.hits[comp]["Reward"] == "1.50"
    assert fake.worker_can_accept(comp, "AW2") == "qualification"  # nobody else can see it
    assert fake.worker_can_accept(comp, "AW1") is None
    (note,) = [n for n in fake.notifications if n["WorkerIds"] == ["AW1"]]
    assert out["url"] in note["MessageText"] and "workersandbox.mturk.com/projects/" in out["url"]
    url = fake.accept(comp, "AW1")
    fake.submit_answer(url.split("assignmentId=")[1].split("&")[0], {"confirm": "OK"})
    balance = fake.balance
    assert service.compensate("AW1", "1.50", reason, dry_run=False)["status"] == "paid"
    assert balance - fake.balance == Decimal("1.80")
    mutating = {op: fake.applied[op] for op in ("CreateHITWithHITType", "ApproveAssignment", "NotifyWorkers")}
    assert service.compensate("AW1", "1.50", reason, dry_run=False)["status"] == "paid"
    assert {op: fake.applied[op] for op in mutating} == mutating
    with pytest.raises(MTurkServiceError, match="another --key"):
        service.compensate("AW1", "2.00", reason, dry_run=False)


def test_revoke_a_qualification_and_sync_does_not_grant_it_again(service, fake, make_batch, argus_server):
    bid = make_batch(n_images=2, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    service.launch(bid, settings(argus_server, bid, study="pilot"), dry_run=False)
    do_assignment(fake, next(iter(fake.hits)), "AW1", argus_server)
    assert service.sync(bid)["granted"] == 1
    qual = service.qualification_id(study="pilot")
    bid2 = make_batch(n_images=2, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    hit2 = service.launch(bid2, settings(argus_server, bid2, study="pilot"), dry_run=False).hits[0]["hit_id"]
    assert fake.worker_can_accept(hit2, "AW1") == "qualification"
    assert service.revoke(qual, ["AW1"], "Retake allowed") == {"AW1": "revoked"}
    assert fake.worker_quals[(qual, "AW1")]["Status"] == "Revoked"
    assert fake.worker_can_accept(hit2, "AW1") is None
    assert service.sync(bid).get("granted", 0) == 0  # taken back on purpose: not granted again
    assert service.revoke(qual, ["AW1"]) == {"AW1": "already revoked"}
    with pytest.raises(MTurkServiceError, match="exactly one"):
        service.qualification_id(study="pilot", low_quality=True)


def test_list_and_grade_qualification_requests(service, fake, fake_client):
    test = "<QuestionForm>...</QuestionForm>"
    qual = fake_client.ensure_qualification_type("Argus qualification test: pilot", "A short test", test=test)
    r1 = fake.request_qualification(qual, "AW1", "<QuestionFormAnswers>a</QuestionFormAnswers>")
    r2 = fake.request_qualification(qual, "AW2", "<QuestionFormAnswers>b</QuestionFormAnswers>")
    pending = service.qualification_requests(qual)
    assert sorted((r["request_id"], r["worker_id"]) for r in pending) == sorted([(r1, "AW1"), (r2, "AW2")])
    assert {r["answer"] for r in pending} == {"<QuestionFormAnswers>a</QuestionFormAnswers>",
                                              "<QuestionFormAnswers>b</QuestionFormAnswers>"}
    with pytest.raises(MTurkServiceError, match="reason"):
        service.grade_requests(rejects={r2: " "})
    out = service.grade_requests(grants={r1: 80}, rejects={r2: "Two of the three test answers were wrong."})
    assert out == {r1: "granted (80)", r2: "rejected"}
    assert fake.worker_quals[(qual, "AW1")]["IntegerValue"] == 80 and (qual, "AW2") not in fake.worker_quals
    assert service.grade_requests(grants={r1: 80}) == {r1: "not pending (decided earlier)"}


def test_masters_and_approval_requirements_with_their_fee(service, fake, make_batch, argus_server):
    bid = make_batch(n_images=4, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    plan = settings(argus_server, bid, assignments=2, masters=True, min_approved_hits=500, min_approval_rate=98)
    res = service.launch(bid, plan, dry_run=False)
    assert res.estimate.fees == Decimal("0.26")  # 25% of $0.50 = $0.125 -> $0.13 per assignment
    reqs = {r["QualificationTypeId"]: r for r in fake.hits[res.hits[0]["hit_id"]]["QualificationRequirements"]}
    assert reqs[QUAL_MASTERS["sandbox"]]["Comparator"] == "Exists"
    assert reqs[QUAL_NUMBER_APPROVED]["IntegerValues"] == [500]
    assert reqs[QUAL_PERCENT_APPROVED]["IntegerValues"] == [98]
    for w in ("AW1", "AW2"):
        do_assignment(fake, res.hits[0]["hit_id"], w, argus_server)
    service.sync(bid)
    service.review(bid)
    assert fake.balance == Decimal("10000.00") - 2 * Decimal("0.63")  # MTurk charged the Masters fee


def test_event_notifications_to_sns_and_sqs(service, fake, make_batch, argus_server):
    bid = make_batch(n_images=2, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    res = service.launch(bid, settings(argus_server, bid), dry_run=False)
    arn = "arn:aws:sns:us-east-1:123456789012:argus-events"
    rows = service.notifications(bid, arn, "SNS", ["AssignmentSubmitted", "HITReviewable"], test=True)
    assert [r["hit_type_id"] for r in rows] == [res.hit_type_id]
    setting = fake.notification_settings[res.hit_type_id]
    assert setting == {"Notification": {"Destination": arn, "Transport": "SNS", "Version": "2014-08-15",
                                        "EventTypes": ["AssignmentSubmitted", "HITReviewable"]}, "Active": True}
    assert fake.test_events[0]["TestEventType"] == "Ping"
    queue = "https://sqs.us-east-1.amazonaws.com/123456789012/argus-events"
    service.notifications(bid, queue, "SQS", ["AssignmentReturned"])
    assert fake.notification_settings[res.hit_type_id]["Notification"]["Transport"] == "SQS"
    service.notifications(bid, active=False)
    assert fake.notification_settings[res.hit_type_id]["Active"] is False
    before = sum(fake.requests.values())
    for bad in [dict(destination="arn:aws:sqs:us-east-1:123456789012:q", transport="SNS"),
                dict(destination=queue, transport="Email"),
                dict(destination=arn, transport="SNS", events=["Ping"])]:
        with pytest.raises(MTurkServiceError):
            service.notifications(bid, **bad)
    assert sum(fake.requests.values()) == before


def test_throttling_is_absorbed_by_adaptive_retries(crowd_db, make_batch, argus_server):
    fake = FakeMTurk(rate_limit=(15.0, 3))  # MTurk answers ThrottlingException "Rate exceeded" beyond its rate
    fake.start()
    try:
        client = MTurkClient.connect("sandbox", endpoint_url=fake.url, retry_mode="adaptive", max_attempts=10)
        svc = MTurkService(crowd_db, client, progress=False)
        bid = make_batch(n_images=6, redundancy=3, tasks_per_visit=1, gold_rate=0.0)
        res = svc.launch(bid, settings(argus_server, bid, per_hit=2), dry_run=False)
        assert len(res.hits) == 9 and len(fake.hits) == 9
        assert sum(fake.requests.values()) > sum(fake.applied.values())  # some calls were throttled ...
        assert fake.applied["CreateHITWithHITType"] == 9  # ... and none applied twice
    finally:
        fake.stop()
