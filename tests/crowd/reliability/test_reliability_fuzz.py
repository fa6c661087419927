"""Property-based fuzzing of every endpoint, in-process (Flask test client, SQLite), driven by
the server's own OpenAPI document (`/api/openapi.json`) for the JSON API and by the URL map for
the HTML pages: >= 10,000 generated requests in all; never a 5xx, never an unhandled exception,
and the assignment invariants still hold afterwards.

Requests mix well-formed values (real ids, real tokens, valid answers) with wrong types,
huge numbers, odd Unicode and mutated tokens, so they reach deep code paths as well as the
validators. hypothesis rather than schemathesis: hypothesis is already a test dependency, runs
in-process without another CLI, and lets us seed real tokens into the strategies.
"""

from __future__ import annotations

import json
import re
import string
from urllib.parse import quote, urlencode
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crowd.app import create_app
from crowd.tokens import make_worker_token
from crowd.db import get_database
from sim.load import make_images
from crowd.openapi import openapi_document
from crowd import service as S

API_EXAMPLES = 560  # per operation; 17 operations -> 9,520
PAGE_EXAMPLES = 700  # HTML pages, media and admin
PG_EXAMPLES = 60  # per operation on PostgreSQL (in addition)
COUNTS: dict[str, int] = {}

OPS = [(path, method, op) for path, item in openapi_document()["paths"].items()
       for method, op in item.items() if method != "parameters"]
PATH_PARAMS = {path: item.get("parameters", []) for path, item in openapi_document()["paths"].items()}


def _mk_world(tmp: Path, url: str | None = None, schema: str | None = None):
    cfg = {"TESTING": True, "SECRET_KEY": "fuzz-secret", "API_TOKEN": "fuzz-token", "ADMIN_PASSWORD": "fuzz-pw",
           "DATABASE_URL": url or f"sqlite:///{tmp / 'fuzz.db'}", "DATABASE_SCHEMA": schema,
           "SQLITE_SYNCHRONOUS": "OFF"}
    app = create_app(cfg)
    client = app.test_client()
    auth = {"Authorization": "Bearer fuzz-token"}
    images = make_images(tmp / "img", 6)
    b1 = client.post("/api/batches", json={"images": images, "classes": ["cat", "dog"], "redundancy": 2,
                                           "tasks_per_visit": 3}, headers=auth).get_json()
    sheets = Path(__file__).resolve().parents[1] / "fixtures" / "sheets"
    b2 = client.post("/api/batches", json={"sheets_dir": str(sheets), "kinds": ["mark_rationale", "rate_arguments"],
                                           "redundancy": 3}, headers=auth).get_json()
    visits, atokens = [], []
    for i, b in enumerate((b1, b2, b1)):
        with app.app_context():
            link = make_worker_token(f"seed{i}", b["id"])
        v = client.post("/w/api/start", json={"batch": b["id"], "worker_token": link}).get_json()["visit_token"]
        client.post("/w/api/consent", json={"visit_token": v})
        n = client.post("/w/api/next", json={"visit_token": v}).get_json()
        visits.append(v)
        atokens.append(n["assignment_token"])
    return app, client, auth, [b1["id"], b2["id"]], visits, atokens


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory):
    app, client, auth, batches, visits, atokens = _mk_world(tmp_path_factory.mktemp("fuzz"))
    yield {"app": app, "client": client, "auth": auth, "batches": batches, "visits": visits, "atokens": atokens}
    with get_database(app).reading() as s:
        for b in batches:
            assert S.check_invariants(s, b) == {k: 0 for k in S.check_invariants(s, b)}
    get_database(app).engine.dispose()


# ------------------------------------------------------------------------------ strategies

ODD_TEXT = st.sampled_from(["", " ", "\x00", "\ud800", "null", "NaN", "-1", "1e309", "<script>", "' OR 1=1 --",
                            "../../etc/passwd", "%00", "👩🏽‍🔬", "\u202e", "x" * 3000, "approve", "cat", "1"])
