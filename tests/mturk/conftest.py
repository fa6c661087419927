"""Fixtures for the MTurk adapter tests: dummy AWS credentials, the in-process fake MTurk
endpoint, and a real boto3 client pointed at it."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # fake_mturk.py lives next to the tests

from fake_mturk import FakeMTurk  # noqa: E402


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """Dummy credentials only: no shared profile or config is read, nothing can reach AWS."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAARGUSTESTDUMMYKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "argus-test-dummy-secret-never-real")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def fake():
    server = FakeMTurk(timeout_sleep=0.6)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_client(fake):
    """A real boto3 MTurk client (through Argus's thin layer) talking to the fake."""
    from crowd.providers.mturk_client import MTurkClient

    return MTurkClient.connect("sandbox", endpoint_url=fake.url, max_attempts=3, read_timeout=0.3,
                               connect_timeout=1)
