"""What a clip may cost: every limit a named constant with its reason, gathered in `ClipLimits`.

A clip is a thousand pictures, and a small file can ask for a lot of work: a header
declaring 16000 x 16000 pixels, thousands of tracks, an hour of frames. Each cost a file
can choose is bounded before it is paid where the headers tell it (pixels, streams,
frames, duration, rate) and again while decoding, because a header can lie. The service
exposes some of these as settings by passing its own `ClipLimits`.
"""

from __future__ import annotations

from dataclasses import dataclass

from animegan.intake import MAX_ASPECT, MIN_SIDE

#: Uploads larger than this are refused unread: a 30-second 4K phone clip is 25-90 MB.
MAX_CLIP_BYTES = 100 << 20
#: Longest clip: a phone clip's moment; all-new frames at 4 per second take ~4 minutes at 30 fps.
MAX_DURATION_SECONDS = 30.0
#: Most frames: 30 seconds at 30 frames per second; each one is a model run when not cached.
MAX_FRAMES = 900
#: Fastest frame rate: phones record 60; slow motion (120-240) multiplies the cost per second.
MAX_FRAME_RATE = 60.0
#: Largest source frame, from the headers before decoding and again per frame: DCI 4K.
MAX_SOURCE_PIXELS = 4096 * 2160
#: Most streams (tracks): a phone clip has 2-6 (video, audio, timed metadata).
MAX_STREAMS = 16
#: FFmpeg reads at most this many bytes to identify the streams (its default is 5 MB).
PROBE_BYTES = 2 << 20
#: ... and at most this much of the clip's time (its default is 5 s).
ANALYZE_SECONDS = 2.0
#: Opening (headers and stream probing) may read the file for this long; then it reads as
#: ended and the clip is refused (a last resort for costs the other limits do not foresee).
OPEN_SECONDS = 10.0
#: Packets that fail to decode are skipped (the frame before stays on screen), up to this share
#: of the packets read ...
MAX_BROKEN_SHARE = 0.1
#: ... but a few are always forgiven, so a short clip with one bad packet still plays.
MIN_BROKEN_FORGIVEN = 3
#: Decoder threads: the model is the bottleneck; two keep a 1080p decode ahead of it while
#: bounding the frames the decoder holds in flight.
DECODE_THREADS = 2
#: Audio is copied or transcoded up to this many channels (7.1) ...
MAX_AUDIO_CHANNELS = 8
#: ... and this sample rate (studio audio; a header claiming more is hostile or broken).
MAX_AUDIO_RATE = 192_000
#: Animated images: a frame shown for this long or less is shown for `SLOW_FRAME_MS`, as
#: Chromium and Firefox do (many GIFs say 0 ms and mean "the default").
FAST_FRAME_MS = 10
SLOW_FRAME_MS = 100


@dataclass(frozen=True)
class ClipLimits:
    """The limits one clip is held to; the defaults are the constants above."""

    max_bytes: int = MAX_CLIP_BYTES
    max_duration: float = MAX_DURATION_SECONDS
    max_frames: int = MAX_FRAMES
    max_frame_rate: float = MAX_FRAME_RATE
    max_pixels: int = MAX_SOURCE_PIXELS
    max_streams: int = MAX_STREAMS
    min_side: int = MIN_SIDE
    max_aspect: float = MAX_ASPECT
