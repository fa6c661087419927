"""Browser test: Debian's chromium through Playwright, headless, against the server over real
HTTP. Consent -> instructions with practice -> four tasks of four kinds (keyboard rating, point
and box marking, labelling, naming) -> finish; then the judgments are checked in the database."""

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from crowd.db import get_database
from crowd.models import Consent, Judgment, Task, Visit

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture
def app(sqlite_app):  # the browser test runs on SQLite; the server suite covers PostgreSQL
    return sqlite_app


def test_worker_does_four_kinds_in_a_browser(app, live_server, h, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    # the practice item's sheet (s1) is held out of the tasks, which come from the next sheet (s2);
    # one sheet, so one worker does several kinds of its image (allowed here). Seed 0 orders this
    # worker's five tasks label, rate, name, mark (then the other name): one of each kind, not in
    # the order they were made
    practice = [{"sheet": "s1", "kind": "rate_arguments", "answer": {"arguments": {"1": "yes"}},
                 "explain": "The highlighted round part is what an apple looks like."}]
    b = h.create_batch(app.test_client(), kinds=["rate_arguments", "mark_rationale", "label", "name_feature"],
                       limit=1, redundancy=1, tasks_per_visit=4, practice=practice, allow_same_image=True,
                       order_seed=0)
    # a researcher-signed link: the worker's id (and so its task order) is fixed; a bare
    # ?worker= would be an anonymous visit with a random id
    from crowd.tokens import make_worker_token

    with app.app_context():
        link = f"{live_server}/w/{b['id']}?wt={make_worker_token('browser-1', b['id'])}"
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        page.goto(link)
        expect(page.get_by_role("heading", name="Before you start")).to_be_visible()
        page.get_by_label("I have read the information above").check()
        page.get_by_role("button", name="I agree, continue").click()

        expect(page.get_by_role("heading", name="Instructions")).to_be_visible()
        page.get_by_role("button", name="Check practice answer").click()
        expect(page.locator("#status")).to_contain_text("Please answer every question")
        expect(page.get_by_role("link", name="Start the tasks")).to_be_hidden()
        page.keyboard.press("1")  # practice: argument 1 yes
        page.keyboard.press("2")  # argument 2 no
        page.keyboard.press("4")  # match: mostly
        page.get_by_role("button", name="Check practice answer").click()
        expect(page.locator("#status")).to_contain_text(
            "Right: argument 1: yes. The highlighted round part is what an apple looks like. You passed the practice")
        page.get_by_role("link", name="Start the tasks").click()

        # four tasks, one of each kind, in this worker's own order
        for position in range(1, 5):
            expect(page.get_by_text(f"Task {position} of 4")).to_be_visible()
            kind = page.locator("#task-form").get_attribute("data-kind")
            if kind == "rate_arguments":  # by keyboard only
                page.locator("input[name=arg_1]").first.focus()
                for key in ("1", "3", "5"):
                    page.keyboard.press(key)
                page.locator("#comment").fill("the red <b>round</b> part")
                page.screenshot(path=str(tmp_path / "rate_desktop.png"), full_page=True)
                page.set_viewport_size({"width": 390, "height": 844})
                page.screenshot(path=str(tmp_path / "rate_phone.png"), full_page=True)
                page.set_viewport_size({"width": 1280, "height": 900})
            elif kind == "mark_rationale":  # two clicks and one drag
                box = page.locator("#marker img").bounding_box()
                page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25)
                page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.5)
                page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.6)
                page.mouse.down()
                page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.7, steps=4)
                page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.9, steps=4)
                page.mouse.up()
                expect(page.locator("#mark-count")).to_contain_text("3 marks")
                page.screenshot(path=str(tmp_path / "mark_desktop.png"), full_page=True)
            elif kind == "label":  # number key
                page.keyboard.press("2")
                expect(page.get_by_label("banana")).to_be_checked()
            else:
                page.get_by_label("A short name").fill("  Red  Round Blob ")
                page.get_by_label("A short name").press("Tab")
                page.keyboard.press("4")
            page.get_by_role("button", name="Submit and continue").click()

        expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
        code = page.locator("#completion-code").inner_text()
        browser.close()

    assert errors == []  # no script errors, no blocked (CSP) loads
    if os.environ.get("ARGUS_DOCS_SCREENSHOTS") == "1":  # the docs' pictures come from this run
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "rate_desktop.png", DOCS_IMG / "worker_task.png")
    with get_database(app).reading() as s:
        rows = s.execute(select(Task.kind, Judgment.answer, Judgment.duration_s).join(Task, Task.id == Judgment.task_id)
                         .order_by(Judgment.id)).all()
        visit = s.scalar(select(Visit))
        assert s.scalar(select(Consent.version)) == "1"
    assert [k for k, _, _ in rows] == ["label", "rate_arguments", "name_feature", "mark_rationale"]
    answers = {k: a for k, a, _ in rows}
    assert answers["rate_arguments"] == {"arguments": {"1": "yes", "2": "cant_tell"}, "match": 5,
                                         "comment": "the red <b>round</b> part"}
    marks = answers["mark_rationale"]
    assert len(marks["points"]) == 2 and len(marks["boxes"]) == 1
    assert marks["points"][0] == pytest.approx([0.25, 0.25], abs=0.02)
    assert marks["boxes"][0] == pytest.approx([0.1, 0.6, 0.5, 0.9], abs=0.02)
    assert answers["label"] == {"label": "banana"}
    assert answers["name_feature"] == {"name": "Red  Round Blob", "coherence": 4}
    assert all(d is not None and d > 0 for _, _, d in rows)
    assert (visit.status.value, visit.n_submitted, visit.completion_code) == ("completed", 4, code)
