"""One test per defect of issue #15, each against the fake that now behaves like real MTurk
(re-issued assignment ids, HitAlreadyExists by code, ExpireAt de-duplication, refusals), so
each fails on the adapter as it was and passes on the fixed one."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
import requests
from sqlalchemy import select

from crowd.app import create_app
from crowd.db import get_database
from crowd.providers.mturk_client import (
    LIVE_ENDPOINT, SANDBOX_ENDPOINT, MTurkClient, MTurkError, estimate_hits, external_question_xml, make_boto_client,
    unique_request_token,
)
from crowd.providers.mturk_models import HitState, MTurkBonus, MTurkHit
from crowd.providers.mturk_service import BudgetExceeded, LaunchSettings, MTurkService, MTurkServiceError
from mturk_sim import do_assignment, label_batch


def settings(server, batch_id, **kw):
    kw = {"title": "Label small images", "description": "Pick the class of each image", **kw}
    return LaunchSettings(entry_url=f"{server}/w/{batch_id}", allow_http=True, **kw)


def one_shot(crowd_db, fake):
    """One attempt per call, so an injected failure reaches the command."""
    client = MTurkClient.connect("sandbox", endpoint_url=fake.url, max_attempts=1)  # no "timeout" injected here
    return MTurkService(crowd_db, client, progress=False)


def launch_with_lost_create(crowd_db, fake, make_batch, argus_server):
    """A one-HIT launch whose CreateHITWithHITType went through on MTurk but whose answer was
    lost. Returns (service, batch id, the HIT id only MTurk knows)."""
    bid = make_batch(n_images=4, redundancy=1, tasks_per_visit=4, gold_rate=0.0)
    svc = one_shot(crowd_db, fake)
    fake.inject("CreateHITWithHITType", "drop")
    with pytest.raises(MTurkError):
        svc.launch(bid, settings(argus_server, bid), dry_run=False)
    (hit_id,) = fake.hits
    return svc, bid, hit_id


def assignment_id(url: str) -> str:
    return re.search(r"assignmentId=([A-Z0-9]+)", url).group(1)


# ---------------------------------------------------------------- 1. re-issued assignment ids


def test_1_reissued_assignment_id_is_not_credited_with_the_first_workers_work(service, fake, make_batch,
                                                                                argus_server):
    """MTurk gives a returned assignment's same AssignmentId to the next worker. Sync must match
    MTurk's assignment to a visit by (assignmentId, workerId), or worker B is paid for A's work."""
    bid = make_batch(n_images=4, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    hit = service.launch(bid, settings(argus_server, bid, assignments=1), dry_run=False).hits[0]["hit_id"]
    fake.inject("externalSubmit", "fault")
    a = do_assignment(fake, hit, "AWA", argus_server)  # A does the work, MTurk never gets the submit
    assert a["tasks"] == 2 and a["submit_status"] == 503
    fake.return_assignment(a["assignment_id"])
    b_id = assignment_id(fake.accept(hit, "AWB"))
    assert b_id == a["assignment_id"]  # the same id, now B's
    # B submits without doing any work on the Argus server
    assert requests.post(f"{fake.url}/mturk/externalSubmit", data={"assignmentId": b_id}).status_code == 200
    report = service.sync(bid)
    assert report["no_local_work"] == 1 and report["not_submitted"] == 1
    assert [n["worker_id"] for n in service.status(bid)["not_submitted"]] == ["AWA"]
    (plan,) = service.plan_review(bid)
    assert (plan["worker_id"], plan["action"]) == ("AWB", "hold") and "no work" in plan["reason"]


# ---------------------------------------------------------------- 2. a create whose answer was lost


@pytest.mark.parametrize("command", ["expire", "sync"])
def test_2_hit_whose_create_answer_was_lost_is_found_by_sync_and_expire(crowd_db, fake, make_batch, argus_server,
                                                                         command):
    svc, bid, hit_id = launch_with_lost_create(crowd_db, fake, make_batch, argus_server)
    assert fake.hits[hit_id]["HITStatus"] == "Assignable"
    if command == "expire":
        assert svc.expire(bid) == 1
        assert fake.hits[hit_id]["HITStatus"] == "Reviewable"  # no new worker can take it
    else:
        assert svc.sync(bid)["hits"] == 1
    with crowd_db.reading() as s:
        row = s.scalar(select(MTurkHit).where(MTurkHit.batch_id == bid))
    assert row.hit_id == hit_id and row.state == (HitState.expired if command == "expire" else HitState.live)


# ---------------------------------------------------------------- 3. expiring twice


def test_3_expire_converges_after_a_lost_answer(crowd_db, fake, make_batch, argus_server):
    """UpdateExpirationForHIT is de-duplicated on (HITId, ExpireAt): the retry is refused with
    "idempotency token ... already processed"; expire reads the HIT back and goes on."""
    bid = make_batch(n_images=6, redundancy=3, tasks_per_visit=2, gold_rate=0.0)
    svc = one_shot(crowd_db, fake)
    svc.launch(bid, settings(argus_server, bid, assignments=18), dry_run=False)  # two HITs
    fake.inject("UpdateExpirationForHIT", "drop")  # HIT 1 expires on MTurk, the answer is lost
    with pytest.raises(MTurkError):
        svc.expire(bid)
    assert svc.expire(bid) == 2
    assert {h["HITStatus"] for h in fake.live_hits()} == {"Reviewable"}
    assert fake.requests["UpdateExpirationForHIT"] == 3  # the repeat was refused, then read back
    with crowd_db.reading() as s:
        assert {r.state for r in s.scalars(select(MTurkHit).where(MTurkHit.batch_id == bid))} == {HitState.expired}
    # a HIT refused although it has not expired is an error, never taken as done
    with crowd_db.transaction() as s:
        for r in s.scalars(select(MTurkHit).where(MTurkHit.batch_id == bid)):
            r.state = HitState.live
    hit_id = next(iter(fake.hits))
    fake.hits[hit_id]["Expiration"] = fake.now() + 3600
    with pytest.raises(MTurkError, match="idempotency token"):
        svc.expire(bid)


# ---------------------------------------------------------------- 4. errors by code


@pytest.mark.parametrize("mode", ["drop", "timeout"])
def test_4_duplicate_token_is_recognised_by_turk_error_code(fake, fake_client, mode):
    """Real MTurk answers a repeated token with TurkErrorCode AWS.MechanicalTurk.HitAlreadyExists
    and a message that names no HIT; the client finds the HIT by its annotation."""
    hit_type = fake_client.create_hit_type("t", "d", "0.10", 600, 3600)
    xml = external_question_xml("http://127.0.0.1:1/entry", allow_http=True)
    token = unique_request_token("hit", "sandbox", "b1", 0)
    fake.inject("CreateHITWithHITType", mode)  # applied, answer lost; botocore retries
    hit = fake_client.create_hit(hit_type, xml, 2, 3600, token, annotation=token)
    assert hit["Recovered"] is True and hit["HITId"] in fake.hits and len(fake.hits) == 1
    assert fake.requests["CreateHITWithHITType"] == 2


def test_4_a_message_that_looks_like_a_used_token_is_not_taken_for_one():
    from botocore.stub import Stubber

    boto = make_boto_client("sandbox")
    client = MTurkClient(boto, "sandbox")
    with Stubber(boto) as stub:
        stub.add_client_error("create_hit_with_hit_type", "RequestError",
                              'The HIT with ID "3HITAAAAAAAAAAAAAAAAAAAAAAAAAA" already exists. The UniqueRequestToken '
                              "has already been used.", modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.XMLParseError"})
        with pytest.raises(MTurkError) as err:
            client.create_hit("TYPE1", "<Q/>", 1, 3600, "tok-1", annotation="tok-1")
        stub.assert_no_pending_responses()  # no GetHIT: the message wording decides nothing
    assert err.value.turk_code == "AWS.MechanicalTurk.XMLParseError"


# ---------------------------------------------------------------- 5. the live-money guard


@pytest.mark.parametrize("environment,url,allowed", [
    ("sandbox", LIVE_ENDPOINT, False),
    ("sandbox", "https://mturk-requester.example.net", False),
    ("sandbox", "http://127.0.0.1.example.net:9000", False),
    ("live", SANDBOX_ENDPOINT, False),
    ("sandbox", SANDBOX_ENDPOINT, True),
    ("live", LIVE_ENDPOINT, True),
    ("sandbox", "http://127.0.0.1:9000", True),
    ("sandbox", "http://localhost:9000", True),
    ("sandbox", "http://[::1]:9000", True),
], ids=["live-url-in-sandbox", "foreign-host", "loopback-lookalike", "sandbox-url-in-live", "own-sandbox",
        "own-live", "loopback-v4", "localhost", "loopback-v6"])
def test_5_endpoint_override_only_for_loopback_or_the_environments_own(environment, url, allowed):
    if allowed:
        assert make_boto_client(environment, endpoint_url=url).meta.endpoint_url.rstrip("/") == url.rstrip("/")
    else:
        with pytest.raises(ValueError, match="refused"):
            make_boto_client(environment, endpoint_url=url)


def test_5_cli_refuses_the_production_endpoint_without_live(crowd_app, monkeypatch):
    from click.testing import CliRunner

    from argus.cli import cli

    monkeypatch.setenv("ARGUS_MTURK_ENDPOINT_URL", LIVE_ENDPOINT)
    out = CliRunner().invoke(cli, ["mturk", "--database-url", crowd_app.config["DATABASE_URL"], "balance"])
    assert out.exit_code != 0 and "--live" in out.output and "refused" in out.output


# ---------------------------------------------------------------- 6. tokens unique per database


def test_6_a_reinitialised_database_never_adopts_an_earlier_databases_hit(fake, fake_client, tmp_path, argus_server):
    launched = []
    for i in range(2):  # the same batch 1 in two fresh databases, within MTurk's 24 h token memory
        app = create_app({"TESTING": True, "SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{tmp_path / f'db{i}.db'}"})
        db = get_database(app)
        bid = label_batch(db, tmp_path / f"img{i}", n_images=2, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
        assert bid == 1
        svc = MTurkService(db, fake_client, progress=False)
        launched.append(svc.launch(bid, settings(argus_server, bid), dry_run=False).hits[0]["hit_id"])
        db.engine.dispose()
    assert len(fake.hits) == 2 and launched[0] != launched[1]


def test_6_a_hit_with_our_token_but_another_url_is_not_adopted(crowd_db, fake, make_batch, argus_server):
    svc, bid, hit_id = launch_with_lost_create(crowd_db, fake, make_batch, argus_server)
    fake.hits[hit_id]["Question"] = external_question_xml("https://elsewhere.example.org/w/1")
    fake.hit_tokens.clear()  # 24 hours later: only the annotation links the HIT to the row
    with pytest.raises(MTurkServiceError, match="elsewhere.example.org"):
        svc.launch(bid, settings(argus_server, bid), dry_run=False)
    with crowd_db.reading() as s:
        assert s.scalar(select(MTurkHit.hit_id).where(MTurkHit.batch_id == bid)) is None


# ---------------------------------------------------------------- 7. local validation


@pytest.mark.parametrize("field,value,message", [
    ("auto_approval_delay_s", 31 * 86400, "auto-approval delay"),
    ("assignment_duration_s", 29, "assignment duration"),
    ("lifetime_s", 20, "lifetime"),
    ("reward", "0.00", "reward"),
    ("title", "x" * 129, "title"),
    ("description", "x" * 2001, "description"),
    ("keywords", "x," * 501, "keywords"),
    ("locales", ("US-CAL",), "locale"),
    ("locales", ("US-C",), "locale"),
], ids=["auto-approve-31d", "duration-29s", "lifetime-20s", "reward-0", "title-129", "description-2001",
        "keywords-1002", "subdivision-3", "subdivision-1"])
def test_7_launch_settings_are_checked_before_any_call(service, fake, make_batch, argus_server, field, value, message):
    bid = make_batch(n_images=2, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    for dry_run in (True, False):
        with pytest.raises((ValueError, MTurkServiceError), match=message):
            service.launch(bid, settings(argus_server, bid, **{field: value}), dry_run=dry_run)
    assert sum(fake.requests.values()) == 0


@pytest.mark.parametrize("bad", ["W1", "a1b2", "A1 ", "A-1"])
def test_7_worker_ids_are_checked_before_any_call(service, fake, bad):
    for call in (lambda: service.block([bad], "Copied answers"), lambda: service.unblock([bad], "appeal"),
                 lambda: service.notify([bad], "Hi", "Thanks")):
        with pytest.raises((ValueError, MTurkServiceError), match="worker id"):
            call()
    assert sum(fake.requests.values()) == 0


# ---------------------------------------------------------------- 8. money


def test_8_bonus_checks_the_balance_before_paying(service, fake, make_batch, argus_server, crowd_db):
    bid = make_batch(n_images=4, redundancy=1, tasks_per_visit=2, gold_rate=0.0)
    hit = service.launch(bid, settings(argus_server, bid), dry_run=False).hits[0]["hit_id"]
    for w in ("AW1", "AW2"):
        do_assignment(fake, hit, w, argus_server)
    service.sync(bid)
    service.review(bid, dry_run=False)
    plan = service.plan_bonuses(bid, amount="0.40")
    fake.balance = Decimal("0.95")  # 2 x ($0.40 + $0.08) = $0.96 needed
    with pytest.raises(BudgetExceeded, match=r"\$0.96.*balance \$0.95"):
        service.bonus(bid, plan, "Careful work", dry_run=False)
    assert fake.requests["SendBonus"] == 0 and fake.bonuses == []
    with crowd_db.reading() as s:
        assert s.scalar(select(MTurkBonus.id).where(MTurkBonus.batch_id == bid)) is None


def test_8_estimates_charge_mturks_minimum_fee_per_bonus():
    # 100 assignments of $0.10 in HITs of <= 9; $1.00 of bonuses is at most 100 bonuses of $0.01,
    # and MTurk takes at least $0.01 on each: $1.00 in fees, not 20% of $1.00
    est = estimate_hits("0.10", [9] * 11 + [1], planned_bonuses="1.00")
    assert (est.rewards, est.fees, est.bonuses, est.bonus_fees, est.total) == (
        Decimal("10.00"), Decimal("2.00"), Decimal("1.00"), Decimal("1.00"), Decimal("14.00"))
    # one bonus of $1.00 pays $0.20
    assert estimate_hits("0.10", [1], planned_bonuses="1.00", bonus_count=1).bonus_fees == Decimal("0.20")
