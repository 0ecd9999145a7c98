"""Recipes: hayao and whitebox built from their public TFLite sources, as a fresh machine
gets them. Sources are fetched from a real HTTP server on 127.0.0.1 through the download
mirror (the upstream URLs are pinned to raw.githubusercontent.com, out of reach here).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from animegan.errors import ChecksumMismatchError, WeightsCorruptError, WeightsNotFoundError
from animegan.inference import build_stylizer
from animegan.intake import open_image
from animegan.recipes import build_weights, convert
from animegan.styles import STYLES
from animegan.tflite_reader import TFLiteFormatError
from animegan.weights import ENV_MIRROR, ENV_WEIGHTS_DIR, ensure_weights, read_weights

pytestmark = pytest.mark.provisioning

RECIPE_STYLES = ("hayao", "whitebox")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user cache, an empty ./weights and no explicit folder: a fresh machine."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(ENV_WEIGHTS_DIR, raising=False)
    monkeypatch.delenv(ENV_MIRROR, raising=False)
    return tmp_path / "xdg" / "animegan"


@pytest.mark.parametrize("name", RECIPE_STYLES)
def test_a_fresh_machine_builds_the_pinned_file(name, cache_dir, server, source_files, weights_dir, capsys):
    style = STYLES[name]
    source = style.recipe.source
    server.serve(f"/{source.filename}", source_files[name].read_bytes())

    path = ensure_weights(style, mirror=server.url("/"))

    assert path == cache_dir / style.filename
    # Byte for byte the reference file: same tensors, same torch.save container.
    assert sha256(path) == style.sha256 == sha256(weights_dir / style.filename)
    assert server.requests == [f"/{source.filename}"]
    assert source.filename in capsys.readouterr().err  # the download's progress bar
    # The source is kept beside it (a rebuild needs no network), nothing else is left.
    assert files_in(cache_dir) == sorted([style.filename, source.filename])
    assert ensure_weights(style, mirror=server.url("/")) == path
    assert len(server.requests) == 1


@pytest.mark.parametrize("name", RECIPE_STYLES)
def test_built_weights_stylize_like_the_reference(name, cache_dir, source_files, weights_dir, photo_set):
    """The issue's bar: the built weights' output matches the reference's at >= 40 dB.
    (They are the same bytes, so the PSNR is infinite; the bar guards the build itself.)"""
    style = STYLES[name]
    built = build_weights(style, source_files[name], cache_dir)
    image = open_image(photo_set.photo("street")).fit(256).rgb
    outputs = [
        np.asarray(build_stylizer(style, path, "fp32", "cpu").stylize(image), np.float64)
        for path in (built, weights_dir / style.filename)
    ]
    mse = float(np.mean((outputs[0] - outputs[1]) ** 2))
    assert (math.inf if mse == 0 else 10 * math.log10(255**2 / mse)) >= 40


def test_offline_builds_from_a_source_on_disk(cache_dir, source_files, server, tmp_path):
    style = STYLES["whitebox"]
    local = tmp_path / "weights"
    local.mkdir()
    (local / style.recipe.source.filename).write_bytes(source_files["whitebox"].read_bytes())

    path = ensure_weights(style, allow_download=False, mirror=server.url("/"))

    assert path == cache_dir / style.filename and sha256(path) == style.sha256
    assert server.requests == []  # converting a file at hand needs no network


def test_offline_without_a_source_says_what_to_get(cache_dir, server):
    style = STYLES["hayao"]
    with pytest.raises(WeightsNotFoundError) as info:
        ensure_weights(style, allow_download=False, mirror=server.url("/m"))
    message = str(info.value)
    assert style.filename in message and style.recipe.source.filename in message
    assert f"(mirror of {style.recipe.source.url})" in message and str(cache_dir) in message
    assert server.requests == [] and not cache_dir.exists()


def test_a_wrong_source_from_the_mirror_is_refused(cache_dir, server, source_files):
    style = STYLES["hayao"]
    wrong = source_files["whitebox"].read_bytes()  # a real TFLite, but not the pinned one
    server.serve(f"/{style.recipe.source.filename}", wrong)
    with pytest.raises(ChecksumMismatchError) as info:
        ensure_weights(style, mirror=server.url("/"))
    assert style.recipe.source.sha256 in str(info.value)
    assert files_in(cache_dir) == []  # no source, no weights, no temporary file


def test_a_wrong_source_on_disk_is_refused(cache_dir, tmp_path, source_files):
    style = STYLES["whitebox"]
    local = tmp_path / "weights"
    local.mkdir()
    (local / style.recipe.source.filename).write_bytes(source_files["hayao"].read_bytes())
    with pytest.raises(ChecksumMismatchError) as info:
        ensure_weights(style, allow_download=False)
    assert "is not the source of style 'whitebox'" in str(info.value)
    assert style.recipe.source.url in str(info.value)
    assert files_in(cache_dir) == []


def test_a_graph_that_does_not_fit_the_layout_is_refused(source_files):
    with pytest.raises(TFLiteFormatError, match="has a bias the layout lacks"):
        convert(STYLES["hayao"], source_files["whitebox"].read_bytes())
    with pytest.raises(TFLiteFormatError, match="the graph has 42 weight tensors"):
        convert(STYLES["whitebox"], source_files["hayao"].read_bytes())
    with pytest.raises(TFLiteFormatError, match="TFL3"):
        convert(STYLES["whitebox"], b"PK\x03\x04 a zip, not a model")


def test_an_unconvertible_source_is_a_weights_error(cache_dir, tmp_path, source_files):
    """A source that passes its checksum but fails to convert (here: the pinned checksum is
    swapped for the wrong file's) is a typed error and leaves nothing behind."""
    wrong = source_files["whitebox"]
    recipe = dataclasses.replace(
        STYLES["hayao"].recipe,
        source=dataclasses.replace(STYLES["hayao"].recipe.source, sha256=sha256(wrong)),
    )
    style = dataclasses.replace(STYLES["hayao"], recipe=recipe)
    with pytest.raises(WeightsCorruptError) as info:
        build_weights(style, wrong, cache_dir)
    assert "could not be built" in str(info.value)
    assert files_in(cache_dir) == []


def test_a_build_that_differs_from_the_pinned_file_is_discarded(cache_dir, source_files):
    style = dataclasses.replace(STYLES["whitebox"], sha256="0" * 64)
    with pytest.raises(ChecksumMismatchError) as info:
        build_weights(style, source_files["whitebox"], cache_dir)
    assert STYLES["whitebox"].sha256 in str(info.value)  # what it built, for the report
    assert files_in(cache_dir) == []


def test_without_the_tflite_package_the_error_says_what_to_install(cache_dir, source_files, monkeypatch):
    monkeypatch.setitem(sys.modules, "tflite", None)  # import tflite now raises ImportError
    with pytest.raises(WeightsNotFoundError, match="pip install tflite"):
        build_weights(STYLES["hayao"], source_files["hayao"], cache_dir)
    assert files_in(cache_dir) == []


def test_both_container_details_are_part_of_the_file(tmp_path, source_files):
    """Why the recipe saves Module.state_dict() under the archive name: the same tensors
    saved as a plain dict, or from another file name, are other bytes."""
    style = STYLES["whitebox"]
    state = convert(style, source_files["whitebox"].read_bytes())
    right = tmp_path / f"{style.recipe.archive_name}.pt"
    torch.save(state, right)
    renamed = tmp_path / "whitebox.pt"
    torch.save(state, renamed)
    plain = tmp_path / "plain" / right.name
    plain.parent.mkdir()
    torch.save(dict(state), plain)
    assert sha256(right) == style.sha256
    assert sha256(renamed) != style.sha256 and sha256(plain) != style.sha256
    for path in (renamed, plain):  # the tensors themselves are identical
        loaded = read_weights(path).state_dict
        assert all(torch.equal(loaded[k], v) for k, v in state.items())
