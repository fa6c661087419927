"""Wiring for `argus active run` and the experiment: pools, oracle, trainer, loop, outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from active.loop import ActiveLoop, LoopConfig, history_table, plot_history
from active.oracles import CrowdOracle, SimulatedOracle
from active.strategies import get_strategy


def build_pools(data: str | None = None, pool_size: int = 20000, test_size: int = 1800, image_size: int = 32,
                domains: str | dict | None = None, seed: int = 0):
    """`(pool, test_pool, majority_domain)`.

    `data=None`: the lazily rendered toy-world pool (`pool_size` items, training-like domain
    proportions) and a balanced toy-world test split. `data=DIR`: the dataset folder's train split
    is the pool and its test split the test set (domains read for evaluation only).
    """
    if data is None:
        from active.pool import ToyWorldPool
        from training.toyworld import majority_domain

        # no image cache on the pool: it is scored once per round, while the test set is re-read every round
        pool = ToyWorldPool(pool_size, seed=seed, image_size=image_size, domains=domains, cache_size=0)
        test = ToyWorldPool.balanced_test(test_size, seed=seed, image_size=image_size, domains=pool.domains)
        return pool, test, majority_domain(pool.domains)
    from active.pool import DEFAULT_MEAN, DEFAULT_STD, DatasetPool
    from training.datasets import ImageDataset, load_dataset
    from training.evaluate import training_majority_domain

    info = load_dataset(data)
    pools = []
    for split in ("train", "test"):
        ds = ImageDataset(info, split, image_size=image_size, mean=DEFAULT_MEAN, std=DEFAULT_STD, cache=True)
        p = DatasetPool(ds, info.classes, domains=info.domains(split))
        p.image_size, p.mean, p.std = image_size, DEFAULT_MEAN, DEFAULT_STD
        pools.append(p)
    if len(pools[1]) == 0:
        raise ValueError(f"{data}: the test split is empty; per-domain evaluation needs one")
    return pools[0], pools[1], training_majority_domain(info)


def build_oracle(name: str, seed: int = 0, label_noise: float = 0.0, crowd_url: str | None = None,
                 crowd_token: str | None = None, redundancy: int = 3, crowd_timeout: float = 3600.0,
                 media_dir: str | Path = "crowd-media", reward_cents: int = 0, progress: bool = True):
    if name == "simulated":
        return SimulatedOracle(noise=label_noise, seed=seed)
    if name == "crowd":
        if not crowd_url:
            raise ValueError("--oracle crowd needs --crowd-url (the Argus server, e.g. http://127.0.0.1:5000)")
        token = crowd_token or os.environ.get("ARGUS_API_TOKEN")
        return CrowdOracle(crowd_url, token, redundancy=redundancy, timeout_s=crowd_timeout, media_dir=media_dir,
                           reward_cents=reward_cents, seed=seed, progress=progress)
    raise ValueError(f"unknown oracle {name!r}; choose simulated or crowd")


def run_active(out, pool, test_pool, majority_domain, *, strategy: str = "margin", train_method: str = "erm",
               rounds: int = 5, budget: int = 100, initial_size: int = 100, seed: int = 0, retrain: str = "scratch",
               pool_subsample: float | None = None, epochs: int = 8, arch: str = "small-cnn", device: str = "auto",
               batch_size: int = 256, oracle=None, strategy_options: dict | None = None,
               train_options: dict | None = None, progress: bool = True, train_fn=None,
               deadline: float | None = None) -> list[dict]:
    """Run (or resume) one active-learning run into `out`; writes history.csv, table.md, curve.png.
    `deadline` (a `time.time()` value): start no round after it (resume later with the same call)."""
    from active.trainers import TrainerFn

    out = Path(out)
    oracle = oracle or SimulatedOracle(seed=seed)
    strat = get_strategy(strategy, device=device, **(strategy_options or {}))
    if train_fn is None:
        train_fn = TrainerFn(out / "train", method=train_method, epochs=epochs, arch=arch, device=device,
                             progress=False, **(train_options or {}))
    cfg = LoopConfig(rounds=rounds, budget=budget, initial_size=initial_size, seed=seed, retrain=retrain,
                     pool_subsample=pool_subsample, batch_size=batch_size, strategy=strat.name,
                     train_method=train_method, oracle=oracle.name,
                     extra={"epochs": epochs, "arch": arch, **(strategy_options or {}), **(train_options or {})})
    loop = ActiveLoop(pool, test_pool, strat, oracle, train_fn, out, cfg, majority_domain=majority_domain,
                      progress=progress)
    history = loop.run(deadline=deadline)
    (out / "table.md").write_text(history_table(history) + "\n")
    plot_history(history, out / "curve.png", title=f"{strat.name} + {train_method} (seed {seed})")
    (out / "summary.json").write_text(json.dumps({"config": cfg.__dict__, "pool": getattr(pool, "describe", dict)(),
                                                   "history": history}, indent=2, default=_jsonable) + "\n")
    return history


def _jsonable(v):
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return str(v)
