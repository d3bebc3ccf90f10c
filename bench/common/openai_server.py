"""llama-cpp-python's OpenAI-compatible server (the ``server`` extra): starting it on 127.0.0.1
with extra weight buffers off (see :mod:`bench.common.servers`), and whether it is installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable

from .servers import READY_TIMEOUT, THREADS, RunningServer, _start, _start_retrying

# Runs llama-cpp-python's server with llama_model_params.use_extra_bufts off (see
# bench.common.servers): Llama() builds its parameters from llama_model_default_params(), looked
# up on the module at each call, so wrapping that one function is enough.
_OPENAI_BOOTSTRAP = """\
import runpy, sys
import llama_cpp.llama_cpp as ll
_default = ll.llama_model_default_params
def _no_extra_bufts():
    p = _default()
    p.use_extra_bufts = False
    return p
ll.llama_model_default_params = _no_extra_bufts
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def _openai_clean_env(port: int) -> dict[str, str]:
    """The environment minus what pydantic-settings would read as server or model settings."""
    try:
        from llama_cpp.server.settings import Settings

        names = {n.lower() for n in Settings.model_fields}
    except Exception:
        names = {"host", "port", "model", "api_key", "n_ctx"}
    env = {k: v for k, v in os.environ.items() if k.lower() not in names | {"config_file"}}
    # uvicorn.run() in llama_cpp.server takes HOST and PORT from the environment first.
    env.update(HOST="127.0.0.1", PORT=str(port))
    return env


def start_openai_server(model: Path, *, port: int = 0, ctx: int = 2048,
                        extra_args: Iterable[str] = (), api_key: str | None = None,
                        log_dir: Path | None = None,
                        timeout: float = READY_TIMEOUT) -> RunningServer:
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1, ready (``/v1/models`` answers).

    Started as ``python -c <bootstrap> --model … --host 127.0.0.1 --port …`` with this
    interpreter (llama-cpp-python's ``server`` extra must be installed). ``extra_args`` take its
    CLI form (``--n_batch 512``, ``--interrupt_requests false``).
    """
    argv = [sys.executable, "-c", _OPENAI_BOOTSTRAP, "--model", str(model),
            "--host", "127.0.0.1", "--port", "{port}", "--n_ctx", str(ctx),
            "--n_threads", str(THREADS), "--n_threads_batch", str(THREADS)]
    if api_key is not None:
        argv += ["--api_key", api_key]
    argv += list(extra_args)
    # Any HTTP answer means uvicorn is serving, and it starts only after the model is loaded.
    return _start_retrying("llama-cpp-python", port, lambda p: _start(
        "llama-cpp-python", argv, port=p, model=Path(model), api_key=api_key,
        ready_path="/v1/models", ready=range(200, 600), env=_openai_clean_env(p),
        log_dir=log_dir, timeout=timeout))


def openai_server_available() -> str:
    """Empty when llama-cpp-python's server extra is importable, else the reason to skip."""
    try:
        import fastapi  # noqa: F401
        import sse_starlette  # noqa: F401
        import starlette_context  # noqa: F401
        import uvicorn  # noqa: F401
        import pydantic_settings  # noqa: F401
    except ImportError as exc:
        return (f"llama-cpp-python's server extra is not installed ({exc.name} missing): "
                "scripts/setup dev")
    return ""
