"""What the three blueprints share: reading a JSON body, and the one answer to a request the
service layer refuses (`ServiceError`): JSON under the API prefixes, the worker's message page on
worker pages, the plain HTTP error page on the dashboard. `create_app` registers the handler, so
views raise and never catch `ServiceError` themselves.
"""

from __future__ import annotations

from flask import jsonify, render_template, request
from werkzeug.exceptions import BadRequest, default_exceptions

from crowd.service import RateLimited, ServiceError

JSON_PREFIXES = ("/api", "/w/api")
TOKEN_FIELDS = ("visit_token", "assignment_token", "worker_token")


def wants_json() -> bool:
    """Whether the request is one of the JSON endpoints (errors answer in JSON there)."""
    return request.path.startswith(JSON_PREFIXES)


def client_addr() -> str:
    """The client's address (as the trusted proxies in front report it, see TRUSTED_PROXIES)."""
    return (request.remote_addr or "unknown")[:64]


def json_body() -> dict:
    """The request's JSON object; a missing, malformed or non-object body is a 400 on `body`."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ServiceError("request body must be a JSON object", "body")
    return data


def service_error_response(exc: ServiceError):
    """The response for a refused request, with the exception's status (and `Retry-After` on a
    429)."""
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if wants_json():
        body = jsonify(error=type(exc).__name__, message=exc.message, field=exc.field, status=exc.status)
        return body, exc.status, headers
    if request.blueprint == "worker":
        return _worker_message_page(exc), exc.status, headers
    # the dashboard: the same page `abort(status, description=...)` gives
    error = default_exceptions.get(exc.status, BadRequest)(description=exc.message)
    response = error.get_response()
    response.headers.update(headers)
    return response


def _worker_message_page(exc: ServiceError) -> str:
    """The title says what went wrong from the worker's side: an old or edited link, an answer
    the form must fix (the field is named), bad link parameters, or a task they cannot have."""
    message = exc.message
    if exc.field in TOKEN_FIELDS:
        title = "Link expired"
    elif request.method == "POST":
        title = "Please check your answer"
    elif exc.status == 400:
        title = "Invalid link"
    elif exc.status == 429:
        title = "Please slow down"
    else:
        title = "Not available"
    return render_template("worker/message.html", title=title, message=message)
