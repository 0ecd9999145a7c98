"""What every benchmark shares: photos and weights, uploads, the machine, timing, tables.

Numbers mean little without the machine they came from, and nothing on a shared 2-core
box holds still, so every results file names the machine (`machine_line`) and every goal
compares numbers measured in the same run, round-robin where it can (`round_robin`).
"""

from __future__ import annotations

import io
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from cache_store import Fingerprint
from cache_store.signature import SIZE as SIGNATURE_SIZE

T = TypeVar("T")
K = TypeVar("K")

REPO = Path(__file__).resolve().parents[1]
#: Where every benchmark writes its results (bench/RESULTS.md quotes them).
RESULTS = REPO / "bench" / "results"
#: Real weights and photos next to the checkout, as for the tests (never copied into it).
SHARED = REPO.parent / "shared"


# -- where the photos and weights are ---------------------------------------------------------


def weights_dir() -> Path:
    """$ANIMEGAN_WEIGHTS_DIR, else ../shared/weights."""
    return Path(os.environ.get("ANIMEGAN_WEIGHTS_DIR") or SHARED / "weights").resolve()


def photos_dir() -> Path:
    """$ANIMEGAN_PHOTOS_DIR, else ../shared/photos."""
    return Path(os.environ.get("ANIMEGAN_PHOTOS_DIR") or SHARED / "photos").resolve()


def photo_paths() -> list[Path]:
    """The photos (*.jpg), sorted by name; stops the benchmark with a clear message if none."""
    folder = photos_dir()
    paths = sorted(folder.glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no photos in {folder}: set ANIMEGAN_PHOTOS_DIR")
    return paths


# -- uploads and entries ----------------------------------------------------------------------


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    """`image` saved as `fmt` (an upload, or a stored result), in memory."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def filler_fingerprint(rng: np.random.Generator, like: Fingerprint | None = None) -> Fingerprint:
    """An entry to fill a cache with: random keys and pHash (a random hash is ~32 bits from
    any other, never within a threshold). `like` lends it a real signature and tolerances, so
    that a query with `like`'s signature verifies against it; without, its signature is
    random bytes and it is found by its keys only."""
    phash = int(rng.integers(0, 2**64, dtype=np.uint64))
    raw_sha, pixel_sha = rng.bytes(32).hex(), rng.bytes(32).hex()
    if like is None:
        like = Fingerprint(phash, rng.bytes(SIGNATURE_SIZE), width=768, height=512, has_alpha=False)
    return replace(like, phash=phash, raw_sha=raw_sha, pixel_sha=pixel_sha)


# -- the machine ------------------------------------------------------------------------------


def _proc(name: str, prefix: str) -> str | None:
    """The first line of /proc/<name> that starts with `prefix` (None where there is none)."""
    try:
        with open(f"/proc/{name}", encoding="utf-8") as lines:
            return next((line for line in lines if line.startswith(prefix)), None)
    except OSError:
        return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict:
    """The machine and the versions that move the numbers, as a JSON-able dict."""
    model = _proc("cpuinfo", "model name")
    memory = _proc("meminfo", "MemTotal:")
    flags = _proc("cpuinfo", "flags") or ""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": model.split(":", 1)[1].strip() if model else platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": round(int(memory.split()[1]) / 2**20, 1) if memory else 0.0,
        "isa": ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f" {f}" in flags),
        "os": platform.platform(),
        "python": platform.python_version(),
        **{
            key: _version(package)
            for key, package in (
                ("torch", "torch"),
                ("gradio", "gradio"),
                ("gradio_client", "gradio_client"),
                ("pillow", "pillow"),
                ("numpy", "numpy"),
                ("imagehash", "imagehash"),
                ("diskcache", "diskcache"),
            )
        },
    }


def machine_line(m: Mapping[str, object] | None = None) -> str:
    """`machine_info()` (or a stored copy of it) as the one line every results file starts with."""
    m = m if m is not None else machine_info()
    return (
        f"{m['cpu']}, {m['cores']} cores ({m.get('isa') or 'baseline ISA'}), {m['ram_gib']} GiB RAM, "
        f"{m['os']}; Python {m['python']}, torch {m['torch']}, gradio {m['gradio']} "
        f"(client {m['gradio_client']}), Pillow {m['pillow']}, numpy {m['numpy']}; {m['date']}"
    )


# -- timing -----------------------------------------------------------------------------------


def timed(action: Callable[[], object], repeat: int = 1) -> list[float]:
    """Milliseconds of each of `repeat` calls of `action`."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def clocked(action: Callable[[], T]) -> tuple[float, T]:
    """Seconds one call of `action` took, and what it returned."""
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def round_robin(
    actions: Mapping[K, Callable[[], object]], rounds: int, calls: int = 1
) -> dict[K, list[float]]:
    """Milliseconds per call of each action: `rounds` rounds, each running every action
    `calls` times in turn, so a burst of load from elsewhere on the box falls on all alike."""
    samples: dict[K, list[float]] = {name: [] for name in actions}
    for _ in range(rounds):
        for name, action in actions.items():
            started = time.perf_counter()
            for _ in range(calls):
                action()
            samples[name].append((time.perf_counter() - started) * 1000 / calls)
    return samples


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: a value that was measured, for the small samples taken here."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(values: Sequence[float]) -> dict:
    """n, median, p95, mean and min of latencies in ms (an empty sample: n = 0 only)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": percentile(values, 95),
        "mean": statistics.fmean(values),
        "min": min(values),
    }


# -- results files ----------------------------------------------------------------------------


def table(header: str | Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    """A Markdown table. `header` is the column names, or one string of them separated by
    "|"; `align` has one letter per column, "l" (the default) or "r"."""
    if isinstance(header, str):
        header = [name.strip() for name in header.split("|")]
    align = align.ljust(len(header), "l")
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align)
    return [_row(header), rule, *map(_row, rows)]


def _row(cells: Sequence[object]) -> str:
    return "|" + "|".join(f" {cell} " if cell != "" else " " for cell in cells) + "|"


def write_result(name: str, text: str) -> Path:
    """bench/results/<name>, written whole."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text, encoding="utf-8")
    return path
