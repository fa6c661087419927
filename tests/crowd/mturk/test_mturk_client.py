"""The thin MTurk client: exact request shapes (botocore Stubber), error paths, pure helpers,
and retries/idempotency against the fake endpoint."""

from __future__ import annotations

from decimal import Decimal
from xml.etree import ElementTree

import boto3
import pytest
from botocore.stub import ANY, Stubber

from service_model import attach_validator

from crowd.providers.mturk_client import (
    EXTERNAL_QUESTION_NS, LIVE_ENDPOINT, SANDBOX_ENDPOINT, MTurkClient, MTurkError, estimate_cost,
    external_question_xml, make_boto_client, money, qualification_requirements, split_assignments,
    unique_request_token,
)

HIT_ID = "3HITAAAAAAAAAAAAAAAAAAAAAAAAAA"  # 30 chars like MTurk's ids


@pytest.fixture
def stubbed():
    boto = boto3.client("mturk", region_name="us-east-1", endpoint_url=SANDBOX_ENDPOINT)
    attach_validator(boto)  # the model's pattern/max/enum constraints too, not only Stubber's checks
    with Stubber(boto) as stub:
        yield MTurkClient(boto, "sandbox"), stub
        stub.assert_no_pending_responses()


# ---------------------------------------------------------------- pure helpers


@pytest.mark.parametrize("reward,n_hits,per_hit,bonus,total,fees", [
    ("0.50", 4, 9, "0", "21.60", "3.60"),     # 36 x 0.50 = 18.00 + 20% = 3.60
    ("0.50", 2, 10, "0", "14.00", "4.00"),    # 20 x 0.50 = 10.00 + 40% (>= 10 assignments)
    ("0.50", 1, 9, "5.00", "11.40", "0.90"),  # 4.50 + 0.90 + 5.00 bonus + 1.00 bonus fee
    ("0.02", 1, 3, "0", "0.09", "0.03"),      # fee minimum $0.01 per assignment
], ids=["20pct", "40pct-10-assignments", "with-bonuses", "min-fee"])
def test_estimate_cost_exact(reward, n_hits, per_hit, bonus, total, fees):
    est = estimate_cost(reward, n_hits, per_hit, bonus)
    assert est.total == Decimal(total)
    assert est.fees == Decimal(fees)
    assert est.assignments == n_hits * per_hit
    assert dict(est.rows())["total"] == f"${total}"


def test_money_and_split_validation():
    assert money("$1.5") == Decimal("1.50")
    for bad in ("-1", "abc", "0.005", "nan"):
        with pytest.raises(ValueError, match="reward"):
            money(bad, "reward")
    assert split_assignments(20, 9) == [9, 9, 2]
    assert split_assignments(9, 9) == [9]
    with pytest.raises(ValueError):
        split_assignments(0)


def test_unique_request_token_is_deterministic_and_short():
    a = unique_request_token("hit", "sandbox", "batch-7", 0)
    assert a == unique_request_token("hit", "sandbox", "batch-7", 0)
    assert a != unique_request_token("hit", "sandbox", "batch-7", 1)
    assert a != unique_request_token("hit", "live", "batch-7", 0)
    long = unique_request_token("bonus" * 40, "x" * 500)
    assert len(a) <= 64 and len(long) <= 64 and a.startswith("argus-hit-")


def test_external_question_xml_escapes_and_requires_https():
    xml = external_question_xml("https://argus.example.org/mturk/entry?batch=3&kind=rate", frame_height=800)
    root = ElementTree.fromstring(xml.encode())
    assert root.tag == f"{{{EXTERNAL_QUESTION_NS}}}ExternalQuestion"
    assert root.findtext(f"{{{EXTERNAL_QUESTION_NS}}}ExternalURL") == "https://argus.example.org/mturk/entry?batch=3&kind=rate"
    assert root.findtext(f"{{{EXTERNAL_QUESTION_NS}}}FrameHeight") == "800"
    with pytest.raises(ValueError, match="https"):
        external_question_xml("http://argus.example.org/entry")
    with pytest.raises(ValueError, match="entry URL"):
        external_question_xml("javascript:alert(1)")


