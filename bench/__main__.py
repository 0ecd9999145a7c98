"""`make bench` / `python -m bench`: every benchmark, then bench/RESULTS.md.

Every bench/bench_<name>.py (engine, cache, redis, whitebox, store, hostile) is one
benchmark: it runs as its own process (`python -m bench.bench_<name>`) and writes
bench/results/<name>.md. The end-to-end part (the bench/e2e/ package) runs last, then
bench/report.py writes the summary from whatever results exist. `--only e2e,cache` runs a
subset; `--quick` makes the end-to-end part a smoke run. Shared helpers: bench/common.py.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback

from bench.common import REPO
from bench.report import write_results

BENCH = REPO / "bench"
#: The separate benchmarks present, the usual ones first.
_ORDER = ("engine", "cache", "redis", "whitebox")
SEPARATE = tuple(
    sorted(
        (p.stem.removeprefix("bench_") for p in BENCH.glob("bench_*.py")),
        key=lambda name: (_ORDER.index(name) if name in _ORDER else len(_ORDER), name),
    )
)
ALL = (*SEPARATE, "e2e")
#: A stuck benchmark must not hold up the others forever.
SEPARATE_TIMEOUT_S = 900


def run_separate(name: str) -> tuple[str, float]:
    started = time.monotonic()
    print(f"[bench] {name}: python -m bench.bench_{name}", flush=True)
    try:  # `python -m` from the repo root finds the packages there
        done = subprocess.run(
            [sys.executable, "-m", f"bench.bench_{name}"], cwd=REPO, timeout=SEPARATE_TIMEOUT_S
        )
        status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
    except subprocess.TimeoutExpired:
        status = f"stopped after {SEPARATE_TIMEOUT_S} s"
    seconds = time.monotonic() - started
    print(f"[bench] {name}: {status} in {seconds:.0f} s", flush=True)
    return status, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--quick", action="store_true", help="end-to-end part as a smoke run")
    args = parser.parse_args(argv)
    chosen = [name for name in args.only.split(",") if name]
    unknown = set(chosen) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))} (choose from {', '.join(ALL)})")
    statuses: dict[str, tuple[str, float]] = {}
    for name in SEPARATE:
        if name in chosen:
            statuses[name] = run_separate(name)
    if "e2e" in chosen:
        from bench.e2e import run as e2e

        started = time.monotonic()
        try:
            code = e2e.main(["--quick"] if args.quick else [])
        except Exception:
            traceback.print_exc()
            code = 1
        statuses["e2e"] = ("ok" if code == 0 else f"failed (exit {code})", time.monotonic() - started)
    path = write_results(statuses)
    print(f"[bench] wrote {path}")
    return 0 if all(status == "ok" for status, _ in statuses.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
