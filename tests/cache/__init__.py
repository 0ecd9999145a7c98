"""Tests of cache_store: both tiers, both backends, faults, limits and the near-duplicate contract."""
