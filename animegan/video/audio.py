"""The source's sound, added to a video-only MP4 we wrote: copied when MP4 carries it and
Chromium plays it (AAC, MP3, Opus), else transcoded to AAC.

A separate step from writing frames because it reads the untrusted upload: it opens the
source through the same checks as decoding (`open_container`), so it can run in the same
isolated worker, while the frames' writer runs wherever the model does. Its cost is bounded
by the video: only sound between the first frame and the last frame's end is read, which
the frame limits already bound.

Sound that cannot be copied (a codec outside the list, too many channels, broken beyond
repair) raises `VideoError` with reason ``"audio"``: the caller decides whether a silent
clip is better than none.
"""

from __future__ import annotations

import heapq
import shutil
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.audio
import av.container

from animegan.errors import VideoError
from animegan.video.encode import ffmpeg_path
from animegan.video.limits import (
    MAX_AUDIO_CHANNELS,
    MAX_AUDIO_RATE,
    MAX_BROKEN_SHARE,
    MIN_BROKEN_FORGIVEN,
    ClipLimits,
)
from animegan.video.source import (
    ClipSource,
    codec_name,
    damaged,
    open_container,
    open_source,
    subject_of,
    too_complex,
)

#: Codecs MP4 carries and Chromium plays: copied packet for packet, no loss.
COPIED_AUDIO = ("aac", "mp3", "opus")
#: Codecs decoded and re-encoded as AAC (plus every ``pcm_*``): Vorbis from WebM, ALAC and
#: PCM from MOV, AMR from old phones' 3GP, Dolby from cameras, FLAC (MP4 can carry it, but
#: FFmpeg's support for it there is young, and no phone records it).
TRANSCODED_AUDIO = ("vorbis", "flac", "alac", "ac3", "eac3", "mp2", "amrnb", "amrwb")
#: AAC's bit rate when transcoding: transparent for speech and music at 48 kHz stereo.
AAC_BIT_RATE = 160_000

_Timed = tuple[Fraction, int, "av.Packet[Any]"]  # (time, stream order, packet): what the merge sorts on


def mux_audio(
    video_mp4: str | Path,
    source: ClipSource,
    out: str | Path,
    *,
    start: Fraction,
    limits: ClipLimits | None = None,
    subject: str | None = None,
) -> bool:
    """Write ``out``: the frames of ``video_mp4`` (ours) with the sound of ``source``.

    ``start`` is the source's `ClipInfo.start`, so the sound lines up with the frames as
    they were read. Returns whether there was sound; without any, ``out`` is a copy of
    the video.
    """
    limits = limits or ClipLimits()
    subject = subject_of(source, subject)
    fileobj, _size, kind = open_source(source, limits, subject)
    with fileobj:
        if kind not in ("mp4", "matroska"):  # animated images have no sound
            _copy_video(video_mp4, out)
            return False
        with open_container(fileobj, kind, limits, subject) as container:
            stream = _audio_stream(container)
            if stream is None:
                _copy_video(video_mp4, out)
                return False
            _check_audio(stream, subject)
            with av.open(ffmpeg_path(Path(video_mp4)), format="mov") as video:
                end = _video_end(video)
                _mux(video, container, stream, out, start, end, subject)
    return True


def _audio_stream(container: av.container.InputContainer) -> av.audio.AudioStream | None:
    """The default audio track, else the first."""
    streams = list(container.streams.audio)
    return next((s for s in streams if s.disposition & av.stream.Disposition.default), None) or (
        streams[0] if streams else None
    )


def _check_audio(stream: av.audio.AudioStream, subject: str) -> None:
    context = stream.codec_context
    name = codec_name(context)
    if context is None or not (name in COPIED_AUDIO or name in TRANSCODED_AUDIO or name.startswith("pcm_")):
        raise _audio_error(f"{subject} has its sound in the {name} format, which cannot be kept")
    if context.channels > MAX_AUDIO_CHANNELS or context.sample_rate > MAX_AUDIO_RATE:
        raise _audio_error(
            f"{subject} has sound of {context.channels} channels at {context.sample_rate} Hz, "
            f"more than the {MAX_AUDIO_CHANNELS} channels at {MAX_AUDIO_RATE} Hz that can be kept"
        )


def _audio_error(what: str) -> VideoError:
    return VideoError(f"{what}; the stylized clip can only be silent.", "audio")


def _video_end(video: av.container.InputContainer) -> Fraction:
    stream = video.streams.video[0]
    if stream.duration is not None and stream.time_base is not None:
        return Fraction(stream.duration * stream.time_base)
    return Fraction(video.duration or 0, av.time_base)


