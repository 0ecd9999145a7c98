"""Frames out: the MP4 keeps the source's frame count, rate, timing and sound; the GIF keeps
its durations and loop count. Outputs are read back with PyAV (and with Pillow for GIFs)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from animegan.video import ClipFrame, GifWriter, Mp4Writer, mux_audio, open_clip
from tests.support import clips
from tests.support.clips import psnr


def copy_clip(source: Path, out: Path, max_side: int | None = None) -> tuple:
    """Read ``source`` and write its frames unchanged to ``out`` (what the service does with
    stylized ones); the clip's info and the frames written."""
    with open_clip(source) as clip, Mp4Writer(out, frame_rate=clip.info.frame_rate) as writer:
        frames = []
        for frame in clip.frames(max_side):
            writer.write(frame)
            frames.append(frame)
        return clip.info, frames


def read_back(path: Path) -> tuple:
    with open_clip(path) as clip:
        return clip.info, list(clip.frames(None))


def stream_facts(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        context = video.codec_context
        return {
            "codec": context.name,
            "pix_fmt": context.pix_fmt,
            "size": (context.width, context.height),
            "frames": video.frames,
            "colour": (context.colorspace, context.color_primaries, context.color_trc, context.color_range),
            "audio": audio.codec_context.codec.canonical_name if audio is not None else None,
            "audio_seconds": float(audio.duration * audio.time_base) if audio is not None else None,
            "video_seconds": float(video.duration * video.time_base),
        }


def test_an_mp4_round_trip_keeps_frame_count_rate_and_times(tmp_path: Path) -> None:
    pictures = clips.slow_pan(30, (320, 180))
    source = clips.write_video(tmp_path / "pan.mp4", pictures, fps=Fraction(30000, 1001))
    info, written = copy_clip(source, tmp_path / "out.mp4")
    facts = stream_facts(tmp_path / "out.mp4")
    assert (facts["codec"], facts["pix_fmt"], facts["size"], facts["frames"]) == (
        "h264",
        "yuv420p",
        (320, 180),
        30,
    )
    assert facts["colour"] == (1, 1, 1, 1)  # BT.709, limited range: what players assume for HD
    assert facts["audio"] is None
    back_info, back = read_back(tmp_path / "out.mp4")
    assert back_info.frame_rate == info.frame_rate == Fraction(30000, 1001)
    assert back_info.duration == info.duration == Fraction(30 * 1001, 30000)
    assert [f.time for f in back] == [f.time for f in written]
    assert [f.duration for f in back] == [f.duration for f in written]
    assert min(psnr(a.image, b.image) for a, b in zip(back, written, strict=True)) > 38


def test_the_index_comes_first_so_playback_starts_at_once(tmp_path: Path) -> None:
    copy_clip(clips.write_video(tmp_path / "a.mp4", clips.cut(8, (96, 64)), fps=8), tmp_path / "out.mp4")
    kinds = [kind for kind, _box in clips.boxes((tmp_path / "out.mp4").read_bytes())]
    assert kinds.index(b"moov") < kinds.index(b"mdat")


def test_odd_sides_get_one_more_row_and_column_copied_from_the_edge(tmp_path: Path) -> None:
    source = clips.write_video(tmp_path / "odd.mp4", clips.slow_pan(6, (321, 179)), fps=12)
    _, written = copy_clip(source, tmp_path / "out.mp4")
    assert stream_facts(tmp_path / "out.mp4")["size"] == (322, 180)
    _, back = read_back(tmp_path / "out.mp4")
    for out, frame in zip(back, written, strict=True):
        picture = np.asarray(out.image)
        assert psnr(picture[:179, :321], frame.image) > 38  # nothing stretched
        assert psnr(picture[:, 321], picture[:, 320]) > 30  # the added column repeats the edge
        assert psnr(picture[179], picture[178]) > 30


def test_a_gif_keeps_its_uneven_frame_durations_in_the_mp4(tmp_path: Path) -> None:
    gif = clips.animated_gif(tmp_path / "a.gif", clips.slow_pan(6, (80, 60)), [0, 10, 20, 50, 100, 70])
    copy_clip(gif, tmp_path / "out.mp4")
    _, back = read_back(tmp_path / "out.mp4")
    assert [f.time * 1000 for f in back] == [0, 100, 200, 220, 270, 370]
    assert [f.duration * 1000 for f in back] == [100, 100, 20, 50, 100, 70]  # the last one too
    assert stream_facts(tmp_path / "out.mp4")["video_seconds"] == pytest.approx(0.44)


def test_frames_of_another_size_are_fitted_to_the_first(tmp_path: Path) -> None:
    """A stylizer's output may be a pixel off; the stream keeps one size."""
    red = Image.new("RGB", (64, 48), (200, 30, 30))
    with Mp4Writer(tmp_path / "out.mp4", frame_rate=Fraction(10)) as writer:
        writer.write(ClipFrame(red, 0, Fraction(0), Fraction(1, 10)))
        writer.write(ClipFrame(red.resize((65, 49)), 1, Fraction(1, 10), Fraction(1, 10)))
    assert stream_facts(tmp_path / "out.mp4")["size"] == (64, 48)
    assert len(read_back(tmp_path / "out.mp4")[1]) == 2


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyError), Mp4Writer(out) as writer:
        writer.write(ClipFrame(Image.new("RGB", (64, 48)), 0, Fraction(0), Fraction(1, 10)))
        raise KeyError("the model failed")
    assert not out.exists()


