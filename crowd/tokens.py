"""Signed tokens (itsdangerous) for visits and assignments, so the worker pages never depend on
cookies (third-party cookies are often blocked inside MTurk's iframe).

A visit token carries `{"v": visit_id, "w": worker_id}`; an assignment token
`{"a": assignment_id, "w": worker_id}`. Both are timestamped; a forged, altered or expired
token raises `BadToken`. `new_secret` makes the random secrets the server is configured with.
"""

from __future__ import annotations

import secrets

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer


def new_secret(nbytes: int = 24) -> str:
    """A random URL-safe secret of `nbytes` random bytes (API token, admin password, SECRET_KEY)."""
    return secrets.token_urlsafe(nbytes)


class BadToken(Exception):
    """A token that is forged, altered, expired or of the wrong kind."""


def _serializer(kind: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"argus.{kind}")


def make_visit_token(visit_id: int, worker_id: int) -> str:
    return _serializer("visit").dumps({"v": visit_id, "w": worker_id})


def make_assignment_token(assignment_id: int, worker_id: int) -> str:
    return _serializer("assignment").dumps({"a": assignment_id, "w": worker_id})


def _load(kind: str, token, max_age_key: str) -> dict:
    if not isinstance(token, str) or not token or len(token) > 500:
        raise BadToken(f"missing or malformed {kind} token")
    try:
        return _serializer(kind).loads(token, max_age=current_app.config[max_age_key])
    except SignatureExpired:
        raise BadToken(f"{kind} token expired") from None
    except BadSignature:
        raise BadToken(f"invalid {kind} token") from None


def read_visit_token(token) -> tuple[int, int]:
    """-> (visit_id, worker_id)"""
    data = _load("visit", token, "VISIT_TOKEN_MAX_AGE")
    return int(data["v"]), int(data["w"])


def read_assignment_token(token) -> tuple[int, int]:
    """-> (assignment_id, worker_id)"""
    data = _load("assignment", token, "ASSIGNMENT_TOKEN_MAX_AGE")
    return int(data["a"]), int(data["w"])


ANON_PREFIX = "anon-"


def make_worker_token(worker: str, batch_id: int | None = None) -> str:
    """A worker identity the server stands behind: a researcher's link for `worker` to one
    batch (`argus crowd links`), or (batch None) a server-minted anonymous id kept in a cookie."""
    return _serializer("worker").dumps({"w": str(worker), "b": batch_id})


def new_anonymous_worker() -> str:
    """A fresh server-minted worker id (`anon-` + 16 hex digits)."""
    return ANON_PREFIX + secrets.token_hex(8)


def read_worker_token(token, batch_id: int) -> str:
    """-> the worker id of a valid worker token for `batch_id` (anonymous ones fit every batch)."""
    data = _load("worker", token, "WORKER_TOKEN_MAX_AGE")
    if data.get("b") is not None and int(data["b"]) != int(batch_id):
        raise BadToken(f"this worker link is for batch {data['b']}, not batch {batch_id}")
    return str(data["w"])


def worker_links(batch_id: int, workers: list[str] | None = None, count: int | None = None,
                 base_url: str = "") -> list[dict]:
    """Researcher-signed entry links of one batch, one per worker: `{"worker", "token", "url"}`.
    `workers` names them; `count` makes that many with random ids (`p-` + 10 hex digits).
    Raises `ValueError` naming the bad name."""
    if (workers is None) == (count is None):
        raise ValueError("give either workers (a list of ids) or count")
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10000:
            raise ValueError(f"count must be an integer 1..10000, got {count!r}")
        workers = [f"p-{secrets.token_hex(5)}" for _ in range(count)]
    seen = set()
    for w in workers:
        if not isinstance(w, str) or not w.strip() or len(w) > 200 or "\x00" in w:
            raise ValueError(f"worker id {w!r}: must be 1..200 characters, without NUL")
        if w.startswith(ANON_PREFIX):
            raise ValueError(f"worker id {w!r}: ids starting with {ANON_PREFIX!r} are the server's anonymous ids")
        if w in seen:
            raise ValueError(f"worker id {w!r} is given twice")
        seen.add(w)
    out = []
    for w in workers:
        token = make_worker_token(w.strip(), int(batch_id))
        out.append({"worker": w.strip(), "token": token, "url": f"{base_url.rstrip('/')}/w/{int(batch_id)}?wt={token}"})
    return out
