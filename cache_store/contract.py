"""What the near-duplicate tier promises, as code: the edits it must serve and must refuse.

Tests and the benchmark both import these tables, so the promise in the README is checked
by one definition. Each edit turns a source photo into what a visitor might upload:

* `MUST_HIT`: copies that show the same picture (re-encodes, resizes with any common
  filter, mild sharpening, a few per cent of brightness, stripped metadata, EXIF-rotated
  files). The tier must serve the cached result for them.
* `MUST_MISS`: copies that show something else, globally (greyscale, sepia, hue shift,
  desaturation, contrast, large brightness changes, mirror, rotation, crop) or locally (a
  sticker, a caption bar, a recoloured region, a blurred region, a pasted face, another
  shot of the same scene). The tier must never serve a cached result for them.

An edit that leaves the picture unchanged (desaturating a greyscale photo, say) cannot be
told from the source by anyone; `changes_picture` lets callers count such a pair as a hit.
Local edits are placed where they change the most (the most detailed or most colourful
window), as a person hiding a face or an attacker planting a caption would. Sizes are
relative to the picture, so the contract means the same at every resolution.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

#: An upload: pixels (as a decoder would hand them over) or the bytes of a file.
Upload = Image.Image | bytes
Apply = Callable[[Image.Image, Image.Image], Upload]

_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
#: Resize factors sampled from the promised 0.45x-2x range, ends included.
RESIZE_FACTORS = (0.45, 0.6, 0.8, 1.25, 2.0)
#: A local edit or pasted region of this share of the area; mirrors the issue's classes.
STICKER_AREA = 0.02
BLUR_AREA = 0.12
RECOLOUR_AREA = 0.20
CAPTION_HEIGHT = 0.10
PASTE_SIDE = 0.20
#: Gaussian radius of a privacy blur, as a share of the short side.
BLUR_RADIUS = 0.025


@dataclass(frozen=True)
class Edit:
    """One sampled edit of a contract row (`group`), e.g. "resize 0.45x nearest" of
    "resize 0.45x-2x with any common filter". `apply(source, donor)` returns the upload;
    `donor` is another photo, used only by edits that paste something in."""

    name: str
    group: str
    apply: Apply


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def changes_picture(source: Image.Image, edited: Image.Image, *, cells: int = 16) -> bool:
    """True when `edited` shows something `source` does not, beyond what re-encoding does.

    On a `cells` x `cells` grid, a cell counts as changed when its pixels move further from
    the source's than a JPEG q35 re-encode's pixels do, by more than 2 levels (mean absolute
    RGB difference), or when its mean colour moves further than the re-encode's by more than
    1 level (Cb/Cr), so that taking the colour out of a dark photo with small coloured
    details counts. Another size always counts as a change.

    A colour edit of a greyscale photo, a blur of a flat region or a brightness change of a
    black-and-white drawing fails this: the upload shows the same picture, so it is no
    must-miss case (serving it is right; missing it costs only a recomputation).
    """
    return ChangeDetector(source, cells=cells).changed(edited)


class ChangeDetector:
    """`changes_picture` for many edits of one source: its re-encoding noise is measured once."""

    def __init__(self, source: Image.Image, *, cells: int = 16) -> None:
        source = source.convert("RGB")
        self.size = source.size
        self.grid = _Grid(source, cells)
        reencoded = Image.open(io.BytesIO(encoded(source, "JPEG", quality=35))).convert("RGB")
        self.noise = self.grid.differences(reencoded)
        self.colour_noise = self.grid.colour_shift(reencoded)

    def changed(self, edited: Image.Image) -> bool:
        if edited.size != self.size:
            return True
        edited = edited.convert("RGB")
        pixels_moved = self.grid.differences(edited) > self.noise + 2.0
        colour_moved = self.grid.colour_shift(edited) > self.colour_noise + 1.0
        return bool(np.any(pixels_moved | colour_moved))


class _Grid:
    """Per-cell comparisons against one source picture."""

    def __init__(self, source: Image.Image, cells: int) -> None:
        self.pixels = np.asarray(source, dtype=np.float32)
        h, w = self.pixels.shape[:2]
        self.row_starts = np.array([r[0] for r in np.array_split(np.arange(h), cells)])
        self.col_starts = np.array([c[0] for c in np.array_split(np.arange(w), cells)])
        heights = np.diff(np.append(self.row_starts, h))
        widths = np.diff(np.append(self.col_starts, w))
        self.counts = np.outer(heights, widths).astype(np.float32)
        self.colour = self._cell_means(_chroma(self.pixels))

    def differences(self, other: Image.Image) -> np.ndarray:
        """Mean absolute RGB difference per cell, in 8-bit levels."""
        diff = np.abs(np.asarray(other, dtype=np.float32) - self.pixels).mean(axis=2)
        return self._cell_means(diff[..., None])[..., 0]

    def colour_shift(self, other: Image.Image) -> np.ndarray:
        """How far each cell's mean (Cb, Cr) moves, in 8-bit levels."""
        moved = self._cell_means(_chroma(np.asarray(other, dtype=np.float32))) - self.colour
        shift: np.ndarray = np.hypot(moved[..., 0], moved[..., 1])
        return shift

    def _cell_means(self, values: np.ndarray) -> np.ndarray:
        """(cells, cells, channels) means of (h, w, channels) `values` over the grid."""
        sums = np.add.reduceat(np.add.reduceat(values, self.row_starts, axis=0), self.col_starts, axis=1)
        return sums / self.counts[..., None]


