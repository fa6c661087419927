"""Hostile input against the task server, in-process, on SQLite and PostgreSQL: every bad
request gets a clear 4xx naming the field, never a 5xx, an injection or a second judgment."""

from __future__ import annotations

import json
import unicodedata

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import func, inspect, select

from crowd.db import get_database
from crowd.models import Batch, Judgment, Task, Worker
from crowd.tokens import make_assignment_token, make_worker_token

XSS = ['<script>alert("x")</script>', '"><img src=x onerror=alert(1)>', "javascript:alert(1)//<svg/onload=alert(2)>"]
SQLI = ["'; DROP TABLE judgment; --", "' OR '1'='1", 'Robert"); DELETE FROM worker WHERE ("1"="1', "1; SELECT pg_sleep(5)"]


def assert_inert(html: str) -> None:
    """No attacker string reached the page as markup (escaped text is fine)."""
    for evil in XSS:
        assert evil not in html
    for tag in ("<script>alert", "<img src=x", "<svg/onload"):
        assert tag not in html


def _json_err(r, status, field=None):
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:300])
    body = r.get_json()
    assert body is not None and body["status"] == status
    if field is not None:
        assert body["field"] == field, body
    return body


# ------------------------------------------------------------------ malformed JSON, wrong types

@pytest.mark.parametrize("path,raw,field", [
    ("/w/api/start", b"{not json", "body"),
    ("/w/api/start", b"[1, 2, 3]", "body"),
    ("/w/api/start", b'"just a string"', "body"),
    ("/w/api/start", b'{"batch": "1", "worker": "a"}', "batch"),
    ("/w/api/start", b'{"batch": true, "worker": "a"}', "batch"),
    ("/w/api/start", b'{"batch": 1.5, "worker": "a"}', "batch"),
    ("/w/api/consent", b"{\"visit_token\": ", "body"),
    ("/w/api/finish", b"null", "body"),
    ("/api/batches", b"{bad", "body"),
    ("/api/batches", b'{"images": "not-a-list", "classes": ["a"]}', "images"),
    ("/api/batches", b'{"images": [], "classes": "a,b"}', "classes"),
    ("/api/batches", b'{"kind": "label", "sheets_dir": 7}', "sheets_dir"),
    ("/api/batches", b'{"kind": "label", "sheets_dir": "x", "redundancy": "3"}', "redundancy"),
    ("/api/batches", b'{"kind": "label", "sheets_dir": "x", "gold_rate": "high"}', "gold_rate"),
    ("/api/batches", b'{"kind": "label", "sheets_dir": "x", "exclude_batches": ["1"]}', "exclude_batches"),
    ("/api/batches", b'{"kind": "label", "sheets_dir": "x", "name": ["n"]}', "name"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_malformed_json_and_wrong_types_are_400_naming_the_field(client, h, path, raw, field):
    headers = {"Content-Type": "application/json", **(h.AUTH if path.startswith("/api") else {})}
    _json_err(client.post(path, data=raw, headers=headers), 400, field)


@pytest.mark.parametrize("path,body,field", [
    ("/w/api/next", {"visit_token": 12345}, "visit_token"),
    ("/w/api/consent", {"visit_token": {"v": 1, "w": 1}}, "visit_token"),
    ("/w/api/finish", {"visit_token": None}, "visit_token"),
    ("/w/api/submit", {"assignment_token": ["x"], "answer": {}}, "assignment_token"),
    ("/w/api/submit", {"answer": {"label": "cat"}}, "assignment_token"),
], ids=["next-int", "consent-object", "finish-null", "submit-list", "submit-missing"])
def test_tokens_of_the_wrong_type_are_403_naming_the_field(client, path, body, field):
    """A token is a credential: anything that is not a valid token is refused (403), not parsed."""
    _json_err(client.post(path, json=body), 403, field)


@pytest.mark.parametrize("answer,field", [
    ("cat", "answer"),
    ({"label": 3}, "answer.label"),
    ({"label": "giraffe"}, "answer.label"),
    ({"label": None}, "answer.label"),
    ({}, "answer.label"),
], ids=["string", "int-label", "unknown-class", "null", "empty"])
def test_wrong_answer_types_are_400_and_leave_the_lease(client, h, tmp_path, answer, field):
    b = h.label_batch(client, tmp_path / "img")
    n = h.lease(client, h.start(client, b["id"], "w1"))
    _json_err(h.submit(client, n["assignment_token"], answer), 400, field)
    r = client.post("/w/api/submit", json={"assignment_token": n["assignment_token"], "answer": {"label": "cat"},
                                           "client_token": "abcdefgh", "duration_s": "slow"})
    _json_err(r, 400, "duration_s")
    _json_err(client.post("/w/api/submit", json={"assignment_token": n["assignment_token"], "answer": {"label": "cat"},
                                                 "client_token": 5}), 400, "client_token")
    # after all that the lease is intact and a good answer is stored once
    assert h.submit(client, n["assignment_token"], {"label": "cat"}).status_code == 201
    with get_database(client.application).reading() as s:
        assert s.scalar(select(func.count(Judgment.id))) == 1


# --------------------------------------------------------------------------- sizes and kinds

@pytest.mark.parametrize("path", ["/w/api/submit", "/w/api/start", "/api/batches"])
def test_oversized_bodies_are_413(client, h, path):
    limit = client.application.config["MAX_CONTENT_LENGTH"]
    body = json.dumps({"batch": 1, "worker": "w", "answer": {"comment": "x" * (limit + 10)}}).encode()
    headers = {"Content-Type": "application/json", **(h.AUTH if path.startswith("/api") else {})}
    r = client.post(path, data=body, headers=headers)
    _json_err(r, 413)


def test_unknown_task_kinds_are_400(client, h):
    for body in ({"kind": "poetry"}, {"kinds": ["label", "poetry"]}, {"kinds": [{"k": 1}]}, {"kind": 7}):
        r = client.post("/api/batches", json={"sheets_dir": str(h.CROWD_SHEETS), **body}, headers=h.AUTH)
        _json_err(r, 400, "kind")
    with get_database(client.application).reading() as s:
        assert s.scalar(select(func.count(Batch.id))) == 0


def test_tasks_of_an_unknown_kind_are_never_handed_out(client, h, tmp_path):
    """A task row of a kind this server does not know (written by a newer Argus, or by hand) is
    skipped: no 500 on the task, instructions or preview page, no lease."""
    b = h.label_batch(client, tmp_path / "img", n=3, redundancy=1)
    with get_database(client.application).transaction() as s:
        tasks = s.scalars(select(Task).where(Task.batch_id == b["id"]).order_by(Task.id)).all()
        tasks[0].kind, tasks[1].kind = "poetry", "<script>x</script>"
    r = client.get(f"/w/{b['id']}?worker=w1")
    base = r.location.rsplit("/", 1)[0]
    assert client.post(base + "/consent", data={"agree": "yes"}).status_code == 302
    assert client.get(base + "/instructions").status_code == 200
    assert client.get(f"/w/{b['id']}?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE").status_code == 200
    page = client.get(base + "/task")
    assert page.status_code == 200 and "label" in page.get_data(as_text=True)
    n = h.lease(client, h.start(client, b["id"], "w2"))
    assert n["done"] is True  # the only known-kind task is leased to w1; nothing else is handed out


def test_huge_number_of_rationale_points_is_capped(client, h):
    b = h.sheet_batch(client, "mark_rationale", max_marks=10 ** 6)  # asks for far more than the hard cap
    n = h.lease(client, h.start(client, b["id"], "w1"))
    assert n["task"]["payload"]["max_marks"] <= 50
    r = h.submit(client, n["assignment_token"], {"points": [[0.5, 0.5]] * 4000})
    _json_err(r, 400, "answer.points")
    r = h.submit(client, n["assignment_token"], {"points": [[0.5, 0.5]] * 60})
    _json_err(r, 400, "answer.points")
    r = h.submit(client, n["assignment_token"], {"points": [[0.5, 0.5]] * 3, "boxes": [[1e308, 0, 0, -1]]})
    _json_err(r, 400, "answer.boxes.0.0")
    assert h.submit(client, n["assignment_token"], {"points": [[0.5, 0.5]] * 3}).status_code == 201


# ------------------------------------------------------------------------------- tokens, 403

def test_answer_for_a_task_not_leased_to_this_worker_is_403(db_client, h, tmp_path):
    b = h.label_batch(db_client, tmp_path / "img")
    na = h.lease(db_client, h.start(db_client, b["id"], "alice"))
    h.lease(db_client, h.start(db_client, b["id"], "bob"))
    with get_database(db_client.application).reading() as s:
        bob = s.scalar(select(Worker.id).where(Worker.external_id == "bob"))
    with db_client.application.app_context():
        stolen = make_assignment_token(na["assignment"], bob)  # validly signed, but not bob's lease
    _json_err(h.submit(db_client, stolen, {"label": "cat"}), 403, "assignment")
    with db_client.application.app_context():
        ghost = make_assignment_token(10 ** 9, bob)
    _json_err(h.submit(db_client, ghost, {"label": "cat"}), 404, "assignment")
    with get_database(db_client.application).reading() as s:
        assert s.scalar(select(func.count(Judgment.id))) == 0


def test_forged_and_expired_tokens_are_403(client, h, tmp_path, monkeypatch):
    b = h.label_batch(client, tmp_path / "img")
    visit = h.start(client, b["id"], "w1")
    n = h.lease(client, visit)
    forged_key = URLSafeTimedSerializer("not-the-secret", salt="argus.assignment").dumps({"a": n["assignment"], "w": 1})
    wrong_kind = visit  # a visit token where an assignment token belongs
    payload, _, sig = n["assignment_token"].partition(".")
    tampered = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + sig
    for token in (forged_key, wrong_kind, tampered, "", "x" * 5000, n["assignment_token"][:-3]):
        _json_err(h.submit(client, token, {"label": "cat"}), 403, "assignment_token")
    for token in ("garbage", n["assignment_token"]):
        _json_err(client.post("/w/api/next", json={"visit_token": token}), 403, "visit_token")
    # expired: the server's clock moved past the token's max age
    import itsdangerous.timed

    real = itsdangerous.timed.time.time
    monkeypatch.setattr(itsdangerous.timed.time, "time",
                        lambda: real() + client.application.config["ASSIGNMENT_TOKEN_MAX_AGE"] + 60)
    body = _json_err(h.submit(client, n["assignment_token"], {"label": "cat"}), 403, "assignment_token")
    assert "expired" in body["message"]
    monkeypatch.setattr(itsdangerous.timed.time, "time", real)
    assert h.submit(client, n["assignment_token"], {"label": "cat"}).status_code == 201


def test_replayed_submissions_get_the_first_result(db_client, h, tmp_path):
    b = h.label_batch(db_client, tmp_path / "img")
    n = h.lease(db_client, h.start(db_client, b["id"], "w1"))
    first = h.submit(db_client, n["assignment_token"], {"label": "cat"}, client_token="replay-token-1")
    assert first.status_code == 201
    again = h.submit(db_client, n["assignment_token"], {"label": "dog"}, client_token="replay-token-1")
    other = h.submit(db_client, n["assignment_token"], {"label": "dog"}, client_token="replay-token-2")
    for r in (again, other):
        assert r.status_code == 200 and r.get_json()["duplicate"] is True
        assert r.get_json()["judgment"] == first.get_json()["judgment"]
    # the same db_client token on someone else's assignment is refused, not merged
    n2 = h.lease(db_client, h.start(db_client, b["id"], "w2"))
    _json_err(h.submit(db_client, n2["assignment_token"], {"label": "cat"}, client_token="replay-token-1"), 409,
              "client_token")
    with get_database(db_client.application).reading() as s:
        assert s.scalars(select(Judgment.answer)).all() == [{"label": "cat"}]


# ------------------------------------------------------------------------- auth, CSRF, admin

def test_every_api_route_needs_the_token(client, h):
    app = client.application
    seen = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint == "api.openapi":
            continue
        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<int:{arg}>", "1").replace(f"<{arg}>", "approve")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": h.API_TOKEN},
                            {"Authorization": "Basic " + h.API_TOKEN}):
                r = client.open(path, method=method, headers=headers, json={})
                _json_err(r, 401)
                seen += 1
    assert seen >= 4 * 10


def test_admin_without_login_shows_nothing(client, h, tmp_path):
    b = h.label_batch(client, tmp_path / "img", name="secret batch name")
    for path in ("/admin/", f"/admin/batches/{b['id']}"):  # pages: to the login form
        r = client.get(path)
        assert r.status_code == 302 and r.location.startswith("/admin/login"), (path, r.status_code)
        assert b"secret batch name" not in r.data
    for path in (f"/admin/batches/{b['id']}/export.csv", f"/admin/batches/{b['id']}/export.parquet"):
        r = client.get(path)  # downloads: 401
        assert r.status_code == 401 and b"secret batch name" not in r.data and b"img0000" not in r.data, path
    r = client.post("/admin/login", data={"username": "admin", "password": "guess"})
    assert r.status_code == 400  # no CSRF token, not even a password check
    # a session that holds a CSRF token (it saw the login page) but never logged in: actions are 401
    page = client.get("/admin/login").get_data(as_text=True)
    csrf = __import__("re").search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    with get_database(client.application).reading() as s:
        assert s.scalar(select(func.count(Worker.id))) == 0
    for path, data in ((f"/admin/batches/{b['id']}/status", {"status": "closed"}),
                       ("/admin/workers/1/action", {"action": "block"})):
        assert client.post(path, data={**data, "csrf_token": csrf}).status_code == 401, path
    with get_database(client.application).reading() as s:
        assert s.get(Batch, b["id"]).status.value == "active"


def test_admin_forms_refuse_missing_or_wrong_csrf(client, h, tmp_path):
    b = h.label_batch(client, tmp_path / "img")
    h.start(client, b["id"], "victim")
    csrf = h.admin_login(client)
    with get_database(client.application).reading() as s:
        wid = s.scalar(select(Worker.id))
    for token in (None, "", "wrong", csrf[:-1], csrf + "x"):
        data = {"action": "block", "batch": b["id"]}
        if token is not None:
            data["csrf_token"] = token
        assert client.post(f"/admin/workers/{wid}/action", data=data).status_code == 400
        assert client.post(f"/admin/batches/{b['id']}/status", data={**data, "status": "closed"}).status_code == 400
    with get_database(client.application).reading() as s:
        assert s.get(Worker, wid).blocked is False and s.get(Batch, b["id"]).status.value == "active"
    # another browser's session (its own valid token) does not work on this session
    other = client.application.test_client()
    other_csrf = h.admin_login(other)
    assert other_csrf != csrf
    assert client.post(f"/admin/workers/{wid}/action",
                       data={"action": "block", "csrf_token": other_csrf}).status_code == 400
    assert client.post(f"/admin/workers/{wid}/action",
                       data={"action": "block", "confirm": "yes", "csrf_token": csrf}).status_code == 302


@pytest.mark.parametrize("target", ["https://evil.example/x", "//evil.example", "javascript:alert(1)",
                                    "/admin@evil.example", "/admin/../..//evil.example", "\\\\evil.example"])
def test_no_open_redirect_after_login(client, h, target):
    page = client.get("/admin/login").get_data(as_text=True)
    import re

    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/admin/login", query_string={"next": target},
                    data={"username": "admin", "password": h.ADMIN_PASSWORD, "csrf_token": csrf})
    assert r.status_code == 302
    loc = r.location
    assert loc.startswith("/") and not loc.startswith("//") and "\\" not in loc, loc  # same origin


