"""Which results the byte budget gives up first: a segmented LRU with pinned entries.

A plain LRU lets one visitor flush everyone: a stream of unique uploads (noise, say) pushes
every other result out, the examples included. So the budget is split three ways, by what
an entry has earned, and both backends evict in this order:

* probation: every new entry. The byte budget evicts here first, least recently used
  first, so a flood of one-off misses only churns among itself and the other entries that
  nobody came back for;
* protected: an entry that was served again, by another client than the one that stored it
  when the caller says who asks (`owner_of`), so that re-uploading one's own photos earns
  nothing. Evicted only once probation is empty. Protected entries take at most
  `PROTECTED_SHARE` of the budget: beyond it, the least recently used go back to probation
  (keeping their place in time), so the segment cannot fill the cache with old favourites;
* pinned: what the caller pins (the app's examples). Never evicted by the budget and never
  expired by the TTL while pinned: they are the app's own pictures, not visitors' uploads.
  Pinned entries take at most `PINNED_SHARE` of the budget: a pin beyond it unpins the
  least recently used pins first (they become protected entries that expire one TTL later,
  so the pins of an older model or setting leave once newer ones need the room). An entry
  too large for the share on its own is stored protected.

The TTL still applies to probation and protected entries as stored.
"""

from __future__ import annotations

import hashlib

#: Largest share of the byte budget that protected entries may hold.
PROTECTED_SHARE = 1 / 2
#: Largest share of the byte budget that pinned entries may hold.
PINNED_SHARE = 1 / 8


def owner_of(client: str | None) -> str | None:
    """What the store keeps of the client that stored an entry: a short hash, never the id
    (a session hash or an address) itself; None when the caller did not say."""
    if client is None:
        return None
    return hashlib.blake2b(client.encode(), digest_size=8, person=b"cache-owner").hexdigest()
