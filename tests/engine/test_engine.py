"""The OpenVINO engine beside the torch one: fidelity against float32, any photo size on one
converted model, the on-disk store (reused, atomic, a damaged file rebuilt), the fallback to
torch when the runtime is missing, a build fails or a run fails, and the cache namespace.

Builds are real (a child process converts, and for int8 quantizes, the real generator);
they go into a temporary store: one int8 build for the session and two fp32 builds.
"""

from __future__ import annotations

import io
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animegan.engines import EngineFailure, label, load_engine, openvino_runner
from animegan.engines import engine as engine_module
from animegan.engines.engine import StyleEngine, plan
from animegan.engines.openvino_runner import FIXED_SHAPES, OpenVINORunner
from animegan.engines.store import FILES, ModelStore
from animegan.inference import Stylizer, to_batch
from animegan.intake import open_image
from stylize_service import settings as settings_module
from stylize_service.service import StylizeService
from tests.support.app import TEST_MAX_SIDE

#: The issue's bound: worst PSNR of the int8 engine against float32 torch, in dB.
MIN_PSNR_DB = 40.0


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float(np.mean(diff**2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.fixture(scope="session")
def cache_home(tmp_path_factory) -> Path:
    """A user cache folder of this session's own: its engines/ is the model store."""
    return tmp_path_factory.mktemp("user-cache")


@pytest.fixture(scope="session")
def int8_engine(weights_dir, cache_home) -> StyleEngine:
    """Hayao on OpenVINO int8, built once (the session's one int8 build)."""
    engine = load_engine(
        "hayao", weights_dir, "openvino", "int8", "cpu", store_dir=cache_home / "animegan" / "engines"
    )
    assert engine.wait_ready(600)
    return engine


def test_int8_engine_matches_float32_torch_on_photos(int8_engine, fp32_stylizer, photo_paths):
    runner = int8_engine.current()
    assert isinstance(runner, OpenVINORunner) and int8_engine.status == "ready"
    assert runner.engine == "openvino" and runner.precision.startswith("int8")
    assert runner.style.name == "hayao" and runner.weights_sha256 == fp32_stylizer.weights_sha256
    scores = []
    for path in photo_paths[::5]:
        image = open_image(path).fit(512).rgb
        scores.append(psnr(runner.stylize(image), fp32_stylizer.stylize(image)))
    assert min(scores) >= MIN_PSNR_DB, scores


@pytest.mark.parametrize("size", [(300, 451), (517, 333), (97, 61), (8, 8)])
def test_any_size_runs_on_the_one_converted_model(int8_engine, fp32_stylizer, scene, size):
    runner = int8_engine.current()
    compiled, builds = runner._compiled, int8_engine.builds
    image = scene.resize(size)
    progress: list[float] = []
    out = runner.stylize(image, progress=progress.append)
    assert out.size == size and out.mode == "RGB" and progress == [0.0, 1.0]
    assert psnr(out, fp32_stylizer.stylize(image)) >= (MIN_PSNR_DB if min(size) >= 64 else 30.0)
    assert int8_engine.current() is runner and runner._compiled is compiled and int8_engine.builds == builds


def test_stylize_batch_gives_what_stylize_gives(int8_engine, scene):
    runner = int8_engine.current()
    frames = [scene.resize((320, 214)), scene.resize((320, 214)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    for _ in range(2):  # the size seen twice: from now on its fixed-shape model runs it
        runner.stylize(frames[0])
    batch = runner.stylize_batch(frames)
    singles = [runner.stylize(frame) for frame in frames]
    assert all(np.array_equal(np.asarray(b), np.asarray(s)) for b, s in zip(batch, singles, strict=True))


def test_a_size_seen_again_runs_on_a_model_compiled_for_that_shape(int8_engine, fp32_stylizer, scene):
    runner = int8_engine.current()
    sizes = [(331, 217), (217, 331), (301, 203)]
    shapes = [tuple(to_batch([scene.resize(size)], runner._stride).shape) for size in sizes]
    image = scene.resize(sizes[0])
    first = runner.stylize(image)  # a first sighting: the dynamic model, no compile
    assert shapes[0] not in runner.fixed.shapes
    again = runner.stylize(image)
    assert runner.fixed.shapes[-1] == shapes[0]
    # as faithful as the dynamic model (int8 rounds a little differently per compile)
    expected = fp32_stylizer.stylize(image)
    assert min(psnr(first, expected), psnr(again, expected)) >= MIN_PSNR_DB
    for size in sizes[1:]:
        runner.stylize(scene.resize(size))
        runner.stylize(scene.resize(size))
    # the most recently used are kept, the oldest dropped: memory stays bounded
    assert runner.fixed.shapes == shapes[-FIXED_SHAPES:] and shapes[0] not in runner.fixed.shapes


def test_a_failed_fixed_shape_compile_leaves_the_dynamic_model_running(int8_engine, scene, caplog):
    runner = int8_engine.current()
    calls: list[tuple[int, ...]] = []

    def broken(shape: tuple[int, ...]):
        calls.append(shape)
        raise RuntimeError("no memory for it")

    dynamic_only = OpenVINORunner(runner.fallback, runner._compiled, runner.precision, print, broken)
    image = scene.resize((203, 141))
    with caplog.at_level(logging.WARNING, logger="animegan.engines.openvino_runner"):
        outputs = [dynamic_only.stylize(image) for _ in range(3)]
    assert len(calls) == 1 and dynamic_only.fixed.shapes == []
    assert all(np.array_equal(np.asarray(out), np.asarray(outputs[0])) for out in outputs)
    assert sum("fixed shape" in record.getMessage() for record in caplog.records) == 1


def test_sizes_that_keep_changing_cost_at_most_a_share_in_compiles(monkeypatch):
    """Three sizes in turn for two kept shapes would compile on every call; the budget holds
    compiling to its share of the model's time (here with no allowance up front)."""
    monkeypatch.setattr(openvino_runner, "COMPILE_ALLOWANCE_S", 0.0)
    compiled: list[tuple[int, ...]] = []

    class Compiled:
        def create_infer_request(self):
            return object()

    def compile_shape(shape: tuple[int, ...]):
        compiled.append(shape)
        time.sleep(0.02)
        return Compiled()

    fixed = openvino_runner.FixedShapes(compile_shape, capacity=2)
    shapes = [(1, 3, 64, 64 + 4 * k) for k in range(3)]
    calls = 90
    for call in range(calls):
        fixed.request(shapes[call % 3])
        fixed.ran(0.02)  # each run as long as a compile
    # unbounded, every call from the fourth on would compile (87); the share allows 1 in 10
    assert 3 <= len(compiled) <= calls * openvino_runner.COMPILE_SHARE + 2


def test_images_above_the_tile_budget_go_to_the_torch_tiles(int8_engine, scene):
    runner = int8_engine.current()
    small_budget = OpenVINORunner(runner.fallback.retiled(128), runner._compiled, runner.precision, print)
    image = scene.resize((300, 200))
    assert np.array_equal(
        np.asarray(small_budget.stylize(image)), np.asarray(runner.fallback.retiled(128).stylize(image))
    )


def test_store_is_reused_and_a_damaged_file_rebuilt(weights_dir, tmp_path, fp32_stylizer, scene):
    fallback = load_engine("hayao", weights_dir, "torch", "fp32", "cpu").current()
    assert isinstance(fallback, Stylizer)
    weights = weights_dir / fallback.style.filename
    store = ModelStore(tmp_path / "engines")
    options = plan("animeganv2", "openvino", "fp32", "cpu")

    first = StyleEngine(fallback, weights, options, store=store).start()
    assert first.wait_ready(300) and first.builds == 1 and isinstance(first.current(), OpenVINORunner)
    [folder] = list(store.root.iterdir())  # published whole: no temporary folder left
    assert not folder.name.startswith(".tmp") and {p.name for p in folder.iterdir()} >= set(FILES)

    again = StyleEngine(fallback, weights, options, store=store).start()
    assert again.wait_ready(60) and again.builds == 0 and isinstance(again.current(), OpenVINORunner)

    blob = bytearray((folder / "model.bin").read_bytes())
    blob[len(blob) // 2 : len(blob) // 2 + 64] = bytes(64)  # a damaged block of weights
    (folder / "model.bin").write_bytes(bytes(blob))
    rebuilt = StyleEngine(fallback, weights, options, store=store).start()
    assert rebuilt.wait_ready(300) and rebuilt.builds == 1
    image = scene.resize((256, 170))
    assert psnr(rebuilt.current().stylize(image), fp32_stylizer.stylize(image)) >= 60


def test_a_failed_build_leaves_torch_serving_and_is_logged_once(
    weights_dir, tmp_path, monkeypatch, caplog, fp32_stylizer
):
    fail = [sys.executable, "-c", "import sys; sys.exit('simulated conversion failure')"]
    monkeypatch.setattr(engine_module, "build_command", lambda *args: fail)
    weights = weights_dir / fp32_stylizer.style.filename
    store = ModelStore(tmp_path / "engines")
    options = plan("animeganv2", "openvino", "fp32", "cpu")
    with caplog.at_level(logging.INFO, logger="animegan.engines"):
        for _ in range(2):
            engine = StyleEngine(fp32_stylizer, weights, options, store=store).start()
            assert engine.wait_ready(60) and engine.current() is fp32_stylizer
            assert engine.status.startswith("fallback")
    failures = [r for r in caplog.records if "simulated conversion failure" in r.getMessage()]
    assert len(failures) == 1
    assert not any(store.root.iterdir())  # the half-built folder is gone


def test_a_missing_runtime_leaves_torch_serving(weights_dir, tmp_path, monkeypatch, fp32_stylizer):
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an environment without it looks like
    weights = weights_dir / fp32_stylizer.style.filename
    engine = StyleEngine(fp32_stylizer, weights, plan("animeganv2", "auto", "auto", "cpu"))
    engine.start()
    assert engine.wait_ready(30) and engine.current() is fp32_stylizer
    assert "not installed" in engine.status


def test_a_run_time_failure_switches_to_torch_and_the_request_is_retried(
    int8_engine, weights_dir, cache_home, tmp_path, monkeypatch, scene
):
    from cache_store import ResultCache

    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))  # the session's store: no new build
    cache = ResultCache(tmp_path / "cache")
    service = StylizeService(
        cache, weights_dir=weights_dir, max_side=TEST_MAX_SIDE, engine="auto", precision="int8"
    )
    engine = service.engine("hayao")
    assert engine.wait_ready(60) and engine.builds == 0
    runner = engine.current()
    assert isinstance(runner, OpenVINORunner)

    class Broken:
        def infer(self, inputs):
            raise RuntimeError("simulated device failure")

    monkeypatch.setattr(runner, "_request", Broken())
    with pytest.raises(EngineFailure):
        runner.stylize(scene.resize((64, 64)))
    assert engine.current() is engine.fallback  # switched off at the first failure

    monkeypatch.setattr(engine, "_fast", runner)  # a request that snapshotted it before the switch
    upload = io.BytesIO()
    scene.resize((300, 200)).save(upload, "PNG")
    outcome = service.stylize(upload.getvalue(), "hayao")
    assert outcome.kind == "miss" and (outcome.width, outcome.height) == (256, 171)
    torch_namespace = service.namespace(engine.fallback)
    assert cache.lookup_raw(torch_namespace, outcome_raw_key(upload.getvalue())) is not None
    service.close()


def outcome_raw_key(data: bytes) -> str:
    from cache_store import Fingerprint

    return Fingerprint.raw_key(data)


def test_the_namespace_names_engine_and_precision(int8_engine, fp32_stylizer, bf16_stylizer):
    service = StylizeService(None, max_side=TEST_MAX_SIDE)
    spaces = {service.namespace(r) for r in (fp32_stylizer, bf16_stylizer, int8_engine.current())}
    assert len(spaces) == 3
    assert label(fp32_stylizer) == "torch-fp32" and label(bf16_stylizer) == "torch-bf16"
    assert label(int8_engine.current()).startswith("openvino") and "int8" in label(int8_engine.current())


def test_engine_torch_forces_torch(weights_dir, monkeypatch):
    import argparse

    parser = argparse.ArgumentParser()
    settings_module.add_arguments(parser, ["engine", "precision"])
    monkeypatch.setenv("ANIMEGAN_ENGINE", "openvino")
    settings = settings_module.resolve(parser.parse_args(["--engine", "torch"]))
    assert settings.engine == "torch"  # the flag wins over the environment
    assert settings_module.resolve(parser.parse_args([])).engine == "openvino"
    monkeypatch.setenv("ANIMEGAN_ENGINE", "tensorrt")
    with pytest.raises(SystemExit):
        settings_module.resolve(parser.parse_args([]))

    engine = load_engine("hayao", weights_dir, settings.engine, "auto", "cpu")
    assert engine.wait_ready(0) and engine.status == "torch" and engine.options == []
    assert isinstance(engine.current(), Stylizer) and engine.current().engine == "torch"
    with pytest.raises(ValueError, match="torch engine"):
        load_engine("hayao", weights_dir, "torch", "int8", "cpu")


def test_auto_plans_int8_then_bf16_or_fp32_and_never_on_a_gpu(monkeypatch):
    from animegan.engines import engine as module

    monkeypatch.setattr(module, "native_bf16", lambda device: True)
    monkeypatch.setattr(module, "_cpu_flags", lambda: frozenset({"avx512_vnni"}))
    assert [(o.kind, o.hint) for o in plan("animeganv2", "auto", "auto", "cpu")] == [
        ("int8", "bf16"),
        ("fp32", "bf16"),
    ]
    assert [(o.kind, o.hint) for o in plan("whitebox", "auto", "auto", "cpu")] == [("fp32", "bf16")]
    monkeypatch.setattr(module, "native_bf16", lambda device: False)
    monkeypatch.setattr(module, "_cpu_flags", lambda: frozenset())
    assert [(o.kind, o.hint) for o in plan("animeganv2", "auto", "auto", "cpu")] == [("fp32", "f32")]
    assert (
        plan("animeganv2", "auto", "auto", "cuda") == [] and plan("animeganv2", "torch", "auto", "cpu") == []
    )
