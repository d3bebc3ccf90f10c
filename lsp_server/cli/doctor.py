"""`codefill doctor`: check the installation and print actionable fixes."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

from ..config import Config
from ..engine.llama_loader import default_threads
from ..errors import CodefillError
from .common import progress

HELP = "check the installation (llama.cpp, model, CPU features, threads) and suggest fixes"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warn: bool = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="MODEL", default="",
                   help="check this model (a path, a pulled registry name or hf://…) instead of "
                        "the embedded default")
    p.add_argument("--skip-load", action="store_true", help="do not load the model and generate")


def _python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", ok, f"{platform.python_implementation()} {platform.python_version()}",
                 "" if ok else "use Python 3.10 or newer")


def _llama_cpp() -> Check:
    try:
        import llama_cpp
    except Exception as exc:  # ImportError, or OSError when the shared library fails to load
        return Check("llama.cpp", False, f"llama-cpp-python does not import: {exc}",
                     "pip install --force-reinstall --no-cache-dir llama-cpp-python "
                     "(needs a C++ compiler and cmake)")
    from ..engine.gpu import supports_offload

    gpu = supports_offload()
    return Check("llama.cpp", True, f"llama-cpp-python {llama_cpp.__version__}, "
                                    f"GPU offload {'available' if gpu else 'not built in (CPU only)'}")


def _gpu() -> Check:
    """The GPU backend, its devices and their free memory; a warning when the machine has a GPU
    this CPU-only build cannot use."""
    from ..engine.gpu import devices, system_gpu

    found = devices()
    if found:
        return Check("gpu", True, "; ".join(d.describe() for d in found)
                     + " (engine.gpu_layers 'auto' offloads when the model fits)")
    present = system_gpu()
    if present is not None:
        return Check("gpu", True, f"this machine has {present}, but llama.cpp was built for the "
                                  "CPU only", "install a GPU build of llama-cpp-python "
                                  "(docs/gpu.md); until then everything runs on the CPU",
                     warn=True)
    return Check("gpu", True, "none (CPU only; engine.gpu_layers 'auto' means 0)")


def _cpu() -> Check:
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    # "CPU : SSE3 = 1 | AVX = 1 | …" (one "BACKEND :" label per backend)
    on = sorted({part.split(":")[-1].split("=")[0].strip() for part in info.split("|")
                 if "=" in part and part.split("=")[1].strip() == "1"})
    machine = platform.machine().lower()
    missing = [f for f in ("AVX2", "FMA") if machine in ("x86_64", "amd64") and f not in on]
    detail = ", ".join(on) or info.strip()
    if "AMX_INT8" in on:
        detail += " (AMX: extra weight buffers off by default, llama.cpp#20824)"
    return Check("cpu features", True, detail,
                 f"llama.cpp was built without {', '.join(missing)}: rebuild llama-cpp-python on "
                 "this machine (pip install --force-reinstall --no-binary llama-cpp-python "
                 "llama-cpp-python)" if missing else "", warn=bool(missing))


def _threads() -> Check:
    n = default_threads()
    total = os.cpu_count() or 1
    detail = f"{n} thread(s) will be used; {total} CPU(s) on this machine"
    return Check("threads", True, detail,
                 "set engine.threads (or --threads) to the number of performance cores"
                 if n < total else "")


def _cache() -> Check:
    from ..models.paths import cache_dir

    d = cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d):
            pass
    except OSError as exc:
        return Check("cache dir", False, f"{d} is not writable: {exc.strerror or exc}",
                     "set XDG_CACHE_HOME to a writable directory")
    return Check("cache dir", True, str(d))


def _model(path: str, load: bool) -> list[Check]:
    from ..completion.completer import complete_text
    from ..completion.session import ModelSession

    config = Config()
    config.engine.model = path
    config.engine.context_size = 512
    try:
        t0 = time.monotonic()
        session = ModelSession(config, progress=progress)
    except CodefillError as exc:
        return [Check("model", False, exc.problem, exc.fix)]
    info = session.info
    checks = [Check("model", True, f"{session.model_path} ({info.architecture}, "
                                   f"{info.quantization}, {info.size_bytes / 1e6:.0f} MB)"),
              Check("template", True, f"{session.template.name}: {session.detection.reason}",
                    "" if session.template.is_fim else
                    "this model has no FIM tokens: suggestions ignore the code after the cursor; "
                    "a FIM code model works better (see 'recommended' below)",
                    warn=not session.template.is_fim)]
    if not load:
        session.close()
        return checks
    try:
        with session:
            result = complete_text(session, "def add(a, b):\n    return", "", max_tokens=4)
        checks.append(Check("offload", True, f"{session.engine.gpu_layers} GPU layers "
                                             f"({session.engine.offload})",
                            "lower engine.gpu_layers or engine.context_size (docs/gpu.md)"
                            if session.warnings else "", warn=bool(session.warnings)))
        checks.append(Check("generation", True,
                            f"loaded in {session.engine.load_seconds or 0:.2f} s, "
                            f"{result.stats.n_generated} token(s) in "
                            f"{result.stats.t_total * 1000:.0f} ms "
                            f"(total {time.monotonic() - t0:.1f} s)"))
    except CodefillError as exc:
        checks.append(Check("generation", False, exc.problem, exc.fix))
    except Exception as exc:  # engine failures
        checks.append(Check("generation", False, str(exc),
                            "run `codefill doctor --debug` and report the output"))
    return checks


def _recommended() -> Check:
    """The registry model this machine runs well (memory, cores, GPU offload), and its speed."""
    from ..models import catalog
    from ..models.pull import pulled

    machine = catalog.Machine.this()
    best = catalog.recommend(machine)
    if best is None:
        return Check("recommended", True, f"no registry model fits in half of this machine's "
                                          f"{machine.memory_bytes / 2**30:.1f} GiB of RAM; the "
                                          "embedded model stays the choice")
    model, f, why = best
    name = model.name if f.quant == model.default_quant else f"{model.name}:{f.quant}"
    have = pulled(f) is not None
    detail = (f"{name} ({model.title}, {f.quant}, {f.size_bytes / 1e9:.1f} GB, needs about "
              f"{catalog.memory_needed(f) / 1e9:.1f} GB): {why}" + ("; pulled" if have else ""))
    return Check("recommended", True, detail,
                 "" if have else f"codefill models pull {name}, then set engine.model = "
                                 f"\"{name}\" (docs/models.md)", warn=not have)


def run(args: argparse.Namespace) -> int:
    checks: list[Check] = [_python(), lib := _llama_cpp()]
    steps: list[Callable[[], Check]] = [_cpu, _gpu] if lib.ok else []
    checks += [step() for step in steps] + [_threads(), _cache()]
    if lib.ok:
        checks += _model(args.model, not args.skip_load)
        checks.append(_recommended())
    failed = 0
    for c in checks:
        mark = "✓" if c.ok and not c.warn else ("!" if c.ok or c.warn else "✗")
        print(f"{mark} {c.name:<13} {c.detail}")
        if c.fix and (not c.ok or c.warn):
            print(f"  {'':<13} fix: {c.fix}")
        failed += not c.ok
    print(f"\n{'all checks passed' if not failed else f'{failed} check(s) failed'}")
    return 1 if failed else 0
