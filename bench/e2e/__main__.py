"""`python -m bench.e2e`: the end-to-end benchmark and load test (see run.py)."""

from bench.e2e.run import main

raise SystemExit(main())
