"""Load and crash harness for the crowd task server: gunicorn as a subprocess, simulated
workers over real HTTP, a chaos thread that SIGKILLs gunicorn workers and the master, and the
invariant check that proves nothing was lost.

Used by `tests/crowd/reliability/` (short runs) and `bench/reliability.py` (long runs).

    server = GunicornServer(db_url, schema=None, workdir=tmp, workers=3)
    server.start()
    batch = create_label_batch(server.url, server.api_token, image_dir, n_images=40, redundancy=3)
    result = run_load(server.url, batch["id"], clients=16, duration_s=30)   # or until complete
    report = check_run(db_url, batch["id"], result, schema=None)
    assert report["violations"] == 0

Each load client (`LoadClient`) is a thread of `sim.worker.SimulatedWorker` visits, a fresh
worker id each, through the worker JSON flow (`start -> consent -> next/submit ... -> finish`);
it logs every lease it was handed and every submission the server acknowledged (HTTP 201, or 200
`duplicate` for a retry), and retries a request whose answer was lost (connection reset while a
gunicorn process died) with the *same* client token, exactly as `worker.js` does. `check_run`
then compares those logs with the database, on top of the server's own `check_invariants`.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

from crowd.client import CrowdClient, CrowdHttpError, RetryPolicy, ServerUnreachable
from crowd.serving import THREADS, gunicorn_command
from crowd.tokens import new_secret
from sim.worker import SimulatedWorker, WorkerLog

#: what a proxy or a restarting server answers; any other 5xx is a server error
GATEWAY_STATUSES = frozenset({502, 503, 504})


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_images(folder: Path, n: int) -> list[str]:
    """Write `n` tiny 8x8 PNGs into `folder`; returns their paths."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i:04d}.png"
        if not p.exists():
            Image.new("RGB", (8, 8), ((37 * i) % 256, (11 * i) % 256, 90)).save(p)
        paths.append(str(p))
    return paths


# ------------------------------------------------------------------------------- the server

