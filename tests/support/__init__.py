"""Helpers the tests share (and some benchmarks reuse): a real app process, cache invariants,
a real Redis server, a scripted HTTP server, the photo sets, the near-duplicate contract's
harness and hostile files."""
