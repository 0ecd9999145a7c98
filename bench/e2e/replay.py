"""The seed's replay workload, in process, through four ways of caching the same stylize call.

Alternatives, all around one model call (`StylizeService(None).stylize`: decode, fit to
max_side, model, PNG encode), so only the caching differs:

* no cache;
* Gradio's own `gr.cache`, keyed on the decoded picture as `gr.Image(type="pil")` hands it
  over (pixels hashed, so a PNG re-save of the same pixels would hit; a re-encode never does);
* the seed-style cache (bench/e2e/seed_baseline.py): pHash rows in SQLite, linear scan, no check;
* ours: `StylizeService(ResultCache(...))`.

Ground truth: every request knows its source photo. A hit's output is matched to the
nearest reference output (no-cache run, 16x16 thumbnails); a hit serving another photo's
output is a false hit. Look-alikes (mirrored, greyscale, +40 % brightness) are then looked
up without running the model: any hit there is a false hit. CPU seconds are this process's
user+system time (`time.process_time`, all threads) per alternative.
"""

from __future__ import annotations

import io
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import percentile
from bench.e2e import workloads
from bench.e2e.seed_baseline import SeedStyleCache
from bench.e2e.workloads import Request

STYLE = "hayao"


@dataclass
class Served:
    request: Request
    hit: bool
    kind: str
    ms: float
    model_ms: float
    png: bytes = field(repr=False)


@dataclass
class Run:
    name: str
    served: list[Served]
    cpu_s: float
    wall_s: float
    restart: str = "n/a"
    adversarial: dict[str, tuple[int, int]] = field(default_factory=dict)  # variant -> (hits, asked)


class ModelClock:
    """Wraps the shared stylizer's model call to time it, so cache overhead = the rest."""

    def __init__(self, stylizer) -> None:
        self.seconds = 0.0
        real = stylizer.stylize

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        stylizer.stylize = timed


