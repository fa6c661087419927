"""The researcher's dashboard pages over HTTP (Flask's test client) on both databases: cost with
MTurk's fees (exact cents), visits with codes and active time, answers per task with accept and
reject, flags, throughput and estimated finish, the event log, confirmation before Close, Expire
and Block, and the admin hardening (login, CSRF, no-store, never framed) on every new page."""

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from crowd import dashboard as D
from crowd import service as S
from crowd.db import Base, get_database
from crowd.models import Batch, Judgment, Task, Visit, Worker
from crowd.providers.mturk_models import (BonusStatus, MTurkBonus, MTurkEnv, MTurkHit, MTurkHitType)

PAGES = ("", "/cost", "/visits", "/answers", "/flags", "/throughput", "/events")


def _batch(app, h):
    """3 label tasks, R=2, 2 tasks per visit, $0.50 a visit. ann (0.1 s answers) and bob (10 s)
    finish their visits, bob's is approved; carl is under way with one answer. ann's and
    bob's visits came through MTurk HIT1 (9 assignments: 20% fee); one $1.00 bonus paid, one
    $0.05 planned."""
    client = app.test_client()
    b = h.create_batch(client, kind="label", redundancy=2, tasks_per_visit=2, reward_cents=50)
    tokens = {}
    for name, n, seconds in (("ann", 2, 0.1), ("bob", 2, 10.0), ("carl", 1, 10.0)):
        w = h.WorkerClient(client, b["id"], name).start()
        for i in range(n):
            task = w.next()
            assert w.submit(task["assignment_token"], h.answer_for(task["task"], 0), duration_s=seconds)[0] == 201
        tokens[name] = w
    for name in ("ann", "bob"):
        assert tokens[name].post("/w/api/finish", {"visit_token": tokens[name].token})[0] == 200
    db = get_database(app)
    Base.metadata.create_all(db.engine)  # the MTurk adapter's tables
    with db.transaction() as s:
        ids = {w.external_id: w.id for w in s.scalars(select(Worker))}
        s.execute(update(Visit).where(Visit.worker_id.in_([ids["ann"], ids["bob"]])).values(hit_id="HIT1"))
        s.add(MTurkHitType(environment=MTurkEnv.sandbox, hit_type_id="HT1", batch_id=b["id"], title="t",
                           reward_cents=50, params={}))
        s.add(MTurkHit(environment=MTurkEnv.sandbox, batch_id=b["id"], chunk_index=0, unique_request_token="tok1",
                       hit_type_id="HT1", hit_id="HIT1", max_assignments=9, reward_cents=50, lifetime_s=3600,
                       entry_url="https://x"))
        for key, cents, status in (("a", 100, BonusStatus.paid), ("b", 5, BonusStatus.planned)):
            s.add(MTurkBonus(environment=MTurkEnv.sandbox, unique_request_token=f"bonus-{key}", batch_id=b["id"],
                             key=key, worker_id="AW1", assignment_id="A1", hit_id="HIT1", amount_cents=cents,
                             reason="r", status=status))
        bob_visit = s.scalar(select(Visit.id).where(Visit.worker_id == ids["bob"]))
        S.review_visit(s, bob_visit, "approve")
    return client, b, ids


def test_cost_counts_mturk_fees_to_the_cent(app, h):
    _, b, _ = _batch(app, h)
    with get_database(app).reading() as s:
        cost = D.batch_cost(s, b["id"])
    c = Decimal
    assert cost["spent"] == {"rewards": c("0.50"), "fees": c("0.10"), "bonuses": c("1.00"), "bonus_fees": c("0.20"),
                             "bonus_count": 1, "total": c("1.80")}
    assert cost["committed"] == {"rewards": c("0.50"), "fees": c("0.10"), "bonuses": c("0.05"),
                                 "bonus_fees": c("0.01"), "bonus_count": 1, "total": c("0.66")}
    # 6 judgments needed, 5 given: 1 missing, 2 real tasks a visit -> 1 more visit at $0.60
    assert (cost["judgments_missing"], cost["visits_needed"], cost["per_visit"], cost["remaining"]) == \
        (1, 1, c("0.60"), c("0.60"))
    assert cost["projected"] == c("3.06")
    assert cost["visits"] == {"approved": 1, "completed": 1, "rejected": 0, "in_progress": 1}
    assert cost["fee_basis"] == "MTurk: latest HIT has 9 assignments"


