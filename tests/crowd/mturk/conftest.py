"""Fixtures for the MTurk adapter tests: dummy AWS credentials, the in-process fake MTurk
endpoint, a real boto3 client pointed at it, and service-model validation of every request and
response of every MTurk client a test makes (directly, through the service or through the CLI)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # fake_mturk.py lives next to the tests

from fake_mturk import CLIENT_READ_TIMEOUT, FakeMTurk  # noqa: E402
from service_model import attach_validator  # noqa: E402


@pytest.fixture(autouse=True)
def aws_env(aws_credentials):
    """Dummy credentials only: nothing can reach AWS."""
    aws_credentials()


@pytest.fixture(autouse=True)
def validated_calls(monkeypatch):
    """Every boto3 MTurk client built by Argus validates each request (botocore's Stubber checks
    plus the model's pattern/max/enum constraints) and each response against the service model.
    Yields the list of operations validated, in order."""
    from crowd.providers import mturk_client

    calls: list[str] = []
    make = mturk_client.make_boto_client

    def validating(*args, **kwargs):
        boto = make(*args, **kwargs)
        attach_validator(boto).calls = calls
        return boto

    monkeypatch.setattr(mturk_client, "make_boto_client", validating)
    return calls


@pytest.fixture
def fake():
    server = FakeMTurk()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_client(fake):
    """A real boto3 MTurk client (through Argus's thin layer) talking to the fake."""
    from crowd.providers.mturk_client import MTurkClient

    return MTurkClient.connect("sandbox", endpoint_url=fake.url, max_attempts=3, read_timeout=CLIENT_READ_TIMEOUT,
                               connect_timeout=1)


# ------------------------------------------------------------------ the Argus side


@pytest.fixture
def crowd_app(request, tmp_path):
    """The real crowd server app on a fresh SQLite database, or (indirect parameter
    `"postgres"`) in a fresh schema on the PostgreSQL server, dropped afterwards."""
    from crowd.app import create_app

    cfg = {"TESTING": True, "SECRET_KEY": "mturk-test-secret", "GOLD_MIN_ANSWERS": 1,
           "DATABASE_URL": f"sqlite:///{tmp_path / 'argus.db'}"}
    backend = getattr(request, "param", "sqlite")
    if backend == "postgres":
        cfg.update(DATABASE_URL=request.getfixturevalue("pg_url"), DATABASE_SCHEMA=request.getfixturevalue("pg_schema"))
        app = create_app(cfg)
        yield app
        from crowd.db import get_database

        get_database(app).engine.dispose()
    else:
        yield create_app(cfg)


@pytest.fixture
def crowd_db(crowd_app):
    from crowd.db import get_database

    return get_database(crowd_app)


@pytest.fixture
def argus_server(crowd_app):
    """The crowd app served over real HTTP on 127.0.0.1 (werkzeug, threaded)."""
    from mturk_sim import serve

    server, url = serve(crowd_app)
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture
def make_batch(crowd_db, tmp_path):
    """make_batch(n_images=6, redundancy=2, tasks_per_visit=3, gold_rate=0.34) -> batch id.
    A `label` batch over tiny images; image 0 is also a gold task whose answer is "cat"."""
    from mturk_sim import label_batch

    counter = iter(range(1000))

    def make(**kw):
        return label_batch(crowd_db, tmp_path / f"images{next(counter)}", **kw)

    return make


@pytest.fixture
def service(crowd_db, fake_client):
    from crowd.providers.mturk_service import MTurkService

    return MTurkService(crowd_db, fake_client, progress=False)