def _chroma(rgb: np.ndarray) -> np.ndarray:
    """(Cb, Cr) of ITU-R BT.601, centred on 0."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.stack([-0.168736 * r - 0.331264 * g + 0.5 * b, 0.5 * r - 0.418688 * g - 0.081312 * b], axis=-1)


# -- must hit ---------------------------------------------------------------------------


def _jpeg(quality: int) -> Apply:
    return lambda im, _: encoded(im, "JPEG", quality=quality)


def _webp(quality: int) -> Apply:
    return lambda im, _: encoded(im, "WEBP", quality=quality)


def _resize(factor: float, resample: Image.Resampling) -> Apply:
    def apply(im: Image.Image, _: Image.Image) -> Image.Image:
        size = (max(1, round(im.width * factor)), max(1, round(im.height * factor)))
        return im.resize(size, resample)

    return apply


def _brightness(factor: float) -> Apply:
    return lambda im, _: ImageEnhance.Brightness(im).enhance(factor)


def _with_metadata(im: Image.Image, _: Image.Image) -> bytes:
    """The photo as a camera would save it: EXIF (make, GPS) and a comment segment."""
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0110] = "Phone 12"  # Model
    exif[0x8825] = {1: "N", 2: (12.0, 34.0, 56.0)}  # GPSInfo
    return encoded(im, "JPEG", quality=92, exif=exif, comment=b"holiday, shot on a phone")


def _metadata_stripped(im: Image.Image, donor: Image.Image) -> bytes:
    """The same JPEG stream without its EXIF and comment segments (what sharing apps do)."""
    return _strip_jpeg_metadata(_with_metadata(im, donor))


def _strip_jpeg_metadata(data: bytes) -> bytes:
    out, pos = bytearray(data[:2]), 2
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the rest is image data
            out += data[pos:]
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker not in (0xE1, 0xFE):  # drop APP1 (EXIF) and COM
            out += data[pos : pos + 2 + length]
        pos += 2 + length
    return bytes(out)


def _exif_rotated(orientation: int, fmt: str) -> Apply:
    """Pixels stored turned, with the EXIF orientation that turns them upright again."""
    undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}

    def apply(im: Image.Image, _: Image.Image) -> bytes:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options = {"quality": 92} if fmt == "JPEG" else {"compress_level": 1}
        return encoded(im.transpose(undo[orientation]), fmt, exif=exif, **options)

    return apply


def _unsharp(radius: float, percent: int) -> Apply:
    def apply(im: Image.Image, _: Image.Image) -> Image.Image:
        # radius in pixels of a 1000 px photo, so "mild" means the same at any size
        scaled = radius * max(im.size) / 1000
        return im.filter(ImageFilter.UnsharpMask(radius=scaled, percent=percent, threshold=2))

    return apply


MUST_HIT: tuple[Edit, ...] = (
    *(Edit(f"JPEG q{q}", "JPEG q35 and up", _jpeg(q)) for q in (35, 50, 75, 95)),
    *(Edit(f"WebP q{q}", "WebP q60 and up", _webp(q)) for q in (60, 80, 95)),
    Edit("PNG re-save", "PNG re-save", lambda im, _: encoded(im, "PNG", compress_level=1)),
    *(
        Edit(f"resize {f}x {name}", "resize 0.45x-2x with any common filter", _resize(f, resample))
        for f in RESIZE_FACTORS
        for name, resample in _FILTERS.items()
    ),
    Edit("unsharp mask r1 80%", "mild unsharp mask", _unsharp(1.0, 80)),
    Edit("unsharp mask r2 50%", "mild unsharp mask", _unsharp(2.0, 50)),
    Edit("brightness +4%", "brightness +-4 %", _brightness(1.04)),
    Edit("brightness -4%", "brightness +-4 %", _brightness(0.96)),
    Edit("metadata stripped", "metadata strip", _metadata_stripped),
    Edit("EXIF rotated 90 (JPEG)", "EXIF-rotated copies", _exif_rotated(6, "JPEG")),
    Edit("EXIF rotated 270 (PNG)", "EXIF-rotated copies", _exif_rotated(8, "PNG")),
    Edit("EXIF rotated 180 (JPEG)", "EXIF-rotated copies", _exif_rotated(3, "JPEG")),
)


# -- must miss: global edits -------------------------------------------------------------


def _greyscale(im: Image.Image, _: Image.Image) -> Image.Image:
    return im.convert("L").convert("RGB")


def _sepia(im: Image.Image, _: Image.Image) -> Image.Image:
    grey = np.asarray(im.convert("L"), dtype=np.float32)
    tone = np.stack([grey * 1.07 + 20, grey * 0.95 + 8, grey * 0.72], axis=2)
    return Image.fromarray(np.clip(tone, 0, 255).astype(np.uint8))


def _hue_shift(steps: int) -> Apply:
    """Hue turned by `steps` of Pillow's 256-step HSV hue circle."""
    return lambda im, _: _hue_turned(im, steps)


