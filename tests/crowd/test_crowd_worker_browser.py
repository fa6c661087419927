"""The worker pages in Debian's chromium (Playwright, headless) over real HTTP: the lease
countdown and its warning, an expired lease moving on, drafts across a reload, time counted
only while the page is visible, the two-tab notice, the phone layout (page heights, touch
targets, key hints) and an axe-core audit of every worker page.

`ARGUS_DOCS_SCREENSHOTS=1` also writes the docs' screenshots (docs/img/worker_*.png)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from sqlalchemy import select, update

from crowd.db import get_database
from crowd.models import Assignment, Judgment, Task, Worker

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
KINDS = ["rate_arguments", "mark_rationale", "label", "name_feature"]
PRACTICE = [{"sheet": "s1", "kind": "label", "answer": {"label": "apple"}, "explain": "Red, round, with a stalk."},
            {"sheet": "s1", "kind": "rate_arguments", "answer": {"arguments": {"1": "yes"}},
             "explain": "The highlighted round part is typical of an apple."}]


def rate(page, choice: str, match: str = "Slightly") -> None:
    for rank in (1, 2):
        page.locator(f"#q-arg-{rank} label.choice", has_text=choice).click()
    page.locator("#q-match label.choice", has_text=match).click()


@pytest.fixture
def app(sqlite_app):  # the browser tests run on SQLite; the server suite covers PostgreSQL
    return sqlite_app


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def shot(page, name: str) -> None:
    if os.environ.get("ARGUS_DOCS_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMG / name), full_page=True)


def watch(page, expected: tuple[str, ...] = ()) -> list:
    """Script errors and blocked loads of `page` (console errors containing an `expected` text,
    such as an answer the server refused on purpose, left out)."""
    errors = []
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and not any(e in m.text for e in expected) else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def link(app, base: str, batch_id: int, worker: str) -> str:
    """A researcher-signed worker link (one distinct worker per name, cookies or not)."""
    from crowd.tokens import make_worker_token

    with app.app_context():
        return f"{base}/w/{batch_id}?wt={make_worker_token(worker, batch_id)}"


def all_tasks_batch(client, h, sheets, **options) -> dict:
    """A batch whose visits are every one of its tasks (their order is the worker's own, so a
    test that must see each kind takes them all); one image in several kinds is allowed."""
    probe = h.create_batch(client, sheets, **options, allow_same_image=True)
    n = probe["tasks"] if isinstance(probe.get("tasks"), int) else probe["status"]["tasks"]
    return {**h.create_batch(client, sheets, **options, allow_same_image=True, tasks_per_visit=n), "tasks_per_visit": n}


def enter(page, base: str, batch_id: int, worker: str, app) -> None:
    """Signed entry link -> consent -> instructions -> first task."""
    from playwright.sync_api import expect

    page.goto(link(app, base, batch_id, worker))
    page.get_by_label("I have read the information above").check()
    page.get_by_role("button", name="I agree, continue").click()
    expect(page.get_by_role("heading", name="Instructions")).to_be_visible()
    page.get_by_role("link", name="Start the tasks").click()
    expect(page.get_by_text(re.compile(r"Task \d+ of \d+"))).to_be_visible()


def test_countdown_warns_and_an_expired_lease_moves_on(app, live_server, h, browser):
    from playwright.sync_api import expect

    b = h.create_batch(app.test_client(), kind="label", redundancy=1, tasks_per_visit=2, lease_seconds=60)
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    errors = watch(page, expected=("status of 409 (CONFLICT)",))  # the late answer, refused on purpose
    page.clock.install()
    enter(page, live_server, b["id"], "timer-1", app)
    expect(page.locator("#timer")).to_contain_text(re.compile(r"Time left: (1:00|0:5\d)"))
    expect(page.locator("#timer-warning")).to_be_hidden()
    page.clock.run_for(50_000)  # 10 s left: the warning (a fifth of the lease, at least 10 s)
    expect(page.locator("#timer-warning")).to_be_visible()
    expect(page.locator("#timer-warning")).to_have_text("Less than 12 seconds left for this task. Please submit soon.")
    expect(page.locator("#timer")).to_have_class(re.compile(r"\bwarn\b"))
    shot(page, "worker_timer_warning.png")
    page.clock.run_for(15_000)
    expect(page.locator("#timer-left")).to_have_text("0:00")
    expect(page.locator("#timer-warning")).to_contain_text("Time is up for this task. You can still submit")

    # on the server the lease runs out and another worker takes the task and answers it
    with get_database(app).transaction() as s:
        first = s.scalar(select(Assignment))
        s.execute(update(Assignment).values(expires_at=first.leased_at))
        first_task = first.task_id
    # each worker has its own task order: other workers lease until one holds that task (the
    # others' leases are run out again, so the second task stays free)
    for i in range(2, 40):
        other = h.WorkerClient(app.test_client(), b["id"], f"timer-{i}").start()
        nxt = other.next()
        if nxt["task"]["id"] == first_task:
            break
        with get_database(app).transaction() as s:
            s.execute(update(Assignment).where(Assignment.task_id == nxt["task"]["id"])
                      .values(expires_at=Assignment.leased_at))
    assert nxt["task"]["id"] == first_task
    assert other.submit(nxt["assignment_token"], {"label": "cherry"})[0] == 201

    page.get_by_label("apple").check()
    page.get_by_role("button", name="Submit and continue").click()
    # no error to fight with: a new task, and still task 1 of 2 (nothing of the worker's was lost)
    expect(page.get_by_text("Task 1 of 2")).to_be_visible()
    expect(page.locator("#timer-warning")).to_be_hidden()
    expect(page.locator("#status")).to_have_text("")
    with get_database(app).reading() as s:
        rows = s.execute(select(Assignment.task_id, Assignment.status, Worker.external_id)
                         .join(Worker, Worker.id == Assignment.worker_id).order_by(Assignment.id)).all()
    mine = [(t, st.value) for t, st, w in rows if w == "timer-1"]
    assert mine[0] == (first_task, "expired") and mine[1][1] == "leased" and mine[1][0] != first_task
    assert (first_task, "submitted") in [(t, st.value) for t, st, w in rows if w != "timer-1"]
    context.close()
    assert errors == []


def _hide(page, hidden: bool) -> None:
    page.evaluate("""(hidden) => {
        Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => hidden ? 'hidden' : 'visible'});
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});
        document.dispatchEvent(new Event('visibilitychange'));
    }""", hidden)


def test_drafts_survive_a_reload_and_only_visible_time_counts(app, live_server, h, browser):
    from playwright.sync_api import expect

    b = h.create_batch(app.test_client(), kind="rate_arguments", redundancy=1, tasks_per_visit=1, limit=1)
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    errors = watch(page)
    page.clock.install()
    enter(page, live_server, b["id"], "draft-1", app)
    page.locator("input[name=arg_1]").first.focus()
    page.keyboard.press("1")  # argument 1: yes
    page.keyboard.press("2")  # argument 2: no
    page.locator("#comment").fill("half-finished thought")
    page.clock.run_for(4_000)   # 4 s looking at the task
    _hide(page, True)
    page.clock.run_for(300_000)  # 5 minutes in another tab: not counted
    _hide(page, False)
    page.clock.run_for(2_000)
    page.reload()
    expect(page.locator("#draft-notice")).to_have_text("Your unsent answers on this task were restored.")
    expect(page.locator("input[name=arg_1][value=yes]")).to_be_checked()
    expect(page.locator("input[name=arg_2][value=no]")).to_be_checked()
    expect(page.locator("#comment")).to_have_value("half-finished thought")
    page.clock.run_for(3_000)
    page.locator("label.choice", has_text="Mostly").click()
    page.get_by_role("button", name="Submit and continue").click()
    expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
    with get_database(app).reading() as s:
        answer, duration = s.execute(select(Judgment.answer, Judgment.duration_s)).one()
    assert answer == {"arguments": {"1": "yes", "2": "no"}, "match": 4, "comment": "half-finished thought"}
    # 4 + 2 + 3 s of visible time (plus the real time the clicks and the reload took), never the 5 hidden minutes
    assert 9.0 <= duration < 60.0, duration
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('argus-draft:'))") == []
    context.close()
    assert errors == []


def test_a_second_tab_is_told_and_a_late_answer_is_not_called_saved(app, live_server, h, browser):
    from playwright.sync_api import expect

    b = h.create_batch(app.test_client(), kind="label", redundancy=1, tasks_per_visit=2, limit=2)
    context = browser.new_context(**DESKTOP)
    tab1 = context.new_page()
    errors = watch(tab1)
    enter(tab1, live_server, b["id"], "tabs-1", app)
    tab2 = context.new_page()
    errors += watch(tab2)
    tab2.goto(tab1.url)  # the same task page: the same lease
    notice = "This task is also open in another tab or window."
    expect(tab2.locator("#tab-notice")).to_contain_text(notice)
    expect(tab1.locator("#tab-notice")).to_contain_text(notice)
    # a third window the first two cannot talk to (another browser profile)
    other = browser.new_context(**DESKTOP)
    tab3 = other.new_page()
    errors += watch(tab3)
    tab3.goto(tab1.url)

    tab1.get_by_label("apple").check()
    tab1.get_by_role("button", name="Submit and continue").click()
    expect(tab1.get_by_text("Task 2 of 2")).to_be_visible()
    expect(tab2.locator("#tab-notice")).to_have_text(
        "This task was submitted in another tab, so the answer on this page will not be saved.")
    expect(tab2.get_by_role("button", name="Go to the next task")).to_be_visible()

    tab3.get_by_label("cherry").check()
    tab3.get_by_role("button", name="Submit and continue").click()
    expect(tab3.locator("#status")).to_have_text("This task had already been submitted (in another tab or window), "
                                                 "so the answer on this page was not saved.")
    tab3.get_by_role("button", name="Go to the next task").click()
    expect(tab3.get_by_text("Task 2 of 2")).to_be_visible()
    with get_database(app).reading() as s:
        assert [a for (a,) in s.execute(select(Judgment.answer))] == [{"label": "apple"}]
    context.close()
    other.close()
    assert errors == []


def _targets_too_small(page) -> list:
    """Visible interactive elements smaller than 44 x 44 CSS px (WCAG 2.5.5)."""
    return page.evaluate("""() => {
        const sel = 'button, a.btn, label.choice, input[type=text], textarea, #marker, select';
        const bad = [];
        for (const el of document.querySelectorAll(sel)) {
            const r = el.getBoundingClientRect();
            if (r.width === 0 && r.height === 0) continue;  // hidden
            if (r.width < 44 || r.height < 44) bad.push(`${el.tagName}#${el.id || el.textContent.trim().slice(0, 20)} ${Math.round(r.width)}x${Math.round(r.height)}`);
        }
        return bad;
    }""")


def _visible_key_hints(page) -> list:
    return page.evaluate("""() => [...document.querySelectorAll('kbd, .kbd-only')]
        .filter(el => el.getClientRects().length > 0).map(el => el.textContent.trim())""")


def test_phone_every_kind_fits_two_screens_with_touch_targets_and_no_broken_hints(app, live_server, h, browser,
                                                                                  tmp_path):
    import json
    import shutil

    from playwright.sync_api import expect

    # the fixture sheets with a third argument on s1: batches rate up to three by default
    sheets = tmp_path / "sheets"
    shutil.copytree(h.SHEETS, sheets)
    s1 = json.loads((sheets / "sheets" / "s1.json").read_text())
    s1["arguments"].append({**s1["arguments"][1], "rank": 3, "channel": 12, "heatmap": "heatmaps/s2_c12.png",
                            "exemplar_strip": "exemplars/channel_12.png", "name": "round part 12"})
    (sheets / "sheets" / "s1.json").write_text(json.dumps(s1))
    # one sheet, four kinds (a name_feature task per explained channel): the worker does every
    # task of the batch, in its own order, and sees the image in several kinds (allow_same_image)
    b = all_tasks_batch(app.test_client(), h, sheets, kinds=KINDS, limit=1, redundancy=1)
    n = b["tasks_per_visit"]
    context = browser.new_context(**PHONE)
    page = context.new_page()
    errors = watch(page)
    page.goto(link(app, live_server, b["id"], "phone-1"))
    page.get_by_label("I have read the information above").check()
    page.get_by_role("button", name="I agree, continue").click()
    expect(page.get_by_role("heading", name="Instructions")).to_be_visible()
    assert _visible_key_hints(page) == []
    text = page.locator("main").inner_text()
    assert "number keys" not in text and "press  to" not in text and "or press" not in text
    page.get_by_role("link", name="Start the tasks").tap()
    heights = {}
    for i in range(n):  # in this worker's own order
        expect(page.get_by_text(f"Task {i + 1} of {n}")).to_be_visible()
        kind = page.locator("#task-form").get_attribute("data-kind")
        page.wait_for_load_state("load")  # images decoded: heights are final
        heights[kind] = page.evaluate("document.documentElement.scrollHeight")
        assert _targets_too_small(page) == [], kind
        assert _visible_key_hints(page) == [], kind
        shot(page, f"worker_{kind}_phone.png")
        if kind == "rate_arguments":
            assert page.locator("div.arg").count() == 3
            for rank in (1, 2, 3):
                page.locator(f"#q-arg-{rank} label.choice", has_text="Yes").tap()
            page.locator("#q-match label.choice", has_text="Mostly").tap()
        elif kind == "mark_rationale":
            box = page.locator("#marker img").bounding_box()
            page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 3)
            expect(page.locator("#mark-count")).to_contain_text("1 mark")
        elif kind == "label":
            page.locator("label.choice", has_text="Can't tell").tap()
        else:
            page.get_by_label("A short name").fill("round thing")
            page.locator("#q-coherence label.choice", has_text="Mostly").tap()
        page.get_by_role("button", name="Submit and continue").tap()
    expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
    assert sorted(heights) == sorted(KINDS)
    print("page heights at 390x844:", heights)
    assert all(height <= 2 * 844 for height in heights.values()), heights
    with get_database(app).reading() as s:
        label = s.scalar(select(Judgment.answer).join(Task, Task.id == Judgment.task_id).where(Task.kind == "label"))
    assert label == {"label": "cant_tell"}
    context.close()

    # at a desk the key hints are whole sentences
    desk = browser.new_context(**DESKTOP)
    page = desk.new_page()
    enter(page, live_server, h.create_batch(app.test_client(), kind="label", redundancy=1)["id"], "desk-1", app)
    assert "or press Enter" in page.locator("#task-form").inner_text()
    page.go_back()
    assert "Keyboard: press the number keys 1–5 to choose an answer" in page.locator("main").inner_text()
    desk.close()
    assert errors == []


def _audit(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    result = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result.response["violations"] if v["impact"] in ("serious", "critical")]


def test_axe_finds_nothing_serious_on_any_worker_page(app, live_server, h, browser):
    from playwright.sync_api import expect

    client = app.test_client()
    b = all_tasks_batch(client, h, h.SHEETS, kinds=KINDS, limit=1, redundancy=2, practice=PRACTICE, practice_pass=0.5)
    n = b["tasks_per_visit"]
    found = {}
    for viewport, options in (("desktop", DESKTOP), ("phone", PHONE)):
        context = browser.new_context(**options)
        page = context.new_page()
        worker = f"axe-{viewport}"

        def check(name):
            page.wait_for_load_state("load")
            found[f"{viewport} {name}"] = _audit(page)

        page.goto(f"{live_server}/w/{b['id']}?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1")
        check("mturk preview")
        page.goto(f"{live_server}/w/{b['id']}")  # an anonymous visit: the server mints the id
        expect(page.get_by_role("heading", name="Before you start")).to_be_visible()
        check("consent")
        page.get_by_label("I have read the information above").check()
        page.get_by_role("button", name="I agree, continue").click()
        expect(page.get_by_text("Practice 1 of 2")).to_be_visible()
        check("practice")
        # a worker who gets both practice items wrong (the pass mark is 50%)
        page.get_by_label("banana").check()
        page.get_by_role("button", name="Check practice answer").click()
        expect(page.locator("#status")).to_have_text("Not quite: the image shows apple. Red, round, with a stalk.")
        check("practice feedback")
        if viewport == "desktop":
            shot(page, "worker_practice_feedback.png")
        page.get_by_role("link", name="Next practice item").click()
        expect(page.get_by_text("Practice 2 of 2")).to_be_visible()
        rate(page, "No")
        page.get_by_role("button", name="Check practice answer").click()
        page.wait_for_url(re.compile(r"/finish$"))
        expect(page.locator("#screened-out")).to_be_visible()
        check("finish, screened out")
        page.goto(f"{live_server}/w/{b['id']}")  # coming back: the done page
        expect(page.locator("#done")).to_be_visible()
        check("done")

        # a second worker passes and does all four kinds
        page.goto(link(app, live_server, b["id"], f"{worker}-2"))
        page.get_by_label("I have read the information above").check()
        page.get_by_role("button", name="I agree, continue").click()
        page.get_by_label("apple").check()
        page.get_by_role("button", name="Check practice answer").click()
        expect(page.locator("#status")).to_have_text("Right: the image shows apple. Red, round, with a stalk.")
        page.get_by_role("link", name="Next practice item").click()
        rate(page, "Yes")
        page.get_by_role("button", name="Check practice answer").click()
        expect(page.locator("#status")).to_have_text(
            "Right: argument 1: yes. The highlighted round part is typical of an apple. You passed the practice: "
            "you can start the tasks.")
        expect(page.get_by_role("link", name="Start the tasks")).to_be_visible()
        check("practice passed")
        page.get_by_role("link", name="Start the tasks").click()
        seen = []
        for i in range(n):  # every task, in the queue's order (least-judged first)
            expect(page.get_by_text(f"Task {i + 1} of {n}")).to_be_visible()
            kind = page.locator("#task-form").get_attribute("data-kind")
            seen.append(kind)
            check(f"task {kind}")
            if kind == "rate_arguments":
                page.get_by_role("button", name="Submit and continue").click()  # nothing answered: the error
                expect(page.locator("#status")).to_have_text("Please answer every question before you continue.")
                check("task with an error")
                rate(page, "No")
                expect(page.locator("#status")).to_have_text("")  # the stale error is gone
            elif kind == "mark_rationale":
                page.get_by_role("button", name="Submit and continue").click()
                expect(page.locator("#status")).to_have_class(re.compile(r"\berror\b"))
                box = page.locator("#marker img").bounding_box()
                page.mouse.click(box["x"] + 10, box["y"] + 10)
                expect(page.locator("#status")).to_have_text("")  # cleared by placing a mark
            elif kind == "label":
                page.get_by_label("apple").check()
            else:
                page.get_by_label("A short name").fill("round")
                page.locator("#q-coherence label.choice", has_text="Mostly").click()
            page.get_by_role("button", name="Submit and continue").click()
        expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
        assert sorted(set(seen)) == sorted(KINDS)
        check("finish")
        page.goto(f"{live_server}/w/v/forged/instructions")
        check("message: link expired")
        context.close()
    problems = {k: v for k, v in found.items() if v}
    assert problems == {}, problems
    assert len(found) == 2 * 14
    # the audit itself sees a serious fault: an image without a text alternative
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    page.goto(f"{live_server}/w/v/forged/instructions")
    page.evaluate("document.querySelector('main').insertAdjacentHTML('beforeend', '<img src=\"/static/none.png\">')")
    assert [p.split(" ")[0] for p in _audit(page)] == ["image-alt"]
    context.close()
