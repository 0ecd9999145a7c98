"""Benchmark of the Redis cache backend next to diskcache, in the same run.

Not a test. One run (about 2 minutes on a 2-core box) starts its own `redis-server`
(127.0.0.1, no persistence, maxmemory 4 GB, volatile-lru) and writes bench/results/redis.md:

* exact and fuzzy hit latency through the stylize service and at the cache API, on
  real results (the model's PNGs for 6 project photos at the default 768 px);
* the same at 20k entries, a fresh replica's index load, and put cost;
* how soon a result stored through one replica is a fuzzy hit on another;
* what a request pays while Redis is stopped or frozen;
* bytes per cached result in Redis (value + row, alias, stream entry), measured with
  MEMORY USAGE, and the multi-host deployment plan extrapolated from them.

Usage: .venv/bin/python -m bench.bench_redis   (ANIMEGAN_WEIGHTS_DIR / ANIMEGAN_PHOTOS_DIR)
"""

from __future__ import annotations

import io
import itertools
import math
import signal
import statistics
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import redis
from PIL import Image

from animegan.intake import DEFAULT_MAX_SIDE, open_image
from bench.common import (
    encoded,
    filler_fingerprint,
    machine_info,
    machine_line,
    percentile,
    photo_paths,
    table,
    timed,
    weights_dir,
    write_result,
)
from cache_store import Fingerprint, ResultCache
from cache_store.result_cache import namespace_id
from cache_store.verify import REFERENCE_SIZE
from stylize_service.service import StylizeService
from tests.support.redis_server import RedisServer

STYLE = "hayao"
REAL = 6  # photos run through the model per backend
FILL = 20_000
NS = "bench|redis|v1"


# -- helpers ------------------------------------------------------------------------------


def med(samples: list[float]) -> str:
    return f"{statistics.median(samples):.2f} ms (p95 {percentile(samples, 95):.2f})"


def jpeg(path: Path, quality: int) -> bytes:
    with Image.open(path) as image:
        return encoded(image.convert("RGB"), "JPEG", quality=quality)


def stored_print(photo: Path) -> Fingerprint:
    """The fingerprint the service stores for `photo` at 768 px: calibrated, so that it can be
    served as a near-duplicate."""
    with Image.open(photo) as source:
        image = source.convert("RGB")
    image.thumbnail((768, 768))
    return Fingerprint.of(image).calibrated(image)


#: The deployment plan's settings: a memory cap with LRU eviction.
SERVER_SETTINGS = ("--maxmemory", "4gb", "--maxmemory-policy", "volatile-lru")


# -- 1. real results through the service ---------------------------------------------------------


def real_results(location: str | Path, photos: list[Path], copies: dict[Path, bytes]) -> dict:
    """Misses, then exact and fuzzy hits through the service, then at the cache API."""
    cache = ResultCache(location)
    service = StylizeService(cache, weights_dir=weights_dir())
    out: dict = {"miss": [], "png": []}
    for path in photos:
        started = time.perf_counter()
        outcome = service.stylize(path, STYLE)
        out["miss"].append((time.perf_counter() - started) * 1000)
        assert outcome.kind == "miss", outcome.kind
        out["png"].append(len(outcome.png))
    kinds = set()
    uploads = itertools.cycle(photos)
    copied = itertools.cycle(copies[path] for path in photos)
    out["service_exact"] = timed(lambda: kinds.add(service.stylize(next(uploads), STYLE).kind), 60)
    out["service_fuzzy"] = timed(lambda: kinds.add(service.stylize(next(copied), STYLE).kind), 30)
    assert kinds == {"exact", "fuzzy"}, kinds
    namespace = service.namespace(service.stylizer(STYLE))
    raw = [Fingerprint.raw_key(path.read_bytes()) for path in photos]
    prints = [Fingerprint.of(open_image(copies[path]).fit(DEFAULT_MAX_SIDE).rgb) for path in photos]
    out["api_exact"] = timed(lambda: cache.lookup_raw(namespace, raw[0]), 300)
    out["api_fuzzy"] = timed(lambda: cache.lookup(namespace, prints[0]), 300)
    assert cache.lookup(namespace, prints[0]).kind == "fuzzy"
    out["namespace"] = namespace
    out["cache"] = cache
    return out


