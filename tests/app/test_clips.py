"""Clips through the cached service, with the real model: frame count, rate, length and sound
kept; frames like stylizing them as photos; still frames run the model once; the same clip
again is a whole-clip hit; identical clips at once run once; bad and hostile clips refused."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import av
import pytest
from PIL import Image

from animegan.engines import EngineFailure
from animegan.errors import VideoError
from animegan.intake import fitted_size
from cache_store import ResultCache
from stylize_service.clips import ClipService
from stylize_service.service import StylizeService
from tests.support import clips as make

FRAME_SIDE = 160  # the frames the model sees here: a real inference of ~0.05 s
pytestmark = pytest.mark.slow


@pytest.fixture()
def services(tmp_path, weights_dir):
    cache = ResultCache(tmp_path / "cache")
    photos = StylizeService(cache, weights_dir=weights_dir, max_side=256)
    clips = ClipService(photos, max_side=FRAME_SIDE)
    yield photos, clips
    clips.close()
    photos.close()
    cache.close()


def decoded(data: bytes) -> tuple[list[Image.Image], list[float], dict]:
    """An MP4's frames (RGB), their times (s), and what its streams are."""
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        found = {
            "audio": [stream.codec_context.name for stream in container.streams.audio],
            "rate": video.average_rate,
        }
        frames, times = [], []
        for frame in container.decode(video):
            frames.append(frame.to_image())
            times.append(float(frame.time))
    return frames, times, found


def test_a_clip_keeps_its_frames_rate_length_and_sound(services, tmp_path):
    photos, clips = services
    still, pan, cut = (
        make.still_shot(8, (321, 179)),
        make.slow_pan(8, (321, 179), step=9),
        make.cut(8, (321, 179)),
    )
    source = make.write_video(tmp_path / "clip.mp4", still + pan + cut, fps=12, sound=make.Tone())
    outcome = clips.stylize(source, "hayao")

    frames, times, found = decoded(outcome.mp4)
    assert len(frames) == outcome.frames == 24
    assert found["rate"] == 12 and found["audio"] == ["aac"]
    assert times[-1] == pytest.approx(23 / 12, abs=0.01)
    # the frames were fitted like photos (and an odd side padded for yuv420p, never stretched)
    width, height = fitted_size((321, 179), FRAME_SIDE)
    assert frames[0].width - width in (0, 1) and frames[0].height - height in (0, 1)

    # each frame is the model's output for that frame, allowing codec loss (the first of each
    # shot is generated; the others may be its near-duplicates, under the same contract)
    with av.open(str(source)) as container:
        sources = [f.to_image() for f in container.decode(container.streams.video[0])]
    stylizer = photos.stylizer("hayao")
    for index in (0, 8, 12, 16):
        expected = stylizer.stylize(sources[index].resize((width, height), Image.Resampling.LANCZOS))
        got = frames[index].crop((0, 0, width, height))
        assert make.psnr(got, expected) > 26, index

    assert outcome.counts.get("fuzzy", 0) + outcome.counts.get("exact", 0) >= 10  # the two still shots
    assert outcome.model_runs < outcome.frames
    info = outcome.cache_info()
    assert info["frames"] == 24 and info["model_runs"] == outcome.counts["miss"] and info["audio"] is True


def test_the_same_clip_again_is_a_whole_clip_hit(services, tmp_path):
    _, clips = services
    source = make.write_video(tmp_path / "again.mp4", make.slow_pan(6, (200, 120), step=15), fps=6)
    first = clips.stylize(source, "hayao")
    assert first.kind == "miss" and first.model_runs >= 1
    again = clips.stylize(source.read_bytes(), "hayao")
    assert again.kind == "exact" and again.mp4 == first.mp4 and again.model_runs == 0
    assert "whole clip from the cache" in again.badge()


