"""The real app under load: hits while the model is busy, and many clients at once.

Both tests run the app with a small model input (--max-side 256) so that a miss costs a
few tenths of a second and the whole run takes a couple of minutes. Every loop is bounded
by a count and a deadline, and every call by a timeout (bench/e2e/apps.py).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import summary
from bench.e2e import workloads
from bench.e2e.apps import Call, call, client, noop_app, real_app

LOAD_MAX_SIDE = "256"
LOAD_DEADLINE_S = 120.0


def _run_all(workers: list[threading.Thread], timeout: float) -> None:
    for w in workers:
        w.start()
    deadline = time.monotonic() + timeout
    for w in workers:
        w.join(timeout=max(0.0, deadline - time.monotonic()))


def hits_under_load(
    work: Path,
    weights_dir: Path,
    cached: list[Path],
    load_pool: list[Path],
    hit_clients: int,
    load_clients: int,
    hits_per_client: int,
    rounds: int = 3,
    env: dict[str, str] | None = None,
) -> dict:
    """p50/p95 of hits (exact re-uploads and new re-encodes of cached photos), idle vs busy model.

    Idle and busy phases alternate `rounds` times, so drift in the machine's other load
    falls on both alike; each phase sends `hits_per_client // rounds` hits per client.
    `env` goes to the app (e.g. OMP_NUM_THREADS, which the engine honours).
    """
    per_phase = max(1, hits_per_client // rounds)
    uploads = work / "uploads-load"
    needed = -(-hit_clients * rounds * 2 * per_phase // len(cached))  # new re-encodes per photo, rounded up
    copies = [
        workloads.write(workloads.jpeg_quality_copies(p, range(95, 95 - needed, -1)), uploads) for p in cached
    ]
    fresh = iter([path for round_ in zip(*copies, strict=True) for path in round_])

    def hit_plan() -> list[Path]:  # alternately a byte-identical re-upload and a new re-encode
        return [cached[i % len(cached)] if i % 2 == 0 else next(fresh) for i in range(per_phase)]

    new_pictures = iter(workloads.write(workloads.distinct_pictures(load_pool), uploads))
    used: list[Path] = []
    regenerated = itertools.count()
    lock = threading.Lock()

    def next_load() -> tuple[Path, str]:
        """A new picture (a miss that queues), or once they run out, Regenerate of a used one."""
        with lock:
            path = next(new_pictures, None)
            if path is not None:
                used.append(path)
                return path, "/stylize"
            return used[next(regenerated) % len(used)], "/regenerate"

    def keep_busy(user, stop: threading.Event, round_calls: list[Call]) -> None:
        """Keep the model busy with new pictures until `stop` (or the deadline)."""
        deadline = time.monotonic() + LOAD_DEADLINE_S
        for _ in range(1_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            path, api = next_load()
            record = call(user, path, "load", api_name=api)
            with lock:
                round_calls.append(record)

    idle: list[Call] = []
    busy: list[Call] = []
    load_calls: list[Call] = []
    windows: list[tuple[float, float]] = []
    with real_app(work, weights_dir, "--max-side", LOAD_MAX_SIDE, env=env) as app, noop_app(work) as floor:
        hitters = [(client(app.url), client(floor.url)) for _ in range(hit_clients)]
        loaders = [client(app.url) for _ in range(load_clients)]
        warm = [call(hitters[0][0], p, "warm") for p in cached]
        for _ in range(rounds):
            idle += _hit_phase(hitters, [hit_plan() for _ in hitters])
            stop = threading.Event()
            round_calls: list[Call] = []

            threads = [
                threading.Thread(target=keep_busy, args=(u, stop, round_calls), daemon=True) for u in loaders
            ]
            for t in threads:
                t.start()
            # Once a load call has come back, the model is running with misses queued.
            _wait_for(lambda started=round_calls: len(started) >= 1, timeout=60)
            window_start = time.monotonic()
            busy += _hit_phase(hitters, [hit_plan() for _ in hitters])
            windows.append((window_start, time.monotonic()))
            stop.set()
            for t in threads:  # the next idle phase starts with an empty queue
                t.join(timeout=LOAD_DEADLINE_S)
            load_calls += round_calls

    def in_windows(c: Call) -> bool:
        return any(c.sent < end and c.received > start for start, end in windows)

    in_window = [c for c in load_calls if in_windows(c)]
    idle_ms = [c.ms for c in idle if c.kind in ("exact", "fuzzy")]
    busy_ms = [c.ms for c in busy if c.kind in ("exact", "fuzzy")]
    noop_idle = summary([c.ms for c in idle if c.label == "noop" and not c.error])
    noop_busy = summary([c.ms for c in busy if c.label == "noop" and not c.error])
    report = {
        "hit_clients": hit_clients,
        "load_clients": load_clients,
        "rounds": rounds,
        "env": env or {},
        "warm_kinds": _kinds(warm),
        "idle": {"all": summary(idle_ms), **_per_kind(idle), "kinds": _kinds(idle), "noop": noop_idle},
        "busy": {"all": summary(busy_ms), **_per_kind(busy), "kinds": _kinds(busy), "noop": noop_busy},
        "load_calls_in_window": len(in_window),
        "load_kinds_in_window": _kinds(in_window),
        "model_runs_finished_in_window": sum(
            1 for c in load_calls if c.kind == "miss" and any(s < c.received < e for s, e in windows)
        ),
        "window_s": sum(e - s for s, e in windows),
        "errors": [c.error for c in idle + busy + load_calls if c.error],
    }
    if idle_ms and busy_ms:
        report["p95_busy_vs_idle"] = report["busy"]["all"]["p95"] / report["idle"]["all"]["p95"]
        report["p50_busy_vs_idle"] = report["busy"]["all"]["median"] / report["idle"]["all"]["median"]
    if noop_idle.get("n") and noop_busy.get("n"):
        report["noop_p95_busy_vs_idle"] = noop_busy["p95"] / noop_idle["p95"]
    return report


def _wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def _hit_phase(users: list[tuple], plans: list[list[Path]]) -> list[Call]:
    """Each user sends its plan: every hit followed by the same upload to the no-op app.

    The no-op calls are the control: they show how much of a slowdown any Gradio app
    on this machine suffers while the model is busy.
    """
    calls: list[Call] = []
    lock = threading.Lock()

    def run(user: tuple, plan: list[Path]) -> None:
        real, floor = user
        for path in plan:
            records = [call(real, path, "hit"), call(floor, path, "noop")]
            with lock:
                calls.extend(records)

    _run_all(
        [threading.Thread(target=run, args=(u, p), daemon=True) for u, p in zip(users, plans, strict=True)],
        timeout=LOAD_DEADLINE_S,
    )
    return calls


def _kinds(calls: list[Call]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in calls:
        key = c.kind or "error"
        out[key] = out.get(key, 0) + 1
    return out


def _per_kind(calls: list[Call]) -> dict[str, dict]:
    """Round trips per hit kind, and the service's own share of them (cache_info latency_ms)."""
    hits = [c for c in calls if c.kind in ("exact", "fuzzy")]
    return {
        **{kind: summary([c.ms for c in calls if c.kind == kind]) for kind in ("exact", "fuzzy")},
        "service": summary([float(c.info.get("latency_ms", 0.0)) for c in hits]),
    }


