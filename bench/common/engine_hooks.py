"""Engine hooks: prompt recording and decode faults, patched into a server process.

``python -m bench.common [--record-prompts FILE] [--engine-fault N[,K]] serve …`` (:func:`main`,
run by ``bench/common/__main__.py``) is ``codefill serve`` with the in-process engine patched
(:func:`install_engine_hooks`); :func:`hook_args` gives those options, and
``Harness(record_prompts=…, engine_fault=…)`` starts the server that way.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def record_prompt(path: str, llama: Any, tokens: list[int]) -> None:
    """Append ``tokens`` (detokenized) to ``path`` as one JSON line ``{"pid", "n_tokens",
    "prompt"}``; ``prompt`` is null before the model is loaded."""
    text = (llama.detokenize(list(tokens), special=True).decode("utf-8", errors="replace")
            if llama is not None else None)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"pid": os.getpid(), "n_tokens": len(tokens), "prompt": text}) + "\n")


def install_engine_hooks(*, record_prompts: str | os.PathLike[str] | None = None,
                         engine_fault: str | None = None) -> None:
    """Patch :class:`~lsp_server.engine.llama_engine.LlamaEngine` in this process.

    ``record_prompts``: ``submit`` appends every prompt to that file (:func:`record_prompt`), so
    a test sees what reaches the model, e.g. that no secret ever does.
    ``engine_fault`` ``"N"`` or ``"N,K"``: in each engine created afterwards, the decode of the
    N-th generated token raises in the next K generations (default 1), with the error
    llama-cpp-python raises when ``llama_decode`` fails; the engine thread raising
    mid-generation (docs/reliability.md).
    """
    from lsp_server.engine.llama_engine import LlamaEngine

    if record_prompts:
        path = os.fspath(record_prompts)
        submit = LlamaEngine.submit

        def recording_submit(self: LlamaEngine, request: Any, listener: Any = None) -> Any:
            record_prompt(path, self._llama, request.tokens)
            return submit(self, request, listener)
        LlamaEngine.submit = recording_submit  # type: ignore[method-assign]

    if engine_fault:
        after_s, _, times_s = engine_fault.partition(",")
        after, times = max(1, int(after_s)), int(times_s or 1)
        init, generate = LlamaEngine.__init__, LlamaEngine._generate

        def faulty_init(self: LlamaEngine, *args: Any, **kwargs: Any) -> None:
            self._faults_left = times  # type: ignore[attr-defined]
            init(self, *args, **kwargs)

        def faulty_generate(self: LlamaEngine, stream: Any) -> None:
            if self._faults_left <= 0:  # type: ignore[attr-defined]
                return generate(self, stream)
            llm, stats = self._llama, stream.stats
            real_eval = llm.eval

            def failing_eval(tokens: Any) -> Any:
                # Prompt chunks are evaluated with nothing generated yet (after >= 1).
                if stats.n_generated == after:
                    self._faults_left -= 1  # type: ignore[attr-defined]
                    raise RuntimeError("llama_decode returned -1 (fault injected by "
                                       "bench.common --engine-fault)")
                return real_eval(tokens)
            llm.eval = failing_eval
            try:
                return generate(self, stream)
            finally:
                del llm.eval
        LlamaEngine.__init__ = faulty_init  # type: ignore[method-assign]
        LlamaEngine._generate = faulty_generate  # type: ignore[method-assign]


def hook_args(*, record_prompts: str | os.PathLike[str] | None = None,
              engine_fault: str | None = None) -> list[str]:
    """The options of :func:`main` for these hooks ([] for none)."""
    args = ["--record-prompts", os.fspath(record_prompts)] if record_prompts else []
    return args + (["--engine-fault", engine_fault] if engine_fault else [])


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.common [--record-prompts FILE] [--engine-fault N[,K]] serve …``:
    ``codefill`` with the engine hooks installed (the hook options come first; the rest is
    codefill's command line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    hooks: dict[str, str] = {}
    while args and args[0] in ("--record-prompts", "--engine-fault"):
        if len(args) < 2:
            raise SystemExit(f"{args[0]} needs a value")
        hooks[args[0][2:].replace("-", "_")] = args[1]
        del args[:2]
    install_engine_hooks(**hooks)
    from lsp_server.cli.main import main as codefill

    return codefill(args)