def test_a_colon_in_a_file_name_is_not_a_protocol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FFmpeg would read "clip:1.mp4" as the protocol "clip"; an uploaded name may look like that."""
    source = clips.write_video(tmp_path / "s.mp4", clips.cut(6, (96, 64)), fps=12, sound=clips.Tone())
    monkeypatch.chdir(tmp_path)
    info, _ = copy_clip(source, Path("clip:1.mp4"))
    assert mux_audio("clip:1.mp4", source, "clip:2.mp4", start=info.start)
    assert stream_facts(tmp_path / "clip:2.mp4")["audio"] == "aac"


def gif_facts(path: Path) -> tuple[int, int | None, list[int], list[np.ndarray]]:
    with Image.open(path) as image:
        durations, pictures = [], []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
            pictures.append(np.asarray(image.convert("RGB")))
        return image.n_frames, image.info.get("loop"), durations, pictures


def test_a_gif_comes_back_as_a_gif_with_its_durations_loop_and_frames(tmp_path: Path) -> None:
    pictures = clips.slow_pan(6, (80, 60))
    gif = clips.animated_gif(tmp_path / "a.gif", pictures, [30, 40, 50, 60, 70, 80], loop=2)
    with open_clip(gif) as clip, GifWriter(tmp_path / "out.gif", loop=clip.info.loop) as writer:
        frames = list(clip.frames(None))
        for frame in frames:
            writer.write(frame)
    count, loop, durations, decoded = gif_facts(tmp_path / "out.gif")
    assert (count, loop, durations) == (6, 2, [30, 40, 50, 60, 70, 80])
    assert min(psnr(a, b.image) for a, b in zip(decoded, frames, strict=True)) > 30


def test_equal_neighbours_stay_separate_frames(tmp_path: Path) -> None:
    """Pillow's GIF writer would merge them (and change the frame count)."""
    still = Image.fromarray(clips.scene(80, 60))
    with GifWriter(tmp_path / "out.gif") as writer:
        for index in range(4):
            writer.write(ClipFrame(still, index, Fraction(index, 10), Fraction(1, 10)))
    assert gif_facts(tmp_path / "out.gif")[:3] == (4, 0, [100] * 4)


def test_a_gif_without_a_loop_stays_without_one(tmp_path: Path) -> None:
    gif = clips.animated_gif(tmp_path / "a.gif", clips.cut(4, (40, 30)), [100] * 4, loop=None)
    with open_clip(gif) as clip, GifWriter(tmp_path / "out.gif", loop=clip.info.loop) as writer:
        for frame in clip.frames(None):
            writer.write(frame)
    assert gif_facts(tmp_path / "out.gif")[1] is None


def test_gif_frames_are_never_shorter_than_browsers_show_them(tmp_path: Path) -> None:
    """A GIF frame of 10 ms or less is shown for 100 ms; a 60 fps source is held 20 ms a frame."""
    source = clips.write_video(tmp_path / "fast.mp4", clips.slow_pan(6, (64, 48)), fps=60)
    with open_clip(source) as clip, GifWriter(tmp_path / "out.gif") as writer:
        for frame in clip.frames(None):
            writer.write(frame)
    assert gif_facts(tmp_path / "out.gif")[2] == [20] * 6


