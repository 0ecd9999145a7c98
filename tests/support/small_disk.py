"""A small file system of its own for a child process: a tmpfs in a private mount namespace.

Running out of disk cannot be tested on the machine's real disk, and mounting a tmpfs for
the whole machine needs root and outlives a crashed test. `unshare --user --mount` gives
the child process a mount namespace of its own, as an unprivileged user too, where it
mounts a tmpfs of a chosen size; the mount goes when the child exits.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

_SCRIPT = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'


def tmpfs_prefix(mount: Path, size: str) -> tuple[str, ...]:
    """A command prefix that runs the command with a tmpfs of `size` (e.g. "64m") mounted
    at `mount` (an existing, empty folder); fails the test where that is impossible."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("these tests need `unshare` (util-linux) to mount a small file system")
    prefix = (unshare, "--user", "--map-root-user", "--mount", "sh", "-c", _SCRIPT, "sh", size, str(mount))
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs in a user and mount namespace here: {probe.stderr.strip()}")
    return prefix
