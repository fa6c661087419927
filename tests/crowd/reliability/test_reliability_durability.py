"""Durability settings and backups: the served SQLite connections use WAL + synchronous=FULL
(an acknowledged judgment survives a power cut, not only a process kill); an online backup of a
live SQLite database and a pg_dump / pg_restore round trip of a PostgreSQL schema restore every
judgment with the invariants intact (the procedures SECURITY.md gives)."""

from __future__ import annotations

import sqlite3
import subprocess
import uuid

import pytest
from sqlalchemy import create_engine, func, select, text

from crowd import service as S
from crowd.app import create_app
from crowd.db import Database, get_database, make_engine
from crowd.models import Judgment


def _pragmas(app) -> tuple[str, int]:
    with get_database(app).engine.connect() as conn:
        return (conn.exec_driver_sql("PRAGMA journal_mode").scalar(),
                conn.exec_driver_sql("PRAGMA synchronous").scalar())


def test_default_sqlite_settings_survive_power_loss(tmp_path, monkeypatch):
    monkeypatch.delenv("ARGUS_SQLITE_SYNCHRONOUS", raising=False)
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "SECRET_KEY": "k"})
    assert app.config["SQLITE_SYNCHRONOUS"] == "FULL"
    assert _pragmas(app) == ("wal", 2)  # 2 = FULL: the WAL is fsynced at every commit
    get_database(app).engine.dispose()
    monkeypatch.setenv("ARGUS_SQLITE_SYNCHRONOUS", "NORMAL")  # an explicit, documented trade-off
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}", "SECRET_KEY": "k"})
    assert _pragmas(app) == ("wal", 1)
    get_database(app).engine.dispose()
    with pytest.raises(ValueError, match="SQLITE_SYNCHRONOUS"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", "SECRET_KEY": "k", "SQLITE_SYNCHRONOUS": "sometimes"})


def _fill(app, h, tmp_path, n_workers=3) -> int:
    client = app.test_client()
    b = h.label_batch(client, tmp_path / "img", n=4, redundancy=2, tasks_per_visit=4)
    for w in range(n_workers):
        visit = h.start(client, b["id"], f"w{w}")
        while not (n := h.lease(client, visit))["done"]:
            assert h.submit(client, n["assignment_token"], {"label": "cat"}).status_code == 201
    return b["id"]


def test_sqlite_online_backup_of_a_live_database_restores_everything(sqlite_app, h, tmp_path):
    batch = _fill(sqlite_app, h, tmp_path)
    live = sqlite_app.config["DATABASE_URL"].removeprefix("sqlite:///")
    # a writer holds a read transaction open while the backup runs: the backup is still consistent
    holder = sqlite3.connect(live)
    holder.execute("BEGIN")
    holder.execute("SELECT count(*) FROM judgment").fetchone()
    backup = tmp_path / "backup.db"
    with sqlite3.connect(live) as src, sqlite3.connect(backup) as dst:
        src.backup(dst)  # what `sqlite3 argus.db ".backup backup.db"` does
    holder.rollback()
    holder.close()
    assert sqlite3.connect(backup).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    restored = Database(make_engine(f"sqlite:///{backup}"))
    with restored.reading() as s, get_database(sqlite_app).reading() as live_s:
        assert s.scalar(select(func.count(Judgment.id))) == live_s.scalar(select(func.count(Judgment.id))) == 8
        assert S.check_invariants(s, batch) == S.check_invariants(live_s, batch) == {
            k: 0 for k in S.check_invariants(s, batch)}
    restored.engine.dispose()


@pytest.mark.postgres
def test_pg_dump_and_restore_of_a_schema(h, tmp_path, pg_url, pg_schema):
    app = create_app({"TESTING": True, "SECRET_KEY": "k", "API_TOKEN": h.API_TOKEN, "DATABASE_URL": pg_url,
                      "DATABASE_SCHEMA": pg_schema})
    batch = _fill(app, h, tmp_path)
    get_database(app).engine.dispose()
    engine = create_engine(pg_url)
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    dump = tmp_path / "argus.dump"
    subprocess.run(["pg_dump", "--format=custom", f"--schema={pg_schema}", f"--file={dump}", dsn], check=True)
    # restore into a fresh database (what a restore after losing the server looks like)
    target_db = f"restore_{uuid.uuid4().hex[:8]}"
    with create_engine(pg_url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{target_db}"'))
    target_url = engine.url.set(database=target_db)
    try:
        subprocess.run(["pg_restore", "--no-owner", f"--dbname={target_url.set(drivername='postgresql').render_as_string(hide_password=False)}",
                        str(dump)], check=True)
        restored = Database(make_engine(target_url.render_as_string(hide_password=False), schema=pg_schema))
        with restored.reading() as s:
            assert s.scalar(select(func.count(Judgment.id))) == 8
            assert S.check_invariants(s, batch) == {k: 0 for k in S.check_invariants(s, batch)}
        restored.engine.dispose()
    finally:
        with create_engine(pg_url, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{target_db}" WITH (FORCE)'))
        engine.dispose()
