"""Image intake: every source and Pillow mode becomes correct upright RGB (+ alpha), and every
bad input is refused with a typed ``ImageError`` whose message a non-programmer can act on.

All images are built here with Pillow/numpy (small, exact), except the fit-on-open check,
which needs real photo texture.
"""

from __future__ import annotations

import gc
import io
import math
import re
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from animegan.errors import ImageError
from animegan.intake import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    MIN_SIDE,
    Photo,
    apply_alpha,
    open_image,
)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def gradient(width: int = 40, height: int = 30) -> Image.Image:
    """RGB where every pixel differs, so a flip, turn or channel swap cannot go unnoticed."""
    yy, xx = np.mgrid[0:height, 0:width]
    channels = [xx * 255 // (width - 1), yy * 255 // (height - 1), (7 * xx + 3 * yy) % 256]
    array = np.stack(channels, axis=-1)
    return Image.fromarray(array.astype(np.uint8), "RGB")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int64)


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = float(np.mean((pixels(a) - pixels(b)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG start claiming ``width`` x ``height`` with a few bytes of pixel data:
    tiny on disk, and truncated if anything ever tried to decode it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def refused(src, **kwargs) -> ImageError:
    """The ImageError ``open_image`` raises for ``src``, checked to read as a user message."""
    with pytest.raises(ImageError) as info:
        open_image(src, **kwargs)
    message = str(info.value)
    assert message[0].isupper() and message.endswith("."), message
    assert not re.search(r"Errno|Error\b|Traceback|<|\bNone\b|\bb'|\\x", message), message
    assert not re.search(r"\b(read|open|of|from) The\b", message), message  # "read The file"
    return info.value


# -- sources -------------------------------------------------------------------------------


def test_importing_intake_does_not_import_torch():
    code = "import sys, animegan.intake, animegan.errors; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


@pytest.mark.parametrize("kind", ["str path", "Path", "bytes", "bytearray", "PIL", "ndarray"])
def test_every_source_type_gives_the_same_picture(tmp_path, kind):
    image = gradient()
    data = encode(image, "PNG")
    path = tmp_path / "gradient.png"
    path.write_bytes(data)
    src = {
        "str path": str(path),
        "Path": path,
        "bytes": data,
        "bytearray": bytearray(data),
        "PIL": image,
        "ndarray": np.asarray(image),
    }[kind]
    photo = open_image(src)
    assert photo.rgb.mode == "RGB" and photo.alpha is None
    assert np.array_equal(pixels(photo.rgb), pixels(image))
    assert photo.size == photo.info["size"] == (40, 30)
    assert photo.info["animated"] is False and photo.info["mode"] == "RGB"
    from_file = kind in ("str path", "Path", "bytes", "bytearray")
    assert photo.info["format"] == ("PNG" if from_file else None)


def test_the_callers_pil_image_is_left_usable():
    image = Image.open(io.BytesIO(encode(gradient(400, 300), "JPEG", quality=95)))
    photo = open_image(image, max_side=50)  # would be drafted (decoded at 1/4) if it were ours
    assert photo.size == (50, 38)
    assert image.size == (400, 300) and image.getpixel((399, 299)) is not None


def test_numpy_arrays_of_every_supported_shape_and_dtype():
    grey = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    for array in (grey, grey[:, :, None]):
        rgb = pixels(open_image(array).rgb)
        assert rgb.shape == (20, 30, 3) and np.array_equal(rgb[..., 1], grey)

    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    photo = open_image(rgba)
    assert pixels(photo.rgb)[0, 0].tolist() == [200, 0, 0]
    assert np.all(pixels(photo.alpha) == 128)

    unit = np.linspace(0, 1, 30, dtype=np.float32)[None, :, None].repeat(20, 0).repeat(3, 2)
    row = pixels(open_image(unit).rgb)[0, :, 0]
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) > 0)  # 0..1, not 0..255
    assert pixels(open_image(np.full((20, 30, 3), 2.0)).rgb).min() == 255  # clipped, no wrap
    assert pixels(open_image(np.full((20, 30), np.nan)).rgb).max() == 0

    assert pixels(open_image(np.full((20, 30, 3), 65535, np.uint16)).rgb).min() == 255
    assert pixels(open_image(np.full((20, 30, 3), 257, np.uint16)).rgb).max() == 1  # scaled
    mask = np.zeros((20, 30), bool)
    mask[:, :15] = True
    assert pixels(open_image(mask).rgb)[:, :15].min() == 255

    bgr_view = np.asarray(gradient())[:, :, ::-1]  # not contiguous
    assert np.array_equal(pixels(open_image(bgr_view).rgb), pixels(gradient())[:, :, ::-1])


@pytest.mark.parametrize(
    "array",
    [np.zeros((20, 30, 2), np.uint8), np.zeros(30, np.uint8), np.zeros((20, 30, 3), np.int64)],
    ids=["two channels", "1-D", "int64"],
)
def test_unusable_arrays_are_refused(array):
    assert refused(array).reason == "unsupported"


def test_an_empty_array_is_refused():
    assert refused(np.zeros((0, 30, 3), np.uint8)).reason == "empty"


def test_a_non_image_python_object_is_a_programming_error():
    with pytest.raises(TypeError):
        open_image(42)  # type: ignore[arg-type]


# -- orientation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "turn"),
    [
        (3, Image.Transpose.ROTATE_180),
        (6, Image.Transpose.ROTATE_270),  # camera held upright: display turned 90 deg clockwise
        (8, Image.Transpose.ROTATE_90),
        (2, Image.Transpose.FLIP_LEFT_RIGHT),
    ],
)
def test_exif_orientation_is_applied_once(orientation, turn):
    stored = gradient(40, 30)
    exif = Image.Exif()
    exif[0x0112] = orientation
    photo = open_image(encode(stored, "PNG", exif=exif))
    expected = stored.transpose(turn)
    assert np.array_equal(pixels(photo.rgb), pixels(expected))
    assert photo.info["size"] == expected.size
    again = open_image(photo.rgb)  # the tag is gone: a second intake does not turn it again
    assert np.array_equal(pixels(again.rgb), pixels(expected))


