"""Worker blueprint: entry link -> consent -> instructions with a practice item -> k tasks ->
finish, plus the JSON endpoints the pages (and simulated crowds) use, and sheet media.

Identity comes from the entry link (MTurk `workerId, assignmentId, hitId, turkSubmitTo`;
Prolific `PROLIFIC_PID, STUDY_ID, SESSION_ID`; a researcher-signed worker link `?wt=`), else the
visit is anonymous (a server-minted id in a signed cookie, the only cookie the pages use); a
bare `?worker=` name is never believed. Every later URL and request carries a signed visit or
assignment token; media URLs are signed per visit and file (`crowd.media`). A worker who
finished the batch sees a "you are done" page. MTurk preview (`assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE`)
renders a read-only item from outside the batch's tasks and writes nothing.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlparse

from flask import Blueprint, abort, current_app, g, jsonify, redirect, render_template, request, send_file, url_for
from sqlalchemy import select

from crowd import kinds as K
from crowd import practice as P
from crowd import media as M
from crowd import service as S
from crowd.db import get_database
from crowd.judgments import KINDS
from crowd.models import Batch, Provider, Task, Visit, VisitStatus, utcnow
from crowd.tokens import (
    BadToken, make_assignment_token, make_visit_token, make_worker_token, new_anonymous_worker, read_assignment_token,
    read_visit_token, read_worker_token,
)
from crowd.web import client_addr, json_body

bp = Blueprint("worker", __name__)
PREVIEW_ID = "ASSIGNMENT_ID_NOT_AVAILABLE"


WORKER_COOKIE = "argus_worker"


def _identity(args, batch_id: int, *, page: bool) -> tuple[S.Identity, str | None]:
    """Identity from the entry link: (identity, worker token to hand back or None).

    MTurk: `workerId` + `assignmentId` (+ `hitId`, `turkSubmitTo`); Prolific: `PROLIFIC_PID` +
    `SESSION_ID` (+ `STUDY_ID`); a researcher-signed worker link `wt` (`worker_token` in JSON);
    else anonymous: the pages keep a server-minted id in a signed cookie, the JSON flow gets a
    `worker_token` back. A bare `worker=` name is never believed: on a page it is ignored (the
    visit is anonymous), in JSON it is refused."""
    addr = client_addr()
    if args.get("workerId"):
        turk = args.get("turkSubmitTo") or None
        if turk and not _turk_submit_allowed(turk):
            raise S.ServiceError("turkSubmitTo is not an MTurk address", "turkSubmitTo")
        return S.Identity(Provider.mturk, args["workerId"], args.get("assignmentId") or None,
                          args.get("hitId") or None, turk, addr), None
    if args.get("PROLIFIC_PID"):
        return S.Identity(Provider.prolific, args["PROLIFIC_PID"], args.get("SESSION_ID") or None,
                          args.get("STUDY_ID") or None, client_addr=addr), None
    token = args.get("wt") or args.get("worker_token")
    if token:
        try:
            return S.Identity(Provider.lab, read_worker_token(token, batch_id), client_addr=addr), token
        except BadToken as exc:
            raise S.Forbidden(str(exc), "worker_token") from None
    if args.get("worker") and not page:
        raise S.ServiceError("a bare worker id is not accepted: use a signed worker_token (argus crowd links) "
                             "or start without one (anonymous)", "worker")
    if page and request.cookies.get(WORKER_COOKIE):
        try:
            return S.Identity(Provider.lab, read_worker_token(request.cookies[WORKER_COOKIE], batch_id),
                              client_addr=addr), None
        except BadToken:
            pass  # an old or altered cookie: a new anonymous id
    worker = new_anonymous_worker()
    return S.Identity(Provider.lab, worker, client_addr=addr), make_worker_token(worker)


def _remember(resp, anon_token: str | None):
    """Keep a newly minted anonymous id in the worker's browser (signed, HttpOnly, SameSite=Lax)."""
    if anon_token:
        cfg = current_app.config
        resp.set_cookie(WORKER_COOKIE, anon_token, max_age=int(cfg["WORKER_TOKEN_MAX_AGE"]), httponly=True,
                        samesite="Lax", secure=bool(cfg["SESSION_COOKIE_SECURE"]) or request.is_secure, path="/w/")
    return resp


