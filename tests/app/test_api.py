"""The running app through `gradio_client`, as an API caller uses it."""

from __future__ import annotations

import io

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from app_support import reencode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(running_app):
    return Client(running_app, verbose=False)


def call(client, path, style="hayao", api_name="/stylize"):
    image, badge, info = client.predict(handle_file(str(path)), style, api_name=api_name)
    return Image.open(image), badge, info


def test_round_trip_miss_exact_fuzzy_miss_and_bad_file(client, photo_paths, tmp_path):
    photo = photo_paths[5]
    image, badge, info = call(client, photo)
    assert info["kind"] == "miss" and badge.startswith("generated")
    assert info["style"] == "hayao" and image.size == (info["width"], info["height"])

    image2, badge, info = call(client, photo)
    assert info["kind"] == "exact" and info["distance"] == 0 and badge.startswith("exact hit")
    assert image2.size == image.size

    copy = tmp_path / "copy.webp"
    copy.write_bytes(reencode(photo, "WEBP", quality=80))
    _, badge, info = call(client, copy)
    assert info["kind"] == "fuzzy"
    assert 0 <= info["distance"] <= info["threshold"]
    assert f"distance {info['distance']} of 64" in badge

    _, _, info = call(client, photo_paths[6])
    assert info["kind"] == "miss"

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(photo.read_bytes()[:200])
    with pytest.raises(AppError) as error:
        call(client, bad)
    assert "incomplete" in str(error.value).lower()

    # the server is still up and the cache still holds what it had
    _, _, info = call(client, photo)
    assert info["kind"] == "exact"


def test_regenerate_endpoint_skips_the_cache(client, photo_paths):
    photo = photo_paths[7]
    call(client, photo)
    _, badge, info = call(client, photo, api_name="/regenerate")
    assert info["kind"] == "miss" and info["cached"] is False and "cache skipped" in badge


def test_empty_file_is_a_clear_error(client, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(AppError) as error:
        call(client, empty)
    assert str(error.value).strip()
