"""The in-process engine: one worker thread owns a llama-cpp-python ``Llama``.

llama.cpp contexts are not thread-safe, so every decode happens on the worker; callers submit
requests and read token streams. Between requests the KV cache keeps the previous prompt and
generation: a new prompt only evaluates the tokens after the longest common prefix (the prompt
layout keeps stable material first so that this prefix is long).
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import EngineConfig
from ..errors import ModelError
from .candidates import CandidateDecoder, CandidatesRequest, log_softmax_at, pick
from .healing import Pieces, pieces_of, restrict
from .llama_loader import LlamaFactory, _llama_factory, cpu_has_amx, default_threads, log
from .prompt_states import MIN_GAIN_TOKENS, PromptStates, common_prefix_len
from .types import (EngineCounters, GenerationRequest, GenerationStats, StopReason, TokenEvent,
                    TokenStream, cancel_queued)

_requests_log = logging.getLogger("codefill.engine")


#: Tokens per decode call of a background prefill (~0.2 s on 2 CPU cores for a 270M model).
PREFILL_BATCH = 128


class LlamaEngine:
    """Loads a GGUF model on a worker thread and serves generation requests in order."""

    def __init__(self, model_path: str | os.PathLike[str], config: EngineConfig | None = None,
                 *, n_ctx_train: int | None = None, llama_factory: LlamaFactory | None = None,
                 on_state: Callable[[str, str], None] | None = None,
                 lora_path: str | os.PathLike[str] | None = None, extra_cells: int = 0) -> None:
        self.model_path = Path(model_path)
        self.config = config or EngineConfig()
        # A LoRA GGUF llama.cpp applies at load: ModelSession passes engine.adapter resolved and
        # checked against the model (models/adapter.py); other callers get it resolved here.
        # llama-cpp-python then reads the model into memory instead of mapping it.
        if lora_path is None and self.config.adapter:
            from ..models.adapter import resolve_adapter

            lora_path = resolve_adapter(self.config.adapter)
        self.lora_path = Path(lora_path) if lora_path else None
        self.threads = self.config.threads or default_threads()
        # Prompts are budgeted to ``window``; the candidates' parallel sequences write to the
        # ``extra_cells`` beside it, so several candidates do not shorten the prompt.
        self.n_ctx_train = n_ctx_train
        self.window = min(self.config.context_size, n_ctx_train or self.config.context_size)
        self.n_ctx = self.cells_with(extra_cells)
        self.counters = EngineCounters()
        self.state = "loading"
        self.load_error: str | None = None
        self.load_seconds: float | None = None
        self.gpu_layers = 0
        """Layers llama.cpp was asked to offload (after ``auto`` was resolved)."""
        self.offload = ""
        """How engine.gpu_layers was resolved, and a GPU failure that fell back to the CPU."""
        self.gpu_fallback = ""
        """Why the model runs on the CPU although layers were to be offloaded ("": it did not)."""
        self._factory = llama_factory or _llama_factory
        self._on_state = on_state
        self.states = PromptStates(self.config.prompt_states)
        """Prompts the engine moved away from, kept for switching back."""
        self._jobs: "queue.Queue[TokenStream | None]" = queue.Queue()
        self._current: TokenStream | None = None
        """The request the worker is on (cancelled by :meth:`close`)."""
        self._closing = False
        self._ready = threading.Event()
        self._llama: Any = None
        self._pieces: Pieces | None = None
        self._thread = threading.Thread(target=self._run, name="codefill-engine", daemon=True)
        self._thread.start()

    # --- public API ----------------------------------------------------------------------
    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the model is loaded; raise :class:`ModelError` if loading failed."""
        if not self._ready.wait(timeout):
            raise TimeoutError(f"model still loading after {timeout} s")
        if self.load_error:
            raise ModelError(self.load_error, "check the model file (`codefill models --model "
                                              "PATH`) or pick another with --model"
                             + (" and the adapter (--adapter)" if self.lora_path else ""))

    @property
    def llama(self) -> Any:
        """The loaded ``Llama`` (for tokenization, which is read-only and thread-safe)."""
        self.wait_ready()
        return self._llama

    def submit(self, request: GenerationRequest,
               listener: Callable[[TokenEvent | None], None] | None = None) -> TokenStream:
        """Queue ``request``; its tokens arrive on the returned stream (and at ``listener``)."""
        stream = TokenStream(request, listener=listener)
        if self.state == "closed" or self._closing:
            stream._finish(StopReason.ERROR, "engine is closed")
        else:
            self._jobs.put(stream)
        return stream

    def cached_tokens(self, tokens: list[int]) -> int:
        """How much of ``tokens`` the live cache or a kept prompt state already holds (an
        estimate read from another thread: the worker may be changing it)."""
        llm = self._llama
        if llm is None:
            return 0
        prompt = np.asarray(tokens, dtype=np.intc)
        live = common_prefix_len(np.array(llm.input_ids[: llm.n_tokens]), prompt)
        return max(live, self.states.best(prompt)[1])

    def close(self) -> None:
        """Stop the worker and free the model. Queued requests are cancelled and the one in
        progress is stopped at its next decode step, so closing waits for one step, not for
        every request still queued (alternatives, a prefill, a speculative suggestion)."""
        if self.state == "closed":
            return
        self._closing = True
        cancel_queued(self._jobs)
        current = self._current
        if current is not None:
            current.cancel()
        self._jobs.put(None)
        self._thread.join(timeout=30)
        self._set_state("closed")

    def __enter__(self) -> "LlamaEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- worker --------------------------------------------------------------------------
    def _set_state(self, state: str, detail: str = "") -> None:
        self.state = state
        if self._on_state:
            self._on_state(state, detail)

    def _open(self, gpu_layers: int) -> Any:
        lora = {"lora_path": str(self.lora_path)} if self.lora_path else {}
        return self._factory(
            model_path=str(self.model_path), n_ctx=self.n_ctx,
            n_batch=self.config.batch_size, n_ubatch=self.config.batch_size,
            n_threads=self.threads, n_threads_batch=self.threads,
            n_gpu_layers=gpu_layers, logits_all=False,
            # A full-size sliding-window cache lets SWA models (Gemma 2/3) drop a suffix of
            # the KV cache, which prefix reuse needs.
            swa_full=True,
            use_extra_bufts=self._extra_buffers(), **lora,
        )

    def _open_with_offload(self) -> Any:
        """The model with engine.gpu_layers resolved; when offloading fails (the GPU's memory
        is too small for the weights or the KV cache), the CPU instead, with a message."""
        from .gpu import resolve_layers

        self.gpu_layers, self.offload = resolve_layers(self.config.gpu_layers, self.model_path)
        if self.gpu_layers == 0:
            return self._open(0)
        try:
            return self._open(self.gpu_layers)
        except Exception as exc:  # noqa: BLE001 - out of GPU memory, most likely: try the CPU
            self.offload = self.gpu_fallback = (
                f"offloading {'all' if self.gpu_layers < 0 else self.gpu_layers} layers to the "
                f"GPU failed ({exc}); running on the CPU instead: lower engine.gpu_layers or "
                "engine.context_size to use the GPU")
            log.warning("%s", self.gpu_fallback)
            self.gpu_layers = 0
            return self._open(0)

    def _load(self) -> None:
        t0 = time.monotonic()
        try:
            self._llama = self._open_with_offload()
        except Exception as exc:  # llama.cpp reports load failures as ValueError/RuntimeError
            self.load_error = f"cannot load model {self.model_path}" + (
                f" with adapter {self.lora_path}" if self.lora_path else "") + f": {exc}"
            self._set_state("failed", self.load_error)
        else:
            self.load_seconds = time.monotonic() - t0
            self._set_state("ready")
        finally:
            self._ready.set()

    def _extra_buffers(self) -> bool:
        mode = self.config.extra_buffers
        if mode == "auto":
            # llama.cpp's AMX matmul segfaults on Q4_K models on some AMX CPUs (ggml-org/
            # llama.cpp#20824, seen on this project's build machines): keep AMX out.
            return not cpu_has_amx()
        return mode == "on"

    def _run(self) -> None:
        self._load()
        if self._llama is not None:
            # Token healing's index of the vocabulary, before the first request, on this thread:
            # the model must not be freed (a reload) while the index reads it.
            self._index_vocabulary()
        while True:
            stream = self._jobs.get()
            if stream is None:
                break
            if self.load_error:
                stream._finish(StopReason.ERROR, self.load_error)
                continue
            self._current = stream
            try:
                if isinstance(stream.request, CandidatesRequest):
                    self._candidates(stream)
                else:
                    self._generate(stream)
            except Exception as exc:  # a decode failure must not kill the worker
                self._reset_cache()
                stream._finish(StopReason.ERROR, f"generation failed: {exc}")
            finally:
                self._current = None
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    def _reset_cache(self) -> None:
        if self._llama is not None:
            self._llama.n_tokens = 0
            self._llama._ctx.kv_cache_seq_rm(-1, 0, -1)
        self.states.clear()

    def _reuse(self, prompt: np.ndarray, stats: GenerationStats) -> int:
        """Prepare the KV cache for ``prompt``: keep its longest common prefix with the live
        cache, or restore a kept prompt state that shares more (keeping the live one first when
        it is about to be overwritten). Returns the tokens the cache already holds."""
        llm = self._llama
        live = common_prefix_len(llm.input_ids[: llm.n_tokens], prompt)
        kept, shared = self.states.best(prompt)
        if kept is not None and shared >= live + MIN_GAIN_TOKENS:
            self.states.take(kept)
        else:
            kept = None
        if llm.n_tokens - live >= MIN_GAIN_TOKENS:
            self.states.keep(llm)  # most of it would be overwritten: keep it for switching back
        if kept is not None and self.states.restore(llm, kept):
            self.counters.restored_states += 1
            self.counters.restored_tokens += shared
            stats.n_restored = shared
            return shared
        return live

    def _generate(self, stream: TokenStream) -> None:
        llm = self._llama
        req: GenerationRequest = stream.request  # type: ignore[assignment]
        stats = stream.stats
        start = time.monotonic()
        stats.t_queued = start - stream.submitted
        # The budget counts this request's own work, not its wait behind a prefill.
        deadline = start + req.time_budget_s if req.time_budget_s else None
        prompt = np.asarray(req.tokens, dtype=np.intc)
        self.counters.requests += 1
        stats.n_prompt = len(prompt)
        if len(prompt) == 0:
            stream._finish(StopReason.ERROR, "empty prompt")
            return
        if len(prompt) >= self.n_ctx:
            stream._finish(StopReason.ERROR, f"prompt of {len(prompt)} tokens does not fit the "
                                             f"context of {self.n_ctx} tokens")
            return

        stop = self._evaluate(stream, prompt, deadline, background=req.background,
                              fresh_logits=not req.background)
        if stop is not None:
            return self._end(stream, stop)
        if req.background:
            return self._end(stream, StopReason.PREFILLED)

        n_vocab = llm.n_vocab()
        rng = np.random.default_rng(req.seed) if req.temperature > 0 else None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        lead = req.lead.encode()
        allowed = self.pieces().allowed(lead) if lead else None
        while True:
            ptr = llm._ctx.get_logits_ith(-1)
            logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                           shape=(n_vocab,))
            token = pick(logits if allowed is None else restrict(logits, allowed),
                         req.temperature, rng)
            if token in req.stop_ids:
                return self._end(stream, StopReason.STOP_TOKEN)
            piece = llm.detokenize([token])
            if allowed is not None:  # the healed token: its lead is the prompt's text
                piece, allowed = piece[len(lead):], None
            text = decoder.decode(piece)
            stats.n_generated += 1
            if stats.t_first_token is None:
                stats.t_first_token = time.monotonic() - stream.submitted
            stream._emit(TokenEvent(token, text, log_softmax_at(logits, token)
                                    if req.logprobs else 0.0))
            if stats.n_generated >= req.max_tokens:
                return self._end(stream, StopReason.MAX_TOKENS)
            if stream.cancelled:
                return self._end(stream, StopReason.CANCELLED)
            if deadline is not None and time.monotonic() > deadline:
                return self._end(stream, StopReason.TIME_BUDGET)
            if llm.n_tokens + 1 >= self.n_ctx:
                return self._end(stream, StopReason.CONTEXT_FULL)
            # Evaluate the emitted token so that the cache holds prompt + generation: a follow-up
            # request that continues this text reuses all of it.
            llm.eval([token])

    def _evaluate(self, stream: TokenStream, prompt: np.ndarray, deadline: float | None, *,
                  background: bool, fresh_logits: bool) -> StopReason | None:
        """Bring the KV cache to ``prompt`` (reusing what it holds); a stop reason when it was
        stopped on the way (``background``: also when another request waits). With
        ``fresh_logits`` the last token is evaluated even when cached, so that logits exist for
        the first sampled token."""
        llm, stats = self._llama, stream.stats
        keep = 0
        if self.config.kv_reuse:
            keep = min(self._reuse(prompt, stats), len(prompt) - fresh_logits)
        if keep < llm.n_tokens and not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            keep = 0  # this cache cannot drop a suffix: start over
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        llm.n_tokens = keep
        stats.n_reused = keep
        # A prefill evaluates in smaller batches: a request waits at most one batch for it.
        batch = min(self.config.batch_size, PREFILL_BATCH) if background else \
            self.config.batch_size
        t_eval = time.monotonic()
        for i in range(keep, len(prompt), batch):
            stop = (StopReason.CANCELLED if stream.cancelled else
                    StopReason.PREEMPTED if background and not self._jobs.empty() else
                    StopReason.TIME_BUDGET if deadline is not None
                    and time.monotonic() > deadline else None)
            if stop is not None:
                stats.t_prompt_eval = time.monotonic() - t_eval
                return stop
            chunk = prompt[i: i + batch].tolist()
            llm.eval(chunk)
            stats.n_evaluated += len(chunk)
        stats.t_prompt_eval = time.monotonic() - t_eval
        return None

    def _candidates(self, stream: TokenStream) -> None:
        """Alternatives to a greedy suggestion and their scores (:mod:`.candidates`); the
        result is ``stream.result``."""
        req: CandidatesRequest = stream.request  # type: ignore[assignment]
        start = time.monotonic()
        stream.stats.t_queued = start - stream.submitted
        deadline = start + req.time_budget_s if req.time_budget_s else None
        self.counters.requests += 1
        decoder = CandidateDecoder(self._llama, req, self.n_ctx, lambda: stream.cancelled,
                                   self.pieces() if req.lead else None)
        prompt = np.asarray(req.tokens + req.first[:decoder.kept], dtype=np.intc)
        stream.stats.n_prompt = len(prompt)
        if not req.tokens or len(prompt) >= self.n_ctx:
            return self._end(stream, StopReason.CONTEXT_FULL)
        stop = self._evaluate(stream, prompt, deadline, background=False, fresh_logits=False)
        if stop is not None:
            return self._end(stream, stop)
        stream.result = decoder.run()
        self._end(stream, StopReason.CANCELLED if decoder.stopped == "cancelled" else
                  StopReason.TIME_BUDGET if decoder.stopped else StopReason.MAX_TOKENS)

    def cells_with(self, extra_cells: int) -> int:
        """The KV cells this engine holds with ``extra_cells`` beside its window: the model's
        trained context caps them."""
        return min(self.window + max(0, extra_cells), self.n_ctx_train or 1 << 30)

    def pieces(self) -> Pieces:
        """The vocabulary's token texts, sorted for token healing (made at the first use, kept
        for the engine's life: a request does not look at the model file again)."""
        if self._pieces is None:
            try:
                st = self.model_path.stat()
                key: tuple[object, ...] = (str(self.model_path), st.st_size, st.st_mtime_ns)
            except OSError:
                key = (str(self.model_path),)
            self._pieces = pieces_of(self._llama, key)
        return self._pieces

    def _index_vocabulary(self) -> None:
        try:
            self.pieces()
        except Exception as exc:  # noqa: BLE001 - a request that heals makes it again
            log.debug("token healing's vocabulary index failed: %s", exc)

    def _end(self, stream: TokenStream, reason: StopReason) -> None:
        s = stream.stats
        self.counters.add(s, reason)
        _requests_log.debug("request %s: prompt %d, reused %d, evaluated %d, generated %d",
                            reason.value, s.n_prompt, s.n_reused, s.n_evaluated, s.n_generated)
        stream._finish(reason)
