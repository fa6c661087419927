"""`argus crowd` commands through click's runner on a SQLite file."""

import csv
import json

import pyarrow.parquet as pq
from click.testing import CliRunner
from sqlalchemy import select

from argus.cli import cli
from crowd import service as S
from crowd.app import create_app
from crowd.db import get_database
from crowd.models import Provider, Visit, Worker


def test_cli_init_create_status_export(tmp_path, sheets_dir, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("ARGUS_DATABASE_URL", url)
    monkeypatch.setenv("ARGUS_SECRET_KEY", "cli-secret")
    runner = CliRunner()
    r = runner.invoke(cli, ["crowd", "init-db"])
    assert r.exit_code == 0 and "schema version none -> 4" in r.output, r.output
    assert "schema version 4 -> 4" in runner.invoke(cli, ["crowd", "init-db"]).output
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


def test_cli_links_sign_worker_links_the_server_accepts(tmp_path, sheets_dir, monkeypatch):
    url = f"sqlite:///{tmp_path / 'links.db'}"
    monkeypatch.setenv("ARGUS_DATABASE_URL", url)
    monkeypatch.setenv("ARGUS_SECRET_KEY", "links-secret")
    runner = CliRunner()
    assert runner.invoke(cli, ["crowd", "batch", "create", str(sheets_dir), "--kind", "label"]).exit_code == 0
    out = tmp_path / "links.csv"
    r = runner.invoke(cli, ["crowd", "links", "1", "--workers", "alice,bob", "--base-url", "https://study.example.org",
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert [row["worker"] for row in rows] == ["alice", "bob"]
    assert all(row["url"].startswith("https://study.example.org/w/1?wt=") and row["url"] in r.output for row in rows)
    assert len(runner.invoke(cli, ["crowd", "links", "1", "--count", "4"]).output.strip().splitlines()) == 2 + 4
    for bad, message in ((["--workers", "anon-x"], "anon-"), ([], "either --workers or --count"),
                         (["--workers", "a", "--count", "2"], "either --workers or --count")):
        r = runner.invoke(cli, ["crowd", "links", "1", *bad])
        assert r.exit_code != 0 and message in r.output, r.output
    client = create_app({"DATABASE_URL": url, "SECRET_KEY": "links-secret"}).test_client()
    entry = client.get(rows[1]["url"].replace("https://study.example.org", ""))
    assert entry.status_code == 302
    with get_database(client.application).reading() as s:
        visit = s.scalars(select(Visit)).one()
        assert s.get(Worker, visit.worker_id).external_id == "bob"


def test_cli_batch_with_practice_and_feature_names(tmp_path, sheets_dir, monkeypatch):
    from crowd.models import Batch

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("ARGUS_DATABASE_URL", url)
    monkeypatch.setenv("ARGUS_SECRET_KEY", "cli-secret")
    runner = CliRunner()
    assert runner.invoke(cli, ["crowd", "init-db"]).exit_code == 0
    practice = tmp_path / "practice.json"
    practice.write_text(json.dumps([{"sheet": "s1", "kind": "rate_arguments", "answer": {"arguments": {"1": "yes"}},
                                     "explain": "The round part is the apple."}]))
    r = runner.invoke(cli, ["crowd", "batch", "create", str(sheets_dir), "--kind", "rate_arguments", "--practice",
                            str(practice), "--practice-pass", "1", "--show-feature-names"])
    assert r.exit_code == 0, r.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"sheet": "s9", "kind": "rate_arguments", "answer": {"arguments": {"1": "yes"}}}]))
    r = runner.invoke(cli, ["crowd", "batch", "create", str(sheets_dir), "--kind", "rate_arguments", "--practice",
                            str(bad)])
    assert r.exit_code != 0 and "practice.0: no rate_arguments task for 's9' in this batch" in r.output, r.output
    app = create_app({"DATABASE_URL": url})
    with app.app_context(), get_database(app).reading() as s:
        options = s.scalar(select(Batch.options))
    assert (options["show_feature_names"], options["practice_pass"], options["practice_key"]) == \
        (True, 1.0, "kinds:rate_arguments")
    assert options["practice"][0]["explain"] == "The round part is the apple."