def _done_page(done: S.AlreadyDone):
    return render_template("worker/done.html", code=done.code, completion=done.completion), 200


def _turk_submit_allowed(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and (parsed.hostname or "") in current_app.config["TURK_SUBMIT_HOSTS"]


def _visit_from(token) -> tuple[int, int]:
    try:
        return read_visit_token(token)
    except BadToken as exc:
        raise S.Forbidden(str(exc), "visit_token") from None


def _assignment_from(token) -> tuple[int, int]:
    try:
        return read_assignment_token(token)
    except BadToken as exc:
        raise S.Forbidden(str(exc), "assignment_token") from None


def _task_view(task: Task, batch: Batch) -> dict:
    """A task as the worker sees it (blind batches leave the model's feature names out)."""
    return {"id": task.id, "kind": task.kind, "sheet": task.sheet,
            "payload": K.worker_view(task.kind, task.payload, batch.options)}


# Answer fields -> what the worker reads when the form comes back refused (no JavaScript).
PLAIN = {
    "answer.label": "Please choose one of the classes, or “Can't tell”.",
    "answer.match": "Please say how well the reasoning matches how you would recognise it (1 to 5).",
    "answer.coherence": "Please say how clearly the patches show one and the same thing (1 to 5).",
    "answer.name": "Please give the patches a short name (a few words, at most 80 characters).",
    "answer.comment": "Your comment is too long: please keep it under 2,000 characters.",
    "answer.points": "Please mark at least one place on the image (this task needs JavaScript).",
    "answer.boxes": "Please mark at least one place on the image (this task needs JavaScript).",
}


def plain_message(field: str | None, message: str) -> str:
    """A refused answer in plain language (never "answer.label: must be one of ...")."""
    if field and field.startswith("answer.arguments"):
        return "Please answer every argument's question: Yes, No or Can't tell."
    if field == "assignment":
        return ("Time ran out for this task and it went to someone else. Nothing is lost: "
                "continue with a new task.")
    return PLAIN.get(field or "", "Please check your answer and try again.")


def _lease_kw() -> dict:
    return {"limits": S.LeaseLimits.from_config(current_app.config), "client_addr": client_addr()}


def _config_kw() -> dict:
    return {"gold_threshold": float(current_app.config["GOLD_THRESHOLD"]),
            "gold_min_answers": int(current_app.config["GOLD_MIN_ANSWERS"]),
            "gold_confidence": float(current_app.config["GOLD_CONFIDENCE"])}


# ------------------------------------------------------------------------------- HTML pages

@bp.get("/w/<int:batch_id>")
def entry(batch_id: int):
    """The link workers open (MTurk ExternalQuestion URL, Prolific study URL, lab link)."""
    db = get_database()
    if request.args.get("assignmentId") == PREVIEW_ID:
        with db.reading() as session:  # preview: read only, nothing written
            batch = session.get(Batch, batch_id)
            if batch is None:
                abort(404)
            # the public preview shows an item from outside the batch, never one of its tasks
            g.media_visit = M.PREVIEW_VISIT
            return render_template("worker/preview.html", batch=batch, task=example_item(batch))
    with db.reading() as session:
        S.get_batch(session, batch_id)
    ident, anon = _identity(request.args, batch_id, page=True)
    try:
        with db.transaction() as session:
            visit = S.start_visit(session, batch_id, ident)
            consented = S.has_consented(session, visit)
            token = make_visit_token(visit.id, visit.worker_id)
    except S.AlreadyDone as done:
        return _done_page(done)
    return _remember(redirect(url_for(".instructions" if consented else ".consent", token=token)),
                     anon if ident.provider == Provider.lab and not request.args.get("wt") else None)


@bp.route("/w/v/<token>/consent", methods=["GET", "POST"])
def consent(token: str):
    db = get_database()
    visit_id, _ = _visit_from(token)
    cfg = current_app.config
    if request.method == "POST":
        if request.form.get("agree") != "yes":
            return render_template("worker/consent.html", token=token, cfg=cfg,
                                   error="Please tick the box to confirm you agree, or close this page."), 400
        with db.transaction() as session:
            S.record_consent(session, S.get_visit(session, visit_id), str(cfg["CONSENT_VERSION"]))
        return redirect(url_for(".instructions", token=token))
    return render_template("worker/consent.html", token=token, cfg=cfg, error=None)


@bp.get("/w/v/<token>/instructions")
def instructions(token: str, feedback: dict | None = None, status: int = 200):
    db = get_database()
    visit_id, _ = _visit_from(token)
    with db.reading() as session:
        visit = S.get_visit(session, visit_id)
        if not S.has_consented(session, visit):
            return redirect(url_for(".consent", token=token))
        batch = session.get(Batch, visit.batch_id)
        practice_state = P.state(session, batch, visit)
        if practice_state == P.FAILED or visit.status not in (VisitStatus.started, VisitStatus.consented):
            return redirect(url_for(".finish", token=token))
        items = P.items(batch)
        index, item, example = None, None, None
        if practice_state == P.PENDING:
            done = P.first_scores(session, batch, visit)
            if feedback is not None:
                index = feedback["index"]
            else:
                index = next((i for i in range(len(items)) if i not in done), len(items) - 1)
            item = {"id": None, "kind": items[index]["kind"], "sheet": items[index]["sheet"],
                    "payload": K.worker_view(items[index]["kind"], items[index]["payload"], batch.options)}
        elif practice_state == P.NONE:
            example = example_item(batch)  # from outside the batch's tasks, or none
        g.media_visit = visit.id
        return render_template("worker/instructions.html", token=token, batch=batch, state=practice_state,
                               practice=item, index=index, n_practice=len(items), example=example,
                               pass_mark=(batch.options or {}).get("practice_pass"), feedback=feedback), status


@bp.post("/w/v/<token>/practice")
def practice_form(token: str):
    """Practice check for browsers without JavaScript: the instructions again, with feedback."""
    visit_id, _ = _visit_from(token)
    index = request.form.get("index", "")
    if not index.isdigit():
        raise S.ServiceError("practice item index is missing", "index")
    try:
        with get_database().transaction() as session:
            visit = S.get_visit(session, visit_id)
            out = _check_practice(session, visit, int(index), _answer_from_form(request.form))
    except K.AnswerError as exc:
        return instructions(token, feedback={"index": int(index), "error": plain_message(exc.field, exc.message)},
                            status=400)
    if out["state"] == P.FAILED:
        return redirect(url_for(".finish", token=token))
    return instructions(token, feedback=out)


def _check_practice(session, visit: Visit, index: int, answer) -> dict:
    batch = session.get(Batch, visit.batch_id)
    if not S.has_consented(session, visit):
        raise S.Forbidden("record consent first", "visit_token")
    if P.state(session, batch, visit) == P.FAILED:
        raise S.Conflict("the practice was not passed; this study has ended for you", "practice")
    out = P.check(session, batch, visit, index, answer)
    if out["state"] == P.FAILED:
        # a failed practice ends the visit as screened out (partial, lease returned, screen-out
        # code; Prolific: the batch's `prolific_screenout_code` when it has one)
        S.end_visit(session, visit, "screening_failed")
    return out


def _practice_gate(session, visit: Visit, batch: Batch) -> str:
    if visit.n_submitted > 0:  # tasks are only leased after the practice: no need to read the events again
        return P.PASSED if P.items(batch) else P.NONE
    return P.state(session, batch, visit)


@bp.get("/w/v/<token>/task")
def task_page(token: str):
    db = get_database()
    visit_id, worker_id = _visit_from(token)
    with db.transaction() as session:
        visit = S.get_visit(session, visit_id)
        if not S.has_consented(session, visit):
            return redirect(url_for(".consent", token=token))
        batch = session.get(Batch, visit.batch_id)
        gate = _practice_gate(session, visit, batch)
        if gate == P.PENDING:
            return redirect(url_for(".instructions", token=token))
        if gate == P.FAILED:
            return redirect(url_for(".finish", token=token))
        assignment = S.lease_next(session, visit, **_lease_kw())
        if assignment is None:
            return redirect(url_for(".finish", token=token))
        task = session.get(Task, assignment.task_id)
        view = _task_view(task, batch)
        g.media_visit = visit.id
        position, total = visit.n_submitted + 1, batch.tasks_per_visit
        atoken = make_assignment_token(assignment.id, worker_id)
        seconds_left = max(0, int((assignment.expires_at - utcnow()).total_seconds()))
        assignment_id = assignment.id
    return render_template("worker/task.html", token=token, batch=batch, task=view, assignment_token=atoken,
                           client_token=secrets.token_urlsafe(18), position=position, total=total,
                           assignment_id=assignment_id, seconds_left=seconds_left,
                           lease_seconds=batch.lease_seconds)


@bp.post("/w/v/<token>/task")
def task_form_submit(token: str):
    """Form fallback for browsers without JavaScript (rate_arguments, name_feature, label); a
    refused answer comes back in plain language with a way back to the task."""
    _visit_from(token)
    try:
        S.submit(get_database(), *_assignment_from(request.form.get("assignment_token")),
                 _answer_from_form(request.form), request.form.get("client_token"), None, **_config_kw())
    except S.ServiceError as exc:
        late = exc.field == "assignment" and exc.status == 409
        if not (late or (exc.field or "").startswith("answer")):
            raise
        return render_template("worker/message.html", title="Time ran out" if late else "Please check your answer",
                               message=plain_message(exc.field, exc.message), back=url_for(".task_page", token=token),
                               back_text="Continue with a new task" if late else "Back to the task"), exc.status
    return redirect(url_for(".task_page", token=token))


def _answer_from_form(form) -> dict:
    if "label" in form:
        return {"label": form["label"]}
    if "name" in form:
        return {"name": form["name"], "coherence": form.get("coherence")}
    args = {k[4:]: v for k, v in form.items() if k.startswith("arg_")}
    return {"arguments": args, "match": form.get("match"), "comment": form.get("comment", "")}


@bp.get("/w/v/<token>/finish")
def finish(token: str):
    db = get_database()
    visit_id, _ = _visit_from(token)
    with db.transaction() as session:
        visit = S.get_visit(session, visit_id)
        if visit.n_submitted == 0 and visit.status in (VisitStatus.started, VisitStatus.consented):
            return render_template("worker/message.html", title="No tasks right now",
                                   message="There are no tasks left for you in this study. Thank you for your "
                                           "interest; please return the task without submitting."), 200
        if P.state(session, session.get(Batch, visit.batch_id), visit) == P.PENDING and visit.n_submitted == 0:
            return redirect(url_for(".instructions", token=token))
        S.finish_visit(session, visit)
        return _finish_response(visit)


def _finish_response(visit: Visit):
    if visit.provider == Provider.mturk and visit.turk_submit_to:
        action = visit.turk_submit_to.rstrip("/") + "/mturk/externalSubmit"
        return render_template("worker/finish_mturk.html", action=action,
                               fields={"assignmentId": visit.external_assignment_id or "",
                                       "completion_code": visit.completion_code})
    if visit.provider == Provider.prolific:  # the study's completion, partial or screen-out code
        return redirect(current_app.config["PROLIFIC_COMPLETE_URL"].format(code=visit.completion_code))
    return render_template("worker/finish.html", code=visit.completion_code, n=visit.n_submitted,
                           screened_out=visit.partial_reason == "screening_failed", completion=visit.completion,
                           reason=visit.partial_reason)


# ---------------------------------------------------------------------------------- media

def example_item(batch: Batch) -> dict | None:
    """An item from outside the batch's tasks as a task view (the first practice item, else the
    batch's example: see `crowd.sheets.sheet_batch`), or None."""
    options = batch.options or {}
    for item in (options.get("practice") or []) + [options.get("example") or {}]:
        if item.get("kind") in KINDS:
            return {"id": None, "kind": item["kind"], "sheet": item.get("sheet"),
                    "payload": K.worker_view(item["kind"], item["payload"], options)}
    return None


def serve_media_file(batch_id: int, key: str):
    """One file of a batch's manifest, or 404 (not in the manifest, not an image, gone)."""
    with get_database().reading() as session:
        path = M.manifest_path(session, batch_id, key)
    if path is None or not key.lower().endswith(M.IMAGE_SUFFIXES) or not path.is_file():
        abort(404)
    return send_file(path, max_age=current_app.config["SEND_FILE_MAX_AGE_DEFAULT"], conditional=True)


@bp.get("/media/<int:batch_id>/<path:relpath>")
def media(batch_id: int, relpath: str):
    """One file of the batch's manifest, signed for a visit (`?s=`, see `crowd.media`); anything
    else (no or a wrong signature, another file, a researcher-only sheet image, a path that is
    not a manifest key) is 404."""
    if relpath.startswith(M.RESEARCHER_PREFIX) or M.signed_visit(batch_id, relpath, request.args.get("s")) is None:
        abort(404)
    resp = serve_media_file(batch_id, relpath)
    resp.headers["Cache-Control"] = "private, max-age=3600"  # per-visit URLs: no shared cache
    return resp


# ------------------------------------------------------------------------------ JSON endpoints

@bp.post("/w/api/start")
def api_start():
    """Open a visit: `{"batch": id, "worker": id}` or MTurk / Prolific parameters."""
    body = json_body()
    batch_id = body.get("batch")
    if not isinstance(batch_id, int) or isinstance(batch_id, bool):
        raise S.ServiceError("batch must be an integer id", "batch")
    with get_database().reading() as session:
        S.get_batch(session, batch_id)
    ident, anon = _identity({k: v for k, v in body.items() if isinstance(v, str)}, batch_id, page=False)
    if ident.assignment_id == PREVIEW_ID:
        raise S.ServiceError("preview assignments cannot start a visit", "assignmentId")
    with get_database().transaction() as session:
        visit = S.start_visit(session, batch_id, ident)
        consented = S.has_consented(session, visit)
        out = {"visit": visit.id, "worker_id": visit.worker_id, "visit_token": make_visit_token(visit.id, visit.worker_id),
               "consented": consented, "consent": {"version": str(current_app.config["CONSENT_VERSION"]),
                                                   "text": current_app.config["CONSENT_TEXT"]}}
        out["worker"] = ident.worker
        if ident.provider == Provider.lab:  # resume later as the same worker with this token
            out["worker_token"] = anon or body.get("worker_token")
    return jsonify(out)


@bp.post("/w/api/consent")
def api_consent():
    body = json_body()
    visit_id, _ = _visit_from(body.get("visit_token"))
    version = body.get("version", str(current_app.config["CONSENT_VERSION"]))
    with get_database().transaction() as session:
        c = S.record_consent(session, S.get_visit(session, visit_id), version)
        out = {"version": c.version, "consented_at": c.consented_at.isoformat()}
    return jsonify(out)


@bp.post("/w/api/next")
def api_next():
    """Lease the next task: `{"done": false, "task": {...}, "assignment_token": ...}` or `{"done": true}`."""
    visit_id, worker_id = _visit_from(json_body().get("visit_token"))
    with get_database().transaction() as session:
        visit = S.get_visit(session, visit_id)
        if not S.has_consented(session, visit):
            raise S.Forbidden("record consent first", "visit_token")
        batch = session.get(Batch, visit.batch_id)
        if _practice_gate(session, visit, batch) == P.PENDING:
            raise S.Forbidden("pass the practice first (POST /w/api/practice)", "practice")
        a = S.lease_next(session, visit, **_lease_kw())
        if a is None:
            return jsonify(done=True, submitted=visit.n_submitted)
        task = session.get(Task, a.task_id)
        out = {"done": False, "assignment": a.id, "assignment_token": make_assignment_token(a.id, worker_id),
               "expires_at": a.expires_at.isoformat(), "task": _task_view(task, batch),
               "position": visit.n_submitted + 1, "of": batch.tasks_per_visit,
               "media": M.signed_urls(batch.id, task.payload, visit.id)}
    return jsonify(out)


@bp.post("/w/api/submit")
def api_submit():
    """Store an answer: `{"assignment_token", "client_token", "answer", "duration_s"}`.
    A retry with the same client token returns the first result (`duplicate: true`)."""
    body = json_body()
    assignment_id, worker_id = _assignment_from(body.get("assignment_token"))
    if "answer" not in body:
        raise S.ServiceError("answer is required", "answer")
    try:
        result = S.submit(get_database(), assignment_id, worker_id, body["answer"], body.get("client_token"),
                          body.get("duration_s"), **_config_kw())
    except S.ServiceError as exc:
        if exc.field and (exc.field.startswith("answer") or (exc.field == "assignment" and exc.status == 409)):
            # the worker page shows the message as it comes: plain words, the field stays for code
            exc.message = plain_message(exc.field, exc.message)
        raise
    return jsonify(result), 200 if result["duplicate"] else 201


@bp.post("/w/api/practice")
def api_practice():
    """Check one practice answer: `{"visit_token", "index", "answer"}` -> `{correct, score,
    feedback, checked, of, pass_mark, state}` (`state`: pending | passed | failed; on failed
    the visit has ended with a partial completion and `finish_url` says where to go)."""
    body = json_body()
    visit_id, _ = _visit_from(body.get("visit_token"))
    index = body.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise S.ServiceError("index must be the practice item's number (0, 1, ...)", "index")
    try:
        with get_database().transaction() as session:
            visit = S.get_visit(session, visit_id)
            out = _check_practice(session, visit, index, body.get("answer"))
            token = make_visit_token(visit.id, visit.worker_id)
    except K.AnswerError as exc:
        raise S.ServiceError(plain_message(exc.field, exc.message), exc.field) from None
    out["finish_url"] = url_for(".finish", token=token)
    out["start_url"] = url_for(".task_page", token=token)
    return jsonify(out)


@bp.post("/w/api/finish")
def api_finish():
    """Close the visit; returns the completion code and where to send the worker."""
    visit_id, _ = _visit_from(json_body().get("visit_token"))
    with get_database().transaction() as session:
        visit = S.finish_visit(session, S.get_visit(session, visit_id))
        out = {"visit": visit.id, "status": visit.status.value, "submitted": visit.n_submitted,
               "completion_code": visit.completion_code, "completion": visit.completion,
               "partial_reason": visit.partial_reason, "provider": visit.provider.value}
        if visit.provider == Provider.mturk and visit.turk_submit_to:
            out["external_submit"] = {"url": visit.turk_submit_to.rstrip("/") + "/mturk/externalSubmit",
                                      "fields": {"assignmentId": visit.external_assignment_id or "",
                                                 "completion_code": visit.completion_code}}
        elif visit.provider == Provider.prolific:
            out["redirect"] = current_app.config["PROLIFIC_COMPLETE_URL"].format(code=visit.completion_code)
    return jsonify(out)


@bp.app_template_filter("media_url")
def media_url(relpath: str, batch_id: int) -> str:
    """A media URL signed for the visit the page is rendered for (`g.media_visit`)."""
    visit = g.get("media_visit")
    if visit is None:
        raise RuntimeError("media_url needs g.media_visit: the visit the page's media are signed for")
    return M.media_url(batch_id, relpath, visit)