def test_cost_before_launch_is_priced_as_mturk_hits_of_nine(app, h):
    b = h.create_batch(app.test_client(), kind="label", redundancy=3, tasks_per_visit=4, reward_cents=120,
                       gold_rate=0.25, gold=[{"sheet": "s2", "answer": {"label": "banana"}}])
    with get_database(app).reading() as s:
        cost = D.batch_cost(s, b["id"])
    # 9 judgments, 3 real tasks in a visit of 4 (one gold) -> 3 visits at $1.20 + 20% = $1.44
    assert (cost["judgments_missing"], cost["real_tasks_per_visit"], cost["visits_needed"]) == (9, 3, 3)
    assert (cost["fee_per_visit"], cost["projected"]) == (Decimal("0.24"), Decimal("4.32"))
    assert cost["fee_basis"].startswith("not launched")


def test_pages_show_the_numbers(app, h):
    client, b, ids = _batch(app, h)
    h.admin_login(client)
    base = f"/admin/batches/{b['id']}"
    cost = client.get(base + "/cost").get_data(as_text=True)
    assert re.search(r'id="spent">\$1\.80<', cost) and re.search(r'id="committed">\$0\.66<', cost)
    assert re.search(r'id="projected">\$3\.06<', cost)
    visits = client.get(base + "/visits").get_data(as_text=True)
    with get_database(app).reading() as s:
        codes = dict(s.execute(select(Visit.worker_id, Visit.completion_code)).all())
    assert codes[ids["ann"]] in visits and codes[ids["bob"]] in visits
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr><td class=\"num\">\d+</td><td>(\w+)</td>.*?</tr>", visits, re.S)}
    assert "2 / 2" in rows["ann"] and "0.2 s" in rows["ann"]  # two answers of 0.1 s
    assert "20.0 s" in rows["bob"] and "1 / 2" in rows["carl"] and ">consented<" in rows["carl"]
    # bob's answers claim 20 s in a visit that lasted well under a second (a test client is fast)
    assert "&gt; elapsed" in rows["bob"] and "&gt; elapsed" not in rows["ann"]
    flags = client.get(base + "/flags").get_data(as_text=True)
    assert "too fast: 2 of 2 answers under the speed floor" in flags and "label 2.0 s" in flags
    assert flags.count("too fast:") == 1  # bob and carl took 10 s
    tp = client.get(base + "/throughput").get_data(as_text=True)
    assert re.search(r'id="rate">5\.0 / h<', tp) and "1 judgments missing at the recent rate" in tp
    events = client.get(base + "/events?type=submit").get_data(as_text=True)
    assert events.count("<td>submit</td>") == 5 and "batch_created" not in events.split("<tbody>")[1]
    assert "<td>batch_created</td>" in client.get(base + "/events").get_data(as_text=True)
    for page in PAGES:
        assert f'href="{base}{page}" aria-current="page"' in client.get(base + page).get_data(as_text=True), page


def test_throughput_estimates_the_finish(app, h):
    _, b, _ = _batch(app, h)
    with get_database(app).reading() as s:
        last = max(s.scalars(select(Judgment.submitted_at)))
        tp = D.throughput(s, b["id"], window_h=1.0, now=last + timedelta(minutes=1))
        late = D.throughput(s, b["id"], window_h=1.0, now=last + timedelta(hours=3))
    assert (tp["judgments"], tp["needed"], tp["missing"], tp["rate_recent_per_h"]) == (5, 6, 1, 5.0)
    assert tp["eta"] == last + timedelta(minutes=1) + timedelta(hours=1 / 5)
    assert sum(x["judgments"] for x in tp["hours"]) == 5 and len(tp["hours"]) == 24
    # nothing in the last hour: the rate since the first answer (5 in ~3 h) takes over
    assert late["rate_recent_per_h"] == 0 and 1.6 < late["rate_all_per_h"] < 1.7 and late["eta"] is not None