def redis_bytes(client: redis.Redis) -> dict:
    """MEMORY USAGE of every value (blob + row), alias and stream, per result."""
    usage = lambda key: client.memory_usage(key, samples=0)  # noqa: E731
    values = list(client.scan_iter(match="rc:v:*"))
    aliases = list(client.scan_iter(match="rc:r:*"))
    blobs = [client.hstrlen(key, "b") for key in values]
    value_usage = [usage(key) for key in values]
    return {
        "results": len(values),
        "blob": statistics.mean(blobs),
        "value_key": statistics.mean(value_usage),
        "value_overhead": statistics.mean(u - b for u, b in zip(value_usage, blobs, strict=True)),
        "alias": statistics.mean(usage(key) for key in aliases) if aliases else 0,
    }


# -- 2. at scale ----------------------------------------------------------------------------------


def at_scale(location: str | Path, client: redis.Redis | None, real: dict, like: Fingerprint) -> dict:
    """Fill FILL small entries (with `like`'s signature and tolerances, as real entries have),
    then hit latencies, a fresh replica's index load, stats()."""
    out: dict = {}
    cache: ResultCache = real["cache"]
    before = client.info("memory")["used_memory"] if client else 0
    rng = np.random.default_rng(0)
    prints = [filler_fingerprint(rng, like) for _ in range(FILL)]
    started = time.perf_counter()
    for fp in prints:
        cache.put(NS, fp, b"x" * 64, {"width": 768, "height": 512})
    out["put_us"] = (time.perf_counter() - started) / FILL * 1e6
    if client:
        out["small_entry_bytes"] = (client.info("memory")["used_memory"] - before) / FILL
        stream = f"rc:x:{namespace_id(NS)}"
        out["stream_per_row"] = client.memory_usage(stream, samples=0) / client.xlen(stream)
    fresh = ResultCache(location)
    started = time.perf_counter()
    fresh.lookup(NS, filler_fingerprint(rng))
    out["index_load_ms"] = (time.perf_counter() - started) * 1000
    # The same picture as an entry stored, but not these bytes: a near-duplicate query.
    near = replace(prints[7], pixel_sha="0" * 64, raw_sha=None, tolerances=None)
    out["exact"] = timed(lambda: fresh.lookup_raw(NS, prints[3].raw_sha), 300)
    out["fuzzy"] = timed(lambda: fresh.lookup(NS, near), 300)
    assert fresh.lookup(NS, near).kind == "fuzzy"
    out["stats"] = timed(fresh.stats, 50)
    out["entries"] = fresh.stats().entries
    fresh.close()
    return out


# -- 3. replicas and faults -----------------------------------------------------------------------


