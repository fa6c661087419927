"""Fixtures of the crowd server tests: the fixture sheets folder, an app on SQLite or on
PostgreSQL (one fresh random schema per test session, dropped at the end; tables truncated
between tests), a JSON helper for the worker endpoints, and a live HTTP server in a thread."""

from __future__ import annotations

import os
import re
import secrets
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from werkzeug.serving import make_server

from crowd.app import create_app
from crowd.db import Base, get_database

SHEETS = Path(__file__).parent / "fixtures" / "sheets"
API_TOKEN = "test-api-token-123"


@pytest.fixture(scope="session")
def sheets_dir() -> Path:
    return SHEETS


@pytest.fixture
def aws_credentials(monkeypatch, tmp_path):
    """`aws_credentials(key_id, secret)` sets these AWS credentials for the test and nothing else
    of AWS: every other `AWS_*` variable is removed, no shared profile or config file is read, no
    instance metadata is asked, so nothing can reach AWS."""
    def use(key_id: str = "AKIAARGUSTESTDUMMYKEY", secret: str = "argus-test-dummy-secret-never-real"):
        for key in list(os.environ):
            if key.startswith("AWS_"):
                monkeypatch.delenv(key)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    return use


def _config(backend: str, tmp_path: Path, request) -> dict:
    cfg = {"TESTING": True, "SECRET_KEY": "test-secret", "API_TOKEN": API_TOKEN, "ADMIN_PASSWORD": "admin-pw",
           "SQLITE_SYNCHRONOUS": "NORMAL", "GOLD_MIN_ANSWERS": 2, "GOLD_THRESHOLD": 0.5}
    if backend == "sqlite":
        cfg["DATABASE_URL"] = f"sqlite:///{tmp_path / 'argus.db'}"
    else:
        cfg["DATABASE_URL"] = request.getfixturevalue("pg_url")
        cfg["DATABASE_SCHEMA"] = request.getfixturevalue("pg_session_schema")
    return cfg


def _truncate(app):
    engine = get_database(app).engine
    if engine.dialect.name == "postgresql":
        names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables if t.name != "argus_schema")
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
def app(backend, tmp_path, request):
    app = create_app(_config(backend, tmp_path, request))
    _truncate(app)
    yield app
    get_database(app).engine.dispose()


@pytest.fixture
def sqlite_app(tmp_path, request):
    app = create_app(_config("sqlite", tmp_path, request))
    yield app
    get_database(app).engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def create_batch(client, sheets: Path = SHEETS, **body):
    body.setdefault("sheets_dir", str(sheets))
    body.setdefault("kind", "label")
    r = client.post("/api/batches", json=body, headers=AUTH)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


class WorkerClient:
    """Drives the worker JSON endpoints like a simulated crowd member (over a Flask test client
    or `requests`)."""

    def __init__(self, http, batch_id: int, worker: str, base: str = ""):
        self.http, self.base, self.batch_id, self.worker = http, base, batch_id, worker
        self.token = None

    def post(self, path, body, headers=None):
        if hasattr(self.http, "post") and self.base:
            r = self.http.post(self.base + path, json=body, timeout=30, headers=headers)
            return r.status_code, r.json()
        r = self.http.post(path, json=body, headers=headers)
        return r.status_code, r.get_json()

    def link_token(self) -> str:
        """This worker's researcher-signed worker token (`POST /api/batches/<id>/links`)."""
        status, data = self.post(f"/api/batches/{self.batch_id}/links", {"workers": [self.worker]}, headers=AUTH)
        assert status == 201, data
        return data["links"][0]["token"]

    def start(self, **ident):
        status, data = self.post("/w/api/start", {"batch": self.batch_id,
                                                  **(ident or {"worker_token": self.link_token()})})
        assert status == 200, data
        self.token = data["visit_token"]
        status, data = self.post("/w/api/consent", {"visit_token": self.token})
        assert status == 200, data
        return self

    def next(self):
        status, data = self.post("/w/api/next", {"visit_token": self.token})
        assert status == 200, data
        return data

    def submit(self, assignment_token, answer, client_token=None, duration_s=1.5):
        return self.post("/w/api/submit", {"assignment_token": assignment_token, "answer": answer,
                                           "client_token": client_token or secrets.token_hex(8),
                                           "duration_s": duration_s})


def answer_for(task: dict, choice: int = 0) -> dict:
    """A valid answer for a task view (`choice` varies it)."""
    p = task["payload"]
    if task["kind"] == "label":
        return {"label": p["classes"][choice % len(p["classes"])]}
    if task["kind"] == "rate_arguments":
        return {"arguments": {str(a["rank"]): ["yes", "no", "cant_tell"][choice % 3] for a in p["arguments"]},
                "match": 1 + choice % 5, "comment": f"c{choice}"}
    if task["kind"] == "name_feature":
        return {"name": f"  Round  Thing {choice}!", "coherence": 1 + choice % 5}
    return {"points": [[0.25, 0.5]], "boxes": [[0.1, 0.1, 0.4, 0.3]]}


@pytest.fixture
def live_server(app):
    """The app served over real HTTP by werkzeug (threaded) in a background thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


def csrf_in(html: str) -> str:
    """The CSRF token of the first dashboard form in `html`."""
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def admin_login(client, password="admin-pw"):
    page = client.get("/admin/login").get_data(as_text=True)
    return client.post("/admin/login", data={"username": "admin", "password": password, "csrf_token": csrf_in(page)})


@pytest.fixture
def h():
    """Helpers for test modules (importlib import mode: tests cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(AUTH=AUTH, API_TOKEN=API_TOKEN, SHEETS=SHEETS, create_batch=create_batch,
                           WorkerClient=WorkerClient, answer_for=answer_for, csrf_in=csrf_in,
                           admin_login=admin_login)
