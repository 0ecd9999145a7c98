"""Image intake: every Pillow mode becomes correct RGB (+ alpha), bad files get typed errors."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animegan.errors import ImageError
from animegan.intake import DEFAULT_MAX_PIXELS, MIN_SIDE, Photo, apply_alpha, open_image


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def gradient(width: int = 40, height: int = 30) -> Image.Image:
    """An RGB image whose every pixel differs, so orientation and scaling errors show."""
    yy, xx = np.mgrid[0:height, 0:width]
    array = np.stack([xx * 255 // (width - 1), yy * 255 // (height - 1), (xx + yy) % 256], axis=-1)
    return Image.fromarray(array.astype(np.uint8), "RGB")


def test_importing_intake_styles_errors_does_not_import_torch():
    code = (
        "import sys, animegan, animegan.intake, animegan.styles, animegan.errors;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


@pytest.mark.parametrize("source", ["path", "bytes", "pil", "array"])
def test_all_source_types_give_the_same_rgb(tmp_path, source):
    image = gradient()
    data = encode(image, "PNG")
    path = tmp_path / "g.png"
    path.write_bytes(data)
    src = {"path": path, "bytes": data, "pil": image, "array": np.asarray(image)}[source]
    photo = open_image(str(src) if source == "path" else src)
    assert photo.rgb.mode == "RGB" and photo.alpha is None
    assert np.array_equal(np.asarray(photo.rgb), np.asarray(image))
    assert photo.info["size"] == (40, 30) and photo.info["n_frames"] == 1
    assert photo.info["format"] == ("PNG" if source in ("path", "bytes") else None)


def test_exif_orientation_is_applied():
    image = gradient(40, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    photo = open_image(encode(image, "PNG", exif=exif))
    assert photo.size == (30, 40)
    expected = image.transpose(Image.Transpose.ROTATE_270)
    assert np.array_equal(np.asarray(photo.rgb), np.asarray(expected))


@pytest.mark.parametrize("mode", ["L", "1"])
def test_greyscale_and_bilevel_become_grey_rgb(mode):
    image = gradient().convert(mode)
    photo = open_image(encode(image, "PNG"))
    rgb = np.asarray(photo.rgb)
    assert photo.info["mode"] == mode and photo.alpha is None
    assert np.array_equal(rgb[..., 0], np.asarray(image.convert("L")))
    assert np.array_equal(rgb[..., 0], rgb[..., 2])


def test_la_keeps_its_alpha():
    grey = gradient().convert("L")
    alpha = Image.new("L", grey.size, 0)
    alpha.paste(255, (0, 0, 20, 30))
    image = Image.merge("LA", (grey, alpha))
    photo = open_image(encode(image, "PNG"))
    assert photo.alpha is not None
    assert np.array_equal(np.asarray(photo.alpha), np.asarray(alpha))
    assert np.array_equal(np.asarray(photo.rgb)[..., 1], np.asarray(grey))


def test_rgba_alpha_round_trip():
    rgb = gradient()
    alpha = Image.linear_gradient("L").resize(rgb.size)
    image = rgb.copy()
    image.putalpha(alpha)
    photo = open_image(encode(image, "PNG"))
    assert np.array_equal(np.asarray(photo.rgb), np.asarray(rgb))
    restored = apply_alpha(photo.rgb, photo.alpha)
    assert restored.mode == "RGBA"
    assert np.array_equal(np.asarray(restored), np.asarray(image))


def test_apply_alpha_resizes_alpha_to_the_output():
    alpha = Image.new("L", (40, 30), 255)
    alpha.paste(0, (0, 0, 20, 30))  # left half transparent
    out = apply_alpha(Image.new("RGB", (80, 60), "red"), alpha)
    a = np.asarray(out.getchannel("A"))
    assert out.size == (80, 60)
    assert a[:, :32].max() == 0 and a[:, 48:].min() == 255
    assert apply_alpha(out.convert("RGB"), None).mode == "RGB"


def test_fully_opaque_alpha_is_dropped():
    image = gradient().convert("RGBA")
    assert open_image(encode(image, "PNG")).alpha is None


def test_palette_with_and_without_transparency():
    rgb = gradient().quantize(colors=16)
    plain = open_image(encode(rgb, "PNG"))
    assert plain.alpha is None
    assert np.array_equal(np.asarray(plain.rgb), np.asarray(rgb.convert("RGB")))
    transparent_index = rgb.getpixel((0, 0))
    with_alpha = open_image(encode(rgb, "PNG", transparency=transparent_index))
    alpha = np.asarray(with_alpha.alpha)
    indices = np.asarray(rgb)
    assert np.array_equal(alpha == 0, indices == transparent_index)


def test_cmyk_is_converted_not_misread():
    image = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # full magenta + yellow = red
    photo = open_image(encode(image, "JPEG", quality=95))
    r, g, b = np.asarray(photo.rgb).reshape(-1, 3).mean(axis=0)
    assert photo.info["mode"] == "CMYK"
    assert r > 240 and g < 15 and b < 15


def test_sixteen_bit_png_is_scaled_not_clipped():
    values = np.linspace(0, 65535, 64 * 16).reshape(16, 64).astype(np.uint16)
    photo = open_image(encode(Image.fromarray(values), "PNG"))
    grey = np.asarray(photo.rgb)[..., 0].astype(int)
    assert photo.info["mode"].startswith("I;16")
    assert grey.min() == 0 and grey.max() == 255
    assert np.abs(grey - values / 257).max() <= 1  # proportional, not saturated at 255


def test_int32_and_float_modes_are_scaled():
    ints = Image.fromarray((np.arange(128 * 16).reshape(16, 128) * 32).astype(np.int32), "I")
    grey = np.asarray(open_image(ints).rgb)[..., 0]
    assert grey.max() == 255 and len(np.unique(grey)) > 100
    floats = Image.fromarray(np.linspace(0, 1, 128 * 16, dtype=np.float32).reshape(16, 128), "F")
    grey = np.asarray(open_image(floats).rgb)[..., 0].astype(int)
    assert grey.min() == 0 and grey.max() == 255 and np.all(np.diff(grey[0]) >= 0)


def test_numpy_arrays_of_common_dtypes():
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    photo = open_image(rgba)
    assert np.asarray(photo.rgb)[0, 0, 0] == 200 and np.asarray(photo.alpha).max() == 128
    as_float = open_image(np.full((20, 30, 3), 0.5, np.float32))
    assert np.asarray(as_float.rgb).mean() == pytest.approx(128, abs=1)
    as_u16 = open_image(np.full((20, 30, 3), 65535, np.uint16))
    assert np.asarray(as_u16.rgb).min() == 255
    with pytest.raises(ImageError) as err:
        open_image(np.zeros((20, 30, 2), np.uint8))
    assert err.value.reason == "unsupported"


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_uses_first_frame(fmt):
    frames = [Image.new("RGB", (24, 24), colour) for colour in ("red", "blue", "green")]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
    photo = open_image(data)
    r, g, b = np.asarray(photo.rgb).reshape(-1, 3).mean(axis=0)
    assert photo.info["n_frames"] == 3
    assert r > 200 and g < 50 and b < 50


def test_empty_inputs_are_refused(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for src in (empty, b""):
        with pytest.raises(ImageError) as err:
            open_image(src)
        assert err.value.reason == "empty"
        assert "empty" in str(err.value)


def test_not_an_image_is_refused(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is a text file, not a photo")
    with pytest.raises(ImageError) as err:
        open_image(path)
    assert err.value.reason == "not_image" and "notes.jpg" in str(err.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_refused_not_half_loaded(fmt, photo_paths):
    image = Image.open(photo_paths[0]).convert("RGB")
    data = encode(image, fmt)
    with pytest.raises(ImageError) as err:
        open_image(data[: len(data) // 2])
    assert err.value.reason == "truncated"


def test_pixel_limit_is_checked_before_decoding():
    # A 12000 x 12000 PNG of one colour is tiny on disk but 432 MB once decoded.
    data = encode(Image.new("L", (12000, 12000)), "PNG")
    assert len(data) < 1_000_000
    with pytest.raises(ImageError) as err:
        open_image(data)
    assert err.value.reason == "too_large" and "smaller image" in str(err.value)
    with pytest.raises(ImageError) as err:
        open_image(encode(gradient(), "PNG"), max_pixels=1000)
    assert err.value.reason == "too_large" and "40x30" in str(err.value)


def test_pillow_bomb_guard_matches_the_intake_limit():
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS
    # Beyond twice the guard Pillow itself refuses to open; intake turns that into too_large.
    side = int((2 * DEFAULT_MAX_PIXELS) ** 0.5) + 100
    with pytest.raises(ImageError) as err:
        open_image(encode(Image.new("1", (side, side)), "PNG"))
    assert err.value.reason == "too_large"


@pytest.mark.parametrize(
    ("size", "reason"),
    [((MIN_SIDE - 1, 50), "too_small"), ((5, 5), "too_small"), ((420, 20), "bad_aspect")],
)
def test_degenerate_shapes_are_refused(size, reason):
    with pytest.raises(ImageError) as err:
        open_image(encode(Image.new("RGB", size), "PNG"))
    assert err.value.reason == reason


def test_fit_downscales_keeping_aspect_and_never_upscales():
    photo = open_image(gradient(400, 300))
    fitted = photo.fit(100)
    assert fitted.size == (100, 75)
    assert fitted.info == photo.info  # info describes the source
    assert photo.fit(1000) is photo and photo.fit(None) is photo
    assert isinstance(fitted, Photo)


def test_fit_resizes_alpha_with_rgb():
    image = gradient(400, 300).convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize((400, 300)))
    fitted = open_image(image).fit(200)
    assert fitted.alpha is not None and fitted.alpha.size == fitted.rgb.size == (200, 150)
