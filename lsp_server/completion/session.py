"""The local backend: model file, adapter, template, tokenizer and llama.cpp engine together.

It owns the prompt layout of the loaded model (template, order, the exact token budget); the
completion path (:mod:`lsp_server.completion.completer`) drives it like any other backend.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from ..config import Config
from ..settings import Settings
from ..engine.llama_engine import LlamaEngine
from ..engine.candidates import CandidatesRequest
from ..engine.healing import healable
from ..engine.types import Cut, EngineCounters, GenerationRequest, TokenStream
from ..errors import ModelError
from ..models.adapter import AdapterInfo, open_adapter
from ..models.gguf_info import TOKEN_TYPE_CONTROL, ModelInfo, read_model_info
from ..models.resolve import Progress, resolve_model
from ..prompt.assemble import Budget, ContextFile, Prompt, assemble, fixed_tokens, \
    resolve_sentinels
from ..prompt.detect import Detection, choose_template
from ..prompt.templates import TEMPLATES, Order, chosen_order
from ..prompt.tokens import LlamaTokenizer
from .backend import CompletionBackend, InfillRequest, Listener

__all__ = ["LlamaTokenizer", "ModelSession", "stop_ids_for"]


def choose_session_template(info: ModelInfo, adapter: AdapterInfo | None,
                            setting: str = "auto") -> Detection:
    """The template for ``info`` with ``adapter`` applied: the adapter's own template
    (``codefill.fim.template``) when the setting is ``auto``, else detection or the explicit
    choice as without an adapter."""
    if adapter is not None and adapter.template and setting in ("", "auto"):
        if adapter.template not in TEMPLATES:
            raise ModelError(f"adapter {adapter.path} names the FIM template "
                             f"{adapter.template!r}, which this codefill does not know",
                             f"update codefill, or set prompt.template (--template) to one of: "
                             f"{', '.join(TEMPLATES)}")
        return Detection(TEMPLATES[adapter.template],
                         f"adapter {adapter.path.name} names {adapter.template}")
    return choose_template(info, setting)


def stop_ids_for(info: ModelInfo, detection: Detection) -> frozenset[int]:
    """Token ids that end a suggestion: the family's stop tokens, EOS/EOT, and any control
    token (a suggestion never contains one)."""
    # Text sentinels are ordinary text, whatever the vocabulary holds under the same spelling.
    ids = (set() if detection.template.text_sentinels
           else set(resolve_sentinels(detection.template, info.token_id).values()))
    ids.update(t for t in (info.token_id(s) for s in detection.template.stops) if t is not None)
    ids.update(info.special_ids[k] for k in ("eos", "eot", "eom") if k in info.special_ids)
    ids.update(i for i, ty in enumerate(info.token_types) if ty == TOKEN_TYPE_CONTROL)
    return frozenset(ids)


#: The code after the cursor whose likelihood ranks candidates: at most this many characters,
#: then this many tokens of them. Each scored token is a row of logits over the whole vocabulary
#: (262,144 for Gemma 3), the ranking's main cost on a CPU; on 560 held-out repository lines
#: (bench/candidate_selector.py --suffix-tokens) the first 16 tokens rank as the first 32 did
#: (exact match and edit similarity alike) and 8 or fewer rank worse (docs/candidates.md).
SCORED_CHARS = 400
SCORED_TOKENS = 16

#: Prompt tokens/s assumed before the engine has measured its own.
ASSUMED_PROMPT_TPS = 500.0


class ModelSession(CompletionBackend):
    """The local backend: owns the llama.cpp engine for one model; safe to share between
    threads for ``complete``."""

    kind = "local"

    def __init__(self, settings: Settings | Config | None = None, *,
                 progress: Progress | None = None) -> None:
        self.settings = Settings.of(settings)
        self.model_path = resolve_model(self.config.engine.model, progress,
                                        auto_pull=self.config.engine.auto_pull)
        self.info = read_model_info(self.model_path)
        self.adapter = open_adapter(self.config.engine.adapter, self.info)
        self.detection = choose_session_template(self.info, self.adapter,
                                                 self.config.prompt.template)
        self.stop_ids = stop_ids_for(self.info, self.detection)
        self.engine = LlamaEngine(self.model_path, self.config.engine,
                                  n_ctx_train=self.info.context_length,
                                  lora_path=self.adapter.path if self.adapter else None,
                                  extra_cells=self.candidates_cells(self.config.prompt.max_tokens))
        self._tokenizer: LlamaTokenizer | None = None
        self.short_prompts = 0
        """Cold requests answered from a short prompt while the full one filled in."""

    @property
    def template(self):  # noqa: ANN201 - FimTemplate
        return self.detection.template

    @property
    def scores_suffix(self) -> bool:
        """Whether the candidates are ranked on the likelihood of the suffix after each: when
        the model was not trained to read the suffix. A FIM model's own likelihood of a middle
        already weighs the suffix; a prefix-only prompt never showed it, and a text-sentinel
        layout without its adapter shows it to a base model that never learned what it is for."""
        t = self.template
        return not t.is_fim or (t.text_sentinels and self.adapter is None)

    @property
    def tokenizer(self) -> LlamaTokenizer:
        if self._tokenizer is None:
            self._tokenizer = LlamaTokenizer(self.engine.llama, self.info)
        return self._tokenizer

    def order(self) -> Order | None:
        return chosen_order(self.template, self.config.prompt.fim_order)

    def build_prompt(self, prefix: str, suffix: str, *, path: str = "",
                     context: Sequence[ContextFile] = (), max_tokens: int | None = None,
                     budget: Budget | None = None) -> Prompt:
        """The prompt tokens for a cursor, laid out by the model's template in ``budget``
        (default: this backend's budget for ``max_tokens``, else prompt.max_tokens)."""
        budget = budget or self.budget(max_tokens or self.config.prompt.max_tokens)
        return assemble(self.template, self.tokenizer, prefix=prefix, suffix=suffix,
                        budget=budget, path=path, context=context, order=self.order())

    def context_allowance(self, budget: Budget) -> int:
        return budget.context_allowance(fixed_tokens(self.template, self.tokenizer, self.order()))

    # --- CompletionBackend ---------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self.engine.window

    @property
    def counters(self) -> EngineCounters:
        return self.engine.counters

    @property
    def label(self) -> str:
        adapter = f" + {self.adapter.path.name}" if self.adapter else ""
        return f"{self.model_path.name}{adapter} ({self.template.name})"

    @property
    def warnings(self) -> list[str]:
        """What the user should know about how the model runs (a GPU that fell back to the CPU)."""
        return [self.engine.gpu_fallback] if self.engine.gpu_fallback else []

    @property
    def load_seconds(self) -> float:
        return self.engine.load_seconds or 0.0

    def wait_ready(self, timeout: float | None = None) -> None:
        self.engine.wait_ready(timeout)

    def generate(self, req: InfillRequest, listener: Listener | None = None) -> TokenStream:
        """Assemble the prompt with the model's own tokenizer and template and submit it.

        A cold prompt — more new tokens than the engine evaluates in half the time budget —
        is answered from a short one (no repository context, the text nearest the cursor), and
        the full prompt is then evaluated in the background for the next keystroke."""
        budget = req.budget or self.budget(req.max_tokens or self.config.prompt.max_tokens)
        full = self.build_prompt(req.prefix, req.suffix, path=req.path, context=req.context,
                                 budget=budget)
        prompt = full if req.prefill else self._fits_time(req, full, budget)
        tokens, lead = self.healed(prompt)
        stream = self.engine.submit(GenerationRequest(
            tokens=tokens, max_tokens=req.max_tokens, stop_ids=self.stop_ids,
            time_budget_s=req.time_budget_s, temperature=req.temperature, seed=req.seed,
            background=req.prefill, logprobs=req.logprobs, lead=lead), listener=listener)
        stream.prompt = prompt
        stream.cold = prompt is not full
        if prompt is not full:
            self.short_prompts += 1
            self.engine.submit(GenerationRequest(tokens=full.tokens, background=True))
        return stream

    def healed(self, prompt: Prompt) -> tuple[list[int], str]:
        """The tokens to evaluate and the healed lead (:mod:`..engine.healing`): when the prompt
        ends at the cursor inside a token of text, that token is taken back."""
        tokens = prompt.tokens
        if not (self.config.prompt.token_healing and prompt.ends_with_prefix and len(tokens) > 1):
            return tokens, ""
        piece = self.engine.llama.detokenize([tokens[-1]])
        return (tokens[:-1], piece.decode()) if healable(piece) else (tokens, "")

    def alternatives(self, stream: TokenStream, first_text: str, req: InfillRequest, *,
                     n: int, cut: Cut) -> TokenStream | None:
        """Alternatives decoded as parallel sequences on the engine (:mod:`..engine.candidates`):
        half of them branch after the first suggestion's indentation, half are sampled, and
        (:attr:`scores_suffix`) the suffix's first tokens are scored after each candidate. None
        after a cold (short) prompt: the full one is being evaluated and must not be interrupted
        for this."""
        if n < 2 or stream.cold or not isinstance(stream.prompt, Prompt):
            return None
        alts = n - 1
        gen: GenerationRequest = stream.request  # type: ignore[assignment]
        return self.engine.submit(CandidatesRequest(
            tokens=gen.tokens, lead=gen.lead, first=[e.token_id for e in stream.events],
            first_text=first_text, first_logprobs=[e.logprob for e in stream.events],
            branches=(alts + 1) // 2, samples=alts // 2, seed=req.seed,
            max_tokens=req.max_tokens, stop_ids=self.stop_ids, cut=cut,
            scored_text=req.suffix[:SCORED_CHARS] if self.scores_suffix else "",
            score_tokens=SCORED_TOKENS, tokenize=self.tokenizer.tokenize,
            time_budget_s=req.time_budget_s))

    def candidates_cells(self, max_tokens: int) -> int:
        """The KV cells the alternatives and the scoring take beside the prompt: each
        alternative up to ``max_tokens``, each candidate its scored suffix tokens."""
        n = self.config.completion.candidates
        return 0 if n < 2 else (n - 1) * max_tokens + n * (SCORED_TOKENS + 8)

    def candidates_room(self, max_tokens: int) -> int:
        """What the candidates need beyond the cells the engine holds beside the window for them
        (sized at load for prompt.max_tokens and completion.candidates): the prompt gives up
        only that — nothing, unless a request generates more or the settings changed since."""
        held = self.engine.n_ctx - self.engine.window
        return max(0, self.candidates_cells(max_tokens) - held)

    def needs_more_cells(self) -> bool:
        """More candidates or longer suggestions than the engine set cells aside for at load,
        where the model's trained context leaves room for more (else a reload changes nothing)."""
        want = self.candidates_cells(self.config.prompt.max_tokens)
        return self.engine.cells_with(want) > self.engine.n_ctx

    def _fits_time(self, req: InfillRequest, prompt: Prompt, budget: Budget) -> Prompt:
        """``prompt``, or a shorter one when its new tokens would not be evaluated in time."""
        share = self.config.engine.cold_share
        if not req.time_budget_s or share <= 0:
            return prompt
        speed = self.engine.counters.prompt_speed(ASSUMED_PROMPT_TPS)
        affordable = int(speed * req.time_budget_s * share)
        # Counting the cached tokens reads the engine's cache: only when it can matter.
        if (len(prompt.tokens) <= affordable
                or len(prompt.tokens) - self.engine.cached_tokens(prompt.tokens) <= affordable):
            return prompt
        # Half of what may be evaluated: the user is waiting for this keystroke's answer.
        short = dataclasses.replace(budget, total=min(budget.total, max(affordable // 2, 64)),
                                    context_share=0.0)
        return self.build_prompt(req.prefix, req.suffix, path=req.path, budget=short)

    def status(self) -> dict[str, Any]:
        return {
            "backend": "local",
            "model": str(self.model_path),
            "adapter": str(self.adapter.path) if self.adapter else None,
            "architecture": self.info.architecture,
            "template": self.template.name,
            "template_reason": self.detection.reason,
            "context_size": self.engine.window,
            "kv_cells": self.engine.n_ctx,
            "gpu_layers": self.engine.gpu_layers,
            "offload": self.engine.offload,
            "engine": dict(vars(self.engine.counters)),
            "prompt_states": {"kept": len(self.engine.states), "bytes": self.engine.states.nbytes,
                              "capacity": self.engine.states.capacity},
            "short_prompts": self.short_prompts,
        }

    def close(self) -> None:
        self.engine.close()
