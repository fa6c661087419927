"""The dashboard and the API as an attacker sees them: no page may be framed (clickjacking) except
the worker pages by the configured task hosts; the session cookie is SameSite=Lax and Secure
over https; a cookie copied before logout is worthless after it; password guessing is throttled
(429 + Retry-After, per address and in all); dashboard pages and exports are never cached."""

import re

import pytest

MTURK_ANCESTORS = "frame-ancestors https://www.mturk.com https://workersandbox.mturk.com"


def _ancestors(resp) -> str:
    return re.search(r"frame-ancestors[^;]*", resp.headers["Content-Security-Policy"]).group(0).strip()


def _login(client, h, password="admin-pw", addr="10.0.0.1"):
    page = client.get("/admin/login", environ_base={"REMOTE_ADDR": addr}).get_data(as_text=True)
    return client.post("/admin/login", data={"username": "admin", "password": password, "csrf_token": h.csrf_in(page)},
                       environ_base={"REMOTE_ADDR": addr})


def test_no_private_page_can_be_framed_worker_pages_only_by_the_task_hosts(sqlite_app, h):
    client = sqlite_app.test_client()
    b = h.create_batch(client, redundancy=1)
    for path in ("/admin/login", "/admin/", f"/api/batches/{b['id']}", "/api/openapi.json", "/health"):
        r = client.get(path, headers=h.AUTH)
        assert _ancestors(r) == "frame-ancestors 'none'", path
        assert r.headers["X-Frame-Options"] == "DENY", path
    worker_page = client.get(f"/w/{b['id']}", follow_redirects=True)
    assert worker_page.status_code == 200
    assert _ancestors(worker_page) == MTURK_ANCESTORS and "X-Frame-Options" not in worker_page.headers
    assert "*" not in worker_page.headers["Content-Security-Policy"]


def test_task_hosts_are_configurable(tmp_path, h):
    from crowd.app import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "SECRET_KEY": "k", "API_TOKEN": h.API_TOKEN,
                      "TASK_FRAME_ANCESTORS": ["https://tasks.example.org"]})
    b = h.create_batch(app.test_client(), redundancy=1)
    assert _ancestors(app.test_client().get(f"/w/{b['id']}", follow_redirects=True)) == \
        "frame-ancestors https://tasks.example.org"


def test_session_cookie_is_samesite_lax_and_secure_over_https(sqlite_app, h):
    plain = _login(sqlite_app.test_client(), h)
    cookie = plain.headers["Set-Cookie"]
    assert "SameSite=Lax" in cookie and "HttpOnly" in cookie and "Secure" not in cookie
    secure_client = sqlite_app.test_client()
    page = secure_client.get("/admin/login", base_url="https://argus.example.org").get_data(as_text=True)
    r = secure_client.post("/admin/login", base_url="https://argus.example.org",
                           data={"username": "admin", "password": "admin-pw", "csrf_token": h.csrf_in(page)})
    assert r.status_code == 302 and "; Secure" in r.headers["Set-Cookie"]


def test_logout_revokes_the_session_on_the_server(sqlite_app, h):
    client = sqlite_app.test_client()
    assert _login(client, h).status_code == 302
    stolen = client.get_cookie("session").value  # e.g. copied from a shared machine
    html = client.get("/admin/").get_data(as_text=True)
    assert client.post("/admin/logout", data={"csrf_token": h.csrf_in(html)}).status_code == 302

    attacker = sqlite_app.test_client()
    attacker.set_cookie("session", stolen)
    r = attacker.get("/admin/")
    assert r.status_code == 302 and r.location.startswith("/admin/login")
    assert attacker.get(f"/admin/batches/1/export.csv").status_code == 401


def test_expired_login_is_refused(tmp_path, h):
    from crowd.app import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "SECRET_KEY": "k", "ADMIN_PASSWORD": "admin-pw",
                      "ADMIN_SESSION_MAX_AGE": 0})
    client = app.test_client()
    assert _login(client, h).status_code == 302
    assert client.get("/admin/").status_code == 302


def test_password_guessing_is_throttled_per_address(sqlite_app, h):
    client = sqlite_app.test_client()
    for _ in range(5):
        assert _login(client, h, "guess").status_code == 401
    r = _login(client, h, "guess")
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 900
    # the right password from the guessing address is refused too while it is throttled
    assert _login(client, h).status_code == 429
    # another address is not affected
    assert _login(sqlite_app.test_client(), h, addr="10.0.0.2").status_code == 302


def test_password_guessing_from_many_addresses_is_throttled(tmp_path, h):
    from crowd.app import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "SECRET_KEY": "k", "ADMIN_PASSWORD": "admin-pw",
                      "LOGIN_MAX_FAILURES_GLOBAL": 8})
    client = app.test_client()
    for i in range(8):
        assert _login(client, h, "guess", addr=f"10.1.0.{i}").status_code == 401
    assert _login(client, h, "guess", addr="10.1.1.1").status_code == 429


def test_dashboard_pages_and_exports_are_never_cached(sqlite_app, h):
    client = sqlite_app.test_client()
    b = h.create_batch(client, redundancy=1)
    _login(client, h)
    for path in ("/admin/", f"/admin/batches/{b['id']}", f"/admin/batches/{b['id']}/export.csv",
                 f"/admin/batches/{b['id']}/export.parquet", "/admin/login"):
        r = client.get(path)
        r.get_data()
        assert r.status_code == 200, path
        assert r.headers["Cache-Control"] == "no-store", path
    for fmt in ("csv", "parquet", "json"):
        r = client.get(f"/api/batches/{b['id']}/judgments?format={fmt}", headers=h.AUTH)
        r.get_data()
        assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("proxies, expect", [(0, "127.0.0.1"), (1, "203.0.113.9")])
def test_client_address_comes_from_the_proxy_only_when_trusted(tmp_path, h, proxies, expect):
    """Throttling keys on the client address: a forged X-Forwarded-For is ignored unless a
    trusted proxy (TRUSTED_PROXIES) sets it."""
    from crowd.app import create_app
    from crowd.web import client_addr

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "SECRET_KEY": "k", "TRUSTED_PROXIES": proxies})
    seen = []

    @app.get("/_addr")
    def _addr():
        seen.append(client_addr())
        return "ok"

    app.test_client().get("/_addr", headers={"X-Forwarded-For": "203.0.113.9"})
    assert seen == [expect]
