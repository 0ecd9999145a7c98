"""The vectorized pHash scan must agree with a plain Python scan, row for row."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache_store.hamming import HammingIndex, popcount64, popcount_lut

U64 = st.integers(0, 2**64 - 1)


@st.composite
def rows_near(draw: st.DrawFn) -> tuple[int, list[int]]:
    """A query and hashes of which many lie a few bits from it (so matches exist)."""
    query = draw(U64)
    flips = st.lists(st.integers(0, 63), max_size=12).map(lambda bits: query ^ sum({1 << b for b in bits}))
    return query, draw(st.lists(st.one_of(U64, flips), max_size=200))


def brute_force(rows: dict[int, int], query: int, threshold: int) -> list[tuple[int, int]]:
    found = [(bin(h ^ query).count("1"), -seq) for seq, h in rows.items()]
    return [(-neg_seq, d) for d, neg_seq in sorted(found) if d <= threshold]


@settings(max_examples=150, deadline=None)
@given(case=rows_near(), threshold=st.integers(0, 64), removed=st.sets(st.integers(1, 220)), data=st.data())
def test_scan_equals_brute_force(case, threshold, removed, data) -> None:
    query, hashes = case
    index = HammingIndex()
    rows: dict[int, int] = {}
    seq = 0
    # several batches with removals in between, as the tier sees them from other processes
    for batch in np.array_split(np.array(hashes, dtype=np.uint64), data.draw(st.integers(1, 4))):
        seqs = np.arange(seq + 1, seq + 1 + len(batch), dtype=np.int64)
        seq += len(batch) + data.draw(st.integers(0, 3))  # gaps, as after other namespaces' rows
        index.extend(seqs, batch)
        rows.update(zip(seqs.tolist(), (int(h) for h in batch), strict=True))
        gone = [s for s in removed if s in rows and data.draw(st.booleans())]
        index.discard(np.array(gone, dtype=np.int64))
        for s in gone:
            del rows[s]
    assert len(index) == len(rows)
    assert index.nearest(query, threshold, limit=len(hashes) + 1) == brute_force(rows, query, threshold)


@settings(max_examples=50, deadline=None)
@given(words=st.lists(U64, max_size=64))
def test_lut_popcount_equals_bitwise_count(words) -> None:
    array = np.array(words, dtype=np.uint64)
    expected = [bin(w).count("1") for w in words]
    assert popcount_lut(array).tolist() == expected
    assert popcount64(array).tolist() == expected


def test_limit_keeps_the_nearest() -> None:
    index = HammingIndex()
    index.extend(np.arange(1, 5, dtype=np.int64), np.array([0b111, 0b1, 0b11, 0], dtype=np.uint64))
    assert index.nearest(0, 64, limit=2) == [(4, 0), (2, 1)]


def test_rows_must_arrive_in_order() -> None:
    index = HammingIndex()
    index.extend(np.array([5], dtype=np.int64), np.array([1], dtype=np.uint64))
    with pytest.raises(ValueError):
        index.extend(np.array([5], dtype=np.int64), np.array([2], dtype=np.uint64))
