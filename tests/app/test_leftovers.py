"""The app leaves no temporary files behind: uploads (Gradio's) and served results (ours)
live in folders of its own process, removed when it stops and swept by the next start
after a crash, without touching live processes' or other hosts' folders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from stylize_service.scratch import host_label
from tests.support.app import launch_app, stop

pytestmark = pytest.mark.slow


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def ours(tmp: Path, pid: int) -> list[Path]:
    """The scratch folders process `pid` made: served results and Gradio uploads."""
    return [*tmp.glob(f"animegan-results-*-{pid}-*"), *(tmp / "gradio").glob(f"animegan-*-{pid}-*")]


def stylize_once(url: str, photo: Path) -> None:
    client = Client(url, verbose=False)
    client.predict(handle_file(str(photo)), "hayao", api_name="/stylize")
    client.close()


def test_temporary_folders_go_at_exit_and_after_a_crash(tmp_path, weights_dir, photo_paths):
    tmp = tmp_path / "tmp"
    (tmp / "gradio").mkdir(parents=True)
    host = host_label()
    planted = {  # name -> must it survive the next start?
        f"animegan-results-{host}-{dead_pid()}-0a": False,
        f"gradio/animegan-{host}-{dead_pid()}-0b": False,
        f"animegan-results-{host}-{os.getpid()}-0c": True,  # a live process's
        f"gradio/animegan-other-host-{dead_pid()}-0d": True,  # another container's
        "gradio/someone-elses-upload": True,
    }
    for name in planted:
        (tmp / name).mkdir()
        (tmp / name / "file.png").write_bytes(b"x")
    env = {"TMPDIR": str(tmp), "GRADIO_TEMP_DIR": ""}

    crashed, url, _ = launch_app(tmp_path, weights_dir, env=env)
    try:
        assert {name: (tmp / name).exists() for name in planted} == planted
        stylize_once(url, photo_paths[3])
        left = ours(tmp, crashed.pid)
        assert len(left) == 2 and any(any(p.rglob("*.png")) for p in left)  # uploads and results
    finally:
        crashed.send_signal(signal.SIGKILL)
        crashed.wait()
    assert all(path.exists() for path in left)  # a crash runs no exit handler

    second, url, _ = launch_app(tmp_path, weights_dir, env=env)
    try:
        assert not any(path.exists() for path in left)  # swept at start
        stylize_once(url, photo_paths[3])
        assert len(ours(tmp, second.pid)) == 2
    finally:
        stop(second)  # SIGTERM, as a process manager stops it
    assert second.returncode is not None and not ours(tmp, second.pid)
    assert {name: (tmp / name).exists() for name in planted} == planted
