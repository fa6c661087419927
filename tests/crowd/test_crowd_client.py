"""The crowd server's HTTP client (`crowd.client`): the one retry policy, over real HTTP against a
scripted server that counts what reached it."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from flask import Flask, jsonify, redirect, request
from werkzeug.serving import make_server

from crowd.client import CrowdClient, CrowdHttpError, RetryPolicy, ServerUnreachable

FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.02, jitter_s=0.0)


@pytest.fixture
def scripted():
    """A server whose `/s/<name>` answers the statuses queued in `script[name]` (then 200) and
    records every request it received in `seen`."""
    app = Flask("scripted")
    script: dict[str, list] = {}
    seen: list[tuple] = []

    @app.route("/s/<name>", methods=["GET", "POST", "PATCH", "PUT"])
    def answer(name):
        seen.append((request.method, name, request.get_data(as_text=True), request.headers.get("Authorization")))
        queue = script.get(name, [])
        status, headers = queue.pop(0) if queue else (200, {})
        return jsonify(message=f"scripted {status}", n=len(seen)), status, headers

    @app.post("/form")
    def form():
        seen.append(("POST", "form", request.form.get("agree"), None))
        return redirect("/s/after", code=302)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", script, seen
    server.shutdown()
    thread.join(5)


def test_retryable_statuses_are_retried_for_idempotent_requests(scripted):
    url, script, seen = scripted
    script["a"] = [(503, {}), (502, {}), (500, {})]
    r = CrowdClient(url, retry=FAST).get("/s/a")
    assert r.status == 200 and r.retried == [503, 502, 500] and len(seen) == 4
    # a POST the caller marks idempotent (a submission with its client token) is retried too
    script["b"] = [(429, {}), (504, {})]
    r = CrowdClient(url, retry=FAST).post("/s/b", json={"x": 1}, idempotent=True)
    assert r.status == 200 and r.retried == [429, 504]
    assert [s[2] for s in seen[4:]] == ['{"x": 1}'] * 3  # the same body each time


def test_non_idempotent_requests_are_not_retried(scripted):
    url, script, seen = scripted
    script["c"] = [(503, {})]
    with pytest.raises(CrowdHttpError) as exc:
        CrowdClient(url, retry=FAST).post("/s/c", json={"make": "batch"})
    assert exc.value.status == 503 and len(seen) == 1  # sent once: a retry could make a second batch
    assert str(exc.value) == f"POST {url}/s/c: HTTP 503: scripted 503"


def test_other_errors_raise_at_once_with_the_servers_message(scripted):
    url, script, seen = scripted
    script["d"] = [(404, {}), (400, {})]
    with pytest.raises(CrowdHttpError, match=r"GET .*/s/d: HTTP 404: scripted 404"):
        CrowdClient(url, retry=FAST).get("/s/d")
    assert len(seen) == 1
    r = CrowdClient(url, retry=FAST).get("/s/d", check=False)  # the caller looks at the status itself
    assert r.status == 400 and r.json()["message"] == "scripted 400"


def test_retry_after_is_honoured(scripted):
    url, script, seen = scripted
    script["e"] = [(429, {"Retry-After": "1"})]
    t0 = time.monotonic()
    r = CrowdClient(url, retry=FAST).get("/s/e")
    assert r.status == 200 and r.retried == [429]
    assert time.monotonic() - t0 >= 1.0  # the back-off alone would wait 0.01 s


def test_gives_up_after_the_last_attempt(scripted):
    url, script, seen = scripted
    script["f"] = [(503, {})] * 10
    with pytest.raises(CrowdHttpError) as exc:
        CrowdClient(url, retry=FAST).get("/s/f")
    assert exc.value.status == 503 and len(seen) == 1 + FAST.attempts


def test_token_and_browser_redirects(scripted):
    url, script, seen = scripted
    CrowdClient(url, "tok-1", retry=FAST).get("/s/g")
    assert seen[-1][3] == "Bearer tok-1"
    # a form POST answered 302 continues with a GET, as a browser does
    r = CrowdClient(url, retry=FAST).post("/form", data={"agree": "yes"})
    assert r.url == f"{url}/s/after" and seen[-2][:3] == ("POST", "form", "yes") and seen[-1][:2] == ("GET", "after")


def test_no_server_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    t0 = time.monotonic()
    with pytest.raises(ServerUnreachable, match=rf"GET http://127.0.0.1:{port}/api/batches: no answer after 3 retries"):
        CrowdClient(f"http://127.0.0.1:{port}", retry=FAST).get("/api/batches")
    with pytest.raises(ServerUnreachable, match="no answer after retrying for 0.5 s"):
        CrowdClient(f"http://127.0.0.1:{port}", retry=RetryPolicy(give_up_s=0.5, backoff_s=0.05,
                                                                 max_backoff_s=0.1)).get("/")
    assert time.monotonic() - t0 < 5
