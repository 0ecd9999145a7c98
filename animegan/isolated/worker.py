"""A decoding worker: `python -m animegan.isolated.worker FD MEMORY_BYTES [SHARED_FD SHARED_BYTES]`.

Runs in a process of its own, started by `WorkerPool`, and serves one job at a time over
the socket `FD`. Everything an untrusted file can make a decoder do happens here, where it
cannot touch the server: its address space is capped (`MEMORY_BYTES` above what the worker
takes once its modules are loaded), each job's CPU time is capped by the kernel as a
backstop to the pool's own watchdog, and it never writes a core file. It keeps the
server's priority: a near-duplicate hit's decode runs here and must not wait behind the
model in the server. A worker that hit its memory limit exits after answering, since
a C library may be left in an odd state; the pool starts a fresh one.

Replies are JSON headers and raw payloads (`protocol`), never pickles; a job's one reply
puts its payloads in the shared region `SHARED_FD` when the server gave one.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection

from animegan.errors import AnimeGANError
from animegan.isolated import jobs
from animegan.isolated.protocol import CLIP_JOBS_ENV, Message, ProtocolError, SharedRegion, receive, send
from animegan.isolated.wire import Job

#: Largest request the worker reads: the upload cap plus room for the header.
MAX_REQUEST_BYTES = 300 << 20


def main(argv: list[str]) -> int:
    fd, memory = int(argv[0]), int(argv[1])
    conn = Connection(fd)
    shared = SharedRegion(int(argv[2]), int(argv[3])) if len(argv) >= 4 else None
    served = _jobs(os.environ.get(CLIP_JOBS_ENV) == "1")
    jobs.configure(memory)
    _limit_process(memory)  # after mapping the region: it counts in the baseline
    send(conn, {"ready": True})
    while True:
        try:
            request = receive(conn, MAX_REQUEST_BYTES)
        except (EOFError, OSError, ProtocolError):
            return 0
        if not _serve(conn, request, served, shared):
            return 0


def _jobs(clips: bool) -> dict[str, Job]:
    """The jobs this worker runs: photo jobs, and clip jobs for a clip worker (a photo worker
    never loads PyAV: 90 ms and 16 MB less per start)."""
    if not clips:
        return jobs.JOBS
    from animegan.isolated import clip_jobs

    return {**jobs.JOBS, **clip_jobs.JOBS}


def _serve(
    conn: Connection, request: Message, served: dict[str, Job], shared: SharedRegion | None = None
) -> bool:
    """Run one job and send its replies; False when this worker should exit now."""
    job = served.get(str(request.header.get("job")))
    _limit_cpu(float(request.header.get("cpu_s", 10.0)))
    try:
        if job is None:
            raise ValueError(f"unknown job {request.header.get('job')!r}")
        result = job(request.header.get("args", {}), request.payloads)
        if isinstance(result, Iterator):
            for reply in result:
                send(conn, {"ok": True, "more": True, **reply.header}, reply.payloads)
            send(conn, {"ok": True, "more": False, "end": True})
        else:
            # a job's one reply: the server copies it out before it sends the next job
            send(conn, {"ok": True, "more": False, **result.header}, result.payloads, shared)
    except AnimeGANError as exc:
        send(conn, {"ok": False, "error": type(exc).__name__, "reason": _reason(exc), "message": str(exc)})
    except MemoryError:
        send(conn, {"ok": False, "error": "MemoryError"})
        return False
    except Exception as exc:
        traceback.print_exc(limit=4, file=sys.stderr)
        send(conn, {"ok": False, "error": "unexpected", "message": f"{type(exc).__name__}: {exc}"[:200]})
    return True


def _reason(exc: AnimeGANError) -> str | None:
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) else None


def _limit_process(memory: int) -> None:
    """Cap the address space at what the worker uses now plus `memory`; no core files."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        baseline = _virtual_size()
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = baseline + memory
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _limit_cpu(seconds: float) -> None:
    """The kernel stops this process (SIGXCPU) once this job has used `seconds` of CPU and a
    second more: a backstop for a watchdog that could not act (the pool's kills first)."""
    used = time.process_time()
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(used + seconds) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _virtual_size() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
