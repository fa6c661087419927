"""`argus crowd` commands through click's runner on a SQLite file."""

import csv
import json

import pyarrow.parquet as pq
from click.testing import CliRunner

from argus.cli import cli
from crowd import service as S
from crowd.app import create_app
from crowd.db import get_database
from crowd.models import Provider


def test_cli_init_create_status_export(tmp_path, sheets_dir, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("ARGUS_DATABASE_URL", url)
    monkeypatch.setenv("ARGUS_SECRET_KEY", "cli-secret")
    runner = CliRunner()
    r = runner.invoke(cli, ["crowd", "init-db"])
    assert r.exit_code == 0 and "schema version none -> 3" in r.output, r.output
    assert "schema version 3 -> 3" in runner.invoke(cli, ["crowd", "init-db"]).output
    gold = tmp_path / "gold.json"
    gold.write_text(json.dumps([{"sheet": "s2", "answer": {"label": "banana"}}]))
    r = runner.invoke(cli, ["crowd", "batch", "create", str(sheets_dir), "--kind", "label", "-R", "1", "-k", "3",
                            "--gold", str(gold), "--gold-rate", "0.2"])
    assert r.exit_code == 0 and "batch 1 created: 3 tasks {'label': 3}, 1 gold, R=1" in r.output, r.output
    r = runner.invoke(cli, ["crowd", "batch", "create", str(sheets_dir), "--kind", "poetry"])
    assert r.exit_code != 0 and "poetry" in r.output

    app = create_app({"DATABASE_URL": url})
    db = get_database(app)
    with app.app_context():
        with db.transaction() as s:
            v = S.start_visit(s, 1, S.Identity(Provider.lab, "cli-worker"))
            S.record_consent(s, v, "1")
        while True:
            with db.transaction() as s:
                a = S.lease_next(s, S.get_visit(s, v.id))
                ids = a and (a.id, a.worker_id)
            if not ids:
                break
            S.submit(db, *ids, {"label": "apple"}, f"cli-token-{ids[0]}")
    db.engine.dispose()

    r = runner.invoke(cli, ["crowd", "batch", "status", "1", "--json"])
    status = json.loads(r.output)
    assert (status["tasks"], status["judgments"], status["gold_tasks"]) == (3, 3, 1)
    table = runner.invoke(cli, ["crowd", "batch", "status"]).output
    assert table.splitlines()[0].split()[:4] == ["id", "name", "kinds", "status"] and "3/3" in table

    out_csv, out_pq = tmp_path / "j.csv", tmp_path / "j.parquet"
    assert "wrote 3 rows" in runner.invoke(cli, ["crowd", "export", "1", "--out", str(out_csv)]).output
    assert "wrote 3 rows" in runner.invoke(cli, ["crowd", "export", "1", "-o", str(out_pq), "--hash-workers"]).output
    rows = list(csv.DictReader(out_csv.open()))
    assert {r["worker"] for r in rows} == {"cli-worker"} and {r["label"] for r in rows} == {"apple"}
    hashed = pq.read_table(out_pq).column("worker").to_pylist()
    assert len(set(hashed)) == 1 and hashed[0].startswith("h:")
    assert runner.invoke(cli, ["crowd", "export", "9", "-o", str(out_csv)]).exit_code != 0
    assert "cli-worker" in runner.invoke(cli, ["crowd", "workers", "1"]).output
