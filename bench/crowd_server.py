"""Crowd server benchmark: submit throughput and latency under 32 concurrent HTTP clients against
gunicorn with 4 workers, on SQLite and on PostgreSQL, as a ratio to a hello-world endpoint
(`/health`) on the same gunicorn in the same run. Afterwards the database is checked: zero lost
and zero duplicate judgments, exactly R distinct workers per completed task, no repeats.

    python bench/crowd_server.py [--quick] [--backends sqlite,postgres]

Prints one JSON line per figure and writes bench/results/crowd_server.json.
Setup (not timed): each client opens one MTurk-style visit per task it will do and leases it, so
the timed phase is pure submission (`POST /w/api/submit`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.load import GunicornServer  # noqa: E402

SHEETS = ROOT / "tests" / "crowd" / "fixtures" / "sheets"
PG_URL = os.environ.get("ARGUS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TOKEN = "bench-token"
R = 3
ROUNDS = 3


def _pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch_device"] = "cuda" if torch.cuda.is_available() else "cpu"
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["torch_device"] = "n/a"
    return info


def _hammer(fn, jobs: list, clients: int):
    """Run fn(job) for every job over `clients` threads; returns (latencies_s, wall_s, results)."""
    lat, results = [], []
    lock = threading.Lock()
    chunks = [jobs[i::clients] for i in range(clients)]

    def run(chunk):
        session = requests.Session()
        mine, res = [], []
        for job in chunk:
            t0 = time.perf_counter()
            res.append(fn(session, job))
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)
            results.extend(res)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, chunks))
    return lat, time.perf_counter() - t0, results


def bench_backend(backend: str, clients: int, per_client: int, hello_per_client: int) -> list[dict]:
    from sqlalchemy import create_engine, func, select, text

    from crowd import service as S
    from crowd.db import Database, make_engine, upgrade
    from crowd.models import Judgment

    tmp = Path(tempfile.mkdtemp(prefix=f"argus_bench_{backend}_"))
    env = {"ARGUS_SECRET_KEY": secrets.token_hex(16), "ARGUS_AUTO_INIT_DB": "false",
           # the setup leases every task before the timed submissions: 32 clients each hold many
           # leases at once from one address, which the per-worker/address caps would refuse
           "ARGUS_MAX_LEASES_PER_WORKER": "0", "ARGUS_MAX_LEASES_PER_ADDRESS": "0",
           "ARGUS_LEASE_RATE_PER_WORKER": "0", "ARGUS_LEASE_RATE_PER_ADDRESS": "0"}
    schema = None
    if backend == "sqlite-full":  # the power-loss-safe setting (the default): one fsync per commit
        env["ARGUS_SQLITE_SYNCHRONOUS"] = "FULL"
    elif backend == "sqlite":
        env["ARGUS_SQLITE_SYNCHRONOUS"] = "NORMAL"
    if backend.startswith("sqlite"):
        url = f"sqlite:///{tmp / 'bench.db'}"
    else:
        url, schema = PG_URL, f"argus_bench_{uuid.uuid4().hex[:8]}"
        with create_engine(PG_URL).begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(url, schema=schema)
    upgrade(engine)
    server = GunicornServer(url, tmp, schema=schema, workers=4, api_token=TOKEN, extra_env=env, access_log=False)
    server.start()
    figures = []
    try:
        n_submits = clients * per_client
        n_tasks = -(-n_submits // R)
        images = [{"id": f"i{i}", "image": str(SHEETS / "images" / f"s{1 + i % 3}.png")} for i in range(n_tasks)]
        r = requests.post(server.url + "/api/batches", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60,
                          json={"images": images, "classes": ["apple", "banana", "cherry"], "redundancy": R,
                                "tasks_per_visit": 1})
        r.raise_for_status()
        batch = r.json()["id"]

        def lease(session, job):  # setup, not timed: one MTurk-style visit per task
            client, k = job
            start = session.post(server.url + "/w/api/start", timeout=60, json={
                "batch": batch, "workerId": f"W{client}", "assignmentId": f"A{client}-{k}", "hitId": "H",
                "turkSubmitTo": "https://workersandbox.mturk.com"}).json()
            session.post(server.url + "/w/api/consent", json={"visit_token": start["visit_token"]}, timeout=60)
            nxt = session.post(server.url + "/w/api/next", json={"visit_token": start["visit_token"]}, timeout=60).json()
            return nxt.get("assignment_token")

        _, _, tokens = _hammer(lease, [(c, k) for c in range(clients) for k in range(per_client)], clients)
        tokens = [t for t in tokens if t]
        assert len(tokens) == n_submits, f"leased {len(tokens)} of {n_submits}"

        def hello(session, _):
            resp = session.get(server.url + "/health", timeout=60)
            assert resp.status_code == 200
            return None

        failures = []

        def submit(session, atok):
            ctok = secrets.token_hex(12)
            resp = session.post(server.url + "/w/api/submit", timeout=60, json={
                "assignment_token": atok, "client_token": ctok, "answer": {"label": "apple"}, "duration_s": 3.2})
            if resp.status_code == 201:
                return ctok, resp.json()["judgment"]
            failures.append(resp.status_code)
            return None

        # Alternate short hello and submit rounds so that load from other jobs on a shared
        # machine hits both sides of the ratio alike.
        h_lat, s_lat, h_wall, s_wall, results = [], [], 0.0, 0.0, []
        hello_jobs = list(range(clients * hello_per_client))
        for r in range(ROUNDS):
            lat, wall, _ = _hammer(hello, hello_jobs[r::ROUNDS], clients)
            h_lat += lat
            h_wall += wall
            lat, wall, res = _hammer(submit, tokens[r::ROUNDS], clients)
            s_lat += lat
            s_wall += wall
            results += res
        acked = dict(r for r in results if r)
        hello_rps = len(h_lat) / h_wall
        submit_rps = len(s_lat) / s_wall
        common = {"backend": backend, "clients": clients, "gunicorn_workers": 4}
        figures += [
            {**common, "figure": "hello_world_rps", "value": round(hello_rps, 1), "unit": "req/s",
             "p50_ms": round(1000 * _pct(h_lat, 0.5), 2), "p99_ms": round(1000 * _pct(h_lat, 0.99), 2),
             "requests": len(h_lat)},
            {**common, "figure": "submit_rps", "value": round(submit_rps, 1), "unit": "judgments/s",
             "p50_ms": round(1000 * _pct(s_lat, 0.5), 2), "p99_ms": round(1000 * _pct(s_lat, 0.99), 2),
             "requests": len(s_lat), "failed": len(failures)},
            {**common, "figure": "submit_vs_hello_ratio", "value": round(submit_rps / hello_rps, 3), "unit": "ratio",
             "target": ">= 0.40"},
            {**common, "figure": "submit_p99_ms", "value": round(1000 * _pct(s_lat, 0.99), 2), "unit": "ms",
             "target": "<= 100"},
        ]
        # invariants, read straight from the database
        db = Database(engine)
        with db.reading() as s:
            stored = dict(s.execute(select(Judgment.client_token, Judgment.id).where(Judgment.batch_id == batch)).all())
            lost = sum(1 for tok, jid in acked.items() if stored.get(tok) != jid)
            dup = sum(n - 1 for (n,) in s.execute(select(func.count(Judgment.id)).where(Judgment.batch_id == batch)
                                                 .group_by(Judgment.assignment_id)).all())
            per_task = s.execute(select(func.count(Judgment.id), func.count(func.distinct(Judgment.worker_id)))
                                 .where(Judgment.batch_id == batch).group_by(Judgment.task_id)).all()
            complete_ok = all(n == w == R for n, w in per_task if n >= R)
            inv = S.check_invariants(s, batch)
        figures.append({**common, "figure": "invariants", "acknowledged": len(acked), "stored": len(stored),
                        "lost": lost, "duplicates": dup, "unacknowledged_failures": len(failures),
                        "completed_tasks": sum(1 for n, _ in per_task if n >= R),
                        "exactly_R_distinct_per_completed_task": complete_ok, **inv})
        assert lost == 0 and dup == 0 and complete_ok and set(inv.values()) == {0} and len(stored) == len(acked), figures[-1]
    finally:
        server.stop()
        engine.dispose()
        if schema:
            with create_engine(PG_URL).begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    return figures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests per client")
    ap.add_argument("--backends", default="sqlite,sqlite-full,postgres",
                    help="sqlite (WAL, synchronous=NORMAL), sqlite-full (synchronous=FULL, the default), postgres")
    ap.add_argument("--clients", type=int, default=32)
    args = ap.parse_args(argv)
    per_client, hello_per_client = (9, 15) if args.quick else (30, 60)
    out = {"bench": "crowd_server", "machine": _machine(), "quick": args.quick,
           "note": ("CPU-only shared machine (2 cores shared with other engineers' jobs); load generator "
                    "(Python threads) runs on the same cores as gunicorn. Ratios are measured side by side "
                    "in one run; absolute numbers are indicative only."),
           "figures": []}
    for backend in args.backends.split(","):
        for fig in bench_backend(backend, args.clients, per_client, hello_per_client):
            print(json.dumps(fig), flush=True)
            out["figures"].append(fig)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "crowd_server.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
