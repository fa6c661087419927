"""Money safety with the MTurk adapter on the MTurk team's fake endpoint (imported from
tests/crowd/mturk, not copied): for every MTurk call that launch, review and bonus make, and for every
failure mode the fake can inject at that call (response dropped after applying, answer too late,
service fault, throttling), re-running the command converges to the state of a clean run: never a
duplicate HIT, a second approval or a second bonus, and the account balance is exact.

The expensive part (a launched batch, workers doing their tasks on the real Argus server over
HTTP, sync) runs once; each failure case starts from a copy of that state (a SQLite backup and a
copy of the fake's books, on one fake server and one boto3 client), so the sweep of 48 cases
stays short.
"""

from __future__ import annotations

import copy
import sqlite3
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

MTURK_TESTS = Path(__file__).resolve().parents[1] / "mturk"
sys.path.insert(0, str(MTURK_TESTS))  # the fake lives beside the MTurk adapter's tests

from fake_mturk import FakeMTurk  # noqa: E402
from mturk_sim import do_assignment, label_batch, serve  # noqa: E402

from crowd.app import create_app  # noqa: E402
from crowd.db import Database, get_database, make_engine  # noqa: E402
from crowd.providers.mturk_client import MTurkClient, MTurkError  # noqa: E402
from crowd.providers.mturk_models import BonusStatus, MTurkBonus  # noqa: E402
from crowd.providers.mturk_service import LaunchSettings, MTurkService  # noqa: E402

MODES = ("drop", "timeout", "fault", "throttle")
BOOKS = ("hit_types", "hits", "assignments", "bonuses", "blocks", "qual_types", "worker_quals", "notifications",
         "hit_tokens", "bonus_tokens", "balance", "workers", "released", "expirations_seen", "extension_tokens")
# Calls that create a resource or move money. (CreateHITType and AssociateQualificationWithWorker
# are idempotent on MTurk itself: the same properties give the same HIT type, a grant is a set.)
MUTATING = ("CreateQualificationType", "CreateHITWithHITType", "ApproveAssignment", "RejectAssignment", "SendBonus",
            "CreateWorkerBlock")


@pytest.fixture(autouse=True)
def dummy_aws(aws_credentials):
    """Dummy credentials only; nothing can reach AWS."""
    aws_credentials("AKIARELIABILITYDUMMY", "reliability-dummy-secret-never-real")


class World:
    """A copy of (Argus database, fake MTurk books) that one failure case may spoil."""

    def __init__(self, db_file: Path, books: dict, workdir: Path, fake: FakeMTurk, client: MTurkClient):
        self.db_file = workdir / f"case_{id(self)}.db"
        with sqlite3.connect(db_file) as src, sqlite3.connect(self.db_file) as dst:
            src.backup(dst)
        self.db = Database(make_engine(f"sqlite:///{self.db_file}", sqlite_synchronous="OFF"))
        # one fake server and one boto3 client for all cases: reset the books, counters and injections
        self.fake = fake
        with fake.lock:
            for name, value in copy.deepcopy(books).items():
                setattr(fake, name, value)
            fake.applied.clear()
            fake.requests.clear()
            fake.injections.clear()
        self.svc = MTurkService(self.db, client, progress=False)

    def close(self):
        self.db.engine.dispose()
        self.db_file.unlink()


def converge(step, max_runs: int = 6):
    """Re-run `step` after each MTurkError, as a researcher would; returns (result, failed runs)."""
    for failed in range(max_runs):
        try:
            return step(), failed
        except MTurkError:
            continue
    raise AssertionError(f"did not converge in {max_runs} runs")


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """Snapshots (db file, fake books) before launch, after work + sync, and after review."""
    import os

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED")}
    os.environ.update(AWS_ACCESS_KEY_ID="AKIARELIABILITYDUMMY", AWS_SECRET_ACCESS_KEY="reliability-dummy",
                      AWS_EC2_METADATA_DISABLED="true")
    tmp = tmp_path_factory.mktemp("money")
    app = create_app({"TESTING": True, "SECRET_KEY": "money-secret", "GOLD_MIN_ANSWERS": 1,
                      "DATABASE_URL": f"sqlite:///{tmp / 'argus.db'}"})
    server, url = serve(app)
    fake = FakeMTurk(timeout_sleep=0.3)
    fake.start()
    db = get_database(app)
    bid = label_batch(db, tmp / "images", n_images=6, redundancy=2, tasks_per_visit=3, gold_rate=0.34)
    plan = LaunchSettings(entry_url=f"{url}/w/{bid}", title="Label small images", description="Pick the class",
                          assignments=6, per_hit=3, study="money", allow_http=True)

    def snap(name):
        path = tmp / f"{name}.db"
        with sqlite3.connect(tmp / "argus.db") as src, sqlite3.connect(path) as dst:
            src.backup(dst)
        return path, {n: copy.deepcopy(getattr(fake, n)) for n in BOOKS}

    svc = MTurkService(db, MTurkClient.connect("sandbox", endpoint_url=fake.url, max_attempts=1), progress=False)
    svc.token_salt()  # the database's token salt is part of every copy, as in a restored backup
    out = {"batch": bid, "plan": plan, "tmp": tmp, "before_launch": snap("s0")}
    hits = [h["hit_id"] for h in svc.launch(bid, plan, dry_run=False).hits]
    for worker, hit in [("AW1", hits[0]), ("AW2", hits[0]), ("AW3", hits[0]), ("AW4", hits[1]), ("AW5", hits[1])]:
        do_assignment(fake, hit, worker, url, good=worker != "AW5")
    svc.sync(bid)
    out["before_review"] = snap("s1")
    svc.review(bid)
    out["before_bonus"] = snap("s2")
    server.shutdown()
    server.server_close()
    db.engine.dispose()
    out["fake"] = fake
    out["client"] = MTurkClient.connect("sandbox", endpoint_url=fake.url, max_attempts=1, read_timeout=0.15,
                                        connect_timeout=1)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    yield out
    fake.stop()