def test_qualification_requirements_shape():
    reqs = qualification_requirements(min_approval_rate=98, min_approved_hits=500, locales=["US", "ca-on"],
                                      participated_qualification_ids=["QPART"], qualification_test_id="QTEST",
                                      qualification_test_min_score=80)
    assert reqs == [
        {"QualificationTypeId": "000000000000000000L0", "Comparator": "GreaterThanOrEqualTo", "IntegerValues": [98],
         "ActionsGuarded": "Accept"},
        {"QualificationTypeId": "00000000000000000040", "Comparator": "GreaterThanOrEqualTo", "IntegerValues": [500],
         "ActionsGuarded": "Accept"},
        {"QualificationTypeId": "00000000000000000071", "Comparator": "In",
         "LocaleValues": [{"Country": "US"}, {"Country": "CA", "Subdivision": "ON"}], "ActionsGuarded": "Accept"},
        {"QualificationTypeId": "QPART", "Comparator": "DoesNotExist", "ActionsGuarded": "DiscoverPreviewAndAccept"},
        {"QualificationTypeId": "QTEST", "Comparator": "GreaterThanOrEqualTo", "IntegerValues": [80],
         "ActionsGuarded": "Accept"},
    ]
    with pytest.raises(ValueError, match="locale"):
        qualification_requirements(locales=["United States"])


def test_sandbox_is_the_default_endpoint():
    assert make_boto_client().meta.endpoint_url == SANDBOX_ENDPOINT
    assert make_boto_client("live").meta.endpoint_url == LIVE_ENDPOINT
    cfg = make_boto_client(retry_mode="adaptive", max_attempts=7).meta.config
    assert cfg.retries == {"mode": "adaptive", "total_max_attempts": 7}
    with pytest.raises(ValueError, match="environment"):
        make_boto_client("production")


# ---------------------------------------------------------------- exact request shapes


def test_balance_and_hit_type_requests(stubbed):
    client, stub = stubbed
    stub.add_response("get_account_balance", {"AvailableBalance": "10000.00"}, {})
    reqs = qualification_requirements(locales=["US"])
    stub.add_response("create_hit_type", {"HITTypeId": "TYPE1"}, {
        "Title": "Judge arguments", "Description": "Rate a model's reasons", "Reward": "0.50",
        "AssignmentDurationInSeconds": 1800, "AutoApprovalDelayInSeconds": 259200, "Keywords": "image,rating",
        "QualificationRequirements": reqs})
    assert client.balance() == Decimal("10000.00")
    assert client.create_hit_type("Judge arguments", "Rate a model's reasons", "0.5", 1800, 259200,
                                  "image,rating", reqs) == "TYPE1"


def test_create_hit_request_and_recovery_from_used_token(stubbed):
    client, stub = stubbed
    xml = external_question_xml("https://argus.example.org/mturk/entry?batch=1")
    token = unique_request_token("hit", "sandbox", 1, 0)
    expected = {"HITTypeId": "TYPE1", "MaxAssignments": 9, "LifetimeInSeconds": 86400, "Question": xml,
                "RequesterAnnotation": token, "UniqueRequestToken": token}
    stub.add_response("create_hit_with_hit_type", {"HIT": {"HITId": HIT_ID, "HITStatus": "Assignable"}}, expected)
    assert client.create_hit("TYPE1", xml, 9, 86400, token, token)["HITId"] == HIT_ID
    # the same token again: MTurk refuses it by TurkErrorCode, naming no HIT; the client finds
    # the HIT by its annotation in ListHITs
    stub.add_client_error("create_hit_with_hit_type", "RequestError",
                          "There is already a HIT which exists with the same client token. (1619128282649 s)",
                          expected_params=expected, modeled_fields={"TurkErrorCode": "AWS.MechanicalTurk.HitAlreadyExists"})
    stub.add_response("list_hits", {"NumResults": 2, "HITs": [
        {"HITId": "3OTHERAAAAAAAAAAAAAAAAAAAAAAAA", "RequesterAnnotation": "someone else"},
        {"HITId": HIT_ID, "HITStatus": "Assignable", "MaxAssignments": 9, "RequesterAnnotation": token}]},
        {"MaxResults": 100})
    hit = client.create_hit("TYPE1", xml, 9, 86400, token, token)
    assert hit["HITId"] == HIT_ID and hit["Recovered"] is True
    # any other RequestError is raised, never swallowed
    stub.add_client_error("create_hit_with_hit_type", "RequestError", "HITType TYPE1 does not exist")
    with pytest.raises(MTurkError, match="does not exist") as err:
        client.create_hit("TYPE1", xml, 9, 86400, token, token)
    assert err.value.code == "RequestError" and err.value.operation == "CreateHITWithHITType"


