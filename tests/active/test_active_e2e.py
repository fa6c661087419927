"""A small toy-world pool end to end: real trainer, both oracles, the crowd through the real
server over HTTP with simulated label-answering workers, and the `argus active run` CLI."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from active.oracles import CrowdOracle
from active.pool import ToyWorldPool
from active.runner import run_active

pytestmark = pytest.mark.slow


def _pools():
    return ToyWorldPool(240, seed=0, image_size=16), ToyWorldPool.balanced_test(60, seed=0, image_size=16)


def test_crowd_oracle_through_the_real_server(tmp_path, crowd_server, simulated_workers):
    pool, test = _pools()
    truth = lambda sheet: pool.classes[pool.label(int(sheet.split("-")[1]))]  # noqa: E731
    oracle = CrowdOracle(crowd_server["url"], crowd_server["token"], redundancy=3, timeout_s=60, poll_s=0.1,
                         media_dir=tmp_path / "media", progress=False, batch_options={"visits_per_worker": 100})
    with simulated_workers(crowd_server["url"], crowd_server["token"], truth, n_workers=3, accuracy=0.85, seed=1) as crowd:
        hist = run_active(tmp_path / "run", pool, test, "day", strategy="margin", train_method="erm", rounds=1,
                          budget=12, initial_size=24, epochs=1, device="cpu", batch_size=64, oracle=oracle,
                          progress=False)
    assert crowd.answers == 3 * (24 + 12)  # exactly R judgments per item, no more
    # the server knows three workers, not one anonymous worker per visit
    assert {w["worker"] for b in oracle.batches for w in oracle.client.batch_workers(b)} == {"sim0", "sim1", "sim2"}
    assert [r["n_labelled"] for r in hist] == [24, 36]
    assert len(oracle.batches) == 2
    ledger = pd.read_csv(tmp_path / "run" / "ledger.csv")
    assert len(ledger) == 36 and set(ledger["oracle"]) == {"crowd"}
    assert ledger["agreement"].between(0.333, 1).all()  # 3 judgments: 1/3, 2/3 or 1 agree (4 decimals)
    info = \
        json.loads((tmp_path / "media" / "round1" / "round.json").read_text())
    assert info["judgments"] == 36 and not info["timed_out"] and info["label_accuracy"] >= 0.75
    assert hist[0]["oracle_agreement"] == pytest.approx(info["agreement"])
    # Dawid-Skene labels agree with the truth far above the 0.85 single-worker rate on most items
    truth_ids = np.asarray([pool.label(int(i)) for i in ledger["index"]])
    got = np.asarray([pool.classes.index(c) for c in ledger["label"]])
    assert (got == truth_ids).mean() >= 0.8


def test_crowd_timeout_returns_unlabelled_items(tmp_path, crowd_server):
    pool, _ = _pools()
    oracle = CrowdOracle(crowd_server["url"], crowd_server["token"], redundancy=2, timeout_s=0.3, poll_s=0.1,
                         media_dir=tmp_path / "media", progress=False)
    res = oracle.label(pool, np.array([3, 5]), 0)  # nobody works: all items come back unlabelled
    assert res.labels.tolist() == [-1, -1] and res.info["timed_out"] and res.info["judgments"] == 0
    status = oracle.client.batch_status(oracle.batches[0])
    assert status["status"] == "closed"


def test_cli_run_with_simulated_oracle_and_resume(tmp_path):
    from argus.cli import cli

    args = ["active", "run", "--pool-size", "240", "--test-size", "60", "--image-size", "16", "--strategy", "coreset",
            "--train-method", "center-distance", "--rounds", "1", "--budget", "10", "--initial", "20", "--epochs", "1",
            "--device", "cpu", "--batch-size", "64", "--label-noise", "0.1", "--out", str(tmp_path / "run"), "--quiet"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "| round | n_labelled |" in res.output
    for name in ("history.csv", "table.md", "curve.png", "ledger.csv", "state.json", "summary.json"):
        assert (tmp_path / "run" / name).exists(), name
    hist = pd.read_csv(tmp_path / "run" / "history.csv")
    assert hist["n_labelled"].tolist() == [20, 30]
    assert {"acc_day", "acc_night", "acc_fog"} <= set(hist.columns)
    # running again with one more round resumes (state kept) rather than starting over
    res = CliRunner().invoke(cli, [a if a != "1" or i != args.index("--rounds") + 1 else "2" for i, a in enumerate(args)])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "run" / "history.csv")["n_labelled"].tolist() == [20, 30, 40]
    assert len(pd.read_csv(tmp_path / "run" / "ledger.csv")) == 40
