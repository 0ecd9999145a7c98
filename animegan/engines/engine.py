"""A style's engine: the torch stylizer at once, a faster runtime as soon as it is ready.

``load_engine`` returns a ``StyleEngine`` whose ``current()`` is the runner to use *now*.
When the converted OpenVINO model is in the store already (every start but a machine's
first), it is read and checked at once (a fraction of a second), so the process runs on it
from its first request and never switches. Otherwise ``current()`` starts as the torch
stylizer (the reference, and the fallback) while a background thread builds the model in a
low-priority child process (tens of seconds), checks it on a probe against float32 torch,
and then switches ``current()`` to it. Anything that
goes wrong (no OpenVINO, a CPU it does not support, a failed build or check, a failure at
run time) is logged once and leaves the torch engine serving: never a failed request.

What "auto" picks, in order, on a CPU (a GPU keeps torch):

1. OpenVINO int8 (convolutions in int8, the sensitive ones and the rest in bf16 where the
   CPU computes bf16 natively, else fp32), when the style has an int8 recipe, NNCF is
   installed, the CPU has int8 dot products (VNNI or AMX) and calibration photos exist;
2. OpenVINO at bf16 (native bf16) or fp32;
3. torch (``animegan.inference``).

Each was measured faster than the next, at a PSNR against float32 within the bound
(bench/results/engine.md).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from animegan.engines.build import INT8_KEEP, RECIPE_VERSION, calibration_photos
from animegan.engines.runner import Runner
from animegan.engines.store import ModelStore, StoreKey, default_root
from animegan.inference import Stylizer, default_device, load_stylizer
from animegan.precision import _cpu_flags, native_bf16
from animegan.precision_choices import ENGINE_PRECISIONS, ENGINES, PRECISIONS
from animegan.styles import DEFAULT_STYLE, get_style
from animegan.weights import ensure_weights

log = logging.getLogger(__name__)

#: A build that takes longer than this is abandoned (torch keeps serving).
BUILD_TIMEOUT_S = 900.0
#: CPU flags of native int8 dot products; without them int8 gains little over bf16/fp32.
_INT8_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Option:
    """One faster model to try: the converted ``kind`` ("fp32" or "int8") compiled with
    inference precision ``hint`` ("bf16" or "f32") for what is not int8."""

    kind: str
    hint: str


def plan(arch: str, engine: str, precision: str, device: str) -> list[Option]:
    """The OpenVINO models to try for these settings, best first ([] = torch only)."""
    if engine == "torch" or not device.startswith("cpu"):
        return []
    rest = "bf16" if native_bf16("cpu") else "f32"
    if precision == "fp32":
        return [Option("fp32", "f32")]
    if precision == "bf16":
        return [Option("fp32", "bf16")]
    if precision == "int8":
        return [Option("int8", rest)]
    int8 = (
        arch in INT8_KEEP
        and importlib.util.find_spec("nncf") is not None
        and bool(_cpu_flags() & _INT8_FLAGS)
        and bool(calibration_photos())
    )
    return ([Option("int8", rest)] if int8 else []) + [Option("fp32", rest)]


_logged: set[str] = set()
_logged_lock = threading.Lock()


def _log_once(level: int, message: str, *args: object) -> None:
    text = message % args
    with _logged_lock:
        if text in _logged:
            return
        _logged.add(text)
    log.log(level, text)


class StyleEngine:
    """The engines of one style; ``current()`` is the runner to use now. Thread-safe."""

    def __init__(
        self,
        fallback: Stylizer,
        weights: Path,
        options: list[Option],
        *,
        store: ModelStore | None = None,
        strict: bool = False,
    ) -> None:
        self.fallback = fallback
        self.weights = weights
        self.options = options
        self.store = store or ModelStore()
        #: What happened, for logs and tests: "torch", "building", "ready", "fallback: why".
        self.status = "building" if options else "torch"
        #: Converted models built (not read from the store) by this engine.
        self.builds = 0
        self._strict = strict  # the user asked for OpenVINO by name: failures are errors
        self._fast: Runner | None = None
        self._lock = threading.Lock()
        self._settled = threading.Event()
        self._thread: threading.Thread | None = None
        if not options:
            self._settled.set()

    def __repr__(self) -> str:
        return (
            f"StyleEngine({self.fallback.style.name!r}, current={self.current()!r}, status={self.status!r})"
        )

    def start(self) -> StyleEngine:
        """Settle: at once when the best option is already in the store (reading it takes a
        fraction of a second, and a process that starts on it never switches engines), else
        in a background thread (returns at once)."""
        if self._thread is not None or self._settled.is_set():
            return self
        stored = self._stored(self.options[0])
        if stored is not None and self._try(self.options[0], stored):
            self._settled.set()
            return self
        name = f"engine-{self.fallback.style.name}"
        self._thread = threading.Thread(target=self.settle, name=name, daemon=True)
        self._thread.start()
        return self

    def current(self) -> Runner:
        """The runner to use now: the faster engine once ready, else torch."""
        fast = self._fast
        return fast if fast is not None else self.fallback

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the background work has settled, either way; False on timeout."""
        return self._settled.wait(timeout)

    def settle(self) -> None:
        """Try each option in turn; the first that loads and passes its probe wins."""
        try:
            missing = _runtime_problem()
            if missing is not None:
                self._give_up(f"OpenVINO is not usable here ({missing})")
                return
            if not any(self._try(option) for option in self.options):
                self._give_up("no OpenVINO model could be loaded")
        finally:
            self._settled.set()

    def _try(self, option: Option, folder: Path | None = None) -> bool:
        """Load ``option`` (from ``folder``, found in the store already, else from the store,
        else built) and switch to it; False if it fails."""
        try:
            self._fast = self._load(option, folder)
        except Exception as exc:  # a native converter raises anything
            _log_once(
                logging.WARNING,
                "engine: OpenVINO %s for style %s is not used: %s",
                option.kind,
                self.fallback.style.name,
                exc,
            )
            return False
        self.status = "ready"
        log.info("engine: %s now runs on %r", self.fallback.style.name, self._fast)
        return True

    def _stored(self, option: Option) -> Path | None:
        """``option``'s folder in the store (checked), if OpenVINO runs here and it is there."""
        if _runtime_problem() is not None:
            return None
        try:
            return self.store.find(self._key(option))
        except Exception:  # an unreadable store: the background path logs it
            return None

    def disable(self, runner: Runner, exc: BaseException) -> None:
        """Switch ``runner`` off after a run-time failure: torch serves from now on."""
        with self._lock:
            if self._fast is runner:
                self._fast = None
                self.status = f"fallback: {type(exc).__name__} at run time"
        _log_once(
            logging.ERROR,
            "engine: %r failed at run time (%s: %s); style %s runs on torch from now on",
            runner,
            type(exc).__name__,
            exc,
            self.fallback.style.name,
        )

    # -- loading ---------------------------------------------------------------------------

    def _give_up(self, why: str) -> None:
        self.status = f"fallback: {why}"
        level = logging.ERROR if self._strict else logging.INFO
        _log_once(level, "engine: style %s runs on torch: %s", self.fallback.style.name, why)

    def _key(self, option: Option) -> StoreKey:
        from animegan.engines.openvino_runner import runtime_version

        return StoreKey(
            style=self.fallback.style.name,
            weights_sha256=self.fallback.weights_sha256,
            runtime="openvino",
            runtime_version=runtime_version(),
            kind=option.kind,
            recipe=RECIPE_VERSION,
        )

    def _load(self, option: Option, folder: Path | None = None) -> Runner:
        from animegan.engines import openvino_runner as ovr

        if folder is None:
            key = self._key(option)
            folder = self.store.find(key) or self._build(key)
        model = ovr.read_folder(folder)
        compiled = ovr.compile_model(model, option.hint)
        precision = ovr.compiled_precision(compiled, option.kind)
        quality = ovr.probe_psnr(compiled, folder)
        bound = ovr.MIN_PROBE_PSNR_DB[precision.split("+")[0]]
        if quality < bound:
            raise RuntimeError(f"its probe is {quality:.1f} dB from float32, below {bound:.0f} dB")
        return ovr.OpenVINORunner(
            self.fallback, compiled, precision, self.disable, partial(ovr.compile_model, model, option.hint)
        )

    def _build(self, key: StoreKey) -> Path:
        """Build ``key`` in a low-priority child process and publish it in the store."""
        temp = self.store.temp_folder(key)
        started = time.perf_counter()
        log.info("engine: building OpenVINO %s for style %s in the background", key.kind, key.style)
        try:
            command = build_command(self.fallback.style.name, self.weights, key.kind, temp)
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=_child_env()
            )
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"the build exited with {done.returncode}: {tail[0]}")
            facts = json.loads(done.stdout.strip().splitlines()[-1])
            folder = self.store.publish(temp, key, facts)
        except BaseException:
            self.store.discard(temp)
            raise
        self.builds += 1
        log.info("engine: built %s in %.1f s", folder.name, time.perf_counter() - started)
        return folder


