"""What one stylize request produced, and how it is reported to a person and to an API caller.

The badge text and the `cache_info` JSON are built here once, so the UI, the API and the
CLI all describe a result the same way; the app's cache panel names the kinds from the same
`KIND_LABELS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI's --help imports this module: no cache_store (and imagehash) for it
    from cache_store import Kind

#: How each kind of outcome is named to a person (the badge, the cache panel).
KIND_LABELS: dict[Kind, str] = {
    "exact": "exact hit",
    "fuzzy": "near-duplicate hit",
    "coalesced": "waited for an identical request",
    "miss": "generated",
}


def format_duration(ms: float) -> str:
    """'2 ms' below a second, '1.42 s' above: the precision a person can read."""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


@dataclass(frozen=True)
class Outcome:
    """A finished request: the PNG to show and how it was obtained.

    `kind` is one of exact, fuzzy, coalesced or miss. `cached` is False when the cache
    was skipped on purpose (regenerate) or is unavailable, so the badge can say so.
    """

    png: bytes
    kind: Kind
    style: str
    width: int
    height: int
    distance: int = 0
    threshold: int = 0
    latency_ms: float = 0.0
    cached: bool = True

    def badge(self) -> str:
        parts = [KIND_LABELS[self.kind]]
        if self.kind == "fuzzy":
            parts.append(f"distance {self.distance} of 64")
        parts.append(format_duration(self.latency_ms))
        text = " - ".join(parts)
        return text if self.cached else f"{text} (cache skipped)"

    def cache_info(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "distance": self.distance,
            "threshold": self.threshold,
            "latency_ms": round(self.latency_ms, 2),
            "style": self.style,
            "width": self.width,
            "height": self.height,
            "cached": self.cached,
        }
