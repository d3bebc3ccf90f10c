"""A loaded model ready to complete: model file, template, tokenizer and engine together.

This is the one path from (prefix, suffix) to a suggestion; the CLI, the language server and the
benchmarks all go through it, so what they measure is what the editor gets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..config import Config
from ..engine.llama_engine import LlamaEngine
from ..engine.types import EngineError, GenerationRequest, GenerationStats, StopReason
from ..models.gguf_info import TOKEN_TYPE_CONTROL, ModelInfo, read_model_info
from ..models.resolve import Progress, resolve_model
from ..prompt.assemble import Budget, ContextFile, Prompt, assemble, resolve_sentinels
from ..prompt.detect import Detection, choose_template
from ..prompt.templates import Order
from .rules import SuggestionContext, decide_single_line, first_cut, postprocess


class LlamaTokenizer:
    """:class:`~lsp_server.prompt.tokens.Tokenizer` backed by llama.cpp and the GGUF vocabulary."""

    def __init__(self, llama: Any, info: ModelInfo) -> None:
        self._llama = llama
        self._info = info
        self.bos_id: int | None = info.special_ids.get("bos")
        self.add_bos = info.add_bos

    def tokenize(self, text: str) -> list[int]:
        if not text:
            return []
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def token_id(self, piece: str) -> int | None:
        return self._info.token_id(piece)


@dataclass
class Completion:
    """A suggestion and what it cost."""

    text: str
    prompt: Prompt
    stats: GenerationStats
    stop: str
    """Why the suggestion ended: an engine stop reason or the stop rule that cut it."""
    timings: dict[str, float] = field(default_factory=dict)


def stop_ids_for(info: ModelInfo, detection: Detection) -> frozenset[int]:
    """Token ids that end a suggestion: the family's stop tokens, EOS/EOT, and any control
    token (a suggestion never contains one)."""
    ids = set(resolve_sentinels(detection.template, info.token_id).values())
    ids.update(t for t in (info.token_id(s) for s in detection.template.stops) if t is not None)
    ids.update(info.special_ids[k] for k in ("eos", "eot", "eom") if k in info.special_ids)
    ids.update(i for i, ty in enumerate(info.token_types) if ty == TOKEN_TYPE_CONTROL)
    return frozenset(ids)


class ModelSession:
    """Owns the engine for one model; safe to share between threads for ``complete``."""

    def __init__(self, config: Config | None = None, *, progress: Progress | None = None) -> None:
        self.config = config or Config()
        self.model_path = resolve_model(self.config.engine.model, progress)
        self.info = read_model_info(self.model_path)
        self.detection = choose_template(self.info, self.config.prompt.template)
        self.stop_ids = stop_ids_for(self.info, self.detection)
        self.engine = LlamaEngine(self.model_path, self.config.engine,
                                  n_ctx_train=self.info.context_length)
        self._tokenizer: LlamaTokenizer | None = None

    @property
    def template(self):  # noqa: ANN201 - FimTemplate
        return self.detection.template

    @property
    def tokenizer(self) -> LlamaTokenizer:
        if self._tokenizer is None:
            self._tokenizer = LlamaTokenizer(self.engine.llama, self.info)
        return self._tokenizer

    def order(self) -> Order | None:
        setting = self.config.prompt.fim_order
        if setting == "auto" or not self.template.is_fim:
            return None
        return Order(setting)

    def build_prompt(self, prefix: str, suffix: str, *, path: str = "",
                     context: Sequence[ContextFile] = (), max_tokens: int | None = None) -> Prompt:
        p = self.config.prompt
        allowance = max_tokens or p.max_tokens
        budget = Budget(total=self.engine.n_ctx - allowance - 1, context_share=p.context_share,
                        suffix_share=p.suffix_share)
        return assemble(self.template, self.tokenizer, prefix=prefix, suffix=suffix,
                        budget=budget, path=path, context=context, order=self.order())

    def complete(self, prefix: str, suffix: str, *, path: str = "", single_line: bool | None = None,
                 max_tokens: int | None = None, context: Sequence[ContextFile] = (),
                 language: str = "", disabled_rules: frozenset[str] = frozenset(),
                 temperature: float = 0.0, seed: int = 0) -> Completion:
        """One suggestion for the cursor between ``prefix`` and ``suffix``, synchronously.

        The same stop rules and post-processors as the language server's pipeline
        (lsp_server/completion/rules); ``single_line`` None decides like the server's 'auto'
        mode. ``disabled_rules`` switches rules off by name (for ablations). ``temperature``
        0 is greedy; above 0 samples with ``seed`` (pass@k benchmarks).
        """
        t0 = time.monotonic()
        self.engine.wait_ready()
        t_ready = time.monotonic()
        if single_line is None:
            single_line = decide_single_line(prefix, suffix, language)
        ctx = SuggestionContext(prefix=prefix[-4096:], suffix=suffix[:4096], language=language,
                                single_line=single_line)
        n = max_tokens or self.config.prompt.max_tokens
        prompt = self.build_prompt(prefix, suffix, path=path, context=context, max_tokens=n)
        t_prompt = time.monotonic()
        stream = self.engine.submit(GenerationRequest(
            tokens=prompt.tokens, max_tokens=n, stop_ids=self.stop_ids,
            time_budget_s=self.config.engine.time_budget_ms / 1000,
            temperature=temperature, seed=seed))
        text, stop = "", ""
        for ev in stream:
            text += ev.text
            cut = first_cut(text, ctx, disabled_rules)
            if cut is not None:
                text, stop = text[:cut[0]], cut[1]
                stream.cancel()
                break
        stats = stream.wait()
        if stats.stop_reason is StopReason.ERROR:
            raise EngineError(stats.error or "generation failed")
        if not stop:
            stop = stats.stop_reason.value if stats.stop_reason else "unknown"
        text, changed_by = postprocess(text, ctx, disabled_rules)
        if changed_by:
            stop += f" (post-processed: {', '.join(changed_by)})"
        return Completion(text=text, prompt=prompt, stats=stats, stop=stop, timings={
            "model_load": self.engine.load_seconds or 0.0,
            "wait_ready": t_ready - t0,
            "prompt_build": t_prompt - t_ready,
            "queued": stats.t_queued,
            "prompt_eval": stats.t_prompt_eval,
            "first_token": stats.t_first_token or 0.0,
            "generation_total": stats.t_total,
            "total": time.monotonic() - t0,
        })

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> "ModelSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