def build_command(style: str, weights: Path, kind: str, out: Path) -> list[str]:
    """The child process that builds one model (see ``animegan.engines.build``)."""
    return [
        sys.executable,
        "-m",
        "animegan.engines.build",
        "--style",
        style,
        "--weights",
        str(weights),
        "--kind",
        kind,
        "--out",
        str(out),
    ]


def _child_env() -> dict[str, str]:
    """This environment, with this package importable whatever the working directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
    return env


def _runtime_problem() -> str | None:
    """Why OpenVINO cannot run here, or None."""
    if importlib.util.find_spec("openvino") is None:
        return "the openvino package is not installed"
    try:
        from animegan.engines.openvino_runner import core

        if "CPU" not in core().available_devices:
            return "its CPU plugin does not support this CPU"
    except Exception as exc:  # a broken install raises anything
        return f"{type(exc).__name__}: {exc}"
    return None


_engines: dict[tuple[str, ...], StyleEngine] = {}
_engines_lock = threading.Lock()


def load_engine(
    style: str = DEFAULT_STYLE,
    weights_dir: str | os.PathLike[str] | None = None,
    engine: str = "auto",
    precision: str = "auto",
    device: str | None = None,
    *,
    allow_download: bool = True,
    store_dir: str | os.PathLike[str] | None = None,
    background: bool = True,
) -> StyleEngine:
    """The shared ``StyleEngine`` for ``style`` and these settings (loaded once).

    ``engine`` is "auto", "torch" or "openvino"; ``precision`` "auto", "fp32", "bf16" or
    "int8" ("int8" needs OpenVINO). The torch stylizer is loaded before this returns; the
    faster engine settles in the background (``background=False``: before it returns).
    ``store_dir`` holds converted models (default: ``<user cache>/engines``).
    """
    chosen_style = get_style(style)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if precision not in ENGINE_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(ENGINE_PRECISIONS)}, not {precision!r}")
    if engine == "torch" and precision not in PRECISIONS:
        raise ValueError(f"the torch engine runs {', '.join(PRECISIONS[1:])}, not {precision!r}")
    device = device or default_device()
    fallback = load_stylizer(
        style,
        weights_dir,
        precision if precision in PRECISIONS else "auto",
        device,
        allow_download=allow_download,
    )
    weights = ensure_weights(chosen_style, weights_dir, allow_download=allow_download).resolve()
    root = Path(store_dir).resolve() if store_dir is not None else default_root()
    key = (chosen_style.name, str(weights), engine, precision, device, str(root))
    with _engines_lock:
        found = _engines.get(key)
        if found is None:
            options = plan(chosen_style.arch, engine, precision, device)
            found = _engines[key] = StyleEngine(
                fallback, weights, options, store=ModelStore(root), strict=engine == "openvino"
            )
            if background:
                found.start()
    if not background:
        found.start().wait_ready()
    return found
