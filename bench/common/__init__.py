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
"""

from .checkpoints import (ARCH_CONFIG_EXTRA, CODE_SAMPLES, bf16_round, corpus_lines, make_config,
                          random_weights, save_safetensors, train_tokenizer, write_checkpoint)
from .engine_hooks import hook_args, install_engine_hooks, main, record_prompt
from .fim_model import FIM_TOKENS, fim_test_model
from .harness import NEOVIM_CAPABILITIES, VSCODE_CAPABILITIES, Harness
from .llama_server import (BUILD_SCRIPT, LLAMA_SERVER_ENV, llama_cpp_version, llama_server_binary,
                           llama_server_dir, start_llama_server, why_no_llama_server)
from .openai_server import openai_server_available, start_openai_server
from .paths import REPO
from .raw_server import RawServer
from .servers import READY_TIMEOUT, THREADS, RunningServer, free_port

__all__ = [
    "ARCH_CONFIG_EXTRA", "BUILD_SCRIPT", "CODE_SAMPLES", "FIM_TOKENS", "LLAMA_SERVER_ENV",
    "NEOVIM_CAPABILITIES", "READY_TIMEOUT", "REPO", "THREADS", "VSCODE_CAPABILITIES", "Harness",
    "RawServer", "RunningServer", "bf16_round", "corpus_lines", "fim_test_model", "free_port",
    "hook_args", "install_engine_hooks", "llama_cpp_version", "llama_server_binary",
    "llama_server_dir", "main", "make_config", "openai_server_available", "random_weights",
    "record_prompt", "save_safetensors", "start_llama_server", "start_openai_server",
    "train_tokenizer", "why_no_llama_server", "write_checkpoint",
]