@pytest.mark.parametrize("turk", ["https://evil.example", "javascript:alert(1)", "https://www.mturk.com.evil.example",
                                  "https://evil.example/?x=https://www.mturk.com", "ftp://www.mturk.com"])
def test_turk_submit_to_only_accepts_mturk(client, h, tmp_path, turk):
    """turkSubmitTo decides where the finished form is posted: anything but MTurk is refused."""
    b = h.label_batch(client, tmp_path / "img")
    q = {"workerId": "A1", "assignmentId": "ASG1", "hitId": "H1", "turkSubmitTo": turk}
    r = client.get(f"/w/{b['id']}", query_string=q)
    assert r.status_code == 400 and turk not in r.get_data(as_text=True).replace("&amp;", "&")
    _json_err(client.post("/w/api/start", json={"batch": b["id"], **q}), 400, "turkSubmitTo")


# ----------------------------------------------------------------------- XSS, SQL injection

def test_xss_in_names_and_comments_is_escaped_in_the_dashboard(client, h):
    b = h.sheet_batch(client, "rate_arguments", name=XSS[0], redundancy=3)
    for i, evil in enumerate(XSS):
        visit = h.start(client, b["id"], evil)
        n = h.lease(client, visit)
        ranks = [str(a["rank"]) for a in n["task"]["payload"]["arguments"]]
        answer = {"arguments": {r: "yes" for r in ranks}, "match": 3, "comment": evil}
        assert h.submit(client, n["assignment_token"], answer).status_code == 201
    csrf = h.admin_login(client)
    with get_database(client.application).reading() as s:
        wid = s.scalar(select(Worker.id).order_by(Worker.id))
    client.post(f"/admin/workers/{wid}/action", data={"action": "flag", "reason": XSS[1], "csrf_token": csrf})
    pages = [client.get(p).get_data(as_text=True) for p in ("/admin/", f"/admin/batches/{b['id']}")]
    for html in pages:
        assert_inert(html)
    assert "&lt;script&gt;" in pages[0] and "&lt;script&gt;" in pages[1]
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in pages[1]
    # the worker-facing pages escape too (the batch name is shown in the task page title)
    visit = h.start(client, b["id"], "plain")
    task_html = client.get(f"/w/v/{visit}/task").get_data(as_text=True)
    assert XSS[0] not in task_html


