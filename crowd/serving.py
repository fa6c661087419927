"""The production server's command line: gunicorn with the threaded worker class (`gthread`).

gunicorn's default `sync` worker serves one connection at a time per process: a client that
connects and sends nothing holds a worker until `--timeout` kills it, so two idle sockets froze
a two-worker server. The `gthread` worker (installed with gunicorn, no extra dependency) runs
`threads` request threads per process and parks connections that have sent nothing, or sit idle
between keep-alive requests, in a poller: in the installed gunicorn a new connection that sends
nothing for 5 s goes back to the poller without holding a thread, and an idle keep-alive
connection is closed after `keep_alive_s`. With `threads` above the number of idle sockets one
process can be handed at once, such sockets never delay a real request. Slow uploads still hold a
thread while they send: on the public internet put a buffering proxy (nginx) in front, as
gunicorn's documentation recommends (SECURITY.md).

`argus crowd serve` and the load harness (`sim.load.GunicornServer`) both start the server
from `gunicorn_command`, so the benchmarks measure what is deployed.
"""

from __future__ import annotations

import sys

WORKER_CLASS = "gthread"
THREADS = 64  # request threads per process: idle threads cost a little memory, nothing else
TIMEOUT_S = 30  # a process silent this long (its main loop stuck) is killed and replaced
GRACEFUL_TIMEOUT_S = 30
KEEP_ALIVE_S = 5  # idle keep-alive connections are closed after this many seconds
APP = "crowd.app:create_app()"


def gunicorn_command(bind: str, *, workers: int = 2, threads: int = THREADS, timeout_s: int = TIMEOUT_S,
                     graceful_timeout_s: int = GRACEFUL_TIMEOUT_S, keep_alive_s: int = KEEP_ALIVE_S,
                     access_log: str | None = "-", extra: list[str] | None = None,
                     gunicorn: list[str] | None = None) -> list[str]:
    """The argv that starts the task server on `bind` (`HOST:PORT`).

    `gunicorn`: how to run gunicorn (default: this Python's `-m gunicorn`); `extra`: more options.
    """
    cmd = list(gunicorn or [sys.executable, "-m", "gunicorn"]) + [
        APP, "--bind", bind, "--workers", str(workers), "--worker-class", WORKER_CLASS, "--threads", str(threads),
        "--timeout", str(timeout_s), "--graceful-timeout", str(graceful_timeout_s), "--keep-alive", str(keep_alive_s)]
    if access_log:
        cmd += ["--access-logfile", access_log]
    return cmd + list(extra or [])
