"""Researcher API (JSON under `/api`, `Authorization: Bearer $ARGUS_API_TOKEN`).

Batches from a sheets folder or from image files (`label` tasks for active learning), status,
streamed judgment export (CSV / Parquet / JSON), worker stats and review, visits and the event
log. The OpenAPI document is `/api/openapi.json` (crowd/openapi.py).
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context
from sqlalchemy import select

from crowd import service as S
from crowd.db import get_database
from crowd.judgments import stream_csv, stream_parquet
from crowd.models import Event, Visit, VisitStatus
from crowd.openapi import openapi_document
from crowd.web import json_body
from explain.sheet_files import SheetError

bp = Blueprint("api", __name__, url_prefix="/api")
PUBLIC = {"api.openapi"}


@bp.before_request
def _require_token():
    if request.endpoint in PUBLIC:
        return None
    expected = current_app.config.get("API_TOKEN")
    given = request.headers.get("Authorization", "")
    scheme, _, token = given.partition(" ")
    if not expected:
        return jsonify(error="Unauthorized", status=401,
                       message="the researcher API is disabled: set ARGUS_API_TOKEN"), 401
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), str(expected).encode()):
        return jsonify(error="Unauthorized", status=401, message="missing or wrong bearer token"), 401
    return None


def _int(body: dict, key: str, default):
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise S.ServiceError(f"{key} must be an integer, got {value!r}", key)
    return value


def _num(body: dict, key: str, default):
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise S.ServiceError(f"{key} must be a number, got {value!r}", key)
    return float(value)


def _str_list(body: dict, key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise S.ServiceError(f"{key} must be a list of strings", key)
    return value


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


@bp.get("/batches")
def batches():
    with get_database().reading() as session:
        return jsonify(batches=S.list_batches(session))


@bp.post("/batches")
def create_batch():
    """Create a batch: from `sheets_dir` (+ `kind`/`kinds`) or from `images` + `classes` (label)."""
    try:
        body = json_body()
        kinds = body.get("kinds") or body.get("kind")
        kinds = [kinds] if isinstance(kinds, str) else kinds
        params = dict(
            redundancy=_int(body, "redundancy", 3), gold_rate=_num(body, "gold_rate", 0.0),
            tasks_per_visit=_int(body, "tasks_per_visit", 5), reward_cents=_int(body, "reward_cents", 0),
            lease_seconds=_int(body, "lease_seconds", 900), gold=body.get("gold"),
            exclude_batches=body.get("exclude_batches") or [],
        )
        if not isinstance(params["exclude_batches"], list) or not all(
                isinstance(b, int) and not isinstance(b, bool) for b in params["exclude_batches"]):
            raise S.ServiceError("exclude_batches must be a list of batch ids", "exclude_batches")
        if params["gold"] is not None and not isinstance(params["gold"], list):
            raise S.ServiceError("gold must be a list", "gold")
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            raise S.ServiceError("name must be a string of at most 200 characters", "name")
        options = {}
        for key in ("prolific_completion_code", "prolific_partial_code", "prolific_screenout_code"):
            if body.get(key):
                options[key] = str(body[key])[:64]
        if body.get("visits_per_worker") is not None:
            options["visits_per_worker"] = _int(body, "visits_per_worker", 1)
            if not 1 <= options["visits_per_worker"] <= 10000:
                raise S.ServiceError("visits_per_worker must be an integer 1..10000", "visits_per_worker")
        if "show_feature_names" in body:
            if not isinstance(body["show_feature_names"], bool):
                raise S.ServiceError("show_feature_names must be true or false", "show_feature_names")
            options["show_feature_names"] = body["show_feature_names"]
        for key in ("practice", "practice_pass", "practice_key"):  # checked by the service
            if key in body:
                options[key] = body[key]
        if "allow_same_image" in body:
            if not isinstance(body["allow_same_image"], bool):
                raise S.ServiceError("allow_same_image must be true or false", "allow_same_image")
            options["allow_same_image"] = body["allow_same_image"]
        if "order_seed" in body:
            options["order_seed"] = _int(body, "order_seed", None)
        if "speed_min_seconds" in body:
            options["speed_min_seconds"] = body["speed_min_seconds"]  # checked by the service
        if "speed_fast_ratio" in body:
            ratio = _num(body, "speed_fast_ratio", None)
            if not 0 < ratio <= 1:
                raise S.ServiceError(f"speed_fast_ratio must be in (0, 1], got {ratio!r}", "speed_fast_ratio")
            options["speed_fast_ratio"] = ratio
        with get_database().transaction() as session:
            if body.get("images") is not None:
                if kinds not in (None, ["label"]):
                    raise S.ServiceError("batches from images are label batches", "kind")
                classes = _str_list(body, "classes")
                if not isinstance(body["images"], list):
                    raise S.ServiceError("images must be a list", "images")
                batch = S.create_label_batch(session, body["images"], classes or [], name=name, options=options,
                                             **params)
            elif body.get("sheets_dir"):
                if not isinstance(body["sheets_dir"], str):
                    raise S.ServiceError("sheets_dir must be a path", "sheets_dir")
                if not kinds or not isinstance(kinds, list):
                    raise S.ServiceError("kind (or kinds) is required", "kind")
                limit = body.get("limit")
                if limit is not None:
                    limit = _int(body, "limit", None)
                batch = S.create_batch_from_sheets(
                    session, body["sheets_dir"], kinds=kinds, name=name, classes=_str_list(body, "classes"),
                    max_arguments=_int(body, "max_arguments", 3), max_marks=_int(body, "max_marks", 5),
                    limit=limit, practice_sheets=_str_list(body, "practice_sheets"), options=options, **params)
            else:
                raise S.ServiceError("give sheets_dir (a sheets folder) or images + classes", "sheets_dir")
            session.flush()
            out = S.batch_status(session, batch.id)
    except SheetError as exc:
        message = str(exc)
        field = message.split(":")[0].split("[")[0] if message.startswith(("images", "classes", "practice_sheets")) else "sheets_dir"
        raise S.ServiceError(message, field) from None
    return jsonify(out), 201


@bp.get("/batches/<int:batch_id>")
def batch_status(batch_id: int):
    with get_database().reading() as session:
        return jsonify(S.batch_status(session, batch_id))


@bp.patch("/batches/<int:batch_id>")
def update_batch(batch_id: int):
    body = json_body()
    with get_database().transaction() as session:
        S.set_batch_status(session, batch_id, body.get("status"))
        out = S.batch_status(session, batch_id)
    return jsonify(out)


@bp.post("/batches/<int:batch_id>/links")
def worker_links(batch_id: int):
    """Researcher-signed worker links: body `{"workers": [ids]}` or `{"count": n}`; answers
    `{"links": [{"worker", "token", "url"}]}` (JSON workers send the token as `worker_token`)."""
    from crowd.tokens import worker_links as make_links

    body = json_body()
    with get_database().reading() as session:
        S.get_batch(session, batch_id)
    try:
        links = make_links(batch_id, body.get("workers"), body.get("count"), request.host_url)
    except ValueError as exc:
        raise S.ServiceError(str(exc), "workers" if body.get("workers") is not None else "count") from None
    return jsonify(links=links), 201


@bp.get("/batches/<int:batch_id>/judgments")
def judgments(batch_id: int):
    """Streamed export, one row per answer. `?format=csv|parquet|json`, `?hash_workers=1`."""
    fmt = request.args.get("format", "csv")
    if fmt not in ("csv", "parquet", "json"):
        raise S.ServiceError("format must be csv, parquet or json", "format")
    hashed = request.args.get("hash_workers", "").lower() in ("1", "true", "yes")
    salt = S.export_salt(current_app.config) if hashed else None
    db = get_database()
    with db.reading() as session:
        S.get_batch(session, batch_id)

    def rows():
        with db.reading() as session:
            yield from S.iter_judgment_rows(session, batch_id, hash_salt=salt)

    if fmt == "json":
        return jsonify(rows=list(rows()))
    name = f"judgments_batch{batch_id}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if fmt == "csv":
        return Response(stream_with_context(stream_csv(rows())), mimetype="text/csv", headers=headers)
    return Response(stream_with_context(stream_parquet(rows())), mimetype="application/vnd.apache.parquet",
                    headers=headers)


@bp.get("/batches/<int:batch_id>/workers")
def batch_workers(batch_id: int):
    with get_database().reading() as session:
        S.get_batch(session, batch_id)
        return jsonify(workers=S.worker_stats(session, batch_id))


@bp.get("/batches/<int:batch_id>/invariants")
def batch_invariants(batch_id: int):
    with get_database().reading() as session:
        return jsonify(S.check_invariants(session, batch_id))


@bp.get("/workers")
def workers():
    batch = request.args.get("batch", type=int)
    with get_database().reading() as session:
        return jsonify(workers=S.list_workers(session, batch, request.args.get("status")))


@bp.post("/workers/<int:worker_id>/<action>")
def worker_action(worker_id: int, action: str):
    """approve | reject | flag | unflag | block | unblock, body `{"reason", "batch"}` (optional)."""
    body = request.get_json(silent=True) or {}
    if not isinstance(body, dict):
        raise S.ServiceError("request body must be a JSON object", "body")
    batch = body.get("batch")
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool)):
        raise S.ServiceError("batch must be an integer id", "batch")
    with get_database().transaction() as session:
        w = S.review_worker(session, worker_id, action, reason=body.get("reason", ""), batch_id=batch)
        out = S.worker_dict(w)
    return jsonify(out)


def visit_dict(v: Visit) -> dict:
    return {"id": v.id, "batch": v.batch_id, "worker_id": v.worker_id, "provider": v.provider.value,
            "assignment_id": v.external_assignment_id, "hit_id": v.hit_id, "status": v.status.value,
            "submitted": v.n_submitted, "completion_code": v.completion_code, "review_note": v.review_note,
            "started_at": v.started_at.isoformat(), "completed_at": v.completed_at and v.completed_at.isoformat()}


@bp.get("/visits")
def visits():
    q = select(Visit).order_by(Visit.id)
    if request.args.get("batch", type=int) is not None:
        q = q.where(Visit.batch_id == request.args.get("batch", type=int))
    status = request.args.get("status")
    if status:
        try:
            q = q.where(Visit.status == VisitStatus(status))
        except ValueError:
            raise S.ServiceError("unknown visit status", "status") from None
    with get_database().reading() as session:
        return jsonify(visits=[visit_dict(v) for v in session.scalars(q)])


@bp.post("/visits/<int:visit_id>/<action>")
def visit_action(visit_id: int, action: str):
    body = request.get_json(silent=True) or {}
    note = body.get("note", "") if isinstance(body, dict) else ""
    if not isinstance(note, str):
        raise S.ServiceError("note must be a string", "note")
    with get_database().transaction() as session:
        out = visit_dict(S.review_visit(session, visit_id, action, note))
    return jsonify(out)


@bp.get("/events")
def events():
    """The event log, oldest first: `?batch=`, `?after=<event id>`, `?limit=` (<= 5000)."""
    q = select(Event).order_by(Event.id).limit(min(request.args.get("limit", 1000, type=int), 5000))
    if request.args.get("batch", type=int) is not None:
        q = q.where(Event.batch_id == request.args.get("batch", type=int))
    q = q.where(Event.id > request.args.get("after", 0, type=int))
    with get_database().reading() as session:
        return jsonify(events=[{"id": e.id, "at": e.at.isoformat(), "type": e.type, "batch": e.batch_id,
                                "worker_id": e.worker_id, "task": e.task_id, "assignment": e.assignment_id,
                                "data": e.data} for e in session.scalars(q)])
