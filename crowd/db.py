"""Database access: engines for SQLite (WAL, `BEGIN IMMEDIATE`) and PostgreSQL, `get_db()`,
`init_app(app)`, and the versioned schema with its migration path.

Migrations are a small ordered list of Python steps (`MIGRATIONS`) recorded in the
`argus_schema` table rather than Alembic: the schema is one module, the server must upgrade
itself safely when several gunicorn workers start at once (we take a database lock around the
upgrade), and it keeps the install free of another tool. A fresh database gets
`metadata.create_all` and is stamped with the latest version; an older one runs each later step
in one transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator

from flask import Flask, current_app, g
import sqlalchemy
from sqlalchemy import Connection, create_engine, event, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.functions import FunctionElement

from crowd.models import (  # noqa: F401  (re-exported for other packages)
    AdminSession,
    Assignment,
    AssignmentStatus,
    Base,
    Batch,
    BatchStatus,
    Consent,
    Event,
    GoldAnswer,
    Judgment,
    LoginAttempt,
    Media,
    Provider,
    SchemaVersion,
    Task,
    Visit,
    VisitStatus,
    Worker,
    WorkerStatus,
)

__all__ = ["Assignment", "AssignmentStatus", "Base", "Batch", "BatchStatus", "Consent", "Database", "Event",
           "GoldAnswer", "Judgment", "MIGRATIONS", "Provider", "SCHEMA_VERSION", "Task", "Visit", "VisitStatus",
           "Worker", "WorkerStatus", "database_from_config", "get_database", "get_db", "init_app", "is_postgres",
           "make_engine", "schema_version", "upgrade"]

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _initial(conn: Connection) -> None:
    Base.metadata.create_all(conn)


_V2_VISIT_COLUMNS = {"completion": "VARCHAR(16)", "partial_reason": "VARCHAR(32)", "mturk_check": "VARCHAR(16)",
                     "mturk_check_note": "TEXT", "client_addr": "VARCHAR(64)"}


def _integrity_v2(conn: Connection) -> None:
    """Crowd integrity: MTurk visits keyed on (assignmentId, workerId) (MTurk re-issues an
    assignment id to the next worker); completion kind, MTurk check and client address on
    visits; client address on assignments; lease-cap indexes. New tables (media manifest,
    admin sessions, login attempts) come from `create_all`."""
    if conn.dialect.name == "postgresql":
        for name, type_ in _V2_VISIT_COLUMNS.items():
            conn.execute(text(f"ALTER TABLE visit ADD COLUMN {name} {type_}"))
        conn.execute(text("ALTER TABLE visit DROP CONSTRAINT uq_visit_external"))
        conn.execute(text("ALTER TABLE visit ADD CONSTRAINT uq_visit_external "
                          "UNIQUE (provider, external_assignment_id, worker_id)"))
    else:
        # SQLite cannot change a table constraint: rebuild the table (SQLite's documented
        # procedure; `upgrade` runs migrations with foreign keys off, so nothing cascades).
        old = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(visit)")]
        md = sqlalchemy.MetaData()
        for referenced in (Batch, Worker):
            referenced.__table__.to_metadata(md)
        new_table = Visit.__table__.to_metadata(md, name="visit_new")
        for index in list(new_table.indexes):
            new_table.indexes.discard(index)
        new_table.create(conn)
        cols = ", ".join(old)
        conn.exec_driver_sql(f"INSERT INTO visit_new ({cols}) SELECT {cols} FROM visit")
        conn.exec_driver_sql("DROP TABLE visit")
        conn.exec_driver_sql("ALTER TABLE visit_new RENAME TO visit")
        for index in Visit.__table__.indexes:
            index.create(conn)
    conn.execute(text("ALTER TABLE assignment ADD COLUMN client_addr VARCHAR(64)"))
    for index in Assignment.__table__.indexes:
        if index.name in ("ix_assignment_worker", "ix_assignment_addr", "ix_assignment_addr_time"):
            index.create(conn)


def _judgment_review_v3(conn: Connection) -> None:
    """A researcher's accept/reject verdict per judgment (rejected answers leave exports)."""
    for name, type_ in (("review", "VARCHAR(16)"), ("review_note", "TEXT"),
                        ("reviewed_at", "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql"
                         else "DATETIME")):
        conn.execute(text(f"ALTER TABLE judgment ADD COLUMN {name} {type_}"))


