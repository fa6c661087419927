"""HTTP client of the crowd server's public endpoints, with the one retry policy of the project.

Used by `active.oracles` (the crowd oracle), by `argus demo` and by the simulated crowds in
`sim`; built on urllib3 (its `Retry` does the counting, back-off and `Retry-After` handling).

Retry policy (`RetryPolicy`), the same as the worker pages' `worker.js` (which retries 429 and
5xx): a request is repeated when the server could not be reached, or when it answered one of
`RETRY_STATUSES`, waiting `backoff_s * 2**k` seconds (at most `max_backoff_s`, plus jitter), or
as long as a `Retry-After` header asks. A refused connection is retried for every request (the
server never saw it); a lost answer or a retryable status only for idempotent requests: GET,
HEAD, PUT, DELETE, and requests the caller marks `idempotent=True` (the worker flow's POSTs,
which the server makes safe to repeat: a submission carries its client token).

    api = CrowdClient("http://127.0.0.1:5000", token)
    batch = api.post("/api/batches", json={...}).json()
    api.get(f"/api/batches/{batch['id']}").json()["complete"]
"""

from __future__ import annotations

import json as _json
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError
from urllib3.util.retry import Retry

#: answers worth asking again: too many requests, and the server-side errors a restart or an
#: overloaded proxy gives (501 "not implemented" would fail the same way again)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_REDIRECTS = {301, 302, 303, 307, 308}


class CrowdHttpError(RuntimeError):
    """The server answered with an error status (after any retries); the message names the
    method, the URL, the status and the server's own message."""

    def __init__(self, method: str, url: str, status: int, detail: str):
        super().__init__(f"{method} {url}: HTTP {status}: {detail}")
        self.method, self.url, self.status, self.detail = method, url, status, detail


class ServerUnreachable(CrowdHttpError):
    """No answer from the server (connection refused or lost) after every retry."""

    def __init__(self, method: str, url: str, tried: str, reason: str):
        RuntimeError.__init__(self, f"{method} {url}: no answer after {tried} ({reason})")
        self.method, self.url, self.status, self.detail = method, url, None, reason


