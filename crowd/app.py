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

from flask import Flask, jsonify, request
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

import templates as _templates_pkg
from crowd import db
from crowd.config import load_config
from crowd.service import ServiceError
from crowd.web import service_error_response, wants_json

TEMPLATES_DIR = str(Path(_templates_pkg.__file__).resolve().parent)
STATIC_DIR = str(Path(__file__).resolve().parent / "static")
# No external loads: scripts, styles and images come from this server only.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "form-action 'self' https: http:; frame-ancestors {ancestors}")
PRIVATE_PREFIXES = ("/admin", "/api")  # never framed, never cached


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session whose cookie is also `Secure` whenever the request came
    over https (behind a proxy: as `X-Forwarded-Proto` says, see TRUSTED_PROXIES)."""

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def frame_ancestors(path: str, config) -> str:
    """The CSP `frame-ancestors` of a response: worker pages may be framed by the configured task
    hosts (MTurk's ExternalQuestion iframe), nothing else may be framed at all."""
    if path.startswith("/w/") and not path.startswith("/w/api/"):
        hosts = [h for h in config["TASK_FRAME_ANCESTORS"] if isinstance(h, str) and h]
        return " ".join(hosts) if hosts else "'none'"
    return "'none'"


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: config layers, database (schema created/upgraded when `AUTO_INIT_DB`),
    blueprints and error handlers (JSON under the API prefixes)."""
    app = Flask("crowd", instance_path=os.environ.get("ARGUS_INSTANCE_PATH") or None,
                instance_relative_config=True, template_folder=TEMPLATES_DIR,
                static_folder=STATIC_DIR, static_url_path="/static")
    load_config(app, test_config)
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_CONTENT_LENGTH"])
    app.session_interface = SessionInterface()
    proxies = int(app.config["TRUSTED_PROXIES"])
    if proxies > 0:  # the client address and scheme as the proxies in front saw them
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
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
        ancestors = frame_ancestors(request.path, app.config)
        resp.headers.setdefault("Content-Security-Policy", CSP.format(ancestors=ancestors))
        if ancestors == "'none'":
            resp.headers.setdefault("X-Frame-Options", "DENY")  # browsers without CSP level 2
        if request.path.startswith(PRIVATE_PREFIXES):
            # researcher pages and exports hold worker ids and answers: never kept by a cache
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.get("/health")
    def health():
        return jsonify(ok=True)

    if not app.debug:
        logging.getLogger("crowd").setLevel(logging.INFO)
    return app
