"""Stylizer API details not covered by test_model.py: attributes, refusals, the bf16
fallback, alpha round trip through ``stylize_photo``, progress reports."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import animegan.precision as precision_module
from animegan.errors import UnknownStyleError
from animegan.inference import load_stylizer
from animegan.intake import open_image
from animegan.precision import native_bf16, resolve_precision
from animegan.styles import STYLES


def test_stylizer_exposes_style_weights_hash_precision_device(fp32_stylizer, bf16_stylizer):
    assert fp32_stylizer.style is STYLES["hayao"]
    assert fp32_stylizer.weights_sha256 == STYLES["hayao"].sha256
    assert (fp32_stylizer.precision, bf16_stylizer.precision) == ("fp32", "bf16")
    assert fp32_stylizer.device == "cpu"


def test_unknown_style_and_precision_are_refused(weights_dir):
    with pytest.raises(UnknownStyleError, match="hayao"):
        load_stylizer("van_gogh", weights_dir=weights_dir)
    with pytest.raises(ValueError, match="precision"):
        load_stylizer("hayao", weights_dir=weights_dir, precision="fp8", device="cpu")


def test_auto_falls_back_to_fp32_without_native_bf16_or_when_the_check_fails(monkeypatch, fp32_stylizer):
    model = fp32_stylizer._model  # float32; resolve_precision copies before converting
    assert resolve_precision("auto", model, "cpu") == ("bf16" if native_bf16("cpu") else "fp32")
    monkeypatch.setattr(precision_module, "native_bf16", lambda device: False)
    assert resolve_precision("auto", model, "cpu") == "fp32"
    monkeypatch.setattr(precision_module, "native_bf16", lambda device: True)
    monkeypatch.setattr(precision_module, "BF16_MIN_PSNR_DB", 500.0)  # no bf16 run passes
    assert resolve_precision("auto", model, "cpu") == "fp32"
    assert resolve_precision("bf16", model, "cpu") == "bf16"  # an explicit choice is kept
    assert next(model.parameters()).dtype.is_floating_point and model.training is False


def test_stylize_photo_fits_and_restores_alpha(fp32_stylizer, scene):
    image = scene.resize((300, 200)).convert("RGBA")
    alpha = Image.new("L", image.size, 0)
    alpha.paste(255, (0, 0, 150, 200))  # left half opaque, right half transparent
    image.putalpha(alpha)
    out = fp32_stylizer.stylize_photo(open_image(image), max_side=150)
    assert out.mode == "RGBA" and out.size == (150, 100)
    a = np.asarray(out.getchannel("A"))
    assert a[:, :70].min() == 255 and a[:, 80:].max() == 0
    plain = fp32_stylizer.stylize_photo(open_image(scene.resize((300, 200))), max_side=None)
    assert plain.mode == "RGB" and plain.size == (300, 200)


def test_progress_goes_from_zero_to_one(fp32_stylizer, scene):
    whole: list[float] = []
    fp32_stylizer.stylize(scene.resize((64, 48)), progress=whole.append)
    assert whole == [0.0, 1.0]
    tiled: list[float] = []
    fp32_stylizer.retiled(96).stylize(scene.resize((160, 120)), progress=tiled.append)
    assert tiled[0] == 0.0 and tiled[-1] == 1.0 and tiled == sorted(tiled) and len(tiled) > 4
