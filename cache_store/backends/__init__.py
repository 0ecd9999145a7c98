"""The stores behind `ResultCache`, and which one a cache location names.

* `disk`: a local directory (diskcache plus side tables in its SQLite file), shared by the
  processes of one host; `disk_recovery` opens it, moving a corrupt store aside.
* `redis`: a Redis server, shared by replicas on many hosts.

Each implements the `Store` protocol (`cache_store.store`) and raises only its `StoreError`
family. Opening never fails the app: an unusable directory leaves the cache off, and an
unreachable Redis gives a store that answers every call with `StoreUnavailable` (a miss)
and reconnects by itself once Redis is back.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..store import Opened, StoreError, StoreUnavailable
from .disk_recovery import open_disk_store

log = logging.getLogger(__name__)

SERVER_SCHEMES = ("redis://", "rediss://", "unix://")

__all__ = ["SERVER_SCHEMES", "Opened", "as_location", "is_server_url", "open_backend"]


def is_server_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(SERVER_SCHEMES)


def as_location(location: str | Path) -> str | Path:
    """A URL stays text (a path would fold its "//"); anything else is a directory."""
    return location if isinstance(location, str) and "://" in location else Path(location)


def open_backend(location: str | Path, *, size_limit: int) -> Opened:
    """The store at `location`; `size_limit` applies to a directory (Redis has maxmemory)."""
    if not is_server_url(location):
        if isinstance(location, str) and "://" in location:
            log.warning("result cache URL %s is not a Redis URL, running uncached", location)
            return Opened(
                None, f"Result cache is off ({location} is not a {' / '.join(SERVER_SCHEMES)} URL)."
            )
        return open_disk_store(Path(location), size_limit=size_limit)
    from .redis import RedisStore  # the redis client is needed only for a Redis cache

    try:
        store = RedisStore(str(location))
    except ValueError as error:  # a malformed URL
        log.warning("result cache URL is not usable, running uncached: %s", error)
        return Opened(None, f"Result cache is off (bad cache URL: {error}); every photo is computed.")
    message = f"Result cache on Redis at {store.where}."
    try:
        warning = store.config_warning()
    except StoreUnavailable as error:
        log.warning("result cache: %s Serving uncached until it answers.", error)
        return Opened(store, message)
    except StoreError as error:  # e.g. INFO refused by an ACL: not a reason to go uncached
        warning = f"could not read Redis' memory settings ({error})."
    if warning:
        log.warning("result cache: %s", warning)
        message += f" Warning: {warning}"
    return Opened(store, message)
