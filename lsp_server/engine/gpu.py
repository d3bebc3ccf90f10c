"""GPU offload: the GPU devices this llama.cpp build can use, how many layers
``engine.gpu_layers = "auto"`` offloads, and whether the machine has a GPU the build cannot use.

llama-cpp-python exposes only ``llama_supports_gpu_offload``; the devices, their kind and free
memory come from ggml's backend registry (``ggml_backend_dev_*`` in the ``libggml`` libraries
that ship inside the llama-cpp-python wheel), read through ctypes. A build without those symbols
reports no devices, so ``auto`` means the CPU.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import platform
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger("codefill.engine")

# ggml_backend_dev_type (ggml-backend.h): CPU, GPU (dedicated memory), IGPU (host memory), ACCEL.
_DEVICE_KINDS = {1: "GPU", 2: "integrated GPU"}
MARGIN_BYTES = 256 << 20
"""Room kept free beside the weights for the KV cache and llama.cpp's compute buffers."""
MARGIN_SHARE = 0.2
"""…plus this share of the model's size."""


@dataclass(frozen=True)
class Device:
    """A GPU device of the llama.cpp build."""

    name: str
    description: str
    kind: str
    free_bytes: int
    total_bytes: int

    def describe(self) -> str:
        return (f"{self.name} ({self.description}, {self.kind}): "
                f"{self.free_bytes / 2**30:.1f} of {self.total_bytes / 2**30:.1f} GiB free")


def supports_offload() -> bool:
    """Whether this llama.cpp build has a GPU backend (CUDA, Metal, Vulkan, ROCm, SYCL …)."""
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # noqa: BLE001 - no llama.cpp at all: no offload
        return False


@lru_cache(maxsize=1)
def _ggml() -> tuple[ctypes.CDLL, ctypes.CDLL] | None:
    try:
        import llama_cpp

        lib = Path(llama_cpp.__file__).parent / "lib"
        base = ctypes.CDLL(str(next(iter(sorted(lib.glob("libggml-base.*"))))),
                           mode=ctypes.RTLD_GLOBAL)
        ggml = ctypes.CDLL(str(next(iter(sorted(lib.glob("libggml.*"))))), mode=ctypes.RTLD_GLOBAL)
        ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
        ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
        ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        for fn in (base.ggml_backend_dev_name, base.ggml_backend_dev_description):
            fn.restype, fn.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
        base.ggml_backend_dev_type.restype = ctypes.c_int
        base.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        base.ggml_backend_dev_memory.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)]
        return base, ggml
    except Exception as exc:  # noqa: BLE001 - another layout: no device list, CPU it is
        log.debug("ggml's device registry is not readable: %s", exc)
        return None


def devices() -> list[Device]:
    """The GPU devices llama.cpp can offload to, with their free memory now ([] on CPU builds)."""
    libs = _ggml() if supports_offload() else None
    if libs is None:
        return []
    base, ggml = libs
    out = []
    for i in range(ggml.ggml_backend_dev_count()):
        dev = ggml.ggml_backend_dev_get(i)
        kind = _DEVICE_KINDS.get(base.ggml_backend_dev_type(dev))
        if kind is None:
            continue
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        base.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        out.append(Device((base.ggml_backend_dev_name(dev) or b"").decode(errors="replace"),
                          (base.ggml_backend_dev_description(dev) or b"").decode(errors="replace"),
                          kind, free.value, total.value))
    return out


def system_gpu() -> str | None:
    """A GPU this machine has, whatever llama.cpp was built with (None when none is seen)."""
    if glob.glob("/proc/driver/nvidia/gpus/*") or shutil.which("nvidia-smi"):
        return "an NVIDIA GPU (CUDA)"
    for vendor in glob.glob("/sys/class/drm/card*/device/vendor"):
        try:
            vid = Path(vendor).read_text().strip()
        except OSError:
            continue
        if vid == "0x1002":
            return "an AMD GPU (ROCm or Vulkan)"
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return "an Apple Silicon GPU (Metal)"
    return None


def needed_bytes(model_bytes: int) -> int:
    """GPU memory ``auto`` asks for before offloading a model file of ``model_bytes``."""
    return int(model_bytes * (1 + MARGIN_SHARE)) + MARGIN_BYTES


def resolve_layers(setting: int | str, model_path: str | os.PathLike[str],
                   found: list[Device] | None = None) -> tuple[int, str]:
    """(n_gpu_layers for llama.cpp, why) for ``engine.gpu_layers``; ``found`` overrides the
    device list (tests)."""
    if setting != "auto":
        return int(setting), f"engine.gpu_layers = {setting}"
    if found is None:
        found = devices()
    if not found:
        return 0, "auto: no GPU backend in this llama.cpp build"
    need = needed_bytes(os.path.getsize(model_path))
    best = max(found, key=lambda d: d.free_bytes)
    if best.free_bytes < need:
        return 0, (f"auto: {best.name} has {best.free_bytes / 2**30:.1f} GiB free, the model "
                   f"needs about {need / 2**30:.1f} GiB")
    return -1, f"auto: all layers on {best.name}"
