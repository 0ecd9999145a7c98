"""The app end to end: real and no-op Gradio apps driven by `gradio_client`, and the replay.

`python -m bench.e2e` (`run.py`) runs the parts and writes bench/results/e2e.{json,md}:
`latency.py` (per outcome, identical bursts), `load.py` (hits while the model is busy,
many clients at once), `replay.py` (the seed's workload, four ways of caching) and
`curves.py` (look-up time and threshold sweeps). `apps.py` starts the servers,
`noop_app.py` is the floor under any request, `workloads.py` the uploads,
`seed_baseline.py` the seed's cache; `markdown.py` and `plots.py` write the results.
"""
