"""Round trips through the real app per outcome, next to a no-op Gradio app; identical bursts.

Both apps run at once on 127.0.0.1 and are called alternately with the same upload, so
load from anything else on the box hits both alike. The no-op answers with an 8x8 PNG
(`/stylize`) and with a real result's PNG (`/stylize_sized`): a hit also sends its full
result back, and the second floor shows what that transfer alone costs.
"""

from __future__ import annotations

import statistics
import threading
from functools import partial
from pathlib import Path

from bench.common import summary
from bench.e2e import workloads
from bench.e2e.apps import Call, call, client, noop_app, real_app

WARM_UP_CALLS = 3


def _by_kind(calls: list[Call]) -> dict[str, list[Call]]:
    out: dict[str, list[Call]] = {}
    for c in calls:
        out.setdefault(c.kind or "error", []).append(c)
    return out


def latency_per_outcome(
    work: Path,
    weights_dir: Path,
    photos: list[Path],
    repeats: int,
    burst_photos: list[Path],
    burst_clients: int,
) -> dict:
    """Misses, exact and fuzzy hits vs no-op round trips (app defaults), then identical bursts.

    Each photo is uploaded as a 1200 px JPEG (a miss), then again (exact), and as a 0.8x
    WebP of it (a smaller re-encode of a photo stylized before); the no-op app gets the same files.
    """
    uploads = work / "uploads-latency"
    pairs = [workloads.write(workloads.large_and_reduced(p), uploads) for p in photos]
    originals, fuzzy_copies = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
    calls: dict[str, list[Call]] = {
        "miss": [],
        "exact": [],
        "fuzzy": [],
        "noop": [],
        "noop_sized": [],
        "noop_fuzzy": [],
    }
    with real_app(work, weights_dir) as app:
        real = client(app.url)
        calls["miss"] = [call(real, p, "miss") for p in originals]
        reply = Path(calls["miss"][0].output)
        with noop_app(work, reply=reply) as floor:
            noop = client(floor.url)
            for _ in range(WARM_UP_CALLS):
                (
                    call(real, originals[0]),
                    call(noop, originals[0]),
                    call(noop, originals[0], api_name="/stylize_sized"),
                )
            for i in range(repeats):
                photo, copy = originals[i % len(originals)], fuzzy_copies[i % len(fuzzy_copies)]
                steps = [
                    ("exact", partial(call, real, photo, "exact")),
                    ("noop", partial(call, noop, photo, "noop")),
                    ("noop_sized", partial(call, noop, photo, "noop_sized", api_name="/stylize_sized")),
                    ("fuzzy", partial(call, real, copy, "fuzzy")),
                    ("noop_fuzzy", partial(call, noop, copy, "noop_fuzzy")),
                ]
                for label, run in steps[:: 1 if i % 2 else -1]:  # alternate the order each round
                    calls[label].append(run())
        bursts = identical_bursts(app.url, burst_photos, burst_clients)
    return {**_latency_report(calls), "bursts": bursts}


def _latency_report(calls: dict[str, list[Call]]) -> dict:
    errors = [c.error for cs in calls.values() for c in cs if c.error]
    hits = calls["exact"] + calls["fuzzy"]
    by_kind = _by_kind(hits)
    report: dict = {
        "round_trip_ms": {
            "miss": summary([c.ms for c in calls["miss"] if c.kind == "miss"]),
            "exact": summary([c.ms for c in by_kind.get("exact", [])]),
            "fuzzy": summary([c.ms for c in by_kind.get("fuzzy", [])]),
            "noop": summary([c.ms for c in calls["noop"] + calls["noop_fuzzy"]]),
            "noop_fuzzy": summary([c.ms for c in calls["noop_fuzzy"]]),
            "noop_sized": summary([c.ms for c in calls["noop_sized"]]),
        },
        "service_ms": {  # the service's own time, from cache_info
            kind: summary([float(c.info.get("latency_ms", 0)) for c in cs])
            for kind, cs in _by_kind(calls["miss"] + hits).items()
            if kind != "error"
        },
        "intended_vs_served": {
            "exact": {k: len(v) for k, v in _by_kind(calls["exact"]).items()},
            "fuzzy": {k: len(v) for k, v in _by_kind(calls["fuzzy"]).items()},
            "miss": {k: len(v) for k, v in _by_kind(calls["miss"]).items()},
        },
        "errors": errors,
    }
    # Calls of one round ran back to back with the same upload: their differences cancel
    # most of the drift of a shared machine, unlike differences of medians.
    report["paired_extra_ms"] = {
        "result_png_transfer": _paired(calls["noop_sized"], calls["noop"]),
        "exact": _paired(calls["exact"], calls["noop"]),
        "fuzzy": _paired(calls["fuzzy"], calls["noop_fuzzy"]),
    }
    rt = report["round_trip_ms"]
    if rt["noop"].get("n") and rt["noop_sized"].get("n"):
        report["ratios"] = {
            f"{kind}_vs_{floor}": rt[kind]["median"] / rt[floor]["median"]
            for kind in ("exact", "fuzzy", "miss")
            if rt[kind].get("n")
            for floor in ("noop", "noop_sized")
        }
        if rt["fuzzy"].get("n") and rt["noop_fuzzy"].get("n"):  # the very same WebP file, both apps
            report["ratios"]["fuzzy_vs_noop_same_file"] = rt["fuzzy"]["median"] / rt["noop_fuzzy"]["median"]
    return report


def _paired(calls: list[Call], floors: list[Call]) -> float | None:
    """Median of per-round differences (ms) between two series called in the same rounds."""
    diffs = [c.ms - f.ms for c, f in zip(calls, floors, strict=True) if not c.error and not f.error]
    return statistics.median(diffs) if diffs else None


def identical_bursts(url: str, photos: list[Path], clients: int) -> list[dict]:
    """`clients` users upload the same new photo at the same moment: how many inferences ran."""
    users = [client(url) for _ in range(clients)]
    results = []
    for photo in photos:
        barrier = threading.Barrier(clients)
        calls: list[Call] = []
        threads = [
            threading.Thread(target=_burst_call, args=(u, photo, barrier, calls), daemon=True) for u in users
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        kinds = {k: len(v) for k, v in _by_kind(calls).items()}
        results.append(
            {
                "photo": photo.name,
                "clients": clients,
                "answers": len(calls),
                "kinds": kinds,
                "inferences": kinds.get("miss", 0),
                "errors": [c.error for c in calls if c.error],
                "slowest_ms": max((c.ms for c in calls), default=0.0),
            }
        )
    return results


def _burst_call(user, photo: Path, barrier: threading.Barrier, calls: list[Call]) -> None:
    """One user of a burst: waits for the others, then uploads; its answer joins `calls`."""
    barrier.wait(timeout=60)
    calls.append(call(user, photo, "burst"))  # list.append is atomic