# -- many clients, mixed requests ---------------------------------------------------------


def mixed_clients(
    work: Path, weights_dir: Path, sources: list[Path], clients: int, per_client: int, seed: int = 16
) -> dict:
    """`clients` users x `per_client` requests over a few photos' mild re-encodings, all at once.

    Afterwards every answer is checked against what the cache held when it was sent (see
    `expected_kinds`) and every hit's picture against its own photo's generated output.
    """
    uploads = work / "uploads-mixed"
    requests = workloads.requests_for(sources, workloads.MILD)
    paths = workloads.write(requests, uploads)
    items = list(zip(requests, paths, strict=True))
    rng = random.Random(seed)
    plans = [[rng.choice(items) for _ in range(per_client)] for _ in range(clients)]
    with real_app(work, weights_dir, "--max-side", LOAD_MAX_SIDE) as app:
        users = [client(app.url) for _ in range(clients)]
        barrier = threading.Barrier(clients)
        calls: list[tuple[workloads.Request, Call]] = []
        lock = threading.Lock()

        def run(user, plan) -> None:
            barrier.wait(timeout=60)
            deadline = time.monotonic() + LOAD_DEADLINE_S
            for request, path in plan:
                if time.monotonic() > deadline:
                    return
                record = call(user, path, request.name)
                with lock:
                    calls.append((request, record))

        started = time.monotonic()
        _run_all(
            [
                threading.Thread(target=run, args=(u, p), daemon=True)
                for u, p in zip(users, plans, strict=True)
            ],
            timeout=LOAD_DEADLINE_S + 60,
        )
        elapsed = time.monotonic() - started
    inconsistent = [
        f"{r.name}: {c.kind} (expected {'/'.join(sorted(expected))})"
        for r, c in calls
        if not c.error and c.kind not in (expected := expected_kinds(r, c, calls))
    ]
    wrong_pictures = _wrong_pictures(calls)
    badge_mismatch = [c.badge for _, c in calls if not c.error and not _badge_matches(c)]
    return {
        "clients": clients,
        "per_client": per_client,
        "sent": clients * per_client,
        "answered": sum(1 for _, c in calls if not c.error),
        "failed": [c.error for _, c in calls if c.error],
        "lost": clients * per_client - len(calls),
        "kinds": _kinds([c for _, c in calls]),
        "distinct_sources": len(sources),
        "inferences": sum(1 for _, c in calls if c.kind == "miss"),
        "inconsistent": inconsistent,
        "wrong_pictures": wrong_pictures,
        "badge_mismatch": badge_mismatch,
        "elapsed_s": elapsed,
        "latency_ms": {
            kind: summary([c.ms for _, c in calls if c.kind == kind])
            for kind in ("miss", "coalesced", "exact", "fuzzy")
        },
    }


