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
