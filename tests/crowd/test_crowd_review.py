"""Reviewing single answers: a rejected judgment stays in the database with its verdict, note
and time, leaves the exports, and the event log records every verdict."""

import csv
import io

import pytest
from sqlalchemy import select

from crowd import service as S
from crowd.db import get_database
from crowd.models import Event, Judgment


def _two_answers(client, h):
    b = h.create_batch(client, kind="label", redundancy=2, tasks_per_visit=1, limit=1)
    for i, worker in enumerate(("ann", "bob")):
        w = h.WorkerClient(client, b["id"], worker).start()
        n = w.next()
        assert w.submit(n["assignment_token"], h.answer_for(n["task"], i))[0] == 201
    return b


def test_rejected_answers_leave_the_export_but_stay_stored(app, h):
    client = app.test_client()
    b = _two_answers(client, h)
    db = get_database(app)
    with db.reading() as s:
        first, second = s.scalars(select(Judgment.id).order_by(Judgment.id)).all()
    with db.transaction() as s:
        S.review_judgment(s, first, "reject", "clicked the first class every time")
        S.review_judgment(s, second, "accept")
    export = client.get(f"/api/batches/{b['id']}/judgments?format=csv", headers=h.AUTH).get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(export)))
    assert [(r["worker"], r["label"]) for r in rows] == [("bob", "banana")]
    with db.reading() as s:
        j = s.get(Judgment, first)
        assert (j.review, j.review_note, j.answer) == ("rejected", "clicked the first class every time",
                                                       {"label": "apple"})
        assert j.reviewed_at is not None and s.get(Judgment, second).review == "accepted"
        events = [(e.type, e.data["judgment"]) for e in s.scalars(select(Event).where(Event.type.like("judgment_%")))]
    assert events == [("judgment_reject", first), ("judgment_accept", second)]
    with db.transaction() as s:
        S.review_judgment(s, first, "clear")
    export = client.get(f"/api/batches/{b['id']}/judgments?format=csv", headers=h.AUTH).get_data(as_text=True)
    assert len(list(csv.DictReader(io.StringIO(export)))) == 2
    with db.transaction() as s:
        with pytest.raises(S.NotFound, match="judgment 999 not found"):
            S.review_judgment(s, 999, "reject")
        with pytest.raises(S.ServiceError, match="action must be one of accept, reject, clear, got 'delete'"):
            S.review_judgment(s, first, "delete")