def test_xss_in_judgments_is_escaped_in_the_analysis_report(tmp_path):
    import pandas as pd

    from analysis.report import build_report

    fixtures = __import__("pathlib").Path(__file__).resolve().parents[2] / "analysis" / "fixtures"
    frame = pd.read_csv(fixtures / "judgments.csv", dtype=str, keep_default_na=False)
    workers = sorted(frame["worker"].unique())
    frame["worker"] = frame["worker"].replace({workers[0]: XSS[0], workers[1]: XSS[1]})
    frame.loc[frame["item"] == "name", "text"] = XSS[2]
    path = tmp_path / "evil.csv"
    frame.to_csv(path, index=False)
    report = build_report(path, fixtures / "sheets", tmp_path / "report", data_dir=fixtures / "data", n_boot=20)
    html = report.read_text()
    assert_inert(html)
    assert "&lt;script&gt;alert(" in html  # the worker is listed, as text


def test_sql_injection_strings_are_stored_verbatim_and_inert(db_client, h, tmp_path):
    b = h.label_batch(db_client, tmp_path / "img", n=len(SQLI), redundancy=1, tasks_per_visit=len(SQLI),
                      name=SQLI[0])
    for evil in SQLI:
        visit = h.start(db_client, b["id"], evil)
        n = h.lease(db_client, visit)
        assert h.submit(db_client, n["assignment_token"], {"label": "dog"}, client_token=f"tok-{len(evil)}-{evil[:20]}"
                        ).status_code == 201
    r = db_client.get(f"/api/batches/{b['id']}/judgments?format=json", headers=h.AUTH)
    assert sorted(row["worker"] for row in r.get_json()["rows"]) == sorted(SQLI)
    assert db_client.get(f"/api/batches/{b['id']}", headers=h.AUTH).get_json()["name"] == SQLI[0]
    # filters taking strings reject or ignore the injection instead of running it
    for q in ("/api/workers?status=" + SQLI[1], "/api/visits?status=" + SQLI[0], "/api/events?batch=" + SQLI[1]):
        assert db_client.get(q, headers=h.AUTH).status_code in (200, 400)
    engine = get_database(db_client.application).engine
    tables = set(inspect(engine).get_table_names(schema=db_client.application.config.get("DATABASE_SCHEMA")))
    assert {"judgment", "worker", "task", "batch"} <= tables
    with get_database(db_client.application).reading() as s:
        assert s.scalar(select(func.count(Judgment.id))) == len(SQLI)
        assert sorted(s.scalars(select(Worker.external_id))) == sorted(SQLI)


