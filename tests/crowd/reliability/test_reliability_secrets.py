"""Secrets never leak: the researcher API token, the signing key, the admin password, AWS
credentials and the workers' visit / assignment / client tokens never appear in logs (every
logger captured), error pages or exports. The test drives the whole server (worker pages and
JSON flow, API, admin, exports, a forced internal error) and the MTurk adapter with failures,
captures every log record and every response, and searches them."""

from __future__ import annotations

import io
import logging
import re
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from crowd.app import create_app
from crowd.db import get_database
from crowd.tokens import make_worker_token
from sim.load import make_images

API_TOKEN = "SECRET-API-TOKEN-4f1d2c9e8b7a"
SECRET_KEY = "SECRET-SIGNING-KEY-9a8b7c6d5e4f"
ADMIN_PASSWORD = "SECRET-ADMIN-PW-1q2w3e4r"
AWS_KEY_ID = "AKIASECRETKEYID12345"
AWS_SECRET = "SECRET-AWS-ACCESS-KEY-zx9cv8bn7m"
NEVER_ANYWHERE = [API_TOKEN, SECRET_KEY, ADMIN_PASSWORD, AWS_KEY_ID, AWS_SECRET]


class Recorder:
    """Every response the test client saw (body + headers), with a flag for the responses
    whose job is to hand a worker their own token."""

    def __init__(self, client):
        self.client, self.responses = client, []

    def __call__(self, method, path, delivers_token=False, **kw):
        r = self.client.open(path, method=method, **kw)
        text = r.get_data(as_text=False).decode("utf-8", "replace") + "\n" + str(r.headers)
        self.responses.append((path, r.status_code, text, delivers_token))
        return r


