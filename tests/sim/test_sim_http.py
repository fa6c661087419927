"""The simulated crowd through the real worker pages of a live server (real HTTP)."""

from __future__ import annotations

import io
from collections import Counter

import pandas as pd
import requests

from analysis.aggregate import DawidSkene, worker_table
from sim.crowd import CrowdMember, WorkerProfile, make_crowd, run_crowd
from sim.truth import GroundTruth


def _batch(url, token, sheets, truth, kinds, redundancy, gold=True, limit=None):
    # six simulated workers answer from the ground truth: one may do several kinds of an image;
    # a fixed order seed keeps the handful of answers per worker (and their accuracy) reproducible
    body = {"sheets_dir": str(sheets), "kinds": kinds, "redundancy": redundancy, "tasks_per_visit": 4,
            "max_arguments": 2, "limit": limit, "visits_per_worker": 1000, "allow_same_image": True, "order_seed": 1}
    if gold:
        body["gold"] = truth.gold(kinds, 1, max_arguments=2, sheets=sorted(truth.sheets)[:limit] if limit else None)
        body["gold_rate"] = 0.2
    r = requests.post(url + "/api/batches", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


def _export(url, token, batch_id):
    r = requests.get(f"{url}/api/batches/{batch_id}/judgments?format=csv", headers={"Authorization": f"Bearer {token}"},
                     timeout=30)
    assert r.status_code == 200
    return pd.read_csv(io.StringIO(r.text), dtype={"label": str})


def test_crowd_completes_every_kind_through_the_pages(world, server):
    url, token = server
    truth = GroundTruth(world["sheets"], world["data"], tolerance_px=0)
    kinds = ["rate_arguments", "mark_rationale", "name_feature", "label"]
    batch = _batch(url, token, world["sheets"], truth, kinds, redundancy=3, limit=8)
    crowd = make_crowd(6, {"reliable": 4, "spammer": 1, "adversarial": 1}, seed=2)
    result = run_crowd(url, batch["id"], crowd, truth, api_token=token, progress=False)
    status = requests.get(f"{url}/api/batches/{batch['id']}", headers={"Authorization": f"Bearer {token}"}).json()
    assert status["complete"] and status["tasks"] == 8 * 3 + 2 and status["active_leases"] == 0
    frame = _export(url, token, batch["id"])
    regular = frame[~frame["is_gold"]]
    # exactly R distinct workers per task, all of them simulated
    per_task = regular.groupby("task")["worker"].agg(["nunique", "size"])
    assert (per_task["nunique"] == 3).all()
    assert set(frame["worker"]) <= {w.worker_id for w in crowd}
    # the server stored exactly what each simulated worker posted
    sim = result.answers()
    ratings = frame[frame["item"].str.startswith("arg:")]  # gold copies included
    stored = Counter((r.worker, r.sheet, r.item, r.label) for r in ratings.itertuples())
    posted = Counter((r.worker, r.sheet, r.item, r.answer) for r in sim[sim["kind"] == "rate_arguments"].itertuples())
    assert stored == posted
    # every visit consented and ended on the finish page with a completion code
    assert all(log.visits >= 1 and len(log.codes) == log.visits - 1 or len(log.codes) == log.visits for log in result.logs)
    assert sum(log.tasks for log in result.logs) == len(frame.drop_duplicates("assignment"))
    roster = result.roster()
    by_kind = roster.set_index("worker")["kind"]
    acc = roster.set_index("worker")["accuracy"]
    # a handful of answers each, so compare the groups' means, not every worker
    assert acc[by_kind == "reliable"].mean() >= 0.75 and acc[by_kind == "adversarial"].mean() <= 0.3, acc


def test_dawid_skene_recovers_the_simulated_accuracies(world, server):
    """Ten workers answer every task: on the argument ratings and on the labels, Dawid-Skene's
    skills track the true accuracies (Pearson >= 0.9); on the labels (no "can't tell" option,
    whose latent class nobody holds) both spammers get spammer scores below the threshold."""
    url, token = server
    truth = GroundTruth(world["sheets"], world["data"], tolerance_px=0)
    batch = _batch(url, token, world["sheets"], truth, ["rate_arguments", "label"], redundancy=10, gold=False)
    crowd = [CrowdMember(f"sim-{i:02d}", WorkerProfile("reliable", noise=n, cant_tell=0.0), seed=i)
             for i, n in enumerate([0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3])]
    crowd += [CrowdMember("sim-20", WorkerProfile("spammer", strategy="always_yes", noise=1.0), 20),
              CrowdMember("sim-21", WorkerProfile("spammer", strategy="random", noise=1.0), 21),
              CrowdMember("sim-22", WorkerProfile("adversarial", noise=0.1, cant_tell=0.0), 22)]
    result = run_crowd(url, batch["id"], crowd, truth, api_token=token, progress=False)
    frame = _export(url, token, batch["id"])
    for kind, prefix, n in (("rate_arguments", "arg:", 48), ("label", "label", 24)):
        rows = frame[frame["item"].str.startswith(prefix)].assign(
            task=lambda d: d["task"].astype(str) + ":" + d["item"])
        table = worker_table(rows, DawidSkene().fit(rows)).set_index("worker")
        roster = result.roster(kind).set_index("worker")
        assert roster["n_answers"].eq(n).all()  # every worker answered every question
        r = pd.concat([table["skill"], roster["accuracy"]], axis=1).corr().iloc[0, 1]
        assert r >= 0.9, (kind, r)
        if kind == "label":
            flagged = set(table.index[table["is_spammer"]])
            # both spammers are caught; no worker right on >= 75% of its labels is taken for one
            # (24 answers cannot tell a 30%-noise worker from a spammer reliably, so no claim there)
            assert flagged >= {"sim-20", "sim-21"}, table
            assert not flagged & set(roster.index[roster["accuracy"] >= 0.75]), (flagged, roster["accuracy"])
