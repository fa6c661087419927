"""Safe review: by default approve and exclude low-quality workers from later batches (the
analysis package's worker-quality model decides who is low quality); reject only under an
explicit --reject-below with enough scored gold answers, the reason shown to the worker; the dry
run lists every approve, reject, exclude and bonus with its reason and cost."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from argus.pipelines.mturk_review import mturk_worker_quality
from crowd.models import Worker, WorkerStatus
from crowd.providers.mturk_service import LOW_QUALITY_QUALIFICATION, LaunchSettings, MTurkServiceError, ReviewPolicy
from mturk_sim import do_assignment

GOOD, BAD = ("AW1", "AW2", "AW3"), "AW4"


def settings(server, batch_id, **kw):
    return LaunchSettings(entry_url=f"{server}/w/{batch_id}", title="Label small images",
                          description="Pick the class of each image", allow_http=True, **kw)


@pytest.fixture
def worked_batch(service, fake, make_batch, argus_server):
    """Four workers, six gold questions each: three answer every gold question right, AW4 none."""
    bid = make_batch(n_images=16, redundancy=2, tasks_per_visit=10, gold_rate=0.6, n_gold=6)
    hit = service.launch(bid, settings(argus_server, bid, assignments=4, study="quality"), dry_run=False).hits[0]["hit_id"]
    for w in GOOD + (BAD,):
        assert do_assignment(fake, hit, w, argus_server, good=w != BAD)["submit_status"] == 200
    service.sync(bid)
    return bid


def by_worker(plan):
    out = {}
    for p in plan:
        out.setdefault(p["worker_id"], []).append(p["action"])
    return out


def test_quality_comes_from_the_analysis_model(crowd_db, worked_batch):
    q = mturk_worker_quality(crowd_db, worked_batch)
    assert {w: (q[w].gold_n, q[w].gold_accuracy) for w in q} == {
        "AW1": (6, 1.0), "AW2": (6, 1.0), "AW3": (6, 1.0), "AW4": (6, 0.0)}
    assert q[BAD].flagged and q[BAD].action == "reject" and "gold accuracy 0.00 (0 of 6 parts)" in q[BAD].reasons
    assert not any(q[w].flagged for w in GOOD)


def test_default_review_approves_everyone_and_excludes_the_flagged_worker(service, fake, crowd_db, worked_batch,
                                                                          make_batch, argus_server):
    quality = mturk_worker_quality(crowd_db, worked_batch)
    plan = service.review(worked_batch, quality=quality, dry_run=True)
    assert by_worker(plan) == {w: ["approve"] for w in GOOD} | {BAD: ["approve", "exclude"]}
    assert {p["cost_usd"] for p in plan if p["action"] == "approve"} == {Decimal("0.60")}  # $0.50 + 20%
    assert all(p["reason"] for p in plan) and not any(p["action"] == "reject" for p in plan)
    assert {a["AssignmentStatus"] for a in fake.assignments.values()} == {"Submitted"}  # a dry run
    service.review(worked_batch, quality=quality)
    assert {a["AssignmentStatus"] for a in fake.assignments.values()} == {"Approved"}  # nobody rejected ...
    (lowq,) = [q for q, t in fake.qual_types.items() if t["Name"] == LOW_QUALITY_QUALIFICATION]
    assert [w for (q, w), v in fake.worker_quals.items() if q == lowq and v["Status"] == "Granted"] == [BAD]
    with crowd_db.reading() as s:
        assert s.scalar(select(Worker.status).where(Worker.external_id == BAD)) == WorkerStatus.flagged
    # ... and the next batch hides from the excluded worker
    bid2 = make_batch(n_images=2, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    hit2 = service.launch(bid2, settings(argus_server, bid2), dry_run=False).hits[0]["hit_id"]
    assert fake.worker_can_accept(hit2, BAD) == "qualification" and fake.worker_can_accept(hit2, "AW1") is None
    assert service.review(worked_batch, quality=quality) == []  # nothing left to do


def test_rejection_needs_the_threshold_enough_gold_and_confirmation(service, fake, crowd_db, worked_batch):
    quality = mturk_worker_quality(crowd_db, worked_batch)
    # not enough scored gold answers: no rejection, whatever the threshold
    plan = service.plan_review(worked_batch, ReviewPolicy(reject_below=0.5, min_gold=7), quality)
    assert by_worker(plan)[BAD] == ["approve", "exclude"]
    policy = ReviewPolicy(reject_below=0.5, min_gold=5, feedback="Sorry.", bonus="0.25", bonus_min_gold=0.9)
    plan = service.plan_review(worked_batch, policy, quality)
    assert by_worker(plan) == {w: ["approve", "bonus"] for w in GOOD} | {BAD: ["reject"]}
    (rej,) = [p for p in plan if p["action"] == "reject"]
    assert rej["feedback"] == ("Sorry. 0 of 6 check questions with known answers were answered correctly (0%); "
                               "this study required at least 50%.") and rej["cost_usd"] == Decimal("0.00")
    assert {p["cost_usd"] for p in plan if p["action"] == "bonus"} == {Decimal("0.30")}  # $0.25 + $0.05
    with pytest.raises(MTurkServiceError, match="confirmation"):
        service.review(worked_batch, policy, quality)
    assert {a["AssignmentStatus"] for a in fake.assignments.values()} == {"Submitted"}
    out = service.review(worked_batch, policy, quality, confirm_rejections=True)
    assert {(p["worker_id"], p["action"], p["outcome"]) for p in out if p["worker_id"] == BAD} == {
        (BAD, "reject", "rejected")}
    statuses = {a["WorkerId"]: (a["AssignmentStatus"], a.get("RequesterFeedback")) for a in fake.assignments.values()}
    assert statuses[BAD] == ("Rejected", rej["feedback"])  # the reason is what the worker reads
    assert sorted(b["WorkerId"] for b in fake.bonuses) == list(GOOD)
    # a re-run pays no bonus twice and decides nothing again
    assert service.review(worked_batch, policy, quality, confirm_rejections=True) == []
    assert len(fake.bonuses) == 3


def test_submission_without_work_here_is_held(service, fake, make_batch, argus_server):
    bid = make_batch(n_images=2, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    hit = service.launch(bid, settings(argus_server, bid, assignments=1), dry_run=False).hits[0]["hit_id"]
    aid = fake.accept(hit, "AWSKIP").split("assignmentId=")[1].split("&")[0]
    import requests

    assert requests.post(f"{fake.url}/mturk/externalSubmit", data={"assignmentId": aid}).status_code == 200
    service.sync(bid)
    (item,) = service.review(bid)
    assert item["action"] == "hold" and item["outcome"].startswith("held")
    assert fake.assignments[aid]["AssignmentStatus"] == "Submitted"
    assert service.status(bid)["flagged"][0]["assignment_id"] == aid
