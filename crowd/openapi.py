"""Hand-written OpenAPI 3 document of the researcher API (`/api`) and the worker JSON endpoints
(`/w/api`). A test checks that its paths and methods match the app's routes exactly."""

from __future__ import annotations

from crowd.judgments import KINDS, LIKERT, RATINGS

_ERR = {"$ref": "#/components/responses/Error"}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _ok(description: str, schema: dict | None = None) -> dict:
    out = {"description": description}
    if schema:
        out.update(_json(schema))
    return out


def _id_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}


def openapi_document() -> dict:
    """The OpenAPI 3.0 document as a dict."""
    batch_create = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 200},
            "kind": {"type": "string", "enum": list(KINDS)},
            "kinds": {"type": "array", "items": {"type": "string", "enum": list(KINDS)}},
            "sheets_dir": {"type": "string", "description": "argument-sheets folder on the server"},
            "images": {"type": "array", "description": "image paths or {id, image} objects (label batch)",
                       "items": {"oneOf": [{"type": "string"}, {"type": "object", "properties": {
                           "id": {"type": "string"}, "image": {"type": "string"}}, "required": ["image"]}]}},
            "classes": {"type": "array", "items": {"type": "string"}},
            "redundancy": {"type": "integer", "minimum": 1, "maximum": 100, "default": 3},
            "gold_rate": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0},
            "tasks_per_visit": {"type": "integer", "minimum": 1, "default": 5},
            "reward_cents": {"type": "integer", "minimum": 0, "default": 0},
            "lease_seconds": {"type": "integer", "minimum": 10, "default": 900},
            "exclude_batches": {"type": "array", "items": {"type": "integer"}},
            "gold": {"type": "array", "items": {"type": "object", "properties": {
                "sheet": {"type": "string"}, "channel": {"type": "integer"}, "kind": {"type": "string"},
                "answer": {"type": "object"}}, "required": ["answer"]}},
            "max_arguments": {"type": "integer", "default": 3},
            "max_marks": {"type": "integer", "default": 5, "maximum": 50},
            "limit": {"type": "integer"},
            "prolific_completion_code": {"type": "string"},
            "prolific_screenout_code": {"type": "string", "description": "code for visits that fail the practice"},
            "show_feature_names": {"type": "boolean", "default": False,
                                   "description": "show the model's feature names in rate_arguments (blind by default)"},
            "practice": {"type": "array", "description": "practice items with known answers, checked with feedback",
                         "items": {"type": "object", "properties": {
                             "sheet": {"type": "string"}, "channel": {"type": "integer"}, "kind": {"type": "string"},
                             "answer": {"type": "object"}, "explain": {"type": "string", "maxLength": 500}},
                             "required": ["kind", "answer"]}},
            "practice_pass": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.5},
            "practice_key": {"type": "string", "maxLength": 100},
            "prolific_partial_code": {"type": "string", "description": "code for visits that end early"},
            "visits_per_worker": {"type": "integer", "minimum": 1, "default": 1},
        },
    }
    batch = {"type": "object", "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}, "kinds": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "string", "enum": ["active", "paused", "closed"]}, "redundancy": {"type": "integer"},
        "tasks": {"type": "integer"}, "gold_tasks": {"type": "integer"}, "tasks_complete": {"type": "integer"},
        "judgments": {"type": "integer"}, "active_leases": {"type": "integer"}, "progress": {"type": "number"},
        "complete": {"type": "boolean"}, "workers": {"type": "integer"}, "visits": {"type": "object"}}}
    worker = {"type": "object", "properties": {
        "id": {"type": "integer"}, "worker": {"type": "string"}, "provider": {"type": "string"},
        "status": {"type": "string", "enum": ["active", "flagged", "approved", "blocked"]},
        "blocked": {"type": "boolean"}, "gold_accuracy": {"type": "number", "nullable": True}}}
    submit_body = {"type": "object", "required": ["assignment_token", "client_token", "answer"], "properties": {
        "assignment_token": {"type": "string"}, "client_token": {"type": "string", "minLength": 8, "maxLength": 80},
        "duration_s": {"type": "number", "minimum": 0},
        "answer": {"oneOf": [
            {"title": "rate_arguments", "type": "object", "required": ["arguments", "match"], "properties": {
                "arguments": {"type": "object", "additionalProperties": {"type": "string", "enum": list(RATINGS)}},
                "match": {"type": "integer", "minimum": LIKERT[0], "maximum": LIKERT[-1]}, "comment": {"type": "string", "maxLength": 2000}}},
            {"title": "name_feature", "type": "object", "required": ["name", "coherence"], "properties": {
                "name": {"type": "string", "maxLength": 80}, "coherence": {"type": "integer", "minimum": LIKERT[0], "maximum": LIKERT[-1]}}},
            {"title": "mark_rationale", "type": "object", "properties": {
                "points": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}},
                "boxes": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}}}},
            {"title": "label", "type": "object", "required": ["label"], "properties": {"label": {"type": "string"}}},
        ]}}}
    visit_token = {"type": "object", "required": ["visit_token"], "properties": {"visit_token": {"type": "string"}}}
    authed = [{"bearer": []}]
    paths = {
        "/api/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": _ok("OpenAPI 3 document")}}},
        "/api/batches": {
            "get": {"summary": "List batches with progress", "responses": {"200": _ok("batches", {
                "type": "object", "properties": {"batches": {"type": "array", "items": batch}}}), "401": _ERR}},
            "post": {"summary": "Create a batch from a sheets folder or from image files (label)",
                     "requestBody": {"required": True, **_json(batch_create)},
                     "responses": {"201": _ok("created batch", batch), "400": _ERR, "401": _ERR, "413": _ERR}},
        },
        "/api/batches/{batch_id}": {
            "parameters": [_id_param("batch_id")],
            "get": {"summary": "Batch status", "responses": {"200": _ok("status", batch), "404": _ERR}},
            "patch": {"summary": "Pause, resume or close a batch", "requestBody": {"required": True, **_json({
                "type": "object", "properties": {"status": {"type": "string", "enum": ["active", "paused", "closed"]}}})},
                "responses": {"200": _ok("status", batch), "400": _ERR, "404": _ERR}},
        },
        "/api/batches/{batch_id}/links": {
            "parameters": [_id_param("batch_id")],
            "post": {"summary": "Researcher-signed worker links (entry URL ?wt=..., JSON worker_token)",
                     "requestBody": {"required": True, **_json({"type": "object", "properties": {
                         "workers": {"type": "array", "items": {"type": "string"}},
                         "count": {"type": "integer", "minimum": 1, "maximum": 10000}}})},
                     "responses": {"201": {"description": "links", **_json({"type": "object", "properties": {
                         "links": {"type": "array", "items": {"type": "object", "properties": {
                             "worker": {"type": "string"}, "token": {"type": "string"},
                             "url": {"type": "string"}}}}}})}, "400": _ERR, "404": _ERR}},
        },
        "/api/batches/{batch_id}/judgments": {
            "parameters": [_id_param("batch_id"),
                           {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["csv", "parquet", "json"]}},
                           {"name": "hash_workers", "in": "query", "schema": {"type": "boolean"}}],
            "get": {"summary": "Judgments frame, one row per answer, streamed", "responses": {
                "200": {"description": "judgments", "content": {"text/csv": {}, "application/vnd.apache.parquet": {},
                                                                "application/json": {}}}, "404": _ERR}},
        },
        "/api/batches/{batch_id}/workers": {
            "parameters": [_id_param("batch_id")],
            "get": {"summary": "Per-worker stats (tasks, median time, gold accuracy, agreement with majority)",
                    "responses": {"200": _ok("stats"), "404": _ERR}}},
        "/api/batches/{batch_id}/invariants": {
            "parameters": [_id_param("batch_id")],
            "get": {"summary": "Counts of assignment-rule violations (all zero when healthy)",
                    "responses": {"200": _ok("counts"), "404": _ERR}}},
        "/api/workers": {"get": {"summary": "Workers", "parameters": [
            {"name": "batch", "in": "query", "schema": {"type": "integer"}},
            {"name": "status", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": _ok("workers", {"type": "object", "properties": {"workers": {"type": "array", "items": worker}}})}}},
        "/api/workers/{worker_id}/{action}": {
            "parameters": [_id_param("worker_id"), {"name": "action", "in": "path", "required": True, "schema": {
                "type": "string", "enum": ["approve", "reject", "flag", "unflag", "block", "unblock"]}}],
            "post": {"summary": "Review a worker", "requestBody": {"required": False, **_json({"type": "object", "properties": {
                "reason": {"type": "string"}, "batch": {"type": "integer"}}})},
                "responses": {"200": _ok("worker", worker), "400": _ERR, "404": _ERR}}},
        "/api/visits": {"get": {"summary": "Visits (one per MTurk assignment / Prolific session / lab visit)", "parameters": [
            {"name": "batch", "in": "query", "schema": {"type": "integer"}},
            {"name": "status", "in": "query", "schema": {"type": "string"}}], "responses": {"200": _ok("visits")}}},
        "/api/visits/{visit_id}/{action}": {
            "parameters": [_id_param("visit_id"), {"name": "action", "in": "path", "required": True,
                                                   "schema": {"type": "string", "enum": ["approve", "reject"]}}],
            "post": {"summary": "Approve or reject a completed visit", "responses": {
                "200": _ok("visit"), "400": _ERR, "404": _ERR, "409": _ERR}}},
        "/api/events": {"get": {"summary": "Append-only event log", "parameters": [
            {"name": "batch", "in": "query", "schema": {"type": "integer"}},
            {"name": "after", "in": "query", "schema": {"type": "integer"}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 5000}}],
            "responses": {"200": _ok("events")}}},
        "/w/api/start": {"post": {"summary": "Open a visit (worker)", "security": [], "requestBody": {"required": True, **_json({
            "type": "object", "required": ["batch"], "properties": {
                "batch": {"type": "integer"}, "worker": {"type": "string"}, "workerId": {"type": "string"},
                "assignmentId": {"type": "string"}, "hitId": {"type": "string"}, "turkSubmitTo": {"type": "string"},
                "PROLIFIC_PID": {"type": "string"}, "STUDY_ID": {"type": "string"}, "SESSION_ID": {"type": "string"}}})},
            "responses": {"200": _ok("visit token"), "400": _ERR, "403": _ERR, "404": _ERR}}},
        "/w/api/consent": {"post": {"summary": "Record consent (version + time)", "security": [],
                                    "requestBody": {"required": True, **_json(visit_token)},
                                    "responses": {"200": _ok("consent"), "403": _ERR}}},
        "/w/api/next": {"post": {"summary": "Lease the next task", "security": [],
                                 "requestBody": {"required": True, **_json(visit_token)},
                                 "responses": {"200": _ok("task and assignment token, or done"), "403": _ERR}}},
        "/w/api/submit": {"post": {"summary": "Submit an answer (idempotent by client_token)", "security": [],
                                   "requestBody": {"required": True, **_json(submit_body)},
                                   "responses": {"201": _ok("stored"), "200": _ok("duplicate: the first result"),
                                                 "400": _ERR, "403": _ERR, "409": _ERR, "413": _ERR}}},
        "/w/api/practice": {"post": {"summary": "Check a practice answer: right or wrong, why, and the pass mark",
                                     "security": [], "requestBody": {"required": True, **_json({
                                         "type": "object", "required": ["visit_token", "index", "answer"],
                                         "properties": {"visit_token": {"type": "string"}, "index": {"type": "integer"},
                                                        "answer": {"type": "object"}}})},
                                     "responses": {"200": _ok("feedback and practice state"), "400": _ERR,
                                                   "403": _ERR, "409": _ERR}}},
        "/w/api/finish": {"post": {"summary": "Finish the visit; completion code and return target", "security": [],
                                   "requestBody": {"required": True, **_json(visit_token)},
                                   "responses": {"200": _ok("completion"), "403": _ERR}}},
    }
    for path, item in paths.items():
        for method, op in item.items():
            if method != "parameters" and "security" not in op:
                op["security"] = authed
    return {
        "openapi": "3.0.3",
        "info": {"title": "Argus crowd task server", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "error naming the field", **_json({"type": "object", "properties": {
                "error": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string", "nullable": True},
                "status": {"type": "integer"}}})}},
        },
    }
