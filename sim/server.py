"""The crowd app on a free 127.0.0.1 port, served by werkzeug's threaded WSGI server in a
daemon thread (SQLite in WAL mode): the server of the demo and of the HTTP tests.

    with LocalServer(tmp_path) as server:
        batch = server.client.create_batch({...})   # crowd.client.CrowdClient with the API token
        ...  # workers talk to server.url
"""

from __future__ import annotations

import threading
from pathlib import Path


SIMULATION_LIMITS = {"MAX_LEASES_PER_ADDRESS": 0, "LEASE_RATE_PER_ADDRESS": 0, "LEASE_RATE_PER_WORKER": 0}


class LocalServer:
    """`crowd.app.create_app` on `host:port` (port 0: a free one) with a SQLite database in
    `folder`. Secrets are fresh (`crowd.tokens.new_secret`) unless given.

    Attributes: `url`, `api_token`, `admin_password`, `database_url`, `client` (a
    `crowd.client.CrowdClient` with the API token, once started).
    """

    def __init__(self, folder: Path, *, host: str = "127.0.0.1", port: int = 0, fresh_db: bool = True,
                 api_token: str | None = None, config: dict | None = None):
        from crowd.tokens import new_secret

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        db = self.folder / "argus.db"
        if fresh_db:
            for p in (db, db.with_name("argus.db-wal"), db.with_name("argus.db-shm")):
                p.unlink(missing_ok=True)
        self.database_url = f"sqlite:///{db.resolve()}"
        self.api_token, self.admin_password = api_token or new_secret(), new_secret()
        # A simulated crowd comes from one address at machine speed: no per-address caps and no
        # lease rate limit unless the caller sets them (the per-worker cap of one lease stays).
        self.config = {**SIMULATION_LIMITS, **(config or {})}
        self.host, self.port = host, port
        self.url = self.client = None
        self._server = self._thread = None

    def start(self) -> "LocalServer":
        import logging

        from werkzeug.serving import make_server

        from crowd.app import create_app
        from crowd.client import CrowdClient
        from crowd.tokens import new_secret

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        app = create_app({"DATABASE_URL": self.database_url, "SECRET_KEY": new_secret(32),
                          "API_TOKEN": self.api_token, "ADMIN_PASSWORD": self.admin_password, **self.config})
        self._server = make_server(self.host, self.port, app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://{self.host}:{self.port}"
        self.client = CrowdClient(self.url, self.api_token, timeout_s=120)
        self._thread = threading.Thread(target=self._server.serve_forever, name="argus-local-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down (safe to call twice)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
