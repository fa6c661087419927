"""The researcher's dashboard in Debian's chromium (Playwright, headless) over real HTTP, at a
desktop's 1280x800 and a phone's 390x844: every batch page loads without a script or CSP
error and shows its numbers; the answer review draws the worker's marks over the image and
rejects an answer; Close and Block ask first, with JavaScript off too.
`ARGUS_DOCS_SCREENSHOTS=1` copies the screenshots into docs/img (docs/crowd.md shows them)."""

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from analysis.quality import worker_flags, worker_quality
from crowd import dashboard as D
from crowd import service as S

from crowd.db import get_database
from crowd.models import Batch, Judgment, Task, Worker

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
DESKTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}


@pytest.fixture
def app(sqlite_app):  # the browser tests run on SQLite; the HTTP suite covers PostgreSQL
    return sqlite_app


def _answers(app, h):
    """Two kinds on two sheets (4 tasks), R=3, 3 tasks a visit at $0.40: ann, bob and speedy
    finish their visits (speedy answers in 0.2 s, the others in 8-12 s), dora has done one task."""
    client = app.test_client()
    b = h.create_batch(client, kind=["mark_rationale", "label"], redundancy=3, tasks_per_visit=3, reward_cents=40,
                       allow_same_image=True, order_seed=0,
                       limit=2)
    for i, (name, seconds) in enumerate((("ann", 8.0), ("bob", 12.0), ("speedy", 0.2), ("dora", 9.0))):
        w = h.WorkerClient(client, b["id"], name).start()
        for k in range(3 if name != "dora" else 1):
            n = w.next()
            assert w.submit(n["assignment_token"], h.answer_for(n["task"], i), duration_s=seconds)[0] == 201
        if name != "dora":
            w.post("/w/api/finish", {"visit_token": w.token})
    return b


def _login(page, base):
    page.goto(f"{base}/admin/login")
    page.get_by_label("User").fill("admin")
    page.get_by_label("Password").fill("admin-pw")
    page.get_by_role("button", name="Log in").click()