# --- sound ----------------------------------------------------------------------------------


def decoded_sound(path: Path) -> tuple[np.ndarray, int]:
    """The first channel of the first audio track, and its sample rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray()[0] for frame in container.decode(stream)]
        return np.concatenate(chunks).astype(np.float64), stream.codec_context.sample_rate


def pitch(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def stylized_with_sound(tmp_path: Path, source: Path) -> tuple[Path, bool]:
    info, _ = copy_clip(source, tmp_path / "video.mp4")
    out = tmp_path / "out.mp4"
    return out, mux_audio(tmp_path / "video.mp4", source, out, start=info.start)


def source_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "aac"), (".webm", "libopus"), (".mkv", "libmp3lame")])
def test_sound_that_mp4_carries_is_copied_packet_for_packet(tmp_path: Path, suffix: str, codec: str) -> None:
    video_codec = "libvpx-vp9" if suffix == ".webm" else "libx264"
    source = clips.write_video(
        tmp_path / f"loud{suffix}",
        clips.cut(12, (96, 64)),
        fps=12,
        codec=video_codec,
        sound=clips.Tone(codec=codec),
    )
    out, had_sound = stylized_with_sound(tmp_path, source)
    facts = stream_facts(out)
    assert had_sound and facts["audio"] == {"aac": "aac", "libopus": "opus", "libmp3lame": "mp3"}[codec]
    assert facts["audio_seconds"] == pytest.approx(1.0, abs=0.03)
    copied, original = source_packets(out), source_packets(source)
    start = original.index(copied[0])
    assert copied == original[start : start + len(copied)] and len(copied) >= len(original) - 2
    assert len(read_back(out)[1]) == 12  # the frames are all there too


def test_sound_mp4_cannot_carry_is_transcoded_to_aac(tmp_path: Path) -> None:
    source = clips.write_video(
        tmp_path / "pcm.mov",
        clips.cut(12, (96, 64)),
        fps=12,
        sound=clips.Tone(codec="pcm_s16le", frequency=660),
    )
    out, had_sound = stylized_with_sound(tmp_path, source)
    facts = stream_facts(out)
    assert had_sound and facts["audio"] == "aac"
    assert facts["audio_seconds"] == pytest.approx(1.0, abs=0.03)
    samples, rate = decoded_sound(out)
    assert pitch(samples[rate // 10 : rate // 2], rate) == pytest.approx(660, abs=5)


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "aac"), (".mov", "pcm_s16le")])
def test_sound_lines_up_with_the_first_frame(tmp_path: Path, suffix: str, codec: str) -> None:
    """The first frame is shown at 0.5 s in the source; the tone changes pitch there. In the
    result the first frame is at 0, so the new pitch must start at once."""
    sound = clips.Tone(codec=codec, frequency=440, changes=((0.5, 880),))
    source = clips.write_video(
        tmp_path / f"late{suffix}", clips.cut(12, (96, 64)), fps=12, sound=sound, first_time=Fraction(1, 2)
    )
    out, _ = stylized_with_sound(tmp_path, source)
    samples, rate = decoded_sound(out)
    assert pitch(samples[: rate // 5], rate) == pytest.approx(880, abs=10)
    facts = stream_facts(out)
    assert facts["video_seconds"] == pytest.approx(1.0)
    assert facts["audio_seconds"] == pytest.approx(1.0, abs=0.03)


def test_sound_after_the_last_frame_is_cut(tmp_path: Path) -> None:
    source = clips.write_video(
        tmp_path / "long_sound.mp4", clips.cut(6, (96, 64)), fps=12, sound=clips.Tone(seconds=3.0)
    )
    out, _ = stylized_with_sound(tmp_path, source)
    assert stream_facts(out)["audio_seconds"] == pytest.approx(0.5, abs=0.03)


def test_a_silent_clip_stays_silent(tmp_path: Path) -> None:
    source = clips.write_video(tmp_path / "silent.mp4", clips.cut(6, (96, 64)), fps=12)
    out, had_sound = stylized_with_sound(tmp_path, source)
    assert not had_sound and stream_facts(out)["audio"] is None
    assert out.read_bytes() == (tmp_path / "video.mp4").read_bytes()
