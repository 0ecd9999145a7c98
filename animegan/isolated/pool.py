"""A pool of decoding worker processes, each job held to a CPU-time budget and a deadline.

The server hands a job to an idle worker and waits on its socket. While it waits it
watches the worker's CPU time (from /proc, every `WATCH_S`): a job that uses more than its
budget, or that has not answered by its deadline, is killed with its worker, which a fresh
one replaces in the background. The budget is CPU time, not wall time, so a busy machine
slows ordinary decodes without failing them, while a file crafted to spin the decoder is
stopped after the same CPU time however busy the machine is. The worker's memory is capped
by the kernel (`worker`), so the pool's memory is at most `size` times that cap.

Workers are started with `subprocess` (not `multiprocessing`, which would re-import the
server's main module, Gradio and torch included, in every worker) and talk over a socket
pair; replies are never unpickled (`protocol`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from animegan.isolated.protocol import CLIP_JOBS_ENV, Message, ProtocolError, SharedRegion, receive, send

log = logging.getLogger(__name__)

#: How often a waiting caller looks at its worker's CPU time.
WATCH_S = 0.02
#: A worker is replaced after this many jobs (bounds slow leaks in decoders).
MAX_JOBS_PER_WORKER = 500
#: A worker must say it is ready within this long after it is started.
START_TIMEOUT_S = 30.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Budget:
    """What one job may take: CPU seconds, and wall seconds until each reply arrives."""

    cpu_s: float
    wall_s: float


class WorkerFailure(Exception):
    """A job did not complete: `why` is "cpu", "deadline", "memory", "crash" or "protocol"."""

    def __init__(self, why: str, detail: str = "") -> None:
        super().__init__(f"decoding worker {why}" + (f": {detail}" if detail else ""))
        self.why = why


class JobError(Exception):
    """The worker ran the job and reported an error (`header` says which)."""

    def __init__(self, header: dict[str, Any]) -> None:
        super().__init__(str(header.get("message") or header.get("error")))
        self.header = header


class Worker:
    """One worker process and the server's end of its socket."""

    def __init__(self, memory: int, env: dict[str, str]) -> None:
        mine, theirs = socket.socketpair()
        region = SharedRegion.create("animegan-worker-replies")
        #: Where the worker puts a job's reply pixels (None: down the socket).
        self.shared = region[0] if region else None
        command = [sys.executable, "-m", "animegan.isolated.worker", str(theirs.fileno()), str(memory)]
        passed = [theirs.fileno()]
        if region is not None:
            command += [str(region[1]), str(region[0].size)]
            passed.append(region[1])
        try:
            self.process = subprocess.Popen(
                command,
                pass_fds=passed,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal is the server's to handle
            )
        finally:
            theirs.close()
            if region is not None:
                os.close(region[1])  # the mapping stays
        self.conn = Connection(os.dup(mine.fileno()))
        mine.close()
        self.jobs = 0
        self.cpu_start = 0.0
        self.dead = False

    def ready(self) -> bool:
        """Wait for the worker's first message: loaded and limited, ready for jobs."""
        try:
            if self.conn.poll(START_TIMEOUT_S):
                return receive(self.conn, 0).header.get("ready") is True
        except (EOFError, OSError, ProtocolError):
            pass
        return False

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process has used (None where /proc cannot tell)."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def kill(self) -> None:
        self.dead = True
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(Exception):
            self.process.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.conn.close()
        self._unmap()

    def close(self) -> None:
        """Ask the worker to exit (end of its input), then make sure it did."""
        self.dead = True
        with contextlib.suppress(OSError):
            self.conn.close()
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
        self._unmap()

    def _unmap(self) -> None:
        """Release the reply region (the worker is gone, nothing reads it any more)."""
        if self.shared is not None:
            with contextlib.suppress(Exception):
                self.shared.close()

    def failure(self) -> WorkerFailure:
        """Why the worker stopped answering, from how its process ended."""
        code = self.process.poll()
        if code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.process.wait(timeout=0.5)
        if code == -signal.SIGXCPU:
            return WorkerFailure("cpu", "the kernel's CPU limit")
        if code is not None and code < 0:
            return WorkerFailure("crash", f"killed by signal {-code}")
        return WorkerFailure("crash", f"exited with {code}")