def _media_manifest_v4(conn: Connection) -> None:
    """Media manifests for batches made before the server served manifests only: every file
    their task payloads name, inside the batch's folder (a batch without a folder keeps none)."""
    from pathlib import Path

    from crowd.media import payload_media

    Media.__table__.create(conn, checkfirst=True)
    for batch_id, root in conn.execute(select(Batch.__table__.c.id, Batch.__table__.c.media_root)).all():
        if not root or Path(root) == Path(root).parent:  # no folder, or a filesystem root: serve nothing
            continue
        base = Path(root).resolve()
        keys: set[str] = set()
        for (payload,) in conn.execute(select(Task.__table__.c.payload).where(Task.__table__.c.batch_id == batch_id)):
            keys.update(payload_media(payload or {}))
        have = set(conn.scalars(select(Media.__table__.c.key).where(Media.__table__.c.batch_id == batch_id)))
        rows = [{"batch_id": batch_id, "key": k, "path": str(base / k)} for k in sorted(keys - have)
                if base in (base / k).resolve().parents]
        if rows:
            conn.execute(Media.__table__.insert(), rows)


# (version, note, step). Append new steps; never edit a released one.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _initial),
    (2, "crowd integrity: visits keyed on (assignment, worker), completion kinds, caps", _integrity_v2),
    (3, "judgment review: accepted or rejected by a researcher", _judgment_review_v3),
    (4, "media manifests of existing batches from their task payloads", _media_manifest_v4),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def rank_key(prefix: str, task_id: int) -> int:
    """A task's place in one worker's order: the first 60 bits of MD5(prefix + task id), where
    the prefix names the batch's seed and the worker (`service.order_prefix`). `task_rank`
    computes the same number inside the database, on SQLite and on PostgreSQL alike."""
    return int(hashlib.md5(f"{prefix}{task_id}".encode()).hexdigest()[:15], 16)


class task_rank(FunctionElement):
    """SQL `rank_key(prefix, task_id)`: SQLite calls the Python function registered on each
    connection, PostgreSQL computes it with `md5`."""

    type = sqlalchemy.BigInteger()
    name = "argus_rank"
    inherit_cache = True


@compiles(task_rank, "sqlite")
def _task_rank_sqlite(element, compiler, **kw):
    return f"argus_rank({compiler.process(element.clauses, **kw)})"


@compiles(task_rank, "postgresql")
def _task_rank_postgres(element, compiler, **kw):
    prefix, task_id = list(element.clauses)
    return (f"('x' || substr(md5({compiler.process(prefix, **kw)} || CAST({compiler.process(task_id, **kw)} AS TEXT)), "
            "1, 15))::bit(60)::bigint")


