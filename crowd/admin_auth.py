"""Dashboard logins kept on the server, and throttling of password guesses.

The signed session cookie carries only a random session id; the database keeps its SHA-256
(`AdminSession`), so logout and expiry revoke a login for good: a copied cookie is worthless
afterwards. Failed logins are counted per client address and in all (`LoginAttempt`) over a
sliding window; above the limits the login form answers 429 with `Retry-After`. Counting in
the database (not in process memory) makes the limits hold across gunicorn's worker processes.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from crowd.models import AdminSession, LoginAttempt, utcnow
from crowd.service import RateLimited


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()


def check_login_allowed(session: Session, addr: str, *, max_failures: int, max_failures_global: int,
                        window_s: int, now: datetime | None = None) -> None:
    """Raise `RateLimited` (429) when `addr`, or all addresses together, failed too often within
    the last `window_s` seconds; `retry_after` is when the oldest counted failure leaves the window."""
    now = now or utcnow()
    since = now - timedelta(seconds=window_s)
    for where, limit in ((LoginAttempt.client_addr == addr, max_failures), (None, max_failures_global)):
        if limit <= 0:
            continue
        q = select(func.count(LoginAttempt.id), func.min(LoginAttempt.at)).where(LoginAttempt.at > since)
        if where is not None:
            q = q.where(where)
        n, oldest = session.execute(q).one()
        if n >= limit:
            wait = (oldest + timedelta(seconds=window_s) - now).total_seconds() if oldest else window_s
            raise RateLimited("too many failed logins; try again later", "password", wait)


def record_login_failure(session: Session, addr: str, *, window_s: int, now: datetime | None = None) -> None:
    """Count one failed login (and forget failures older than the window)."""
    now = now or utcnow()
    session.execute(delete(LoginAttempt).where(LoginAttempt.at < now - timedelta(seconds=2 * window_s)))
    session.add(LoginAttempt(at=now, client_addr=addr))


def open_admin_session(session: Session, addr: str, max_age_s: int) -> str:
    """A new dashboard login; returns the random id to put in the signed cookie."""
    sid = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(AdminSession(sid_hash=_digest(sid), created_at=now, expires_at=now + timedelta(seconds=max_age_s),
                             client_addr=addr))
    return sid


def admin_session_valid(session: Session, sid) -> bool:
    """Whether `sid` names a login that is neither revoked nor expired."""
    if not isinstance(sid, str) or not sid:
        return False
    row = session.scalar(select(AdminSession).where(AdminSession.sid_hash == _digest(sid)))
    return row is not None and row.revoked_at is None and row.expires_at > utcnow()


def revoke_admin_session(session: Session, sid) -> None:
    """Log out: the login can never be used again, whoever holds the cookie."""
    if isinstance(sid, str) and sid:
        row = session.scalar(select(AdminSession).where(AdminSession.sid_hash == _digest(sid)))
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()