class WorkerPool:
    """`size` warm workers, each capped at `memory` bytes above its own baseline.

    `call` runs a one-reply job, `stream` a job that replies many times; both raise
    `JobError` for an error the job reported and `WorkerFailure` when the worker broke a
    limit or died. Thread-safe; a caller waits for an idle worker (first come, first served:
    fairness between visitors is the caller's policy).
    """

    def __init__(
        self, size: int, memory: int, *, max_reply_bytes: int, name: str = "decode", clips: bool = False
    ) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self.memory = memory
        self.max_reply_bytes = max_reply_bytes
        self.name = name
        self._idle: queue.Queue[Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._live = 0
        self._closed = False
        self._env = _worker_env(clips)
        for _ in range(size):
            self._start_in_background()

    def call(self, job: str, args: dict[str, Any], payloads: list[bytes], budget: Budget) -> Message:
        with self._worker() as worker:
            reply = self._run(worker, job, args, payloads, budget)
            return self._checked(worker, reply)

    @contextlib.contextmanager
    def stream(
        self, job: str, args: dict[str, Any], payloads: list[bytes], budget: Budget
    ) -> Iterator[Iterator[Message]]:
        """`with pool.stream(...) as replies: for reply in replies: ...` (the CPU budget
        covers the whole job; the deadline each reply). Leaving early kills the worker."""
        with self._worker() as worker:
            finished = False

            def replies() -> Iterator[Message]:
                nonlocal finished
                reply = self._run(worker, job, args, payloads, budget)
                while True:
                    message = self._checked(worker, reply)
                    if message.header.get("end"):
                        finished = True
                        return
                    yield message
                    reply = self._next(worker, budget)

            try:
                yield replies()
            finally:
                if not finished and not worker.dead:
                    worker.kill()  # it may still be decoding or sending: start afresh

    def close(self) -> None:
        with self._lock:
            self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    # -- one job ------------------------------------------------------------------------

    def _run(
        self, worker: Worker, job: str, args: dict[str, Any], payloads: list[bytes], budget: Budget
    ) -> Message:
        worker.jobs += 1
        worker.cpu_start = worker.cpu_seconds() or 0.0
        try:
            send(worker.conn, {"job": job, "args": args, "cpu_s": budget.cpu_s}, payloads)
        except OSError as exc:
            worker.kill()
            raise WorkerFailure("crash", f"could not send the job: {exc}") from exc
        return self._next(worker, budget)

    def _next(self, worker: Worker, budget: Budget) -> Message:
        """The worker's next reply, waited for under the job's CPU budget and deadline."""
        deadline = time.monotonic() + budget.wall_s
        start = worker.cpu_start
        try:
            while not worker.conn.poll(WATCH_S):
                used = worker.cpu_seconds()
                if used is not None and used - start > budget.cpu_s:
                    worker.kill()
                    raise WorkerFailure("cpu", f"{used - start:.2f} s of CPU")
                if time.monotonic() > deadline:
                    worker.kill()
                    raise WorkerFailure("deadline", f"no answer within {budget.wall_s:g} s")
            return receive(worker.conn, self.max_reply_bytes, worker.shared)
        except ProtocolError as exc:
            worker.kill()
            raise WorkerFailure("protocol", str(exc)) from exc
        except (EOFError, OSError) as exc:
            failure = worker.failure()
            worker.kill()
            raise failure from exc

    @staticmethod
    def _checked(worker: Worker, reply: Message) -> Message:
        if reply.header.get("ok") is True:
            return reply
        if reply.header.get("error") == "MemoryError":
            worker.kill()
            raise WorkerFailure("memory")
        raise JobError(reply.header)

    # -- workers ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _worker(self) -> Iterator[Worker]:
        worker = self._take()
        try:
            yield worker
        finally:
            self._give_back(worker)

    def _take(self) -> Worker:
        self._start_in_background()  # a no-op unless a start failed earlier
        while True:
            try:
                worker = self._idle.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                raise WorkerFailure("crash", "no decoding worker became available") from None
            if worker.process.poll() is None:
                return worker
            self._retire(worker)

    def _give_back(self, worker: Worker) -> None:
        if self._closed:
            worker.close()
        elif worker.dead or worker.jobs >= MAX_JOBS_PER_WORKER:
            self._retire(worker)
        else:
            self._idle.put(worker)

    def _retire(self, worker: Worker) -> None:
        """Replace `worker` with a fresh one, started in the background."""
        if not worker.dead:
            worker.close()
        with self._lock:
            self._live -= 1
        self._start_in_background()

    def _start_in_background(self) -> None:
        with self._lock:
            if self._closed or self._live >= self.size:
                return
            self._live += 1
        threading.Thread(target=self._start_one, name=f"{self.name}-worker-start", daemon=True).start()

    def _start_one(self) -> None:
        """Start a worker and, once it is ready, make it available (counted in `_live` already)."""
        try:
            worker = Worker(self.memory, self._env)
        except OSError:
            log.exception("could not start a %s worker", self.name)
            worker = None
        if worker is not None and worker.ready():
            self._idle.put(worker)
            return
        if worker is not None:
            log.error("a %s worker did not start (exit status %s)", self.name, worker.process.poll())
            worker.kill()
        with self._lock:
            self._live -= 1


def _worker_env(clips: bool) -> dict[str, str]:
    """The server's environment, with the numeric libraries held to one thread each, and
    whether the workers run clip jobs too (only they load PyAV and its FFmpeg)."""
    env = dict(os.environ)
    env[CLIP_JOBS_ENV] = "1" if clips else "0"
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env
