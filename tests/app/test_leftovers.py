"""The app leaves no temporary files behind: uploads (Gradio's) and served results (ours, among them)
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

from stylize_service.scratch import OWNER_SUFFIX, host_label, owner_of
from tests.support.app import launch_app, stop

pytestmark = pytest.mark.slow


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def ours(tmp: Path, pid: int) -> list[Path]:
    """The scratch folders process `pid` made (Gradio's uploads, and our results in them)."""
    found = list((tmp / "gradio").glob("animegan-*"))
    return [path for path in found if path.is_dir() and (owner_of(path) or ("", 0))[1] == pid]


def plant(tmp: Path, name: str, host: str, pid: int) -> None:
    (tmp / name).mkdir()
    (tmp / name / "file.png").write_bytes(b"x")
    (tmp / (name + OWNER_SUFFIX)).write_text(f"{host} {pid}\n")


def stylize_once(url: str, photo: Path) -> None:
    client = Client(url, verbose=False)
    client.predict(handle_file(str(photo)), "hayao", api_name="/stylize")
    client.close()


def test_temporary_folders_go_at_exit_and_after_a_crash(tmp_path, weights_dir, photo_paths):
    tmp = tmp_path / "tmp"
    (tmp / "gradio").mkdir(parents=True)
    host = host_label()
    owners = {  # name -> (host, pid, must it survive the next start?)
        "gradio/animegan-0b": (host, dead_pid(), False),
        "gradio/animegan-0c": (host, os.getpid(), True),  # a live process's
        "gradio/animegan-0d": ("other-host", dead_pid(), True),  # another container's
    }
    for name, (owner_host, pid, _) in owners.items():
        plant(tmp, name, owner_host, pid)
    (tmp / "gradio/someone-elses-upload").mkdir()
    planted = {name: keep for name, (_, _, keep) in owners.items()} | {"gradio/someone-elses-upload": True}
    env = {"TMPDIR": str(tmp), "GRADIO_TEMP_DIR": ""}

    crashed, url, _ = launch_app(tmp_path, weights_dir, env=env)
    try:
        assert {name: (tmp / name).exists() for name in planted} == planted
        stylize_once(url, photo_paths[3])
        left = ours(tmp, crashed.pid)
        assert len(left) == 1 and any(left[0].rglob("*.png"))  # uploads, and results among them
        assert str(crashed.pid) not in str(left[0])  # visitors see this path: no pid in it
    finally:
        crashed.send_signal(signal.SIGKILL)
        crashed.wait()
    assert all(path.exists() for path in left)  # a crash runs no exit handler

    second, url, _ = launch_app(tmp_path, weights_dir, env=env)
    try:
        assert not any(path.exists() for path in left)  # swept at start
        stylize_once(url, photo_paths[3])
        assert len(ours(tmp, second.pid)) == 1
    finally:
        stop(second)  # SIGTERM, as a process manager stops it
    assert second.returncode is not None and not ours(tmp, second.pid)
    assert {name: (tmp / name).exists() for name in planted} == planted
