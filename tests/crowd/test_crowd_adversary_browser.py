"""A dishonest worker in chromium (Playwright, Debian's chromium, headless) against the server
over real HTTP: they try to read the answers (another task's image, the rendered sheet that
shows the labels), answer as another worker, hoard tasks, and take a completion code early, and
are refused each time, while an honest worker in another browser finishes with the real code."""

import re
import shutil

import pytest
from sqlalchemy import select

from crowd.db import get_database
from crowd.models import Judgment, Visit, Worker

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]


@pytest.fixture
def app(sqlite_app):  # chromium runs on SQLite; the server suite covers PostgreSQL
    return sqlite_app


def _consent(page):
    page.get_by_label("I have read the information above").check()
    page.get_by_role("button", name="I agree, continue").click()
    page.get_by_role("link", name="Start the tasks").click()


def _answer_label(page):
    page.locator("input[name=label]").first.check()
    page.get_by_role("button", name="Submit and continue").click()


def test_a_dishonest_worker_is_refused_in_a_real_browser(app, live_server, h, sheets_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    client = app.test_client()
    folder = tmp_path / "sheets"
    shutil.copytree(sheets_dir, folder)
    for sid in ("s1", "s2", "s3"):  # explain's rendered sheets: they show the model's and the true label
        (folder / "sheets" / f"{sid}.png").write_bytes((folder / "images" / f"{sid}.png").read_bytes())
    b = h.create_batch(client, sheets=folder, kind="label", redundancy=1, tasks_per_visit=2)
    alice_url = client.post(f"/api/batches/{b['id']}/links", json={"workers": ["alice"]},
                            headers=h.AUTH).get_json()["links"][0]["url"].replace("http://localhost", live_server)
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        alice = browser.new_context().new_page()
        alice.goto(alice_url)
        _consent(alice)
        expect(alice.get_by_text("Task 1 of 2")).to_be_visible()
        alice_visit = re.search(r"/w/v/([^/]+)/task", alice.url).group(1)

        mallory = browser.new_context()
        page = mallory.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        # 1. impersonation: alice's name in the link gives an anonymous visit of mallory's own
        page.goto(f"{live_server}/w/{b['id']}?worker=alice")
        expect(page.get_by_role("heading", name="Before you start")).to_be_visible()
        assert alice_visit.split(".")[0] not in page.url
        r = page.request.post(f"{live_server}/w/api/start", data={"batch": b["id"], "worker": "alice"})
        assert r.status == 400 and r.json()["field"] == "worker"
        forged = alice_url.replace("wt=", "wt=x")
        page.goto(forged)
        expect(page.get_by_role("heading", name="Link expired")).to_be_visible()
        # 2. hoarding: the same MTurk worker id with made-up assignment ids holds one task at most
        page.goto(f"{live_server}/w/{b['id']}?workerId=A1MALLORY&assignmentId=MADEUP1&hitId=H1")
        _consent(page)
        expect(page.get_by_text("Task 1 of 2")).to_be_visible()
        # 0. reading the answers: media only through URLs signed for this visit and file
        src = page.locator("main img").first.get_attribute("src")
        path, sig = src.split("?s=")
        assert page.request.get(live_server + src).status == 200
        mine = path.rsplit("/", 1)[1]
        other = next(f"images/{s}.png" for s in ("s1", "s2", "s3") if f"{s}.png" != mine)
        for url in (path, f"/media/{b['id']}/{other}?s={sig}", f"/media/{b['id']}/sheets/s1.png",
                    f"/media/{b['id']}/researcher/sheets/s1.png?s={sig}"):
            assert page.request.get(live_server + url, max_redirects=0).status == 404, url
        sheet = page.request.get(f"{live_server}/admin/batches/{b['id']}/media/researcher/sheets/s1.png",
                                 max_redirects=0)
        assert sheet.status == 302 and "/admin/login" in sheet.headers["location"]
        second = mallory.new_page()
        second.goto(f"{live_server}/w/{b['id']}?workerId=A1MALLORY&assignmentId=MADEUP2&hitId=H1")
        _consent(second)
        expect(second.locator("main")).to_contain_text("already hold 1 task(s) at once")
        # 3. an early completion code: one task of two, then straight to the finish page
        _answer_label(page)
        expect(page.get_by_text("Task 2 of 2")).to_be_visible()
        page.goto(re.sub(r"/task$", "/finish", page.url))
        code = page.locator("#completion-code")
        expect(code).to_have_attribute("data-completion", "partial")
        assert re.fullmatch(r"P-[0-9A-F]{8}", code.inner_text())
        # ... and no second try: the same link now says "you are done"
        page.goto(f"{live_server}/w/{b['id']}?workerId=A1MALLORY&assignmentId=MADEUP1&hitId=H1")
        expect(page.locator("#done")).to_be_visible()

        # the honest worker finishes with the real code
        _answer_label(alice)
        expect(alice.get_by_text("Task 2 of 2")).to_be_visible()
        _answer_label(alice)
        full = alice.locator("#completion-code")
        expect(full).to_have_attribute("data-completion", "full")
        assert re.fullmatch(r"[0-9A-F]{8}", full.inner_text())
        browser.close()
    assert errors == []
    with get_database(app).reading() as s:
        rows = s.execute(select(Worker.external_id, Visit.completion, Visit.partial_reason, Visit.n_submitted)
                         .join(Visit, Visit.worker_id == Worker.id).order_by(Visit.id)).all()
        answers = dict(s.execute(select(Worker.external_id, Judgment.id).join(Judgment)).all())
    assert [r[0] for r in rows][:1] == ["alice"] and rows[0][1:] == ("full", None, 2)
    others = sorted(((r[0][:5], r[1] or "", r[2] or "", r[3]) for r in rows[1:]))
    # the "?worker=alice" visit was anonymous; the hoarding tab's visit never got a task
    assert others == [("A1MAL", "", "", 0), ("A1MAL", "partial", "early_exit", 1), ("anon-", "", "", 0)]
    assert set(answers) == {"alice", "A1MALLORY"}
