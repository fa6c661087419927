"""Fixtures for the active-learning tests: small pools, a fast train function, the real crowd
server on a local port, and simulated label-answering workers talking to it over HTTP."""

import threading
import time

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from active.pool import DatasetPool


@pytest.fixture(autouse=True)
def _image_cache_in_tmp(tmp_path_factory, monkeypatch):
    # pools render into $ARGUS_CACHE: keep the tests' caches out of the home folder
    monkeypatch.setenv("ARGUS_CACHE", str(tmp_path_factory.getbasetemp() / "argus-cache"))


@pytest.fixture
def blob_pool():
    """60 items, 3 classes, 2 domains (48 'a' / 12 'b'), images = class-coloured noise [3,4,4]."""

    def make(n=60, seed=0):
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % 3
        x = torch.randn(n, 3, 4, 4, generator=g) * 0.8
        x[torch.arange(n), y] += 2.0  # class k brightens channel k
        doms = ["a" if i % 5 else "b" for i in range(n)]
        return DatasetPool(TensorDataset(x, y), classes=["c0", "c1", "c2"], domains=doms)

    return make


class CentroidPredictor:
    """Nearest class centroid on flattened pixels; probs = softmax(-squared distance)."""

    device = torch.device("cpu")

    def __init__(self, centroids):
        self.centroids = centroids

    def __call__(self, x):
        f = x.flatten(1)
        d = torch.cdist(f, self.centroids) ** 2
        return torch.softmax(-d / f.shape[1], 1), f


@pytest.fixture
def centroid_train_fn():
    """A deterministic, instant train_fn; records its calls (for warm-start checks)."""
    calls = []

    def train_fn(pool, indices, labels, *, round, seed, init_state):
        xs = torch.stack([pool[int(i)][0] for i in indices]).flatten(1)
        k = len(pool.classes)
        cents = torch.stack([xs[torch.as_tensor(labels) == c].mean(0) if (labels == c).any() else torch.zeros(xs.shape[1])
                             for c in range(k)])
        calls.append({"round": round, "n": len(indices), "init": init_state, "seed": seed})
        return CentroidPredictor(cents), {"round": round}

    train_fn.calls = calls
    return train_fn


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def crowd_server(tmp_path):
    """The real Argus crowd app served over HTTP on 127.0.0.1 (threaded werkzeug server)."""
    import logging

    from werkzeug.serving import make_server

    from crowd.app import create_app

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request log lines in test output

    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'crowd.db'}", "API_TOKEN": "tok",
                      "SECRET_KEY": "test-secret", "SQLITE_SYNCHRONOUS": "NORMAL"})
    port = _free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{port}", "token": "tok"}
    server.shutdown()
    thread.join(5)


class SimulatedWorkers:
    """Label-answering workers in threads: each polls the API for open batches, works through
    visits over HTTP and answers the truth with probability `accuracy` (else a wrong class)."""

    def __init__(self, url, token, truth, n_workers=3, accuracy=0.9, seed=0):
        import requests

        self.url, self.truth, self.accuracy = url, truth, accuracy
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {token}"
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._work, args=(f"sim{w}", seed * 100 + w), daemon=True)
                        for w in range(n_workers)]
        self.answers = 0

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def _work(self, worker, seed):
        import requests

        rng = np.random.default_rng(seed)
        http = requests.Session()
        done: set[int] = set()
        while not self.stop.is_set():
            batches = [b for b in self.api.get(f"{self.url}/api/batches").json()["batches"]
                       if b["status"] == "active" and not b["complete"] and b["id"] not in done]
            if not batches:
                time.sleep(0.05)
                continue
            b = batches[0]
            v = http.post(f"{self.url}/w/api/start", json={"batch": b["id"], "worker": worker}).json()
            if "visit_token" not in v:
                done.add(b["id"])
                continue
            http.post(f"{self.url}/w/api/consent", json={"visit_token": v["visit_token"]})
            answered = 0
            while not self.stop.is_set():
                nxt = http.post(f"{self.url}/w/api/next", json={"visit_token": v["visit_token"]}).json()
                if nxt.get("done", True):
                    if answered == 0:
                        done.add(b["id"])  # nothing left for this worker in this batch
                    break  # visit full (tasks_per_visit): finish it and start another
                answered += 1
                task = nxt["task"]
                payload = task.get("payload", task)
                classes = payload["classes"]
                true = self.truth(payload["sheet"])
                label = true if rng.random() < self.accuracy else rng.choice([c for c in classes if c != true])
                http.post(f"{self.url}/w/api/submit", json={"assignment_token": nxt["assignment_token"],
                                                              "client_token": f"{worker}-assignment-{nxt['assignment']:06d}",
                                                              "answer": {"label": str(label)}, "duration_s": 1.0})
                self.answers += 1
            http.post(f"{self.url}/w/api/finish", json={"visit_token": v["visit_token"]})


@pytest.fixture
def simulated_workers():
    return SimulatedWorkers
