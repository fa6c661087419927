"""Simulations and harnesses: simulated crowd workers over real HTTP, the crowd server on a
local port, load and crash runs, and simulated judgment frames.

Used by `argus demo`, the tests and the benchmarks; never imported by a product package
(`crowd`, `analysis`, `explain`, `training`, `active`, `templates`; tests/test_import_rules.py
checks it). Nothing here makes a real secret: tokens come from `crowd.tokens`.

- `sim.server`: `LocalServer`, the crowd app on a free 127.0.0.1 port (werkzeug thread, SQLite);
- `sim.worker`: `SimulatedWorker`, the one simulated HTTP worker (the worker JSON flow and the
  worker pages), and `LabelCrowd`, label-answering workers that poll for open batches;
- `sim.truth`: `GroundTruth`, what a careful person would answer on a toy-world sheets folder;
- `sim.crowd`: worker models (reliable, sloppy, spammer, adversarial) and `run_crowd`, a
  simulated crowd through the worker pages;
- `sim.load`: gunicorn as a subprocess, load runs, chaos (SIGKILL), `check_run`;
- `sim.frames`: `simulate_crowd`, vectorised judgment frames for aggregator tests and benchmarks;
- `sim.crowd_judgments`: simulated exports with worker types and gold, for the worker-quality model;
- `sim.checks`: the demo's checks against the simulated truth.
"""
