"""Install PyTorch's CPU build on a machine without an NVIDIA GPU, before requirements.txt.

A plain `pip install torch==X` on Linux resolves to the CUDA build: about 2.5 GB of torch,
triton and seventeen nvidia-* packages, for a demo that runs on the CPU. PyTorch publishes
CPU-only wheels (about 200 MB) on its own index; this installs the pinned version from
there, so that `pip install -r requirements.txt` afterwards finds torch satisfied
(`2.13.0+cpu` is a `2.13.0`). Where that index cannot be reached within a few seconds (no
internet, a registry mirror only), or a GPU is present, it does nothing and says so, and
requirements.txt installs torch as pip resolves it.

Run by the Makefile with the venv's Python: `python scripts/install_torch.py`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

INDEX = os.environ.get("TORCH_CPU_INDEX", "https://download.pytorch.org/whl/cpu")
PROBE_TIMEOUT_S = 4.0
REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"


def pinned_torch() -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        found = re.match(r"\s*(torch==[\w.+]+)", line)
        if found:
            return found.group(1)
    raise SystemExit("requirements.txt pins no torch version")


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/torch/", timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def main() -> int:
    requirement = pinned_torch()
    if shutil.which("nvidia-smi"):
        print(f"an NVIDIA GPU driver is present: {requirement} comes from the default index (CUDA build)")
        return 0
    if not reachable(INDEX):
        print(f"PyTorch's CPU index ({INDEX}) cannot be reached: {requirement} comes from the default index")
        return 0
    print(f"installing {requirement} (CPU build) from {INDEX}")
    return subprocess.call([sys.executable, "-m", "pip", "install", "-q", "--index-url", INDEX, requirement])


if __name__ == "__main__":
    sys.exit(main())
