"""The worker pages over HTTP (both backends): practice with known answers, feedback and a pass
mark (failing ends the visit with a partial code, passing is remembered across batches), blind
rating by default (recorded in the export), "can't tell" on label tasks, plain-language errors
without JavaScript."""

from __future__ import annotations

import re

from sqlalchemy import select

from crowd.db import get_database
from crowd.models import Event, Visit

PRACTICE = [
    {"sheet": "s1", "kind": "label", "answer": {"label": "apple"}, "explain": "The red round fruit is an apple."},
    {"sheet": "s2", "kind": "label", "answer": {"label": "banana"}, "explain": "Long and yellow: a banana."},
]


def _visit(client, batch_id, worker):
    from crowd.tokens import make_worker_token

    with client.application.app_context():
        link = make_worker_token(worker, batch_id)
    r = client.get(f"/w/{batch_id}?wt={link}")
    token = re.search(r"/w/v/([^/]+)/", r.location).group(1)
    assert client.post(f"/w/v/{token}/consent", data={"agree": "yes"}).status_code == 302
    return token


def _check(client, token, index, answer):
    r = client.post("/w/api/practice", json={"visit_token": token, "index": index, "answer": answer})
    return r.status_code, r.get_json()


def test_practice_feedback_pass_mark_and_partial_code(client, h, app):
    b = h.create_batch(client, kind="label", redundancy=2, tasks_per_visit=2, practice=PRACTICE, practice_pass=1.0)
    token = _visit(client, b["id"], "p1")
    page = client.get(f"/w/v/{token}/instructions").get_data(as_text=True)
    assert "Practice 1 of 2" in page and "you need\n100% of the practice right" in page
    assert 'id="start"' in page and "hidden>Start the tasks" in page  # no start before the practice
    assert client.get(f"/w/v/{token}/task").location.endswith("/instructions")
    status, data = client.post("/w/api/next", json={"visit_token": token}).status_code, None
    assert status == 403

    status, data = _check(client, token, 0, {"label": "apple"})
    assert status == 200
    assert (data["correct"], data["score"], data["counted"], data["checked"], data["of"], data["state"]) == \
        (True, 1.0, True, 1, 2, "pending")
    assert data["feedback"] == "Right: the image shows apple. The red round fruit is an apple."
    status, data = _check(client, token, 0, {"label": "cherry"})  # a second try teaches, does not count
    assert (data["correct"], data["counted"], data["checked"]) == (False, False, 1)
    assert data["feedback"] == "Not quite: the image shows apple. The red round fruit is an apple."
    status, data = _check(client, token, 1, {"label": "cant_tell"})
    assert (data["correct"], data["state"], data["share"]) == (False, "failed", 0.5)
    assert data["feedback"] == "Not quite: the image shows banana. Long and yellow: a banana."

    # failing ends the visit with a partial completion and a code; no tasks, no second try
    with get_database(app).reading() as s:
        visit = s.scalar(select(Visit))
        assert (visit.status.value, visit.completion, visit.partial_reason) == ("completed", "partial", "screening_failed")
        code = visit.completion_code
    assert re.fullmatch(r"S-[0-9A-F]{8}", code)  # a screen-out code, never the completion code
    fin = client.get(data["finish_url"]).get_data(as_text=True)
    assert code in fin and "not a good fit" in fin
    assert client.get(f"/w/v/{token}/task").location.endswith("/finish")
    status, again = _check(client, token, 0, {"label": "apple"})
    assert status == 409 and again["field"] == "practice"
    # coming back to the same batch gets no new visit, so no other try: the "you are done" page
    with client.application.app_context():
        from crowd.tokens import make_worker_token
        again = client.get(f"/w/{b['id']}?wt={make_worker_token('p1', b['id'])}")
    assert again.status_code == 200 and 'id="done"' in again.get_data(as_text=True) and code in again.get_data(as_text=True)


