"""Task order, on SQLite and PostgreSQL: each worker gets the tasks in their own random order
(reproducible from the batch's seed and the worker), kinds interleave, a worker gets at most
one task per image in a batch unless the batch allows it, and the invariants still hold."""

import secrets

from sqlalchemy import func, select

from crowd import service as S
from crowd.db import get_database, rank_key
from crowd.models import Judgment, Provider, Task, Worker

KINDS = ["rate_arguments", "mark_rationale", "label", "name_feature"]


def _answer(kind, payload):
    if kind == "label":
        return {"label": payload["classes"][0]}
    if kind == "rate_arguments":
        return {"arguments": {str(a["rank"]): "yes" for a in payload["arguments"]}, "match": 3, "comment": ""}
    if kind == "name_feature":
        return {"name": "round", "coherence": 3}
    return {"points": [[0.5, 0.5]], "boxes": []}


def _batch(db, sheets_dir, **kw):
    kw.setdefault("kinds", KINDS)
    kw.setdefault("tasks_per_visit", 12)
    with db.transaction() as s:
        return S.create_batch_from_sheets(s, str(sheets_dir), **kw).id


def _work(db, batch_id, worker):
    """One visit leasing and answering until done; returns the tasks as (id, kind, sheet)."""
    with db.transaction() as s:
        v = S.start_visit(s, batch_id, S.Identity(Provider.lab, worker))
        S.record_consent(s, v, "1")
        visit_id = v.id
    done = []
    while True:
        with db.transaction() as s:
            a = S.lease_next(s, S.get_visit(s, visit_id))
            if a is None:
                return done
            t = s.get(Task, a.task_id)
            aid, wid, task = a.id, a.worker_id, (t.id, t.kind, t.sheet, t.payload)
        S.submit(db, aid, wid, _answer(task[1], task[3]), secrets.token_hex(8), 1.0)
        done.append(task[:3])


def test_each_worker_has_a_reproducible_random_order_and_kinds_interleave(app, sheets_dir):
    db = get_database(app)
    bid = _batch(db, sheets_dir, redundancy=10, options={"allow_same_image": True, "order_seed": 7})
    workers = [f"w{i}" for i in range(6)]
    orders = {w: _work(db, bid, w) for w in workers}  # one after another: the fill stays even
    with db.reading() as s:
        ids = s.scalars(select(Task.id).where(Task.batch_id == bid)).all()
    assert len(ids) == 12
    for w, done in orders.items():
        # exactly the order drawn from the batch's seed and the worker
        assert [t for t, _, _ in done] == sorted(ids, key=lambda t: rank_key(f"7:lab:{w}:", t)), w
    assert len({tuple(t for t, _, _ in d) for d in orders.values()}) == len(workers)  # all different
    # tasks are created sheet by sheet with name_feature last; workers see the kinds mixed
    for done in orders.values():
        kinds = [k for _, k, _ in done]
        assert kinds[-3:] != ["name_feature"] * 3
        assert kinds != sorted(kinds, key=KINDS.index)
    assert sum(k == "name_feature" for d in orders.values() for _, k, _ in d[:6]) >= 6
    # the same seed gives the same order in another batch (same tasks, ids shifted)
    again = _batch(db, sheets_dir, redundancy=10, options={"allow_same_image": True, "order_seed": 7})
    with db.reading() as s:
        new_ids = s.scalars(select(Task.id).where(Task.batch_id == again)).all()
    assert [t for t, _, _ in _work(db, again, "w1")] == sorted(new_ids, key=lambda t: rank_key("7:lab:w1:", t))


def test_one_worker_gets_one_task_per_image_unless_allowed(app, sheets_dir):
    db = get_database(app)
    bid = _batch(db, sheets_dir, kinds=["rate_arguments", "mark_rationale", "label"], redundancy=3)
    done = _work(db, bid, "ann")
    assert len(done) == 3 and sorted(s for _, _, s in done) == ["s1", "s2", "s3"]
    # everyone else too, until every task has its R judgments from R distinct workers
    for i in range(12):
        d = _work(db, bid, f"w{i}")
        assert len({s for _, _, s in d}) == len(d)
    with db.reading() as s:
        per_task = s.execute(select(Judgment.task_id, func.count(func.distinct(Judgment.worker_id)))
                             .where(Judgment.batch_id == bid).group_by(Judgment.task_id)).all()
        assert sorted(n for _, n in per_task) == [3] * 9
        assert S.check_invariants(s, bid) == dict.fromkeys(S.check_invariants(s, bid), 0)
    allowed = _batch(db, sheets_dir, kinds=["rate_arguments", "mark_rationale", "label"], redundancy=3,
                     options={"allow_same_image": True})
    assert len(_work(db, allowed, "ann")) == 9


def test_gold_copies_only_repeat_the_same_question(app, sheets_dir):
    db = get_database(app)
    gold = [{"sheet": "s1", "kind": "mark_rationale", "answer": {"boxes": [[0.2, 0.2, 0.8, 0.8]]}},
            {"sheet": "s2", "kind": "label", "answer": {"label": "banana"}}]
    bid = _batch(db, sheets_dir, kinds=["label", "mark_rationale"], redundancy=2, gold_rate=0.5, gold=gold)
    with db.reading() as s:
        gold_ids = set(s.scalars(select(Task.id).where(Task.batch_id == bid, Task.is_gold.is_(True))))
    for w in [f"w{i}" for i in range(8)]:
        done = _work(db, bid, w)
        regular = [(k, sh) for t, k, sh in done if t not in gold_ids]
        assert len({sh for _, sh in regular}) == len(regular)  # never two regular tasks of one image
        for t, k, sh in done:
            if t in gold_ids:  # a gold copy follows only the same question on its image
                assert {kk for kk, ss in regular if ss == sh} <= {k}, (w, done)


def test_practice_sheets_are_not_tasks(app, sheets_dir):
    db = get_database(app)
    bid = _batch(db, sheets_dir, kinds=["label", "name_feature"], practice_sheets=["s2"])
    with db.reading() as s:
        sheets = set(s.scalars(select(Task.sheet).where(Task.batch_id == bid, Task.kind == "label")))
        batch = S.get_batch(s, bid)
        example = batch.options["example"]
        channels = sorted(p["channel"] for p in s.scalars(select(Task.payload).where(
            Task.batch_id == bid, Task.kind == "name_feature")))
    assert sheets == {"s1", "s3"} and channels == [3, 7, 12]
    assert (example["kind"], example["sheet"]) == ("label", "s2")


def test_order_prefix_names_the_seed_and_worker(app, sheets_dir):
    db = get_database(app)
    bid = _batch(db, sheets_dir, kinds=["label"], options={"order_seed": 42})
    with db.transaction() as s:
        w = S.get_or_create_worker(s, Provider.mturk, "A1")
        assert S.order_prefix(S.get_batch(s, bid), s.get(Worker, w.id)) == "42:mturk:A1:"
