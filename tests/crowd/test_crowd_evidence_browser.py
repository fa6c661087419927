"""Evidence on the worker pages in chromium at a phone's size: exemplar patches and heat-maps open
large on a tap or on Enter, Escape closes them and gives the focus back, keys pressed in the open
picture do not answer the questions, and nothing breaks the page's CSP."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]


@pytest.fixture
def app(sqlite_app):
    return sqlite_app


def test_patches_and_heatmaps_open_large_by_tap_and_by_keyboard(app, live_server, h):
    from playwright.sync_api import expect, sync_playwright

    from crowd.tokens import make_worker_token

    b = h.create_batch(app.test_client(), kinds=["rate_arguments"], limit=1, redundancy=1, tasks_per_visit=1)
    with app.app_context():
        link = f"{live_server}/w/{b['id']}?wt={make_worker_token('zoom-1', b['id'])}"
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 390, "height": 844}, has_touch=True)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(link)
        page.get_by_label("I have read the information above").check()
        page.get_by_role("button", name="I agree, continue").click()
        page.get_by_role("link", name="Start the tasks").click()
        expect(page.get_by_text("Task 1 of 1")).to_be_visible()

        strip_link = page.locator("a.zoom[data-zoom=strip]").first
        inline = strip_link.locator("img").bounding_box()
        # the fixture's strips hold 4 patches of 32 px: inline each is a quarter of the strip's width
        inline_patch = inline["width"] / 4
        strip_link.focus()
        page.keyboard.press("Enter")
        dialog = page.locator("dialog.zoom-dialog")
        expect(dialog).to_be_visible()
        patches = dialog.locator("canvas[role=img]")
        expect(patches).to_have_count(4)
        assert patches.nth(3).get_attribute("aria-label") == "Patch 4 of 4"
        assert page.evaluate("document.activeElement.textContent") == "Close"
        widths = [patches.nth(i).bounding_box()["width"] for i in range(4)]
        assert min(widths) >= 1.5 * inline_patch and min(widths) >= 100, (widths, inline_patch)
        page.keyboard.press("1")  # stays in the dialog: no answer is given behind it
        assert page.locator("input[name=arg_1]:checked").count() == 0
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        assert page.evaluate("document.activeElement === document.querySelector('a.zoom[data-zoom=strip]')")

        heat_link = page.locator("a.zoom:not([data-zoom])").first
        heat_link.tap()
        expect(dialog).to_be_visible()
        big = dialog.locator("img.zoom-img")
        expect(big).to_have_count(1)
        assert big.bounding_box()["width"] > heat_link.locator("img").bounding_box()["width"]
        dialog.get_by_role("button", name="Close").tap()
        expect(dialog).to_be_hidden()

        page.keyboard.press("1")  # outside the dialog the number keys answer again
        assert page.locator("input[name=arg_1]:checked").count() == 1
        assert strip_link.get_attribute("href").split("?")[0].endswith("exemplars/channel_3.png")  # no-JS: the link opens it
        browser.close()
    assert errors == []