@pytest.fixture
def capture_all_logs():
    """Capture every logger at DEBUG (Argus's own loggers, flask, werkzeug, sqlalchemy)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    quiet = {}
    for name in ("botocore", "boto3", "urllib3", "PIL", "matplotlib"):  # see SECURITY.md on botocore DEBUG
        quiet[name] = logging.getLogger(name).level
        logging.getLogger(name).setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old)
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)


def test_no_secret_in_logs_error_pages_or_exports(tmp_path, capture_all_logs, monkeypatch):
    app = create_app({"SECRET_KEY": SECRET_KEY, "API_TOKEN": API_TOKEN, "ADMIN_PASSWORD": ADMIN_PASSWORD,
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'argus.db'}", "PROPAGATE_EXCEPTIONS": False})
    app.logger.setLevel(logging.DEBUG)
    rec = Recorder(app.test_client())
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    r = rec("POST", "/api/batches", json={"images": make_images(tmp_path / "img", 3), "classes": ["cat", "dog"],
                                          "redundancy": 2, "tasks_per_visit": 2}, headers=auth)
    batch = r.get_json()["id"]
    # near-miss and wrong credentials must not be echoed back
    for bad in (API_TOKEN[:-1] + "X", API_TOKEN.lower(), "Bearer " + API_TOKEN):
        assert rec("GET", "/api/batches", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
    worker_tokens = []
    for w in ("alice", "bob"):
        with app.app_context():
            link = make_worker_token(w, batch)
        r = rec("POST", "/w/api/start", delivers_token=True, json={"batch": batch, "worker_token": link})
        visit = r.get_json()["visit_token"]
        worker_tokens.append(visit)
        rec("POST", "/w/api/consent", json={"visit_token": visit})
        while not (n := rec("POST", "/w/api/next", delivers_token=True, json={"visit_token": visit}).get_json())["done"]:
            worker_tokens += [n["assignment_token"], f"client-{w}-{n['assignment']}-xyz"]
            rec("POST", "/w/api/submit", json={"assignment_token": n["assignment_token"], "answer": {"label": "cat"},
                                               "client_token": worker_tokens[-1]})
            rec("POST", "/w/api/submit", json={"assignment_token": n["assignment_token"] + "x", "answer": {}})
        rec("POST", "/w/api/finish", json={"visit_token": visit})
    # HTML pages: the entry link redirects to a URL carrying the visit token (its purpose)
    r = rec("GET", f"/w/{batch}?worker=carol", delivers_token=True)
    rec("GET", r.location, delivers_token=True)
    # admin: a wrong password is neither echoed nor logged; the right one opens the dashboard
    page = rec("GET", "/admin/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    rec("POST", "/admin/login", data={"username": "admin", "password": ADMIN_PASSWORD + "-typo", "csrf_token": csrf})
    rec("POST", "/admin/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf})
    rec("GET", "/admin/")
    rec("GET", f"/admin/batches/{batch}")
    exports = [rec("GET", f"/api/batches/{batch}/judgments?format={f}", headers=auth) for f in ("csv", "json")]
    exports += [rec("GET", f"/admin/batches/{batch}/export.csv"), rec("GET", f"/admin/batches/{batch}/export.csv?hash_workers=1")]
    parquet = rec("GET", f"/api/batches/{batch}/judgments?format=parquet", headers=auth)
    events = rec("GET", "/api/events?limit=5000", headers=auth)
    # a forced internal error: generic page, no traceback, no configuration
    from crowd import service

    def explode(*a, **k):
        raise RuntimeError("simulated failure deep in the service layer")

    monkeypatch.setattr(service, "batch_status", explode)
    for path, hdr in ((f"/api/batches/{batch}", auth), (f"/admin/batches/{batch}", {})):
        r = rec("GET", path, headers=hdr)
        assert r.status_code == 500
        assert "Traceback" not in r.get_data(as_text=True) and "simulated failure" not in r.get_data(as_text=True)

    logs = capture_all_logs.getvalue()
    assert "simulated failure" in logs  # the logs were really captured (the 500 is logged for operators)
    export_text = "\n".join(r.get_data(as_text=True) for r in exports + [events])
    export_text += pq.read_table(io.BytesIO(parquet.get_data())).to_pandas().to_csv()
    assert "alice" in export_text  # the exports were really read
    for secret in NEVER_ANYWHERE:
        assert secret not in logs, secret
        assert secret not in export_text, secret
        for path, status, text, _ in rec.responses:
            assert secret not in text, (secret, path, status)
    for token in worker_tokens:
        assert token not in logs and token not in export_text, token
        for path, status, text, delivers in rec.responses:
            if not delivers:
                assert token not in text, (path, status)
    get_database(app).engine.dispose()


def test_mturk_credentials_never_in_logs_or_errors(tmp_path, capture_all_logs, aws_credentials):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mturk"))
    from fake_mturk import FakeMTurk
    from mturk_sim import label_batch

    from crowd.providers.mturk_client import MTurkClient, MTurkError
    from crowd.providers.mturk_service import LaunchSettings, MTurkService

    aws_credentials(AWS_KEY_ID, AWS_SECRET)
    logging.getLogger("argus").setLevel(logging.DEBUG)
    app = create_app({"SECRET_KEY": SECRET_KEY, "DATABASE_URL": f"sqlite:///{tmp_path / 'argus.db'}"})
    db = get_database(app)
    bid = label_batch(db, tmp_path / "images", n_images=4, redundancy=1, tasks_per_visit=2, gold_rate=0)
    fake = FakeMTurk(timeout_sleep=0.3)
    fake.start()
    errors = []
    try:
        svc = MTurkService(db, MTurkClient.connect("sandbox", endpoint_url=fake.url, max_attempts=1, read_timeout=0.15),
                           progress=False)
        plan = LaunchSettings(entry_url=f"http://127.0.0.1:1/w/{bid}", title="t", description="d", assignments=2,
                              allow_http=True)
        for op, mode in (("CreateHITWithHITType", "fault"), ("CreateHITWithHITType", "drop"), ("ListHITs", "throttle"),
                         ("CreateHITType", "timeout")):
            fake.inject(op, mode)
        for _ in range(6):
            try:
                svc.launch(bid, plan, dry_run=False)
                break
            except MTurkError as exc:
                errors.append(f"{exc!s} {exc!r}")
        assert len(fake.hits) == 1 and len(errors) >= 3
    finally:
        fake.stop()
        db.engine.dispose()
    logs = capture_all_logs.getvalue()
    assert "mturk" in logs.lower()  # the adapter's records were captured
    for secret in (AWS_KEY_ID, AWS_SECRET):
        assert secret not in logs
        assert all(secret not in e for e in errors)
