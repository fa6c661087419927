"""Fixtures for the active-learning tests: small pools, a fast train function, the real crowd
server on a local port, and simulated label-answering workers talking to it over HTTP."""

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


@pytest.fixture
def crowd_server(tmp_path):
    """The real Argus crowd app served over HTTP on 127.0.0.1 (threaded werkzeug server)."""
    from sim.server import LocalServer

    with LocalServer(tmp_path, api_token="tok", config={"TESTING": True, "SQLITE_SYNCHRONOUS": "NORMAL"}) as server:
        yield {"url": server.url, "token": server.api_token}


@pytest.fixture
def simulated_workers():
    """`sim.worker.LabelCrowd`: label-answering simulated workers that poll for open batches."""
    from sim.worker import LabelCrowd

    return LabelCrowd