TEXT = st.one_of(st.text(max_size=40), ODD_TEXT)
NUMBERS = st.one_of(st.integers(), st.integers(-3, 12), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([2 ** 63, -2 ** 63 - 1, 10 ** 30, 0.5, -0.0]))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
ANY_JSON = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)
POINT = st.lists(st.one_of(st.floats(0, 1), NUMBERS), min_size=0, max_size=3)
ANSWERS = st.one_of(
    st.fixed_dictionaries({"label": st.one_of(st.sampled_from(["cat", "dog"]), SCALAR)}),
    st.fixed_dictionaries({"points": st.lists(POINT, max_size=8), "boxes": st.lists(st.lists(NUMBERS, max_size=5),
                                                                                     max_size=3)}),
    st.fixed_dictionaries({"arguments": st.dictionaries(st.sampled_from(["1", "2", "3", "x"]),
                                                        st.sampled_from(["yes", "no", "cant_tell", "maybe"])),
                           "match": st.one_of(st.integers(0, 6), SCALAR), "comment": TEXT}),
    st.fixed_dictionaries({"name": TEXT, "coherence": st.one_of(st.integers(0, 6), SCALAR)}),
    ANY_JSON,
)


def _mutate(token: str):
    return st.one_of(st.just(token), st.builds(lambda i, c: token[:i] + c + token[i + 1:],
                                               st.integers(0, max(len(token) - 1, 0)),
                                               st.sampled_from(string.ascii_letters + "._-")),
                     st.just(token[:-4]), st.just(token + "A"))


def _value_for(name: str, schema: dict, world) -> st.SearchStrategy:
    """A value for one body property or parameter: mostly plausible, sometimes hostile."""
    if name == "visit_token":
        plausible = st.one_of(*[_mutate(v) for v in world["visits"]], st.sampled_from(world["visits"]))
    elif name == "assignment_token":
        plausible = st.one_of(*[_mutate(a) for a in world["atokens"]], st.sampled_from(world["atokens"]))
    elif name == "answer":
        plausible = ANSWERS
    elif name in ("batch", "batch_id", "exclude_batches"):
        ids = st.sampled_from(world["batches"] + [0, 999])
        plausible = st.lists(ids, max_size=3) if name == "exclude_batches" else ids
    elif name == "client_token":
        plausible = st.text(string.ascii_letters + string.digits, min_size=6, max_size=90)
    elif name in ("images",):
        plausible = st.lists(st.one_of(TEXT, st.fixed_dictionaries({"image": TEXT, "id": TEXT})), max_size=3)
    elif name == "sheets_dir":
        plausible = st.sampled_from([str(Path(__file__).resolve().parents[1] / "fixtures" / "sheets"),
                                     "/", "/etc", "/nonexistent", "../.."])
    elif "enum" in schema:
        plausible = st.sampled_from(schema["enum"])
    elif schema.get("type") == "integer":
        plausible = st.integers(-2, 20)
    elif schema.get("type") == "number":
        plausible = st.floats(-1, 2, allow_nan=False)
    elif schema.get("type") == "boolean":
        plausible = st.booleans()
    elif schema.get("type") == "array":
        plausible = st.lists(_value_for(name + "[]", schema.get("items", {}), world), max_size=3)
    else:
        plausible = TEXT
    return st.one_of(plausible, plausible, plausible, ANY_JSON)