def thumb(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB").resize((16, 16), Image.Resampling.BOX), dtype=np.float32)


def served_source(png: bytes, references: dict[str, np.ndarray]) -> str:
    """The source photo whose reference output this PNG is closest to."""
    small = thumb(png)
    return min(references, key=lambda source: float(np.mean((references[source] - small) ** 2)))


def replay_interleaved(
    requests: list[Request], serves: dict[str, Callable[[bytes], tuple[bytes, str]]], clock: ModelClock
) -> list[Run]:
    """Each request through every alternative in turn, so drift on a shared machine hits all alike.

    The driver is single-threaded and the model runs in this process, so the process's CPU
    time between two marks belongs to the alternative that ran between them.
    """
    runs = {name: Run(name, [], 0.0, 0.0) for name in serves}
    for request in requests:
        for name, serve in serves.items():
            model0, cpu0, start = clock.seconds, time.process_time(), time.perf_counter()
            png, kind = serve(request.data)
            seconds = time.perf_counter() - start
            run = runs[name]
            run.cpu_s += time.process_time() - cpu0
            run.wall_s += seconds
            run.served.append(
                Served(request, kind != "miss", kind, seconds * 1000, (clock.seconds - model0) * 1000, png)
            )
    return list(runs.values())


def warm_up(requests: list[Request], stylizer, max_side: int) -> None:
    """Run the model once per input size in the workload, before any alternative is timed.

    The first inference at a new size is several times slower (kernels picked per shape);
    without this the first alternative to see each size would pay for all of them.
    """
    from animegan.intake import open_image

    seen = set()
    for request in requests:
        rgb = open_image(request.data).fit(max_side).rgb
        if rgb.size not in seen:
            seen.add(rgb.size)
            stylizer.stylize(rgb)


def _pil(data: bytes) -> Image.Image:
    """What `gr.Image(type="pil")` passes a function: the decoded upload, RGB."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def gr_cache_wrapper(compute: Callable[[bytes], bytes]):
    """A fresh `gr.cache` around compute, keyed on the decoded picture (as a new process has)."""
    import gradio as gr

    ran = []

    def stylize(image: Image.Image, data: bytes) -> bytes:
        ran.append(1)
        return compute(data)

    return gr.cache(stylize, key=lambda kwargs: kwargs["image"], max_size=0), ran


def measure(photos: list[Path], adversarial_photos: list[Path], max_side: int, weights_dir: Path) -> dict:
    """Run the replay through each alternative, then restart and look-alike checks."""
    from cache_store import ResultCache
    from stylize_service.service import StylizeService

    requests = workloads.replay(photos)
    lookalikes = workloads.requests_for(adversarial_photos, workloads.ADVERSARIAL)
    work = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    plain = StylizeService(None, weights_dir=weights_dir, max_side=max_side)
    clock = ModelClock(plain.stylizer(STYLE))
    compute = lambda data: plain.stylize(data, STYLE).png  # noqa: E731
    warm_up(requests, plain.stylizer(STYLE), max_side)
    wrapper, ran = gr_cache_wrapper(compute)
    seed = SeedStyleCache(work / "seed.sqlite")
    cache = ResultCache(work / "ours")
    ours = StylizeService(cache, weights_dir=weights_dir, max_side=max_side)

    def serve_gr(data: bytes) -> tuple[bytes, str]:
        before = len(ran)
        png = wrapper(image=_pil(data), data=data)
        return png, "miss" if len(ran) > before else "exact"

    def serve_seed(data: bytes) -> tuple[bytes, str]:
        png, hit = seed.stylize(data, compute)
        return png, "fuzzy" if hit else "miss"

    def serve_ours(data: bytes) -> tuple[bytes, str]:
        outcome = ours.stylize(data, STYLE)
        return outcome.png, outcome.kind

    try:
        runs = replay_interleaved(
            requests,
            {
                "no cache": lambda data: (compute(data), "miss"),
                "gr.cache (exact, memory)": serve_gr,
                "seed-style (pHash<=5, SQLite scan)": serve_seed,
                "ours (exact + verified pHash)": serve_ours,
            },
            clock,
        )
        _, gr_run, seed_run, ours_run = runs

        gr_run.adversarial = _lookalike_hits(lookalikes, lambda data: _probe(wrapper, data))
        fresh, _ = gr_cache_wrapper(compute)  # what a restarted process has
        gr_run.restart = "yes" if _all_hit(requests[:3], lambda d: _probe(fresh, d)) else "no"

        seed_run.adversarial = _lookalike_hits(
            lookalikes, lambda data: seed.lookup(seed.phash(data)) is not None
        )
        seed.close()
        reopened = SeedStyleCache(work / "seed.sqlite")
        seed_run.restart = (
            "yes"
            if _all_hit(requests[:3], lambda d: reopened.lookup(reopened.phash(d)) is not None)
            else "no"
        )
        reopened.close()

        ours_run.adversarial = _lookalike_hits(
            lookalikes, lambda data: not _is_job(ours.prepare(data, STYLE))
        )
        cache.close()
        cache = ResultCache(work / "ours")
        again = StylizeService(cache, weights_dir=weights_dir, max_side=max_side)
        ours_run.restart = (
            "yes" if _all_hit(requests[:3], lambda d: not _is_job(again.prepare(d, STYLE))) else "no"
        )
        cache.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summarize(runs, requests, lookalikes, max_side)


def _probe(wrapper, data: bytes) -> bool:
    from gradio.caching import CacheMissError, ProbeCache

    with ProbeCache():
        try:
            wrapper(image=_pil(data), data=data)
            return True
        except CacheMissError:
            return False


def _is_job(result) -> bool:
    from stylize_service.service import Job

    return isinstance(result, Job)


def _all_hit(requests: list[Request], hits: Callable[[bytes], bool]) -> bool:
    return all(hits(r.data) for r in requests)


def _lookalike_hits(lookalikes: list[Request], hits: Callable[[bytes], bool]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for request in lookalikes:
        count, asked = out.get(request.variant, (0, 0))
        out[request.variant] = (count + int(hits(request.data)), asked + 1)
    return out


def summarize(runs: list[Run], requests: list[Request], lookalikes: list[Request], max_side: int) -> dict:
    base = runs[0]
    references = {s.request.source: thumb(s.png) for s in base.served if s.request.variant == "original"}
    base_by_name = {s.request.name: s for s in base.served}
    miss_ms = statistics.median(s.ms for s in base.served)
    rows = []
    for run in runs:
        hits = [s for s in run.served if s.hit]
        false = [s for s in hits if served_source(s.png, references) != s.request.source]
        misses = [s for s in run.served if not s.hit]
        # Non-model time of a miss here minus the same request's non-model time uncached.
        extra = (
            [
                (s.ms - s.model_ms)
                - (base_by_name[s.request.name].ms - base_by_name[s.request.name].model_ms)
                for s in misses
            ]
            if run is not base
            else []
        )
        rows.append(
            {
                "name": run.name,
                "requests": len(run.served),
                "hits": len(hits),
                "hit_rate": len(hits) / len(run.served),
                "kinds": {
                    k: sum(1 for s in run.served if s.kind == k) for k in sorted({s.kind for s in run.served})
                },
                "false_hits": len(false),
                "false_hit_detail": [
                    f"{s.request.name} served {served_source(s.png, references)}" for s in false
                ],
                "hit_ms_median": statistics.median(s.ms for s in hits) if hits else None,
                "hit_ms_p95": percentile([s.ms for s in hits], 95) if hits else None,
                "miss_ms_median": statistics.median(s.ms for s in misses) if misses else None,
                "mean_ms": statistics.fmean(s.ms for s in run.served),
                "miss_overhead_ms": statistics.median(extra) if extra else None,
                "miss_overhead_pct": 100 * statistics.median(extra) / miss_ms if extra else None,
                "cpu_s": run.cpu_s,
                "cpu_vs_no_cache": run.cpu_s / base.cpu_s,
                "wall_s": run.wall_s,
                "restart": run.restart,
                "adversarial": {k: list(v) for k, v in run.adversarial.items()},
            }
        )
    return {
        "photos": len(references),
        "requests": len(requests),
        "variants": list(workloads.REENCODINGS),
        "lookalikes": len(lookalikes),
        "max_side": max_side,
        "ideal_hit_rate": 1 - len(references) / len(requests),
        "no_cache_miss_ms_median": miss_ms,
        "rows": rows,
    }
