"""Concurrency over real HTTP (werkzeug server in a thread, requests from client threads), on
SQLite and PostgreSQL: racing workers and racing retries never break the rules, and every
acknowledged submission is stored exactly once."""

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from crowd import service as S
from crowd.db import get_database
from crowd.models import Judgment

pytestmark = pytest.mark.slow
R = 3


def _image_batch(base, h, sheets_dir, n=18, **kw):
    images = [{"id": f"i{i}", "image": str(sheets_dir / "images" / f"s{1 + i % 3}.png")} for i in range(n)]
    body = {"images": images, "classes": ["apple", "banana", "cherry"], "redundancy": R, "tasks_per_visit": n, **kw}
    r = requests.post(f"{base}/api/batches", json=body, headers=h.AUTH, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_racing_workers_keep_every_rule(app, live_server, h, sheets_dir):
    batch = _image_batch(live_server, h, sheets_dir)
    acked: dict[str, int] = {}
    lock = threading.Lock()

    def crowd_member(i):
        session = requests.Session()
        w = h.WorkerClient(session, batch, f"w{i}", base=live_server).start()
        seen = []
        while not (n := w.next())["done"]:
            seen.append(n["task"]["id"])
            token = secrets.token_hex(10)
            status, data = w.submit(n["assignment_token"], {"label": "apple"}, client_token=token)
            assert status == 201, data
            if i % 3 == 0:  # a client that retries after a lost response
                status2, data2 = w.submit(n["assignment_token"], {"label": "banana"}, client_token=token)
                assert status2 == 200 and data2["judgment"] == data["judgment"]
            with lock:
                acked[token] = data["judgment"]
        return seen

    with ThreadPoolExecutor(10) as pool:
        per_worker = list(pool.map(crowd_member, range(10)))
    assert all(len(s) == len(set(s)) for s in per_worker)  # nobody saw a task twice
    assert sum(map(len, per_worker)) == 18 * R
    db = get_database(app)
    with db.reading() as s:
        stored = dict(s.execute(select(Judgment.client_token, Judgment.id)).all())
        assert stored == acked  # every acknowledged submission stored, exactly once
        per_task = s.execute(select(func.count(Judgment.id), func.count(func.distinct(Judgment.worker_id)))
                             .group_by(Judgment.task_id)).all()
        assert sorted(per_task) == [(R, R)] * 18
        assert set(S.check_invariants(s, batch).values()) == {0}
        assert S.batch_status(s, batch)["active_leases"] == 0


def test_racing_retries_of_one_assignment_store_one_judgment(app, live_server, h, sheets_dir):
    batch = _image_batch(live_server, h, sheets_dir, n=1)
    w = h.WorkerClient(requests.Session(), batch, "double-clicker", base=live_server).start()
    n = w.next()
    tokens = ["same-token-xyz"] * 6 + [f"other-token-{i}" for i in range(6)]
    barrier = threading.Barrier(len(tokens))

    def fire(token):
        barrier.wait()
        return w.submit(n["assignment_token"], {"label": "cherry"}, client_token=token)

    with ThreadPoolExecutor(len(tokens)) as pool:
        results = list(pool.map(fire, tokens))
    assert {status for status, _ in results} <= {200, 201}
    assert [status for status, _ in results].count(201) == 1
    assert len({data["judgment"] for _, data in results}) == 1
    with get_database(app).reading() as s:
        assert s.scalar(select(func.count(Judgment.id))) == 1


def test_one_worker_in_many_tabs_leases_distinct_tasks(app, live_server, h, sheets_dir):
    """One MTurk worker holds several assignments of a batch (one visit each) and leases in all of
    them at once: every lease succeeds and no two visits get the same task. (The PostgreSQL race
    this guards against showed under gunicorn's processes in bench/crowd_server.py; threads in one
    process rarely hit its window.)"""
    app.config["MAX_LEASES_PER_WORKER"] = 6  # the race needs the cap of one lease per worker lifted
    batch = _image_batch(live_server, h, sheets_dir, n=8)
    tabs = [h.WorkerClient(requests.Session(), batch, "many-tabs", base=live_server).start(
        workerId="A1MANYTABS", assignmentId=f"ASSIGN{i}", hitId="HIT1", turkSubmitTo="https://workersandbox.mturk.com")
        for i in range(6)]
    assert len({tab.token for tab in tabs}) == len(tabs)
    barrier = threading.Barrier(len(tabs))

    def lease(tab):
        barrier.wait()
        return tab.next()

    with ThreadPoolExecutor(len(tabs)) as pool:
        leases = list(pool.map(lease, tabs))
    tasks = [n["task"]["id"] for n in leases if not n["done"]]
    assert len(tasks) == len(tabs) and len(set(tasks)) == len(tasks)
    with get_database(app).reading() as s:
        assert set(S.check_invariants(s, batch).values()) == {0}
