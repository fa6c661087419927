"""Flask application factory of the crowd task server (`create_app(test_config=None)`).

Blueprints, one per audience: `worker` (task pages and their JSON endpoints under `/w`, media
under `/media`), `api` (researcher JSON API under `/api`, bearer token) and `admin` (dashboard
under `/admin`, login + CSRF). Gunicorn: `gunicorn 'crowd.app:create_app()'`. The instance folder
(default SQLite database, generated secret key, optional config.py) is `ARGUS_INSTANCE_PATH` or
Flask's default `instance/` beside the package.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask, jsonify
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

import templates as _templates_pkg
from crowd import db
from crowd.config import load_config
from crowd.service import ServiceError
from crowd.web import service_error_response, wants_json

TEMPLATES_DIR = str(Path(_templates_pkg.__file__).resolve().parent)
STATIC_DIR = str(Path(__file__).resolve().parent / "static")


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: config layers, database (schema created/upgraded when `AUTO_INIT_DB`),
    blueprints and error handlers (JSON under the API prefixes)."""
    app = Flask("crowd", instance_path=os.environ.get("ARGUS_INSTANCE_PATH") or None,
                instance_relative_config=True, template_folder=TEMPLATES_DIR,
                static_folder=STATIC_DIR, static_url_path="/static")
    load_config(app, test_config)
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_CONTENT_LENGTH"])
    db.init_app(app)

    from crowd import admin, api, worker

    app.register_blueprint(worker.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)

    app.register_error_handler(ServiceError, service_error_response)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if wants_json():
            return jsonify(error=exc.name, message=exc.description, status=exc.code), exc.code
        return exc

    @app.errorhandler(OverflowError)
    @app.errorhandler(DataError)
    def _unstorable_value(exc):
        # An id beyond the database's integer range or a NUL byte in PostgreSQL text is bad
        # input, not a server fault: 400 instead of 500 (found by the reliability fuzzer).
        app.logger.info("refused a value the database cannot store: %s", type(exc).__name__)
        message = "a value is out of range or contains characters that cannot be stored"
        if wants_json():
            return jsonify(error="Bad Request", message=message, field=None, status=400), 400
        return message, 400, {"Content-Type": "text/plain; charset=utf-8"}

    @app.after_request
    def _security_headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        # No external loads: scripts, styles and images come from this server only.
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                "form-action 'self' https: http:; frame-ancestors *")
        return resp

    @app.get("/health")
    def health():
        return jsonify(ok=True)

    if not app.debug:
        logging.getLogger("crowd").setLevel(logging.INFO)
    return app
