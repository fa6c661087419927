"""Crash recovery: SIGKILL gunicorn workers and the master at random moments during load
(>= 10 kills), restart, continue; some simulated workers also walk away holding a lease. At the
end every acknowledged judgment is stored once, every task has exactly R judgments from R
distinct workers, and the abandoned leases came back to the queue after expiry."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crowd.db import Database, make_engine
from sim.load import Chaos, GunicornServer, check_run, create_label_batch, run_load
from crowd.models import Assignment, AssignmentStatus


@pytest.mark.slow
def test_sigkill_workers_and_master_during_load_loses_nothing(db_target, tmp_path):
    url, schema = db_target
    server = GunicornServer(url, tmp_path / "srv", schema=schema, workers=3)
    server.start()
    try:
        batch = create_label_batch(server.url, server.api_token, tmp_path / "img", n_images=40, redundancy=3,
                                   tasks_per_visit=4, lease_seconds=10)
        chaos = Chaos(server, kills=10, interval_s=(0.3, 1.2), master_every=4, seed=7)
        result = run_load(server.url, batch["id"], clients=10, api_token=server.api_token, abandon_rate=0.06,
                          max_s=240, seed=3, chaos=chaos)
    finally:
        server.stop()
    assert chaos.error is None, chaos.error
    kinds = [e["kind"] for e in chaos.events if e["pid"] is not None]
    assert len(kinds) >= 10 and kinds.count("master") >= 2, chaos.events
    assert server.starts >= 3  # restarted after each master kill

    report = check_run(url, batch["id"], result, schema=schema, expect_complete=True, expire_now=True)
    assert report["violations"] == 0, report
    assert report["tasks_complete"] == 40 and report["judgments"] == 120
    assert report["stored_not_acknowledged"] == 0  # lost answers were retried until acknowledged
    s = result.summary()
    assert s["errors"] == [] and s["server_errors"] == 0, s
    assert s["abandoned_leases"] >= 1
    db = Database(make_engine(url, schema=schema))
    try:
        with db.reading() as session:
            expired = session.scalar(select(func.count(Assignment.id)).where(
                Assignment.batch_id == batch["id"], Assignment.status == AssignmentStatus.expired))
    finally:
        db.engine.dispose()
    # every abandoned lease ran out and its task went back to the queue (all tasks are complete)
    assert expired >= s["abandoned_leases"]
