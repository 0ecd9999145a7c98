"""The style registry: what the UI lists, in what order, under which licence."""

from __future__ import annotations

import dataclasses

import pytest

from animegan.errors import AnimeGANError, UnknownStyleError
from animegan.models import build_model
from animegan.styles import DEFAULT_STYLE, STYLES, get_style


def test_hayao_is_first_and_the_default():
    assert next(iter(STYLES)) == DEFAULT_STYLE == "hayao"
    assert list(STYLES) == [
        "hayao",
        "face_paint_512_v2",
        "face_paint_512_v1",
        "celeba_distill",
        "paprika",
        "whitebox",
    ]


def test_recipe_styles_pin_their_source_and_their_result():
    for name, repository in (
        ("hayao", "terryky/tflite_gles_app"),
        ("whitebox", "margaretmz/Cartoonizer-with-TFLite"),
    ):
        style = STYLES[name]
        assert style.url is None and len(style.sha256 or "") == 64
        source = style.recipe.source
        assert source.repository == repository
        assert len(source.commit) == 40 and len(source.sha256) == 64
        # The URL names the commit, never a branch that could move.
        assert source.url == (f"https://raw.githubusercontent.com/{repository}/{source.commit}/{source.path}")
        assert source.filename.endswith(".tflite")
        assert "non-commercial" in source.license.lower()
        assert style.origin.startswith(f"built from {repository}@{source.commit[:12]}:{source.path}")


def test_downloadable_styles_point_at_bryandlee_weights():
    for name in ("face_paint_512_v2", "face_paint_512_v1", "celeba_distill", "paprika"):
        style = STYLES[name]
        assert style.arch == "animeganv2" and style.filename == f"{name}.pt"
        assert style.recipe is None and style.origin == f"downloaded from {style.url}"
        upstream = "https://github.com/bryandlee/animegan2-pytorch/raw/main/weights"
        assert style.url == f"{upstream}/{name}.pt"


def test_every_style_names_its_non_commercial_licence():
    for style in STYLES.values():
        assert "non-commercial" in style.license.lower()
    assert STYLES["whitebox"].license == "CC BY-NC-SA 4.0, non-commercial"
    assert STYLES["whitebox"].label == "Cartoon (White-box)"


def test_styles_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        STYLES["hayao"].url = "http://example.com/evil.pt"  # type: ignore[misc]


def test_unknown_style_is_a_user_facing_error():
    with pytest.raises(UnknownStyleError) as err:
        get_style("ghibli")
    assert isinstance(err.value, AnimeGANError)
    assert "'ghibli'" in str(err.value) and "hayao" in str(err.value)


def test_every_arch_builds():
    for arch in {style.arch for style in STYLES.values()}:
        assert sum(p.numel() for p in build_model(arch).parameters()) > 100_000