STEPS = {
    "launch": ("before_launch", lambda w, st: w.svc.launch(st["batch"], st["plan"], dry_run=False)),
    "review": ("before_review", lambda w, st: w.svc.review(st["batch"])),
    "bonus": ("before_bonus", lambda w, st: w.svc.bonus(
        st["batch"], w.svc.plan_bonuses(st["batch"], amount="0.25", min_gold=1.0), "Accurate answers",
        dry_run=False)),
}


def _money_view(fake) -> dict:
    """What must come out identical to a clean run: HITs, assignment states, bonuses, balance."""
    return {"hits": sorted((h["HITTypeId"] and 1, h["MaxAssignments"]) for h in fake.hits.values()),
            "hit_tokens": sorted(fake.hit_tokens),
            "assignments": sorted((a["WorkerId"], a["AssignmentStatus"]) for a in fake.assignments.values()),
            "bonuses": sorted(Counter((b["WorkerId"], b["AssignmentId"], str(b["BonusAmount"]))
                                      for b in fake.bonuses).items()),
            "balance": fake.balance}


def _cases(stages):
    """(step, operation, call position, mode) for every call a clean run of each step makes."""
    cases = []
    for step, (stage, run) in STEPS.items():
        w = World(*stages[stage], stages["tmp"], stages["fake"], stages["client"])
        try:
            before = Counter(w.fake.requests)
            run(w, stages)
            calls = Counter(w.fake.requests) - before
        finally:
            w.close()
        for op, n in sorted(calls.items()):
            for pos in sorted({1, n}):
                cases += [(step, op, pos, mode) for mode in MODES]
    return cases


@pytest.mark.slow
def test_every_failure_at_every_call_of_launch_review_bonus_converges(stages):
    # the clean run of each step is the reference
    reference = {}
    for step, (stage, run) in STEPS.items():
        w = World(*stages[stage], stages["tmp"], stages["fake"], stages["client"])
        try:
            run(w, stages)
            reference[step] = _money_view(w.fake)
        finally:
            w.close()
    assert len(reference["launch"]["hits"]) == 2
    assert Counter(s for _, s in reference["review"]["assignments"]) == {"Approved": 5}  # safe review: nobody rejected
    assert [b[0][0] for b in reference["bonus"]["bonuses"]] == ["AW1", "AW2", "AW3", "AW4"]

    cases = _cases(stages)
    ops = {(s, op) for s, op, _, _ in cases}
    assert {("launch", "CreateHITWithHITType"), ("review", "ApproveAssignment"), ("bonus", "SendBonus"),
            ("bonus", "ListBonusPayments")} <= ops
    failures = []
    for step, op, pos, mode in cases:
        stage, run = STEPS[step]
        w = World(*stages[stage], stages["tmp"], stages["fake"], stages["client"])
        try:
            w.fake.inject(op, *(["pass"] * (pos - 1)), mode)
            _, failed = converge(lambda: run(w, stages))
            view = _money_view(w.fake)
            applied = {m: w.fake.applied[m] for m in MUTATING}
            run(w, stages)  # and once more: nothing new may happen on MTurk
            again = {m: w.fake.applied[m] for m in MUTATING}
            with w.db.reading() as s:
                ledger = Counter((b.assignment_id, b.amount_cents) for b in s.query(MTurkBonus)
                                 if b.status == BonusStatus.paid)
            fake_ledger = Counter((b["AssignmentId"], int(Decimal(str(b["BonusAmount"])) * 100))
                                  for b in w.fake.bonuses)
            problems = [name for name, bad in (("state differs from a clean run", view != reference[step]),
                                               ("a re-run changed MTurk", applied != again),
                                               ("local bonus ledger != MTurk's", ledger != fake_ledger)) if bad]
            if problems:
                failures.append((step, op, pos, mode, problems, failed,
                                 {k: (view[k], reference[step][k]) for k in view if view[k] != reference[step][k]},
                                 {k: (applied[k], again[k]) for k in applied if applied[k] != again[k]}))
        finally:
            w.close()
    assert failures == [], "\n".join(map(str, failures[:6]))
    assert len(cases) >= 40
