"""Worker pages over the test client: MTurk / Prolific / lab entry, preview writes nothing,
consent recorded, form fallback, externalSubmit form, Prolific redirect, media safety."""

import re
from urllib.parse import urlencode

from sqlalchemy import func, select

from crowd.db import Base, get_database
from crowd.models import Consent, Judgment, Visit


def _counts(app):
    with get_database(app).reading() as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def _token(location):
    return re.search(r"/w/v/([^/]+)/", location).group(1)


def test_mturk_flow_preview_consent_tasks_external_submit(app, client, h):
    b = h.create_batch(client, kind="label", redundancy=1, tasks_per_visit=2, practice_sheets=["s3"])
    before = _counts(app)
    preview = client.get(f"/w/{b['id']}?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1")
    assert preview.status_code == 200 and b"Preview" in preview.data and b"disabled" in preview.data
    assert _counts(app) == before  # preview writes nothing

    params = {"workerId": "A1TURKER", "assignmentId": "ASG1", "hitId": "H1",
              "turkSubmitTo": "https://workersandbox.mturk.com"}
    r = client.get(f"/w/{b['id']}?{urlencode(params)}")
    assert r.status_code == 302 and r.location.endswith("/consent")
    token = _token(r.location)
    assert client.get(f"/w/v/{token}/task").location.endswith("/consent")  # no tasks before consent
    page = client.get(f"/w/v/{token}/consent")
    assert b"Consent form version 1" in page.data and b"Set-Cookie" not in page.data
    assert client.post(f"/w/v/{token}/consent", data={}).status_code == 400
    r = client.post(f"/w/v/{token}/consent", data={"agree": "yes"})
    assert r.location.endswith("/instructions")
    instr = client.get(f"/w/v/{token}/instructions")
    # a batch without practice items shows a read-only example task, then the start link
    assert b"An example task" in instr.data and b'data-preview="1"' in instr.data and b'id="start"' in instr.data
    # re-opening the same MTurk assignment resumes the visit (no second visit, no second consent)
    again = client.get(f"/w/{b['id']}?{urlencode(params)}").location
    assert again.endswith("/instructions") and _token(again).split(".")[0] == token.split(".")[0]  # same visit id

    for i in range(2):
        page = client.get(f"/w/v/{token}/task")
        html = page.get_data(as_text=True)
        assert f"Task {i + 1} of 2" in html
        atok = re.search(r'name="assignment_token" value="([^"]+)"', html).group(1)
        ctok = re.search(r'name="client_token" value="([^"]+)"', html).group(1)
        assert 'href="/static/argus.css"' in html and "http" not in re.sub(r'href="https?://[^"]*"', "", html.split("<main")[0])
        # form fallback (no JavaScript)
        r = client.post(f"/w/v/{token}/task", data={"assignment_token": atok, "client_token": ctok, "label": "apple"})
        assert r.status_code == 302
    done = client.get(f"/w/v/{token}/task")
    assert done.location.endswith("/finish")
    fin = client.get(f"/w/v/{token}/finish").get_data(as_text=True)
    assert 'action="https://workersandbox.mturk.com/mturk/externalSubmit"' in fin
    assert 'name="assignmentId" value="ASG1"' in fin and "finish.js" in fin
    with get_database(app).reading() as s:
        assert s.scalar(select(func.count(Visit.id))) == 1
        v = s.scalar(select(Visit))
        assert (v.status.value, v.n_submitted, v.external_assignment_id, v.hit_id) == ("completed", 2, "ASG1", "H1")
        c = s.scalar(select(Consent))
        assert c.version == "1" and c.consented_at is not None
        assert s.scalar(select(func.count(Judgment.id))) == 2


def test_prolific_redirects_with_completion_code(client, h):
    b = h.create_batch(client, redundancy=1, tasks_per_visit=1, prolific_completion_code="C0DE42")
    r = client.get(f"/w/{b['id']}?PROLIFIC_PID=p123&STUDY_ID=st&SESSION_ID=se")
    token = _token(r.location)
    client.post(f"/w/v/{token}/consent", data={"agree": "yes"})
    html = client.get(f"/w/v/{token}/task").get_data(as_text=True)
    atok = re.search(r'name="assignment_token" value="([^"]+)"', html).group(1)
    client.post(f"/w/v/{token}/task", data={"assignment_token": atok, "client_token": "p" * 12, "label": "banana"})
    r = client.get(f"/w/v/{token}/finish")
    assert r.status_code == 302 and r.location == "https://app.prolific.com/submissions/complete?cc=C0DE42"


def test_lab_entry_and_bad_links(client, h):
    b = h.create_batch(client, redundancy=1)
    r = client.get(f"/w/{b['id']}")  # no identity -> anonymous, the minted id kept in a cookie
    assert r.status_code == 302 and r.location.endswith("/consent") and "argus_worker=" in r.headers["Set-Cookie"]
    assert client.get("/w/999?worker=x").status_code == 404
    r = client.get(f"/w/{b['id']}?workerId=A&assignmentId=B&turkSubmitTo=https://evil.example.com")
    assert r.status_code == 400 and b"turkSubmitTo" in r.data
    assert client.get("/w/v/not-a-token/consent").status_code == 403
    # the form fallback refuses a forged assignment token
    token = _token(client.get(f"/w/{b['id']}?worker=lab1").location)
    r = client.post(f"/w/v/{token}/task", data={"assignment_token": "forged", "client_token": "x" * 12, "label": "apple"})
    assert r.status_code == 403


def test_media_is_served_safely(client, h):
    b = h.create_batch(client)
    n = h.WorkerClient(client, b["id"], "w1").start().next()
    url = n["media"][n["task"]["payload"]["image"]]
    ok = client.get(url)
    assert ok.status_code == 200 and ok.mimetype == "image/png"
    sig = url.split("?s=")[1]
    for bad in ("../../../../etc/passwd", "..%2F..%2Fsheets%2Fs1.json", "sheets/s1.json", "images/../sheets/s1.json",
                "/etc/hostname.png", "images/missing.png"):
        assert client.get(f"/media/{b['id']}/{bad}?s={sig}", follow_redirects=True).status_code == 404, bad
    assert client.get(f"/media/999/images/s1.png?s={sig}").status_code == 404
