"""Statistics count what the caller records, once per request, with the latency its user saw;
lookups (a warm-up's included) record nothing by themselves."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from cache_store import Fingerprint, ResultCache
from tests.support.cache import reencode, stored_print, synthetic_fingerprint, value_for

NS = "ns"


def test_lookups_record_nothing_and_record_counts_what_it_is_given(
    location: Path | str, fitted: dict[str, Image.Image]
) -> None:
    image = next(iter(fitted.values()))
    fp, variant = stored_print(image, raw_sha="ab" * 32), Fingerprint.of(reencode(image, "JPEG", quality=70))
    other = synthetic_fingerprint(1)
    with ResultCache(location) as cache:
        cache.put(NS, fp, value_for(fp, 5_000), {}, pinned=True)  # a warm-up's entry
        kinds = [
            cache.get_or_compute(NS, other, lambda: (value_for(other, 5_000), {})).kind,
            cache.lookup_raw(NS, fp.raw_sha).kind,
            cache.lookup(NS, variant).kind,
            cache.get_or_compute(NS, other, lambda: (b"never", {})).kind,
        ]
        assert kinds == ["miss", "exact", "fuzzy", "exact"]
        assert cache.stats().lookups == 0
        for kind, ms in [("miss", 1500.0), ("exact", 210.0), ("exact", 190.0), ("fuzzy", 230.0)]:
            cache.record(kind, ms)  # the badge's latency: from the request's arrival
        stats = cache.stats()
    assert (stats.lookups, stats.misses, stats.exact_hits, stats.fuzzy_hits, stats.coalesced) == (
        4,
        1,
        2,
        1,
        0,
    )
    assert stats.hit_rate == 3 / 4
    assert stats.mean_ms == {"miss": 1500.0, "exact": 200.0, "fuzzy": 230.0}
    assert stats.p95_ms["exact"] == pytest.approx(209.0) and stats.p95_ms["miss"] == 1500.0


@pytest.mark.parametrize(
    ("kind", "ms"), [("hit", 1.0), ("exact", -1.0), ("exact", math.nan), ("miss", math.inf)]
)
def test_record_refuses_what_is_not_an_outcome(tmp_path: Path, kind: str, ms: float) -> None:
    with ResultCache(tmp_path) as cache, pytest.raises(ValueError):
        cache.record(kind, ms)  # type: ignore[arg-type]
    with ResultCache(tmp_path) as cache:
        assert cache.stats().lookups == 0
