"""The AnimeGANv2 generator against the real Hayao weights: strict load and golden output."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from animegan.errors import WeightsCorruptError
from animegan.generator import AnimeGANv2Generator, Window, resize_window
from animegan.inference import build_stylizer
from animegan.styles import STYLES, get_style
from animegan.weights import read_weights
from tests.engine.make_golden import GOLDEN_FILE, fingerprint, stylize_golden

HAYAO_SHA256 = get_style("hayao").sha256


def psnr_255(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def test_real_hayao_state_dict_loads_strictly(weights_dir):
    state = torch.load(
        weights_dir / "animeganv2_hayao_bryandlee.pt", map_location="cpu", weights_only=True
    )
    model = AnimeGANv2Generator()
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(state) == 77
    assert model.block_c[1].layers[1][1].groups == 256  # the depthwise conv of IRB(128, 256)


def test_golden_output_matches_the_stored_fingerprint(photos_dir, weights_dir, fp32_stylizer):
    expected = np.load(GOLDEN_FILE)
    source, output = stylize_golden(photos_dir, weights_dir)
    assert output.size == source.size
    got = fingerprint(output)
    assert psnr_255(got, expected) >= 40
    # Not the input: the Hayao palette moves colours a long way.
    assert psnr_255(got, fingerprint(source)) < 25
    # Not noise: the stylized scene keeps the photo's layout (brightness correlates) ...
    luma_in, luma_out = fingerprint(source).mean(axis=2), got.mean(axis=2)
    assert np.corrcoef(luma_in.ravel(), luma_out.ravel())[0, 1] > 0.7
    # ... and is not speckled: neighbouring pixels are alike (about 0.2 here, 1.15 for noise).
    out = np.asarray(output, dtype=np.float64)
    assert np.abs(np.diff(out, axis=1)).mean() < 0.5 * out.std()


def test_window_resize_of_the_whole_image_is_plain_align_corners_resize():
    x = torch.randn(1, 8, 25, 17)
    whole = Window((100, 68), (0, 0))
    ours = resize_window(x, whole.scaled(2), whole.scaled(4), (50, 34))
    torch.testing.assert_close(
        ours, F.interpolate(x, size=(50, 34), mode="bilinear", align_corners=True)
    )


def test_window_resize_of_a_tile_samples_where_the_whole_image_does():
    x = torch.randn(1, 8, 25, 17)
    reference = F.interpolate(x, size=(50, 34), mode="bilinear", align_corners=True)
    tile = Window((100, 68), (40, 20))  # full-size origin; (20, 10) at 1/2, (10, 5) at 1/4
    ours = resize_window(x[:, :, 10:20, 5:13], tile.scaled(2), tile.scaled(4), (20, 16))
    # Away from the tile's rim (whose sources lie outside the tile) it is exact.
    torch.testing.assert_close(ours[:, :, 1:-1, 1:-1], reference[:, :, 21:39, 11:25])


def test_state_dict_that_does_not_fit_the_architecture_is_corrupt(tmp_path, weights_dir):
    state = read_weights(weights_dir / "animeganv2_hayao_bryandlee.pt").state_dict
    renamed = {k.replace("block_a", "encoder"): v for k, v in state.items()}
    path = tmp_path / "paprika.pt"
    torch.save(renamed, path)
    with pytest.raises(WeightsCorruptError, match="paprika"):
        build_stylizer(STYLES["paprika"], path, "fp32", "cpu")
    # The White-box generator refuses AnimeGANv2 tensors the same way.
    whitebox = dataclasses.replace(STYLES["whitebox"], sha256=None)
    with pytest.raises(WeightsCorruptError, match="whitebox"):
        build_stylizer(whitebox, weights_dir / "animeganv2_hayao_bryandlee.pt", "fp32", "cpu")
