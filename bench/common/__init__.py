"""What the benchmarks and the tests share: a real LSP client, engine hooks, remote completion
servers and random-weight checkpoints.

Not shipped (pyproject ships lsp_server, quantize and model); it needs those packages and their
dependencies, nothing from tests/. Bench scripts import it after putting the repository root on
``sys.path``; the tests import it too, so each of these exists once (the benchmarks are
programs that must run without the test suite, the tests may use anything in the repository).
Every name below is importable from ``bench.common`` itself:

* :mod:`~bench.common.harness`: :class:`Harness`, a real LSP client (pygls) driving the real
  ``codefill serve`` process over stdio, and the editors' client capabilities.
* :mod:`~bench.common.raw_server`: :class:`RawServer`, the same process driven with raw
  JSON-RPC bytes (malformed messages, long soaks).
* :mod:`~bench.common.engine_hooks`: ``python -m bench.common [--record-prompts FILE]
  [--engine-fault N[,K]] serve`` (``__main__.py``) is ``codefill serve`` with the in-process
  engine patched (:func:`install_engine_hooks`); ``Harness(record_prompts=…, engine_fault=…)``
  starts the server that way.
* Remote servers: :mod:`~bench.common.servers` (the process plumbing, :class:`RunningServer`),
  :mod:`~bench.common.llama_server` (llama.cpp's ``llama-server``),
  :mod:`~bench.common.openai_server` (llama-cpp-python's OpenAI-compatible server) and
  :mod:`~bench.common.fim_model` (:func:`fim_test_model`, a copy of the embedded model with FIM
  token ids).
* :mod:`~bench.common.checkpoints`: :func:`write_checkpoint`, random-weight Hugging Face Gemma
  checkpoints for the quantizer.
* :mod:`~bench.common.paths`: :data:`REPO`, the repository root.
* :mod:`~bench.common.corpora`: code in other languages that the repository installs
  (:data:`OTHER_LANGUAGES`, :func:`language_files`), for the benchmarks beyond Python.
"""

import importlib
from typing import Any

_HOME = {
    "make_config": "checkpoints", "save_safetensors": "checkpoints",
    "write_checkpoint": "checkpoints", "hook_args": "engine_hooks",
    "FIM_TOKENS": "fim_model", "fim_test_model": "fim_model",
    "Harness": "harness", "NEOVIM_CAPABILITIES": "harness", "VSCODE_CAPABILITIES": "harness",
    "llama_server_binary": "llama_server", "start_llama_server": "llama_server",
    "why_no_llama_server": "llama_server", "openai_server_available": "openai_server",
    "start_openai_server": "openai_server", "REPO": "paths", "RawServer": "raw_server",
    "RunningServer": "servers", "free_port": "servers", "Corpus": "corpora",
    "OTHER_LANGUAGES": "corpora", "language_files": "corpora", "spread": "corpora",
}
"""Name → the submodule that defines it. Imported on first use, not with the package: ``python
-m bench.common --audit-opens`` must install its audit hook before codefill is imported."""

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'bench.common' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
