"""Stylizer behaviour on the real Hayao model: size, alignment, precision, alpha, threads."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import animegan.precision as precision_module
from animegan.errors import ImageError, UnknownStyleError
from animegan.inference import load_stylizer
from animegan.intake import open_image
from animegan.precision import BF16_MIN_PSNR_DB, native_bf16, resolve_precision
from tests.engine.test_generator import HAYAO_SHA256, psnr_255


def test_stylizer_exposes_style_weights_hash_precision_device(fp32_stylizer, bf16_stylizer):
    assert fp32_stylizer.style.name == "hayao"
    assert fp32_stylizer.weights_sha256 == HAYAO_SHA256
    assert (fp32_stylizer.precision, bf16_stylizer.precision) == ("fp32", "bf16")
    assert fp32_stylizer.device == "cpu"


def test_loading_twice_gives_the_same_stylizer(weights_dir, fp32_stylizer):
    again = load_stylizer("hayao", weights_dir=weights_dir, precision="fp32", device="cpu")
    assert again is fp32_stylizer


def test_concurrent_first_loads_load_once(weights_dir, tmp_path):
    # A fresh copy of the file is a new cache key, so every thread races on a cold load.
    shutil.copy(weights_dir / "animeganv2_hayao_bryandlee.pt", tmp_path)
    barrier = threading.Barrier(4)

    def load(_):
        barrier.wait()
        return load_stylizer("hayao", weights_dir=tmp_path, precision="fp32", device="cpu")

    with ThreadPoolExecutor(4) as pool:
        stylizers = list(pool.map(load, range(4)))
    assert all(s is stylizers[0] for s in stylizers)


def test_unknown_style_and_precision_are_refused(weights_dir):
    with pytest.raises(UnknownStyleError, match="hayao"):
        load_stylizer("van_gogh", weights_dir=weights_dir)
    with pytest.raises(ValueError, match="precision"):
        load_stylizer("hayao", weights_dir=weights_dir, precision="fp8", device="cpu")


@pytest.mark.parametrize("size", [(101, 67), (64, 64), (8, 8), (130, 9)])
def test_output_has_exactly_the_input_size(fp32_stylizer, scene, size):
    image = scene.resize(size)
    assert fp32_stylizer.stylize(image).size == size


def test_odd_sizes_are_padded_not_stretched(fp32_stylizer):
    # An edge at column 90 must come out where it does in a 104 px wide image (a multiple
    # of the stride, nothing to pad); stretching 101 px to 104 and back would move it ~3 px.
    def edge_profile(width: int) -> np.ndarray:
        array = np.zeros((67, width, 3), np.uint8)
        array[:, 90:] = 255
        out = fp32_stylizer.stylize(Image.fromarray(array)).convert("L")
        return np.asarray(out, dtype=float)[10:-10, 75:100].mean(axis=0)

    assert np.abs(edge_profile(101) - edge_profile(104)).max() < 2


def test_too_small_or_non_rgb_input_is_refused(fp32_stylizer):
    with pytest.raises(ImageError) as err:
        fp32_stylizer.stylize(Image.new("RGB", (7, 40)))
    assert err.value.reason == "too_small"
    with pytest.raises(ValueError, match="RGB"):
        fp32_stylizer.stylize(Image.new("L", (40, 40)))


def test_bf16_matches_fp32_on_a_real_photo(fp32_stylizer, bf16_stylizer, scene):
    image = scene.resize((384, 256))
    reference = np.asarray(fp32_stylizer.stylize(image))
    assert psnr_255(np.asarray(bf16_stylizer.stylize(image)), reference) >= BF16_MIN_PSNR_DB


def test_auto_precision_is_bf16_only_where_native(monkeypatch, fp32_stylizer):
    model = fp32_stylizer._model  # already float32; resolve_precision only reads it
    expected = "bf16" if native_bf16("cpu") else "fp32"
    assert resolve_precision("auto", model, "cpu") == expected
    monkeypatch.setattr(precision_module, "native_bf16", lambda device: False)
    assert resolve_precision("auto", model, "cpu") == "fp32"
    monkeypatch.setattr(precision_module, "native_bf16", lambda device: True)
    monkeypatch.setattr(precision_module, "BF16_MIN_PSNR_DB", 500.0)  # the check must fail
    assert resolve_precision("auto", model, "cpu") == "fp32"
    assert resolve_precision("bf16", model, "cpu") == "bf16"


def test_stylize_photo_fits_and_restores_alpha(fp32_stylizer, scene):
    image = scene.resize((300, 200)).convert("RGBA")
    alpha = Image.new("L", image.size, 0)
    alpha.paste(255, (0, 0, 150, 200))
    image.putalpha(alpha)
    out = fp32_stylizer.stylize_photo(open_image(image), max_side=150)
    assert out.mode == "RGBA" and out.size == (150, 100)
    a = np.asarray(out.getchannel("A"))
    assert a[:, :70].min() == 255 and a[:, 80:].max() == 0
    plain = fp32_stylizer.stylize_photo(open_image(scene.resize((300, 200))), max_side=None)
    assert plain.mode == "RGB" and plain.size == (300, 200)


def test_progress_reports_start_and_end(fp32_stylizer, scene):
    seen: list[float] = []
    fp32_stylizer.stylize(scene.resize((64, 48)), progress=seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0


def test_concurrent_stylize_equals_serial(bf16_stylizer, scene):
    images = [scene.crop((i * 200, 0, i * 200 + 160, 120)) for i in range(4)]
    serial = [np.asarray(bf16_stylizer.stylize(image)) for image in images]
    barrier = threading.Barrier(len(images))

    def run(image):
        barrier.wait()
        return np.asarray(bf16_stylizer.stylize(image))

    with ThreadPoolExecutor(len(images)) as pool:
        parallel = list(pool.map(run, images))
    for a, b in zip(serial, parallel):
        assert np.array_equal(a, b)
