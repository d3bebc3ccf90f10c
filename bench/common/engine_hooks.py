"""Engine hooks: prompt recording, decode faults and a file-open audit, installed in a server
process.

``python -m bench.common [--audit-opens FILE] [--record-prompts FILE] [--engine-fault N[,K]]
serve …`` (:func:`main`, run by ``bench/common/__main__.py``) is ``codefill serve`` with the
in-process engine patched (:func:`install_engine_hooks`) and, with ``--audit-opens``, every file
the process opens logged (:func:`install_open_audit`, installed before codefill is imported);
:func:`hook_args` gives those options, and ``Harness(record_prompts=…, engine_fault=…)`` starts
the server that way (``harness.hooks = hook_args(…, audit_opens=…)`` adds the audit).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def record_prompt(path: str, llama: Any, tokens: list[int], kind: str = "generate",
                  scored: str = "", lead: str = "") -> None:
    """Append ``tokens`` (detokenized) to ``path`` as one JSON line ``{"pid", "n_tokens",
    "prompt", "kind"}``; ``prompt`` is null before the model is loaded. ``kind``: "generate"
    (a request that generates), "prefill" (a prompt evaluated in the background), "candidates"
    (the alternatives to a suggestion, whose ``scored`` text — the code after the cursor — also
    reaches the model: it ends ``prompt``, so a scan of prompts sees it). A healed request's
    ``lead`` (the text its first token must start with) ends ``prompt`` too: the text the model
    continues is the evaluated tokens and the lead."""
    text = (llama.detokenize(list(tokens), special=True).decode("utf-8", errors="replace")
            + lead + scored if llama is not None else None)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"pid": os.getpid(), "n_tokens": len(tokens), "prompt": text,
                            "kind": kind, "scored": scored, "lead": lead}) + "\n")


def install_open_audit(path: str | os.PathLike[str]) -> None:
    """Log every ``open`` audit event of this process (``open()``, ``io.open``, ``os.open``,
    ``pathlib`` reads) to ``path``, one JSON line each: ``{"path": absolute path, "read": whether
    it was opened for reading}``; the first line is ``{"audit": "installed", "pid": …}``.

    The log is opened once, before the hook exists, and written with ``os.write`` (no audit
    event), so the hook never sees its own writes. Opens of a bare file descriptor carry no path
    and are not logged; a relative path is made absolute against the working directory at the
    time of the open. Files opened by C code (llama.cpp's model file) raise no audit event.
    """
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (json.dumps({"audit": "installed", "pid": os.getpid()}) + "\n").encode())
    accmode, wronly = os.O_ACCMODE, os.O_WRONLY

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event != "open":
            return
        try:
            target, mode, flags = args
            if isinstance(target, int):
                return
            name = os.path.abspath(os.fsdecode(target))
            if isinstance(mode, str):
                read = "r" in mode or "+" in mode
            else:
                read = (flags or 0) & accmode != wronly
            os.write(fd, (json.dumps({"path": name, "read": read}) + "\n").encode())
        except Exception:  # an audit hook that raises would fail the open itself
            pass

    sys.addaudithook(hook)


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
    from lsp_server.engine.candidates import CandidatesRequest
    from lsp_server.engine.llama_engine import LlamaEngine

    if record_prompts:
        path = os.fspath(record_prompts)
        submit = LlamaEngine.submit

        def recording_submit(self: LlamaEngine, request: Any, listener: Any = None) -> Any:
            if isinstance(request, CandidatesRequest):
                record_prompt(path, self._llama, request.tokens + request.first, "candidates",
                              request.scored_text)
            else:
                record_prompt(path, self._llama, request.tokens,
                              "prefill" if request.background else "generate",
                              lead=request.lead)
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
              engine_fault: str | None = None,
              audit_opens: str | os.PathLike[str] | None = None) -> list[str]:
    """The options of :func:`main` for these hooks ([] for none)."""
    args = ["--audit-opens", os.fspath(audit_opens)] if audit_opens else []
    args += ["--record-prompts", os.fspath(record_prompts)] if record_prompts else []
    return args + (["--engine-fault", engine_fault] if engine_fault else [])


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.common [--audit-opens FILE] [--record-prompts FILE] [--engine-fault
    N[,K]] serve …``: ``codefill`` with the hooks installed (the hook options come first; the
    rest is codefill's command line). The open audit is installed before codefill is imported,
    so it sees every file the server opens from its start."""
    args = list(sys.argv[1:] if argv is None else argv)
    hooks: dict[str, str] = {}
    while args and args[0] in ("--audit-opens", "--record-prompts", "--engine-fault"):
        if len(args) < 2:
            raise SystemExit(f"{args[0]} needs a value")
        hooks[args[0][2:].replace("-", "_")] = args[1]
        del args[:2]
    audit = hooks.pop("audit_opens", None)
    if audit:
        install_open_audit(audit)
    install_engine_hooks(**hooks)
    from lsp_server.cli.main import main as codefill

    return codefill(args)
