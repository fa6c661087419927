"""Pausing, resuming, closing and expiring a batch: the service rules on both databases, the
API's PATCH through them, and `argus crowd batch pause|resume|close|expire` on a SQLite file."""

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from argus.cli import cli
from crowd import service as S
from crowd.app import create_app
from crowd.db import get_database
from crowd.models import Assignment, AssignmentStatus, Batch, Event, Provider, Task


def _lease(app, batch_id, worker):
    db = get_database(app)
    with db.transaction() as s:
        v = S.start_visit(s, batch_id, S.Identity(Provider.lab, worker))
        S.record_consent(s, v, "1")
        return S.lease_next(s, v).id


def test_moves_and_refusals(app, h):
    b = h.create_batch(app.test_client(), redundancy=2)
    held = _lease(app, b["id"], "w1")
    db = get_database(app)

    def move(action):
        with db.transaction() as s:
            return S.change_batch(s, b["id"], action)

    assert move("pause") == {"batch": b["id"], "before": "active", "after": "paused", "leases_ended": 0}
    with pytest.raises(S.Conflict, match=f"batch {b['id']} is already paused"):
        move("pause")
    assert move("resume")["after"] == "active"
    with pytest.raises(S.Conflict, match=f"batch {b['id']} is already active"):
        move("resume")
    assert move("close") == {"batch": b["id"], "before": "active", "after": "closed", "leases_ended": 0}
    with db.reading() as s:  # closing keeps the running lease: its worker may still submit
        assert s.get(Assignment, held).status == AssignmentStatus.leased
    with pytest.raises(S.Conflict, match="closed and expired batches stay so"):
        move("resume")
    assert move("expire") == {"batch": b["id"], "before": "closed", "after": "expired", "leases_ended": 1}
    with db.reading() as s:
        assert s.get(Assignment, held).status == AssignmentStatus.expired
        assert sum(s.scalars(select(Task.n_active).where(Task.batch_id == b["id"]))) == 0
        log = [(e.type, e.data.get("action")) for e in s.scalars(select(Event).order_by(Event.id))
               if e.type in ("batch_status", "lease_expired")]
    assert log == [("batch_status", "pause"), ("batch_status", "resume"), ("batch_status", "close"),
                   ("lease_expired", None), ("batch_status", "expire")]
    for action in ("pause", "resume", "close", "expire"):
        with pytest.raises(S.Conflict, match="is (already )?expired"):
            move(action)
    with pytest.raises(S.NotFound, match="batch 999 not found"):
        with db.transaction() as s:
            S.change_batch(s, 999, "pause")
    with pytest.raises(S.ServiceError, match="action must be one of pause, resume, close, expire, got 'stop'"):
        with db.transaction() as s:
            S.change_batch(s, b["id"], "stop")


def test_api_patch_follows_the_same_rules(client, h):
    b = h.create_batch(client, redundancy=1)
    patch = lambda status: client.patch(f"/api/batches/{b['id']}", json={"status": status}, headers=h.AUTH)  # noqa: E731
    assert patch("closed").get_json()["status"] == "closed"
    assert patch("closed").status_code == 200  # a retried close changes nothing
    r = patch("active")
    assert r.status_code == 409 and "cannot resume it" in r.get_json()["message"]
    assert patch("expired").get_json()["status"] == "expired"
    assert "status must be active|paused|closed|expired" in patch("gone").get_json()["message"]


def test_cli_pause_resume_close_expire(tmp_path, sheets_dir, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("ARGUS_DATABASE_URL", url)
    monkeypatch.setenv("ARGUS_SECRET_KEY", "cli-secret")
    runner = CliRunner()
    assert runner.invoke(cli, ["crowd", "batch", "create", str(sheets_dir), "--kind", "label"]).exit_code == 0
    app = create_app({"DATABASE_URL": url})
    _lease(app, 1, "cli-worker")
    get_database(app).engine.dispose()

    def run(*args):
        r = runner.invoke(cli, ["crowd", "batch", *args])
        return r.exit_code, r.output.strip()

    assert run("pause", "1") == (0, "batch 1: active -> paused")
    assert run("pause", "1") == (1, "Error: batch 1 is already paused")
    assert run("resume", "1") == (0, "batch 1: paused -> active")
    assert run("close", "1") == (0, "batch 1: active -> closed")
    assert run("resume", "1") == (1, "Error: batch 1 is closed: cannot resume it; resume works on paused batches "
                                     "(closed and expired batches stay so; create a new batch instead)")
    assert run("expire", "1") == (0, "batch 1: closed -> expired; 1 running leases ended")
    assert run("close", "7") == (1, "Error: batch 7 not found")
    assert run("expire", "1")[1] == "Error: batch 1 is already expired"
    app = create_app({"DATABASE_URL": url})
    with get_database(app).reading() as s:
        assert s.get(Batch, 1).status.value == "expired"
    get_database(app).engine.dispose()