# --------------------------------------------------------------------------- path traversal

def _signed_media(client, b) -> tuple[str, str]:
    """A visit's signed URL of its first task's image, and the signature."""
    visit = client.post("/w/api/start", json={"batch": b["id"]}).get_json()["visit_token"]  # anonymous
    client.post("/w/api/consent", json={"visit_token": visit})
    url = next(iter(client.post("/w/api/next", json={"visit_token": visit}).get_json()["media"].values()))
    return url, url.split("?s=")[1]


@pytest.mark.parametrize("rel", [
    "../secret.png", "..%2Fsecret.png", "%2e%2e/secret.png", "..\\secret.png", "img/../../secret.png",
    "/etc/passwd", "%2Fetc%2Fpasswd", "....//secret.png", "img0000.png%00.png", "../" * 12 + "etc/hostname.png",
    "img0000.png/../../secret.png", "~/secret.png",
])
def test_path_traversal_in_media_urls_is_404(client, h, tmp_path, rel):
    (tmp_path / "secret.png").write_bytes(b"\x89PNG secret outside the media folder")
    b = h.label_batch(client, tmp_path / "img")
    url, sig = _signed_media(client, b)
    assert client.get(url).status_code == 200
    r = client.get(f"/media/{b['id']}/{rel}?s={sig}", follow_redirects=True)  # "//etc" is first normalised (308)
    assert r.status_code == 404, (rel, r.status_code)
    assert b"secret outside" not in r.data