def test_passing_is_remembered_across_batches(client, h, app):
    app.config["MAX_LEASES_PER_WORKER"] = 2  # p2 still holds batch 1's task when it opens batch 2
    b1 = h.create_batch(client, kind="label", redundancy=2, tasks_per_visit=1, practice=PRACTICE, practice_pass=0.5)
    token = _visit(client, b1["id"], "p2")
    assert _check(client, token, 0, {"label": "cherry"})[1]["state"] == "pending"
    status, data = _check(client, token, 1, {"label": "banana"})
    assert (data["state"], data["share"]) == ("passed", 0.5)  # 1 of 2 meets a pass mark of 50%
    page = client.get(f"/w/v/{token}/task").get_data(as_text=True)
    assert "Task 1 of 1" in page
    # the next batch with the same practice (same key) starts without it
    b2 = h.create_batch(client, kind="label", redundancy=2, tasks_per_visit=1, practice=PRACTICE)
    token2 = _visit(client, b2["id"], "p2")
    page = client.get(f"/w/v/{token2}/instructions").get_data(as_text=True)
    assert "You have passed the practice" in page and 'data-practice="1"' not in page
    assert "Task 1 of 1" in client.get(f"/w/v/{token2}/task").get_data(as_text=True)
    # ... but someone else still has to do it
    token3 = _visit(client, b2["id"], "p3")
    assert client.get(f"/w/v/{token3}/task").location.endswith("/instructions")
    with get_database(app).reading() as s:
        kinds = [e.type for e in s.scalars(select(Event).where(Event.type.like("practice%")).order_by(Event.id))]
    assert kinds == ["practice_answer", "practice_answer", "practice_passed"]


def test_practice_without_javascript(client, h):
    b = h.create_batch(client, kind="label", redundancy=2, tasks_per_visit=1, practice=PRACTICE[:1])
    token = _visit(client, b["id"], "p4")
    r = client.post(f"/w/v/{token}/practice", data={"index": "0"})  # nothing chosen
    page = r.get_data(as_text=True)
    assert r.status_code == 400 and "Please choose one of the classes" in page and "answer.label" not in page
    r = client.post(f"/w/v/{token}/practice", data={"index": "0", "label": "apple"})
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and "Right: the image shows apple." in page and "You passed the practice" in page


def test_practice_definitions_are_checked(client, h):
    for bad, field in [([{"sheet": "s9", "kind": "label", "answer": {"label": "apple"}}], "practice.0"),
                       ([{"sheet": "s1", "kind": "label", "answer": {"label": "kiwi"}}], "practice.0.gold.label"),
                       ([], "practice")]:
        r = client.post("/api/batches", json={"sheets_dir": str(h.SHEETS), "kind": "label", "practice": bad},
                        headers=h.AUTH)
        assert r.status_code == 400 and r.get_json()["field"] == field, r.get_json()
    r = client.post("/api/batches", json={"sheets_dir": str(h.SHEETS), "kind": "label", "practice": PRACTICE,
                                          "practice_pass": 1.5}, headers=h.AUTH)
    assert r.status_code == 400 and r.get_json()["field"] == "practice_pass"


def test_rating_is_blind_unless_the_batch_asks_and_the_export_says_which(client, h):
    blind = h.create_batch(client, kind="rate_arguments", redundancy=1, tasks_per_visit=1, limit=1)
    named = h.create_batch(client, kind="rate_arguments", redundancy=1, tasks_per_visit=1, limit=1,
                           show_feature_names=True)
    for b, shown in ((blind, False), (named, True)):
        token = _visit(client, b["id"], f"r{int(shown)}")
        page = client.get(f"/w/v/{token}/task").get_data(as_text=True)
        assert ("round part 3" in page) is shown and ("round part 7" in page) is shown
        assert "Argument 1" in page and "Argument 2" in page
        nxt = client.post("/w/api/next", json={"visit_token": token}).get_json()
        args = nxt["task"]["payload"]["arguments"]
        assert [("name" in a) for a in args] == [shown, shown] and ("sentence" in nxt["task"]["payload"]) is shown
        r = client.post("/w/api/submit", json={"assignment_token": nxt["assignment_token"], "client_token": f"tok-{shown}-123",
                                               "answer": {"arguments": {"1": "yes", "2": "no"}, "match": 3}})
        assert r.status_code == 201
        rows = client.get(f"/api/batches/{b['id']}/judgments?format=json", headers=h.AUTH).get_json()
        rows = rows["rows"]
        assert [r["names_shown"] for r in rows] == [shown] * 3


