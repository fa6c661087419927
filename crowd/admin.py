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

from crowd import admin_auth, speed
from crowd import dashboard as D
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
        limits = speed.thresholds(s, S.get_batch(s, batch_id))
    return render_template("admin/batch.html", b=status, workers=stats, invariants=invariants, speed=limits)


@bp.get("/batches/<int:batch_id>/media/<path:key>")
@login_required
def media(batch_id: int, key: str):
    """Any file of the batch's manifest, for researchers: the worker media and the sheet images
    that show the model's and the true label (`researcher/sheets/<sample_id>.png`)."""
    from crowd.worker import serve_media_file

    return serve_media_file(batch_id, key)


# What each destructive action does, said on its confirmation page.
CONSEQUENCES = {
    "close": "No new visits or tasks, for good (a closed batch cannot be resumed). Workers holding a task may "
             "still submit it.",
    "expire": "No new visits or tasks, for good, and every running lease ends now: workers in the middle of a "
              "task can no longer submit it unless the task still needs answers.",
    "block": "The worker gets no more tasks in any batch.",
}


def _confirmed() -> bool:
    return request.form.get("confirm") == "yes"


def _confirm_page(title: str, consequence: str, button: str, back: str):
    """The page that asks before a destructive action: it re-posts the same form with
    `confirm=yes` (plain HTML, works without JavaScript)."""
    fields = [(k, v) for k, v in request.form.items(multi=True) if k not in ("csrf_token", "confirm")]
    return render_template("admin/confirm.html", title=title, consequence=consequence, button=button,
                           action=request.path, fields=fields, back=back)


@bp.post("/batches/<int:batch_id>/status")
@login_required
def batch_set_status(batch_id: int):
    """Pause, resume, close or expire (`action`; the older `status` field names the state to
    go to). Close and expire ask for confirmation first."""
    action = request.form.get("action", "")
    if not action:
        status = request.form.get("status", "")
        try:
            action = S._ACTION_FOR_STATUS[S.BatchStatus(status)]
        except ValueError:
            raise S.ServiceError(f"status must be {'|'.join(s.value for s in S.BatchStatus)}, got {status!r}",
                                 "status") from None
    if action in CONSEQUENCES and not _confirmed():
        with get_database().reading() as s:
            st = S.batch_status(s, batch_id)
        return _confirm_page(f"{action.capitalize()} batch #{batch_id} ({st['name']})?",
                             f"{CONSEQUENCES[action]} Now: {st['active_leases']} running leases, "
                             f"{st['tasks_complete']} of {st['tasks']} tasks complete.",
                             f"Yes, {action} batch #{batch_id}", url_for(".batch", batch_id=batch_id))
    with get_database().transaction() as s:
        done = S.change_batch(s, batch_id, action)
    ended = f"; {done['leases_ended']} running leases ended" if action == "expire" else ""
    flash(f"Batch {batch_id}: {done['before']} -> {done['after']}{ended}.")
    return redirect(url_for(".batch", batch_id=batch_id))


@bp.post("/workers/<int:worker_id>/action")
@login_required
def worker_action(worker_id: int):
    action = request.form.get("action", "")
    batch_id = request.form.get("batch", type=int)
    back = url_for(".batch", batch_id=batch_id) if batch_id else url_for(".index")
    if action in CONSEQUENCES and not _confirmed():
        with get_database().reading() as s:
            worker = s.get(S.Worker, worker_id)
            if worker is None:
                raise S.NotFound(f"worker {worker_id} not found", "worker")
            label = worker.label
        return _confirm_page(f"Block worker {label}?", CONSEQUENCES[action], f"Yes, block {label}", back)
    with get_database().transaction() as s:
        w = S.review_worker(s, worker_id, action, reason=request.form.get("reason", "")[:1000], batch_id=batch_id)
        label = w.label
    flash(f"{action}: {label}")
    return redirect(back)


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


# ------------------------------------------------------------------ researcher pages of a batch

def _speed_kw() -> dict:
    return {"config": current_app.config}


def _batch_page(template: str, batch_id: int, **data):
    with get_database().reading() as s:
        b = S.batch_status(s, batch_id)
        data = {k: v(s) if callable(v) else v for k, v in data.items()}
    return render_template(template, b=b, **data)


@bp.get("/batches/<int:batch_id>/cost")
@login_required
def cost(batch_id: int):
    return _batch_page("admin/cost.html", batch_id, cost=lambda s: D.batch_cost(s, batch_id))


@bp.get("/batches/<int:batch_id>/visits")
@login_required
def visits(batch_id: int):
    return _batch_page("admin/visits.html", batch_id, visits=lambda s: D.visits(s, batch_id))


@bp.get("/batches/<int:batch_id>/answers")
@login_required
def answers(batch_id: int):
    return _batch_page("admin/answers.html", batch_id, tasks=lambda s: D.task_list(s, batch_id))


@bp.get("/tasks/<int:task_id>")
@login_required
def task(task_id: int):
    with get_database().reading() as s:
        t = D.task_answers(s, task_id, **_speed_kw())
        b = S.batch_status(s, t["batch"])
    return render_template("admin/task.html", b=b, t=t)


@bp.post("/judgments/<int:judgment_id>/review")
@login_required
def judgment_review(judgment_id: int):
    action = request.form.get("action", "")
    with get_database().transaction() as s:
        j = S.review_judgment(s, judgment_id, action, request.form.get("note", "")[:1000])
        task_id = j.task_id
    flash(f"Answer {judgment_id}: {j.review or 'not reviewed'}.")
    return redirect(url_for(".task", task_id=task_id) + f"#j{judgment_id}")


@bp.get("/batches/<int:batch_id>/flags")
@login_required
def flags(batch_id: int):
    low = float(current_app.config["LOW_AGREEMENT"])
    return _batch_page("admin/flags.html", batch_id, low_agreement=low,
                       flags=lambda s: D.flags(s, batch_id, low_agreement=low, **_speed_kw()),
                       analysis=lambda s: D.analysis_flags(s, batch_id),
                       floors=lambda s: D.speed_floors(s, batch_id, **_speed_kw()))


@bp.get("/batches/<int:batch_id>/throughput")
@login_required
def throughput(batch_id: int):
    return _batch_page("admin/throughput.html", batch_id, tp=lambda s: D.throughput(s, batch_id))


@bp.get("/batches/<int:batch_id>/events")
@login_required
def events(batch_id: int):
    type_ = request.args.get("type") or None
    before = request.args.get("before", type=int)
    return _batch_page("admin/events.html", batch_id, type_=type_,
                       events=lambda s: D.events(s, batch_id, type_=type_, before=before, limit=100),
                       types=lambda s: D.event_types(s, batch_id))


@bp.app_template_filter("usd")
def usd(amount) -> str:
    return f"${amount:,.2f}"


@bp.app_template_global("admin_media")
def admin_media(batch_id: int, key: str) -> str:
    """A batch's media file as the dashboard shows it (the researcher's media route where the
    server has one, else the worker pages' route)."""
    if "admin.media" in current_app.view_functions:
        return url_for("admin.media", batch_id=batch_id, key=key)
    return url_for("worker.media", batch_id=batch_id, relpath=key)
