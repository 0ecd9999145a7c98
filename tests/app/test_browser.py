"""A real headless Chromium (Debian's) drives the page as a first-time visitor does.

The app runs as a user starts it, at its default size (768 px), so that a miss lasts long
enough to watch its progress. Screenshots of each step land in test-artifacts/ (the
README's pictures in docs/ are taken from them).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import clips
from tests.support.app import launch_app, stop, wait_for_log
from tests.support.browser import chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BADGE = "document.querySelector('#badge textarea, #badge input')"


@pytest.fixture(scope="module")
def browser():
    with chromium("--autoplay-policy=no-user-gesture-required") as launched:
        yield launched


@pytest.fixture(scope="module")
def app_at_full_size(tmp_path_factory, weights_dir):
    tmp = tmp_path_factory.mktemp("browser-app")
    proc, url, log_path = launch_app(tmp, weights_dir, "--max-side", "768")
    wait_for_log(log_path, "warm-up finished", timeout=300)  # the examples are cached
    yield url
    stop(proc)


def badge_text(page) -> str:
    return page.evaluate(f"() => {BADGE}.value")


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def on_screen(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    viewport = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"]


def test_a_first_visit_clicks_an_example_and_sees_its_result_at_once(browser, app_at_full_size):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(app_at_full_size, wait_until="networkidle")
    shot(page, "first-visit")
    assert on_screen(page, ".gallery-item"), "the examples are below the fold"
    page.locator(".gallery-item").first.click()
    page.wait_for_function(f"() => {BADGE}.value.startsWith('exact hit')", timeout=30_000)
    result = page.locator("img[src*='anime-hayao']")
    result.first.wait_for(state="visible", timeout=30_000)
    assert result.first.evaluate("img => img.naturalWidth") > 0
    assert "near-duplicate" in page.locator(".prose.badge-help").inner_text()  # the badge explains itself
    shot(page, "example-clicked")
    page.close()


def test_a_miss_shows_its_progress_moving_then_the_badge(browser, app_at_full_size, unseen_photos):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(app_at_full_size, wait_until="networkidle")
    page.locator("input[type=file]").first.set_input_files(str(unseen_photos[8]))
    page.get_by_role("button", name="Stylize", exact=True).click()
    seen: list[str] = []
    deadline = time.monotonic() + 120
    while not badge_text(page).startswith("generated") and time.monotonic() < deadline:
        text = page.locator(".progress-text, .progress-level-inner, .meta-text").all_inner_texts()
        if text and (not seen or seen[-1] != " ".join(text)):
            seen.append(" ".join(text))
        time.sleep(0.03)
    assert badge_text(page).startswith("generated"), badge_text(page)
    stylizing = [text for text in seen if "Stylizing" in text]
    assert len(stylizing) >= 2, seen  # the bar said Stylizing, and moved
    shot(page, "miss")
    page.get_by_role("button", name="Stylize", exact=True).click()  # the same photo: an exact hit
    page.wait_for_function(f"() => {BADGE}.value.startsWith('exact hit')", timeout=30_000)
    page.close()


def test_on_a_phone_the_badge_and_result_come_on_screen(browser, app_at_full_size):
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(app_at_full_size, wait_until="networkidle")
    shot(page, "phone-first-visit")
    page.locator(".gallery-item").nth(1).click()
    page.wait_for_function(f"() => {BADGE}.value.startsWith('exact hit')", timeout=30_000)
    time.sleep(1.5)  # the page scrolls the badge into view
    assert on_screen(page, "#badge"), "the badge is off screen on a phone"
    shot(page, "phone-result")
    page.close()


def test_a_clip_in_the_video_tab_plays_stylized(browser, app_at_full_size, tmp_path):
    source = clips.write_video(
        tmp_path / "walk.mp4",
        clips.still_shot(8, (320, 180)) + clips.cut(8, (320, 180)),
        fps=8,
        sound=clips.Tone(),
    )
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(app_at_full_size, wait_until="networkidle")
    page.get_by_role("tab", name="Video").click()
    page.locator("#clip-in input[type=file]").set_input_files(str(source))
    page.get_by_role("button", name="Stylize clip").click()
    page.wait_for_function(
        "() => (document.querySelector('#clip-badge textarea, #clip-badge input')?.value || '')"
        ".startsWith('16 frames')",
        timeout=180_000,
    )
    video = page.locator("#clip-out video")
    video.wait_for(state="attached", timeout=30_000)
    played = video.evaluate(
        """async (v) => {
            if (v.readyState < 2) {
                await new Promise((ok) => v.addEventListener('loadeddata', ok, {once: true}));
            }
            v.muted = true; await v.play(); await new Promise((ok) => setTimeout(ok, 500));
            return {width: v.videoWidth, duration: v.duration, time: v.currentTime};
        }"""
    )
    assert played["width"] > 0 and played["duration"] == pytest.approx(2.0, abs=0.2) and played["time"] > 0
    shot(page, "video")
    page.close()
