"""requirements.txt (what a Hugging Face Space installs) must list pyproject.toml's dependencies.

Run by `make lint`: exits 1 and names the differences when the two files disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent


def requirement_lines(path: Path) -> set[str]:
    lines = set()
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.add(line.replace(" ", ""))
    return lines


def main() -> int:
    declared = {
        dep.replace(" ", "")
        for dep in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    listed = requirement_lines(REPO / "requirements.txt")
    if declared == listed:
        return 0
    for name in sorted(declared - listed):
        print(f"requirements.txt lacks {name} (in pyproject.toml)")
    for name in sorted(listed - declared):
        print(f"pyproject.toml lacks {name} (in requirements.txt)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