def test_review_an_answer(app, h):
    client, b, ids = _batch(app, h)
    with get_database(app).reading() as s:
        ann_j = s.scalar(select(Judgment).where(Judgment.worker_id == ids["ann"]).order_by(Judgment.id).limit(1))
        task = s.get(Task, ann_j.task_id)
    assert client.get(f"/admin/tasks/{task.id}").location.startswith("/admin/login")
    h.admin_login(client)
    page = client.get(f"/admin/tasks/{task.id}").get_data(as_text=True)
    assert f'src="/media/{b["id"]}/{task.payload["image"]}"' in page or f'/admin/batches/{b["id"]}/media/' in page
    assert f'id="j{ann_j.id}"' in page and "Label: <strong>apple</strong>" in page and "too fast" in page
    url = f"/admin/judgments/{ann_j.id}/review"
    assert client.post(url, data={"action": "reject", "note": "0.1 s"}).status_code == 400  # no CSRF token
    r = client.post(url, data={"action": "reject", "note": "0.1 s", "csrf_token": h.csrf_in(page)})
    assert r.status_code == 302 and r.location == f"/admin/tasks/{task.id}#j{ann_j.id}"
    page = client.get(f"/admin/tasks/{task.id}").get_data(as_text=True)
    assert "Review note: 0.1 s" in page and '<span class="tag flagged">rejected</span>' in page
    export = client.get(f"/admin/batches/{b['id']}/export.csv").get_data(as_text=True)
    assert [r["worker"] for r in csv.DictReader(io.StringIO(export))].count("ann") == 1
    answers = client.get(f"/admin/batches/{b['id']}/answers").get_data(as_text=True)
    assert re.search(rf'#{task.id}</a></td><td>label</td>\s*<td>[^<]*</td><td class="num">\d</td><td class="num">0</td>'
                     rf'<td class="num">1</td>', answers)
    with get_database(app).reading() as s:
        assert s.get(Judgment, ann_j.id).review == "rejected"


def test_destructive_actions_ask_first(app, h):
    client, b, ids = _batch(app, h)
    h.WorkerClient(client, b["id"], "dan").start().next()  # a running lease
    h.admin_login(client)
    html = client.get(f"/admin/batches/{b['id']}").get_data(as_text=True)
    csrf = h.csrf_in(html)
    assert 'value="close">Close…</button>' in html and 'value="expire">Expire…</button>' in html
    url = f"/admin/batches/{b['id']}/status"
    for action in ("close", "expire"):
        r = client.post(url, data={"action": action, "csrf_token": csrf})
        page = r.get_data(as_text=True)
        assert r.status_code == 200 and f"Yes, {action} batch #{b['id']}" in page and "Now: 1 running leases" in page
        assert 'name="confirm" value="yes"' in page and f'name="action" value="{action}"' in page
    r = client.post(url, data={"status": "closed", "csrf_token": csrf})  # the older form field asks too
    assert r.status_code == 200 and f"Yes, close batch #{b['id']}" in r.get_data(as_text=True)
    with get_database(app).reading() as s:
        assert s.get(Batch, b["id"]).status.value == "active"
    r = client.post(url, data={"action": "expire", "confirm": "yes", "csrf_token": csrf})
    assert r.status_code == 302
    assert "active -&gt; expired; 1 running leases ended" in client.get(r.location).get_data(as_text=True)
    r = client.post(url, data={"action": "resume", "csrf_token": csrf})
    assert r.status_code == 409 and "closed and expired batches stay so" in r.get_data(as_text=True)

    wurl = f"/admin/workers/{ids['ann']}/action"
    r = client.post(wurl, data={"action": "block", "batch": b["id"], "reason": "too fast", "csrf_token": csrf})
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and "Yes, block ann" in page and 'name="reason" value="too fast"' in page
    with get_database(app).reading() as s:
        assert s.get(Worker, ids["ann"]).blocked is False
    r = client.post(wurl, data={"action": "block", "batch": b["id"], "reason": "too fast", "confirm": "yes",
                                "csrf_token": csrf})
    assert r.status_code == 302
    with get_database(app).reading() as s:
        assert s.get(Worker, ids["ann"]).blocked is True
    assert client.post(wurl, data={"action": "unblock", "csrf_token": csrf}).status_code == 302  # not destructive


@pytest.mark.parametrize("page", PAGES)
def test_new_pages_keep_the_hardening(sqlite_app, h, page):
    client = sqlite_app.test_client()
    b = h.create_batch(client, kind="label", redundancy=1)
    url = f"/admin/batches/{b['id']}{page}"
    assert client.get(url).location.startswith("/admin/login")
    h.admin_login(client)
    r = client.get(url)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"] and r.headers["X-Frame-Options"] == "DENY"
    assert "style=" not in r.get_data(as_text=True)  # the CSP allows no inline styles
    assert client.get(f"/admin/batches/999{page}").status_code == 404


