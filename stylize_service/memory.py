"""Giving freed image buffers back to the system at once.

glibc raises its mmap threshold each time a large block is freed, up to 32 MB, so later
buffers up to that size (a decoded photo, its conversion strips) come from the heap and
stay in the process when freed. On a server that decodes large uploads between inferences
the resident size then ratchets up by hundreds of MB (measured: a 25 MP 16-bit PNG peaked
348 MB above the model's largest working set; with the threshold fixed, 29 MB; see
bench/results/hostile.md). Fixing the threshold at 1 MiB keeps every large buffer a
mapping of its own, unmapped when freed; small allocations, the hit path's, are unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

#: mallopt's parameter number for the mmap threshold (glibc's malloc.h).
M_MMAP_THRESHOLD = -3
#: Blocks at least this large are mapped on their own and returned when freed.
THRESHOLD = 1 << 20


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold; False (and nothing changed) on another C library."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    log.debug("mmap threshold fixed at %d bytes: %s", THRESHOLD, done)
    return done