def expected_kinds(
    request: workloads.Request, record: Call, calls: list[tuple[workloads.Request, Call]]
) -> set[str]:
    """What the cache may answer, given which answers had come back when this was sent.

    * these very bytes were answered before as generated or exact: exact;
    * any copy of the photo was answered before: fuzzy or exact;
    * no copy had been sent before, and none was answered before this answer: miss or coalesced;
    * otherwise a copy was in flight, and any kind is right.
    """
    same_photo = [c for r, c in calls if r.source == request.source and c is not record and not c.error]
    if any(
        c.received < record.sent and c.kind in ("miss", "coalesced", "exact")
        for r, c in calls
        if r == request and c is not record and not c.error
    ):
        return {"exact"}
    if any(c.received < record.sent for c in same_photo):
        return {"fuzzy", "exact"}
    if not any(c.sent < record.sent for c in same_photo) and not any(
        c.received < record.received for c in same_photo
    ):
        return {"miss", "coalesced"}
    return {"miss", "coalesced", "fuzzy", "exact"}


_BADGE_PREFIX = {
    "exact": "exact hit",
    "fuzzy": "near-duplicate hit",
    "coalesced": "waited",
    "miss": "generated",
}


def _badge_matches(record: Call) -> bool:
    return record.badge.startswith(_BADGE_PREFIX.get(record.kind, "?"))


def _thumb(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((16, 16), Image.Resampling.BOX), dtype=np.float32)


def _wrong_pictures(calls: list[tuple[workloads.Request, Call]]) -> list[str]:
    """Answers whose picture is closer to another photo's generated output than to their own."""
    references: dict[str, np.ndarray] = {}
    for request, record in sorted(calls, key=lambda rc: rc[1].received):
        if record.kind == "miss" and request.source not in references:
            references[request.source] = _thumb(record.output)
    if not references:
        return ["no photo was generated, so no answer can be checked"]
    wrong = []
    for request, record in calls:
        if record.error:
            continue
        small = _thumb(record.output)
        nearest = min(references, key=lambda s: float(np.mean((references[s] - small) ** 2)))
        if nearest != request.source:
            wrong.append(f"{request.name} ({record.kind}) looks like {nearest}'s output")
    return wrong
