"""`ResultCache`: "an image in, bytes out", exact first, then a verified near-duplicate.

The caller builds the namespace from everything that changes the output (style, weights
hash, precision, output settings, pipeline version), so a new model or setting can never
be served a stale result. A broken store never fails a request: every store error becomes a
miss (or a skipped write), a corrupt store is moved aside and replaced, and a store that
cannot be opened leaves the cache off (`healthy` is False, `status_message` says why).

The store is a local directory (diskcache) or a Redis server that replicas on several hosts
share (see `backends`); while Redis is unreachable the cache runs uncached the same way and
picks Redis up again by itself.

This module sees a store only through the `Store` protocol: backends raise only the
`StoreError` family, so it needs no SQLite, diskcache or Redis error types, and recovering a
corrupt store or deleting moved-aside copies is the backend's business. Anything else a
store call raises is logged with its traceback and is a miss too.
A value that fails its checksum or was not written by this code is discarded on sight and
recomputed by the request that met it.

What the byte budget evicts first is decided by segment (`segments`): results that were
served again, to another client than the one that stored them, outlive a flood of one-off
misses, and pinned results (the app's examples) are never evicted. So lookups take the
`client` who asks, and `pinned` for what must stay.

Statistics count what the caller records (`record`): one outcome per request, with the
latency the caller reports to its user. Lookups record nothing themselves: the cache sees
only part of a request, and some lookups (a warm-up) are not visitors'.

A housekeeping thread per process sweeps expired entries every `sweep_interval` seconds,
whether or not anyone writes, and notices within `IDENTITY_CHECK_S` that the cache
directory was deleted or replaced, then opens a fresh store there instead of writing into
deleted files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from .backends import as_location, open_backend
from .envelope import EnvelopeError, pack, unpack
from .fingerprint import Fingerprint
from .fuzzy_tier import FuzzyTier
from .lookup import KINDS, Kind, Lookup, Meta
from .segments import owner_of
from .signature import SIZE as SIGNATURE_SIZE
from .single_flight import KeyLease, poll_delays
from .stats import CacheStats
from .store import Entry, MalformedEntry, Store, StoreCorrupt, StoreError, StoreUnavailable
from .verify import REFERENCE_SIZE
from .verify import mismatch as verify_mismatch

log = logging.getLogger(__name__)

#: pHash bits within which a candidate is verified. Must-hit variants of the 40 project
#: photos lie within 4 bits; 8 leaves 2x headroom for combined edits, and verification
#: (not the pHash) rejects the look-alikes. See bench/results/cache.md for the curve.
DEFAULT_THRESHOLD = 8
#: Bumped whenever fingerprints or signatures change meaning: part of every namespace id.
FINGERPRINT_FORMAT = "fp2"
#: Nearest rows verified per fuzzy lookup before giving up.
FUZZY_CANDIDATES = 16
#: Expired entries are deleted (files included) at least this often, by default.
SWEEP_INTERVAL_S = 60.0
#: How often the housekeeping thread checks that the cache directory is still the one opened.
IDENTITY_CHECK_S = 2.0
#: The same store error is logged at most this often.
WARN_EVERY_S = 60.0

T = TypeVar("T")


class ResultCache:
    """Two-tier result cache at `location`: a directory, shared by the threads and processes
    using it, or the Redis server that a redis:// (rediss://, unix://) URL names, shared by
    every replica using it (its byte budget is then Redis' maxmemory).

    `size_limit` bytes (evicted by segment, least recently used first: `segments`), `ttl`
    seconds per entry (0 keeps entries until evicted; pinned entries do not expire),
    `threshold` pHash bits for fuzzy candidates, `lock_ttl` seconds that a dead computation
    can hold up others computing the same key, `sweep_interval` seconds between sweeps of
    expired entries.
    """

    def __init__(
        self,
        location: str | Path,
        *,
        size_limit: int = 1 << 30,
        ttl: float = 7 * 86400,
        threshold: int = DEFAULT_THRESHOLD,
        lock_ttl: float = 10.0,
        sweep_interval: float = SWEEP_INTERVAL_S,
    ) -> None:
        if not 0 <= threshold <= 64:
            raise ValueError(f"threshold must be 0..64 bits, not {threshold}")
        if not sweep_interval > 0:
            raise ValueError(f"sweep_interval must be positive, not {sweep_interval}")
        self.location = as_location(location)
        self.size_limit = size_limit
        self.ttl = ttl
        self.threshold = threshold
        self.lock_ttl = lock_ttl
        self.sweep_interval = sweep_interval
        self._swap_lock = threading.Lock()
        self._warned_at: dict[str, float] = {}
        self._last_fault: tuple[float, str] | None = None
        self._live: tuple[Store, FuzzyTier] | None = None  # swapped whole, never half
        self._status = ""
        self._closing = threading.Event()
        self._housekeeper: threading.Thread | None = None
        self._housekeeper_pid = 0
        self._open()
        self._ensure_housekeeper()

    # -- state for the UI ---------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False while running uncached (every lookup misses, put does nothing): no store,
        or its server is unreachable (retried on later calls, after a growing pause)."""
        live = self._live
        return live is not None and live[0].outage() is None

    @property
    def status_message(self) -> str:
        """One line for the UI: ready / recovered / off / unreachable, or a store error of the
        last minute."""
        live = self._live
        outage = live[0].outage() if live is not None else None
        if outage:
            return outage
        fault = self._last_fault
        if fault is not None and self.healthy and time.monotonic() - fault[0] < WARN_EVERY_S:
            return f"Result cache degraded: {fault[1]}"
        return self._status

    # -- lookups --------------------------------------------------------------------------

    def lookup_raw(
        self, namespace: str, raw_sha: str, *, client: str | None = None, pinned: bool = False
    ) -> Lookup | None:
        """Exact hit by the upload file's sha256, before any decoding.

        `client` says who asks (a session, an API client): a hit protects the entry from
        eviction when it was stored by another client (or either is unknown). `pinned` pins
        the entry found (see `put`).
        """
        started = time.perf_counter()
        nsid = namespace_id(namespace)
        visit = _Visit(owner_of(client), pinned)
        return self._guarded(lambda store, _: self._by_alias(store, nsid, raw_sha, started, visit), None)

    def lookup(
        self,
        namespace: str,
        fingerprint: Fingerprint,
        *,
        threshold: int | None = None,
        pixel_key: Callable[[], str] | None = None,
        min_source_side: int = 0,
        client: str | None = None,
        pinned: bool = False,
    ) -> Lookup | None:
        """Exact hit by raw or pixel sha256, else the nearest verified pHash match whose
        source picture's longer side is at least `min_source_side` (a caller that would have
        to enlarge a smaller entry's output to fit this upload passes what it needs).

        For a fingerprint without `pixel_sha` (made from a preview), `pixel_key()` gives it
        when a candidate's signature is identical to the upload's, so that the same picture
        in another container (metadata stripped, re-saved losslessly) is reported as an
        exact hit; it is called for nothing else. `client` and `pinned` as for `lookup_raw`.
        """
        started = time.perf_counter()
        limit = self.threshold if threshold is None else threshold
        namespace_id(namespace)  # a caller's mistake raises here, outside the error boundary
        visit = _Visit(owner_of(client), pinned)
        return self._guarded(
            lambda store, tier: self._find(
                store, tier, namespace, fingerprint, limit, started, visit, pixel_key, min_source_side
            ),
            None,
        )

    def get_or_compute(
        self,
        namespace: str,
        fingerprint: Fingerprint,
        compute: Callable[[], tuple[bytes, Meta]],
        *,
        stored: Callable[[], Fingerprint] | None = None,
        min_source_side: int = 0,
        client: str | None = None,
        pinned: bool = False,
    ) -> Lookup:
        """A hit, or `compute()` run once however many threads and processes ask at once.

        The first caller for a pixel sha takes a lease, re-checks, computes and stores
        ("miss"); the others wait and get its result ("coalesced"). If the holder dies or
        its compute raises, a waiter takes over. Without a usable store, just computes.
        `fingerprint` needs its `pixel_sha`. The entry is stored under `stored()`, called
        after `compute` (a `calibrated` fingerprint, so it can be a near-duplicate
        target), or under `fingerprint` itself. `min_source_side` as for `lookup`; `client`
        and `pinned` as for `lookup_raw` and `put`.
        """
        started = time.perf_counter()
        namespace_id(namespace)
        _require_pixel_key(fingerprint)
        visit = _Visit(owner_of(client), pinned)

        def find() -> Lookup | None:
            return self._guarded(
                lambda s, t: self._find(
                    s, t, namespace, fingerprint, self.threshold, started, visit, None, min_source_side
                ),
                None,
            )

        hit = find()
        if hit is not None:
            return hit
        lease = self._guarded(lambda store, _: self._lease(store, namespace, fingerprint), None)
        delays = poll_delays()
        while lease is not None:
            acquired = self._guarded(lambda store, _: lease.try_acquire(), None)
            if acquired is None:  # the store failed: compute without coalescing
                break
            if acquired:
                with lease:
                    hit = find()  # someone may have finished between our lookup and the lease
                    if hit is None:
                        return self._compute(namespace, fingerprint, compute, stored, started, client, pinned)
                return _coalesced(hit, started)
            time.sleep(next(delays))
            hit = find()
            if hit is not None:
                return _coalesced(hit, started)
        return self._compute(namespace, fingerprint, compute, stored, started, client, pinned)

    def put(
        self,
        namespace: str,
        fingerprint: Fingerprint,
        value: bytes,
        meta: Meta,
        *,
        client: str | None = None,
        pinned: bool = False,
    ) -> None:
        """Store `value` (+ JSON-able `meta`) for this fingerprint; a failed write is only logged.

        The entry is served as a near-duplicate only if `fingerprint` is `calibrated`;
        otherwise it is found by its keys only. Storing again replaces the entry and keeps
        the segment it earned. `client` is who stored it (a hit by the same client does not
        protect it). `pinned` keeps it out of eviction and expiry, within the pinned share
        of the budget: for the app's own pictures (its examples), never for visitors' uploads.
        """
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"cached values must be bytes, not {type(value).__name__}")
        pixel_sha = _require_pixel_key(fingerprint)
        nsid = namespace_id(namespace)
        entry = Entry(
            key=_value_key(nsid, pixel_sha),
            blob=pack(bytes(value), dict(meta), (fingerprint.width, fingerprint.height)),
            expire=self._ttl_or_none,
            alias=_alias_key(nsid, fingerprint.raw_sha) if fingerprint.raw_sha else None,
            namespace=nsid,
            phash=fingerprint.phash,
            signature=fingerprint.signature + (fingerprint.tolerances or b""),
            width=fingerprint.width,
            height=fingerprint.height,
            has_alpha=fingerprint.has_alpha,
            pinned=pinned,
            owner=owner_of(client),
        )
        self._guarded(lambda store, _: self._write(store, entry), None)

    # -- statistics and housekeeping ------------------------------------------------------

    def record(self, kind: Kind, latency_ms: float) -> None:
        """Count one request whose outcome was `kind`, which took `latency_ms` (the time its
        user saw, from the request's arrival). The cache records nothing by itself: call this
        once per visitor request, and not for work of the app's own (a warm-up). A store
        that cannot count now (a full disk, Redis down) loses the count, never the request.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if not (latency_ms >= 0 and latency_ms != float("inf")):
            raise ValueError(f"latency must be a finite number of milliseconds >= 0, not {latency_ms!r}")
        self._guarded(lambda store, _: store.record(kind, float(latency_ms)), None)

    def stats(self) -> CacheStats:
        """Counts over every process sharing the store (since the last `clear()`): what
        `record` was given. Latencies are kept for the latest 1024 requests of each kind.
        """
        return CacheStats.of(
            self._guarded(lambda store, _: store.counters(), {}),
            self._guarded(lambda store, _: store.latencies(), {}),
            self._guarded(lambda store, _: store.usage(), (0, 0)),
            healthy=self.healthy,
        )

    def clear(self) -> None:
        """Delete every cached result, moved-aside store and statistic."""
        self._guarded(lambda store, _: store.clear(), None)

    def close(self) -> None:
        self._closing.set()
        housekeeper = self._housekeeper
        if housekeeper is not None and housekeeper is not threading.current_thread():
            housekeeper.join(timeout=30)
        with self._swap_lock:
            live, self._live = self._live, None
            self._status = "Result cache closed."
        if live is not None:
            live[0].close()

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lookups, inside the error boundary -----------------------------------------------

    def _find(
        self,
        store: Store,
        tier: FuzzyTier,
        namespace: str,
        fp: Fingerprint,
        threshold: int,
        started: float,
        visit: _Visit,
        pixel_key: Callable[[], str] | None = None,
        min_source_side: int = 0,
    ) -> Lookup | None:
        nsid = namespace_id(namespace)
        if fp.raw_sha:
            hit = self._by_alias(store, nsid, fp.raw_sha, started, visit)
            if hit is not None:
                return hit
        if fp.pixel_sha is not None:
            found = self._read(store, _value_key(nsid, fp.pixel_sha), visit)
            if found is not None:
                return _answer("exact", found, 0, self.threshold, started)
        return self._fuzzy(store, tier, nsid, fp, threshold, started, visit, pixel_key, min_source_side)

    def _by_alias(
        self, store: Store, nsid: str, raw_sha: str, started: float, visit: _Visit
    ) -> Lookup | None:
        key = store.resolve(_alias_key(nsid, raw_sha))
        if key is None:
            return None
        found = self._read(store, key, visit)
        if found is None:
            store.discard(key)  # an alias outliving its value: drop both
            return None
        return _answer("exact", found, 0, self.threshold, started)

    def _fuzzy(
        self,
        store: Store,
        tier: FuzzyTier,
        nsid: str,
        fp: Fingerprint,
        threshold: int,
        started: float,
        visit: _Visit,
        pixel_key: Callable[[], str] | None,
        min_source_side: int,
    ) -> Lookup | None:
        for seq, distance in tier.nearest(nsid, fp.phash, threshold, FUZZY_CANDIDATES):
            row = store.row(nsid, seq)
            if row is None:
                tier.forget(nsid, seq)
                continue
            if max(row.width, row.height) < min_source_side:  # its output would be enlarged
                continue
            if len(row.signature) == SIGNATURE_SIZE:  # stored without tolerances: keys only
                continue
            if len(row.signature) != REFERENCE_SIZE:  # damaged row: treat like a lost value
                self._warn("malformed", f"dropping a fuzzy row with a {len(row.signature)}-byte signature")
                store.discard(row.key)
                tier.forget(nsid, seq)
                continue
            try:
                refused = verify_mismatch(fp, row)
            except ValueError as error:  # a signature holding junk: drop it like a lost value
                self._warn("malformed", f"dropping a fuzzy row with a damaged signature: {error}")
                store.discard(row.key)
                tier.forget(nsid, seq)
                continue
            if refused is not None:
                continue
            found = self._read(store, row.key, visit)
            if found is None:  # a row whose value is gone: a miss, and the row goes
                store.discard(row.key)
                tier.forget(nsid, seq)
                continue
            # The very same pixels (stored between our exact probe and this scan, or found from
            # a preview that looks identical): exact.
            pixels = fp.pixel_sha
            if pixels is None and pixel_key is not None and row.signature[:SIGNATURE_SIZE] == fp.signature:
                pixels = pixel_key()
            same = pixels is not None and row.key == _value_key(nsid, pixels)
            return _answer("exact" if same else "fuzzy", found, 0 if same else distance, threshold, started)
        return None

    def _read(self, store: Store, key: str, visit: _Visit) -> tuple[bytes, Meta, tuple[int, int]] | None:
        """The entry to serve, or None; a served entry is then touched (its use recorded),
        and a touch that fails (a full disk) still serves it."""
        try:
            blob = store.get(key)
            found = None if blob is None else unpack(blob)
        except (MalformedEntry, EnvelopeError) as error:  # recomputed by the request that met it
            log.warning("result cache: dropping an unreadable entry (%s)", error)
            store.discard(key)
            return None
        if found is not None:
            try:
                store.touch(key, visit.owner, pin=visit.pinned, ttl=self._ttl_or_none)
            except StoreError as error:
                self._warn(
                    "touch",
                    f"result cache: serving a hit whose use could not be recorded: {error}",
                    fault=False,
                )
        return found

    @property
    def _ttl_or_none(self) -> float | None:
        return self.ttl if self.ttl > 0 else None

    def _lease(self, store: Store, namespace: str, fp: Fingerprint) -> KeyLease:
        return KeyLease(store, f"{namespace_id(namespace)}:{fp.pixel_sha}", self.lock_ttl)

    def _compute(
        self,
        namespace: str,
        fp: Fingerprint,
        compute: Callable[[], tuple[bytes, Meta]],
        stored: Callable[[], Fingerprint] | None,
        started: float,
        client: str | None,
        pinned: bool,
    ) -> Lookup:
        value, meta = compute()
        self.put(namespace, stored() if stored is not None else fp, value, meta, client=client, pinned=pinned)
        return Lookup(
            "miss", bytes(value), dict(meta), 0, self.threshold, _ms(started), (fp.width, fp.height)
        )

    def _write(self, store: Store, entry: Entry) -> None:
        store.put(entry)

    # -- the error boundary -----------------------------------------------------------------

    def _guarded(self, action: Callable[[Store, FuzzyTier], T], default: T) -> T:
        """Run `action` on the current store; any store error gives `default`, never raises."""
        if self._housekeeper_pid != os.getpid():  # a forked child has no housekeeper yet
            self._ensure_housekeeper()
        live = self._live
        if live is None:
            return default
        store, tier = live
        try:
            return action(store, tier)
        except StoreCorrupt as error:
            self._recover(store, f"failed ({error})")
        except StoreUnavailable as error:  # `healthy` and `status_message` say so
            self._warn("unavailable", f"result cache unreachable, serving uncached: {error}", fault=False)
        except StoreError as error:
            self._warn("store", f"result cache unavailable for this request: {error}")
            if self._is_stale(store):
                self._recover(store, "was deleted or replaced while in use")
        except Exception as error:
            self._warn(
                "unexpected",
                f"result cache error, serving uncached: {type(error).__name__}: {error}",
                exc_info=True,
            )
        return default

    def _open(self) -> None:
        opened = open_backend(self.location, size_limit=self.size_limit)
        self._live = None if opened.store is None else (opened.store, FuzzyTier(opened.store))
        self._status = opened.message

    def _recover(self, broken: Store, what: str) -> None:
        with self._swap_lock:
            if self._live is None or self._live[0] is not broken:  # already recovered
                return
            log.warning("result cache store in %s %s; opening a fresh one", self.location, what)
            try:
                broken.close()
            except Exception as error:
                log.debug("closing the old store failed: %s", error)
            self._open()

    @staticmethod
    def _is_stale(store: Store) -> bool:
        try:
            return store.stale()
        except Exception:
            return False

    # -- housekeeping -----------------------------------------------------------------------

    def _ensure_housekeeper(self) -> None:
        """Start this process's housekeeping thread (again, in a forked child)."""
        with self._swap_lock:
            if self._housekeeper_pid == os.getpid() or self._closing.is_set():
                return
            self._housekeeper_pid = os.getpid()
            self._housekeeper = threading.Thread(
                target=self._housekeep, name="cache-housekeeping", daemon=True
            )
            self._housekeeper.start()

    def _housekeep(self) -> None:
        """Every `sweep_interval`: delete expired entries; every few seconds: reopen the store
        if its directory was deleted or replaced. Runs until `close`."""
        next_sweep = time.monotonic() + self.sweep_interval
        while not self._closing.wait(min(self.sweep_interval, IDENTITY_CHECK_S)):
            live = self._live
            if live is None:
                continue
            if self._is_stale(live[0]):
                self._recover(live[0], "was deleted or replaced while in use")
                continue
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.sweep_interval
                self._guarded(lambda store, _: store.expire(), None)

    def _warn(self, topic: str, message: str, *, fault: bool = True, exc_info: bool = False) -> None:
        """Log `message` unless this topic was logged within WARN_EVERY_S."""
        now = time.monotonic()
        if now - self._warned_at.get(topic, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._warned_at[topic] = now
            log.warning(message, exc_info=exc_info)
        if fault:
            self._last_fault = (now, message)


@dataclass(frozen=True)
class _Visit:
    """Who asks (`segments.owner_of` the client) and whether the entry found is to be pinned."""

    owner: str | None
    pinned: bool


def _answer(
    kind: Kind, found: tuple[bytes, Meta, tuple[int, int]], distance: int, threshold: int, started: float
) -> Lookup:
    value, meta, source_size = found
    return Lookup(kind, value, meta, distance, threshold, _ms(started), source_size)


def _coalesced(hit: Lookup, started: float) -> Lookup:
    """Same pixels computed by another caller while we waited; a fuzzy hit stays fuzzy
    (its output still has to be fitted to this upload)."""
    kind: Kind = "coalesced" if hit.kind == "exact" else hit.kind
    return replace(hit, kind=kind, latency_ms=_ms(started))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def namespace_id(namespace: str) -> str:
    """The id under which the store keeps `namespace`'s entries (in keys and fuzzy rows):
    the namespace hashed together with the fingerprint format, so entries fingerprinted
    another way are never compared with this code's."""
    if not isinstance(namespace, str) or not namespace:
        raise TypeError("namespace must be a non-empty str")
    return hashlib.sha256(f"{FINGERPRINT_FORMAT}|{namespace}".encode()).hexdigest()[:32]


def _require_pixel_key(fingerprint: Fingerprint) -> str:
    if fingerprint.pixel_sha is None:
        raise ValueError("storing needs the fingerprint's pixel_sha (see Fingerprint.keyed)")
    return fingerprint.pixel_sha


def _value_key(nsid: str, pixel_sha: str) -> str:
    return f"v:{nsid}:{pixel_sha}"


def _alias_key(nsid: str, raw_sha: str) -> str:
    return f"r:{nsid}:{raw_sha}"
