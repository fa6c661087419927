"""Fixtures every test folder shares: the database backend of the crowd server (SQLite, or the
PostgreSQL test server) and fresh PostgreSQL schemas on that server."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import pytest

PG_URL = os.environ.get("ARGUS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def _fresh_schema(prefix: str):
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield name
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request) -> str:
    """`"sqlite"` or `"postgres"`: a test taking it runs once on each database."""
    return request.param


@pytest.fixture(scope="session")
def pg_url() -> str:
    """SQLAlchemy URL of the PostgreSQL test server (`ARGUS_TEST_POSTGRES_URL`)."""
    return PG_URL


@pytest.fixture
def pg_schema():
    """A fresh, empty schema on the PostgreSQL test server, dropped after the test."""
    with _fresh_schema("argus_test") as name:
        yield name


@pytest.fixture(scope="session")
def pg_session_schema():
    """One schema for the whole test session (tests empty its tables themselves); dropped at the end."""
    with _fresh_schema("argus_session") as name:
        yield name
