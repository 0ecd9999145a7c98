"""Weights files: where they are looked up, how they are downloaded (through a real HTTP
server on 127.0.0.1, so the real urllib/tqdm/rename code runs), and that a bad file is
refused without ever being unpickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import socket
import zipfile
from pathlib import Path

import pytest
import torch

from animegan.errors import (
    ChecksumMismatchError,
    WeightsCorruptError,
    WeightsNotFoundError,
)
from animegan.styles import STYLES, Style
from animegan.weights import (
    ENV_MIRROR,
    ENV_WEIGHTS_DIR,
    available_styles,
    download_weights,
    ensure_weights,
    find_weights,
    read_weights,
    search_dirs,
)

pytestmark = pytest.mark.provisioning

HAYAO = STYLES["hayao"]
# A downloadable style whose file is not in the shared weights folder.
PAPRIKA = STYLES["paprika"]


def tensors_file(**tensors: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


def files_in(directory: Path) -> list[str]:
    """Everything in ``directory``, hidden temporary files included."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty look-up places: an explicit dir, ./weights (in a fresh cwd), the user cache."""
    cwd, cache = tmp_path / "cwd", tmp_path / "xdg"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv(ENV_WEIGHTS_DIR, raising=False)
    monkeypatch.delenv(ENV_MIRROR, raising=False)
    return {
        "explicit": tmp_path / "explicit",
        "local": cwd / "weights",
        "cache": cache / "animegan",
    }


@pytest.fixture(scope="module")
def hayao_bytes(weights_dir: Path) -> bytes:
    return (weights_dir / HAYAO.filename).read_bytes()


def downloadable(url: str, sha256: str | None) -> Style:
    return dataclasses.replace(PAPRIKA, url=url, sha256=sha256)


# -- look-up -------------------------------------------------------------------------------


def test_lookup_order_explicit_then_local_then_user_cache(places, monkeypatch):
    style = PAPRIKA
    for place in places.values():
        place.mkdir(parents=True)
        (place / style.filename).write_bytes(b"x")
    explicit = places["explicit"]
    assert search_dirs(explicit) == [explicit, Path("weights"), places["cache"]]
    assert find_weights(style, explicit) == explicit / style.filename
    (explicit / style.filename).unlink()
    assert find_weights(style, explicit).resolve() == places["local"] / style.filename
    (places["local"] / style.filename).unlink()
    assert find_weights(style, explicit) == places["cache"] / style.filename
    (places["cache"] / style.filename).unlink()
    assert find_weights(style, explicit) is None


def test_environment_variable_is_the_default_explicit_dir(places, monkeypatch, tmp_path):
    style = PAPRIKA
    env_dir, arg_dir = tmp_path / "from_env", tmp_path / "from_arg"
    for d in (env_dir, arg_dir, places["local"]):
        d.mkdir(parents=True)
        (d / style.filename).write_bytes(b"x")
    monkeypatch.setenv(ENV_WEIGHTS_DIR, str(env_dir))
    assert find_weights(style) == env_dir / style.filename
    assert find_weights(style, arg_dir) == arg_dir / style.filename  # the argument wins


def test_available_styles_lists_present_files_only(places, weights_dir):
    names = {style.name for style in available_styles(weights_dir)}
    assert names == {"hayao", "whitebox"}  # the two files in the shared folder
    assert available_styles(places["explicit"]) == []


def test_missing_file_offline_says_which_file_and_where(places):
    with pytest.raises(WeightsNotFoundError) as info:
        ensure_weights(PAPRIKA, places["explicit"], allow_download=False)
    message = str(info.value)
    assert PAPRIKA.filename in message and PAPRIKA.url in message
    for place in (places["explicit"], Path("weights"), places["cache"]):
        assert str(place) in message
    assert ENV_WEIGHTS_DIR in message
    assert all(not place.exists() for place in places.values())  # nothing created


def test_a_style_without_url_or_recipe_is_not_found_even_online(places):
    by_hand = dataclasses.replace(HAYAO, recipe=None)
    with pytest.raises(WeightsNotFoundError) as info:
        ensure_weights(by_hand, places["explicit"], allow_download=True)
    assert HAYAO.filename in str(info.value) and "download it from" not in str(info.value)


