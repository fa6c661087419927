"""The simulated HTTP worker: one crowd member's session with the real server, over real HTTP.

`SimulatedWorker` goes through a batch the way the worker pages do, either

- through the worker JSON flow (`POST /w/api/start -> consent -> next/submit ... -> finish`;
  load tests, the active-learning crowd), or
- through the HTML pages as a browser does (entry link -> consent form -> instructions -> task
  pages, each answer posted as `static/worker.js` posts it: JSON to the form's
  `data-submit-url` with the page's client token, then on to `data-next-url`; the demo).

What it answers is not its business: an `answer(task) -> dict | None` callable decides (None:
walk away holding the lease). Requests go through `crowd.client.CrowdClient`, so a lost answer
is retried with the same client token under the project's one retry policy, as worker.js does.
Everything it saw goes into its `WorkerLog`.

`LabelCrowd` runs label-answering workers in threads that poll the researcher API for open
batches (the crowd behind the active-learning crowd oracle in tests).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

from crowd.client import CrowdClient, CrowdHttpError, RetryPolicy, ServerUnreachable

USER_AGENT = "argus-simulated-worker/1 (simulation)"


class SimulationError(RuntimeError):
    """A simulated worker could not use the server (the message names the URL and status)."""


@dataclass
class WorkerLog:
    """What a simulated worker (or one load-test client, over many worker ids) saw.

    `acks`: one dict per acknowledged submission (`worker, assignment, task, judgment,
    client_token, duplicate`); `leases`: `(worker, assignment, task)` per lease handed out;
    `status`: HTTP status counts of every try (`connection_error` for none); `codes`: completion
    codes; `answers`: the answer model's log rows; `errors`: what went wrong, as text.
    """

    name: str
    acks: list = field(default_factory=list)
    leases: list = field(default_factory=list)
    status: Counter = field(default_factory=Counter)
    retries: int = 0
    abandoned: int = 0
    visits: int = 0
    tasks: int = 0
    codes: list = field(default_factory=list)
    answers: list = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    errors: list = field(default_factory=list)
    seconds: float = 0.0


class SimulatedWorker:
    """One simulated crowd member (`worker_id`) talking to the server at `base_url`.

    Args:
        base_url: the crowd server, e.g. `http://127.0.0.1:5000`.
        worker_id: the worker's name (the server knows it as this name only with `worker_token`).
        worker_token: a researcher-signed worker token (`POST /api/batches/<id>/links`); without
            one every visit is a new anonymous worker (the server mints the id).
        log: the `WorkerLog` to record into (shared by a load-test client's visits).
        client: a `CrowdClient` to reuse; default a new one with `retry`.
        retry: the `crowd.client.RetryPolicy` (default: the policy's defaults).
        stop: an Event; when set the worker stops between requests.
    """

    def __init__(self, base_url: str, worker_id: str, *, log: WorkerLog | None = None,
                 client: CrowdClient | None = None, retry: RetryPolicy | None = None,
                 stop: threading.Event | None = None, worker_token: str | None = None):
        self.base_url, self.worker_id, self.worker_token = base_url.rstrip("/"), worker_id, worker_token
        self.log = log or WorkerLog(worker_id)
        self.client = client or CrowdClient(base_url, retry=retry, user_agent=USER_AGENT)
        self.stop = stop or threading.Event()

    # ------------------------------------------------------------------ transport
    def _send(self, method: str, path: str, **kw):
        """One request, idempotent by the server's design (visits resume, leases are returned
        again, submissions carry their client token); statuses and retries go to the log."""
        try:
            resp = self.client.request(method, path, idempotent=True, check=False, **kw)
        except ServerUnreachable:
            self.log.status["connection_error"] += 1
            raise
        for s in resp.retried:
            self.log.status[s] += 1
        self.log.status[resp.status] += 1
        self.log.retries += len(resp.retried)
        return resp

    def _post(self, path: str, body: dict) -> tuple[int, dict]:
        resp = self._send("POST", path, json=body)
        try:
            data = resp.json()
        except ValueError:
            data = {"raw": resp.text[:200]}
        return resp.status, data

    def _fail(self, what: str, status: int, data) -> None:
        self.log.errors.append(f"{self.worker_id} {what}: HTTP {status} {str(data)[:200]}")

    # ------------------------------------------------------------------ JSON flow
    def visit_json(self, batch_id: int, answer) -> int:
        """One visit through the worker JSON flow: start, consent, then lease and answer
        tasks (`answer(next_response) -> answer dict`, or None to walk away holding the lease)
        until the server says done, then finish. Returns how many answers were acknowledged;
        failures are logged in `log.errors` (a visit the server refuses returns 0)."""
        ident = {"worker_token": self.worker_token} if self.worker_token else {}
        status, data = self._post("/w/api/start", {"batch": batch_id, **ident})
        if status != 200:
            self._fail("start", status, data)
            return 0
        self.log.visits += 1
        token = data["visit_token"]
        if not self.worker_token:  # anonymous: the server minted this visit's worker id
            self.worker_id = data.get("worker", self.worker_id)
        status, data = self._post("/w/api/consent", {"visit_token": token})
        if status != 200:
            self._fail("consent", status, data)
            return 0
        acked = 0
        while not self.stop.is_set():
            status, nxt = self._post("/w/api/next", {"visit_token": token})
            if status != 200:
                self._fail("next", status, nxt)
                break
            if nxt["done"]:
                break
            self.log.leases.append((self.worker_id, nxt["assignment"], nxt["task"]["id"]))
            reply = answer(nxt)
            if reply is None:
                self.log.abandoned += 1  # walks away holding the lease; it comes back after expiry
                return acked
            client_token = secrets.token_urlsafe(16)
            body = {"assignment_token": nxt["assignment_token"], "client_token": client_token, **reply}
            status, res = self._post("/w/api/submit", body)
            if status not in (200, 201):
                self._fail("submit", status, res)
                break
            self.log.acks.append({"worker": self.worker_id, "assignment": res["assignment"], "task": res["task"],
                                  "judgment": res["judgment"], "client_token": client_token,
                                  "duplicate": bool(res["duplicate"])})
            self.log.tasks += 1
            acked += 1
        if not self.stop.is_set() or acked:
            status, data = self._post("/w/api/finish", {"visit_token": token})
            if status != 200:
                self._fail("finish", status, data)
            elif data.get("completion_code"):
                self.log.codes.append(data["completion_code"])
        return acked

    # ------------------------------------------------------------------ the pages
    def _page(self, resp, what: str) -> "Page":
        if resp.status != 200:
            raise SimulationError(f"{self.worker_id}: {what} answered HTTP {resp.status}: {resp.text[:200]}")
        return parse_page(resp.text)

    def visit_pages(self, batch_id: int, answer) -> int:
        """One visit through the HTML pages: entry link, consent form (when asked), the
        instructions' start link, then task pages until the finish page. `answer(page) ->
        (answer dict, duration_s)`. Returns the number of tasks answered; raises
        `SimulationError` when a page is not what a browser would expect."""
        r = self._send("GET", f"/w/{batch_id}", params={"wt": self.worker_token} if self.worker_token else {})
        if "you have already completed this study" in r.text.lower():
            return 0
        page = self._page(r, "entry link")
        if r.url.rstrip("/").endswith("/consent"):
            action = next((f.get("action") for f in page.forms if f.get("method", "").lower() == "post"), None)
            if not action:
                raise SimulationError(f"{self.worker_id}: consent page without a form ({r.url})")
            r = self._send("POST", urljoin(r.url, action), data={"agree": "yes"})
            if r.status != 200 or not r.url.rstrip("/").endswith("/instructions"):
                raise SimulationError(f"{self.worker_id}: consent not accepted (HTTP {r.status}, {r.url})")
            page = parse_page(r.text)
        start = page.links.get("start")
        if not start:
            raise SimulationError(f"{self.worker_id}: instructions page without a start link ({r.url})")
        self.log.visits += 1
        r = self._send("GET", urljoin(r.url, start))
        n = 0
        while True:
            page = self._page(r, "task page")
            if page.form is None:  # finish page (or "no tasks right now")
                code = page.ids.get("completion-code")
                if code:
                    self.log.codes.append(code)
                return n
            body, duration_s = answer(page)
            hidden = {i["name"]: i.get("value", "") for i in page.inputs if i.get("type") == "hidden"}
            resp = self._send("POST", urljoin(r.url, page.form["data-submit-url"]),
                              json={"assignment_token": hidden["assignment_token"],
                                    "client_token": hidden["client_token"], "duration_s": round(duration_s, 1),
                                    "answer": body})
            if resp.status not in (200, 201):
                raise SimulationError(f"{self.worker_id}: submit answered HTTP {resp.status}: {resp.text[:300]}")
            self.log.tasks += 1
            n += 1
            r = self._send("GET", urljoin(r.url, page.form["data-next-url"]))


# -------------------------------------------------------------------------------- the pages

class Page(HTMLParser):
    """What a browser needs from a worker page: the task form, its inputs, images, fieldsets,
    links by id, the rationale marker and the completion code."""

    def __init__(self):
        super().__init__()
        self.form: dict | None = None
        self.forms: list[dict] = []
        self.inputs: list[dict] = []
        self.images: list[str] = []
        self.fieldsets: list[str] = []
        self.links: dict[str, str] = {}
        self.marker: dict | None = None
        self.ids: dict[str, str] = {}
        self._capture = None

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self.forms.append(a)
            if a.get("id") == "task-form" and not a.get("data-practice"):
                self.form = a
        elif tag == "input" and self.forms and not self.forms[-1].get("data-practice"):
            self.inputs.append(a)
        elif tag == "img" and (self.form is not None or self.marker is not None):
            self.images.append(a.get("src", ""))
        elif tag == "fieldset" and self.form is not None and a.get("id"):
            self.fieldsets.append(a["id"])
        elif tag == "a" and a.get("id"):
            self.links[a["id"]] = a.get("href", "")
        elif tag == "div" and a.get("id") == "marker":
            self.marker = a
        if a.get("id") in ("completion-code",):
            self._capture = a["id"]

    def handle_endtag(self, tag):
        if tag == "form" and self.forms:
            self.forms[-1] = {**self.forms[-1], "_closed": "1"}

    def handle_data(self, data):
        if self._capture:
            self.ids[self._capture] = data.strip()
            self._capture = None


def parse_page(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


# --------------------------------------------------------------------- polling label crowd

class LabelCrowd:
    """Label-answering simulated workers in threads (a context manager): each polls the
    researcher API for active, incomplete batches and works through visits with the JSON flow,
    answering `truth(sheet_id)` with probability `accuracy`, else another of the task's classes.

    `answers`: submissions acknowledged so far.
    """

    def __init__(self, url: str, token: str, truth, n_workers: int = 3, accuracy: float = 0.9, seed: int = 0,
                 poll_s: float = 0.05):
        self.url, self.truth, self.accuracy, self.poll_s = url, truth, accuracy, poll_s
        self.api = CrowdClient(url, token)
        self.stop = threading.Event()
        self.workers = [SimulatedWorker(url, f"sim{w}", stop=self.stop) for w in range(n_workers)]
        self.threads = [threading.Thread(target=self._work, args=(w, seed * 100 + i), daemon=True,
                                         name=f"label-crowd-{i}") for i, w in enumerate(self.workers)]
        self.error: BaseException | None = None

    @property
    def answers(self) -> int:
        return sum(len(w.log.acks) for w in self.workers)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def _work(self, worker: SimulatedWorker, seed: int) -> None:
        import numpy as np

        rng = np.random.default_rng(seed)

        def answer(nxt):
            task = nxt["task"]
            payload = task.get("payload", task)
            true = self.truth(payload["sheet"])
            wrong = [c for c in payload["classes"] if c != true]
            label = true if rng.random() < self.accuracy else rng.choice(wrong)
            return {"answer": {"label": str(label)}, "duration_s": 1.0}

        done: set[int] = set()
        try:
            while not self.stop.is_set():
                batches = [b for b in self.api.get("/api/batches").json()["batches"]
                           if b["status"] == "active" and not b["complete"] and b["id"] not in done]
                if not batches:
                    time.sleep(self.poll_s)
                    continue
                b = batches[0]["id"]
                # known workers: a researcher-signed token per batch (a bare name would be a new
                # anonymous worker every visit, and Dawid-Skene would see visits, not workers)
                worker.worker_token = self.api.worker_links(b, [worker.worker_id])[worker.worker_id]
                visits = worker.log.visits
                if worker.visit_json(b, answer) == 0 and not self.stop.is_set():
                    done.add(b)  # nothing (more) for this worker in this batch
                elif worker.log.visits == visits:
                    done.add(b)  # the server refused the visit
        except (CrowdHttpError, SimulationError) as exc:
            self.error = exc
