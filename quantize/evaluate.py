"""Quality and speed of a GGUF through llama.cpp: perplexity on held-out code, tok/s.

Perplexity follows llama-perplexity: the corpus is cut into chunks of ``ctx`` tokens (each
starting with BOS when the model adds one), and only the second half of each chunk is scored so
every scored token sees at least ctx/2 tokens of context. Speed is measured on a separate model
instance without all-position logits (as the daemon runs it): prompt processing of one chunk and
greedy generation token by token. Models load through the engine's factory, which keeps
llama.cpp's AMX path out on CPUs where it crashes on K-quants.
"""

from __future__ import annotations

import ctypes
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lsp_server.engine.llama_loader import _llama_factory, cpu_has_amx, default_threads

from .errors import QuantizeError

# Corpus files: text under this size, skipping what is clearly not source code.
MAX_FILE_BYTES = 1 << 20
SKIP_DIRS = frozenset({".git", "node_modules", "__pycache__", ".venv", "venv", "build", "dist"})

ChunkProgress = Callable[[int, int], None]


@dataclass
class EvalResult:
    perplexity: float
    scored_tokens: int
    chunks: int
    ctx: int
    prompt_tokens_per_s: float
    generation_tokens_per_s: float
    prompt_tokens: int
    generated_tokens: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_corpus(path: Path) -> str:
    """The text of a file, or of every readable UTF-8 text file under a directory (sorted)."""
    if not path.exists():
        raise QuantizeError(f"evaluation corpus not found: {path}",
                            "pass --eval with a code file or a directory of code")
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not SKIP_DIRS & set(p.parts))
    texts: list[str] = []
    for f in files:
        try:
            if f.stat().st_size > MAX_FILE_BYTES:
                continue
            raw = f.read_bytes()
        except OSError:
            continue
        if b"\0" in raw:
            continue  # binary
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    text = "\n".join(t for t in texts if t.strip())
    if not text:
        raise QuantizeError(f"no text files in evaluation corpus {path}",
                            "pass --eval with a code file or a directory of code")
    return text


def _load(model: Path, *, ctx: int, threads: int, logits_all: bool) -> Any:
    return _llama_factory(model_path=str(model), n_ctx=ctx, n_batch=ctx, n_ubatch=ctx,
                          n_threads=threads, n_threads_batch=threads, logits_all=logits_all,
                          verbose=False, use_extra_bufts=not cpu_has_amx())


def _chunks(tokens: list[int], ctx: int, bos: int | None, max_chunks: int) -> list[list[int]]:
    body = ctx - (1 if bos is not None else 0)
    n = min(max_chunks, len(tokens) // body) if max_chunks > 0 else len(tokens) // body
    if n == 0:  # shorter than one chunk: score what there is
        return [([bos] if bos is not None else []) + tokens]
    return [([bos] if bos is not None else []) + tokens[i * body:(i + 1) * body]
            for i in range(n)]


def perplexity(llm: Any, chunks: list[list[int]],
               progress: ChunkProgress | None = None) -> tuple[float, int]:
    """(perplexity, scored tokens) over the second half of each chunk."""
    nll, count = 0.0, 0
    for k, chunk in enumerate(chunks):
        llm.reset()
        llm.eval(chunk)
        n = len(chunk)
        first = max(1, n // 2)
        logits = np.asarray(llm.scores[first - 1:n - 1], dtype=np.float64)  # (n - first, vocab)
        target = np.asarray(chunk[first:n])
        m = logits.max(axis=1)
        lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=1))
        nll += float((lse - logits[np.arange(len(target)), target]).sum())
        count += len(target)
        if progress:
            progress(k + 1, len(chunks))
    return math.exp(nll / count), count


def speed(llm: Any, prompt: list[int], n_gen: int) -> tuple[float, float, int]:
    """(prompt tok/s, generation tok/s, generated tokens): one prompt, then greedy decoding."""
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    t_prompt = time.perf_counter() - t0
    n_vocab = llm.n_vocab()
    generated = 0
    t1 = time.perf_counter()
    for _ in range(n_gen):
        if llm.n_tokens + 1 >= llm.n_ctx():
            break
        ptr = llm._ctx.get_logits_ith(-1)  # the last token's logits (no all-position buffer)
        logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                       shape=(n_vocab,))
        token = int(np.argmax(logits))
        llm.eval([token])
        generated += 1
    t_gen = time.perf_counter() - t1
    return len(prompt) / t_prompt, (generated / t_gen if generated else 0.0), generated


def evaluate(model: Path, text: str, *, ctx: int = 512, max_chunks: int = 8, threads: int = 0,
             n_gen: int = 64, progress: ChunkProgress | None = None) -> EvalResult:
    """Perplexity of ``model`` on ``text`` and its prompt/generation speed."""
    threads = threads or default_threads()
    try:
        llm = _load(model, ctx=ctx, threads=threads, logits_all=True)
    except (ValueError, RuntimeError) as exc:
        raise QuantizeError(f"llama.cpp cannot load {model}: {exc}",
                            "run with --debug to see llama.cpp's log") from None
    try:
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if len(tokens) < 16:
            raise QuantizeError(f"evaluation corpus is too short ({len(tokens)} tokens)",
                                "pass a larger corpus with --eval (a few thousand tokens)")
        add_bos = bool(llm._model.add_bos_token()) if hasattr(llm, "_model") else True
        bos = llm.token_bos() if add_bos and llm.token_bos() >= 0 else None
        chunks = _chunks(tokens, ctx, bos, max_chunks)
        ppl, scored = perplexity(llm, chunks, progress)
    finally:
        llm.close()
    # Half a chunk of prompt leaves room in the context for the generated tokens.
    prompt = chunks[0][: max(1, min(len(chunks[0]), ctx // 2))]
    fast = _load(model, ctx=ctx, threads=threads, logits_all=False)
    try:
        pp, tg, n_generated = speed(fast, prompt, min(n_gen, ctx - len(prompt) - 1))
    finally:
        fast.close()
    return EvalResult(ppl, scored, len(chunks), len(chunks[0]), pp, tg, len(prompt),
                      n_generated)
