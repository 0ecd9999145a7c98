"""Helpers for the service, app and CLI tests: re-encoded photos and a real app process."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
#: The example photos the app offers (and warms its cache with at start).
EXAMPLES = sorted((REPO / "examples").glob("*.jpg"))

#: The model sees at most this side in these tests: real inference, a few tenths of a second.
TEST_MAX_SIDE = 256


def reencode(path: Path, fmt: str, **save_args) -> bytes:
    """The same photo saved again in another format or quality (what users re-upload)."""
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/gradio_api/info", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"app did not come up in {timeout}s:\n{log_path.read_text()[-3000:]}")


def launch_app(
    tmp: Path,
    weights_dir: Path | None,
    *extra: str,
    env: dict | None = None,
    unset: tuple[str, ...] = (),
    prefix: tuple[str, ...] = (),
    cache_dir: Path | None = None,
):
    """Start `python app.py` as a user would; returns (process, url, log path).

    With `weights_dir` the app runs offline on those weights; with None it obtains its
    weights itself, as on a fresh machine. `unset` drops variables of this environment;
    `prefix` runs the command through another (a namespace, say); the cache lives in
    `cache_dir` (default: in `tmp`).
    """
    port = free_port()
    log_path = tmp / f"app-{port}.log"
    command = [
        *prefix,
        sys.executable,
        str(REPO / "app.py"),
        "--port",
        str(port),
        "--max-side",
        str(TEST_MAX_SIDE),
        *extra,
    ]
    if weights_dir is not None:
        command += ["--weights-dir", str(weights_dir), "--offline"]
    if "--cache-dir" not in extra and "--cache-url" not in extra:
        command += ["--cache-dir", str(cache_dir or tmp / "cache")]
    inherited = {key: value for key, value in os.environ.items() if key not in unset}
    full_env = {**inherited, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, log_path)
    except Exception:
        proc.kill()
        raise
    return proc, url, log_path


def wait_for_log(log_path: Path, text: str, timeout: float = 120) -> str:
    """The app's log once it contains `text` (fails the test after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while text not in (content := log_path.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged within {timeout}s:\n{content[-3000:]}")
        time.sleep(0.2)
    return content


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
