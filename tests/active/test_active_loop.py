"""The loop: ledger, history, resume, warm start, oracle failures, simulated noise."""

import numpy as np
import pandas as pd
import pytest

from active.loop import ActiveLoop, LoopConfig
from active.oracles import SimulatedOracle
from active.strategies import get_strategy


def _loop(pool, test, train_fn, out, rounds=2, strategy="margin", oracle=None, **cfg):
    config = LoopConfig(rounds=rounds, budget=5, initial_size=10, seed=3, strategy=strategy, **cfg)
    return ActiveLoop(pool, test, get_strategy(strategy, device="cpu"), oracle or SimulatedOracle(seed=3),
                      train_fn, out, config, majority_domain="a", progress=False)


def test_rounds_ledger_and_history(tmp_path, blob_pool, centroid_train_fn):
    pool, test = blob_pool(60, 0), blob_pool(30, 1)
    hist = _loop(pool, test, centroid_train_fn, tmp_path).run()
    assert [r["n_labelled"] for r in hist] == [10, 15, 20]
    assert [c["n"] for c in centroid_train_fn.calls] == [10, 15, 20]
    ledger = pd.read_csv(tmp_path / "ledger.csv")
    assert list(ledger.columns) == ["round", "index", "label", "cost", "oracle", "agreement"]
    assert ledger["round"].tolist() == [0] * 10 + [1] * 5 + [2] * 5
    assert ledger["index"].is_unique and ledger["cost"].sum() == 20 and set(ledger["oracle"]) == {"simulated"}
    # labels bought are the truth (noise 0)
    assert all(pool.classes[pool.label(i)] == lab for i, lab in zip(ledger["index"], ledger["label"]))
    # per-domain evaluation each round; query share of minority domain 'b' is recorded
    assert {"acc_a", "acc_b", "worst_domain_accuracy", "query_minority_share"} <= set(hist[0])
    assert hist[0]["worst_domain_accuracy"] == min(hist[0]["acc_a"], hist[0]["acc_b"])
    assert (tmp_path / "history.csv").exists() and "query_s" in hist[0] and "query_s" not in hist[-1]


def test_margin_queries_exactly_the_smallest_margins(tmp_path, blob_pool, centroid_train_fn):
    pool, test = blob_pool(60, 0), blob_pool(30, 1)
    loop = _loop(pool, test, centroid_train_fn, tmp_path, rounds=1)
    loop.run()
    first = np.sort(loop.labelled[:10])
    pred, _ = centroid_train_fn(pool, first, loop.labels[:10], round=0, seed=0, init_state=None)
    rest = np.setdiff1d(np.arange(60), first)
    import torch

    p = pred(torch.stack([pool[int(i)][0] for i in rest]))[0]
    top2 = torch.topk(p, 2, 1).values
    margin = (top2[:, 0] - top2[:, 1]).numpy()
    expected = rest[np.lexsort((rest, margin))[:5]]
    assert loop.labelled[10:].tolist() == expected.tolist()


def test_resume_continues_and_matches_an_uninterrupted_run(tmp_path, blob_pool, centroid_train_fn):
    pool, test = blob_pool(60, 0), blob_pool(30, 1)
    _loop(pool, test, centroid_train_fn, tmp_path / "a", rounds=1).run()
    n_calls = len(centroid_train_fn.calls)
    resumed = _loop(pool, test, centroid_train_fn, tmp_path / "a", rounds=3)
    assert resumed.next_round == 1  # the finished run's last round made no query: it is redone
    resumed.run()
    assert [c["round"] for c in centroid_train_fn.calls[n_calls:]] == [1, 2, 3]
    full = _loop(pool, test, centroid_train_fn, tmp_path / "b", rounds=3)
    full.run()
    assert resumed.labelled.tolist() == full.labelled.tolist()
    assert len(pd.read_csv(tmp_path / "a" / "ledger.csv")) == 25
    with pytest.raises(ValueError, match="different configuration"):
        _loop(pool, test, centroid_train_fn, tmp_path / "a", rounds=3, strategy="entropy")


def test_warm_start_passes_previous_state(tmp_path, blob_pool, centroid_train_fn):
    pool, test = blob_pool(60, 0), blob_pool(30, 1)
    _loop(pool, test, centroid_train_fn, tmp_path, rounds=2, retrain="warm").run()
    assert [c["init"] for c in centroid_train_fn.calls] == [None, {"round": 0}, {"round": 1}]


def test_items_the_oracle_cannot_label_return_to_the_pool(tmp_path, blob_pool, centroid_train_fn):
    class HalfOracle(SimulatedOracle):
        name = "half"

        def label(self, pool, indices, round):
            res = super().label(pool, indices, round)
            res.labels[1::2] = -1 if round > 0 else res.labels[1::2]
            return res

    pool, test = blob_pool(60, 0), blob_pool(30, 1)
    loop = _loop(pool, test, centroid_train_fn, tmp_path, rounds=1, oracle=HalfOracle(seed=3))
    hist = loop.run()
    assert hist[-1]["n_labelled"] == 10 + 3 and hist[0]["labelled_ok"] == 3
    assert len(pd.read_csv(tmp_path / "ledger.csv")) == 15  # failed purchases are still in the ledger


def test_simulated_noise_is_deterministic_and_changes_the_class(blob_pool):
    pool = blob_pool(60, 0)
    o = SimulatedOracle(noise=0.5, seed=1)
    a, b = o.label(pool, np.arange(60), 0), o.label(pool, np.arange(60), 4)
    assert a.labels.tolist() == b.labels.tolist()
    truth = np.asarray([pool.label(i) for i in range(60)])
    wrong = a.labels != truth
    assert 15 <= wrong.sum() <= 45 and a.info["label_accuracy"] == pytest.approx(1 - wrong.mean())
    with pytest.raises(ValueError, match="label-noise"):
        SimulatedOracle(noise=1.5)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="retrain must be"):
        LoopConfig(retrain="sometimes").check()
    with pytest.raises(ValueError, match="budget must be"):
        LoopConfig(budget=0).check()


def test_a_crash_mid_round_resumes_at_that_round(tmp_path, blob_pool, centroid_train_fn):
    pool, test = blob_pool(60, 0), blob_pool(30, 1)

    def flaky(pool_, idx, labels, *, round, seed, init_state):
        if round == 2 and not flaky.failed:
            flaky.failed = True
            raise RuntimeError("power cut")
        return centroid_train_fn(pool_, idx, labels, round=round, seed=seed, init_state=init_state)

    flaky.failed = False
    with pytest.raises(RuntimeError, match="power cut"):
        _loop(pool, test, flaky, tmp_path / "a", rounds=3).run()
    loop = _loop(pool, test, flaky, tmp_path / "a", rounds=3)
    assert loop.next_round == 2 and len(loop.labelled) == 20  # round 1's query was bought and kept
    hist = loop.run()
    assert [r["round"] for r in hist] == [0, 1, 2, 3]
    full = _loop(pool, test, centroid_train_fn, tmp_path / "b", rounds=3)
    full.run()
    assert loop.labelled.tolist() == full.labelled.tolist()
    assert len(pd.read_csv(tmp_path / "a" / "ledger.csv")) == 25