def test_media_of_unknown_batches_and_types_is_404(client, h, tmp_path):
    b = h.label_batch(client, tmp_path / "img")
    (tmp_path / "img" / "notes.txt").write_text("private")
    _, sig = _signed_media(client, b)
    for path in (f"/media/{b['id']}/notes.txt", "/media/999999/img0000.png", f"/media/{b['id']}/missing.png",
                 "/media/-1/img0000.png", f"/media/{b['id']}/img0000.png"):
        assert client.get(path).status_code == 404, path
        assert client.get(f"{path}?s={sig}").status_code == 404, path


# ---------------------------------------------------------------------------------- Unicode

UNICODE = [
    "名前-ワーカー", "عامل‮txt.exe", "emoji-👩🏽‍🔬-🦀", "zero​width‌joiner", "combining-e\u0301", "\u00e9 vs e\u0301",
    "nul\x00byte", "bell\x07\x1b[31mred", "line\nbreak\r\n", "\ufeffbom", "\U0010fffd-max-plane", "x" * 200,
]


def test_unicode_worker_ids_never_500(db_client, h, tmp_path):
    b = h.label_batch(db_client, tmp_path / "img", n=len(UNICODE), redundancy=1, tasks_per_visit=1)
    stored = []
    for worker in UNICODE:
        with db_client.application.app_context():  # the researcher signs a link for each id
            link = make_worker_token(worker, b["id"])
        r = db_client.post("/w/api/start", json={"batch": b["id"], "worker_token": link})
        assert r.status_code in (200, 400), (worker, r.get_data(as_text=True)[:300])
        if r.status_code == 400:
            assert r.get_json()["field"] == "worker" and "\x00" in worker  # only NUL is refused
            continue
        token = r.get_json()["visit_token"]
        db_client.post("/w/api/consent", json={"visit_token": token})
        n = h.lease(db_client, token)
        assert h.submit(db_client, n["assignment_token"], {"label": "cat"}).status_code == 201
        stored.append(worker.strip())
    rows = db_client.get(f"/api/batches/{b['id']}/judgments?format=json", headers=h.AUTH).get_json()["rows"]
    assert sorted(r["worker"] for r in rows) == sorted(stored) and len(stored) >= len(UNICODE) - 1
    csv_text = db_client.get(f"/api/batches/{b['id']}/judgments?format=csv", headers=h.AUTH).get_data(as_text=True)
    assert "名前-ワーカー" in csv_text and "👩🏽‍🔬" in csv_text


