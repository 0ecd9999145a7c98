"""A full disk, for real: on an 8 MB file system of its own, the cache keeps a free-space
reserve, still serves what it holds when not a byte is left, makes room for new results by
evicting, retries a write the disk refused, and recovers once space is back.

The scenario (`full_disk.py`) runs in a child in a private mount namespace, where it mounts
a tmpfs: `unshare -rm` (a user namespace: no root needed where the kernel allows them), or,
as root, `unshare -m`. If neither can mount, the test fails and says why: it never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MOUNT_FAILED = 97
SIZE = 300_000


def run_on_a_tiny_file_system(mountpoint: Path) -> dict:
    mountpoint.mkdir()
    script = (
        f"mount -t tmpfs -o size=8m tmpfs '{mountpoint}' || exit {MOUNT_FAILED}; "
        f"exec '{sys.executable}' -m tests.cache.full_disk '{mountpoint}'"
    )
    ways = [["unshare", "-rm", "sh", "-c", script]]
    if os.geteuid() == 0:
        ways.append(["unshare", "-m", "sh", "-c", script])
    if not shutil.which("unshare"):
        pytest.fail("the full-disk test needs unshare (util-linux) to mount a tiny file system")
    why = []
    for argv in ways:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
        setup_failed = done.returncode == MOUNT_FAILED or done.stderr.startswith("unshare:")
        if not setup_failed:
            assert done.returncode == 0, f"the scenario failed:\n{done.stderr[-3000:]}"
            return json.loads(done.stdout.strip().splitlines()[-1])
        why.append(f"{' '.join(argv[:2])}: {done.stderr.strip()[-300:] or f'exit {done.returncode}'}")
    pytest.fail(
        "cannot mount a tiny file system for the full-disk test ("
        + "; ".join(why)
        + "). Run it as root, or where user namespaces are allowed (kernel.unprivileged_userns_clone=1)."
    )


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_on_a_tiny_file_system(tmp_path_factory.mktemp("full_disk") / "tiny")


def test_the_cache_leaves_the_file_system_its_reserve(seen: dict) -> None:
    """Its budget (64 MB) is larger than the file system (8 MB): the reserve is what binds."""
    fill = seen["fill"]
    assert fill["lowest_free"] >= seen["reserve"]
    assert fill["latest_kept"] and fill["kept"] * SIZE >= 0.75 * (8 << 20)  # and the rest is used


def test_a_full_disk_still_serves_every_stored_result(seen: dict) -> None:
    full = seen["full"]
    assert full["free_at_start"] == 0
    assert full["touch_refused"]  # recording the hits was a write the disk refused...
    assert full["served"] == full["stored_served"] > 0  # ...and every hit was served all the same
    assert full["healthy"]


def test_a_full_disk_makes_room_for_new_results_and_keeps_its_reserve(seen: dict) -> None:
    full = seen["full"]
    assert full["new_served"] and full["miss"] == "miss" and full["miss_served"]
    assert full["free_after"] >= seen["reserve"]


def test_a_write_the_disk_refused_evicts_and_succeeds_on_its_retry(seen: dict) -> None:
    assert seen["refused"] == {"retried": 1, "served": True}


def test_the_cache_recovers_once_space_is_back(seen: dict) -> None:
    recovered = seen["recovered"]
    assert recovered["served"] == recovered["of"]
    assert seen["store"]["values"] > recovered["values_while_full"]
    assert seen["store"]["values"] == seen["store"]["rows"] == seen["store"]["aliases"]  # and consistent
