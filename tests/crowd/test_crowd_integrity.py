"""Identity, caps, MTurk visit keying, completion codes and retakes, on SQLite and PostgreSQL.

Each test is one attack or failure from the crowd-integrity review: a bare `?worker=` resuming
someone's visit, an assignment id re-issued by MTurk, one worker id hoarding the batch, an
early completion code, a retake after finishing."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from crowd import service as S
from crowd.db import get_database
from crowd.models import Assignment, AssignmentStatus, Task, Visit


def _visit_token(location: str) -> str:
    return re.search(r"/w/v/([^/]+)/", location).group(1)


def _vid(location: str) -> str:
    """The payload of the signed visit token in a redirect (its signature carries a timestamp)."""
    return _visit_token(location).split(".")[0]


def _visits(app) -> list[Visit]:
    with get_database(app).reading() as s:
        return s.scalars(select(Visit).order_by(Visit.id)).all()


def _links(client, h, batch_id, *workers):
    r = client.post(f"/api/batches/{batch_id}/links", json={"workers": list(workers)}, headers=h.AUTH)
    assert r.status_code == 201, r.get_json()
    return {link["worker"]: link for link in r.get_json()["links"]}


# ------------------------------------------------------------------------------- identity

def test_a_bare_worker_name_never_resumes_someone_elses_visit(app, client, h):
    b = h.create_batch(client, redundancy=2)
    alice = _links(client, h, b["id"], "alice")["alice"]
    assert alice["url"].startswith("http://localhost/w/") and "?wt=" in alice["url"]
    r = client.get(alice["url"].replace("http://localhost", ""))
    alice_token = _vid(r.location)
    # someone else types alice's name: a new anonymous worker, not alice's visit
    other = app.test_client().get(f"/w/{b['id']}?worker=alice")
    assert other.status_code == 302 and _vid(other.location) != alice_token
    visits = _visits(app)
    assert len(visits) == 2 and visits[0].worker_id != visits[1].worker_id
    with get_database(app).reading() as s:
        from crowd.models import Worker
        names = [s.get(Worker, v.worker_id).external_id for v in visits]
    assert names[0] == "alice" and names[1].startswith("anon-")
    # the JSON flow refuses a bare name outright
    r = client.post("/w/api/start", json={"batch": b["id"], "worker": "alice"})
    assert r.status_code == 400 and r.get_json()["field"] == "worker"
    # alice's own link resumes her visit
    assert _vid(client.get(alice["url"].replace("http://localhost", "")).location) == alice_token


def test_anonymous_ids_are_minted_by_the_server_and_kept_in_a_signed_cookie(app, client, h):
    b = h.create_batch(client, redundancy=2)
    first = client.get(f"/w/{b['id']}")
    cookie = first.headers["Set-Cookie"]
    assert "argus_worker=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert _vid(client.get(f"/w/{b['id']}").location) == _vid(first.location)  # same browser
    assert _vid(app.test_client().get(f"/w/{b['id']}").location) != _vid(first.location)
    forged = app.test_client()
    forged.set_cookie("argus_worker", "anon-0000000000000000", path="/w/")
    assert _vid(forged.get(f"/w/{b['id']}").location) not in {_vid(first.location)}
    assert len(_visits(app)) == 3
    # the JSON flow: a worker token comes back and resumes the same worker
    r = client.post("/w/api/start", json={"batch": b["id"]}).get_json()
    again = client.post("/w/api/start", json={"batch": b["id"], "worker_token": r["worker_token"]}).get_json()
    assert again["visit"] == r["visit"] and again["worker_id"] == r["worker_id"]


def test_worker_links_are_signed_for_one_batch(app, client, h):
    b1, b2 = h.create_batch(client), h.create_batch(client)
    token = _links(client, h, b1["id"], "bob")["bob"]["token"]
    r = client.post("/w/api/start", json={"batch": b2["id"], "worker_token": token})
    assert r.status_code == 403 and r.get_json()["field"] == "worker_token"
    assert "batch" in r.get_json()["message"]
    r = client.post("/w/api/start", json={"batch": b1["id"], "worker_token": token[:-2] + "xx"})
    assert r.status_code == 403 and r.get_json()["message"] == "invalid worker token"
    r = client.post(f"/api/batches/{b1['id']}/links", json={"workers": ["anon-1"]}, headers=h.AUTH)
    assert r.status_code == 400 and "anon-" in r.get_json()["message"]
    r = client.post(f"/api/batches/{b1['id']}/links", json={"count": 3}, headers=h.AUTH)
    assert r.status_code == 201 and len({link["worker"] for link in r.get_json()["links"]}) == 3


def test_provider_ids_resume_only_with_the_providers_per_visit_id(app, client, h):
    b = h.create_batch(client, redundancy=3)
    w = h.WorkerClient(client, b["id"], "x")
    alice = w.post("/w/api/start", {"batch": b["id"], "workerId": "A1ALICE", "assignmentId": "ASGALICE"})[1]
    # alice's worker id with another assignment id: a visit of its own, never alice's
    other = w.post("/w/api/start", {"batch": b["id"], "workerId": "A1ALICE", "assignmentId": "MADEUP1"})[1]
    assert other["visit"] != alice["visit"]
    again = w.post("/w/api/start", {"batch": b["id"], "workerId": "A1ALICE", "assignmentId": "ASGALICE"})[1]
    assert again["visit"] == alice["visit"]
    status, data = w.post("/w/api/start", {"batch": b["id"], "workerId": "A1ALICE"})
    assert status == 400 and data["field"] == "assignmentId"
    p1 = w.post("/w/api/start", {"batch": b["id"], "PROLIFIC_PID": "p1", "SESSION_ID": "s1", "STUDY_ID": "st"})[1]
    p1b = w.post("/w/api/start", {"batch": b["id"], "PROLIFIC_PID": "p1", "SESSION_ID": "guess", "STUDY_ID": "st"})[1]
    assert p1b["visit"] != p1["visit"]
    status, data = w.post("/w/api/start", {"batch": b["id"], "PROLIFIC_PID": "p1"})
    assert status == 400 and data["field"] == "SESSION_ID"


# ------------------------------------------------------------------------------- MTurk

def test_a_reissued_assignment_id_works_for_the_next_worker(app, client, h):
    b = h.create_batch(client, redundancy=1, limit=1)  # one task: the next worker can only get the returned one
    first = h.WorkerClient(client, b["id"], "first").start(workerId="A1FIRST", assignmentId="ASG1", hitId="H1")
    held = first.next()["task"]["id"]
    # the first worker returns the HIT; MTurk gives ASG1 to the next worker
    second = h.WorkerClient(client, b["id"], "second").start(workerId="A1SECOND", assignmentId="ASG1", hitId="H1")
    nxt = second.next()
    assert not nxt["done"] and nxt["task"]["id"] == held  # the returned task is free again
    status, res = second.submit(nxt["assignment_token"], h.answer_for(nxt["task"]))
    assert status == 201
    visits = _visits(app)
    assert [(v.status.value, v.completion, v.partial_reason, v.completion_code) for v in visits] == [
        ("completed", "partial", "returned", None), ("consented", None, None, None)]
    with get_database(app).reading() as s:
        assert set(S.check_invariants(s, b["id"]).values()) == {0}


def test_one_worker_id_with_made_up_assignments_cannot_hoard_the_batch(app, client, h):
    b = h.create_batch(client, redundancy=1)
    leased, refused = 0, []
    for i in range(20):
        w = h.WorkerClient(client, b["id"], "hoarder").start(workerId="A1HOARD", assignmentId=f"FAKE{i}")
        status, data = w.post("/w/api/next", {"visit_token": w.token})
        if status == 200 and not data["done"]:
            leased += 1
        else:
            refused.append((status, data["field"]))
    assert leased == 1 and set(refused) == {(409, "visit_token")}
    honest = h.WorkerClient(client, b["id"], "honest").start(workerId="A1HONEST", assignmentId="REAL1")
    assert not honest.next()["done"]


# ------------------------------------------------------------------------------- caps

def test_leases_per_address_are_capped(app, client, h):
    app.config["MAX_LEASES_PER_ADDRESS"] = 2
    b = h.create_batch(client, redundancy=3)
    got = []
    for _ in range(3):
        w = h.WorkerClient(app.test_client(), b["id"], "x")
        w.token = w.post("/w/api/start", {"batch": b["id"]})[1]["visit_token"]
        w.post("/w/api/consent", {"visit_token": w.token})
        got.append(w.post("/w/api/next", {"visit_token": w.token}))
    assert [s for s, _ in got] == [200, 200, 409]
    assert "network address" in got[2][1]["message"]


def test_lease_rate_is_limited_with_retry_after(app, client, h):
    app.config.update(LEASE_RATE_PER_WORKER=3, LEASE_RATE_WINDOW_S=60)
    b = h.create_batch(client, redundancy=1, tasks_per_visit=10)
    w = h.WorkerClient(client, b["id"], "fast").start()
    for i in range(3):
        nxt = w.next()
        assert w.submit(nxt["assignment_token"], h.answer_for(nxt["task"]))[0] == 201
    r = client.post("/w/api/next", json={"visit_token": w.token})
    assert r.status_code == 429 and 55 <= int(r.headers["Retry-After"]) <= 60
    assert r.get_json()["error"] == "RateLimited"
    app.config["LEASE_RATE_PER_ADDRESS"] = 2  # another worker from the same address
    other = h.WorkerClient(client, b["id"], "same-address").start()
    r = client.post("/w/api/next", json={"visit_token": other.token})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


# ------------------------------------------------------------------------------- completion

def test_the_completion_code_needs_the_quota_an_early_exit_gets_a_partial_code(app, client, h):
    b = h.create_batch(client, redundancy=2, tasks_per_visit=3)
    w = h.WorkerClient(client, b["id"], "early").start()
    nxt = w.next()
    w.submit(nxt["assignment_token"], h.answer_for(nxt["task"]))
    w.next()  # holds a second task, then leaves
    token = w.token
    page = client.get(f"/w/v/{token}/finish").get_data(as_text=True)
    code = re.search(r'id="completion-code" data-completion="partial">([^<]+)<', page).group(1)
    assert code.startswith("P-")
    done = w.post("/w/api/finish", {"visit_token": token})[1]
    assert (done["completion"], done["partial_reason"], done["completion_code"]) == ("partial", "early_exit", code)
    with get_database(app).reading() as s:
        assert s.scalar(select(func.count(Assignment.id)).where(Assignment.status == AssignmentStatus.leased)) == 0
        assert s.scalar(select(func.sum(Task.n_active))) == 0  # the held task went back
    full = h.WorkerClient(client, b["id"], "full").start()
    for _ in range(3):
        nxt = full.next()
        full.submit(nxt["assignment_token"], h.answer_for(nxt["task"]))
    out = full.post("/w/api/finish", {"visit_token": full.token})[1]
    assert out["completion"] == "full" and re.fullmatch(r"[0-9A-F]{8}", out["completion_code"])


def test_a_paused_batch_gives_a_partial_code_and_prolific_is_sent_to_the_partial_code(app, client, h):
    b = h.create_batch(client, redundancy=2, tasks_per_visit=3, prolific_completion_code="FULL1",
                       prolific_partial_code="PART1", prolific_screenout_code="SCREEN1")
    w = h.WorkerClient(client, b["id"], "p").start(PROLIFIC_PID="pp1", SESSION_ID="ss1", STUDY_ID="st")
    nxt = w.next()
    w.submit(nxt["assignment_token"], h.answer_for(nxt["task"]))
    client.patch(f"/api/batches/{b['id']}", json={"status": "paused"}, headers=h.AUTH)
    r = client.get(f"/w/v/{w.token}/task")
    assert r.status_code == 302 and r.location.endswith("/finish")
    r = client.get(r.location)
    assert r.status_code == 302 and r.location.endswith("cc=PART1")
    assert [(v.completion, v.partial_reason) for v in _visits(app)] == [("partial", "batch_paused")]


def test_a_failed_screening_ends_the_visit_screened_out(app, client, h):
    b = h.create_batch(client, redundancy=2, prolific_screenout_code="SCREEN1")
    lab = h.WorkerClient(client, b["id"], "lab").start()
    pro = h.WorkerClient(client, b["id"], "p").start(PROLIFIC_PID="pp2", SESSION_ID="ss2")
    with get_database(app).transaction() as s:
        for v in s.scalars(select(Visit)).all():
            S.end_visit(s, v, "screening_failed")
        try:
            S.end_visit(s, v, "bored")
        except S.ServiceError as exc:
            assert exc.field == "reason"
    visits = _visits(app)
    assert [(v.completion, v.partial_reason) for v in visits] == [("partial", "screening_failed")] * 2
    assert visits[0].completion_code.startswith("S-") and visits[1].completion_code == "SCREEN1"
    r = client.get(f"/w/v/{pro.token}/finish")
    assert r.location.endswith("cc=SCREEN1")
    assert lab.post("/w/api/next", {"visit_token": lab.token})[1]["done"] is True


# ------------------------------------------------------------------------------- retakes

def test_a_worker_who_finished_sees_you_are_done_and_no_new_visit(app, client, h):
    b = h.create_batch(client, redundancy=2, tasks_per_visit=1)
    link = _links(client, h, b["id"], "carol")["carol"]["url"].replace("http://localhost", "")
    token = _visit_token(client.get(link).location)
    client.post(f"/w/v/{token}/consent", data={"agree": "yes"})
    html = client.get(f"/w/v/{token}/task").get_data(as_text=True)
    atok = re.search(r'name="assignment_token" value="([^"]+)"', html).group(1)
    label = re.search(r'name="label" value="([^"]+)"', html).group(1)
    client.post(f"/w/v/{token}/task", data={"assignment_token": atok, "client_token": "c" * 12, "label": label})
    code = client.get(f"/w/v/{token}/finish").get_data(as_text=True)
    code = re.search(r'id="completion-code"[^>]*>([^<]+)<', code).group(1)
    again = client.get(link)
    page = again.get_data(as_text=True)
    assert again.status_code == 200 and 'id="done"' in page and code in page and "consent" not in page.lower()
    assert len(_visits(app)) == 1
    r = client.post("/w/api/start", json={"batch": b["id"], "worker_token": link.split("wt=")[1]})
    assert r.status_code == 409 and r.get_json()["error"] == "AlreadyDone"
    # MTurk: the same worker on another HIT of the batch is done too
    m = h.WorkerClient(client, b["id"], "m").start(workerId="A1DONE", assignmentId="ASGD1")
    nxt = m.next()
    m.submit(nxt["assignment_token"], h.answer_for(nxt["task"]))
    m.post("/w/api/finish", {"visit_token": m.token})
    r = client.get(f"/w/{b['id']}?workerId=A1DONE&assignmentId=ASGD2&hitId=H2")
    assert r.status_code == 200 and 'id="done"' in r.get_data(as_text=True)
    assert len(_visits(app)) == 2
