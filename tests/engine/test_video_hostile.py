"""Bad and hostile clips are refused with the right typed error, before the work they ask for.

Every file is generated here: honest clips broken on purpose (cut short, packets damaged),
and hostile ones built byte by byte (a header declaring 16000 x 16000 pixels, thousands of
tracks, a GIF canvas of 65535 x 65535). Memory is measured in a fresh process.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from animegan.errors import VideoError
from animegan.video import ClipLimits, open_clip, source
from tests.support import clips

REPO = Path(__file__).resolve().parents[2]


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def mp4(tmp: Path, *, faststart: bool = True) -> bytes:
    pictures = clips.slow_pan(24, (96, 64))
    return clips.write_video(tmp / "honest.mp4", pictures, fps=24, faststart=faststart).read_bytes()


def audio_only(tmp: Path) -> Path:
    path = tmp / "sound.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48_000)
        stream.layout = "stereo"
        clips.write_tone(container, stream, clips.Tone(), 0.5)
    return path


KEYFRAME = clips.vp8_keyframe(64, 48)
HUGE = clips.declaring(KEYFRAME, 16000, 16000)

Build = Callable[[Path], "bytes | Path"]

REFUSED: list[tuple[str, Build, ClipLimits | None, str]] = [
    ("empty", lambda tmp: b"", None, "empty"),
    ("random bytes", lambda tmp: np.random.default_rng(0).bytes(5000), None, "not_video"),
    ("a JPEG photo", lambda tmp: encoded(Image.new("RGB", (64, 48)), "JPEG"), None, "still_image"),
    ("a PNG photo", lambda tmp: encoded(Image.new("RGB", (64, 48)), "PNG"), None, "still_image"),
    ("a still GIF", lambda tmp: encoded(Image.new("RGB", (64, 48)), "GIF"), None, "still_image"),
    ("a still WebP", lambda tmp: encoded(Image.new("RGB", (64, 48)), "WEBP"), None, "still_image"),
    ("a HEIC photo", lambda tmp: b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64), None, "unsupported"),
    (
        "random bytes after an MP4 header",
        lambda tmp: mp4(tmp)[:32] + np.random.default_rng(1).bytes(20000),
        None,
        "damaged",
    ),
    ("an MP4 cut short", lambda tmp: mp4(tmp)[: len(mp4(tmp)) * 6 // 10], None, "truncated"),
    ("an MP4 cut inside its index (last)", lambda tmp: mp4(tmp, faststart=False)[:-300], None, "truncated"),
    ("an MP4 cut before its index (last)", lambda tmp: mp4(tmp, faststart=False)[:1500], None, "damaged"),
    (
        "a GIF cut short",
        lambda tmp: clips.animated_gif(tmp / "a.gif", clips.slow_pan(6, (80, 60)), [100] * 6).read_bytes()[
            :-40
        ],
        None,
        "truncated",
    ),
    ("16000 x 16000 declared", lambda tmp: clips.webm([HUGE] * 3, (16000, 16000)), None, "too_large"),
    ("frames larger than declared", lambda tmp: clips.webm([HUGE] * 3, (64, 48)), None, "damaged"),
    ("a GIF canvas of 65535 x 65535", lambda tmp: clips.gif_with_canvas(65535, 65535), None, "too_large"),
    ("a GIF canvas over the limit", lambda tmp: clips.gif_with_canvas(5000, 5000), None, "too_large"),
    ("a WebP canvas of 16000 x 16000", lambda tmp: clips.webp_with_canvas(16000, 16000), None, "too_large"),
    ("a WebP canvas over the limit", lambda tmp: clips.webp_with_canvas(5000, 5000), None, "too_large"),
    (
        "3000 tracks (WebM)",
        lambda tmp: clips.webm([KEYFRAME] * 3, (64, 48), subtitle_tracks=3000),
        None,
        "too_many_streams",
    ),
    ("2000 tracks (MP4)", lambda tmp: clips.with_copied_tracks(mp4(tmp), 2000), None, "too_many_streams"),
    (
        "a video track without frames",
        lambda tmp: clips.webm([], (64, 48), duration_seconds=1.0),
        None,
        "no_video",
    ),
    ("only sound", audio_only, None, "no_video"),
    ("4 x 4 pixels", lambda tmp: clips.webm([KEYFRAME] * 3, (4, 4)), None, "too_small"),
    (
        "640 x 16 pixels",
        lambda tmp: clips.write_video(tmp / "thin.mp4", clips.still_shot(3, (640, 16)), fps=8),
        None,
        "bad_aspect",
    ),
    (
        "an FFV1 clip",
        lambda tmp: clips.write_video(tmp / "c.mkv", clips.still_shot(3, (64, 48)), fps=8, codec="ffv1"),
        None,
        "unsupported",
    ),
    (
        "120 frames per second",
        lambda tmp: clips.write_video(tmp / "fast.mp4", clips.slow_pan(12, (64, 48)), fps=120),
        None,
        "frame_rate",
    ),
    (
        "31 seconds",
        lambda tmp: clips.write_video(tmp / "long.mp4", clips.still_shot(31, (32, 32)), fps=1),
        None,
        "too_long",
    ),
    ("24 frames, 10 allowed", mp4, ClipLimits(max_frames=10), "too_many_frames"),
    ("a file over the byte cap", mp4, ClipLimits(max_bytes=1000), "too_large"),
]


@pytest.mark.parametrize(
    ("build", "limits", "reason"), [case[1:] for case in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused_with_the_right_reason(
    tmp_path: Path, build: Build, limits: ClipLimits | None, reason: str
) -> None:
    source = build(tmp_path)
    with pytest.raises(VideoError) as refused, open_clip(source, limits=limits) as clip:
        for _frame in clip.frames(None):
            pass
    assert refused.value.reason == reason, str(refused.value)
    message = str(refused.value)
    assert message[0].isupper() and message.endswith(".") and len(message.split()) >= 8
    assert not any(word in message for word in ("Errno", "av.", "FFmpeg", "Traceback", "<none>"))


def test_limits_are_held_again_while_decoding_when_the_header_says_nothing(tmp_path: Path) -> None:
    """A live-recorded WebM declares no duration: the limits stop it after exactly the allowed frames."""
    endless = clips.webm([KEYFRAME] * 40, (64, 48), fps=1)
    for limits, reason in (
        (ClipLimits(max_frames=10), "too_many_frames"),
        (ClipLimits(max_duration=10), "too_long"),
    ):
        seen = []
        with open_clip(endless, limits=limits) as clip, pytest.raises(VideoError) as refused:
            assert clip.info.duration is None and clip.info.frames is None
            for frame in clip.frames(None):
                seen.append(frame.index)
        assert refused.value.reason == reason and seen == list(range(10))


def test_a_matroska_file_cut_short_is_refused_after_its_frames(tmp_path: Path) -> None:
    """Matroska has no index to check first: the frames up to the cut come, then the refusal."""
    whole = clips.webm([KEYFRAME] * 120, (64, 48), fps=30, duration_seconds=4.0)
    seen = []
    with open_clip(whole[: len(whole) // 2]) as clip, pytest.raises(VideoError) as refused:
        for frame in clip.frames(None):
            seen.append(frame.index)
    assert refused.value.reason == "truncated" and 50 < len(seen) < 70
    with open_clip(whole) as clip:
        assert len(list(clip.frames(None))) == 120


def every_frame_a_key_frame(tmp: Path) -> tuple[Path, list[np.ndarray]]:
    pictures = clips.slow_pan(24, (96, 64), step=4)
    return clips.write_video(tmp / "intra.mp4", pictures, fps=24, options={"g": "1"}), pictures


def test_a_few_broken_packets_are_skipped_and_the_frame_before_stays(tmp_path: Path) -> None:
    path, pictures = every_frame_a_key_frame(tmp_path)
    spans = clips.sample_spans(path)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clips.with_broken_samples(path.read_bytes(), spans[5:7]))
    with open_clip(broken) as clip:
        frames = list(clip.frames(None))
    assert len(frames) == 22
    assert frames[4].duration == Fraction(3, 24)  # shown until frame 7, the next good one
    assert sum(f.duration for f in frames) == 1
    shown = [0, 1, 2, 3, 4, *range(7, 24)]
    for frame, index in zip(frames, shown, strict=True):
        scores = [float(np.mean((np.asarray(frame.image, float) - p) ** 2)) for p in pictures]
        assert int(np.argmin(scores)) == index


@pytest.mark.parametrize("which", ["all but the first", "every other"])
def test_a_clip_broken_throughout_is_refused(tmp_path: Path, which: str) -> None:
    path, _ = every_frame_a_key_frame(tmp_path)
    spans = clips.sample_spans(path)
    chosen = spans[1:] if which == "all but the first" else spans[1::2]
    broken = clips.with_broken_samples(path.read_bytes(), chosen)
    with pytest.raises(VideoError) as refused, open_clip(broken) as clip:
        for _frame in clip.frames(None):
            pass
    assert refused.value.reason == "damaged"


class SlowFile(io.BytesIO):
    """A file giving 256 bytes per read after 10 ms: a stand-in for a demuxer kept busy
    by what it reads (a file object may return fewer bytes than asked)."""

    def read(self, size: int | None = -1) -> bytes:
        time.sleep(0.01)
        return super().read(256)


def test_opening_stops_when_its_time_is_spent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    honest = mp4(tmp_path)  # its headers and first frame take a dozen such reads
    monkeypatch.setattr(source, "OPEN_SECONDS", 0.03)
    with pytest.raises(VideoError) as refused:
        source.open_container(SlowFile(honest), "mp4", ClipLimits(), "The clip")
    assert refused.value.reason == "too_complex"
    monkeypatch.setattr(source, "OPEN_SECONDS", 60.0)
    with source.open_container(SlowFile(honest), "mp4", ClipLimits(), "The clip") as container:
        assert container.streams.video


MEMORY_SCRIPT = """
import json, resource, sys
from pathlib import Path
from animegan.errors import VideoError
from animegan.video import probe

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