def test_cant_tell_is_a_label_answer_exported_as_its_own_value(client, h):
    b = h.create_batch(client, kind="label", redundancy=1, tasks_per_visit=1, limit=1)
    token = _visit(client, b["id"], "c1")
    page = client.get(f"/w/v/{token}/task").get_data(as_text=True)
    assert 'name="label" value="cant_tell"' in page and "Can't tell</label>" in page
    atok = re.search(r'name="assignment_token" value="([^"]+)"', page).group(1)
    r = client.post(f"/w/v/{token}/task", data={"assignment_token": atok, "client_token": "ct-123456789",
                                                 "label": "cant_tell"})
    assert r.status_code == 302
    csv = client.get(f"/api/batches/{b['id']}/judgments?format=csv", headers=h.AUTH).get_data(as_text=True)
    header, row = csv.splitlines()[:2]
    assert dict(zip(header.split(","), row.split(",")))["label"] == "cant_tell"


def test_refused_form_answers_read_as_plain_language(client, h):
    b = h.create_batch(client, kind="rate_arguments", redundancy=1, tasks_per_visit=1, limit=1)
    token = _visit(client, b["id"], "n1")
    page = client.get(f"/w/v/{token}/task").get_data(as_text=True)
    atok = re.search(r'name="assignment_token" value="([^"]+)"', page).group(1)
    r = client.post(f"/w/v/{token}/task", data={"assignment_token": atok, "client_token": "nj-123456789",
                                                 "arg_1": "yes", "match": "3"})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "Please answer every argument&#39;s question: Yes, No or Can&#39;t tell." in html
    assert "answer.arguments" not in html and "must be one of" not in html
    r = client.post(f"/w/v/{token}/task", data={"assignment_token": atok, "client_token": "nj-123456789",
                                                 "arg_1": "yes", "arg_2": "no"})
    assert "Please say how well the reasoning matches" in r.get_data(as_text=True)


def test_a_late_answer_moves_on_in_plain_words(client, h, app):
    from sqlalchemy import update

    from crowd.models import Assignment

    # order seed 0: late1 and late2 both have task 2 first in their own orders, so late2 gets it
    b = h.create_batch(client, kind="label", redundancy=1, tasks_per_visit=2, order_seed=0)
    token = _visit(client, b["id"], "late1")
    page = client.get(f"/w/v/{token}/task").get_data(as_text=True)
    atok = re.search(r'name="assignment_token" value="([^"]+)"', page).group(1)
    assert 870 <= int(re.search(r'data-seconds-left="(\d+)"', page).group(1)) <= 900  # the countdown's start
    with get_database(app).transaction() as s:
        s.execute(update(Assignment).values(expires_at=s.scalar(select(Assignment.leased_at))))
    other = h.WorkerClient(client, b["id"], "late2").start()
    nxt = other.next()
    assert other.submit(nxt["assignment_token"], {"label": "apple"})[0] == 201
    # without JavaScript: a page that says what happened and leads on, keeping the worker's place
    r = client.post(f"/w/v/{token}/task", data={"assignment_token": atok, "client_token": "late-123456789",
                                                 "label": "banana"})
    html = r.get_data(as_text=True)
    assert r.status_code == 409 and "<h2>Time ran out</h2>" in html and "Continue with a new task" in html
    assert "Task 1 of 2" in client.get(f"/w/v/{token}/task").get_data(as_text=True)
    # the JSON answer worker.js reads: the same plain words, the field for code
    r = client.post("/w/api/submit", json={"assignment_token": atok, "client_token": "late-223456789",
                                           "answer": {"label": "banana"}})
    assert r.status_code == 409 and r.get_json()["field"] == "assignment"
    assert r.get_json()["message"].startswith("Time ran out for this task and it went to someone else.")
    r = client.post("/w/api/submit", json={"assignment_token": atok, "client_token": "late-323456789",
                                           "answer": {"label": "kiwi"}})
    assert (r.get_json()["field"], r.get_json()["message"]) == (
        "answer.label", "Please choose one of the classes, or “Can't tell”.")
