"""`argus crowd serve` as deployed: idle sockets cannot stall it. 50 clients connect and send
nothing (or half a request line) while a real client asks `/health` and must be answered in
under a second, also after gunicorn's first data timeout has passed for the idle ones."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from sim.load import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARGUS_")}
    env.update(ARGUS_DATABASE_URL=f"sqlite:///{tmp_path / 'argus.db'}", ARGUS_INSTANCE_PATH=str(tmp_path / "instance"),
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "argus", "crowd", "serve", "--port", str(port), "--workers", "2"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError((tmp_path / "serve.log").read_text())
    yield url, port
    os.killpg(proc.pid, 15)
    proc.wait(30)
    log.close()


def _health_seconds(url: str) -> float:
    t0 = time.perf_counter()
    r = requests.get(url + "/health", timeout=30, headers={"Connection": "close"})
    assert r.status_code == 200
    return time.perf_counter() - t0


def test_fifty_idle_sockets_do_not_stall_the_server(served):
    url, port = served
    idle = []
    try:
        for i in range(50):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 2:
                s.sendall(b"GET /health HTTP/1.1\r\n")  # half a request, then nothing
            idle.append(s)
        time.sleep(0.3)  # the server has accepted them all
        assert _health_seconds(url) < 1.0
        assert max(_health_seconds(url) for _ in range(5)) < 1.0
        time.sleep(6)  # past gunicorn's 5 s wait for a first byte: idle sockets are parked
        assert max(_health_seconds(url) for _ in range(5)) < 1.0
    finally:
        for s in idle:
            s.close()