def test_dashboard_pages_in_chromium(app, live_server, h, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    b = _answers(app, h)
    with get_database(app).transaction() as s:  # what `argus crowd flags --record` stores
        frame = pd.DataFrame(list(S.iter_judgment_rows(s, b["id"])))
        rows = worker_flags(worker_quality(frame)).astype(object).where(lambda f: f.notna(), None)
        D.record_analysis_flags(s, b["id"], rows.to_dict("records"), source="analysis.quality.worker_quality")
    with get_database(app).reading() as s:
        mark_task = s.scalar(select(Task.id).join(Judgment, Judgment.task_id == Task.id)
                             .where(Task.kind == "mark_rationale").order_by(Task.id).limit(1))
        first_answer = s.scalar(select(Judgment.id).where(Judgment.task_id == mark_task).order_by(Judgment.id))
    base = f"{live_server}/admin/batches/{b['id']}"
    errors, shots = [], {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport=DESKTOP)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        _login(page, live_server)

        def shoot(name, phone=False):
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
            shots[name] = tmp_path / f"{name}.png"
            if phone:
                page.set_viewport_size(PHONE)
                page.screenshot(path=str(tmp_path / f"{name}_phone.png"), full_page=True)
                shots[f"{name}_phone"] = tmp_path / f"{name}_phone.png"
                # nothing wider than the phone's screen but the tables, which scroll in their box
                assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
                page.set_viewport_size(DESKTOP)

        page.goto(f"{base}/cost")
        expect(page.locator("#spent")).to_have_text("$0.00")
        expect(page.locator("#committed")).to_have_text("$1.20")  # 3 finished lab visits, no fee
        # 2 judgments missing: one more visit, priced as on MTurk before a launch ($0.40 + 20%)
        expect(page.locator("#projected")).to_have_text("$1.68")
        expect(page.get_by_text("HITs of 9 assignments")).to_be_visible()
        shoot("admin_cost", phone=True)

        page.goto(f"{base}/visits")
        expect(page.locator("tbody tr")).to_have_count(4)
        expect(page.locator("tbody tr").filter(has_text="speedy")).to_contain_text("3 / 3")
        expect(page.locator("tbody tr").filter(has_text="speedy")).to_contain_text("0.6 s")
        shoot("admin_visits")

        page.goto(f"{base}/flags")
        expect(page.locator("tbody tr").filter(has_text="speedy").first).to_contain_text(
            "too fast: 3 of 3 answers under the speed floor")
        expect(page.locator("#analysis-flags tbody tr")).to_have_count(4)
        shoot("admin_flags")

        page.goto(f"{base}/throughput")
        expect(page.locator("#rate")).to_have_text("10.0 / h")
        expect(page.locator(".histogram rect")).to_have_count(24)
        shoot("admin_throughput")

        page.goto(f"{base}/events")
        page.get_by_label("Event type").select_option("submit")
        page.get_by_role("button", name="Show").click()
        expect(page.locator("tbody tr")).to_have_count(10)
        shoot("admin_events")

        page.goto(f"{base}/answers")
        page.get_by_role("link", name=f"#{mark_task}", exact=True).click()
        answer = page.locator(f"#j{first_answer}")
        expect(answer.locator("svg.marks circle")).to_have_count(1)
        expect(answer.locator("svg.marks rect")).to_have_count(1)
        assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        # the box [0.1, 0.1, 0.4, 0.3] of the fixture answer, drawn over the image where it belongs
        img, rect = answer.locator("img").bounding_box(), answer.locator("svg.marks rect").bounding_box()
        w, hgt, stroke = img["width"], img["height"], 0.012 * img["width"] + 1  # the box's outline adds width
        assert rect["x"] + rect["width"] / 2 - img["x"] == pytest.approx(0.25 * w, abs=1)
        assert rect["y"] + rect["height"] / 2 - img["y"] == pytest.approx(0.2 * hgt, abs=1)
        assert (rect["width"], rect["height"]) == (pytest.approx(0.3 * w, abs=stroke), pytest.approx(0.2 * hgt, abs=stroke))
        answer.get_by_label(f"Note on answer {first_answer}").fill("marks off the object")
        answer.get_by_role("button", name="Reject").click()
        expect(page.locator(f"#j{first_answer}")).to_contain_text("rejected")
        expect(page.locator(f"#j{first_answer}")).to_contain_text("Review note: marks off the object")
        shoot("admin_task", phone=True)

        page.goto(base)
        page.get_by_role("button", name="Close…").click()
        expect(page.get_by_role("heading", name=f"Close batch #{b['id']}")).to_be_visible()
        shoot("admin_confirm")
        page.get_by_role("link", name="Cancel").click()
        expect(page.locator("h2 .tag")).to_have_text("active")
        browser.close()

    assert errors == []  # no script errors, no blocked (CSP) loads or inline styles
    with get_database(app).reading() as s:
        assert s.get(Judgment, first_answer).review == "rejected"
        assert s.get(Batch, b["id"]).status.value == "active"
    if os.environ.get("ARGUS_DOCS_SCREENSHOTS") == "1":  # the docs' pictures come from this run
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        for name, path in shots.items():
            shutil.copy(path, DOCS_IMG / f"{name}.png")


def test_confirmations_work_without_javascript(app, live_server, h):
    from playwright.sync_api import expect, sync_playwright

    b = _answers(app, h)
    base = f"{live_server}/admin/batches/{b['id']}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_context(java_script_enabled=False, viewport=DESKTOP).new_page()
        _login(page, live_server)
        page.goto(f"{base}/flags")
        row = page.locator("tbody tr").filter(has_text="speedy")
        row.get_by_label("Reason for worker speedy").fill("answers in 0.2 s")
        row.get_by_role("button", name="Block…").click()
        expect(page.get_by_role("heading", name="Block worker speedy?")).to_be_visible()
        page.get_by_role("button", name="Yes, block speedy").click()
        expect(page.get_by_text("block: speedy")).to_be_visible()

        page.goto(base)
        page.get_by_role("button", name="Expire…").click()
        expect(page.get_by_text("every running lease ends now")).to_be_visible()
        page.get_by_role("button", name=f"Yes, expire batch #{b['id']}").click()
        expect(page.get_by_text(f"Batch {b['id']}: active -> expired")).to_be_visible()
        expect(page.get_by_role("button", name="Expire…")).to_have_count(0)
        browser.close()
    with get_database(app).reading() as s:
        w = s.scalar(select(Worker).where(Worker.external_id == "speedy"))
        assert (w.blocked, w.note) == (True, "answers in 0.2 s")
        assert s.get(Batch, b["id"]).status.value == "expired"
