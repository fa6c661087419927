"""Short load runs over real HTTP against gunicorn (several worker processes), on SQLite (WAL
file) and on PostgreSQL (fresh schema): simulated workers go through the worker flow until the
batch is complete; then every invariant holds (`sim.load.check_run`)."""

from __future__ import annotations

import pytest

from crowd.client import CrowdClient
from sim.load import GunicornServer, check_run, create_label_batch, run_load


@pytest.mark.slow
def test_load_until_complete_keeps_every_invariant(db_target, tmp_path):
    url, schema = db_target
    server = GunicornServer(url, tmp_path / "srv", schema=schema, workers=3)
    server.start()
    try:
        batch = create_label_batch(server.url, server.api_token, tmp_path / "img", n_images=24, redundancy=3,
                                   tasks_per_visit=4)
        result = run_load(server.url, batch["id"], clients=12, api_token=server.api_token, max_s=150, seed=1)
        status = CrowdClient(server.url, server.api_token).batch_status(batch["id"])
    finally:
        server.stop()
    log = server.log_text()  # gunicorn's access and error log of the whole run
    assert "POST /w/api/submit" in log and server.api_token not in log
    assert not any(a["client_token"] in log for a in result.acks)
    report = check_run(url, batch["id"], result, schema=schema, expect_complete=True, expire_now=True)
    assert report["violations"] == 0, report
    assert status["complete"] and status["judgments"] == 24 * 3 == report["judgments"]
    assert report["acknowledged"] == 72 and report["stored_not_acknowledged"] == 0 and report["live_leases"] == 0
    s = result.summary()
    assert s["server_errors"] == 0 and s["errors"] == [] and result.status[201] == 72
    # 12 clients ran concurrently: several distinct workers judged the batch, none saw a task twice
    assert len({a["worker"] for a in result.acks}) >= 18


@pytest.mark.slow
def test_load_for_a_fixed_time_stops_cleanly(tmp_path):
    url = f"sqlite:///{tmp_path / 'argus.db'}"
    with GunicornServer(url, tmp_path / "srv", workers=2) as server:
        batch = create_label_batch(server.url, server.api_token, tmp_path / "img", n_images=200, redundancy=5)
        result = run_load(server.url, batch["id"], clients=6, duration_s=4, until_complete=False, seed=2)
    report = check_run(url, batch["id"], result)
    assert report["violations"] == 0, report
    assert 0 < report["judgments"] == report["acknowledged"] < 1000
    assert report["live_leases"] == 0  # a client stops between tasks, never holding a lease
