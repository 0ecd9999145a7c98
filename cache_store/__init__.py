"""Two-tier result cache: exact (file / pixel sha256) and verified near-duplicate (pHash).

Knows nothing of torch, Gradio or the model: it caches "an image in, bytes out" under a
namespace string that the caller builds from everything that changes the output.
"""

from .fingerprint import PREVIEW_SIDE, Fingerprint
from .lookup import KINDS, Kind, Lookup
from .result_cache import DEFAULT_THRESHOLD, ResultCache
from .stats import CacheStats

__all__ = [
    "DEFAULT_THRESHOLD",
    "KINDS",
    "PREVIEW_SIDE",
    "CacheStats",
    "Fingerprint",
    "Kind",
    "Lookup",
    "ResultCache",
]
