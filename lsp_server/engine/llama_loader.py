"""Opening a llama.cpp model through llama-cpp-python: the parameters llama-cpp-python has no
argument for, llama.cpp's log routed to a logger, the thread count."""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import threading
from typing import Any, Callable

from .candidates import MAX_SEQUENCES

LlamaFactory = Callable[..., Any]


def default_threads() -> int:
    """CPUs this process may run on, capped at 8 (more rarely helps a small model)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


_PARAMS_LOCK = threading.Lock()
_LOG_CALLBACK: Any = None
log = logging.getLogger("codefill.llama_cpp")


def route_llama_logs() -> None:
    """Send llama.cpp's and ggml's log lines to the ``codefill.llama_cpp`` logger (DEBUG).

    Left alone, llama.cpp writes warnings straight to stderr, which would corrupt an LSP
    stdio stream and clutter the CLI; `--debug` shows them.
    """
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace").rstrip("\n")
        if line.strip():
            log.debug(line)

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    _LOG_CALLBACK = callback  # keep the ctypes callback alive


def cpu_has_amx() -> bool:
    """Whether llama.cpp's CPU backend uses AMX on this machine."""
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


def _llama_factory(*, use_extra_bufts: bool = True, **kwargs: Any) -> Any:
    import llama_cpp  # imported lazily: `codefill models` and the tests of pure code skip it
    import llama_cpp.llama_cpp as ll

    route_llama_logs()
    # verbose=False would make llama-cpp-python point file descriptors 1 and 2 at /dev/null
    # while the model loads — process-wide, so a language server's replies written to stdout by
    # another thread in that window are lost. Keep the descriptors; llama.cpp's own log already
    # goes through route_llama_logs, and llama-cpp-python's few verbose prints to sys.stderr
    # during construction are captured into the debug log.
    kwargs["verbose"] = True
    captured = io.StringIO()
    with _PARAMS_LOCK, contextlib.redirect_stderr(captured):
        original = ll.llama_model_default_params
        original_ctx = ll.llama_context_default_params

        def context_params() -> Any:
            # Candidates are parallel sequences in one KV cache that all of them share
            # (unified: one pool of n_ctx cells, not n_ctx / n_seq_max per sequence).
            p = original_ctx()
            p.n_seq_max = MAX_SEQUENCES
            p.kv_unified = True
            return p

        ll.llama_context_default_params = context_params
        if not use_extra_bufts:
            # Llama() has no argument for llama_model_params.use_extra_bufts; it builds its
            # params from llama_model_default_params(), so wrap that while this model loads.
            def params() -> Any:
                p = original()
                p.use_extra_bufts = False
                return p

            ll.llama_model_default_params = params
        try:
            return llama_cpp.Llama(**kwargs)
        finally:
            ll.llama_model_default_params = original
            ll.llama_context_default_params = original_ctx
            for line in captured.getvalue().splitlines():
                log.debug(line)
