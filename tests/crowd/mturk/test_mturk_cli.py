"""`argus mturk ...` through click's runner, against the fake endpoint and a real database."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from argus.cli import cli
from mturk_sim import do_assignment

SECRET = "argus-test-dummy-secret-never-real"


@pytest.fixture
def run(fake, crowd_app, monkeypatch):
    monkeypatch.setenv("ARGUS_SECRET_KEY", "mturk-test-secret")
    db_url = crowd_app.config["DATABASE_URL"]

    def invoke(*args, input=None, live=False):
        base = ["mturk", "--live" if live else "--sandbox", "--endpoint-url", fake.url, "--database-url", db_url,
                "--max-attempts", "2", "--no-progress"]
        result = CliRunner().invoke(cli, base + [str(a) for a in args], input=input, catch_exceptions=False)
        assert SECRET not in result.output  # credentials are never echoed
        return result

    return invoke


def test_credentials_never_logged(run, fake, make_batch, caplog):
    import logging

    caplog.set_level(logging.DEBUG)  # botocore's own debug logging included
    bid = make_batch(n_images=2, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    out = run("launch", bid, "--server-url", "https://argus.example.org", "--title", "T", "--description", "D",
              "--execute")
    assert out.exit_code == 0 and caplog.records
    assert SECRET not in caplog.text
    argus_logs = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("argus"))
    assert "AKIAARGUSTESTDUMMYKEY" not in argus_logs


def test_balance_and_dry_run_launch(run, fake, make_batch):
    out = run("balance")
    assert out.exit_code == 0 and "sandbox" in out.output and "$10000.00" in out.output
    bid = make_batch(n_images=6, redundancy=2, tasks_per_visit=3, gold_rate=0.34)
    common = ["launch", bid, "--server-url", "https://argus.example.org", "--title", "Label images",
              "--description", "Pick the class"]
    out = run(*common, "--assignments", 20)
    assert out.exit_code == 0, out.output
    assert "2 HITs x 9 + 1 HIT x 2 = 20 assignments" in out.output
    assert "$12.00" in out.output  # 20 x $0.50 + 20%
    assert "Dry run" in out.output and not fake.hits
    out = run(*common, "--assignments", 20, "--max-budget", "11.99", "--execute")
    assert out.exit_code != 0 and "max-budget" in out.output and not fake.hits


def test_live_needs_typed_confirmation(run, fake, make_batch):
    bid = make_batch(n_images=2, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    common = ["launch", bid, "--server-url", "https://argus.example.org", "--title", "T", "--description", "D",
              "--execute"]
    out = run(*common, input="yes\n", live=True)
    assert out.exit_code != 0 and "not confirmed" in out.output and not fake.hits
    out = run(*common, input="LIVE\n", live=True)
    assert out.exit_code == 0, out.output
    assert len(fake.hits) == 1 and "LIVE MTurk" in out.output
    # the flag also works after the subcommand
    out = run("expire", bid, "--live", input="no\n")
    assert out.exit_code != 0 and "not confirmed" in out.output and fake.live_hits()[0]["HITStatus"] == "Assignable"
    out = run("expire", bid, "--live", input="LIVE\n")
    assert out.exit_code == 0 and fake.live_hits()[0]["HITStatus"] == "Reviewable"


@pytest.mark.slow
def test_full_cycle_through_the_cli(run, fake, make_batch, argus_server, tmp_path):
    bid = make_batch(n_images=4, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    out = run("launch", bid, "--entry-url", f"{argus_server}/w/{bid}", "--title", "T", "--description", "D",
              "--locale", "US", "--execute")
    assert out.exit_code == 0, out.output
    (hit,) = fake.hits
    assert fake.hits[hit]["QualificationRequirements"][1]["LocaleValues"] == [{"Country": "US"}]
    for w in ("AW1", "AW2"):
        do_assignment(fake, hit, w, argus_server)
    assert "Submitted" in run("sync", bid).output
    out = run("review", bid, "--bonus", "0.10")
    assert "approve 2 ($1.20), bonus 2 ($0.24); total $1.44" in out.output and "Dry run" in out.output, out.output
    assert {a["AssignmentStatus"] for a in fake.assignments.values()} == {"Submitted"}
    out = run("review", bid, "--reject-below", "0.9")  # nobody has 10 scored gold answers: no rejection
    assert out.exit_code == 0 and "reject" not in out.output.split("Dry run")[0].split("\n")[-2]
    assert run("review", bid, "--execute").exit_code == 0
    assert {a["AssignmentStatus"] for a in fake.assignments.values()} == {"Approved"}
    (tmp_path / "bonus.csv").write_text("worker_id,amount\nAW1,0.30\n")
    out = run("bonus", bid, "--csv", tmp_path / "bonus.csv", "--reason", "Thanks", "--execute")
    assert out.exit_code == 0 and "Paid now: 1" in out.output
    out = run("bonus", bid, "--csv", tmp_path / "bonus.csv", "--reason", "Thanks", "--execute")
    assert "already paid earlier: 1" in out.output and len(fake.bonuses) == 1
    out = run("status", bid)
    assert "bonuses paid" in out.output and "$0.30" in out.output and "$1.00" in out.output
    out = run("review", bid, "--reject", next(iter(fake.assignments)), "--feedback", "Wrong answers everywhere", "--yes")
    assert out.exit_code != 0 and "already approved" in out.output
    assert run("block", "AW2", "--reason", "test").exit_code == 0 and "AW2" in fake.blocks
    assert "Sent to 2 workers" in run("notify", bid, "--subject", "Hi", "--message", "Thanks").output
    out = run("expire", bid, "--delete")
    assert "Expired 1 HITs" in out.output and "Deleted 1 HITs" in out.output


@pytest.mark.slow
def test_requester_commands_through_the_cli(run, fake, make_batch, argus_server):
    bid = make_batch(n_images=4, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    out = run("launch", bid, "--entry-url", f"{argus_server}/w/{bid}", "--title", "T", "--description", "D",
              "--assignments", 2, "--masters", "--min-approved-hits", 100, "--planned-bonuses", "1.00",
              "--planned-bonus-count", 100)
    assert out.exit_code == 0, out.output
    assert "MTurk fee (25%, Masters)" in out.output and "MTurk fee on 100 bonuses" in out.output
    assert run("launch", bid, "--entry-url", f"{argus_server}/w/{bid}", "--title", "T", "--description", "D",
               "--assignments", 2, "--execute").exit_code == 0
    (hit,) = fake.hits
    do_assignment(fake, hit, "AW1", argus_server)
    # extend: plan, then execute
    out = run("extend", bid, "--assignments", 3, "--time", "2d")
    assert out.exit_code == 0 and "$1.80" in out.output and "Dry run" in out.output and fake.hits[hit]["MaxAssignments"] == 2
    out = run("extend", bid, "--assignments", 3, "--time", "2d", "--execute")
    assert out.exit_code == 0, out.output
    assert fake.hits[hit]["MaxAssignments"] == 5
    out = run("extend", bid, "--assignments", 5, "--key", "again", "--execute")
    assert out.exit_code != 0 and "InvalidMaximumAssignmentsIncrease" in out.output
    # compensation HIT for one worker
    out = run("compensate", "AW1", "--amount", "1.00", "--reason", "Sorry: your submission failed.", "--execute")
    assert out.exit_code == 0 and "live" in out.output, out.output
    # qualifications: exclude a worker, take it back; grade a request
    assert run("qualification", "grant", "AW1", "--low-quality").exit_code == 0
    out = run("qualification", "revoke", "AW1", "--low-quality", "--reason", "Appeal accepted")
    assert out.exit_code == 0 and "revoked" in out.output
    qual = next(q for q, t in fake.qual_types.items() if t["Name"].startswith("Argus excluded"))
    rid = fake.request_qualification(qual, "AW2")
    out = run("qualification", "requests")
    assert rid in out.output and "AW2" in out.output
    out = run("qualification", "requests", "--reject", rid)
    assert out.exit_code != 0 and "--reason" in out.output
    assert rid in run("qualification", "requests", "--grant", f"{rid}:3").output and fake.worker_quals[(qual, "AW2")][
        "IntegerValue"] == 3
    # notifications
    out = run("notifications", bid, "--sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/argus", "--test")
    assert out.exit_code == 0 and "SQS" in out.output and len(fake.test_events) == 1
    assert run("notifications", bid, "--off").exit_code == 0
    assert {s["Active"] for s in fake.notification_settings.values()} == {False}
