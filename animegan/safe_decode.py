"""Opening and decoding an untrusted image file with a bounded cost.

A small file can ask for a lot of work: 40,000 TIFF pages, a 7000 x 7000 PNG of 130 KB, a
24 MB EXIF block, a progressive JPEG of thousands of scans, millions of tiny PNG chunks.
On a public demo each such upload would hold a decoding thread for seconds and other
users' hits would wait behind it. So every cost a file can choose gets its own limit,
checked before the work it bounds, and each refusal is a user-facing `ImageError`:

* formats: the photo formats only, named by the file's magic bytes before any parser runs
  (`formats.sniff`), and then opened by that format's plugin alone (Pillow also opens EPS,
  which runs Ghostscript, PSD, ICNS and many more, each more attack surface);
* pixels: `Image.MAX_IMAGE_PIXELS`, checked from the header before decoding;
* expansion: formats decoded at full size (all but JPEG, which is decoded at reduced scale)
  may expand beyond `FREE_DECODE_PIXELS` only in proportion to the file's size, so a large
  decode costs the sender a large upload;
* JPEG scans: at most `MAX_JPEG_SCANS` (a progressive JPEG has about ten);
* frames: only the first is ever read, and frames are never counted;
* metadata: EXIF, XMP, ICC and text blocks over `MAX_METADATA_BYTES` are dropped unread,
  compressed PNG text and ICC profiles that would inflate beyond it too;
* memory: what decoding will hold (the frame, a library's own copy, a progressive JPEG's
  coefficients) is estimated from the header and refused beyond `limit_decode_memory`,
  which a decoding worker sets from its memory cap (the kernel enforces the cap itself);
* time: the decoder reads the file in small blocks through a reader that stops it once
  `decode_budget` seconds of this thread's CPU time are spent (CPU time, not wall time, so
  a busy machine never refuses an ordinary photo). A last resort for costs the other limits
  do not foresee; the server also decodes uploads in worker processes whose CPU time and
  memory the kernel bounds (`animegan.isolated`).
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable

import pillow_heif
from PIL import Image, ImageFile, PngImagePlugin, UnidentifiedImageError

from animegan.errors import ImageError
from animegan.formats import HEAD_BYTES, PHOTO_FORMATS, sniff, webp_canvas

#: The formats a photo comes in; `Image.open` tries no others.
ALLOWED_FORMATS = PHOTO_FORMATS
#: Metadata blocks larger than this are dropped unread (a JPEG's EXIF cannot exceed 64 KiB).
MAX_METADATA_BYTES = 1 << 16
#: A progressive JPEG has about ten scans; every further one is another pass over all blocks.
MAX_JPEG_SCANS = 48
#: Formats decoded at full size may always decode this many pixels (a 4K screenshot) ...
FREE_DECODE_PIXELS = 8_500_000
#: ... and beyond it, at most this many decoded bytes per byte of file.
MAX_EXPANSION = 64
#: Decoding stops after this much CPU time, plus some per MB of file: a 30 MB upload gets
#: 1.35 s, several times what an ordinary photo of that size takes, and few enough that a
#: crafted file is stopped within seconds even on a machine busy with other work.
DECODE_SECONDS = 0.6
DECODE_SECONDS_PER_MB = 0.025
#: Finding out whether a GIF is animated reads on past its first frame: only this long.
ANIMATION_CHECK_SECONDS = 0.05
#: The decoder reads the file in blocks this large, so the time budget is checked often.
READ_BLOCK = 1 << 14

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file raises; it never loads half grey
pillow_heif.register_heif_opener()  # HEIC/HEIF, what iPhones save; AVIF is Pillow's own
# Pillow's PNG text limits default to 1 MB per chunk and 64 MB in all.
PngImagePlugin.MAX_TEXT_CHUNK = MAX_METADATA_BYTES
PngImagePlugin.MAX_TEXT_MEMORY = 4 * MAX_METADATA_BYTES

_FORMATS_HINT = "please use a photo in a common format such as JPEG, PNG, WebP or HEIC"
_METADATA_KEYS = ("exif", "xmp", "XML:com.adobe.xmp", "icc_profile", "comment", "photoshop", "extra")
_FULL_DECODE_EXEMPT = ("JPEG", "MPO")  # decoded at reduced scale when large
#: Formats whose library decodes into a buffer of its own that Pillow then copies.
_COPIED = ("WEBP", "AVIF", "HEIF")
#: libwebp's animation decoder holds two RGBA canvases, and Pillow copies the frame.
_WEBP_CANVASES = 3
_SAMPLE_BYTES = {"I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4}
_memory_limit: int | None = None


def limit_decode_memory(limit: int | None) -> None:
    """Refuse decodes estimated to hold more than `limit` bytes (None: no limit)."""
    global _memory_limit
    _memory_limit = limit


class DecodeBudgetExceeded(Exception):
    """Raised from inside the decoder when its time is up (not an OSError, so Pillow does not
    mistake it for a truncated file)."""


class BudgetReader(io.BytesIO):
    """The file's bytes, read through a clock: once the reading thread has used `seconds` of
    CPU time, reading raises. (Pillow decodes in the calling thread.)"""

    def __init__(self, data: bytes, seconds: float) -> None:
        super().__init__(data)
        self.deadline = time.thread_time() + seconds

    def read(self, size: int | None = -1) -> bytes:
        if time.thread_time() > self.deadline:
            raise DecodeBudgetExceeded
        return super().read(size)


def decode_budget(file_bytes: int) -> float:
    return DECODE_SECONDS + DECODE_SECONDS_PER_MB * file_bytes / 1e6


def open_untrusted(data: bytes, subject: str) -> tuple[Image.Image, BudgetReader]:
    """`Image.open` with the one plugin the magic bytes name, through a `BudgetReader`;
    header checks done."""
    fmt = sniff(data[:HEAD_BYTES])
    if fmt not in ALLOWED_FORMATS:
        raise not_an_image(subject)
    if fmt == "WEBP" and _memory_limit is not None:  # libwebp allocates its canvases on opening
        width, height = webp_canvas(data[:HEAD_BYTES]) or (0, 0)
        if width * height * 4 * _WEBP_CANVASES > _memory_limit:
            raise too_much_memory(subject)
    reader = BudgetReader(data, decode_budget(len(data)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(reader, formats=(fmt,))  # JPEG's plugin also opens MPO
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{subject} has more than {Image.MAX_IMAGE_PIXELS:,} pixels, too many to process "
            "safely; please use a smaller image.",
            "too_large",
        ) from exc
    except DecodeBudgetExceeded as exc:
        raise too_complex(subject) from exc
    except UnidentifiedImageError as exc:
        raise not_an_image(subject) from exc
    except (OSError, SyntaxError, EOFError, ValueError) as exc:
        raise damaged(subject, exc) from exc
    image.decodermaxblock = READ_BLOCK
    try:
        _check_cost(image, data, subject)
    except BaseException:
        image.close()
        raise
    drop_large_metadata(image)
    return image, reader


def decode(image: Image.Image, subject: str, stored_size: tuple[int, int] | None = None) -> None:
    """Decode the pixels now, so a damaged file fails here and not deep inside the model;
    refused first if it would hold more memory than allowed. `stored_size` is the picture's
    size before any reduced-scale (draft) decoding was set up."""
    if _memory_limit is not None and decode_memory(image, stored_size or image.size) > _memory_limit:
        raise too_much_memory(subject)
    try:
        image.load()
    except DecodeBudgetExceeded as exc:
        raise too_complex(subject) from exc
    except (OSError, SyntaxError, EOFError, ValueError) as exc:
        raise damaged(subject, exc) from exc


def is_animated(image: Image.Image, reader: BudgetReader | None) -> bool:
    """Whether `image` (read through `reader`) has more frames, called once its first frame
    is decoded. A GIF finds out by reading on: what is beyond `ANIMATION_CHECK_SECONDS`, or
    broken, counts as no further frame, since only the first is used anyway."""
    if reader is not None:
        reader.deadline = min(reader.deadline, time.thread_time() + ANIMATION_CHECK_SECONDS)
    try:
        return bool(getattr(image, "is_animated", False))
    except (DecodeBudgetExceeded, OSError, SyntaxError, EOFError, ValueError):
        return False


def decode_memory(image: Image.Image, stored_size: tuple[int, int]) -> int:
    """About how many bytes decoding `image` holds at its peak: the decoded frame (at the
    draft size, for a JPEG), a second copy for libraries that decode into their own buffer,
    and a progressive JPEG's coefficients, which libjpeg keeps at full size whatever the scale."""
    width, height = image.size
    frame = width * height * len(image.getbands()) * _SAMPLE_BYTES.get(image.mode, 1)
    if image.format in _COPIED:
        return frame + width * height * 4
    if image.format in _FULL_DECODE_EXEMPT and image.info.get("progressive"):
        layers: list[tuple[str, int, int, int]] = getattr(image, "layer", None) or [("", 1, 1, 0)] * 3
        most_h = max(layer[1] for layer in layers)
        most_v = max(layer[2] for layer in layers)
        full_w, full_h = stored_size
        coefficients = sum(
            -(-full_w * layer[1] // most_h) * -(-full_h * layer[2] // most_v) * 2 for layer in layers
        )
        return frame + int(coefficients)
    return frame


def drop_large_metadata(image: Image.Image) -> None:
    """Forget metadata blocks too large to parse cheaply (EXIF is then read as upright)."""
    for key in _METADATA_KEYS:
        value = image.info.get(key)
        if isinstance(value, (bytes, str)) and len(value) > MAX_METADATA_BYTES:
            del image.info[key]


def _check_cost(image: Image.Image, data: bytes, subject: str) -> None:
    if image.format in ("JPEG", "MPO") and data.count(b"\xff\xda") > MAX_JPEG_SCANS:
        raise too_complex(subject)
    if image.format in _FULL_DECODE_EXEMPT:
        return
    pixels = image.width * image.height
    if pixels > FREE_DECODE_PIXELS and pixels * len(image.getbands()) > MAX_EXPANSION * len(data):
        raise ImageError(
            f"{subject} is {image.width}x{image.height} pixels but only {len(data):,} bytes: "
            "too many pixels for its size to decode safely; please save it as JPEG or make it smaller.",
            "too_complex",
        )


def not_an_image(subject: str) -> ImageError:
    return ImageError(f"{subject} is not an image we can read; {_FORMATS_HINT}.", "not_image")


def too_much_memory(subject: str) -> ImageError:
    return ImageError(
        f"{subject} needs more memory to decode than this server allows per photo; please "
        "save it as a JPEG or make it smaller.",
        "too_complex",
    )


def too_complex(subject: str) -> ImageError:
    return ImageError(
        f"{subject} takes too long to decode (it may be crafted to); please save it again "
        "as a plain JPEG or PNG.",
        "too_complex",
    )


def damaged(subject: str, exc: BaseException) -> ImageError:
    """Pillow's many decoding failures, told apart only into 'cut short' and 'broken'."""
    if "truncated" in str(exc).lower():
        return ImageError(
            f"{subject} is incomplete (truncated); it may have been cut off while uploading. "
            "Please upload it again.",
            "truncated",
        )
    return broken(subject)


def broken(subject: str) -> ImageError:
    """Pixels that cannot be decoded (a decoder's failure, or a worker that crashed on them)."""
    return ImageError(
        f"{subject} is damaged and its pixels cannot be decoded; please upload it again "
        "or try another copy of the picture.",
        "damaged",
    )


def _dropping_oversized(
    handler: Callable[[PngImagePlugin.PngStream, int, int], bytes],
) -> Callable[..., bytes]:
    """A PNG chunk handler that skips its chunk, unread, where Pillow would refuse the whole
    file because the chunk inflates beyond `MAX_TEXT_CHUNK` (or text chunks beyond
    `MAX_TEXT_MEMORY`): such metadata is dropped like any other oversized block."""

    def handle(stream: PngImagePlugin.PngStream, pos: int, length: int) -> bytes:
        assert stream.fp is not None
        start = stream.fp.tell()
        try:
            return handler(stream, pos, length)
        except ValueError as exc:
            if "too large" not in str(exc).lower() and "too much memory" not in str(exc).lower():
                raise
            stream.fp.seek(start)
            return ImageFile._safe_read(stream.fp, length)  # what the CRC check reads

    return handle


for _name in ("chunk_zTXt", "chunk_iTXt", "chunk_iCCP", "chunk_tEXt"):
    setattr(PngImagePlugin.PngStream, _name, _dropping_oversized(getattr(PngImagePlugin.PngStream, _name)))
