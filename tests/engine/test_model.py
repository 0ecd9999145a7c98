"""The real Hayao model end to end: strict loading, a stored golden output, bfloat16 against
float32, exact output sizes, and sharing one stylizer between threads.

Everything runs the real weights on small real photos; a run takes a few seconds on 2 cores.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import animegan.inference as inference
from animegan.errors import ImageError, WeightsCorruptError
from animegan.generator import AnimeGANv2Generator
from animegan.inference import Stylizer, load_stylizer
from animegan.intake import open_image
from animegan.precision import native_bf16
from animegan.styles import STYLES
from animegan.weights import read_weights
from tests.engine.make_golden import fingerprint, golden_file, stylize_golden

HAYAO = STYLES["hayao"]
# bfloat16 against float32 on real photos at 512 px measured 53.1 to 55.3 dB (10 photos,
# 2-core AVX512-BF16 CPU); the bound leaves 3 dB of margin and is far above what a
# wrong conversion gives (below 30 dB).
BF16_VS_FP32_MIN_PSNR_DB = 50.0


def psnr(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def luma(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), np.float64)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def fp32(weights_dir: Path) -> Stylizer:
    return load_stylizer("hayao", weights_dir, precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def bf16(weights_dir: Path) -> Stylizer:
    return load_stylizer("hayao", weights_dir, precision="bf16", device="cpu")


@pytest.fixture(scope="module")
def street(photo_set) -> Image.Image:
    """The active photo set's second street scene (about 1024 x 694)."""
    return open_image(photo_set.photo("street_2")).rgb


# -- loading ---------------------------------------------------------------------------------


