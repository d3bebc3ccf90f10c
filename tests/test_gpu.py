"""GPU offload on this project's CPU-only build: ``engine.gpu_layers = "auto"`` (the default)
resolves to 0 here and to all layers where a GPU has the memory; a GPU that fails to take the
model falls back to the CPU with a message; ``codefill doctor`` reports the backend and warns
about a GPU the build cannot use. The measurement on a real GPU is in docs/gpu.md's terms of
reference (docs/benchmarks.md when one ran)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lsp_server.config import Config, load_config
from lsp_server.engine import gpu
from lsp_server.engine.gpu import Device, needed_bytes, resolve_layers
from lsp_server.engine.llama_engine import LlamaEngine
from lsp_server.engine.llama_loader import _llama_factory
from lsp_server.engine.types import GenerationRequest

GiB = 1 << 30


def test_auto_is_the_default_and_the_setting_is_checked() -> None:
    assert Config().engine.gpu_layers == "auto"
    for ok in ("auto", -1, 0, 33):
        config, problems = load_config({"engine": {"gpu_layers": ok}})
        assert config.engine.gpu_layers == ok and not problems
    for bad in ("all", -2, 1.5, True, None):
        config, problems = load_config({"engine": {"gpu_layers": bad}})
        assert config.engine.gpu_layers == "auto"
        assert problems and "engine.gpu_layers" in problems[0], problems


def _device(free_gib: float) -> Device:
    return Device("CUDA0", "NVIDIA H100", "GPU", int(free_gib * GiB), 80 * GiB)


def test_auto_offloads_everything_only_when_the_model_fits(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"\0" * (1 << 20))
    need = needed_bytes(model.stat().st_size)
    assert resolve_layers("auto", model, [_device(need / GiB + 0.01)])[0] == -1
    layers, why = resolve_layers("auto", model, [_device(need / GiB - 0.01)])
    assert layers == 0 and "needs about" in why
    assert resolve_layers("auto", model, [])[0] == 0
    assert resolve_layers(12, model, [])[0] == 12  # an explicit number is taken as it is
    assert resolve_layers(-1, model, [])[0] == -1


def test_the_installed_build_reports_its_devices(embedded_model: Path) -> None:
    """The real library: the CPU wheel built here has no GPU device, so auto means 0; a GPU
    build lists its devices with their memory."""
    layers, why = resolve_layers("auto", embedded_model)
    if not gpu.supports_offload():  # the wheel scripts/setup builds on the CI machines
        assert gpu.devices() == [] and layers == 0 and "no GPU backend" in why
    else:
        found = gpu.devices()
        assert found and all(d.total_bytes >= d.free_bytes > 0 for d in found)
        assert layers in (-1, 0) and why.startswith("auto:")


@pytest.mark.model
def test_a_gpu_that_cannot_take_the_model_falls_back_to_the_cpu(
        embedded_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of GPU memory is simulated: llama.cpp refuses every load with layers offloaded."""
    monkeypatch.setattr(gpu, "devices", lambda: [_device(40)])
    monkeypatch.setattr(gpu, "supports_offload", lambda: True)
    asked: list[int] = []

    def factory(**kwargs: Any) -> Any:
        asked.append(kwargs["n_gpu_layers"])
        if kwargs["n_gpu_layers"] != 0:
            raise ValueError("Failed to create llama_context (cudaMalloc failed: out of memory)")
        return _llama_factory(**kwargs)

    config = Config().engine
    config.context_size = 512
    with LlamaEngine(embedded_model, config, llama_factory=factory) as engine:
        engine.wait_ready(120)
        assert asked == [-1, 0] and engine.gpu_layers == 0
        assert "running on the CPU instead" in engine.offload
        assert "engine.gpu_layers" in engine.offload and "out of memory" in engine.offload
        stream = engine.submit(GenerationRequest(tokens=engine.llama.tokenize(b"def f():"),
                                                 max_tokens=2))
        assert stream.wait().n_generated >= 1  # the CPU serves


def test_doctor_warns_about_a_gpu_the_build_cannot_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from lsp_server.cli import doctor

    monkeypatch.setattr(gpu, "system_gpu", lambda: "an NVIDIA GPU (CUDA)")
    check = doctor._gpu()
    assert check.ok and check.warn and "CPU only" in check.detail and "docs/gpu.md" in check.fix
    monkeypatch.setattr(gpu, "supports_offload", lambda: True)
    monkeypatch.setattr(gpu, "devices", lambda: [_device(70.5)])
    check = doctor._gpu()
    assert not check.warn and "NVIDIA H100" in check.detail and "70.5 of 80.0 GiB free" in \
        check.detail


def test_doctor_and_the_cli_on_this_machine() -> None:
    out = subprocess.run([sys.executable, "-m", "lsp_server.cli.main", "doctor", "--skip-load"],
                         capture_output=True, text=True, timeout=300).stdout
    gpu_line = next(line for line in out.splitlines() if line[2:].startswith("gpu "))
    assert "CPU only" in gpu_line, out
    bad = subprocess.run([sys.executable, "-m", "lsp_server.cli.main", "complete", "x.py",
                          "--line", "1", "--col", "1", "--gpu-layers", "lots"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--gpu-layers" in bad.stderr and "'lots'" in bad.stderr


def test_the_fallback_reaches_the_user_as_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host passes a ready backend's warnings on (the server shows them as a message)."""
    import asyncio

    from lsp_server import lifecycle

    class Fallen:
        label = "model.gguf (plain)"
        warnings = ["offloading all layers to the GPU failed (out of memory); running on the CPU "
                    "instead: lower engine.gpu_layers or engine.context_size to use the GPU"]

        def wait_ready(self, timeout: float | None = None) -> None:
            pass

        def needs_more_cells(self) -> bool:
            return False

    monkeypatch.setattr(lifecycle, "open_backend", lambda *a, **k: Fallen())
    heard: list[tuple[str, str]] = []
    host = lifecycle.ModelHost(Config(), lambda state, detail: heard.append((state, detail)))

    async def load() -> None:
        await host.start()

    asyncio.run(load())
    assert host.state == "ready"
    assert heard[-2][0] == "ready" and heard[-1] == ("warning", Fallen.warnings[0])