def test_list_assignments_walks_every_page(stubbed):
    client, stub = stubbed
    statuses = ["Submitted", "Approved", "Rejected"]
    stub.add_response("list_assignments_for_hit", {"NextToken": "p2", "NumResults": 1, "Assignments": [
        {"AssignmentId": "A1", "WorkerId": "AW1", "HITId": HIT_ID, "AssignmentStatus": "Submitted"}]},
        {"HITId": HIT_ID, "AssignmentStatuses": statuses, "MaxResults": 100})
    stub.add_response("list_assignments_for_hit", {"NumResults": 1, "Assignments": [
        {"AssignmentId": "A2", "WorkerId": "AW2", "HITId": HIT_ID, "AssignmentStatus": "Approved"}]},
        {"HITId": HIT_ID, "AssignmentStatuses": statuses, "MaxResults": 100, "NextToken": "p2"})
    assert [a["AssignmentId"] for a in client.list_assignments(HIT_ID)] == ["A1", "A2"]


def test_review_calls(stubbed):
    client, stub = stubbed
    stub.add_response("approve_assignment", {}, {"AssignmentId": "A1"})
    stub.add_response("approve_assignment", {}, {"AssignmentId": "A2", "RequesterFeedback": "Sorry, our mistake",
                                                 "OverrideRejection": True})
    stub.add_response("reject_assignment", {}, {"AssignmentId": "A3", "RequesterFeedback": "Gold answers wrong"})
    stub.add_response("get_assignment", {"Assignment": {"AssignmentId": "A3", "AssignmentStatus": "Rejected"}},
                      {"AssignmentId": "A3"})
    client.approve("A1")
    client.approve("A2", feedback="Sorry, our mistake", override_rejection=True)
    client.reject("A3", "Gold answers wrong")
    assert client.get_assignment("A3")["AssignmentStatus"] == "Rejected"
    with pytest.raises(ValueError, match="feedback"):
        client.reject("A4", "  ")


def test_bonus_calls_and_used_token(stubbed):
    client, stub = stubbed
    params = {"WorkerId": "AW1", "AssignmentId": "A1", "BonusAmount": "0.75", "Reason": "Accurate work",
              "UniqueRequestToken": "tok-1"}
    paid = {"NumResults": 1, "BonusPayments": [
        {"WorkerId": "AW1", "BonusAmount": "0.75", "AssignmentId": "A1", "Reason": "Accurate work"}]}
    stub.add_response("send_bonus", {}, params)
    # a repeated token is refused; whatever the wording, the payment is looked up by assignment
    stub.add_client_error("send_bonus", "RequestError", "This request has already been processed. (42 s)",
                          expected_params=params)
    stub.add_response("list_bonus_payments", paid, {"AssignmentId": "A1", "MaxResults": 100})
    stub.add_response("list_bonus_payments", paid, {"HITId": HIT_ID, "MaxResults": 100})
    assert client.send_bonus("AW1", "A1", "0.75", "Accurate work", "tok-1") is True
    assert client.send_bonus("AW1", "A1", Decimal("0.75"), "Accurate work", "tok-1") is False
    assert client.list_bonus_payments(hit_id=HIT_ID)[0]["BonusAmount"] == "0.75"
    # a RequestError whose payment is not on MTurk is raised
    stub.add_client_error("send_bonus", "RequestError", "Assignment A2 does not exist. (42 s)")
    stub.add_response("list_bonus_payments", {"NumResults": 0, "BonusPayments": []},
                      {"AssignmentId": "A2", "MaxResults": 100})
    with pytest.raises(MTurkError, match="does not exist"):
        client.send_bonus("AW1", "A2", "0.75", "Accurate work", "tok-2")
    with pytest.raises(ValueError, match="positive"):
        client.send_bonus("AW1", "A1", "0", "x", "tok-2")


def test_qualification_calls(stubbed):
    client, stub = stubbed
    name = "Argus: participated in study-1"
    list_params = {"Query": name, "MustBeRequestable": False, "MustBeOwnedByCaller": True, "MaxResults": 100}
    stub.add_response("list_qualification_types", {"NumResults": 0, "QualificationTypes": []}, list_params)
    stub.add_response("create_qualification_type", {"QualificationType": {"QualificationTypeId": "QP"}}, {
        "Name": name, "Description": "did it", "Keywords": "argus", "QualificationTypeStatus": "Active"})
    stub.add_response("associate_qualification_with_worker", {}, {
        "QualificationTypeId": "QP", "WorkerId": "AW1", "IntegerValue": 1, "SendNotification": False})
    assert client.ensure_qualification_type(name, "did it") == "QP"
    client.grant_qualification("QP", "AW1")
    # existing type: found by name, nothing created
    stub.add_response("list_qualification_types", {"NumResults": 1, "QualificationTypes": [
        {"QualificationTypeId": "QP", "Name": name}]}, list_params)
    assert client.ensure_qualification_type(name, "did it") == "QP"


