"""Fixtures for CLI tests: the installed `argus` script and a tiny world made through the CLI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from argus.cli import cli


@pytest.fixture(scope="session")
def argus_script() -> Path:
    """The console script installed next to the running interpreter (`.venv/bin/argus`)."""
    script = Path(sys.executable).with_name("argus")
    assert script.exists(), f"{script}: the argus console script is not installed (run make install)"
    return script


@pytest.fixture(scope="session")
def script_env() -> dict:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})  # tiny jobs; do not contend
    return env


@pytest.fixture(scope="session")
def cli_world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "world"
    result = CliRunner().invoke(cli, ["data", "toyworld", "--out", str(root), "--n-train", "60", "--n-val", "12",
                                      "--n-test", "30", "--image-size", "32", "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="session")
def cli_run(cli_world, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(cli, ["train", "--data", str(cli_world), "--out", str(run), "--epochs", "1",
                                      "--batch-size", "32", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    return run
