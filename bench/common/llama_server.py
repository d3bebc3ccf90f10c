"""llama.cpp's ``llama-server``: finding the binary and starting it.

:func:`llama_server_binary` finds the build of ``scripts/build-llama-server`` (or
``$CODEFILL_LLAMA_SERVER``), :func:`why_no_llama_server` says why it is missing (the reason to
skip with), :func:`start_llama_server` starts it on 127.0.0.1 (with ``--no-repack``: see
:mod:`bench.common.servers`).
"""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from lsp_server.models.paths import cache_dir

from .paths import REPO
from .servers import READY_TIMEOUT, THREADS, RunningServer, _start, _start_retrying

BUILD_SCRIPT = REPO / "scripts" / "build-llama-server"
#: Use this llama-server binary instead of the cached build.
LLAMA_SERVER_ENV = "CODEFILL_LLAMA_SERVER"


def llama_cpp_version() -> str:
    from importlib.metadata import version

    return version("llama-cpp-python")


def llama_server_dir() -> Path:
    """Where scripts/build-llama-server puts the binary of the installed llama-cpp-python."""
    return cache_dir() / "llama-server" / llama_cpp_version()


def _runs(binary: Path) -> bool:
    try:
        return subprocess.run([str(binary), "--version"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@lru_cache(maxsize=None)
def _find_binary() -> tuple[Path | None, str]:
    override = os.environ.get(LLAMA_SERVER_ENV, "")
    if override:
        path = Path(override)
        if _runs(path):
            return path, ""
        return None, f"{LLAMA_SERVER_ENV}={override} does not run (`{override} --version` failed)"
    try:
        where = llama_server_dir()
    except Exception as exc:  # llama-cpp-python missing: nothing to build from
        return None, f"llama-cpp-python is not installed ({exc})"
    path = where / "llama-server"
    if path.is_file() and _runs(path):
        return path, ""
    failed = where / "build-failed"
    if failed.is_file():
        return None, failed.read_text(errors="replace").strip().replace("\n", " ")
    if path.exists():
        return None, f"{path} does not run; rebuild it: scripts/build-llama-server --force"
    return None, (f"llama-server is not built ({path} is missing); scripts/test builds it, "
                  "or run scripts/build-llama-server")


def llama_server_binary() -> Path | None:
    """The llama-server binary (cached build, or $CODEFILL_LLAMA_SERVER), or None."""
    return _find_binary()[0]


def why_no_llama_server() -> str:
    """Why :func:`llama_server_binary` is None (the skip reason); empty when it is not."""
    return _find_binary()[1]



def start_llama_server(model: Path, *, port: int = 0, ctx: int = 2048, batch: int | None = None,
                       swa_full: bool = True,
                       extra_args: Iterable[str] = (), api_key: str | None = None,
                       log_dir: Path | None = None,
                       timeout: float = READY_TIMEOUT) -> RunningServer:
    """llama.cpp's llama-server on 127.0.0.1, ready (``/health`` answers 200).

    One slot (``-np 1``: the whole ``ctx`` for it; newer llama.cpp defaults to several slots
    sharing the context), 2 threads, no warm-up run, no web UI, ``--no-repack`` (see
    :mod:`bench.common.servers`). ``batch`` (default ``min(1024, ctx // 2)``) must stay well below
    ``ctx``: /infill gives ``input_extra`` only ``ctx - batch - 2*n_predict`` tokens, so with
    llama-server's default batch (2048) and a 2048 context the extra context is dropped without a
    word; the prefix gets up to 3/4 of ``batch`` tokens, the suffix 1/4. ``swa_full``
    (``--swa-full``): Gemma 3 uses sliding-window attention, and without a full-size SWA cache
    llama-server re-evaluates the whole prompt on every request, ``cache_prompt`` or not (measured:
    50 of 50 prompt tokens for a repeated /infill; 1 of 50 with ``--swa-full``). ``extra_args`` go
    last (e.g. ``["--cache-reuse", "64"]``).
    """
    if batch is None:
        batch = max(64, min(1024, ctx // 2))
    binary = llama_server_binary()
    if binary is None:
        raise RuntimeError(why_no_llama_server())
    argv = [str(binary), "--model", str(model), "--host", "127.0.0.1", "--port", "{port}",
            "--ctx-size", str(ctx), "--batch-size", str(batch), "--parallel", "1",
            "--threads", str(THREADS), "--threads-batch", str(THREADS), "--threads-http", "4",
            "--no-warmup", "--no-webui", "--no-repack"]
    if swa_full:
        argv.append("--swa-full")
    if api_key is not None:
        argv += ["--api-key", api_key]
    argv += list(extra_args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    return _start_retrying("llama-server", port, lambda p: _start(
        "llama-server", argv, port=p, model=Path(model), api_key=api_key, ready_path="/health",
        ready={200}, env=env, log_dir=log_dir, timeout=timeout))
