"""What we write plays in Chromium (Debian's, headless): the picture at its size and length,
frames decoded, and the sound decoded where the source had sound."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest

from animegan.video import Mp4Writer, mux_audio, open_clip
from tests.support import clips
from tests.support.browser import chromium

pytestmark = [pytest.mark.browser]

PLAY = """async () => {
  const video = document.getElementById("clip");
  if (video.readyState < 2) {
    await new Promise((done) => { video.onloadeddata = done; video.onerror = done; });
  }
  if (video.error) return {error: video.error.code + " " + video.error.message};
  await video.play();
  await new Promise((done) => {
    const check = () => (video.currentTime > 0.3 || video.ended) ? done() : setTimeout(check, 20);
    check();
  });
  return {width: video.videoWidth, height: video.videoHeight, duration: video.duration,
          frames: video.webkitDecodedFrameCount, soundBytes: video.webkitAudioDecodedByteCount};
}"""


@pytest.fixture(scope="module")
def browser():
    with chromium("--autoplay-policy=no-user-gesture-required") as launched:
        yield launched


def stylized(source: Path, out: Path, max_side: int | None = None) -> Path:
    """Our output for ``source``: its frames through the writer, then its sound."""
    video_only = out.with_suffix(".video.mp4")
    with open_clip(source) as clip, Mp4Writer(video_only, frame_rate=clip.info.frame_rate) as writer:
        for frame in clip.frames(max_side):
            writer.write(frame)
        start = clip.info.start
    mux_audio(video_only, source, out, start=start)
    return out


Case = Callable[[Path], Path]
CASES: dict[str, tuple[Case, int | None, tuple[int, int], float, bool]] = {
    "AAC copied": (
        lambda tmp: clips.write_video(
            tmp / "s.mp4", clips.slow_pan(24, (160, 96)), fps=24, sound=clips.Tone()
        ),
        None,
        (160, 96),
        1.0,
        True,
    ),
    "Opus copied from WebM": (
        lambda tmp: clips.write_video(
            tmp / "s.webm",
            clips.cut(24, (160, 96)),
            fps=24,
            codec="libvpx-vp9",
            sound=clips.Tone(codec="libopus"),
        ),
        None,
        (160, 96),
        1.0,
        True,
    ),
    "PCM transcoded from MOV": (
        lambda tmp: clips.write_video(
            tmp / "s.mov", clips.cut(24, (160, 96)), fps=24, sound=clips.Tone(codec="pcm_s16le")
        ),
        None,
        (160, 96),
        1.0,
        True,
    ),
    "a GIF's uneven durations": (
        lambda tmp: clips.animated_gif(
            tmp / "s.gif", clips.slow_pan(6, (80, 60)), [100, 200, 20, 50, 100, 70]
        ),
        None,
        (80, 60),
        0.54,
        False,
    ),
    "fitted to an odd size": (
        lambda tmp: clips.write_video(
            tmp / "s.mp4", clips.slow_pan(12, (320, 180)), fps=Fraction(30000, 1001)
        ),
        161,
        (162, 92),  # 161 x 91, one edge column and row added
        12 * 1001 / 30000,
        False,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_our_mp4_plays_in_chromium(browser, tmp_path: Path, case: str) -> None:
    build, max_side, size, seconds, sound = CASES[case]
    out = stylized(build(tmp_path), tmp_path / "out.mp4", max_side)
    (tmp_path / "page.html").write_text(f'<video id="clip" src="{out.name}" preload="auto"></video>')
    page = browser.new_page()
    try:
        page.goto((tmp_path / "page.html").as_uri(), wait_until="domcontentloaded")
        played = page.evaluate(PLAY)
    finally:
        page.close()
    assert "error" not in played, played
    assert (played["width"], played["height"]) == size
    assert played["duration"] == pytest.approx(seconds, abs=0.01)
    assert played["frames"] > 0
    assert (played["soundBytes"] > 0) == sound
