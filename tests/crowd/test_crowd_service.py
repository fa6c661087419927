"""Assignment rules of the service layer, on SQLite and on PostgreSQL: exactly R distinct
workers, no repeats, least-judged first, lease expiry, retake blocking, gold mixing and flagging,
idempotent submissions, append-only events, schema versions."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crowd import service as S
from crowd.db import SCHEMA_VERSION, get_database, rank_key, schema_version, upgrade
from crowd.models import (Assignment, AssignmentStatus, Event, Judgment, Provider, Task, Visit, Worker,
                          WorkerStatus, utcnow)


def _batch(db, sheets_dir, **kw):
    kw.setdefault("kinds", ["label"])
    kw.setdefault("redundancy", 2)
    kw.setdefault("tasks_per_visit", 10)
    with db.transaction() as s:
        return S.create_batch_from_sheets(s, str(sheets_dir), **kw).id


def _visit(db, batch_id, worker, consent=True):
    with db.transaction() as s:
        v = S.start_visit(s, batch_id, S.Identity(Provider.lab, worker))
        if consent:
            S.record_consent(s, v, "1")
        return v.id


def _lease(db, visit_id, now=None):
    with db.transaction() as s:
        a = S.lease_next(s, S.get_visit(s, visit_id), now=now)
        if a is None:
            return None
        t = s.get(Task, a.task_id)
        return a.id, a.worker_id, t.id, t.sheet, t.is_gold, t.payload


def _do(db, visit_id, label_for=lambda payload, sheet: payload["classes"][0], now=None):
    """Lease and answer until the visit is done; returns the task ids answered."""
    done = []
    while (lease := _lease(db, visit_id, now)) is not None:
        aid, wid, tid, sheet, gold, payload = lease
        S.submit(db, aid, wid, {"label": label_for(payload, sheet)}, f"token-{aid}-{wid}", 2.0,
                 gold_threshold=0.5, gold_min_answers=2, gold_confidence=0.8, now=now)
        done.append(tid)
    return done


def test_exactly_r_distinct_workers_and_no_repeats(app, sheets_dir):
    db = get_database(app)
    bid = _batch(db, sheets_dir, redundancy=2)
    answered = {w: _do(db, _visit(db, bid, w)) for w in ("w1", "w2", "w3")}
    assert sorted(map(len, answered.values())) == [0, 3, 3]  # 3 tasks x R=2 = 6 judgments, then the queue is dry
    for tasks in answered.values():
        assert len(tasks) == len(set(tasks))
    with db.reading() as s:
        per_task = s.execute(select(Judgment.task_id, func.count(func.distinct(Judgment.worker_id)),
                                    func.count(Judgment.id)).group_by(Judgment.task_id)).all()
        assert sorted((n_w, n) for _, n_w, n in per_task) == [(2, 2)] * 3
        st = S.batch_status(s, bid)
        assert (st["complete"], st["tasks_complete"], st["judgments"], st["progress"]) == (True, 3, 6, 1.0)
        assert S.check_invariants(s, bid) == {k: 0 for k in S.check_invariants(s, bid)}


def test_least_judged_first(app, sheets_dir):
    db = get_database(app)
    bid = _batch(db, sheets_dir, redundancy=3, tasks_per_visit=1)
    first = [_do(db, _visit(db, bid, f"w{i}"))[0] for i in range(3)]
    assert len(set(first)) == 3  # three workers spread over three tasks before any task gets a second judgment
    fourth = _do(db, _visit(db, bid, "w3"))
    with db.reading() as s:
        seed = S.get_batch(s, bid).options["order_seed"]
    # all tied at 1 -> the first in w3's own order
    assert fourth == [min(first, key=lambda t: rank_key(f"{seed}:lab:w3:", t))]


def test_lease_expiry_returns_task_and_late_submit_rules(app, sheets_dir):
    db = get_database(app)
    bid = _batch(db, sheets_dir, redundancy=1, tasks_per_visit=1, lease_seconds=60, limit=1)
    v1 = _visit(db, bid, "slow")
    aid, wid, tid, *_ = _lease(db, v1)
    v2 = _visit(db, bid, "fast")
    assert _lease(db, v2) is None  # the only task is leased and R=1
    later = utcnow() + timedelta(seconds=61)
    lease2 = _lease(db, v2, now=later)
    assert lease2 is not None and lease2[2] == tid  # expired lease went back to the queue
    with db.reading() as s:
        assert s.get(Assignment, aid).status == AssignmentStatus.expired
        assert s.scalar(select(func.count(Event.id)).where(Event.type == "lease_expired")) == 1
    S.submit(db, lease2[0], lease2[1], {"label": "apple"}, "fast-token-1", now=later)
    with pytest.raises(S.Conflict):  # late answer after the task got its R judgments elsewhere
        S.submit(db, aid, wid, {"label": "apple"}, "slow-token-1", now=later)
    with db.reading() as s:
        assert S.check_invariants(s, bid)["tasks_over_redundancy"] == 0


def test_late_submit_accepted_while_capacity_remains(app, sheets_dir):
    db = get_database(app)
    bid = _batch(db, sheets_dir, redundancy=1, tasks_per_visit=1, lease_seconds=60, limit=1)
    aid, wid, *_ = _lease(db, _visit(db, bid, "slow"))
    with db.transaction() as s:
        assert S.expire_leases(s, bid, now=utcnow() + timedelta(seconds=61)) == 1
    r = S.submit(db, aid, wid, {"label": "banana"}, "slow-token-2")
    assert r["duplicate"] is False
    with db.reading() as s:
        assert S.batch_status(s, bid)["complete"] is True
        assert all(v == 0 for v in S.check_invariants(s, bid).values())


def test_retake_blocking_across_batches(app, sheets_dir):
    db = get_database(app)
    first = _batch(db, sheets_dir)
    second = _batch(db, sheets_dir, exclude_batches=[first])
    _visit(db, first, "veteran")
    with pytest.raises(S.Forbidden, match="already took part"):
        _visit(db, second, "veteran")
    assert _visit(db, second, "newcomer") > 0
    with db.transaction() as s:
        w = S.get_or_create_worker(s, "lab", "newcomer")
        S.review_worker(s, w.id, "block", reason="bot")
    with pytest.raises(S.Forbidden, match="blocked"):
        _lease(db, _visit_id_of(db, second, "newcomer"))


def _visit_id_of(db, batch_id, worker):
    with db.reading() as s:
        return s.scalar(select(Visit.id).join(Worker, Worker.id == Visit.worker_id).where(
            Visit.batch_id == batch_id, Worker.external_id == worker))


def test_gold_mixed_at_rate_and_low_scorers_flagged_not_dropped(app, sheets_dir):
    db = get_database(app)
    gold = [{"sheet": "s1", "answer": {"label": "apple"}}, {"sheet": "s2", "answer": {"label": "banana"}}]
    # gold copies show the batch's own images: allow one worker both copies of an image here
    bid = _batch(db, sheets_dir, redundancy=3, tasks_per_visit=4, gold_rate=0.5, gold=gold,
                 options={"allow_same_image": True})
    good = _visit(db, bid, "good")
    seq = []
    while (lease := _lease(db, good)) is not None:
        aid, wid, tid, sheet, is_gold, payload = lease
        seq.append(is_gold)
        S.submit(db, aid, wid, {"label": {"s1": "apple", "s2": "banana", "s3": "cherry"}[sheet]}, f"gold-tok-{aid}",
                 gold_threshold=0.5, gold_min_answers=2)
    assert seq == [False, True, False, True]  # rate 0.5: every 2nd task is gold
    bad = _visit(db, bid, "bad")
    answered = _do(db, bad, label_for=lambda payload, sheet: "cherry")  # wrong on both gold tasks
    assert len(answered) == 4  # flagged workers keep working; nothing is dropped
    with db.reading() as s:
        stats = {w["worker"]: w for w in S.worker_stats(s, bid)}
        assert stats["good"]["gold_accuracy"] == 1.0 and stats["good"]["status"] == "active"
        assert stats["bad"]["gold_accuracy"] == 0.0 and stats["bad"]["status"] == WorkerStatus.flagged.value
        assert s.scalar(select(func.count(Event.id)).where(Event.type == "worker_flagged")) == 1
        rows = list(S.iter_judgment_rows(s, bid))
        assert sum(r["worker"] == "bad" for r in rows) == 4
        gold_rows = [r for r in rows if r["is_gold"]]
        assert len(gold_rows) == 4 and {r["gold_label"] for r in gold_rows} == {"apple", "banana"}


def test_gold_flag_needs_evidence_not_a_low_mean():
    # Beta(1 + k, 1 + n - k): three half-right gold tasks (k = 1.5 of 3) leave
    # P(accuracy < 0.7) = I_0.7(2.5, 2.5) = 0.8130, no flag at 0.95; three wrong ones give
    # 1 - 0.3^4 = 0.9919, a flag.
    assert S.gold_below_probability(1.5, 3, 0.7) == pytest.approx(0.813033, abs=1e-6)
    assert S.gold_below_probability(0.0, 3, 0.7) == pytest.approx(1 - 0.3 ** 4)
    assert S.gold_below_probability(3.0, 3, 0.7) == pytest.approx(0.7 ** 4)


def test_partly_right_gold_does_not_flag_a_reliable_worker(app, sheets_dir):
    db = get_database(app)
    gold = [{"sheet": "s1", "answer": {"label": "apple"}}, {"sheet": "s2", "answer": {"label": "banana"}}]
    bid = _batch(db, sheets_dir, redundancy=3, tasks_per_visit=4, gold_rate=0.5, gold=gold)
    # one of two gold right: mean 0.5 < 0.7 after 2 answers flagged under a mean rule;
    # Beta(2, 2) gives P(acc < 0.7) = 0.784, below 0.95
    v = _visit(db, bid, "careful")
    while (lease := _lease(db, v)) is not None:
        aid, wid, tid, sheet, is_gold, payload = lease
        S.submit(db, aid, wid, {"label": "apple"}, f"careful-{aid:04d}", gold_threshold=0.7, gold_min_answers=2)
    with db.reading() as s:
        stats = {w["worker"]: w for w in S.worker_stats(s, bid)}
        assert stats["careful"]["gold_accuracy"] == 0.5 and stats["careful"]["status"] == "active"


def test_submit_is_idempotent(app, sheets_dir):
    db = get_database(app)
    bid = _batch(db, sheets_dir, tasks_per_visit=2)
    v = _visit(db, bid, "w")
    aid, wid, *_ = _lease(db, v)
    first = S.submit(db, aid, wid, {"label": "apple"}, "client-token-A")
    again = S.submit(db, aid, wid, {"label": "banana"}, "client-token-A")
    replay = S.submit(db, aid, wid, {"label": "banana"}, "client-token-B")
    assert first["duplicate"] is False and again == {**first, "duplicate": True} and replay == again
    aid2, *_ = _lease(db, v)
    with pytest.raises(S.Conflict) as err:
        S.submit(db, aid2, wid, {"label": "apple"}, "client-token-A")
    assert err.value.field == "client_token"
    with pytest.raises(S.Forbidden):
        S.submit(db, aid2, wid + 999, {"label": "apple"}, "client-token-C")
    with pytest.raises(S.ServiceError) as err:
        S.submit(db, aid2, wid, {"label": "durian"}, "client-token-D")
    assert err.value.field == "answer.label"
    with db.reading() as s:
        assert s.scalar(select(func.count(Judgment.id))) == 1
        assert s.scalar(select(Judgment.answer)) == {"label": "apple"}


def test_event_log_is_append_only(app, sheets_dir):
    db = get_database(app)
    _batch(db, sheets_dir)
    with pytest.raises(RuntimeError, match="append-only"):
        with db.transaction() as s:
            s.scalar(select(Event).limit(1)).type = "tampered"
            s.flush()


def test_schema_versioning(app):
    engine = get_database(app).engine
    assert schema_version(engine) == SCHEMA_VERSION
    assert upgrade(engine) == SCHEMA_VERSION  # re-running is a no-op


def test_agreement_with_majority_and_median_time(app, sheets_dir):
    db = get_database(app)
    bid = _batch(db, sheets_dir, redundancy=3)
    for worker, label in (("w1", "apple"), ("w2", "apple"), ("w3", "banana")):
        _do(db, _visit(db, bid, worker), label_for=lambda payload, sheet, label=label: label)
    with db.reading() as s:
        stats = {w["worker"]: w for w in S.worker_stats(s, bid)}
    assert {k: v["agreement_with_majority"] for k, v in stats.items()} == {"w1": 1.0, "w2": 1.0, "w3": 0.0}
    assert {v["tasks"] for v in stats.values()} == {3} and stats["w1"]["median_duration_s"] == 2.0