probe(Path(sys.argv[1]))  # an honest clip first: libraries loaded, buffers warm
growth = {}
for path in sys.argv[2:]:
    before = peak_mb()
    try:
        probe(Path(path))
        outcome = "accepted"
    except VideoError as exc:
        outcome = exc.reason
    growth[Path(path).name] = (outcome, peak_mb() - before)
print(json.dumps(growth))
"""


def test_hostile_headers_cost_no_memory(tmp_path: Path) -> None:
    """A frame of 16000 x 16000 is 384 MB in 4:2:0; nothing near it may be allocated."""
    honest = clips.write_video(tmp_path / "honest.mp4", clips.still_shot(3, (64, 48)), fps=8)
    hostile = {
        "declared.webm": clips.webm([HUGE] * 3, (16000, 16000)),
        "lying.webm": clips.webm([HUGE] * 3, (64, 48)),
        "canvas.gif": clips.gif_with_canvas(65535, 65535),
        "canvas.webp": clips.webp_with_canvas(5000, 5000),
        "tracks.webm": clips.webm([KEYFRAME] * 3, (64, 48), subtitle_tracks=3000),
    }
    for name, data in hostile.items():
        (tmp_path / name).write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", MEMORY_SCRIPT, str(honest), *(str(tmp_path / n) for n in hostile)]
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env, cwd=REPO)
    growth = json.loads(result.stdout)
    assert {name: outcome for name, (outcome, _) in growth.items()} == {
        "declared.webm": "too_large",
        "lying.webm": "damaged",
        "canvas.gif": "too_large",
        "canvas.webp": "too_large",
        "tracks.webm": "too_many_streams",
    }
    assert all(megabytes < 32 for _, megabytes in growth.values()), growth