def test_real_hayao_file_loads_strictly(weights_dir):
    loaded = read_weights(weights_dir / HAYAO.filename, HAYAO.sha256)
    model = AnimeGANv2Generator()
    result = model.load_state_dict(loaded.state_dict, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    ours = model.state_dict()
    assert len(ours) == len(loaded.state_dict) == 77
    for key, tensor in loaded.state_dict.items():
        assert torch.equal(ours[key], tensor), key


def _broken(state: dict[str, torch.Tensor], how: str) -> dict[str, torch.Tensor]:
    state = dict(state)
    if how == "missing key":
        del state["block_e.2.2.bias"]
    elif how == "renamed key":
        state["block_a.0.conv.weight"] = state.pop("block_a.0.1.weight")
    elif how == "wrong shape":
        state["out_layer.0.weight"] = torch.zeros(3, 32, 3, 3)
    elif how == "extra key":
        state["block_f.0.weight"] = torch.zeros(1)
    return state


@pytest.mark.parametrize("how", ["missing key", "renamed key", "wrong shape", "extra key"])
def test_a_state_dict_that_does_not_fit_is_refused(weights_dir, tmp_path, monkeypatch, how):
    state = _broken(read_weights(weights_dir / HAYAO.filename).state_dict, how)
    with pytest.raises(RuntimeError):
        AnimeGANv2Generator().load_state_dict(state, strict=True)
    torch.save(state, tmp_path / HAYAO.filename)
    # Without a recorded checksum only the strict load can catch the file.
    monkeypatch.setitem(STYLES, "hayao", dataclasses.replace(HAYAO, sha256=None))
    with pytest.raises(WeightsCorruptError) as info:
        load_stylizer("hayao", tmp_path, precision="fp32", device="cpu")
    assert "does not fit style 'hayao'" in str(info.value)


def test_the_wrong_file_for_a_style_with_a_checksum_is_refused(weights_dir, tmp_path):
    shutil.copy(weights_dir / STYLES["whitebox"].filename, tmp_path / HAYAO.filename)
    with pytest.raises(WeightsCorruptError, match="SHA-256"):
        load_stylizer("hayao", tmp_path, precision="fp32", device="cpu")


# -- output ----------------------------------------------------------------------------------


def test_golden_output(photo_set, weights_dir):
    """See make_golden.py for how the stored fingerprint was made and when to remake it."""
    source, output = stylize_golden(photo_set, weights_dir)
    assert output.size == source.size and output.mode == "RGB"
    assert psnr(fingerprint(output), np.load(golden_file(photo_set.name))) >= 40
    # Not the input: the palette moves far (measured 16 dB on the fingerprint) ...
    assert psnr(fingerprint(output), fingerprint(source)) < 22
    # ... but the scene's layout is kept (brightness correlation measured 0.76) ...
    assert correlation(luma(source), luma(output)) > 0.5
    # ... and it is a picture, not noise: neighbouring pixels agree (0.93; noise gives 0).
    out = luma(output)
    assert correlation(out[:, :-1], out[:, 1:]) > 0.8


def test_bf16_matches_fp32_on_a_real_photo_at_512(fp32, bf16, street):
    image = open_image(street).fit(512).rgb
    assert max(image.size) == 512
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    similarity = psnr(fp32.stylize(image), bf16.stylize(image))
    assert BF16_VS_FP32_MIN_PSNR_DB <= similarity < math.inf  # close, and really bf16


def test_auto_precision_follows_the_cpu(weights_dir, fp32, bf16, street):
    flags = next(
        line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
    ).split()
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert native_bf16("cpu") == native
    auto = load_stylizer("hayao", weights_dir, precision="auto", device="cpu")
    # Hayao passes the bfloat16 check by a wide margin (see the test above), so only the
    # hardware decides; auto then computes exactly what the explicit choice computes.
    assert auto.precision == ("bf16" if native else "fp32")
    image = street.resize((96, 64))
    same = bf16 if native else fp32
    assert np.array_equal(np.asarray(auto.stylize(image)), np.asarray(same.stylize(image)))


@pytest.mark.parametrize("size", [(203, 131), (131, 203)])
def test_odd_sizes_come_back_exactly_and_unstretched(fp32, street, size):
    width, height = size
    odd = street.crop((300, 200, 300 + width, 200 + height))
    larger = street.crop((300, 200, 300 + width + 5, 200 + height + 5))  # multiples of 4
    out, reference = fp32.stylize(odd), fp32.stylize(larger)
    assert out.size == size
    # Same pixels, same places: away from the border the two agree (measured 43.8 dB);
    # stretching to 204 x 132 and back would shift content and give about 32 dB.
    inner = (slice(0, height - 12), slice(0, width - 12))
    assert psnr(np.asarray(out)[inner], np.asarray(reference)[inner]) >= 40


def test_input_must_be_rgb_and_large_enough(fp32):
    for mode in ("L", "RGBA", "P"):
        with pytest.raises(ValueError, match="RGB"):
            fp32.stylize(Image.new(mode, (32, 32)))
    with pytest.raises(ImageError) as info:
        fp32.stylize(Image.new("RGB", (7, 40)))
    assert info.value.reason == "too_small"


# -- sharing ---------------------------------------------------------------------------------


def _stylize_in_threads(stylizer: Stylizer, images: list[Image.Image]) -> list[np.ndarray]:
    start = threading.Barrier(len(images))

    def run(image: Image.Image) -> np.ndarray:
        start.wait()
        return np.asarray(stylizer.stylize(image))

    with ThreadPoolExecutor(len(images)) as pool:
        return list(pool.map(run, images))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_threads_sharing_a_stylizer_get_the_serial_results(weights_dir, photo_paths, precision):
    stylizer = load_stylizer("hayao", weights_dir, precision=precision, device="cpu")
    images = [
        open_image(p).fit(side).rgb for p, side in zip(photo_paths[::10], (96, 80, 72, 64), strict=False)
    ]
    serial = [np.asarray(stylizer.stylize(image)) for image in images]
    assert len({a.shape for a in serial}) == len(images)  # really different images
    for a, b in zip(serial, _stylize_in_threads(stylizer, images), strict=True):
        assert np.array_equal(a, b)


def test_threads_sharing_a_tiling_stylizer_get_the_serial_results(fp32, photo_paths):
    """Tiled runs keep per-image normalization statistics in the shared model for a while:
    the case where two unguarded concurrent runs would mix up each other's statistics."""
    stylizer = fp32.retiled(96)  # 120 x 90 images then run in tiles
    images = [open_image(p).rgb.resize((120, 90)) for p in photo_paths[::10]]
    seen: list[float] = []
    serial = [np.asarray(stylizer.stylize(images[0], progress=seen.append))]
    assert 0 < seen[1] < 1  # progress after a first tile: really tiled
    serial += [np.asarray(stylizer.stylize(image)) for image in images[1:]]
    for a, b in zip(serial, _stylize_in_threads(stylizer, images), strict=True):
        assert np.array_equal(a, b)


def test_load_stylizer_caches_per_arguments(weights_dir, fp32, bf16):
    assert load_stylizer("hayao", weights_dir, precision="fp32", device="cpu") is fp32
    assert load_stylizer("hayao", str(weights_dir), precision="fp32", device="cpu") is fp32
    assert bf16 is not fp32


def test_concurrent_first_calls_load_once(weights_dir, tmp_path, monkeypatch):
    shutil.copy(weights_dir / HAYAO.filename, tmp_path)  # a new file: a cold cache entry
    builds: list[Path] = []
    real_build = inference.build_stylizer

    def counting_build(*args, **kwargs):
        builds.append(args[1])
        return real_build(*args, **kwargs)

    monkeypatch.setattr(inference, "build_stylizer", counting_build)
    start = threading.Barrier(4)

    def load(_: int) -> Stylizer:
        start.wait()
        return load_stylizer("hayao", tmp_path, precision="fp32", device="cpu")

    with ThreadPoolExecutor(4) as pool:
        stylizers = list(pool.map(load, range(4)))
    assert len(builds) == 1
    assert all(s is stylizers[0] for s in stylizers)
