"""The MTurk adapter changes worker and visit statuses only through the crowd service's review
functions, so each change leaves the crowd server's own event next to the adapter's; its errors
are the crowd service's `ServiceError`."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crowd.models import Event, Visit, VisitStatus, Worker, WorkerStatus
from crowd.service import ServiceError
from crowd.providers.mturk_service import LaunchSettings, ReviewPolicy, WorkerQuality
from mturk_sim import do_assignment


def settings(server, batch_id):
    return LaunchSettings(entry_url=f"{server}/w/{batch_id}", title="Label small images",
                          description="Pick the class of each image", allow_http=True)


def _events(db, worker_id: int) -> list[str]:
    with db.reading() as s:
        return list(s.scalars(select(Event.type).where(Event.worker_id == worker_id).order_by(Event.id)))


def _worker(db, external_id: str) -> Worker:
    with db.reading() as s:
        return s.scalar(select(Worker).where(Worker.external_id == external_id))


def test_flag_reject_block_unblock_go_through_the_review_functions(service, fake, make_batch, argus_server, crowd_db):
    bid = make_batch(n_images=6, redundancy=2, tasks_per_visit=3, gold_rate=0.34)
    hit = service.launch(bid, settings(argus_server, bid), dry_run=False).hits[0]["hit_id"]
    bad = do_assignment(fake, hit, "AWBAD", argus_server, good=False)
    do_assignment(fake, hit, "AWFLAG", argus_server, good=False)
    service.sync(bid)
    quality = {"AWFLAG": WorkerQuality(flagged=True, action="reject", reasons="gold accuracy 0.00 (0 of 6 parts)"),
               "AWBAD": WorkerQuality(gold_n=1, gold_accuracy=0.0)}
    out = service.review(bid, ReviewPolicy(reject_below=0.5, min_gold=1), quality, confirm_rejections=True)
    assert sorted((p["worker_id"], p["outcome"]) for p in out) == [
        ("AWBAD", "rejected"), ("AWFLAG", "approved"), ("AWFLAG", "excluded from later batches")]
    w = _worker(crowd_db, "AWFLAG")
    assert w.status == WorkerStatus.flagged and w.note == "gold accuracy 0.00 (0 of 6 parts)"
    assert _events(crowd_db, w.id)[-2:] == ["worker_flag", "mturk_flag"]

    feedback = "0 of 1 check questions with known answers were answered correctly (0%); this study required at least 50%."
    with crowd_db.reading() as s:
        visit = s.scalar(select(Visit).where(Visit.external_assignment_id == bad["assignment_id"]))
    assert visit.status == VisitStatus.rejected and visit.review_note == feedback

    service.block(["AWBAD"], "Copied answers")
    w = _worker(crowd_db, "AWBAD")
    assert (w.blocked, w.status, w.note) == (True, WorkerStatus.blocked, "Copied answers")
    assert _events(crowd_db, w.id)[-2:] == ["worker_block", "mturk_block"]
    service.unblock(["AWBAD"])
    w = _worker(crowd_db, "AWBAD")
    assert (w.blocked, w.status, w.note) == (False, WorkerStatus.active, "Copied answers")
    assert _events(crowd_db, w.id)[-1] == "worker_unblock"


def test_sync_records_mturk_outcome_whatever_the_local_state(service, fake, make_batch, argus_server, crowd_db):
    """A worker who submits on MTurk without finishing locally still gets MTurk's outcome."""
    bid = make_batch(n_images=2, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    hit = service.launch(bid, settings(argus_server, bid), dry_run=False).hits[0]["hit_id"]
    done = do_assignment(fake, hit, "AW1", argus_server)
    with crowd_db.transaction() as s:  # as if the local finish never happened
        s.scalar(select(Visit).where(Visit.external_assignment_id == done["assignment_id"])).status = VisitStatus.consented
    fake.assignments[done["assignment_id"]]["AssignmentStatus"] = "Approved"  # auto-approval on MTurk
    service.sync(bid)
    with crowd_db.reading() as s:
        visit = s.scalar(select(Visit).where(Visit.external_assignment_id == done["assignment_id"]))
    assert visit.status == VisitStatus.approved


def test_adapter_errors_are_service_errors(service):
    with pytest.raises(ServiceError, match="reject_below"):
        service.plan_review(1, ReviewPolicy(reject_below=1.5))
