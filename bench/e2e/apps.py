"""Start the real app and the no-op app on 127.0.0.1, and time calls to them.

Each app runs as a user runs it (`python app.py ...`) in its own process, stopped by a
context manager whatever happens, so no benchmark leaves a server behind. Every call
has a timeout, so no loop can hang on a server that stopped answering.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import REPO

CALL_TIMEOUT_S = 120.0
START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def _wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "/gradio_api/info", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"server did not come up in {START_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


@contextlib.contextmanager
def serve(args: list[str], workdir: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run `python <args> --port P` from the repo root; yield it once it answers; stop it."""
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, *args, "--port", str(port)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_until_up(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def real_app(
    workdir: Path, weights_dir: Path, *extra: str, env: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[Server]:
    """`app.py` with a fresh cache in `workdir`, offline, plus `extra` flags and `env`."""
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=workdir))
    return serve(
        ["app.py", "--cache-dir", str(cache), "--weights-dir", str(weights_dir), "--offline", *extra],
        workdir,
        env,
    )


def noop_app(workdir: Path, reply: Path | None = None) -> contextlib.AbstractContextManager[Server]:
    return serve(["-m", "bench.e2e.noop_app", *(["--reply", str(reply)] if reply else [])], workdir)


@dataclass
class Call:
    """One request: what was sent, what came back, and when (time.monotonic seconds)."""

    label: str
    sent: float
    received: float = 0.0
    kind: str = ""
    badge: str = ""
    info: dict = field(default_factory=dict)
    output: str = ""
    error: str = ""

    @property
    def ms(self) -> float:
        return (self.received - self.sent) * 1000


def client(url: str):
    """A gradio_client Client that downloads results to a private temp folder, as users do."""
    from gradio_client import Client

    return Client(
        url, verbose=False, analytics_enabled=False, download_files=tempfile.mkdtemp(prefix="client-")
    )


def call(client_, path: Path, label: str = "", api_name: str = "/stylize", style: str = "hayao") -> Call:
    """One timed predict; a failure is recorded on the Call, never raised."""
    from gradio_client import handle_file

    record = Call(label=label, sent=time.monotonic())
    try:
        output, badge, info = client_.submit(handle_file(str(path)), style, api_name=api_name).result(
            timeout=CALL_TIMEOUT_S
        )
        record.output, record.badge, record.info = str(output), str(badge), dict(info or {})
        record.kind = record.info.get("kind", "")
    except Exception as exc:
        record.error = f"{type(exc).__name__}: {exc}"[:300]
    record.received = time.monotonic()
    return record