COMMENTS = ["nul\x00inside", "\ud800 lone surrogate", "👩🏽‍🔬" * 300, "\u202e" * 50, "a\u0000\u0000b",
            "\U0001F600" * 2001, "  e\u0301 \ufeff ", "<b>bold</b> & 'quotes' \"double\""]


def test_unicode_comments_are_stored_or_refused_cleanly(db_client, h):
    b = h.sheet_batch(db_client, "rate_arguments", redundancy=len(COMMENTS), tasks_per_visit=1)
    for i, text in enumerate(COMMENTS):
        n = h.lease(db_client, h.start(db_client, b["id"], f"w{i}"))
        ranks = [str(a["rank"]) for a in n["task"]["payload"]["arguments"]]
        raw = json.dumps({"assignment_token": n["assignment_token"], "client_token": f"unicode-token-{i}",
                          "answer": {"arguments": {r: "no" for r in ranks}, "match": 2, "comment": text}})
        r = db_client.post("/w/api/submit", data=raw, headers={"Content-Type": "application/json"})
        assert r.status_code in (201, 400), (i, r.get_data(as_text=True)[:300])
        if r.status_code == 400:
            assert r.get_json()["field"] == "answer.comment" and len(text) > 2000, i
            continue
        rows = db_client.get(f"/api/batches/{b['id']}/judgments?format=json", headers=h.AUTH).get_json()["rows"]
        got = [row["text"] for row in rows if row["item"] == "match" and row["assignment"] == n["assignment"]]
        assert got == [unicodedata.normalize("NFC", text).replace("\x00", "").strip()], i  # stored as NFC
