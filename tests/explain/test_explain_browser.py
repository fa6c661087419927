"""Sheets in a real browser (Debian's chromium via Playwright): phone layout and index filters."""

from __future__ import annotations

import json

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_sheet_fits_a_phone_and_index_filters(sheets):
    sheets_dir = sheets[0]
    from playwright.sync_api import sync_playwright

    docs = [json.loads(p.read_text()) for p in sorted((sheets_dir / "sheets").glob("*.json"))]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 740}, device_scale_factor=2)
            page.goto((sheets_dir / "sheets" / f"{docs[0]['sample_id']}.html").as_uri())
            # No horizontal scrolling on a phone; every image (input, heatmaps, exemplar strips) loads.
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
            n_images = page.evaluate("document.images.length")
            bright = docs[0]["image_brightened"] is not None
            assert broken == 0 and n_images == 1 + bright + 2 * len(docs[0]["arguments"])
            assert docs[0]["sentence"].split(" mainly")[0].replace("'", "") in page.inner_text(".sentence").replace("'", "")

            page.goto((sheets_dir / "index.html").as_uri())
            assert page.locator(".item:visible").count() == len(docs)
            domain = docs[0]["domain"]
            page.select_option("#f-domain", domain)
            assert page.locator(".item:visible").count() == sum(d["domain"] == domain for d in docs)
            page.select_option("#f-domain", "")
            page.select_option("#f-correct", "false")
            assert page.locator(".item:visible").count() == sum(d["correct"] is False for d in docs)
            page.select_option("#f-correct", "")
            cls = docs[0]["prediction"]["class"]
            page.select_option("#f-class", cls)
            expected = sum(cls in (d["prediction"]["class"], d["label"]) for d in docs)
            assert page.locator(".item:visible").count() == expected
            assert page.inner_text("#count") == f"{expected} shown"
        finally:
            browser.close()
