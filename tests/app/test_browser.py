"""A real headless Chromium (Debian's) drives the page: upload, Stylize, see image and badge."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.browser import chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


def test_upload_stylize_and_see_the_badge(browser, running_app, unseen_photos):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(running_app, wait_until="networkidle")
    page.locator("input[type=file]").first.set_input_files(str(unseen_photos[8]))
    page.get_by_role("button", name="Stylize", exact=True).click()
    badge = page.locator("#badge input")
    page.wait_for_function(
        "() => { const t = document.querySelector('#badge input'); return t && t.value.length > 0; }",
        timeout=60_000,
    )
    assert badge.input_value().startswith("generated")
    result = page.locator("img[src*='anime-hayao']")
    result.first.wait_for(state="visible", timeout=30_000)
    assert result.first.evaluate("img => img.naturalWidth") > 0

    # the same photo again is an exact hit, and the badge says so
    page.get_by_role("button", name="Stylize", exact=True).click()
    page.wait_for_function(
        "() => document.querySelector('#badge input').value.startsWith('exact hit')", timeout=30_000
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)
    page.close()