def make_engine(url: str, *, schema: str | None = None, sqlite_synchronous: str = "FULL",
                busy_timeout_s: float = 30.0, pool_size: int = 5, echo: bool = False) -> Engine:
    """Create an engine for `url` with Argus's transaction rules.

    SQLite: WAL journal, `synchronous` as given (FULL, the default: a committed judgment
    survives any crash or kill of the server processes and also an OS crash or power cut, at one
    fsync per commit; NORMAL survives process kills only), a busy timeout, and every write transaction opened with `BEGIN IMMEDIATE` so two
    writers never deadlock on a lock upgrade. Read-only work uses
    `engine.execution_options(argus_readonly=True)` and a plain deferred `BEGIN`.
    PostgreSQL: READ COMMITTED, optional `schema` put first on the `search_path`.
    """
    if url.startswith("sqlite"):
        if sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"SQLITE_SYNCHRONOUS must be OFF|NORMAL|FULL|EXTRA, got {sqlite_synchronous!r}")
        engine = create_engine(url, echo=echo, connect_args={"timeout": busy_timeout_s, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):
            # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit one is DEFERRED).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous.upper()}")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
            dbapi_conn.create_function("argus_rank", 2, rank_key, deterministic=True)

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            if conn.get_execution_options().get("argus_readonly"):
                conn.exec_driver_sql("BEGIN")
                return
            # Take the write lock with our own short, jittered retries instead of SQLite's busy
            # handler, which sleeps up to 100 ms per try once a writer has waited a while: under
            # several gunicorn workers that, not the work itself, made the p99 latency.
            raw = conn.connection.driver_connection  # the sqlite3 connection: no per-statement overhead
            raw.execute("PRAGMA busy_timeout=0")
            deadline, delay = time.monotonic() + busy_timeout_s, 0.0005
            try:
                while True:
                    try:
                        raw.execute("BEGIN IMMEDIATE")
                        return
                    except sqlite3.OperationalError as exc:
                        if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                            raise
                        time.sleep(delay * (0.5 + random.random()))
                        delay = min(delay * 1.5, 0.005)
            finally:
                raw.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")

        return engine

    if schema is not None and not _SCHEMA_NAME.match(schema):
        raise ValueError(f"DATABASE_SCHEMA must be a plain identifier, got {schema!r}")
    engine = create_engine(url, echo=echo, pool_size=pool_size, max_overflow=10, pool_pre_ping=True)
    if schema:
        @event.listens_for(engine, "connect")
        def _pg_search_path(dbapi_conn, _record):
            with dbapi_conn.cursor() as cur:
                cur.execute(f'SET search_path TO "{schema}", public')
            dbapi_conn.commit()
    return engine


def is_postgres(session_or_engine) -> bool:
    """True when the bound database is PostgreSQL (selects `FOR UPDATE SKIP LOCKED`)."""
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"


def upgrade(engine: Engine) -> int:
    """Create or migrate the schema to `SCHEMA_VERSION`; safe when several processes race.

    Returns the version the database is at afterwards. On SQLite the migration runs with
    foreign keys off (a table rebuild must not cascade) and is checked with
    `PRAGMA foreign_key_check` before it commits.
    """
    with engine.connect() as conn:
        raw = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")  # outside a transaction, where SQLite honours it
        try:
            with conn.begin():
                version = _upgrade_in(conn)
                if raw is not None:
                    bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if bad:
                        raise RuntimeError(f"schema upgrade broke foreign keys: {bad[:5]}")
                return version
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


def _upgrade_in(conn: Connection) -> int:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(472019)"))  # one upgrader at a time
    # (SQLite: this transaction began IMMEDIATE, which already excludes other writers.)
    SchemaVersion.__table__.create(conn, checkfirst=True)
    current = conn.execute(select(SchemaVersion.version).order_by(SchemaVersion.version.desc()).limit(1)).scalar()
    if current is None:
        Base.metadata.create_all(conn)
        conn.execute(SchemaVersion.__table__.insert().values(version=SCHEMA_VERSION, note="created"))
        return SCHEMA_VERSION
    if current > SCHEMA_VERSION:
        raise RuntimeError(f"database schema version {current} is newer than this Argus ({SCHEMA_VERSION})")
    for version, note, step in MIGRATIONS:
        if version > current:
            step(conn)
            conn.execute(SchemaVersion.__table__.insert().values(version=version, note=note))
    # Tables other packages add on `Base` (e.g. the MTurk adapter's) appear once imported.
    Base.metadata.create_all(conn)
    return SCHEMA_VERSION


def schema_version(engine: Engine) -> int | None:
    """The version recorded in the database, or None for an empty database."""
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, SchemaVersion.__tablename__):
            return None
        return conn.execute(select(SchemaVersion.version).order_by(SchemaVersion.version.desc()).limit(1)).scalar()


class Database:
    """The engine and session factories of one app."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(engine.execution_options(argus_readonly=True), expire_on_commit=False)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction (SQLite: BEGIN IMMEDIATE); commits on success."""
        with self.sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only session that never takes SQLite's write lock."""
        with self.read_sessions() as session, session.begin():
            yield session


def database_from_config(config) -> Database:
    """Build a `Database` from a config mapping (`DATABASE_URL`, `DATABASE_SCHEMA`, ...)."""
    return Database(make_engine(
        config["DATABASE_URL"],
        schema=config.get("DATABASE_SCHEMA") or None,
        sqlite_synchronous=config.get("SQLITE_SYNCHRONOUS", "FULL"),
        busy_timeout_s=float(config.get("SQLITE_BUSY_TIMEOUT_S", 30)),
        pool_size=int(config.get("DATABASE_POOL_SIZE", 5)),
    ))


def get_database(app: Flask | None = None) -> Database:
    """The app's `Database` (engine + session factories)."""
    return (app or current_app).extensions["argus_db"]


def get_db() -> Session:
    """The request's session (opened on first use, closed when the request ends)."""
    if "argus_session" not in g:
        g.argus_session = get_database().sessions()
    return g.argus_session


def close_db(_exc=None) -> None:
    session = g.pop("argus_session", None)
    if session is not None:
        session.close()


def init_app(app: Flask) -> None:
    """Attach the database to `app`; create/upgrade the schema when `AUTO_INIT_DB` is on."""
    db = database_from_config(app.config)
    app.extensions["argus_db"] = db
    app.teardown_appcontext(close_db)
    if app.config.get("AUTO_INIT_DB", True):
        upgrade(db.engine)
