"""Test helpers: a tiny label batch and simulated MTurk workers that do real HTTP.

A simulated worker accepts a HIT on the fake MTurk, opens the ExternalQuestion URL with
MTurk's parameters on the real Argus server, records consent, does its tasks through the
worker JSON API, closes the visit and POSTs the returned `externalSubmit` form to the fake.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from pathlib import Path

import requests
from PIL import Image
from werkzeug.serving import WSGIRequestHandler, make_server


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


def serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def label_batch(db, folder: Path, n_images: int = 6, redundancy: int = 2, tasks_per_visit: int = 3,
                gold_rate: float = 0.34, reward_cents: int = 50, exclude_batches=(), n_gold: int = 1) -> int:
    """A `label` batch over `n_images` tiny images; the first `n_gold` are also gold tasks
    whose answer is "cat" (when `gold_rate` > 0). Returns the batch id."""
    from crowd import service as S

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_images):
        p = folder / f"img{i}.png"
        Image.new("RGB", (8, 8), (30 * i, 0, 0)).save(p)
        paths.append(str(p))
    with db.transaction() as s:
        batch = S.create_label_batch(s, paths, ["cat", "dog"], redundancy=redundancy, gold_rate=gold_rate,
                                     tasks_per_visit=tasks_per_visit, reward_cents=reward_cents,
                                     exclude_batches=list(exclude_batches),
                                     gold=[{"sheet": f"img{i}", "answer": {"label": "cat"}} for i in range(n_gold)]
                                     if gold_rate else None)
        return batch.id


def do_assignment(fake, hit_id: str, worker: str, server: str, good: bool = True, submit: bool = True) -> dict:
    """One worker's whole MTurk assignment. `good` workers answer "cat" (right on gold),
    others "dog". Returns {"assignment_id", "tasks", "submit_status"}."""
    url = fake.accept(hit_id, worker)
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert set(params) >= {"assignmentId", "hitId", "workerId", "turkSubmitTo"}
    resp = requests.get(url, allow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text
    token = re.search(r"/w/v/([^/]+)/", resp.headers["Location"]).group(1)
    requests.post(f"{server}/w/api/consent", json={"visit_token": token}, timeout=10).raise_for_status()
    n = 0
    while True:
        nxt = requests.post(f"{server}/w/api/next", json={"visit_token": token}, timeout=10).json()
        if nxt["done"]:
            break
        body = {"assignment_token": nxt["assignment_token"], "client_token": f"sim-{worker}-{nxt['assignment']}",
                "answer": {"label": "cat" if good else "dog"}, "duration_s": 2.5}
        r = requests.post(f"{server}/w/api/submit", json=body, timeout=10)
        assert r.status_code == 201, r.text
        n += 1
    fin = requests.post(f"{server}/w/api/finish", json={"visit_token": token}, timeout=10).json()
    out = {"assignment_id": params["assignmentId"], "tasks": n, "submit_status": None}
    if submit:
        sub = fin["external_submit"]
        out["submit_status"] = requests.post(sub["url"], data=sub["fields"], timeout=10).status_code
    return out
