"""The test suite: `make test` (pytest). Shared helpers live in `tests.support`."""