def _hue_turned(im: Image.Image, steps: int) -> Image.Image:
    h, s, v = im.convert("HSV").split()
    h = h.point(lambda x: (x + steps) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def _enhance(kind: Callable[[Image.Image], ImageEnhance._Enhance], factor: float) -> Apply:
    return lambda im, _: kind(im).enhance(factor)


def _crop(left: float, top: float, right: float, bottom: float) -> Apply:
    def apply(im: Image.Image, _: Image.Image) -> Image.Image:
        w, h = im.size
        return im.crop((round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom))))

    return apply


# -- must miss: local edits ---------------------------------------------------------------


def _windows(size: tuple[int, int], area: float, aspect: float = 1.0) -> list[tuple[int, int, int, int]]:
    """Candidate boxes of `area` (share of the picture) on a 5x5 grid of positions."""
    w, h = size
    box_w = min(w, round((area * w * h * aspect) ** 0.5))
    box_h = min(h, round(area * w * h / max(box_w, 1)))
    xs = np.linspace(0, w - box_w, 5).round().astype(int)
    ys = np.linspace(0, h - box_h, 5).round().astype(int)
    return [(int(x), int(y), int(x) + box_w, int(y) + box_h) for y in ys for x in xs]


def _most(
    im: Image.Image, area: float, measure: Callable[[np.ndarray], np.ndarray]
) -> tuple[int, int, int, int]:
    """The candidate window of `area` where the per-pixel `measure` sums highest."""
    total = (
        np.pad(measure(np.asarray(im.convert("RGB"), dtype=np.float32)), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    )

    def score(box: tuple[int, int, int, int]) -> float:
        left, top, right, bottom = box
        return float(total[bottom, right] - total[top, right] - total[bottom, left] + total[top, left])

    return max(_windows(im.size, area), key=score)


def _detail(pixels: np.ndarray) -> np.ndarray:
    """Per pixel: the absolute grey difference to the next pixel across and down."""
    grey = pixels.mean(axis=2)
    out = np.zeros_like(grey)
    out[:, :-1] += np.abs(np.diff(grey, axis=1))
    out[:-1, :] += np.abs(np.diff(grey, axis=0))
    detail: np.ndarray = out
    return detail


def _colourfulness(pixels: np.ndarray) -> np.ndarray:
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    colourfulness: np.ndarray = np.hypot(r - g, 0.5 * (r + g) - b)
    return colourfulness


def _blurred_region(where: str) -> Apply:
    """A privacy blur over 12 % of the picture: over its most detailed window, or centred."""

    def apply(im: Image.Image, _: Image.Image) -> Image.Image:
        box = _most(im, BLUR_AREA, _detail) if where == "detail" else _centred(im.size, BLUR_AREA)
        radius = BLUR_RADIUS * min(im.size)
        out = im.copy()
        out.paste(im.crop(box).filter(ImageFilter.GaussianBlur(radius)), box[:2])
        return out

    return apply


def _centred(size: tuple[int, int], area: float) -> tuple[int, int, int, int]:
    return _windows(size, area)[12]


def _recoloured_region(im: Image.Image, _: Image.Image) -> Image.Image:
    """Hue of the most colourful 20 % window turned by a third of the circle."""
    box = _most(im, RECOLOUR_AREA, _colourfulness)
    out = im.copy()
    out.paste(_hue_turned(im.crop(box), 85), box[:2])
    return out


def _sticker(where: str) -> Apply:
    """A filled disc of 2 % of the area, in the colour opposite the picture's mean."""

    def apply(im: Image.Image, _: Image.Image) -> Image.Image:
        w, h = im.size
        radius = (STICKER_AREA * w * h / np.pi) ** 0.5
        cx, cy = {"centre": (0.5, 0.5), "corner": (0.8, 0.25)}[where]
        mean = np.asarray(im.convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(axis=0)
        colour = tuple(int(255 - v) if abs(255 - 2 * v) > 60 else (255 if v < 128 else 0) for v in mean)
        out = im.copy()
        x, y = cx * w, cy * h
        ImageDraw.Draw(out).ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
        return out

    return apply


def _caption(where: str) -> Apply:
    """Red text 10 % of the height tall; on a dark bar ("bar") or straight on the photo."""

    def apply(im: Image.Image, _: Image.Image) -> Image.Image:
        w, h = im.size
        band = max(1, round(h * CAPTION_HEIGHT))
        out = im.copy()
        draw = ImageDraw.Draw(out)
        top = h - band if where == "bar" else round(h * 0.08)
        if where == "bar":
            draw.rectangle((0, top, w, h), fill=(20, 20, 20))
        text = "NOT THE PHOTO YOU UPLOADED"
        size = round(band * 0.8)
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:  # Pillow without FreeType: the bitmap font, scaled by drawing twice
            font = ImageFont.load_default()
        draw.text((round(w * 0.03), top + round(band * 0.1)), text, fill=(230, 20, 20), font=font)
        return out

    return apply


def _pasted_face(im: Image.Image, donor: Image.Image) -> Image.Image:
    """The centre of another photo (a face, in a portrait set) over 20 % x 20 % of this one."""
    w, h = im.size
    box_w, box_h = round(w * PASTE_SIDE), round(h * PASTE_SIDE)
    dw, dh = donor.size
    part = (
        donor.convert("RGB")
        .crop((round(dw * 0.3), round(dh * 0.25), round(dw * 0.7), round(dh * 0.65)))
        .resize((box_w, box_h), Image.Resampling.LANCZOS)
    )
    out = im.copy()
    out.paste(part, (round(w * 0.4), round(h * 0.3)))
    return out


def _panned(shift: float) -> Apply:
    """The next frame of a burst: the camera moved by `shift` of the width (same size)."""

    def apply(im: Image.Image, _: Image.Image) -> Image.Image:
        w, h = im.size
        dx, dy = round(w * shift), round(h * shift / 3)
        return im.crop((dx, dy, w, h)).resize((w, h), Image.Resampling.LANCZOS)

    return apply


def _subject_moved(im: Image.Image, _: Image.Image) -> Image.Image:
    """The next frame of a burst: the most detailed 12 % window moved 4 % to the side."""
    box = _most(im, BLUR_AREA, _detail)
    w = im.width
    out = im.copy()
    dx = round(0.04 * w) if box[2] + round(0.04 * w) <= w else -round(0.04 * w)
    out.paste(im.crop(box), (box[0] + dx, box[1]))
    return out


def _parallax(im: Image.Image, _: Image.Image) -> Image.Image:
    """The other eye of a stereo pair: the near (lower) half shifted 3 %, the far 1 %."""
    w, h = im.size
    pixels = np.asarray(im.convert("RGB"))
    rows = np.arange(h)
    shift = np.round(w * (0.01 + 0.02 * np.clip((rows / h - 0.4) / 0.6, 0, 1))).astype(int)
    columns = np.clip(np.arange(w)[None, :] + shift[:, None], 0, w - 1)
    return Image.fromarray(np.take_along_axis(pixels, columns[..., None], axis=1))


MUST_MISS: tuple[Edit, ...] = (
    Edit("greyscale", "greyscale, sepia", _greyscale),
    Edit("sepia", "greyscale, sepia", _sepia),
    Edit("hue +25/256", "hue shift of +-25/256", _hue_shift(25)),
    Edit("hue -25/256", "hue shift of +-25/256", _hue_shift(-25)),
    Edit("desaturated to 30%", "desaturation to 30 %", _enhance(ImageEnhance.Color, 0.3)),
    Edit("contrast x1.5", "contrast x1.5", _enhance(ImageEnhance.Contrast, 1.5)),
    Edit("brightness +40%", "brightness +-40 %", _brightness(1.4)),
    Edit("brightness -40%", "brightness +-40 %", _brightness(0.6)),
    Edit("mirrored", "mirror, 90 degree rotation, 10 % crop", lambda im, _: ImageOps.mirror(im)),
    Edit(
        "rotated 90",
        "mirror, 90 degree rotation, 10 % crop",
        lambda im, _: im.transpose(Image.Transpose.ROTATE_90),
    ),
    Edit("crop 10% one side", "mirror, 90 degree rotation, 10 % crop", _crop(0, 0, 0.10, 0)),
    Edit("crop 10% centred", "mirror, 90 degree rotation, 10 % crop", _crop(0.05, 0.05, 0.05, 0.05)),
    Edit("sticker centre", "a sticker of about 2 % of the area", _sticker("centre")),
    Edit("sticker corner", "a sticker of about 2 % of the area", _sticker("corner")),
    Edit("caption bar", "a caption bar 10 % of the height", _caption("bar")),
    Edit("caption text", "a caption bar 10 % of the height", _caption("text")),
    Edit("recoloured region", "a recoloured region of 20 % of the area", _recoloured_region),
    Edit("blurred detail", "a blurred region of 12 % of the area", _blurred_region("detail")),
    Edit("blurred centre", "a blurred region of 12 % of the area", _blurred_region("centre")),
    Edit("pasted face", "a pasted face", _pasted_face),
    Edit("burst: camera panned 3%", "two shots of one scene a moment apart", _panned(0.03)),
    Edit("burst: subject moved", "two shots of one scene a moment apart", _subject_moved),
    Edit("stereo pair", "two shots of one scene a moment apart", _parallax),
)
