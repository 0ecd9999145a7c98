"""End-to-end benchmark and load test of the app: runs the parts, writes the results.

Parts (each bounded in count and time; servers only on 127.0.0.1, always stopped):

* latency: round trip per outcome through the real app next to a no-op Gradio app, and
  identical uploads from 8 clients at once (bench/e2e/latency.py);
* load: hit latency while clients keep the model busy, idle vs busy (bench/e2e/load.py);
* mixed: 16 clients x 20 mixed requests, every answer checked (bench/e2e/load.py);
* replay: the seed's replay workload in process, no cache vs gr.cache vs seed-style vs
  ours, with look-alikes and a restart (bench/e2e/replay.py);
* curves: look-up time vs entries and recall / false hits vs threshold (bench/e2e/curves.py).

Run: ``python -m bench.e2e [--parts latency,load,...] [--quick]``; `python -m bench` runs it
with the other benchmarks. Writes bench/results/e2e.{json,md} and e2e_*.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import RESULTS, machine_info, photo_paths, weights_dir

PARTS = ("latency", "load", "mixed", "replay", "curves")
#: Run only when asked (`--parts load_one_thread`): the load test with the app under
#: OMP_NUM_THREADS=1, to see whether leaving a core to the web server helps hits.
OPTIONAL = ("load_one_thread",)


@dataclass(frozen=True)
class Plan:
    """How much of everything: the full run, or a quick smoke run of the same code."""

    latency_repeats: int = 40
    burst_clients: int = 8
    hits_per_client: int = 30
    load_clients: int = 4
    mixed_clients: int = 16
    mixed_per_client: int = 20
    replay_photos: int = 6
    scan_sizes: tuple[int, ...] = (100, 1_000, 10_000)
    sweep_photos: int = 20


QUICK = Plan(
    latency_repeats=8,
    hits_per_client=8,
    mixed_clients=4,
    mixed_per_client=5,
    replay_photos=2,
    scan_sizes=(100, 1_000),
    sweep_photos=4,
)


def pick(photos: list[Path], prefix: str, count: int, skip: int = 0) -> list[Path]:
    chosen = [p for p in photos if p.name.startswith(prefix)][skip : skip + count]
    if len(chosen) < count:
        raise SystemExit(f"need {count + skip} photos named {prefix}* in the photos folder")
    return chosen


def run_parts(parts: list[str], plan: Plan) -> dict:
    from bench.e2e import curves, latency, load, replay

    photos = photo_paths()
    weights = weights_dir()
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    faces, scenes = "face_", "scene_animeganv3_"
    # Two thirds portraits (small), one third 1024 px scenes: the model's cost spans both.
    scene_count = max(1, plan.replay_photos // 3)
    replay_photos = pick(photos, faces, plan.replay_photos - scene_count) + pick(
        photos, scenes, scene_count, skip=6
    )

    def under_load(env: dict[str, str] | None) -> dict:
        return load.hits_under_load(
            work,
            weights,
            pick(photos, faces, 6),
            pick(photos, faces, 10, skip=6) + pick(photos, scenes, 6),
            hit_clients=2,
            load_clients=plan.load_clients,
            hits_per_client=plan.hits_per_client,
            env=env,
        )

    jobs: dict[str, Callable[[], dict]] = {
        "latency": lambda: latency.latency_per_outcome(
            work,
            weights,
            pick(photos, scenes, 6),
            plan.latency_repeats,
            pick(photos, "scene_bryandlee_", 3),
            plan.burst_clients,
        ),
        "load": lambda: under_load(None),
        "load_one_thread": lambda: under_load({"OMP_NUM_THREADS": "1"}),
        "mixed": lambda: load.mixed_clients(
            work, weights, pick(photos, faces, 8), plan.mixed_clients, plan.mixed_per_client
        ),
        "replay": lambda: replay.measure(replay_photos, replay_photos, _default_max_side(), weights),
        "curves": lambda: {
            "scan": curves.scan_time(list(plan.scan_sizes)),
            "sweep": curves.threshold_sweep(
                photos[:: max(1, len(photos) // plan.sweep_photos)], list(range(17)), _default_max_side()
            ),
        },
    }
    results: dict = {"machine": machine_info(), "runs": {}}
    try:
        for part in parts:
            started, load_before = time.monotonic(), os.getloadavg()[0]
            print(f"[e2e] {part} ...", flush=True)
            results[part] = jobs[part]()
            seconds = time.monotonic() - started
            results["runs"][part] = {
                "seconds": seconds,
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "quick": plan == QUICK,
                "plan": plan.__dict__,
                "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            }
            print(f"[e2e] {part} done in {seconds:.0f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _default_max_side() -> int:
    from animegan.intake import DEFAULT_MAX_SIDE

    return DEFAULT_MAX_SIDE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.e2e", description="End-to-end benchmark and load test of the app."
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated subset of {','.join(PARTS + OPTIONAL)} (default: all but the last)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small smoke run of the same code (numbers not meaningful)"
    )
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS + OPTIONAL)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    results = run_parts(parts, QUICK if args.quick else Plan())
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "e2e.json"
    # The parts not run this time keep their last results, each marked with its own date.
    previous = json.loads(path.read_text()) if path.exists() else {}
    merged = {**previous, **results, "runs": {**previous.get("runs", {}), **results["runs"]}}
    path.write_text(json.dumps(merged, indent=1, default=str))
    from bench.e2e.markdown import write_markdown
    from bench.e2e.plots import write_plots

    write_plots(merged, RESULTS)
    write_markdown(merged, RESULTS / "e2e.md")
    print(f"[e2e] wrote {RESULTS / 'e2e.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