def test_actions_need_login_and_csrf(sqlite_app, h):
    client = sqlite_app.test_client()
    b = h.create_batch(client, kind="label", redundancy=1)
    w = h.WorkerClient(client, b["id"], "w").start()
    n = w.next()
    w.submit(n["assignment_token"], h.answer_for(n["task"]))
    page = client.get("/admin/login").get_data(as_text=True)
    assert client.post("/admin/judgments/1/review", data={"action": "reject", "csrf_token": h.csrf_in(page)}
                       ).status_code == 401
    assert client.get("/admin/tasks/1").status_code == 302
    h.admin_login(client)
    page = client.get(f"/admin/batches/{b['id']}").get_data(as_text=True)
    for token in ("", "wrong"):
        assert client.post("/admin/judgments/1/review", data={"action": "reject", "csrf_token": token}
                           ).status_code == 400
    r = client.post("/admin/judgments/999/review", data={"action": "reject", "csrf_token": h.csrf_in(page)})
    assert r.status_code == 404 and "judgment 999 not found" in r.get_data(as_text=True)
    with get_database(sqlite_app).reading() as s:
        assert s.get(Judgment, 1).review is None


def test_analysis_flags_recorded_by_the_cli_show_on_the_flags_page(tmp_path, sheets_dir, monkeypatch, h):
    """`argus crowd flags BATCH --record` runs analysis.quality on the batch and the flags page
    shows what it found (crowd never imports analysis; the CLI brings them together)."""
    import json

    import pandas as pd
    from click.testing import CliRunner

    from analysis.quality import worker_flags, worker_quality
    from argus.cli import cli
    from crowd.app import create_app

    url = f"sqlite:///{tmp_path / 'flags.db'}"
    monkeypatch.setenv("ARGUS_DATABASE_URL", url)
    monkeypatch.setenv("ARGUS_SECRET_KEY", "cli-secret")
    app = create_app({"DATABASE_URL": url, "API_TOKEN": h.API_TOKEN, "ADMIN_PASSWORD": "admin-pw"})
    client = app.test_client()
    b = h.create_batch(client, kind="label", redundancy=4, tasks_per_visit=3)
    for i, name in enumerate(("ann", "bob", "cid", "odd")):
        w = h.WorkerClient(client, b["id"], name).start()
        for _ in range(3):
            n = w.next()
            w.submit(n["assignment_token"], h.answer_for(n["task"], 1 if name == "odd" else 0), duration_s=5.0 + i)
    runner = CliRunner()
    r = runner.invoke(cli, ["crowd", "flags", str(b["id"]), "--record", "--json"])
    assert r.exit_code == 0, r.output
    printed = json.loads(r.output[:r.output.rindex("]") + 1])
    with get_database(app).reading() as s:
        frame = pd.DataFrame(list(S.iter_judgment_rows(s, b["id"])))
    expected = worker_flags(worker_quality(frame))
    assert [p["worker"] for p in printed] == list(expected["worker"]) == ["ann", "bob", "cid", "odd"]
    assert [p["action"] for p in printed] == list(expected["action"])
    assert [p["n_answers"] for p in printed] == [3, 3, 3, 3]
    h.admin_login(client)
    page = client.get(f"/admin/batches/{b['id']}/flags").get_data(as_text=True)
    assert f"<title>Flags · batch {b['id']} · Argus admin</title>" in page  # a plain title, the table once
    assert page.count('id="analysis-flags"') == 1
    table = page.split('id="analysis-flags"')[1]
    assert [m for m in re.findall(r"<tr><td>(\w+)</td>", table)] == ["ann", "bob", "cid", "odd"]
    assert "analysis.quality.worker_quality" in page
    log = client.get(f"/admin/batches/{b['id']}/events?type=analysis_flags").get_data(as_text=True)
    assert "source=analysis.quality.worker_quality, workers=[4 entries]" in log
    assert runner.invoke(cli, ["crowd", "flags", "42"]).output.strip() == "Error: batch 42 not found"
    get_database(app).engine.dispose()