# -- download ------------------------------------------------------------------------------


def test_download_verifies_renames_and_shows_progress(places, server, hayao_bytes, capsys):
    style = downloadable(server.serve("/w.pt", hayao_bytes), HAYAO.sha256)
    path = ensure_weights(style, places["explicit"])
    assert path == places["explicit"] / style.filename
    assert path.read_bytes() == hayao_bytes
    assert files_in(places["explicit"]) == [style.filename]  # no temporary file left
    progress = capsys.readouterr().err
    assert style.filename in progress and "100%" in progress and "8.60M" in progress
    assert ensure_weights(style, places["explicit"]) == path
    assert server.requests == ["/w.pt"]  # found the second time, not fetched again


def test_download_without_explicit_dir_goes_to_the_user_cache(places, server):
    body = tensors_file(w=torch.ones(3))
    style = downloadable(server.serve("/small.pt", body), hashlib.sha256(body).hexdigest())
    path = ensure_weights(style)
    assert path == places["cache"] / style.filename and path.read_bytes() == body
    assert not places["local"].exists()


def test_checksum_mismatch_is_refused_and_nothing_kept(places, server, hayao_bytes):
    style = downloadable(server.serve("/w.pt", hayao_bytes), "0" * 64)
    with pytest.raises(ChecksumMismatchError) as info:
        download_weights(style, places["explicit"])
    assert HAYAO.sha256 in str(info.value) and "0" * 64 in str(info.value)
    assert files_in(places["explicit"]) == []


@pytest.mark.parametrize("behaviour", ["short", "chunked_cut"])
def test_a_transfer_cut_short_leaves_nothing(places, server, behaviour):
    body = tensors_file(w=torch.arange(50_000.0))
    # No checksum recorded (like the upstream styles): only the transfer itself can tell.
    style = downloadable(server.serve("/cut.pt", body, behaviour), None)
    with pytest.raises(WeightsNotFoundError) as info:
        download_weights(style, places["explicit"])
    assert "/cut.pt" in str(info.value)
    assert files_in(places["explicit"]) == []


def test_an_error_page_is_not_kept_as_weights(places, server):
    page = b"<html><body>Rate limit exceeded</body></html>"
    style = downloadable(server.serve("/page.pt", page), None)
    with pytest.raises(WeightsCorruptError) as info:
        download_weights(style, places["explicit"])
    assert "error page" in str(info.value) and ".part" not in str(info.value)
    assert files_in(places["explicit"]) == []


def test_http_404_is_a_clear_error(places, server):
    style = downloadable(server.url("/nothing-here.pt"), None)
    with pytest.raises(WeightsNotFoundError) as info:
        ensure_weights(style, places["explicit"])
    assert "(HTTP 404 Not Found)" in str(info.value) and style.filename in str(info.value)
    assert files_in(places["explicit"]) == []


def test_unreachable_server_is_a_clear_error(places):
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    style = downloadable(f"http://127.0.0.1:{port}/w.pt", None)
    with pytest.raises(WeightsNotFoundError) as info:
        ensure_weights(style, places["explicit"])
    message = str(info.value)
    assert "Could not download" in message and f":{port}/w.pt" in message
    assert "(connection refused)" in message and str(places["explicit"]) in message
    assert "Errno" not in message
    assert files_in(places["explicit"]) == []


def test_an_interrupted_download_leaves_no_partial_file(places, server, monkeypatch):
    import tqdm

    class Interrupting(tqdm.tqdm):
        def update(self, n: float | None = 1) -> bool | None:
            raise KeyboardInterrupt  # the user presses Ctrl-C after the first chunk

    monkeypatch.setattr(tqdm, "tqdm", Interrupting)
    body = tensors_file(w=torch.arange(100_000.0))
    style = downloadable(server.serve("/w.pt", body), None)
    with pytest.raises(KeyboardInterrupt):
        download_weights(style, places["explicit"])
    assert files_in(places["explicit"]) == []