class GunicornServer:
    """`gunicorn 'crowd.app:create_app()'` on a free localhost port, configured only through
    `ARGUS_*` environment variables (as in production).

    `kill_worker()` SIGKILLs one worker process (the master forks a new one); `kill_master()`
    SIGKILLs the master and then its workers (a crash of the whole server: machine reboot, OOM
    killer); `start()` again restarts on the same port. stdout/stderr go to `log_path`.
    """

    def __init__(self, database_url: str, workdir: Path, *, schema: str | None = None, workers: int = 3,
                 threads: int = THREADS, port: int | None = None, api_token: str | None = None,
                 extra_env: dict | None = None, timeout_s: int = 30, access_log: bool = True):
        self.database_url, self.schema = database_url, schema
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workers, self.threads, self.timeout_s = workers, threads, timeout_s
        self.access_log = access_log  # off for throughput benchmarks: a log line per request costs
        self.port = port or free_port()
        self.api_token = api_token or new_secret()
        self.extra_env = dict(extra_env or {})
        self.log_path = self.workdir / "gunicorn.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARGUS_")}
        env.update({
            "ARGUS_DATABASE_URL": self.database_url,
            "ARGUS_INSTANCE_PATH": str(self.workdir / "instance"),
            "ARGUS_API_TOKEN": self.api_token,
            "PYTHONUNBUFFERED": "1",
            # the load clients all come from 127.0.0.1 at machine speed
            "ARGUS_MAX_LEASES_PER_ADDRESS": "0", "ARGUS_LEASE_RATE_PER_ADDRESS": "0", "ARGUS_LEASE_RATE_PER_WORKER": "0",
        })
        if self.schema:
            env["ARGUS_DATABASE_SCHEMA"] = self.schema
        env.update(self.extra_env)
        # The repository root on the path, so `crowd` and `templates` import from a checkout.
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def start(self, ready_timeout_s: float = 90.0) -> str:
        """Start gunicorn and wait until `/health` answers; returns the base URL."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("gunicorn is already running")
        # the production command line (`argus crowd serve`), with a short graceful timeout
        cmd = gunicorn_command(f"127.0.0.1:{self.port}", workers=self.workers, threads=self.threads,
                               timeout_s=self.timeout_s, graceful_timeout_s=5,
                               access_log="-" if self.access_log else None,
                               extra=["--log-level", "warning", "--error-logfile", "-"])
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                     cwd=str(self.workdir), start_new_session=True)
        log.close()
        self.starts += 1
        deadline = time.monotonic() + ready_timeout_s
        probe = CrowdClient(self.url, timeout_s=2, retry=RetryPolicy(attempts=0))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text(errors="replace")[-3000:])
            try:
                if probe.get("/health", check=False).status == 200:
                    return self.url
            except ServerUnreachable:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"gunicorn did not answer /health within {ready_timeout_s} s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        """PIDs of the master's live worker processes (from /proc)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as fh:
                return [int(p) for p in fh.read().split()]
        except OSError:
            return []

    def kill_worker(self, rng: random.Random | None = None) -> int | None:
        """SIGKILL one random worker; returns its pid (None when none was running)."""
        pids = self.worker_pids()
        if not pids:
            return None
        pid = (rng or random).choice(pids)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return pid

    def kill_master(self) -> int | None:
        """SIGKILL the master first, then every process of its session (its workers)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        pid = self.proc.pid
        children = self.worker_pids()
        os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(pid, signal.SIGKILL)  # anything else it forked
        except ProcessLookupError:
            pass
        self._wait_port_free()
        return pid

    def _wait_port_free(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", self.port))
                    return
                except OSError:
                    time.sleep(0.05)

    def stop(self) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def create_label_batch(base_url: str, api_token: str, image_dir: Path, *, n_images: int = 40, redundancy: int = 3,
                       tasks_per_visit: int = 4, lease_seconds: int = 900, classes=("cat", "dog"),
                       name: str = "load test") -> dict:
    """Create a `label` batch of `n_images` tiny images through the researcher API; returns
    the batch status dict (`id`, `tasks`, `redundancy`, ...)."""
    images = make_images(image_dir, n_images)
    return CrowdClient(base_url, api_token, timeout_s=60).create_label_batch(
        images, classes, redundancy, name, tasks_per_visit=tasks_per_visit, lease_seconds=lease_seconds)


def create_label_batch_db(database_url: str, image_dir: Path, *, n_tasks: int, schema: str | None = None,
                          n_images: int = 10, redundancy: int = 3, tasks_per_visit: int = 5, lease_seconds: int = 900,
                          classes=("cat", "dog"), name: str = "load test") -> int:
    """Create a `label` batch of `n_tasks` tasks straight through the service layer (no request
    size limit, for long runs); the tasks cycle over `n_images` tiny images. Returns the batch id."""
    from crowd import service as S
    from crowd.db import Database, make_engine, upgrade

    images = make_images(image_dir, n_images)
    items = [{"id": f"t{i:06d}", "image": images[i % n_images]} for i in range(n_tasks)]
    db = Database(make_engine(database_url, schema=schema))
    try:
        upgrade(db.engine)
        with db.transaction() as session:
            batch = S.create_label_batch(session, items, list(classes), name=name, redundancy=redundancy,
                                         tasks_per_visit=tasks_per_visit, lease_seconds=lease_seconds)
            return batch.id
    finally:
        db.engine.dispose()


# ---------------------------------------------------------------------------- the workers

@dataclasses.dataclass
class LoadResult:
    """Merged result of `run_load`: one `sim.worker.WorkerLog` per client plus totals."""

    logs: list
    seconds: float
    batch_id: int

    @property
    def acks(self) -> list:
        return [a for log in self.logs for a in log.acks]

    @property
    def leases(self) -> list:
        return [x for log in self.logs for x in log.leases]

    @property
    def status(self) -> Counter:
        out = Counter()
        for log in self.logs:
            out.update(log.status)
        return out

    @property
    def requests(self) -> int:
        return sum(self.status.values())

    @property
    def server_errors(self) -> int:
        """Responses with a 5xx status other than the gateway-style 502/503/504."""
        return sum(n for code, n in self.status.items() if isinstance(code, int) and code >= 500
                   and code not in GATEWAY_STATUSES)

    def summary(self) -> dict:
        return {"requests": self.requests, "acknowledged": len(self.acks),
                "duplicates_acknowledged": sum(a["duplicate"] for a in self.acks),
                "leases": len(self.leases), "retries": sum(log.retries for log in self.logs),
                "abandoned_leases": sum(log.abandoned for log in self.logs),
                "visits": sum(log.visits for log in self.logs), "server_errors": self.server_errors,
                "seconds": round(self.seconds, 2),
                "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else None,
                "errors": [e for log in self.logs for e in log.errors][:10]}


class LoadClient:
    """One load-test client thread: `SimulatedWorker` visits one after another (a fresh worker
    id `<prefix>-c<client>-v<n>` each) through the JSON flow, answering a random label; with
    `abandon_rate` it walks away holding a lease now and then; `think_s` pauses before answers.
    Requests are retried for up to `give_up_s` seconds (a server that restarts)."""

    def __init__(self, base_url: str, batch_id: int, client: int, stop: threading.Event, *, prefix: str = "lt",
                 seed: int = 0, abandon_rate: float = 0.0, think_s: float = 0.0, give_up_s: float = 120.0,
                 classes=("cat", "dog"), idle_sleep_s: float = 0.3):
        self.base, self.batch_id, self.client, self.stop = base_url, batch_id, client, stop
        self.log = WorkerLog(f"client {client}")
        self.rng = random.Random(seed * 100003 + client)
        self.prefix, self.abandon_rate, self.think_s = prefix, abandon_rate, think_s
        self.classes, self.idle_sleep_s = list(classes), idle_sleep_s
        self.http = CrowdClient(base_url, retry=RetryPolicy(give_up_s=give_up_s, backoff_s=0.05, max_backoff_s=1.0,
                                                            jitter_s=0.05))

    def answer(self, nxt: dict) -> dict | None:
        """A random label; None (walk away holding the lease) with probability `abandon_rate`."""
        if self.abandon_rate and self.rng.random() < self.abandon_rate:
            return None
        if self.think_s:
            time.sleep(self.think_s * self.rng.random())
        return {"answer": {"label": self.rng.choice(self.classes)}, "duration_s": round(self.rng.uniform(1, 20), 2)}

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                worker = SimulatedWorker(self.base, f"{self.prefix}-c{self.client}-v{n}", log=self.log,
                                         client=self.http, stop=self.stop)
                visits = self.log.visits
                got = worker.visit_json(self.batch_id, self.answer)
                n += 1
                if self.log.visits == visits:
                    self.stop.wait(1.0)  # the server refused the visit: wait a little
                elif got == 0 and not self.stop.is_set():
                    time.sleep(self.idle_sleep_s * (0.5 + self.rng.random()))  # nothing for us right now
        except ServerUnreachable as exc:
            self.log.errors.append(str(exc))
        finally:
            self.http.close()


def run_load(base_url: str, batch_id: int, *, clients: int = 8, duration_s: float | None = None,
             until_complete: bool = True, api_token: str | None = None, abandon_rate: float = 0.0,
             think_s: float = 0.0, seed: int = 0, prefix: str = "lt", give_up_s: float = 120.0,
             max_s: float = 600.0, progress: bool = False, chaos=None) -> LoadResult:
    """Run `clients` simulated workers against the server.

    Stops after `duration_s` seconds, or (with `until_complete` and `api_token`) once the batch
    reports complete and `chaos` has done all its kills, whichever comes first; never after more
    than `max_s` seconds. `chaos`
    (a `Chaos`) is started with the load and stopped before the clients finish.
    """
    if duration_s is None and not (until_complete and api_token):
        raise ValueError("give duration_s, or until_complete with api_token")
    stop = threading.Event()
    sims = [LoadClient(base_url, batch_id, i, stop, prefix=prefix, seed=seed, abandon_rate=abandon_rate,
                       think_s=think_s, give_up_s=give_up_s) for i in range(clients)]
    threads = [threading.Thread(target=s.run, name=f"sim-{i}", daemon=True) for i, s in enumerate(sims)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    if chaos is not None:
        chaos.start()
    api = CrowdClient(base_url, api_token, retry=RetryPolicy(attempts=0)) if api_token else None
    bar = None
    if progress:
        from training.progress import progress_bar as tqdm

        bar = tqdm(total=int(duration_s or max_s), desc="load", unit="s")
    try:
        while True:
            time.sleep(0.5)
            elapsed = time.monotonic() - t0
            if bar is not None:
                bar.n = int(elapsed)
                bar.set_postfix(acks=sum(len(s.log.acks) for s in sims), refresh=True)
            if duration_s is not None and elapsed >= duration_s:
                break
            if elapsed >= max_s or not any(t.is_alive() for t in threads):
                break
            if until_complete and api_token and (chaos is None or not chaos.is_alive()):
                try:
                    if api.batch_status(batch_id)["complete"]:
                        break
                except CrowdHttpError:
                    pass  # server restarting
    finally:
        if chaos is not None:
            chaos.stop()
        stop.set()
        for t in threads:
            t.join(timeout=give_up_s + 35)
        if bar is not None:
            bar.close()
    return LoadResult([s.log for s in sims], time.monotonic() - t0, batch_id)


class Chaos(threading.Thread):
    """SIGKILLs gunicorn processes at random moments: `kills` kills in all, one every
    `interval_s` (uniform range) seconds, every `master_every`-th one the master (then the
    server is restarted after `down_s` seconds). `events` records what was killed when."""

    def __init__(self, server: GunicornServer, *, kills: int = 10, interval_s=(0.5, 2.0), master_every: int = 3,
                 down_s: float = 0.3, seed: int = 0):
        super().__init__(name="chaos", daemon=True)
        self.server, self.kills, self.interval_s = server, kills, interval_s
        self.master_every, self.down_s = master_every, down_s
        self.rng = random.Random(seed)
        self.events: list[dict] = []
        self._stop_evt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            for i in range(1, self.kills + 1):
                if self._stop_evt.wait(self.rng.uniform(*self.interval_s)):
                    return
                if self.master_every and i % self.master_every == 0:
                    pid = self.server.kill_master()
                    time.sleep(self.down_s)
                    self.server.start()
                    kind = "master"
                else:
                    pid = self.server.kill_worker(self.rng)
                    kind = "worker"
                self.events.append({"t": round(time.monotonic() - t0, 2), "kind": kind, "pid": pid})
        except BaseException as exc:  # surfaced by the caller through .error
            self.error = exc

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=120)

    @property
    def n_kills(self) -> int:
        return sum(e["pid"] is not None for e in self.events)


# ------------------------------------------------------------------------- the invariants

def check_run(database_url: str, batch_id: int, result: LoadResult | None = None, *,
              schema: str | None = None, expect_complete: bool = False, expire_now: bool = False) -> dict:
    """Check the task server's promises after a load run: the server's own invariants
    (`crowd.service.check_invariants`) plus what only the clients' logs can show.

    Returns counts (every `by_kind` value must be 0; `violations` is their sum) and totals. Checked:
    - `ack_missing`: an acknowledged submission whose judgment is not stored, or stored with a
      different client token / assignment / worker;
    - `ack_twice`: one client token acknowledged with two different judgment ids;
    - `stored_twice`: more than one judgment per client token, per assignment or per (task, worker);
    - `task_over_r` / `task_not_r` (with `expect_complete`): non-gold tasks with more than R
      judgments / not exactly R; `task_repeat_worker`: a task judged twice by one worker (both
      from the server's check, except `task_not_r`);
    - `worker_saw_task_twice`: one worker leased the same task under two assignments (logs and DB);
    - `leaked_leases`: leases still held after they expired (with `expire_now`, the expired
      leases are returned first, as the next lease request would) and counter drift
      (`n_active` vs leased rows, `n_done` vs judgments);
    - `server_errors`: 5xx answers seen by the clients.
    """
    from sqlalchemy import func, select

    from crowd import service as S
    from crowd.db import Database, make_engine
    from crowd.models import Assignment, AssignmentStatus, Batch, Judgment, Task, Worker, utcnow

    db = Database(make_engine(database_url, schema=schema))
    try:
        if expire_now:
            with db.transaction() as s:
                S.expire_leases(s, batch_id)
        with db.reading() as s:
            batch = s.get(Batch, batch_id)
            if batch is None:
                raise ValueError(f"batch {batch_id} not found in {database_url}")
            R = batch.redundancy
            rows = s.execute(select(Judgment.id, Judgment.client_token, Judgment.assignment_id, Judgment.task_id,
                                    Worker.external_id, Task.is_gold)
                             .join(Worker, Worker.id == Judgment.worker_id).join(Task, Task.id == Judgment.task_id)
                             .where(Judgment.batch_id == batch_id)).all()
            tasks = s.execute(select(Task.id, Task.is_gold).where(Task.batch_id == batch_id)).all()
            leased = s.execute(select(Assignment.id, Assignment.expires_at)
                               .where(Assignment.batch_id == batch_id,
                                      Assignment.status == AssignmentStatus.leased)).all()
            repeat_assign = s.scalar(select(func.count()).select_from(
                select(Assignment.task_id, Assignment.worker_id).where(Assignment.batch_id == batch_id)
                .group_by(Assignment.task_id, Assignment.worker_id).having(func.count() > 1).subquery())) or 0
            server_side = S.check_invariants(s, batch_id)
            now = utcnow()
    finally:
        db.engine.dispose()

    by_id = {r.id: r for r in rows}
    v = Counter()
    acks = result.acks if result else []
    token_to_judgment: dict[str, set] = defaultdict(set)
    for a in acks:
        token_to_judgment[a["client_token"]].add(a["judgment"])
        r = by_id.get(a["judgment"])
        if r is None or r.client_token != a["client_token"] or r.assignment_id != a["assignment"] \
                or r.external_id != a["worker"]:
            v["ack_missing"] += 1
    v["ack_twice"] = sum(len(j) > 1 for j in token_to_judgment.values())
    for key in ("client_token", "assignment_id"):
        v["stored_twice"] += sum(n > 1 for n in Counter(getattr(r, key) for r in rows).values())
    per_task = Counter(r.task_id for r in rows)
    v["task_over_r"] = server_side["tasks_over_redundancy"]
    v["task_repeat_worker"] = server_side["repeated_worker"]
    if expect_complete:
        v["task_not_r"] = sum(1 for t in tasks if not t.is_gold and per_task[t.id] != R)
    seen = defaultdict(set)
    for worker, assignment, task in (result.leases if result else []):
        seen[(worker, task)].add(assignment)
    v["worker_saw_task_twice"] = sum(len(a) > 1 for a in seen.values()) + int(repeat_assign)
    grace = timedelta(seconds=1)
    v["leaked_leases"] = sum(1 for _, exp in leased if exp + grace < now) if expire_now else 0
    v["counter_drift"] = server_side["n_done_drift"] + server_side["n_active_drift"]
    v["judgment_without_submitted_assignment"] = server_side["judgment_without_submitted_assignment"]
    v["server_errors"] = result.server_errors if result else 0
    violations = {k: int(v.get(k, 0)) for k in ("ack_missing", "ack_twice", "stored_twice", "task_over_r",
                                                  "task_not_r", "task_repeat_worker", "worker_saw_task_twice",
                                                  "leaked_leases", "counter_drift",
                                                  "judgment_without_submitted_assignment", "server_errors")}
    acked_ids = {a["judgment"] for a in acks}
    return {
        "violations": sum(violations.values()), "by_kind": violations,
        "judgments": len(rows), "acknowledged": len(acked_ids),
        "stored_not_acknowledged": sum(1 for r in rows if r.id not in acked_ids),
        "tasks": sum(1 for t in tasks if not t.is_gold),
        "tasks_complete": sum(1 for t in tasks if not t.is_gold and per_task[t.id] == R),
        "live_leases": len(leased), "redundancy": R,
    }