def test_block_notify_expire_delete_calls(stubbed):
    client, stub = stubbed
    stub.add_response("create_worker_block", {}, {"WorkerId": "AW9", "Reason": "Random answers on gold"})
    stub.add_response("delete_worker_block", {}, {"WorkerId": "AW9", "Reason": "appeal accepted"})
    stub.add_response("list_worker_blocks", {"NumResults": 1, "WorkerBlocks": [{"WorkerId": "AW8", "Reason": "r"}]},
                      {"MaxResults": 100})
    workers = [f"AW{i:03d}" for i in range(250)]
    for chunk in (workers[:100], workers[100:200], workers[200:]):
        stub.add_response("notify_workers", {"NotifyWorkersFailureStatuses": []},
                          {"Subject": "New batch", "MessageText": "Hello", "WorkerIds": chunk})
    stub.add_response("update_expiration_for_hit", {}, {"HITId": HIT_ID, "ExpireAt": ANY})
    stub.add_response("delete_hit", {}, {"HITId": HIT_ID})
    client.block_worker("AW9", "Random answers on gold")
    client.unblock_worker("AW9", "appeal accepted")
    assert client.list_worker_blocks() == [{"WorkerId": "AW8", "Reason": "r"}]
    assert client.notify_workers(workers + workers[:5], "New batch", "Hello") == []
    client.expire_hit(HIT_ID)
    client.delete_hit(HIT_ID)


@pytest.mark.parametrize("code,message", [
    ("ThrottlingException", "Rate exceeded"),
    ("ServiceFault", "Amazon Mechanical Turk is temporarily unable to process your request"),
    ("RequestError", "Assignment A1 does not exist"),
], ids=["throttling", "service-fault", "request-error"])
def test_errors_raise_mturk_error(stubbed, code, message):
    client, stub = stubbed
    stub.add_client_error("approve_assignment", code, message, http_status_code=500 if code == "ServiceFault" else 400)
    with pytest.raises(MTurkError) as err:
        client.approve("A1")
    assert (err.value.code, err.value.operation) == (code, "ApproveAssignment")
    assert message in str(err.value)


# ---------------------------------------------------------------- against the fake endpoint


def test_retries_absorb_throttling_and_faults(fake, fake_client):
    fake.inject("GetAccountBalance", "throttle", "fault")
    assert fake_client.balance() == Decimal("10000.00")
    assert fake.requests["GetAccountBalance"] == 3  # two failures retried by botocore
    fake.inject("GetAccountBalance", "fault", "fault", "fault")
    with pytest.raises(MTurkError) as err:
        fake_client.balance()
    assert err.value.code == "ServiceFault"


@pytest.mark.parametrize("mode", ["drop", "timeout"])
def test_lost_response_never_duplicates_a_hit_or_bonus(fake, fake_client, mode):
    hit_type = fake_client.create_hit_type("t", "d", "0.10", 600, 3600)
    xml = external_question_xml("http://127.0.0.1:1/entry", allow_http=True)
    token = unique_request_token("hit", "sandbox", "b1", 0)
    fake.inject("CreateHITWithHITType", mode)
    hit = fake_client.create_hit(hit_type, xml, 2, 3600, token, annotation=token)
    assert hit["Recovered"] is True  # botocore retried; the fake said the token was used
    assert len(fake.hits) == 1 and fake.requests["CreateHITWithHITType"] == 2
    # a worker submits, then a bonus whose response is lost
    url = fake.accept(hit["HITId"], "AW1")
    aid = dict(p.split("=") for p in url.split("?")[1].split("&"))["assignmentId"]
    fake.assignments[aid]["AssignmentStatus"] = "Submitted"
    fake.inject("SendBonus", mode)
    assert fake_client.send_bonus("AW1", aid, "0.30", "thanks", "bonus-token-1") is False
    assert fake_client.send_bonus("AW1", aid, "0.30", "thanks", "bonus-token-1") is False
    assert fake.total_bonus() == Decimal("0.30") and fake.balance == Decimal("10000.00") - Decimal("0.36")
