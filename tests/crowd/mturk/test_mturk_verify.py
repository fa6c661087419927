"""MTurk visits are verified against MTurk before their answers count: a genuine assignment is
confirmed (ListAssignmentsForHIT, or GetAssignment when sync has not seen it), a made-up one
is refused, and the export flags every MTurk answer with the outcome, never silently."""

from __future__ import annotations

import datetime as dt
import io

import pandas as pd
import requests
from sqlalchemy import select

from crowd import service as S
from crowd.models import Visit, Worker
from crowd.providers.mturk_service import LaunchSettings, MTurkService
from mturk_sim import do_assignment


def test_made_up_assignments_are_refused_and_exported_flagged(crowd_db, fake, fake_client, make_batch, argus_server,
                                                             crowd_app):
    bid = make_batch(n_images=4, redundancy=3, tasks_per_visit=2, gold_rate=0.5)  # the 2nd task is gold
    svc = MTurkService(crowd_db, fake_client, progress=False)
    svc.launch(bid, LaunchSettings(entry_url=f"{argus_server}/w/{bid}", allow_http=True, title="Label images",
                                   description="Pick the class", assignments=4, per_hit=4), dry_run=False)
    hit_id = fake.hits and next(iter(fake.hits))
    honest = do_assignment(fake, hit_id, "A1HONEST", argus_server)
    assert honest["submit_status"] == 200
    # an attacker types another worker's id (A1VICTIM) with a made-up assignment id, and answers
    url = f"{argus_server}/w/api/start"
    start = requests.post(url, json={"batch": bid, "workerId": "A1VICTIM", "assignmentId": "MADEUPASSIGNMENT0001",
                                     "hitId": hit_id}, timeout=10).json()
    token = start["visit_token"]
    requests.post(f"{argus_server}/w/api/consent", json={"visit_token": token}, timeout=10)
    for i in range(2):  # wrong on purpose, gold included, to spoil the victim's gold score
        nxt = requests.post(f"{argus_server}/w/api/next", json={"visit_token": token}, timeout=10).json()
        r = requests.post(f"{argus_server}/w/api/submit", json={"assignment_token": nxt["assignment_token"],
                          "client_token": f"attacker-000{i}", "answer": {"label": "dog"}}, timeout=10)
        assert r.status_code == 201
    with crowd_db.reading() as s:
        victim = s.scalar(select(Worker).where(Worker.external_id == "A1VICTIM"))
        assert (victim.gold_total, victim.gold_correct) == (1, 0.0)
    requests.post(f"{argus_server}/w/api/finish", json={"visit_token": token}, timeout=10)

    report = svc.sync(bid)  # the honest visit is on MTurk's list; the made-up one not yet judged
    assert (report["verified"], report["refused"], report["unchecked"]) == (0, 0, 1)
    later = S.utcnow() + dt.timedelta(hours=2)
    assert svc.verify_visits(bid, now=later) == {"verified": 0, "refused": 1, "unchecked": 0}
    with crowd_db.reading() as s:
        checks = {v.external_assignment_id: (v.mturk_check, v.mturk_check_note) for v in s.scalars(select(Visit))}
    assert checks[honest["assignment_id"]][0] == "verified"
    assert checks["MADEUPASSIGNMENT0001"][0] == "refused" and "does not exist" in checks["MADEUPASSIGNMENT0001"][1]
    with crowd_db.reading() as s:  # the refused visit's gold answer no longer counts for the victim
        assert s.scalar(select(Worker.gold_total).where(Worker.external_id == "A1VICTIM")) == 0

    with crowd_app.app_context(), crowd_db.reading() as s:
        rows = pd.DataFrame(S.iter_judgment_rows(s, bid))
    by_visit = rows.groupby("mturk_check")["label"].agg(list).to_dict()
    assert by_visit == {"refused": ["dog", "dog"], "verified": ["cat", "cat"]}
    # an unseen genuine assignment (submitted after the last sync) is verified by GetAssignment
    late = do_assignment(fake, hit_id, "A1LATE", argus_server)
    assert svc.verify_visits(bid) == {"verified": 1, "refused": 0, "unchecked": 0}
    with crowd_db.reading() as s:
        v = s.scalar(select(Visit).where(Visit.external_assignment_id == late["assignment_id"]))
        assert (v.mturk_check, v.mturk_check_note) == ("verified", "GetAssignment Submitted")
    buf = io.StringIO()
    with crowd_app.app_context(), crowd_db.reading() as s:
        pd.DataFrame(S.iter_judgment_rows(s, bid)).to_csv(buf, index=False)
    assert "mturk_check" in buf.getvalue().splitlines()[0]
