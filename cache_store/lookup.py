"""What a cache answer looks like to the caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

#: What a caller stores with a value and gets back with a hit: JSON-able metadata.
Meta = dict[str, Any]

Kind = Literal["exact", "fuzzy", "coalesced", "miss"]
#: Every kind, in the order a person reads them (fastest first).
KINDS: tuple[Kind, ...] = get_args(Kind)


@dataclass(frozen=True)
class Lookup:
    """One answer: the stored bytes plus how they were found.

    `kind` is "exact" (same file or same pixels), "fuzzy" (a verified near-duplicate,
    `distance` pHash bits away), "coalesced" (another caller computed this very key while
    we waited) or "miss" (computed by this call). `source_size` is the (width, height) of the
    fingerprinted image the entry was made from, so the caller can fit a fuzzy hit's output
    to its own upload.
    """

    kind: Kind
    value: bytes = field(repr=False)
    meta: Meta
    distance: int
    threshold: int
    latency_ms: float
    source_size: tuple[int, int]
