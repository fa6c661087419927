"""Fixtures of the reliability and security tests: a database target on SQLite or on a fresh
PostgreSQL schema (dropped afterwards), an in-process app with a researcher token and an admin
password, tiny label batches, and the fixture sheets of the crowd tests (read only)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from crowd.app import create_app
from crowd.db import get_database
from sim.load import make_images

CROWD_SHEETS = Path(__file__).resolve().parents[1] / "fixtures" / "sheets"
API_TOKEN = "rel-api-token-" + "x" * 16
SECRET_KEY = "rel-secret-key-never-shown-0123456789"
ADMIN_PASSWORD = "rel-admin-pw-never-shown"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def db_target(backend, tmp_path, request):
    """(database URL, schema or None) for the parametrised backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'argus.db'}", None
    return request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema")


def app_config(url: str, schema: str | None, **extra) -> dict:
    cfg = {"TESTING": True, "SECRET_KEY": SECRET_KEY, "API_TOKEN": API_TOKEN, "ADMIN_PASSWORD": ADMIN_PASSWORD,
           "DATABASE_URL": url, "DATABASE_SCHEMA": schema}
    cfg.update(extra)
    return cfg


@pytest.fixture
def app(db_target):
    app = create_app(app_config(*db_target))
    yield app
    get_database(app).engine.dispose()


@pytest.fixture
def sqlite_app(tmp_path):
    app = create_app(app_config(f"sqlite:///{tmp_path / 'argus.db'}", None))
    yield app
    get_database(app).engine.dispose()


@pytest.fixture
def client(sqlite_app):
    """A test client on SQLite (tests where the database does not matter)."""
    return sqlite_app.test_client()


@pytest.fixture
def db_client(app):
    """A test client on each backend, SQLite and PostgreSQL (tests where the database matters)."""
    return app.test_client()


class Helpers:
    AUTH = AUTH
    API_TOKEN = API_TOKEN
    SECRET_KEY = SECRET_KEY
    ADMIN_PASSWORD = ADMIN_PASSWORD
    CROWD_SHEETS = CROWD_SHEETS

    @staticmethod
    def label_batch(client, folder: Path, n: int = 4, **kw) -> dict:
        body = {"images": make_images(folder, n), "classes": ["cat", "dog"], "redundancy": 2,
                "tasks_per_visit": 3, **kw}
        r = client.post("/api/batches", json=body, headers=AUTH)
        assert r.status_code == 201, r.get_json()
        return r.get_json()

    @staticmethod
    def sheet_batch(client, kind: str, **kw) -> dict:
        body = {"sheets_dir": str(CROWD_SHEETS), "kind": kind, "redundancy": 2, "tasks_per_visit": 2, **kw}
        r = client.post("/api/batches", json=body, headers=AUTH)
        assert r.status_code == 201, r.get_json()
        return r.get_json()

    @staticmethod
    def start(client, batch_id: int, worker: str) -> str:
        from crowd.tokens import make_worker_token

        with client.application.app_context():  # a researcher-signed link for `worker`
            link = make_worker_token(worker, batch_id)
        r = client.post("/w/api/start", json={"batch": batch_id, "worker_token": link})
        assert r.status_code == 200, r.get_json()
        token = r.get_json()["visit_token"]
        assert client.post("/w/api/consent", json={"visit_token": token}).status_code == 200
        return token

    @staticmethod
    def lease(client, visit_token: str) -> dict:
        r = client.post("/w/api/next", json={"visit_token": visit_token})
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    @staticmethod
    def submit(client, assignment_token: str, answer: dict, client_token: str | None = None):
        return client.post("/w/api/submit", json={"assignment_token": assignment_token, "answer": answer,
                                                  "client_token": client_token or secrets.token_hex(8),
                                                  "duration_s": 3.0})

    @staticmethod
    def admin_login(client) -> str:
        """Log in to the dashboard; returns the session's CSRF token."""
        page = client.get("/admin/login").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        r = client.post("/admin/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf})
        assert r.status_code == 302, r.get_data(as_text=True)[:300]
        html = client.get("/admin/").get_data(as_text=True)
        return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
def h():
    """Helpers (importlib import mode: test modules cannot import conftest)."""
    return Helpers