def test_identical_clips_at_once_run_once(services, tmp_path, monkeypatch):
    photos, clips = services
    source = make.write_video(tmp_path / "twice.mp4", make.slow_pan(5, (200, 120), step=17), fps=5)
    stylizer = photos.stylizer("hayao")
    runs: list[int] = []
    real = stylizer.stylize
    monkeypatch.setattr(stylizer, "stylize", lambda *a, **k: runs.append(1) or real(*a, **k))
    barrier = threading.Barrier(3)
    kinds: list[str] = []

    def request() -> None:
        barrier.wait()
        kinds.append(clips.stylize(source, "hayao").kind)

    threads = [threading.Thread(target=request) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(kinds).count("miss") == 1 and set(kinds) <= {"miss", "coalesced", "exact"}
    assert len(runs) <= 5  # the frames of one clip, not three


def test_an_animated_gif_comes_back_as_a_gif_with_its_durations(services, tmp_path):
    _, clips = services
    durations = [100, 250, 60, 400]
    source = make.animated_gif(tmp_path / "loop.gif", make.slow_pan(4, (120, 90), step=20), durations)
    outcome = clips.stylize(source, "hayao")
    assert outcome.gif is not None
    with Image.open(io.BytesIO(outcome.gif)) as gif:
        got = []
        for index in range(gif.n_frames):
            gif.seek(index)
            got.append(gif.info["duration"])
    assert got == durations
    _, times, _ = decoded(outcome.mp4)
    assert [round(t, 2) for t in times] == [0.0, 0.1, 0.35, 0.41]  # the MP4 keeps them too


def test_a_portrait_phone_clip_comes_out_upright(services, tmp_path):
    _, clips = services
    source = make.write_video(tmp_path / "phone.mp4", make.still_shot(3, (192, 108)), fps=3, rotation=-90)
    frames, _, _ = decoded(clips.stylize(source, "hayao").mp4)
    assert frames[0].height > frames[0].width


@pytest.mark.parametrize(
    "name, build, reason",
    [
        ("text", lambda tmp: b"this is not a clip at all\n" * 50, "not_video"),
        ("a photo", lambda tmp: Path("examples/rocket.jpg").read_bytes(), "not_video"),
        (
            "cut short",
            lambda tmp: make.write_video(tmp / "c.mp4", make.still_shot(12, (160, 90))).read_bytes()[:3000],
            None,
        ),
        (
            "16000 x 16000 declared",
            lambda tmp: make.webm([make.declaring(make.vp8_keyframe(64, 48), 16000, 16000)], (16000, 16000)),
            None,
        ),
        (
            "too long",
            lambda tmp: make.write_video(tmp / "l.mp4", make.still_shot(40, (64, 48)), fps=1).read_bytes(),
            "too_long",
        ),
    ],
)
def test_bad_and_hostile_clips_are_refused_and_the_next_one_works(services, tmp_path, name, build, reason):
    photos, _ = services
    strict = ClipService(photos, max_side=FRAME_SIDE, limits=make_limits())
    try:
        data = build(tmp_path)
        with pytest.raises(VideoError) as refused:
            strict.stylize(data, "hayao")
        if reason is not None:
            assert refused.value.reason == reason, str(refused.value)
        assert str(refused.value).startswith("The uploaded clip"), str(refused.value)
        ok = make.write_video(tmp_path / "ok.mp4", make.still_shot(2, (96, 64)), fps=2)
        assert strict.stylize(ok, "hayao").frames == 2
    finally:
        strict.close()


def make_limits():
    from animegan.video import ClipLimits

    return ClipLimits(max_duration=30.0, max_frames=60)


def test_an_engine_failure_on_the_first_frame_is_retried_not_masked(services, tmp_path, monkeypatch):
    """The writers are abandoned, not finished, when a frame fails: the failure itself reaches
    `stylize`, which runs the clip once more on the engine now current."""
    photos, clips = services
    real, calls = photos.run_model, []

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise EngineFailure("The OpenVINO engine failed (test); the torch engine takes over.")
        return real(*args, **kwargs)

    monkeypatch.setattr(photos, "run_model", fails_once)
    clip = make.write_video(tmp_path / "still.mp4", make.still_shot(6, (192, 108), seed=3), fps=12)
    outcome = clips.stylize(clip, "hayao")
    assert outcome.frames == 6 and len(calls) >= 2
    frames, _, _ = decoded(outcome.mp4)
    assert len(frames) == 6
