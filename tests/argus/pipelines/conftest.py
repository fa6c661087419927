"""One reduced demo run (`argus demo --small` with fewer images), shared by the demo tests."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

# the CI run: the --small preset, trimmed further (same code path as `make demo`)
CI_ARGS = ["--small", "--n-train", "720", "--n-test", "180", "--sheets", "32", "--seed", "0", "--device", "cpu"]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """Runs `argus demo` through the CLI into a temporary folder; yields (out, summary, stdout)."""
    import torch

    from argus.cli import cli

    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("demo") / "run"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), *CI_ARGS], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    return out, summary, result.output
