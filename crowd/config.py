"""Configuration: defaults -> file (`ARGUS_CONFIG` or `instance/config.py`) -> `ARGUS_*`
environment variables -> the test mapping. Nothing is read at import time.

Environment values are parsed by the type of the default (`ARGUS_GOLD_THRESHOLD=0.8`,
`ARGUS_AUTO_INIT_DB=false`, lists as JSON or comma-separated).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

DEFAULTS: dict = {
    "SECRET_KEY": None,  # signs tokens and sessions; default: generated once into instance/secret_key
    "DATABASE_URL": None,  # default: sqlite:///<instance>/argus.db
    "DATABASE_SCHEMA": None,  # PostgreSQL schema put first on the search_path
    "DATABASE_POOL_SIZE": 5,
    # WAL + FULL: an acknowledged judgment survives process kills *and* an OS crash or power cut
    # (one fsync per commit); NORMAL can roll back the last acknowledged commits on power loss
    # (see docs/reliability.md).
    "SQLITE_SYNCHRONOUS": "FULL",
    "SQLITE_BUSY_TIMEOUT_S": 30.0,
    "AUTO_INIT_DB": True,  # create / upgrade the schema on start
    "API_TOKEN": None,  # bearer token of the researcher API (API answers 401 while unset)
    "ADMIN_USER": "admin",
    "ADMIN_PASSWORD": None,  # or ADMIN_PASSWORD_HASH (werkzeug.security hash)
    "ADMIN_PASSWORD_HASH": None,
    "MAX_CONTENT_LENGTH": 64 * 1024,  # request body limit in bytes (413 above)
    "STUDY_TITLE": "Argus study: how does a computer recognise images?",
    "CONSENT_VERSION": "1",
    "CONSENT_TEXT": (
        "You are invited to take part in a research study about how people judge the reasons a "
        "computer vision model gives for its decisions. You will look at images and answer short "
        "questions. It takes a few minutes. We record your answers, the time you take and your "
        "worker id; we publish only anonymised data. Taking part is voluntary and you may stop at "
        "any time. Contact the research team through the platform with any question."
    ),
    "GOLD_THRESHOLD": 0.7,  # workers below this gold accuracy are flagged for review
    "GOLD_MIN_ANSWERS": 3,  # ... once they have answered this many gold tasks
    "GOLD_CONFIDENCE": 0.95,  # ... and P(accuracy < GOLD_THRESHOLD) is at least this
    "ASSIGNMENT_TOKEN_MAX_AGE": 6 * 3600,  # seconds a signed assignment token stays valid
    "VISIT_TOKEN_MAX_AGE": 24 * 3600,
    "TURK_SUBMIT_HOSTS": ["www.mturk.com", "workersandbox.mturk.com", "127.0.0.1", "localhost"],
    "PROLIFIC_COMPLETE_URL": "https://app.prolific.com/submissions/complete?cc={code}",
    "EXPORT_SALT": None,  # salt for hashed worker ids; default derived from SECRET_KEY
    "SEND_FILE_MAX_AGE_DEFAULT": 3600,
    # --- integrity controls (SECURITY.md says what each covers) ---
    # origins allowed to frame the worker pages (MTurk shows ExternalQuestion pages in an
    # iframe); the dashboard and the API may never be framed
    "TASK_FRAME_ANCESTORS": ["https://www.mturk.com", "https://workersandbox.mturk.com"],
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": False,  # also set on every response to an https request
    "ADMIN_SESSION_MAX_AGE": 12 * 3600,  # seconds a dashboard login lasts (revoked at logout)
    "LOGIN_MAX_FAILURES": 5,  # failed logins per client address within LOGIN_WINDOW_S -> 429
    "LOGIN_MAX_FAILURES_GLOBAL": 100,  # ... from all addresses together
    "LOGIN_WINDOW_S": 900,
    "TRUSTED_PROXIES": 0,  # reverse proxies in front whose X-Forwarded-For/-Proto are believed
    "MAX_LEASES_PER_WORKER": 1,  # tasks one worker may hold at once (all visits)
    "MAX_LEASES_PER_ADDRESS": 20,  # ... one client address may hold at once (0: no cap)
    "LEASE_RATE_WINDOW_S": 60,
    "LEASE_RATE_PER_WORKER": 30,  # new leases per worker per window -> 429 above (0: no limit)
    "LEASE_RATE_PER_ADDRESS": 300,  # ... per client address
    "WORKER_TOKEN_MAX_AGE": 60 * 86400,  # seconds a researcher-signed worker link stays valid
    "SPEED_FAST_RATIO": 0.2,  # too fast: below this share of the kind's median seconds (as analysis.quality)
    "SPEED_MIN_SECONDS": {},  # per-kind minimum plausible seconds, overriding the batch's own distribution
    "LOW_AGREEMENT": 0.5,  # dashboard flag: share of a worker's answers equal to the item majority below this
}


def _parse(raw: str, default, key: str):
    if isinstance(default, bool):
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"ARGUS_{key}: expected true/false, got {raw!r}")
    try:
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ValueError(f"ARGUS_{key}: expected a number, got {raw!r}") from None
    if isinstance(default, dict):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"ARGUS_{key}: expected a JSON object, got {raw!r}") from None
        if not isinstance(value, dict):
            raise ValueError(f"ARGUS_{key}: expected a JSON object, got {raw!r}")
        return value
    if isinstance(default, list):
        raw = raw.strip()
        if raw.startswith("["):
            return json.loads(raw)
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def load_config(app, test_config: dict | None = None) -> None:
    """Fill `app.config` in layers; see the module docstring."""
    app.config.from_mapping(DEFAULTS)
    config_file = os.environ.get("ARGUS_CONFIG")
    if config_file:
        app.config.from_pyfile(os.path.abspath(config_file), silent=False)
    else:
        app.config.from_pyfile("config.py", silent=True)  # instance/config.py
    for key, value in os.environ.items():
        if key.startswith("ARGUS_") and key not in ("ARGUS_CONFIG", "ARGUS_INSTANCE_PATH", "ARGUS_TEST_POSTGRES_URL"):
            name = key[len("ARGUS_"):]
            app.config[name] = _parse(value, DEFAULTS.get(name, app.config.get(name)), name)
    if test_config:
        app.config.from_mapping(test_config)
    instance = Path(app.instance_path)
    if not app.config.get("DATABASE_URL"):
        instance.mkdir(parents=True, exist_ok=True)
        app.config["DATABASE_URL"] = f"sqlite:///{instance / 'argus.db'}"
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(instance)


def _instance_secret(instance: Path) -> str:
    """A secret generated once and kept in `instance/secret_key` (0600), so every gunicorn
    worker and restart signs tokens with the same key."""
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "secret_key"
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        except FileExistsError:
            pass  # another worker wrote it first
    return path.read_text().strip()
