"""A fresh machine's first start, through the real app process: with no weights anywhere,
the app obtains hayao and whitebox itself (``--download-mirror`` pointing at a local server
that holds only the two public .tflite sources, as a firewalled network's mirror would),
builds them into the user cache, and stylizes with both."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from animegan.styles import STYLES
from tests.support.app import TEST_MAX_SIDE, launch_app, stop, wait_for_log
from tests.support.http_server import Server, running_server

pytestmark = [pytest.mark.slow, pytest.mark.provisioning]

# The app must not see the test run's own weights, mirror or offline switch.
_HOST_SETTINGS = ("ANIMEGAN_WEIGHTS_DIR", "ANIMEGAN_OFFLINE", "ANIMEGAN_DOWNLOAD_MIRROR", "XDG_CACHE_HOME")


@pytest.fixture(scope="module")
def fresh_app(tmp_path_factory, source_files) -> Iterator[tuple[Client, Path, Path, Server]]:
    """(client, app log, the app's user cache, the mirror) for an app started from nothing."""
    tmp = tmp_path_factory.mktemp("fresh-app")
    home = tmp / "home"
    home.mkdir()
    with running_server() as mirror:
        for path in source_files.values():
            mirror.serve(f"/{path.name}", path.read_bytes())
        proc, url, log = launch_app(
            tmp, None, "--download-mirror", mirror.url("/"), env={"HOME": str(home)}, unset=_HOST_SETTINGS
        )
        try:
            yield Client(url, verbose=False), log, home / ".cache" / "animegan", mirror
        finally:
            stop(proc)


def test_the_app_builds_hayao_and_whitebox_at_first_start(fresh_app, source_files):
    _, log, user_cache, mirror = fresh_app
    for name in ("hayao", "whitebox"):
        style = STYLES[name]
        built = user_cache / style.filename
        assert hashlib.sha256(built.read_bytes()).hexdigest() == style.sha256
        assert (user_cache / style.recipe.source.filename).is_file()
        assert f"/{style.recipe.source.filename}" in mirror.requests
    text = log.read_text()
    assert "built the hayao weights" in text and "built the whitebox weights" in text
    # The .pt styles are not on this mirror: unavailable, with the reason, and no crash.
    assert "style paprika is not installed" in text and "mirror of https://github.com/bryandlee" in text


@pytest.mark.parametrize("style", ["hayao", "whitebox"])
def test_it_stylizes_with_both(fresh_app, unseen_photos, style):
    client, _, _, _ = fresh_app
    photo = unseen_photos[0]
    image_path, badge, info = client.predict(handle_file(str(photo)), style, api_name="/stylize")
    assert info["kind"] == "miss" and info["style"] == style and badge.startswith("generated")
    with Image.open(photo) as source, Image.open(image_path) as result:
        assert result.size == (info["width"], info["height"])
        assert max(result.size) == min(max(source.size), TEST_MAX_SIDE)


def test_the_examples_are_warmed_with_the_built_default_style(fresh_app):
    _, log, _, _ = fresh_app
    text = wait_for_log(log, "warm-up finished")
    assert "examples for style hayao" in text and "0 failed" in text
