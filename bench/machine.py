"""The machine a benchmark ran on, for every results file: numbers mean little without it."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict:
    flags = ""
    try:
        flags = next(l for l in open("/proc/cpuinfo", encoding="utf-8") if l.startswith("flags"))
    except (OSError, StopIteration):
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": round(_ram_gib() or 0, 1),
        "isa": ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f" {f}" in flags),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "gradio": _version("gradio"),
        "gradio_client": _version("gradio_client"),
        "pillow": _version("pillow"),
        "numpy": _version("numpy"),
        "imagehash": _version("imagehash"),
        "diskcache": _version("diskcache"),
    }