def _mux(
    video: av.container.InputContainer,
    source: av.container.InputContainer,
    stream: av.audio.AudioStream,
    out: str | Path,
    start: Fraction,
    end: Fraction,
    subject: str,
) -> None:
    out_path = Path(out)
    try:
        with av.open(ffmpeg_path(out_path), "w", format="mp4", options={"movflags": "+faststart"}) as output:
            video_in = video.streams.video[0]
            video_out = output.add_stream_from_template(video_in)
            sound: Iterator[_Timed]
            if codec_name(stream.codec_context) in COPIED_AUDIO:
                audio_out = output.add_stream_from_template(stream)
                sound = _copied(source, stream, audio_out, start, end, subject)
            else:
                audio_out = _aac_stream(output, stream)
                sound = _transcoded(source, stream, audio_out, start, end, subject)
            pictures = _video_packets(video, video_in, video_out)
            for _time, _order, packet in heapq.merge(pictures, sound, key=lambda item: item[:2]):
                output.mux(packet)
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise


def _video_packets(video: av.container.InputContainer, stream: Any, out_stream: Any) -> Iterator[_Timed]:
    for packet in video.demux(stream):
        if packet.dts is None:
            continue  # the demuxer's end-of-stream marker
        time = packet.dts * stream.time_base
        packet.stream = out_stream
        yield time, 0, packet


def _source_packets(
    source: av.container.InputContainer, stream: av.audio.AudioStream, subject: str
) -> Iterator[av.Packet[Any]]:
    """The audio track's packets; read errors in the untrusted source become `VideoError`."""
    try:
        for packet in source.demux(stream):
            if packet.pts is not None and packet.size:
                yield packet
    except av.error.ExitError as exc:
        raise too_complex(subject) from exc
    except (av.error.FFmpegError, EOFError, OSError) as exc:
        raise damaged(subject) from exc


def _copied(
    source: av.container.InputContainer,
    stream: av.audio.AudioStream,
    out_stream: Any,
    start: Fraction,
    end: Fraction,
    subject: str,
) -> Iterator[_Timed]:
    """Packets between the first frame and the video's end, shifted so the first frame is 0."""
    time_base = stream.time_base
    assert time_base is not None
    shift = round(start / time_base)
    for packet in _source_packets(source, stream, subject):
        assert packet.pts is not None
        time = packet.pts * time_base - start
        if time < 0:
            continue
        if time >= end:
            break
        packet.pts -= shift
        packet.dts = packet.pts if packet.dts is None else packet.dts - shift
        packet.stream = out_stream
        yield time, 1, packet


def _aac_stream(output: av.container.OutputContainer, stream: av.audio.AudioStream) -> Any:
    context = stream.codec_context
    rates = av.codec.Codec("aac", "w").audio_rates or ()
    rate = context.sample_rate if context.sample_rate in rates else 48_000
    layout = "mono" if context.channels == 1 else "stereo"  # more channels are mixed down
    out = output.add_stream("aac", rate=rate)
    out.layout = layout
    out.bit_rate = AAC_BIT_RATE
    return out


def _transcoded(
    source: av.container.InputContainer,
    stream: av.audio.AudioStream,
    out_stream: Any,
    start: Fraction,
    end: Fraction,
    subject: str,
) -> Iterator[_Timed]:
    """Decoded, resampled to AAC's frame size and format, encoded; timed from the first frame."""
    context = out_stream.codec_context
    rate = context.sample_rate
    resampler = av.AudioResampler(
        format="fltp", layout=context.layout, rate=rate, frame_size=context.frame_size
    )
    next_sample: int | None = None
    packets = broken = 0
    encoder_time_base = Fraction(1, rate)

    def encoded(frame: av.AudioFrame | None) -> Iterator[_Timed]:
        for packet in out_stream.encode(frame):
            assert packet.pts is not None
            yield packet.pts * encoder_time_base, 1, packet

    done = False
    for packet in _source_packets(source, stream, subject):
        packets += 1
        assert packet.pts is not None and stream.time_base is not None
        time = packet.pts * stream.time_base - start
        if time >= end:
            break
        try:
            decoded = stream.decode(packet)
        except av.error.FFmpegError:
            broken += 1
            if broken > max(MIN_BROKEN_FORGIVEN, MAX_BROKEN_SHARE * packets):
                raise _audio_error(f"{subject} has damaged sound") from None
            continue
        for frame in decoded:
            if frame.pts is None or frame.time_base is None:
                continue
            frame_time = frame.pts * frame.time_base - start
            if frame_time < 0:
                continue  # sound from before the first frame (as packets are in a copy)
            if next_sample is None:
                next_sample = round(frame_time * rate)
            frame.pts = None  # the resampler's output is timed by the count of samples
            for chunk in resampler.resample(frame):
                chunk.pts, chunk.time_base = next_sample, encoder_time_base
                next_sample += chunk.samples
                yield from encoded(chunk)
            if next_sample >= end * rate:
                done = True
                break
        if done:
            break
    if next_sample is not None and not done:
        for chunk in resampler.resample(None):
            chunk.pts, chunk.time_base = next_sample, encoder_time_base
            next_sample += chunk.samples
            yield from encoded(chunk)
    yield from encoded(None)


def _copy_video(video_mp4: str | Path, out: str | Path) -> None:
    shutil.copyfile(video_mp4, out)
