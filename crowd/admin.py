"""Admin dashboard (`/admin`): login, batch progress, per-worker stats, flagged workers,
approve/reject/flag/block, export. Every POST form carries a CSRF token bound to the session
(a random token kept in Flask's signed session cookie, compared in constant time). A login is
kept on the server (`crowd.admin_auth`): logout revokes it; failed logins are throttled.
"""

from __future__ import annotations

import functools
import hmac
import secrets

from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template, request, session,
                   stream_with_context, url_for)
from werkzeug.security import check_password_hash

from crowd import admin_auth
from crowd import service as S
from crowd.db import get_database
from crowd.judgments import stream_csv, stream_parquet
from crowd.web import client_addr

bp = Blueprint("admin", __name__, url_prefix="/admin")


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


@bp.app_context_processor
def _inject():
    return {"csrf_token": csrf_token}


@bp.before_request
def _check_csrf():
    if request.method == "POST":
        sent = request.form.get("csrf_token", "")
        expected = session.get("csrf", "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            abort(400, description="missing or wrong CSRF token; reload the page and try again")


def _logged_in() -> bool:
    sid = session.get("admin")
    if not sid:
        return False
    with get_database().reading() as s:
        return admin_auth.admin_session_valid(s, sid)


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not _logged_in():
            # A page sends the browser to the login form; an action or a download has nothing
            # to come back to after login, so it is refused with 401.
            if request.method != "GET" or request.endpoint == "admin.export":
                abort(401, description="log in to the dashboard first")
            return redirect(url_for(".login", next=request.path))
        return view(*args, **kwargs)
    return wrapped


def _password_ok(user: str, password: str) -> bool:
    cfg = current_app.config
    if not hmac.compare_digest(user.encode(), str(cfg["ADMIN_USER"]).encode()):
        return False
    if cfg.get("ADMIN_PASSWORD_HASH"):
        return check_password_hash(cfg["ADMIN_PASSWORD_HASH"], password)
    if cfg.get("ADMIN_PASSWORD"):
        return hmac.compare_digest(password.encode(), str(cfg["ADMIN_PASSWORD"]).encode())
    return False


@bp.route("/login", methods=["GET", "POST"])
def login():
    enabled = bool(current_app.config.get("ADMIN_PASSWORD") or current_app.config.get("ADMIN_PASSWORD_HASH"))
    error = None
    if request.method == "POST":
        cfg, addr = current_app.config, client_addr()
        limits = dict(max_failures=int(cfg["LOGIN_MAX_FAILURES"]),
                      max_failures_global=int(cfg["LOGIN_MAX_FAILURES_GLOBAL"]), window_s=int(cfg["LOGIN_WINDOW_S"]))
        with get_database().reading() as s:  # throttled before the password is even looked at
            admin_auth.check_login_allowed(s, addr, **limits)
        if _password_ok(request.form.get("username", ""), request.form.get("password", "")):
            with get_database().transaction() as s:
                sid = admin_auth.open_admin_session(s, addr, int(cfg["ADMIN_SESSION_MAX_AGE"]))
            session.clear()
            session["admin"] = sid
            session["csrf"] = secrets.token_urlsafe(32)  # new token after login
            target = request.args.get("next", "")
            return redirect(target if target.startswith("/admin") else url_for(".index"))
        with get_database().transaction() as s:
            admin_auth.record_login_failure(s, addr, window_s=limits["window_s"])
        error = "Wrong user name or password."
    return render_template("admin/login.html", enabled=enabled, error=error), 401 if error else 200


@bp.post("/logout")
def logout():
    with get_database().transaction() as s:
        admin_auth.revoke_admin_session(s, session.get("admin"))
    session.clear()
    return redirect(url_for(".login"))


@bp.get("/")
@login_required
def index():
    with get_database().reading() as s:
        batches = S.list_batches(s)
        flagged = S.list_workers(s, status="flagged")
    return render_template("admin/index.html", batches=batches, flagged=flagged)


@bp.get("/batches/<int:batch_id>")
@login_required
def batch(batch_id: int):
    with get_database().reading() as s:
        status = S.batch_status(s, batch_id)
        stats = S.worker_stats(s, batch_id)
        invariants = S.check_invariants(s, batch_id)
    return render_template("admin/batch.html", b=status, workers=stats, invariants=invariants)


@bp.post("/batches/<int:batch_id>/status")
@login_required
def batch_set_status(batch_id: int):
    with get_database().transaction() as s:
        S.set_batch_status(s, batch_id, request.form.get("status", ""))
    flash(f"Batch {batch_id} is now {request.form.get('status')}.")
    return redirect(url_for(".batch", batch_id=batch_id))


@bp.post("/workers/<int:worker_id>/action")
@login_required
def worker_action(worker_id: int):
    action = request.form.get("action", "")
    batch_id = request.form.get("batch", type=int)
    with get_database().transaction() as s:
        w = S.review_worker(s, worker_id, action, reason=request.form.get("reason", "")[:1000], batch_id=batch_id)
        label = w.label
    flash(f"{action}: {label}")
    return redirect(url_for(".batch", batch_id=batch_id) if batch_id else url_for(".index"))


@bp.get("/batches/<int:batch_id>/export.<fmt>")
@login_required
def export(batch_id: int, fmt: str):
    if fmt not in ("csv", "parquet"):
        abort(404)
    salt = S.export_salt(current_app.config) if request.args.get("hash_workers") == "1" else None
    db = get_database()

    def rows():
        with db.reading() as s:
            yield from S.iter_judgment_rows(s, batch_id, hash_salt=salt)

    stream = stream_csv(rows()) if fmt == "csv" else stream_parquet(rows())
    return Response(stream_with_context(stream),
                    mimetype="text/csv" if fmt == "csv" else "application/vnd.apache.parquet",
                    headers={"Content-Disposition": f'attachment; filename="judgments_batch{batch_id}.{fmt}"'})
