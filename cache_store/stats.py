"""`CacheStats`: what `ResultCache.stats()` reports, for the app's cache panel and the benchmarks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .lookup import KINDS, Kind


@dataclass(frozen=True)
class CacheStats:
    """Counts over every process sharing the store, since its last `clear()`.

    What callers recorded (`ResultCache.record`): one outcome per request, under its kind,
    so `lookups` is the sum of the four counts. `mean_ms` and `p95_ms` map a kind to the
    latencies recorded with it, in milliseconds (p95 over the store's recent window), and
    hold only the kinds seen; a miss's time includes the computation.
    `evictions` counts values removed by the size limit, the TTL or as unreadable;
    `entries` and `bytes` are the store's size; `healthy` is False while running uncached.
    """

    lookups: int
    exact_hits: int
    fuzzy_hits: int
    coalesced: int
    misses: int
    evictions: int
    entries: int
    bytes: int
    hit_rate: float
    mean_ms: Mapping[Kind, float]
    p95_ms: Mapping[Kind, float]
    healthy: bool

    @classmethod
    def of(
        cls,
        counters: Mapping[str, tuple[int, float]],
        latencies: Mapping[str, list[float]],
        usage: tuple[int, int],
        *,
        healthy: bool,
    ) -> CacheStats:
        """From a store's `counters()`, `latencies()` and `usage()` (empty when it failed)."""
        counts = {kind: counters.get(kind, (0, 0.0)) for kind in KINDS}
        lookups = sum(n for n, _ in counts.values())
        misses = counts["miss"][0]
        entries, size = usage
        return cls(
            lookups=lookups,
            exact_hits=counts["exact"][0],
            fuzzy_hits=counts["fuzzy"][0],
            coalesced=counts["coalesced"][0],
            misses=misses,
            evictions=counters.get("evictions", (0, 0.0))[0],
            entries=entries,
            bytes=size,
            hit_rate=(lookups - misses) / lookups if lookups else 0.0,
            mean_ms={kind: ms / n for kind, (n, ms) in counts.items() if n},
            p95_ms={kind: float(np.percentile(latencies[kind], 95)) for kind in KINDS if latencies.get(kind)},
            healthy=healthy,
        )

    def count(self, kind: Kind) -> int:
        """The number of requests whose outcome was `kind`."""
        return {
            "exact": self.exact_hits,
            "fuzzy": self.fuzzy_hits,
            "coalesced": self.coalesced,
            "miss": self.misses,
        }[kind]
