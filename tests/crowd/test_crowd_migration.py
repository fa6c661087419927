"""The latest schema on a database made by version 1: every row kept (visits, their consents,
assignments and judgments), foreign keys intact, an MTurk assignment id may now belong to two
workers (MTurk re-issues a returned assignment's id to the next worker) (v2), and judgments carry
a researcher's review, empty on old rows (v3)."""

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text

from crowd.db import SCHEMA_VERSION, make_engine, schema_version, upgrade
from crowd.models import Assignment, Consent, Judgment, Provider, Visit

V1_SQLITE = Path(__file__).parent / "fixtures" / "schema_v1.sqlite.sql"
NOW = "2024-05-01 12:00:00"


def _v1_rows(execute):
    execute(f"INSERT INTO argus_schema (id, version, applied_at, note) VALUES (1, 1, '{NOW}', 'created')")
    execute("INSERT INTO batch (id, name, kinds, media_root, redundancy, gold_rate, tasks_per_visit, reward_cents, "
            "lease_seconds, classes, exclude_batches, options, status, created_at) VALUES "
            f"(1, 'b', '[\"label\"]', '/tmp', 1, 0, 2, 0, 900, '[\"a\"]', '[]', '{{}}', 'active', '{NOW}')")
    execute(f"INSERT INTO worker (id, provider, external_id, status, blocked, gold_correct, gold_total, created_at) "
            f"VALUES (1, 'mturk', 'AW1', 'active', false, 0, 0, '{NOW}')")
    execute("INSERT INTO task (id, batch_id, kind, sheet, payload, is_gold, n_done, n_active) VALUES "
            "(1, 1, 'label', 's1', '{}', false, 0, 1)")
    execute("INSERT INTO visit (id, batch_id, worker_id, provider, external_assignment_id, status, n_submitted, "
            f"started_at) VALUES (1, 1, 1, 'mturk', 'ASG1', 'consented', 0, '{NOW}')")
    execute(f"INSERT INTO consent (id, worker_id, batch_id, visit_id, version, consented_at) VALUES (1, 1, 1, 1, '1', '{NOW}')")
    execute("INSERT INTO assignment (id, task_id, worker_id, batch_id, visit_id, status, leased_at, expires_at) VALUES "
            f"(1, 1, 1, 1, 1, 'leased', '{NOW}', '{NOW}')")
    execute("INSERT INTO judgment (id, assignment_id, task_id, worker_id, batch_id, client_token, answer, duration_s, "
            f"submitted_at) VALUES (1, 1, 1, 1, 1, 'token-0001', '{{\"label\": \"a\"}}', 2.5, '{NOW}')")


def _check_upgraded(engine):
    assert schema_version(engine) == 1
    assert upgrade(engine) == SCHEMA_VERSION == 4
    assert schema_version(engine) == 4 and upgrade(engine) == 4  # idempotent
    with engine.begin() as conn:
        assert conn.scalar(select(func.count()).select_from(Consent.__table__)) == 1
        a = conn.execute(select(Assignment.__table__)).one()
        assert (a.visit_id, a.client_addr) == (1, None)
        v = conn.execute(select(Visit.__table__)).one()
        assert (v.external_assignment_id, v.status, v.completion, v.mturk_check) == ("ASG1", "consented", None, None)
        j = conn.execute(select(Judgment.__table__)).one()
        assert (j.answer, j.duration_s, j.review, j.review_note, j.reviewed_at) == ({"label": "a"}, 2.5, None, None, None)
        conn.execute(Judgment.__table__.update().values(review="rejected", reviewed_at=datetime(2024, 5, 2, tzinfo=timezone.utc)))
        assert conn.scalar(select(Judgment.__table__.c.reviewed_at)).replace(tzinfo=timezone.utc) \
            == datetime(2024, 5, 2, tzinfo=timezone.utc)
        # the re-issued assignment id, now held by another worker
        conn.execute(text(f"INSERT INTO worker (id, provider, external_id, status, blocked, gold_correct, gold_total, "
                          f"created_at) VALUES (2, 'mturk', 'AW2', 'active', false, 0, 0, '{NOW}')"))
        conn.execute(insert(Visit.__table__).values(batch_id=1, worker_id=2, provider=Provider.mturk.value,
                                                    external_assignment_id="ASG1", status="started", n_submitted=0))
        assert conn.scalar(select(func.count()).select_from(Visit.__table__)) == 2


def test_sqlite_v1_database_upgrades(tmp_path):
    path = tmp_path / "v1.db"
    con = sqlite3.connect(path)
    con.executescript(V1_SQLITE.read_text())
    _v1_rows(con.execute)
    con.commit()
    con.close()
    engine = make_engine(f"sqlite:///{path}")
    _check_upgraded(engine)
    with engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # back on after the upgrade
    engine.dispose()


@pytest.mark.postgres
def test_postgres_v1_database_upgrades(pg_url, pg_schema):
    engine = make_engine(pg_url, schema=pg_schema)
    upgrade(engine)
    with engine.begin() as conn:  # back to version 1's shape
        for table in ("visit", "assignment", "media", "admin_session", "login_attempt", "consent", "judgment",
                      "gold_answer", "task", "worker", "batch", "event", "argus_schema"):
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
        for statement in V1_SQLITE.read_text().split(";"):
            if statement.strip():
                conn.execute(text(statement.replace("DATETIME", "TIMESTAMP WITH TIME ZONE")
                                  .replace("id INTEGER NOT NULL", "id SERIAL NOT NULL")))
        _v1_rows(lambda sql: conn.execute(text(sql)))
        for table in ("argus_schema", "visit"):  # rows were inserted with explicit ids
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 10)"))
    _check_upgraded(engine)
    engine.dispose()
