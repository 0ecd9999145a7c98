"""Decoding untrusted files in worker processes, where they cannot touch the server.

A crafted file can make a decoder spin for minutes holding the GIL (TIFF tags parsed in
pure Python), or allocate gigabytes (a huge lossy WebP), or crash it. In a worker process
none of that reaches the server: the kernel caps the worker's memory, a watchdog its CPU
time, and a worker that breaks a limit is killed and replaced while the server goes on
answering other visitors. The server itself only reads, sniffs and hashes bytes (`Upload`).

* `decoder`: `Upload` and `IsolatedDecoder`, the server's API (photos).
* `pool`: the worker processes, budgets and watchdog, for any job (video too).
* `worker`, `jobs`: what runs inside a worker; `protocol`: JSON headers and raw payloads
  between them, never pickles.
"""

from animegan.isolated.decoder import DEFAULT_WORKER_MEMORY, DEFAULT_WORKERS, IsolatedDecoder, Upload
from animegan.isolated.pool import Budget, JobError, WorkerFailure, WorkerPool

__all__ = [
    "DEFAULT_WORKERS",
    "DEFAULT_WORKER_MEMORY",
    "Budget",
    "IsolatedDecoder",
    "JobError",
    "Upload",
    "WorkerFailure",
    "WorkerPool",
]