class _DeadlineRetry(Retry):
    """urllib3's `Retry` that also gives up once `deadline` (time.monotonic) has passed."""

    deadline: float | None = None

    def new(self, **kw):
        out = super().new(**kw)
        out.deadline = self.deadline
        return out

    def is_exhausted(self) -> bool:
        return super().is_exhausted() or (self.deadline is not None and time.monotonic() > self.deadline)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how a request is repeated (see the module docstring).

    `attempts`: repeats after the first try (per request); `give_up_s`: when set, keep
    repeating until this many seconds have passed instead (a server that restarts, as in the
    crash tests); `backoff_s`, `max_backoff_s`, `jitter_s`: pauses between tries in seconds.
    """

    statuses: frozenset = RETRY_STATUSES
    attempts: int = 6
    give_up_s: float | None = None
    backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    jitter_s: float = 0.1

    def __post_init__(self):
        if self.attempts < 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError(f"retry policy: attempts and back-off must be >= 0, got {self}")

    def describe(self) -> str:
        return f"{self.attempts} retries" if self.give_up_s is None else f"retrying for {self.give_up_s:g} s"

    def urllib3_retry(self, method: str, idempotent: bool) -> Retry:
        """The urllib3 `Retry` for one request; redirects are followed by the client itself."""
        n = self.attempts if self.give_up_s is None else 10 ** 6
        # urllib3 retries a lost answer or a status only for methods in `allowed_methods` (None: all)
        allowed = None if idempotent else IDEMPOTENT_METHODS - {method.upper()}
        r = _DeadlineRetry(total=None, connect=n, read=n if idempotent else 0, status=n, other=0, redirect=0,
                           allowed_methods=allowed, status_forcelist=self.statuses,
                           backoff_factor=self.backoff_s / 2, backoff_max=self.max_backoff_s,
                           backoff_jitter=self.jitter_s, raise_on_status=False, raise_on_redirect=False,
                           respect_retry_after_header=True, retry_after_max=600)
        r.deadline = None if self.give_up_s is None else time.monotonic() + self.give_up_s
        return r


@dataclass
class Response:
    """One answer: `status`, final `url` (after redirects), `headers`, `content` (bytes) and
    `retried`: what the tries before it got (an HTTP status, or "connection_error")."""

    status: int
    url: str
    headers: dict
    content: bytes
    retried: list = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self):
        """The body as JSON (ValueError naming the URL when it is not JSON)."""
        try:
            return _json.loads(self.content)
        except ValueError:
            raise ValueError(f"{self.url}: HTTP {self.status} answer is not JSON: {self.text[:200]!r}") from None


def _detail(resp: Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:300]
    return str(data.get("message", data) if isinstance(data, dict) else data)[:500]


class CrowdClient:
    """HTTP client of one crowd server (thread-safe; one connection pool).

    Args:
        url: base URL, e.g. `http://127.0.0.1:5000`.
        token: researcher API token, sent as `Authorization: Bearer` (None for worker requests).
        timeout_s: connect and read timeout per try, in seconds.
        retry: the `RetryPolicy`.
        user_agent: sent as `User-Agent`.
    """

    def __init__(self, url: str, token: str | None = None, *, timeout_s: float = 30.0,
                 retry: RetryPolicy | None = None, user_agent: str = "argus-client/1"):
        self.url = url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)
        self.headers = {"User-Agent": user_agent}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.http = urllib3.PoolManager(maxsize=4, block=False)

    def request(self, method: str, path: str, *, json=None, data: dict | None = None, params: dict | None = None,
                idempotent: bool | None = None, check: bool = True, follow_redirects: bool = True) -> Response:
        """Send one request (`path` relative to the base URL, or absolute) and return its `Response`.

        `json` or `data` (a form) is the body; `params` the query. `idempotent` (default: by
        method) allows retries after a lost answer or a retryable status. Redirects are followed
        as a browser does (301/302/303 become GET). With `check`, an error status raises
        `CrowdHttpError`; no answer at all raises `ServerUnreachable`.
        """
        method = method.upper()
        url = urljoin(self.url + "/", path.lstrip("/")) if "://" not in path else path
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        headers, body = dict(self.headers), None
        if json is not None:
            headers["Content-Type"], body = "application/json", _json.dumps(json).encode()
        elif data is not None:
            headers["Content-Type"], body = "application/x-www-form-urlencoded", urlencode(data).encode()
        idempotent = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        retried: list = []
        for _ in range(10):  # redirects
            retry = self.retry.urllib3_retry(method, idempotent)
            try:
                r = self.http.request(method, url, body=body, headers=headers, retries=retry, redirect=False,
                                      timeout=self.timeout, preload_content=True)
            except (MaxRetryError, HTTPError) as exc:
                raise ServerUnreachable(method, url, self.retry.describe(), str(getattr(exc, "reason", exc))) from None
            history = r.retries.history if r.retries is not None else ()
            retried += [h.status if h.status is not None else "connection_error" for h in history]
            resp = Response(r.status, url, dict(r.headers), r.data, retried)
            location = r.headers.get("Location")
            if not (follow_redirects and r.status in _REDIRECTS and location):
                break
            url = urljoin(url, location)
            if r.status in (301, 302, 303) and method not in ("GET", "HEAD"):
                method, body = "GET", None
                headers.pop("Content-Type", None)
        if check and resp.status >= 400:
            raise CrowdHttpError(method, url, resp.status, _detail(resp))
        return resp

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> Response:
        return self.request("POST", path, **kw)

    # -- the researcher API (`/api`, needs the token)
    def create_batch(self, body: dict) -> dict:
        """`POST /api/batches` -> the new batch's status dict (not retried after a lost answer:
        a second batch could be made)."""
        return self.post("/api/batches", json=body).json()

    def create_label_batch(self, images: list, classes: list[str], redundancy: int, name: str,
                           reward_cents: int = 0, **options) -> dict:
        """A `label` batch of `images` (paths, or `{"id", "image"}` dicts) -> its status dict."""
        return self.create_batch({"kind": "label", "images": images, "classes": list(classes),
                                  "redundancy": redundancy, "name": name, "reward_cents": reward_cents, **options})

    def worker_links(self, batch_id: int, workers: list[str]) -> dict[str, str]:
        """Researcher-signed worker tokens of `batch_id`: {worker id: token} (a worker sends its
        token as `worker_token`, or opens `/w/<batch>?wt=<token>`)."""
        links = self.post(f"/api/batches/{batch_id}/links", json={"workers": list(workers)}).json()["links"]
        return {link["worker"]: link["token"] for link in links}

    def batch_status(self, batch_id: int) -> dict:
        return self.get(f"/api/batches/{batch_id}").json()

    def close_batch(self, batch_id: int) -> None:
        self.request("PATCH", f"/api/batches/{batch_id}", json={"status": "closed"}, idempotent=True)

    def batch_workers(self, batch_id: int) -> list[dict]:
        return self.get(f"/api/batches/{batch_id}/workers").json()["workers"]

    def export(self, batch_id: int, fmt: str = "csv") -> bytes:
        """The batch's judgments export (`csv`, `parquet` or `json`) as bytes."""
        return self.get(f"/api/batches/{batch_id}/judgments", params={"format": fmt}).content

    def judgments(self, batch_id: int):
        """The batch's judgments frame (`task, worker, label, item, sheet, is_gold, ...`)."""
        import pandas as pd

        rows = _json.loads(self.export(batch_id, "json"))["rows"]
        return pd.DataFrame(rows, columns=None if rows else ["task", "worker", "label", "item", "sheet", "is_gold"])

    def close(self) -> None:
        self.http.clear()