def test_a_downloadable_style_loads_on_first_use(places, server, hayao_bytes, monkeypatch):
    from animegan.inference import load_stylizer

    style = downloadable(server.serve("/paprika.pt", hayao_bytes), HAYAO.sha256)
    monkeypatch.setitem(STYLES, style.name, style)
    stylizer = load_stylizer(style.name, places["explicit"], precision="fp32", device="cpu")
    assert stylizer.style is style and stylizer.weights_sha256 == HAYAO.sha256
    assert (places["explicit"] / style.filename).is_file()


# -- reading -------------------------------------------------------------------------------


def test_read_weights_exposes_the_files_sha256(weights_dir):
    path = weights_dir / HAYAO.filename
    loaded = read_weights(path, HAYAO.sha256)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == HAYAO.sha256
    assert loaded.path == path and len(loaded.state_dict) == 77
    assert all(t.dtype == torch.float32 for t in loaded.state_dict.values())
    with pytest.raises(ChecksumMismatchError):
        read_weights(path, "f" * 64)


class Payload:
    """A pickle that runs code when loaded the unsafe way: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_with_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": Payload(marker)}, path)
    with pytest.raises(WeightsCorruptError):
        read_weights(path)
    assert not marker.exists()  # an unsafe load of this file would have created it


def saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def a_zip_that_is_not_torch() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.txt", "hello")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content",
    ["empty", "truncated", "garbage", "lfs pointer", "zip", "not tensors", "nested", "list"],
)
def test_unusable_files_are_weights_corrupt_errors(tmp_path, hayao_bytes, content):
    data = {
        "empty": lambda: b"",
        "truncated": lambda: hayao_bytes[: len(hayao_bytes) // 2],
        "garbage": lambda: bytes(range(256)) * 64,
        "lfs pointer": lambda: b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n",
        "zip": a_zip_that_is_not_torch,
        "not tensors": lambda: saved({"w": 1}),
        "nested": lambda: saved({"state_dict": {"w": torch.zeros(2)}}),
        "list": lambda: saved([torch.zeros(2)]),
    }[content]()
    path = tmp_path / "bad.pt"
    path.write_bytes(data)
    with pytest.raises(WeightsCorruptError) as info:
        read_weights(path)
    assert str(path) in str(info.value) and "replace it" in str(info.value).lower()


# -- mirror ----------------------------------------------------------------------------------


def test_a_mirror_serves_the_upstream_file_name(places, server, hayao_bytes, monkeypatch):
    """Every download fetches <mirror>/<file name of the upstream URL> instead."""
    server.serve("/mirror/animegan2/paprika.pt", hayao_bytes)
    style = downloadable("https://upstream.invalid/weights/paprika.pt?raw=1", HAYAO.sha256)
    path = ensure_weights(style, places["explicit"], mirror=server.url("/mirror/animegan2/"))
    assert path.read_bytes() == hayao_bytes
    assert server.requests == ["/mirror/animegan2/paprika.pt"]

    # The environment variable does the same when no mirror is passed.
    path.unlink()
    monkeypatch.setenv(ENV_MIRROR, server.url("/mirror/animegan2"))
    assert ensure_weights(style, places["explicit"]).read_bytes() == hayao_bytes
    assert server.requests[1:] == ["/mirror/animegan2/paprika.pt"]


def test_a_mirror_without_the_file_names_both_urls(places, server):
    style = downloadable("https://upstream.invalid/weights/paprika.pt", None)
    with pytest.raises(WeightsNotFoundError) as info:
        ensure_weights(style, places["explicit"], mirror=server.url(""))
    message = str(info.value)
    assert f"{server.url('/paprika.pt')} (mirror of {style.url})" in message
    assert "(HTTP 404 Not Found)" in message
    assert files_in(places["explicit"]) == []


def test_a_mirror_cannot_substitute_another_file(places, server, hayao_bytes):
    server.serve("/paprika.pt", hayao_bytes.replace(b"block_a", b"block_z", 1))
    style = downloadable("https://upstream.invalid/weights/paprika.pt", HAYAO.sha256)
    with pytest.raises(ChecksumMismatchError):
        ensure_weights(style, places["explicit"], mirror=server.url("/"))
    assert files_in(places["explicit"]) == []