def _request_strategy(path: str, method: str, op: dict, world) -> st.SearchStrategy:
    params = PATH_PARAMS[path] + op.get("parameters", [])
    path_vals = {p["name"]: st.one_of(_value_for(p["name"], p.get("schema", {}), world).filter(
        lambda v: isinstance(v, (int, str)) and not isinstance(v, bool)),
        st.integers(-5, 2 ** 70)) for p in params if p["in"] == "path"}
    query_vals = {p["name"]: _value_for(p["name"], p.get("schema", {}), world) for p in params if p["in"] == "query"}
    body_schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    props = body_schema.get("properties", {})
    body = st.one_of(
        st.fixed_dictionaries({}, optional={k: _value_for(k, v, world) for k, v in props.items()}),
        st.builds(lambda d, extra: {**d, **extra},
                  st.fixed_dictionaries({k: _value_for(k, v, world) for k, v in props.items()}),
                  st.dictionaries(TEXT, ANY_JSON, max_size=2)),
        ANY_JSON,
        st.binary(max_size=64),
    )
    return st.fixed_dictionaries({
        "path": st.fixed_dictionaries(path_vals),
        "query": st.fixed_dictionaries({}, optional=query_vals),
        "body": body,
        "auth": st.sampled_from(["good", "good", "good", "none", "bad"]),
        "ctype": st.sampled_from(["application/json", "application/json", "text/plain", "application/x-www-form-urlencoded"]),
    })


def _send(world, path: str, method: str, req: dict):
    url = path
    for name, value in req["path"].items():
        url = url.replace("{" + name + "}", quote(str(value).encode("utf-8", "surrogatepass"), safe=""))
    # Lone surrogates go out as the (invalid UTF-8) bytes a raw HTTP client could send.
    query = urlencode({k: (v if isinstance(v, str) else json.dumps(v)).encode("utf-8", "surrogatepass")
                       for k, v in req["query"].items()})
    body = req["body"]
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": req["ctype"]}
    if req["auth"] == "good":
        headers.update(world["auth"])
    elif req["auth"] == "bad":
        headers["Authorization"] = "Bearer " + "x" * 10
    return world["client"].open(url, method=method.upper(), query_string=query, data=data, headers=headers)


def _fuzz_operation(world, path, method, op, examples: int) -> int:
    sent = [0]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(req=_request_strategy(path, method, op, world))
    def run(req):
        r = _send(world, path, method, req)
        sent[0] += 1
        assert r.status_code < 500, (req, r.status_code, r.get_data(as_text=True)[:300])
        if r.status_code >= 400 and path != "/api/openapi.json":
            body = r.get_json(silent=True)
            assert body is not None and body.get("status") == r.status_code, (req, r.get_data(as_text=True)[:200])

    run()
    return sent[0]


@pytest.mark.slow
@pytest.mark.parametrize("path,method,op", OPS, ids=[f"{m.upper()} {p}" for p, m, _ in OPS])
def test_fuzz_api_operation(fuzz_world, path, method, op):
    sent = _fuzz_operation(fuzz_world, path, method, op, API_EXAMPLES)
    assert sent >= API_EXAMPLES * 0.9


@pytest.mark.slow
@pytest.mark.postgres
def test_fuzz_every_operation_on_postgresql(tmp_path, pg_url, pg_schema):
    """A shorter run of the same fuzzer on PostgreSQL, where types, integer ranges and text
    rules are stricter than SQLite's (NUL bytes, 32-bit integer columns)."""
    app, client, auth, batches, visits, atokens = _mk_world(tmp_path, pg_url, pg_schema)
    world = {"app": app, "client": client, "auth": auth, "batches": batches, "visits": visits, "atokens": atokens}
    try:
        sent = sum(_fuzz_operation(world, path, method, op, PG_EXAMPLES) for path, method, op in OPS)
        with get_database(app).reading() as s:
            for b in batches:
                assert set(S.check_invariants(s, b).values()) == {0}
    finally:
        get_database(app).engine.dispose()
    assert sent >= len(OPS) * PG_EXAMPLES * 0.9


