"""Tiled inference: tiles cover the image, blend without seams, and match an untiled run."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from animegan.generator import AnimeGANv2Generator, Window, resize_window
from animegan.inference import _to_tensor
from animegan.intake import open_image
from animegan.norm import frozen_statistics
from animegan.precision import psnr
from animegan.tiling import run_tiled, tile_starts
from animegan.weights import read_weights


def psnr_255(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))


def test_window_resize_of_the_whole_image_is_plain_align_corners_resize():
    x = torch.randn(1, 8, 25, 17)
    whole = Window((100, 68), (0, 0))
    ours = resize_window(x, whole.scaled(2), whole.scaled(4), (50, 34))
    torch.testing.assert_close(ours, F.interpolate(x, size=(50, 34), mode="bilinear", align_corners=True))


def test_window_resize_of_a_tile_samples_where_the_whole_image_does():
    x = torch.randn(1, 8, 25, 17)
    reference = F.interpolate(x, size=(50, 34), mode="bilinear", align_corners=True)
    tile = Window((100, 68), (40, 20))  # full-size origin; (20, 10) at 1/2, (10, 5) at 1/4
    ours = resize_window(x[:, :, 10:20, 5:13], tile.scaled(2), tile.scaled(4), (20, 16))
    # Away from the tile's rim (whose sources lie outside the tile) it is exact.
    torch.testing.assert_close(ours[:, :, 1:-1, 1:-1], reference[:, :, 21:39, 11:25])


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [(1000, 256, 64), (260, 256, 64), (4000, 1024, 64), (512, 320, 32)],
)
def test_tile_starts_cover_aligned_and_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap, align=4)
    assert starts[0] == 0 and starts[-1] == length - tile
    assert all(s % 4 == 0 for s in starts)
    assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))
    assert tile_starts(200, 256, 64, align=4) == [0]


def test_blending_is_seamless_for_a_perfect_model():
    # With an identity "model" every tile agrees, so the blend must return the input exactly:
    # any seam or weight error would show up here.
    x = torch.rand(1, 3, 300, 452)
    seen = []

    def identity(tile, origin):
        seen.append(origin)
        return tile

    out = run_tiled(identity, x, tile=128, overlap=32, align=4, progress=None)
    torch.testing.assert_close(out, x)
    assert len(seen) == len(tile_starts(300, 128, 32, 4)) * len(tile_starts(452, 128, 32, 4))


@pytest.fixture(scope="module")
def generator(weights_dir) -> AnimeGANv2Generator:
    model = AnimeGANv2Generator().eval()
    model.load_state_dict(read_weights(weights_dir / "animeganv2_hayao_bryandlee.pt").state_dict)
    return model.to(memory_format=torch.channels_last)


@torch.inference_mode()
def test_tiles_with_whole_image_statistics_reproduce_the_untiled_output(generator, scene):
    # The tiling machinery itself (windows, overlap, blending) is exact up to the reflection
    # padding at inner tile edges, once the normalization statistics are the whole image's.
    x = _to_tensor(scene.resize((512, 340)))
    x = F.pad(x, (0, 0, 0, 4 - 340 % 4), mode="reflect")  # 344: a multiple of the stride
    untiled = generator(x)
    full_size = (x.shape[-2], x.shape[-1])
    with frozen_statistics(generator, x):
        tiled = run_tiled(
            lambda tile, origin: generator(tile, Window(full_size, origin)),
            x,
            tile=256,
            overlap=64,
            align=4,
        )
    assert psnr(tiled, untiled) >= 55


@pytest.mark.parametrize("role", ["tiling_face", "tiling_scene"])
def test_tiled_stylizer_matches_untiled(fp32_stylizer, photo_set, role):
    # The two hardest photos of each set at this tile/image ratio (bench/results/engine.md):
    # statistics come from a downscaled pass, so the match is close, not exact.
    image = open_image(photo_set.photo(role)).fit(512).rgb
    tiled = fp32_stylizer.retiled(384)
    progress: list[float] = []
    out = np.asarray(tiled.stylize(image, progress=progress.append))
    reference = np.asarray(fp32_stylizer.stylize(image))  # fits its budget: one pass
    assert psnr_255(out, reference) >= 35
    assert len(progress) > 2 and progress == sorted(progress) and progress[-1] == 1.0