def test_orientation_6_puts_the_top_left_corner_top_right():
    stored = Image.new("RGB", (60, 40), "white")
    stored.paste((255, 0, 0), (0, 0, 10, 10))  # red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = open_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    rgb = pixels(photo.rgb)
    assert photo.size == (40, 60)
    assert rgb[3, 36].tolist() == pytest.approx([255, 0, 0], abs=40)  # top right: red
    assert rgb[3, 3].min() > 200 and rgb[56, 3].min() > 200  # other corners: white


def test_fitting_while_opening_a_turned_jpeg_matches_fitting_afterwards():
    stored = gradient(1600, 800)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    quick, full = open_image(data, max_side=200), open_image(data).fit(200)
    assert quick.size == full.size == (100, 200)
    assert quick.info["size"] == full.info["size"] == (800, 1600)
    assert psnr(quick.rgb, full.rgb) >= 45


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
@pytest.mark.parametrize("exif", [b"not a TIFF header", b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff junk"])
def test_malformed_exif_is_ignored(exif):
    photo = open_image(encode(gradient(), "PNG", exif=exif))
    assert np.array_equal(pixels(photo.rgb), pixels(gradient()))


# -- modes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grey_and_bilevel_become_grey_rgb(mode):
    image = gradient().convert(mode)
    photo = open_image(encode(image, "PNG"))
    rgb = pixels(photo.rgb)
    assert photo.info["mode"] == mode and photo.alpha is None
    grey = pixels(image.convert("L"))
    assert all(np.array_equal(rgb[..., c], grey) for c in range(3))
    if mode == "1":
        assert set(np.unique(rgb)) <= {0, 255}


def transparent_left_half(size: tuple[int, int]) -> Image.Image:
    alpha = Image.new("L", size, 255)
    alpha.paste(0, (0, 0, size[0] // 2, size[1]))
    return alpha


@pytest.mark.parametrize("mode", ["LA", "La", "RGBA", "RGBa"])
def test_alpha_modes_keep_their_alpha(mode):
    base = gradient().convert("LA" if mode.startswith("L") else "RGBA")
    alpha = transparent_left_half(base.size)
    alpha.paste(128, (20, 0, 30, 30))
    base.putalpha(alpha)
    photo = open_image(base.convert(mode))
    assert photo.info["mode"] == mode
    assert np.array_equal(pixels(photo.alpha), pixels(alpha))
    opaque = pixels(photo.rgb)[:, 30:]
    assert np.array_equal(opaque, pixels(base.convert("RGB"))[:, 30:])


def test_rgba_round_trip_through_apply_alpha():
    image = gradient()
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    photo = open_image(encode(image, "PNG"))
    assert np.array_equal(pixels(photo.rgb), pixels(image.convert("RGB")))
    restored = apply_alpha(photo.rgb, photo.alpha)
    assert restored.mode == "RGBA" and photo.rgb.mode == "RGB"  # the input is not modified
    assert np.array_equal(pixels(restored), pixels(image))


def test_alpha_survives_fit_and_a_resized_result():
    image = gradient(400, 300)
    image.putalpha(transparent_left_half(image.size))
    fitted = open_image(image).fit(100)
    assert fitted.size == fitted.alpha.size == (100, 75)
    styled = fitted.rgb.resize((200, 150))  # a result at another size than its input
    out = apply_alpha(styled, fitted.alpha)
    a = pixels(out.getchannel("A"))
    assert out.size == (200, 150)
    assert a[:, :90].max() <= 5 and a[:, 110:].min() >= 250
    assert apply_alpha(styled, None) is styled


def test_fully_opaque_alpha_is_dropped():
    assert open_image(encode(gradient().convert("RGBA"), "PNG")).alpha is None


def test_palette_with_and_without_transparency():
    palette = gradient().quantize(colors=16)
    plain = open_image(encode(palette, "PNG"))
    assert plain.alpha is None
    assert np.array_equal(pixels(plain.rgb), pixels(palette.convert("RGB")))
    clear = palette.getpixel((0, 0))
    keyed = open_image(encode(palette, "PNG", transparency=clear))
    assert np.array_equal(pixels(keyed.alpha) == 0, pixels(palette) == clear)
    assert pixels(keyed.alpha).max() == 255


def test_palette_with_rgba_entries():
    image = Image.new("P", (40, 30), 0)
    image.paste(1, (20, 0, 40, 30))
    image.putpalette([255, 0, 0, 0, 0, 0, 255, 255], "RGBA")  # 0: clear red, 1: opaque blue
    photo = open_image(image)
    alpha = pixels(photo.alpha)
    assert alpha[:, :20].max() == 0 and alpha[:, 20:].min() == 255
    assert np.all(pixels(photo.rgb)[:, 20:] == [0, 0, 255])


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_colours_are_converted_not_misread(fmt):
    colours = {  # CMYK ink -> the RGB it should look like
        (0, 255, 255, 0): (255, 0, 0),
        (255, 0, 255, 0): (0, 255, 0),
        (255, 255, 0, 0): (0, 0, 255),
        (0, 0, 0, 255): (0, 0, 0),
        (0, 0, 0, 0): (255, 255, 255),
    }
    image = Image.new("CMYK", (16 * len(colours), 16))
    for i, ink in enumerate(colours):
        image.paste(ink, (16 * i, 0, 16 * i + 16, 16))
    photo = open_image(encode(image, fmt, quality=95) if fmt == "JPEG" else encode(image, fmt))
    assert photo.info["mode"] == "CMYK" and photo.alpha is None
    rgb = pixels(photo.rgb)
    for i, expected in enumerate(colours.values()):
        patch = rgb[4:12, 16 * i + 4 : 16 * i + 12].reshape(-1, 3)
        assert patch.mean(axis=0) == pytest.approx(expected, abs=8)


def test_sixteen_bit_png_is_scaled_not_clipped():
    values = np.linspace(0, 65535, 64 * 16).reshape(16, 64).astype(np.uint16)
    photo = open_image(encode(Image.fromarray(values), "PNG"))
    grey = pixels(photo.rgb)[..., 0]
    assert photo.info["mode"].startswith("I;16")
    assert grey.min() == 0 and grey.max() == 255 and len(np.unique(grey)) > 200
    assert np.abs(grey - values / 257).max() <= 1  # proportional, not saturated at 255


def test_int32_mode_uses_the_range_that_holds_it():
    sixteen = Image.fromarray((np.arange(16 * 128).reshape(16, 128) * 32).astype(np.int32), "I")
    grey = pixels(open_image(sixteen).rgb)[..., 0]
    assert grey.max() == 255 and len(np.unique(grey)) > 100
    eight = Image.fromarray(np.full((16, 16), 100, np.int32), "I")
    assert np.all(pixels(open_image(eight).rgb) == 100)  # 8-bit data stays as it is
    signed = Image.fromarray(np.linspace(-1e6, 1e6, 256).reshape(16, 16).astype(np.int32), "I")
    grey = pixels(open_image(signed).rgb)[..., 0]
    assert grey.min() == 0 and grey.max() == 255


def test_float_mode_is_scaled():
    unit = Image.fromarray(np.linspace(0, 1, 16 * 128, dtype=np.float32).reshape(16, 128), "F")
    grey = pixels(open_image(encode(unit, "TIFF")).rgb)[..., 0]
    assert grey.min() == 0 and grey.max() == 255 and np.all(np.diff(grey[0]) >= 0)
    wide = Image.fromarray(np.linspace(-5, 300, 256, dtype=np.float32).reshape(16, 16), "F")
    grey = pixels(open_image(wide).rgb)[..., 0]
    assert grey.min() == 0 and grey.max() == 255


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_uses_its_first_frame(tmp_path, fmt):
    frames = [Image.new("RGB", (24, 24), colour) for colour in ("red", "blue", "lime")]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for src in (path, path.read_bytes()):
            photo = open_image(src)
            assert photo.info["animated"] is True and photo.info["format"] == fmt
            assert pixels(photo.rgb).reshape(-1, 3).mean(0) == pytest.approx([255, 0, 0], abs=8)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]  # file closed


# -- refusals ------------------------------------------------------------------------------


def test_empty_inputs(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    for src in (path, b""):
        error = refused(src)
        assert error.reason == "empty" and "empty" in str(error)
    assert "empty.jpg" in str(refused(path))


@pytest.mark.parametrize(
    "data",
    [b"This is a text file, not a photo.\n" * 20, np.random.default_rng(0).bytes(4000), b"\x89PNG"],
    ids=["text", "random bytes", "bare PNG signature"],
)
def test_not_an_image(tmp_path, data):
    error = refused(data)
    assert error.reason == "not_image"
    assert str(error).startswith("The uploaded file is not an image")
    path = tmp_path / "notes.jpg"
    path.write_bytes(data)
    assert "notes.jpg" in str(refused(path))


def test_missing_file_and_folder(tmp_path):
    missing = refused(tmp_path / "gone.png")
    assert missing.reason == "not_image" and "gone.png" in str(missing)
    assert "no such file" in str(missing)
    folder = refused(tmp_path)
    assert "directory" in str(folder)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_never_load_half_grey(fmt):
    data = encode(gradient(64, 48), fmt)
    full = pixels(open_image(data).rgb)
    for cut in range(8, len(data), max(1, len(data) // 60)):
        try:
            photo = open_image(data[:cut])
        except ImageError as error:
            assert error.reason in ("truncated", "not_image"), (cut, error.reason)
        else:  # only what is missing after the last pixel (a PNG's IEND) may be forgiven
            assert np.array_equal(pixels(photo.rgb), full), cut
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_photo_message(fmt, photo_paths):
    data = encode(Image.open(photo_paths[0]), fmt)
    for cut in (len(data) // 2, 300):  # in the pixels, and in the header
        error = refused(data[:cut])
        assert error.reason == "truncated"
        assert str(error) == (
            "The uploaded file is incomplete (truncated); it may have been cut off while "
            "uploading. Please upload it again."
        )


def test_damaged_pixel_data():
    data = bytearray(encode(gradient(64, 48), "PNG"))
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(16)  # zeroed compressed pixels: the CRC no longer fits
    error = refused(bytes(data))
    assert error.reason == "damaged" and "damaged" in str(error)


def test_decompression_bomb_is_refused_by_pillows_guard():
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS
    # Beyond twice the limit Pillow raises; between once and twice it only warns, and
    # intake must refuse that too. Both headers are tiny; neither is ever decoded.
    for side in (100_000, 8_000):
        data = png_header_only(side, side)
        assert len(data) < 200
        error = refused(data)
        assert error.reason == "too_large" and "50,000,000 pixels" in str(error)


def test_max_pixels_tightens_the_limit_before_decoding():
    error = refused(png_header_only(3000, 2000), max_pixels=1_000_000)  # truncated if decoded
    assert error.reason == "too_large"
    assert "3000x2000" in str(error) and "1,000,000" in str(error)
    assert refused(gradient(400, 300), max_pixels=100_000).reason == "too_large"


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ((1, 5000), "too_small"),
        ((4, 4), "too_small"),
        ((MIN_SIDE - 1, 50), "too_small"),
        ((20, 401), "bad_aspect"),
        ((5000, 100), "bad_aspect"),
    ],
)
def test_absurd_shapes_are_refused(size, reason):
    error = refused(encode(Image.new("RGB", size), "PNG"))
    assert error.reason == reason
    assert f"{size[0]}x{size[1]}" in str(error)


@pytest.mark.parametrize("size", [(MIN_SIDE, MIN_SIDE), (20, 400)])
def test_shapes_at_the_limits_are_accepted(size):
    assert open_image(Image.new("RGB", size)).size == size


# -- fit -------------------------------------------------------------------------------------


def test_fit_keeps_aspect_and_never_upscales():
    photo = open_image(gradient(400, 300))
    assert photo.fit(100).size == (100, 75)
    assert photo.fit(99).size == (99, 74)
    assert photo.fit(DEFAULT_MAX_SIDE) is photo and photo.fit(400) is photo
    assert photo.fit(None) is photo
    tall = open_image(gradient(30, 600)).fit(100)
    assert tall.size == (MIN_SIDE, 100)  # 5 px would be too thin for the model
    fitted = photo.fit(100)
    assert isinstance(fitted, Photo) and fitted.info == photo.info  # info: the source
    assert psnr(fitted.rgb, gradient(400, 300).resize((100, 75), Image.Resampling.LANCZOS)) > 40


def test_fit_on_open_matches_fit_after_open(photo_paths):
    source = Image.open(photo_paths[-1]).convert("RGB")  # a real scene, about 1024 px wide
    jpeg = encode(source, "JPEG", quality=90)
    png = encode(source.resize((source.width // 2, source.height // 2)), "PNG")
    for data, side in ((jpeg, 256), (jpeg, 500), (jpeg, 2000), (png, 200)):
        quick, full = open_image(data, max_side=side), open_image(data).fit(side)
        assert quick.size == full.size and quick.info == full.info
        assert psnr(quick.rgb, full.rgb) >= 45, (side, psnr(quick.rgb, full.rgb))