def across_replicas(url: str, photo: Path) -> dict:
    """Replica B has its index loaded; A stores a photo; B's very next lookup of a copy."""
    first, second = ResultCache(url), ResultCache(url)
    image = Image.open(photo).convert("RGB")
    image.thumbnail((768, 768))
    second.lookup("replicas", Fingerprint.of(image))  # loads B's (empty) index
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=70)
    copy = Fingerprint.of(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    first.put("replicas", Fingerprint.of(image).calibrated(image), b"styled", {})
    started = time.perf_counter()
    hit = second.lookup("replicas", copy)
    out = {"ms": (time.perf_counter() - started) * 1000, "kind": hit.kind if hit else "miss"}
    first.close()
    second.close()
    return out


def _instant_request(cache: ResultCache, rng: np.random.Generator) -> None:
    """A request whose compute costs nothing: its time is the cache's."""
    cache.get_or_compute(NS, filler_fingerprint(rng), lambda: (b"x", {}))


def while_down(server: RedisServer) -> dict:
    """A request's cache overhead (get_or_compute with an instant compute) with Redis
    stopped and frozen: the first request after the failure, then the following ones."""
    rng = np.random.default_rng(1)
    out = {}
    for state in ("stopped", "frozen"):
        if state == "frozen":
            server.start()
        cache = ResultCache(server.url())
        cache.lookup(NS, filler_fingerprint(rng))  # connected and working
        if state == "stopped":
            server.stop()
        else:
            server.process.send_signal(signal.SIGSTOP)
        samples = timed(partial(_instant_request, cache, rng), 200)
        out[state] = {"first": samples[0], "rest": samples[1:], "healthy": cache.healthy}
        if state == "frozen":
            server.process.send_signal(signal.SIGCONT)
        cache.close()
    return out


# -- report ---------------------------------------------------------------------------------------


def report(
    info: dict,
    redis_version: str,
    real: dict,
    scale: dict,
    mem: dict,
    replicas: dict,
    down: dict,
    seconds: float,
) -> str:
    kib = lambda n: f"{n / 1024:,.0f} KiB"  # noqa: E731
    r, d = real["redis"], real["disk"]
    stream_row = scale["redis"]["stream_per_row"]
    per_result = mem["value_key"] + mem["alias"] + stream_row
    miss_s = statistics.median(r["miss"]) / 1000
    overhead = per_result - mem["blob"]
    per_million_gb = per_result * 1e6 / 1e9
    index_million_gb = overhead * 1e6 / 1e9
    small = scale["redis"]["small_entry_bytes"]
    stored = f"{len(r['png'])} results stored"
    compared = [
        ("exact hit, service (byte-identical re-upload)", d["service_exact"], r["service_exact"]),
        ("fuzzy hit, service (JPEG q75 re-encode)", d["service_fuzzy"], r["service_fuzzy"]),
        (f"exact hit, API, {stored}", d["api_exact"], r["api_exact"]),
        (f"fuzzy hit, API, {stored}", d["api_fuzzy"], r["api_fuzzy"]),
        (f"exact hit, API, {FILL:,} entries", scale["disk"]["exact"], scale["redis"]["exact"]),
        (f"fuzzy hit, API, {FILL:,} entries", scale["disk"]["fuzzy"], scale["redis"]["fuzzy"]),
        (
            "`stats()` (the cache panel, every 5 s per open page)",
            scale["disk"]["stats"],
            scale["redis"]["stats"],
        ),
    ]
    latency = [
        (
            name,
            med(on_disk),
            med(on_redis),
            f"{statistics.median(on_redis) / statistics.median(on_disk):.2f}x",
        )
        for name, on_disk, on_redis in compared
    ]
    latency.append(("miss, service (model run, for scale)", med(d["miss"]), med(r["miss"]), ""))
    once = [
        (
            f"a fresh process's first fuzzy lookup: loads the {FILL:,}-row index",
            *(f"{scale[backend]['index_load_ms']:.0f} ms" for backend in ("disk", "redis")),
        ),
        (
            "`put` of a small entry while filling",
            *(f"{scale[backend]['put_us']:.0f} us" for backend in ("disk", "redis")),
        ),
    ]
    parts = [
        ("PNG result (the blob, with its JSON envelope)", f"{mem['blob']:,.0f}"),
        (
            f"value hash: blob + row ({REFERENCE_SIZE:,} B signature and tolerances, size, alpha, seq, "
            "namespace, alias) + key, incl. allocator rounding",
            f"{mem['value_key']:,.0f} (overhead {mem['value_overhead']:,.0f})",
        ),
        ("raw-file alias key", f"{mem['alias']:,.0f}"),
        (f"stream entry (pHash + value key), per row, measured at {FILL:,} rows", f"{stream_row:,.0f}"),
        ("**per result**", f"**{per_result:,.0f}** (overhead over the PNG {overhead:,.0f})"),
    ]
    lines = [
        "# Redis cache backend benchmark",
        "",
        f"Machine: {machine_line(info)}; diskcache {info['diskcache']}, redis-py {redis.__version__}, "
        f"Redis server {redis_version} on the same host (127.0.0.1, TCP). Run time {seconds:.0f} s. "
        "Written by `bench/bench_redis.py`. The box is shared: compare the two backends within this run, "
        "not with other files.",
        "",
        "## Hit latency, Redis next to diskcache",
        "",
        f"Real results: {REAL} project photos stylized ({STYLE}, 768 px) through `StylizeService`, once per "
        f"backend; PNG results of {kib(statistics.mean(r['png']))} on average. *Service* = "
        "`service.stylize(upload)` in process (read, sha256, lookup; for a fuzzy hit also decode, fit, "
        "fingerprint and fitting the cached PNG to the upload). *API* = the cache call alone: `lookup_raw` "
        "(exact) or `lookup` with a ready fingerprint (fuzzy: sync, scan, verify, read).",
        "",
        *table("path | diskcache | Redis | Redis / disk", latency, "lllr"),
        "",
        *table("once per process or per write | diskcache | Redis", once, "lrr"),
        "",
        "Every Redis call is a round trip (here over loopback; add the network's RTT per call on a LAN: an "
        "exact hit makes 3 calls — resolve the alias, read the value, count the hit; a fuzzy hit 8). A "
        f"fresh replica loads its index at {FILL / scale['redis']['index_load_ms']:,.0f} rows/ms, so about "
        f"{1e6 / (FILL / scale['redis']['index_load_ms']) / 1000:.0f} s per million rows, once per process "
        "start (and after a FLUSHDB or a Redis restart).",
        "",
        "## Replicas and faults",
        "",
        "- Stored through replica A, looked up on replica B (index already loaded) right after: "
        f"**{replicas['kind']}** hit in {replicas['ms']:.2f} ms (B pulls only the new stream entries before "
        "the scan).",
    ]
    for state, found in down.items():
        lines.append(
            f"- Redis {state}: the first request after the failure spent {found['first']:.1f} ms in the "
            f"cache, the next {len(found['rest'])} a median of {statistics.median(found['rest']):.3f} ms "
            f"(p95 {percentile(found['rest'], 95):.3f}); healthy={found['healthy']}. Calls fail at once "
            "between retries (first pause 0.25 s, doubling to 8 s); a frozen server costs one socket "
            "timeout (0.5 s)."
        )
    lines += [
        "",
        "## Bytes per cached result in Redis",
        "",
        f"MEMORY USAGE of the {mem['results']} real results' keys (jemalloc, Redis {redis_version}):",
        "",
        *table("part | bytes", parts, "lr"),
        "",
        "The value hash's overhead over its PNG is its row (mostly the "
        f"{REFERENCE_SIZE:,} B of signature and tolerances) and jemalloc rounding the PNG up to its size "
        "class (classes are 4 per power of two, so up to 25 %). "
        f"At {FILL:,} small synthetic entries (64 B values) `used_memory` grew by {small:,.0f} B per entry: "
        "the bookkeeping without a PNG (value hash with its row, alias key, stream entry).",
        "",
        "## Multi-host deployment plan",
        "",
        "**Topology.** N app replicas (`python app.py --cache-url redis://cache-host:6379/0`, or "
        "`ANIMEGAN_CACHE_URL`) behind any load balancer, no sticky sessions needed: every replica reads "
        "and writes the same Redis, so a photo stylized through one replica is an exact hit on all of them "
        "and its re-encodes are fuzzy hits at once (each replica's in-memory pHash index pulls new rows "
        "from a Redis stream before every look-up). One Redis primary of its own (the cache must not share "
        "an instance with other data: volatile-lru may evict any key with an expiry). Redis Cluster is not "
        "supported (Lua scripts touch several keys); use a single primary, optionally with a "
        "Sentinel-managed replica for fail-over.",
        "",
        "**How many replicas.** Hits cost the service ~1 ms (exact) to tens of ms (fuzzy, mostly decoding "
        f"the upload); a miss runs the model for ~{miss_s:.1f} s at 768 px on a 2-core replica, and each "
        "replica runs one inference at a time by default (`--inference-workers`). Size the fleet on "
        f"misses: replicas ≈ peak new photos per second × {miss_s:.1f} s, rounded up, plus one for hits and "
        f"for a replica going away (e.g. 1 new photo/s → {math.ceil(miss_s) + 1} replicas of 2 cores). "
        "Losing a replica loses no cache; losing Redis loses no request (replicas serve uncached, then "
        "reconnect).",
        "",
        "**Redis memory per million cached results** (from the measurements above): "
        f"{per_result / 1024:,.0f} KiB per result → **~{per_million_gb:,.0f} GB per million results at 768 "
        f"px**, of which the PNGs are all but ~{index_million_gb:.1f} GB (value/row/alias/stream "
        "bookkeeping). RAM is the bill: keep the hot set, not everything. `maxmemory` = the RAM you give "
        f"the cache (e.g. 32 GB ≈ {32e9 / per_result:,.0f} results); leave the host ~25 % above maxmemory "
        "for fragmentation, client and replication buffers, and the copy-on-write of a snapshot if you "
        "enable one. Each replica also holds the pHash index in RAM: 17 B per row (~17 MB per million) "
        "plus the rows of evicted results until a look-up meets them.",
        "",
        "**Eviction.** `maxmemory-policy volatile-lru` (the app warns at start otherwise): only results "
        "nobody else came back for carry a Redis expiry, so only they are evicted when Redis is full; "
        "results served to another client, the pinned examples and the bookkeeping keys carry none, and "
        "the app's sweep enforces their TTL. A result's value and fuzzy row are one key, so they go "
        "together; an alias or stream entry left behind is deleted the first time a look-up meets it (a "
        "miss, never a wrong picture). Under `allkeys-lru` it all still works, as a plain LRU.",
        "",
        '**Persistence.** It is a cache: `save ""` and `appendonly no` (as benchmarked) cost nothing and a '
        "restart starts cold (replicas notice the new epoch and reload; the model refills the cache). If "
        "cold starts are expensive (many replicas, high miss cost), enable RDB snapshots (`save 3600 1`) "
        "and budget the fork's copy-on-write (up to 2x memory under heavy writes); AOF buys nothing for a "
        "cache.",
        "",
        "**Timeouts and outages.** Socket timeout 0.5 s, connect timeout 0.25 s (override in the URL: "
        "`?socket_timeout=1`). While Redis is unreachable every call fails at once and one request retries "
        "after a pause that doubles from 0.25 s to 8 s; `healthy` turns False and the cache panel says why.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    started = time.perf_counter()
    photos = photo_paths()[:REAL]
    copies = {path: jpeg(path, 75) for path in photos}
    with tempfile.TemporaryDirectory() as work:
        server = RedisServer(Path(work), SERVER_SETTINGS)
        server.start()
        client = server.client()
        try:
            real = {"disk": real_results(Path(work) / "disk", photos, copies)}
            real["redis"] = real_results(server.url(), photos, copies)
            mem = redis_bytes(client)
            like = stored_print(photos[0])
            scale = {
                "disk": at_scale(Path(work) / "disk", None, real["disk"], like),
                "redis": at_scale(server.url(), client, real["redis"], like),
            }
            for found in real.values():
                found.pop("cache").close()
            replicas = across_replicas(server.url(), photos[0])
            redis_version = client.info("server")["redis_version"]
            down = while_down(server)
        finally:
            server.stop()
    text = report(
        machine_info(), redis_version, real, scale, mem, replicas, down, time.perf_counter() - started
    )
    write_result("redis.md", text)
    print(text)


if __name__ == "__main__":
    main()
