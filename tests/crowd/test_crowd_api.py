"""Researcher API and worker JSON endpoints over the Flask test client, on SQLite and
PostgreSQL: auth, batch creation (sheets and images), the worker flow, exports (CSV, Parquet,
JSON, hashed ids), review actions, size limit, errors naming the field, OpenAPI vs routes."""

import csv
import io

import pyarrow.parquet as pq
import pytest

from crowd.judgments import COLUMNS as JUDGMENT_COLUMNS
from crowd.service import hash_worker

KINDS4 = ["rate_arguments", "name_feature", "mark_rationale", "label"]


def test_api_requires_the_token(client, h):
    assert client.get("/api/batches").status_code == 401
    assert client.get("/api/batches", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.get("/api/batches", headers=h.AUTH)
    assert r.status_code == 200 and r.get_json() == {"batches": []}
    assert client.get("/api/openapi.json").status_code == 200  # the document itself is public


def test_openapi_matches_routes(app):
    from crowd.openapi import openapi_document

    doc = openapi_document()
    documented = {(path, m.upper()) for path, item in doc["paths"].items() for m in item if m != "parameters"}
    actual = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/api", "/w/api")):
            path = rule.rule.replace("<int:", "{").replace("<", "{").replace(">", "}")
            actual |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == actual


@pytest.mark.parametrize("body,field", [
    ({"sheets_dir": "/nonexistent", "kind": "label"}, "sheets_dir"),
    ({"kind": "label"}, "sheets_dir"),
    ({"kind": "poetry"}, "kind"),
    ({"kind": "label", "redundancy": 0}, "redundancy"),
    ({"kind": "label", "redundancy": "3"}, "redundancy"),
    ({"kind": "label", "gold_rate": 0.2}, "gold"),
    ({"kind": "label", "gold": [{"sheet": "nope", "answer": {"label": "apple"}}]}, "gold.0"),
    ({"kind": "label", "gold": [{"sheet": "s1", "answer": {"label": "kiwi"}}]}, "gold.0.gold.label"),
    ({"kind": "label", "exclude_batches": [999]}, "exclude_batches"),
], ids=["missing-dir", "no-source", "unknown-kind", "R0", "R-string", "gold-rate-without-gold", "gold-sheet",
        "gold-label", "exclude-unknown"])
def test_create_batch_errors_name_the_field(client, h, sheets_dir, body, field):
    if "sheets_dir" not in body and field != "sheets_dir":
        body = {**body, "sheets_dir": str(sheets_dir)}
    r = client.post("/api/batches", json=body, headers=h.AUTH)
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["field"] == field


def test_label_batch_from_images(client, h, sheets_dir):
    images = [{"id": "pool-1", "image": str(sheets_dir / "images" / "s1.png")}, str(sheets_dir / "images" / "s3.png")]
    b = h.create_batch(client, sheets_dir=None, images=images, classes=["apple", "cherry"], redundancy=1,
                       tasks_per_visit=2)
    assert (b["tasks"], b["kinds"], b["classes"]) == (2, ["label"], ["apple", "cherry"])
    w = h.WorkerClient(client, b["id"], "oracle").start()
    for _ in range(2):
        n = w.next()
        assert client.get(n["media"][n["task"]["payload"]["image"]]).status_code == 200
        status, _ = w.submit(n["assignment_token"], {"label": "cherry"})
        assert status == 201
    assert client.get(f"/api/batches/{b['id']}", headers=h.AUTH).get_json()["complete"] is True
    rows = client.get(f"/api/batches/{b['id']}/judgments?format=json", headers=h.AUTH).get_json()["rows"]
    assert sorted(r["sheet"] for r in rows) == ["pool-1", "s3"]
    for body, field in (({"images": ["/nope.png"], "classes": ["a"]}, "images"),
                        ({"images": images, "classes": []}, "classes")):
        r = client.post("/api/batches", json=body, headers=h.AUTH)
        assert (r.status_code, r.get_json()["field"]) == (400, field)


def _run_workers(client, h, batch_id, workers):
    for i, name in enumerate(workers):
        w = h.WorkerClient(client, batch_id, name).start()
        while not (n := w.next())["done"]:
            status, data = w.submit(n["assignment_token"], h.answer_for(n["task"], i), duration_s=2.0 + i)
            assert status == 201, data


def test_worker_flow_and_exports(client, h, sheets_dir):
    b = h.create_batch(client, kinds=KINDS4, redundancy=2, tasks_per_visit=12, allow_same_image=True)
    assert b["tasks_by_kind"] == {k: 3 for k in KINDS4}
    _run_workers(client, h, b["id"], ["ann", "bob"])
    status = client.get(f"/api/batches/{b['id']}", headers=h.AUTH).get_json()
    assert (status["complete"], status["judgments"], status["visits"]) == (True, 24, {"consented": 2})

    r = client.get(f"/api/batches/{b['id']}/judgments?format=csv", headers=h.AUTH)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert list(rows[0]) == JUDGMENT_COLUMNS
    # per worker: rate 3 sheets x (2 args + match) + name 3 x 2 + mark 3 + label 3 = 21 rows
    assert len(rows) == 42
    by_item = {}
    for row in rows:
        by_item.setdefault((row["kind"], row["item"].split(":")[0]), []).append(row)
    ann_rate = [x for x in by_item[("rate_arguments", "arg")] if x["worker"] == "ann"]
    assert {x["label"] for x in ann_rate} == {"yes"} and {x["channel"] for x in ann_rate} == {"3", "7", "12"}
    names = by_item[("name_feature", "name")]
    assert {x["label"] for x in names} == {"round thing 0", "round thing 1"} and names[0]["text"].startswith("Round")
    marks = by_item[("mark_rationale", "rationale")]
    assert {x["label"] for x in marks} == {"2"} and marks[0]["points"] == "[[0.25, 0.5]]"
    assert {x["duration_s"] for x in rows if x["worker"] == "bob"} == {"3.0"}
    assert {x["is_gold"] for x in rows} == {"False"}

    parquet = client.get(f"/api/batches/{b['id']}/judgments?format=parquet", headers=h.AUTH).get_data()
    table = pq.read_table(io.BytesIO(parquet))
    assert table.column_names == JUDGMENT_COLUMNS and table.num_rows == 42
    assert table.column("label").to_pylist() == [x["label"] for x in rows]

    hashed = client.get(f"/api/batches/{b['id']}/judgments?format=json&hash_workers=1", headers=h.AUTH).get_json()["rows"]
    assert {x["worker"] for x in hashed} == {hash_worker("ann", app_salt(client)), hash_worker("bob", app_salt(client))}
    assert all(x["worker"].startswith("h:") and len(x["worker"]) == 18 for x in hashed)

    stats = client.get(f"/api/batches/{b['id']}/workers", headers=h.AUTH).get_json()["workers"]
    assert [(s["worker"], s["tasks"], s["median_duration_s"]) for s in stats] == [("ann", 12, 2.0), ("bob", 12, 3.0)]
    # ann and bob disagree on every categorical item (answers differ by choice index) -> tied majority
    assert all(s["agreement_with_majority"] == 1.0 for s in stats)
    inv = client.get(f"/api/batches/{b['id']}/invariants", headers=h.AUTH).get_json()
    assert set(inv.values()) == {0}


def app_salt(client):
    from crowd.service import export_salt

    return export_salt(client.application.config)


def test_review_actions(client, h, sheets_dir):
    b = h.create_batch(client, redundancy=1, tasks_per_visit=3)
    w = h.WorkerClient(client, b["id"], "rev").start()
    while not (n := w.next())["done"]:
        w.submit(n["assignment_token"], h.answer_for(n["task"]))
    status, fin = w.post("/w/api/finish", {"visit_token": w.token})
    assert status == 200 and fin["status"] == "completed" and len(fin["completion_code"]) == 8
    wid = client.get("/api/workers", headers=h.AUTH).get_json()["workers"][0]["id"]
    r = client.post(f"/api/workers/{wid}/flag", json={"reason": "too fast"}, headers=h.AUTH)
    assert r.get_json()["status"] == "flagged"
    assert [x["id"] for x in client.get("/api/workers?status=flagged", headers=h.AUTH).get_json()["workers"]] == [wid]
    r = client.post(f"/api/workers/{wid}/approve", json={"batch": b["id"]}, headers=h.AUTH)
    assert r.get_json()["status"] == "approved"
    visits = client.get(f"/api/visits?batch={b['id']}", headers=h.AUTH).get_json()["visits"]
    assert [v["status"] for v in visits] == ["approved"]
    r = client.post(f"/api/visits/{visits[0]['id']}/reject", json={"note": "changed my mind"}, headers=h.AUTH)
    assert r.get_json()["status"] == "rejected"
    assert client.post(f"/api/workers/{wid}/promote", headers=h.AUTH).get_json()["field"] == "action"
    assert client.post("/api/workers/9999/flag", headers=h.AUTH).status_code == 404
    types = [e["type"] for e in client.get(f"/api/events?batch={b['id']}", headers=h.AUTH).get_json()["events"]]
    assert types[0] == "batch_created" and types.count("submit") == 3 and "visit_reject" in types


def test_submit_errors(client, h, sheets_dir):
    b = h.create_batch(client, kind="rate_arguments", redundancy=1)
    w = h.WorkerClient(client, b["id"], "err").start()
    n = w.next()
    status, data = w.submit(n["assignment_token"], {"arguments": {"1": "yes"}, "match": 3})
    assert (status, data["field"]) == (400, "answer.arguments.2")
    status, data = w.submit(n["assignment_token"] + "x", h.answer_for(n["task"]))
    assert (status, data["field"]) == (403, "assignment_token")
    status, data = w.submit(n["assignment_token"], h.answer_for(n["task"]), client_token="short")
    assert (status, data["field"]) == (400, "client_token")
    big = {"assignment_token": n["assignment_token"], "client_token": "x" * 20,
           "answer": {"arguments": {"1": "yes", "2": "no"}, "match": 3, "comment": "x" * 70_000}}
    r = client.post("/w/api/submit", json=big)
    assert r.status_code == 413 and r.get_json()["status"] == 413
    r = client.post("/w/api/submit", data="{not json", content_type="application/json")
    assert r.status_code == 400 and r.get_json()["field"] == "body"
    ok, first = w.submit(n["assignment_token"], h.answer_for(n["task"]), client_token="same-token-1")
    again, second = w.submit(n["assignment_token"], h.answer_for(n["task"], 1), client_token="same-token-1")
    assert (ok, again) == (201, 200) and second == {**first, "duplicate": True}
    status, data = w.post("/w/api/next", {"visit_token": "forged.token"})
    assert (status, data["field"]) == (403, "visit_token")


def test_batch_pause_and_close(client, h):
    b = h.create_batch(client, redundancy=1)
    r = client.patch(f"/api/batches/{b['id']}", json={"status": "paused"}, headers=h.AUTH)
    assert r.get_json()["status"] == "paused"
    status, data = h.WorkerClient(client, b["id"], "late").post("/w/api/start", {"batch": b["id"]})
    assert status == 403 and data["field"] == "batch"
    assert client.patch(f"/api/batches/{b['id']}", json={"status": "gone"}, headers=h.AUTH).status_code == 400
