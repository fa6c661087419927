"""Admin dashboard: login, CSRF on every form, escaping of worker text, review actions, export."""

from sqlalchemy import select

from crowd.db import get_database
from crowd.models import Worker, WorkerStatus

XSS = '<script>alert("x")</script>'


def test_login_and_csrf(sqlite_app, h):
    client = sqlite_app.test_client()
    assert client.get("/admin/").location.startswith("/admin/login")
    r = client.post("/admin/login", data={"username": "admin", "password": "admin-pw"})
    assert r.status_code == 400  # no CSRF token
    assert h.admin_login(client, "wrong").status_code == 401
    assert h.admin_login(client).location == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert client.post("/admin/logout", data={}).status_code == 400  # logged-in forms need the token too
    html = client.get("/admin/").get_data(as_text=True)
    assert client.post("/admin/logout", data={"csrf_token": h.csrf_in(html)}).status_code == 302
    assert client.get("/admin/").status_code == 302


def test_dashboard_escapes_and_reviews(sqlite_app, h):
    client = sqlite_app.test_client()
    b = h.create_batch(client, kind="rate_arguments", redundancy=2, tasks_per_visit=1)
    w = h.WorkerClient(client, b["id"], XSS).start()
    n = w.next()
    answer = h.answer_for(n["task"])
    answer["comment"] = XSS
    assert w.submit(n["assignment_token"], answer)[0] == 201
    h.admin_login(client)
    html = client.get(f"/admin/batches/{b['id']}").get_data(as_text=True)
    assert XSS not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "tasks_over_redundancy" not in html and "tasks over redundancy: 0" in html
    with get_database(sqlite_app).reading() as s:
        wid = s.scalar(select(Worker.id))
    r = client.post(f"/admin/workers/{wid}/action", data={"action": "flag", "batch": b["id"], "reason": XSS})
    assert r.status_code == 400  # CSRF missing
    r = client.post(f"/admin/workers/{wid}/action",
                    data={"action": "flag", "batch": b["id"], "reason": XSS, "csrf_token": h.csrf_in(html)})
    assert r.status_code == 302
    index = client.get("/admin/").get_data(as_text=True)
    assert "Flagged workers" in index and XSS not in index and "flagged" in index
    with get_database(sqlite_app).reading() as s:
        assert s.scalar(select(Worker.status)) == WorkerStatus.flagged
    export = client.get(f"/admin/batches/{b['id']}/export.csv")
    assert export.status_code == 200 and export.get_data(as_text=True).count("\n") == 4  # header + 2 args + match


def test_dashboard_disabled_without_password(tmp_path, monkeypatch, h):
    from crowd.app import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "SECRET_KEY": "k"})
    client = app.test_client()
    assert b"disabled until" in client.get("/admin/login").data
    assert h.admin_login(client, "").status_code == 401
    get_database(app).engine.dispose()