PAGE_TEMPLATES = ["/w/{batch}", "/w/{batch}?worker={text}", "/w/{batch}?workerId={text}&assignmentId={text}&hitId={text}"
                  "&turkSubmitTo={text}", "/w/{batch}?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE",
                  "/w/{batch}?PROLIFIC_PID={text}&STUDY_ID={text}&SESSION_ID={text}",
                  "/w/v/{visit}/consent", "/w/v/{visit}/instructions", "/w/v/{visit}/task", "/w/v/{visit}/finish",
                  "/w/v/{visit}/practice",
                  "/media/{batch}/{text}", "/admin/", "/admin/login", "/admin/batches/{batch}",
                  "/admin/batches/{batch}/export.{text}", "/admin/workers/{batch}/action",
                  "/admin/batches/{batch}/status", "/admin/batches/{batch}/answers", "/admin/batches/{batch}/cost",
                  "/admin/batches/{batch}/events", "/admin/batches/{batch}/flags", "/admin/batches/{batch}/throughput",
                  "/admin/batches/{batch}/visits", "/admin/batches/{batch}/media/{text}", "/admin/tasks/{batch}",
                  "/admin/judgments/{batch}/review", "/admin/logout", "/health", "/static/{text}", "/{text}"]


@pytest.mark.slow
def test_fuzz_pages_media_and_admin(fuzz_world):
    COUNTS["pages"] = 0
    token_text = st.one_of(*[_mutate(v) for v in fuzz_world["visits"]])
    page_req = st.fixed_dictionaries({
        "template": st.sampled_from(PAGE_TEMPLATES),
        "batch": st.one_of(st.sampled_from(fuzz_world["batches"]), st.integers(-3, 2 ** 66)),
        "visit": token_text,
        "text": st.one_of(TEXT, st.sampled_from(["img0000.png", "../img0000.png", "csv", "parquet", "..%2f..%2fx.png"])),
        "method": st.sampled_from(["GET", "GET", "POST", "PUT", "DELETE"]),
        "form": st.dictionaries(st.sampled_from(["agree", "label", "name", "coherence", "match", "comment", "arg_1",
                                                 "assignment_token", "client_token", "csrf_token", "username",
                                                 "password", "action", "status", "batch", "reason", "index", "confirm",
                                                 "decision", "note"]), TEXT,
                                max_size=5),
    })

    @settings(max_examples=PAGE_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(req=page_req)
    def run(req):
        def q(v):
            return quote(v.encode("utf-8", "surrogatepass"), safe="")

        url = req["template"].format(batch=req["batch"], visit=q(req["visit"]), text=q(req["text"]))
        form = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in req["form"].items()})
        r = fuzz_world["client"].open(url, method=req["method"], data=form,
                                      content_type="application/x-www-form-urlencoded")
        COUNTS["pages"] += 1
        assert r.status_code < 500, (req, url, r.status_code, r.get_data(as_text=True)[:300])

    run()
    assert COUNTS["pages"] >= PAGE_EXAMPLES * 0.9


def test_fuzz_covers_every_route_and_10k_requests():
    """The fuzzers above reach every route of the app, and their budgets add up to >= 10,000."""
    app = create_app({"TESTING": True, "SECRET_KEY": "k", "DATABASE_URL": "sqlite://", "AUTO_INIT_DB": False})
    documented = {re.sub(r"\{(\w+)\}", r"<\1>", p) for p, _, _ in OPS}
    routes = {re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", r.rule) for r in app.url_map.iter_rules()}
    pages = {re.sub(r"\{(\w+)\}", r"<\1>", t.split("?")[0]) for t in PAGE_TEMPLATES}
    pages = {p.replace("<batch>", "<batch_id>").replace("<visit>", "<token>") for p in pages}
    uncovered = {r for r in routes - documented if not r.startswith("/static")}
    uncovered = {r for r in uncovered if not any(re.fullmatch(re.sub(r"<\w+>", "[^/]+", p.replace(".", r"\.")),
                                                              re.sub(r"<\w+>", "x", r)) for p in pages)}
    assert uncovered == set()
    assert len(OPS) * API_EXAMPLES + PAGE_EXAMPLES >= 10_000
