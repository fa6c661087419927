"""Progress bars in logs: whole lines, no carriage returns, a handful per bar."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from training.progress import LogBar, progress_bar

ROOT = Path(__file__).resolve().parents[2]


def test_a_bar_on_a_file_logs_one_line_per_ten_percent_and_the_end(monkeypatch):
    monkeypatch.delenv("ARGUS_PROGRESS", raising=False)
    out = io.StringIO()
    bar = progress_bar(total=1000, desc="work", file=out, mininterval=0, miniters=1)
    assert isinstance(bar, LogBar)
    for _ in range(1000):
        bar.update()
    bar.close()
    lines = out.getvalue().split("\n")
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[-1] == ""  # every line ends
    percents = [line.split("%")[0].split()[-1] for line in lines[:-1]]
    assert percents == ["0", "10", "20", "30", "40", "50", "60", "70", "80", "90", "100"]


def test_a_bar_left_unfinished_and_not_left_logs_its_last_state_once(monkeypatch):
    monkeypatch.delenv("ARGUS_PROGRESS", raising=False)
    out = io.StringIO()
    bar = progress_bar(total=7, desc="part", file=out, mininterval=0, miniters=1, leave=False)
    for _ in range(3):
        bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split("|")[-1].split("[")[0].strip() for line in lines] == ["0/7", "1/7", "2/7", "3/7"]  # 14%, 28%, 42%
    assert "\r" not in out.getvalue()


def test_without_a_total_it_logs_the_start_and_the_end(monkeypatch):
    monkeypatch.delenv("ARGUS_PROGRESS", raising=False)
    out = io.StringIO()
    for _ in progress_bar(iter(range(500)), desc="stream", file=out, mininterval=0):
        pass
    lines = out.getvalue().splitlines()
    assert [line.split("[")[0].strip() for line in lines] == ["stream: 0it", "stream: 500it"]


def test_the_mode_can_be_forced_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv("ARGUS_PROGRESS", "off")
    out = io.StringIO()
    for _ in progress_bar(range(10), file=out):
        pass
    assert out.getvalue() == ""
    monkeypatch.setenv("ARGUS_PROGRESS", "loud")
    with pytest.raises(ValueError, match="ARGUS_PROGRESS must be one of tty, log, off; got 'loud'"):
        progress_bar(range(3))


def _toyworld(tmp_path, name: str) -> list[str]:
    return [sys.executable, "-m", "argus", "data", "toyworld", "--out", str(tmp_path / name), "--n-train", "1000",
            "--n-val", "0", "--n-test", "0", "--image-size", "16", "--workers", "1"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ARGUS_PROGRESS"}
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.mark.slow
def test_a_cli_command_writing_to_a_pipe_logs_lines_not_redraws(tmp_path):
    run = subprocess.run(_toyworld(tmp_path, "piped"), capture_output=True, env=_env(), cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    err = run.stderr.decode()
    assert err.count("\r") == 0
    bar_lines = [line for line in err.splitlines() if line.startswith("toy world:")]
    assert 2 <= len(bar_lines) <= 12, err  # start, at most one per 10 %, the end
    assert "1000/1000" in bar_lines[-1]


@pytest.mark.slow
def test_the_same_command_on_a_terminal_still_redraws_one_line(tmp_path):
    # the helper only changes what non-terminals get: under a pseudo-terminal tqdm redraws with '\r'
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 0x0 terminal gets no bar
    proc = subprocess.Popen(_toyworld(tmp_path, "tty"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=follower, env=_env(), cwd=ROOT)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO once the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=300) == 0
    assert b"".join(chunks).count(b"\r") >= 2
