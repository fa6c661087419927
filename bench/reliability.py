"""Reliability benchmark: long load and crash runs of the crowd task server over real HTTP
(gunicorn, several worker processes) on SQLite and PostgreSQL, with the invariant check at the
end of every run (sim/load.py).

    python bench/reliability.py [--quick] [--minutes 5] [--clients 64] [--kills 30]
                                [--backends sqlite,postgres]

Per backend:
1. `load`: `--clients` simulated workers for `--minutes` minutes on a batch too large to finish;
2. `crash`: the same workers while a chaos thread SIGKILLs gunicorn workers and (every 4th kill)
   the master, `--kills` kills in all, 6 % of leases abandoned (10 s lease), until the batch is
   complete; then the abandoned leases must have come back.
After each run: every acknowledged judgment stored exactly once, R judgments from R distinct
workers per task, no worker saw a task twice, no leaked lease, no 5xx (violations = 0).

Prints one JSON line per figure and writes bench/results/reliability.json (requests,
judgments, kills, invariant violations). `--quick`: 1 minute, 16 clients, 10 kills.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG_URL = os.environ.get("ARGUS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch_device"] = "cuda" if torch.cuda.is_available() else "cpu"
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["torch_device"] = "n/a"
    return info


def _target(backend: str, tmp: Path):
    from sqlalchemy import create_engine, text

    if backend == "sqlite":
        return f"sqlite:///{tmp / 'argus.db'}", None, lambda: None
    schema = f"argus_rel_{uuid.uuid4().hex[:8]}"
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop():
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()

    return PG_URL, schema, drop


def run_one(backend: str, scenario: str, args) -> dict:
    from sim.load import Chaos, GunicornServer, check_run, create_label_batch_db, run_load

    tmp = Path(tempfile.mkdtemp(prefix=f"argus_rel_{backend}_{scenario}_"))
    url, schema, drop = _target(backend, tmp)
    server = GunicornServer(url, tmp / "srv", schema=schema, workers=args.workers)
    chaos = None
    try:
        server.start()
        if scenario == "load":
            # far more work than the run can do: the clients never run dry
            n_tasks = max(500, int(args.clients * args.minutes * 60))
            batch = {"id": create_label_batch_db(url, tmp / "img", n_tasks=n_tasks, schema=schema, redundancy=3,
                                                 tasks_per_visit=5)}
            result = run_load(server.url, batch["id"], clients=args.clients, duration_s=args.minutes * 60,
                              until_complete=False, seed=args.seed, progress=True)
        else:
            batch = {"id": create_label_batch_db(url, tmp / "img", n_tasks=args.crash_tasks, schema=schema,
                                                 redundancy=3, tasks_per_visit=4, lease_seconds=10)}
            chaos = Chaos(server, kills=args.kills, interval_s=(0.5, 3.0), master_every=4, seed=args.seed)
            result = run_load(server.url, batch["id"], clients=args.clients, api_token=server.api_token,
                              abandon_rate=0.06, max_s=args.minutes * 60 + 600, seed=args.seed, chaos=chaos,
                              progress=True)
    finally:
        server.stop()
    report = check_run(url, batch["id"], result, schema=schema, expect_complete=(scenario == "crash"),
                              expire_now=True)
    drop()
    s = result.summary()
    out = {"backend": backend, "scenario": scenario, "clients": args.clients, "gunicorn_workers": args.workers,
           "seconds": s["seconds"], "requests": s["requests"], "requests_per_s": s["requests_per_s"],
           "judgments": report["judgments"], "acknowledged": report["acknowledged"],
           "duplicate_acks_returned": s["duplicates_acknowledged"], "retries_after_lost_answers": s["retries"],
           "abandoned_leases": s["abandoned_leases"], "tasks": report["tasks"],
           "tasks_complete": report["tasks_complete"], "kills": chaos.n_kills if chaos else 0,
           "master_kills": sum(e["kind"] == "master" and e["pid"] is not None for e in chaos.events) if chaos else 0,
           "server_restarts": server.starts - 1, "invariant_violations": report["violations"],
           "violations_by_kind": report["by_kind"], "client_errors": s["errors"]}
    if chaos is not None and chaos.error is not None:
        out["chaos_error"] = repr(chaos.error)
        out["invariant_violations"] += 1
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 minute, 16 clients, 10 kills")
    ap.add_argument("--minutes", type=float, default=None, help="load duration per backend (default 5)")
    ap.add_argument("--clients", type=int, default=None, help="simulated workers (default 64)")
    ap.add_argument("--kills", type=int, default=None, help="SIGKILLs in the crash run (default 30)")
    ap.add_argument("--crash-tasks", type=int, default=None, help="tasks in the crash batch (R=3)")
    ap.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--scenarios", default="load,crash")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", default="", help="appended to the result's note")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "reliability.json"))
    args = ap.parse_args(argv)
    quick = args.quick
    args.minutes = args.minutes if args.minutes is not None else (1.0 if quick else 5.0)
    args.clients = args.clients if args.clients is not None else (16 if quick else 64)
    args.kills = args.kills if args.kills is not None else (10 if quick else 30)
    args.crash_tasks = args.crash_tasks if args.crash_tasks is not None else (120 if quick else 600)

    figures = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        for scenario in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
            fig = run_one(backend, scenario, args)
            figures.append(fig)
            print(json.dumps(fig), flush=True)
    totals = {"requests": sum(f["requests"] for f in figures), "judgments": sum(f["judgments"] for f in figures),
              "kills": sum(f["kills"] for f in figures),
              "invariant_violations": sum(f["invariant_violations"] for f in figures)}
    print(json.dumps({"figure": "totals", **totals}), flush=True)
    result = {
        "bench": "reliability", "machine": machine(), "quick": quick,
        "settings": {"minutes": args.minutes, "clients": args.clients, "kills": args.kills,
                     "crash_tasks": args.crash_tasks, "gunicorn_workers": args.workers, "redundancy": 3},
        "note": ("CPU-only shared machine (2 cores shared with other engineers' jobs); the load generator runs on "
                 "the same cores as gunicorn and the database, so throughput is indicative only. The correctness "
                 "figures (invariant_violations) are what this benchmark is for. " + args.note).strip(),
        "totals": totals, "figures": figures,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if totals["invariant_violations"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
