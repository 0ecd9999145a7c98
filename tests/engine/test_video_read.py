"""Frames in: clips of every accepted kind decode to their pictures, in order, with their
times, upright, fitted like photos, one frame at a time.

Every clip is generated here (`tests.support.clips`), so each frame's expected picture is
known; codec loss is allowed for as PSNR.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import weakref
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from animegan.errors import ImageError, VideoError
from animegan.intake import Photo, fitted_size
from animegan.video import ClipLimits, open_clip, probe
from tests.support import clips
from tests.support.clips import psnr

REPO = Path(__file__).resolve().parents[2]


def read_all(path: Path, max_side: int | None = None, limits: ClipLimits | None = None):
    with open_clip(path, limits=limits) as clip:
        return clip.info, list(clip.frames(max_side))


def test_a_still_shot_keeps_its_frame_count_rate_and_duration(tmp_path: Path) -> None:
    pictures = clips.still_shot(24, (160, 96))
    info, frames = read_all(clips.write_video(tmp_path / "still.mp4", pictures, fps=24))
    assert (info.kind, info.codec, info.width, info.height) == ("mp4", "h264", 160, 96)
    assert (info.frames, info.frame_rate, info.duration) == (24, 24, 1)
    assert [f.index for f in frames] == list(range(24))
    assert [f.time for f in frames] == [Fraction(i, 24) for i in range(24)]
    assert {f.duration for f in frames} == {Fraction(1, 24)}
    assert min(psnr(f.image, pictures[0]) for f in frames) > 33


def test_a_pan_comes_out_in_presentation_order(tmp_path: Path) -> None:
    """x264 reorders frames (B-frames); each decoded frame must be its own picture, not a neighbour."""
    pictures = clips.slow_pan(20, (160, 96), step=3)
    _, frames = read_all(clips.write_video(tmp_path / "pan.mp4", pictures, fps=20))
    assert len(frames) == 20
    for i, frame in enumerate(frames):
        scores = [psnr(frame.image, picture) for picture in pictures]
        assert int(np.argmax(scores)) == i and scores[i] > 35


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [
        (".webm", "libvpx-vp9"),
        (".webm", "libvpx"),
        (".webm", "libsvtav1"),
        (".mov", "libx264"),
        (".mkv", "libx264"),
    ],
)
def test_webm_mov_and_mkv_decode_alike(tmp_path: Path, suffix: str, codec: str) -> None:
    pictures = clips.cut(12, (96, 64))
    info, frames = read_all(clips.write_video(tmp_path / f"cut{suffix}", pictures, fps=12, codec=codec))
    assert info.kind == ("mp4" if suffix == ".mov" else "matroska")
    assert (info.width, info.height, info.frame_rate) == (96, 64, 12)
    assert len(frames) == 12
    assert abs(frames[-1].time - Fraction(11, 12)) <= Fraction(1, 1000)  # Matroska counts milliseconds
    assert min(psnr(f.image, p) for f, p in zip(frames, pictures, strict=True)) > 30


def test_a_ten_bit_clip_decodes_to_eight_bit_rgb(tmp_path: Path) -> None:
    """Phones record 10-bit video (HEVC, HDR); the frames come out as 8-bit RGB all the same."""
    pictures = clips.cut(6, (96, 64))
    path = clips.write_video(tmp_path / "ten.mp4", pictures, fps=12, pix_fmt="yuv420p10le")
    _, frames = read_all(path)
    assert [f.image.mode for f in frames] == ["RGB"] * 6
    assert min(psnr(f.image, p) for f, p in zip(frames, pictures, strict=True)) > 33


def test_frames_are_fitted_exactly_like_photos(tmp_path: Path) -> None:
    path = clips.write_video(tmp_path / "odd.mp4", clips.slow_pan(6, (321, 179)), fps=Fraction(30000, 1001))
    info, full = read_all(path)
    assert (info.width, info.height, info.frame_rate) == (321, 179, Fraction(30000, 1001))
    _, fitted = read_all(path, max_side=160)
    assert fitted[0].image.size == fitted_size((321, 179), 160) == (160, 89)
    for small, large in zip(fitted, full, strict=True):
        assert np.array_equal(
            np.asarray(small.image), np.asarray(Photo(rgb=large.image, alpha=None).fit(160).rgb)
        )
    _, unchanged = read_all(path, max_side=1000)  # never upscaled
    assert unchanged[0].image.size == (321, 179)


@pytest.mark.parametrize(
    ("rotation", "marker"),
    [(-90, "top right"), (90, "bottom left"), (180, "bottom right"), (0, "top left")],
)
def test_a_phone_clip_is_turned_upright(tmp_path: Path, rotation: int, marker: str) -> None:
    """A portrait iPhone clip stores landscape frames and a display matrix of -90 degrees."""
    path = clips.write_video(tmp_path / "phone.mov", [clips.marked((96, 64))] * 4, fps=8, rotation=rotation)
    info, frames = read_all(path, max_side=48)
    swapped = rotation in (90, -90)
    assert (info.width, info.height) == ((64, 96) if swapped else (96, 64))
    assert info.rotation == rotation % 360
    picture = np.asarray(frames[0].image).astype(int)
    assert frames[0].image.size == ((32, 48) if swapped else (48, 32))
    height, width = picture.shape[:2]
    corners = {
        "top left": picture[2, 2],
        "top right": picture[2, width - 3],
        "bottom left": picture[height - 3, 2],
        "bottom right": picture[height - 3, width - 3],
    }
    reds = {name for name, (r, g, b) in corners.items() if r > 180 and g < 80 and b < 80}
    assert reds == {marker}


def test_times_count_from_the_first_frame(tmp_path: Path) -> None:
    path = clips.write_video(
        tmp_path / "late.mp4", clips.still_shot(6, (64, 48)), fps=12, first_time=Fraction(1, 2)
    )
    info, frames = read_all(path)
    assert info.start == Fraction(1, 2)
    assert frames[0].time == 0 and frames[-1].time == Fraction(5, 12)


def test_a_gif_keeps_its_frame_durations_and_loop_count(tmp_path: Path) -> None:
    """0 and 10 ms frames are shown for 100 ms, as browsers show them; 20 ms stays 20 ms."""
    pictures = clips.slow_pan(6, (80, 60))
    path = clips.animated_gif(tmp_path / "a.gif", pictures, [0, 10, 20, 50, 100, 70], loop=2)
    info, frames = read_all(path)
    assert (info.kind, info.frames, info.loop, info.width, info.height) == ("gif", 6, 2, 80, 60)
    assert [f.duration * 1000 for f in frames] == [100, 100, 20, 50, 100, 70]
    assert [f.time * 1000 for f in frames] == [0, 100, 200, 220, 270, 370]
    assert min(psnr(f.image, p) for f, p in zip(frames, pictures, strict=True)) > 25  # a 255-colour palette


def test_a_gif_without_a_loop_extension_plays_once(tmp_path: Path) -> None:
    path = clips.animated_gif(tmp_path / "once.gif", clips.cut(4, (40, 30)), [100] * 4, loop=None)
    assert probe(path).loop is None


def test_gif_transparency_is_shown_on_white(tmp_path: Path) -> None:
    pictures = clips.slow_pan(3, (80, 60))
    path = clips.animated_gif(tmp_path / "t.gif", pictures, [100] * 3, transparent_corner=True)
    _, frames = read_all(path)
    assert len(frames) == 3
    for frame, source in zip(frames, pictures, strict=True):
        picture = np.asarray(frame.image)
        assert (picture[:30, :40] == 255).all()
        assert psnr(picture[30:, 40:], source[30:, 40:]) > 25


def test_an_animated_webp_keeps_its_durations(tmp_path: Path) -> None:
    pictures = clips.slow_pan(6, (80, 60))
    path = clips.animated_webp(tmp_path / "a.webp", pictures, [30, 40, 50, 60, 70, 80], loop=0)
    info, frames = read_all(path)
    assert (info.kind, info.frames, info.loop) == ("webp", 6, 0)
    assert [f.duration * 1000 for f in frames] == [30, 40, 50, 60, 70, 80]
    assert all(
        np.array_equal(np.asarray(f.image), p) for f, p in zip(frames, pictures, strict=True)
    )  # lossless


def test_the_sound_track_is_named(tmp_path: Path) -> None:
    silent = clips.write_video(tmp_path / "silent.mp4", clips.still_shot(4, (64, 48)), fps=8)
    loud = clips.write_video(tmp_path / "loud.mp4", clips.still_shot(4, (64, 48)), fps=8, sound=clips.Tone())
    assert probe(silent).audio is None and probe(loud).audio == "aac"


def test_frames_stream_one_at_a_time(tmp_path: Path) -> None:
    """The reader keeps no frame it has handed out: each is freed once the caller drops it."""
    path = clips.write_video(tmp_path / "long.mp4", clips.slow_pan(48, (160, 96)), fps=24)
    alive = []
    with open_clip(path) as clip:
        for frame in clip.frames(None):
            alive.append(weakref.ref(frame.image))
            del frame  # reference counting frees it now, unless something else holds it
            assert sum(ref() is not None for ref in alive) == 0
    assert len(alive) == 48


def test_a_clip_read_twice_must_be_opened_twice(tmp_path: Path) -> None:
    path = clips.write_video(tmp_path / "c.mp4", clips.still_shot(3, (64, 48)), fps=8)
    with open_clip(path) as clip:
        assert len(list(clip.frames(None))) == 3
        with pytest.raises(RuntimeError):
            next(clip.frames(None))


def test_bytes_are_read_like_files(tmp_path: Path) -> None:
    path = clips.write_video(tmp_path / "c.webm", clips.cut(6, (64, 48)), fps=12, codec="libvpx-vp9")
    by_path, by_bytes = probe(path), probe(path.read_bytes())
    assert by_path == by_bytes


def test_what_crosses_a_process_boundary_pickles(tmp_path: Path) -> None:
    """Untrusted clips are decoded in worker processes: info, frames and errors come back pickled."""
    path = clips.write_video(tmp_path / "c.mp4", clips.still_shot(3, (64, 48)), fps=8)
    info, frames = read_all(path)
    assert pickle.loads(pickle.dumps(info)) == info
    copy = pickle.loads(pickle.dumps(frames[1]))
    assert (copy.time, copy.duration) == (frames[1].time, frames[1].duration)
    assert np.array_equal(np.asarray(copy.image), np.asarray(frames[1].image))
    for error in (
        VideoError("The clip is too long.", "too_long"),
        ImageError("The image is empty.", "empty"),
    ):
        back = pickle.loads(pickle.dumps(error))
        assert (type(back), str(back), back.reason) == (type(error), str(error), error.reason)


def test_the_video_package_imports_without_torch() -> None:
    """It runs in decoding workers, which must start fast."""
    code = "import sys, animegan.video; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
