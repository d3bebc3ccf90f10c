"""The remote backend: context, budgets and templates here, generation on a remote server.

Prompts are budgeted in characters (the same :class:`~lsp_server.prompt.assemble.Budget`, scaled
by ``CHARS_PER_TOKEN``) (:mod:`lsp_server.prompt.text_prompt`) because the remote
model's tokenizer is not available locally. With llama-server the server lays out the FIM
prompt from prefix, suffix and ``input_extra``; with an OpenAI-compatible server either the
server does (``prompt`` + ``suffix``) or we render a raw FIM prompt with ``prompt.template``.

Several candidates (``completion.candidates``): the suggestion, then samples at the local
decoder's temperature, each a request of its own with the next seed (llama-server answers them
from its slot's prompt cache; its OpenAI endpoint refuses ``n`` > 1, so one request per sample
works with either API). The server reports each token's log-probability (``n_probs`` /
``logprobs``), which the ranking uses; no suffix is scored remotely.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, Sequence

from ..config import Config
from ..settings import Settings
from ..engine.remote import RemoteEngine, RemoteError, RemoteRequest
from ..engine.candidates import CandidatesRequest, EngineCandidate, fold_repeats
from ..engine.types import (Cut, EngineCounters, GenerationRequest, StopReason, TokenEvent,
                            TokenStream)
from ..errors import CodefillError
from ..models.resolve import Progress
from ..prompt.assemble import Budget, assemble, fit_head, fit_tail, fixed_tokens
from ..prompt.templates import TEMPLATES, FimTemplate, Order, chosen_order, get_template
from ..prompt.text_prompt import CHARS_PER_TOKEN, EstimatingTokenizer, TextTokenizer
from ..prompt.tokens import Tokenizer
from .backend import CompletionBackend, InfillRequest, Listener
from .session import ModelSession

HealthNotify = Callable[[str, str], None]


class RemoteSession(CompletionBackend):
    """Generation on ``config.remote``; optionally a local fallback engine."""

    def __init__(self, settings: Settings | Config, *, progress: Progress | None = None,
                 on_health: HealthNotify | None = None) -> None:
        self.settings = Settings.of(settings)
        config = self.settings.config
        rc = config.remote
        self.kind = rc.api
        self.engine = RemoteEngine(rc, on_health=on_health)
        self._estimator = EstimatingTokenizer()
        self.template = self._template(config)
        self.fallback: CompletionBackend | None = None
        if rc.fallback:
            if progress:
                progress("loading the local fallback model")
            self.fallback = ModelSession(self.settings, progress=progress)

    @staticmethod
    def _template(config: Config) -> FimTemplate | None:
        """The template we render prompts with, or None when the server lays out FIM."""
        rc, name = config.remote, config.prompt.template
        if name == "plain":
            return get_template("plain")
        if rc.api == "openai" and rc.openai_fim == "raw":
            if name == "auto":
                fim = sorted(n for n, t in TEMPLATES.items() if t.is_fim)
                raise CodefillError(
                    "remote.openai_fim 'raw' renders the FIM prompt here, so it needs the remote "
                    "model's template, but prompt.template is 'auto'",
                    f"set prompt.template to one of: {', '.join(fim)}")
            return get_template(name)
        if name != "auto":
            get_template(name)  # reject unknown names even where the server lays out FIM
        return None

    # --- CompletionBackend ---------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self.engine.server_n_ctx or self.config.remote.context_size

    def budget(self, max_tokens: int) -> Budget:
        """In characters: the remote model's tokenizer is not here."""
        p = self.config.prompt
        return Budget.for_window(self.n_ctx, max_tokens, context_share=p.context_share,
                                 suffix_share=p.suffix_share, sticky_share=p.sticky_cut,
                                 scale=CHARS_PER_TOKEN)

    def context_allowance(self, budget: Budget) -> int:
        """In estimated tokens (:attr:`tokenizer`), of the characters the layout allows."""
        fixed = fixed_tokens(self.template, TextTokenizer(), self._order()) \
            if self.template is not None else 0
        return int(budget.context_allowance(fixed) / CHARS_PER_TOKEN)

    def _order(self) -> Order | None:
        return chosen_order(self.template, self.config.prompt.fim_order)

    @property
    def tokenizer(self) -> Tokenizer:
        return self._estimator

    @property
    def counters(self) -> EngineCounters:
        return self.engine.counters

    @property
    def label(self) -> str:
        return f"{self.kind} at {self.engine.url}"

    def wait_ready(self, timeout: float | None = None) -> None:
        """Probe the server once (its context size); an unreachable server is not fatal — it
        may come up later, requests retry and the status says what failed."""
        if self.engine.health.state == "unknown":
            try:
                self.engine.probe()
            except RemoteError:
                pass
        if self.fallback is not None:
            self.fallback.wait_ready(timeout)

    def generate(self, req: InfillRequest, listener: Listener | None = None) -> TokenStream:
        r = self.remote_request(req)
        if req.prefill:
            # llama-server fills its slot's cache with a zero-token request (cache_prompt); an
            # OpenAI-compatible server has no such request: nothing to do.
            if self.config.remote.api != "llama-server":
                stream = TokenStream(GenerationRequest(tokens=[], background=True))
                stream._finish(StopReason.PREFILLED)
                return stream
            return self.engine.submit(dataclasses.replace(r, max_tokens=0), listener=listener)
        fallback = None
        if self.fallback is not None:
            local = self.fallback
            fallback = lambda: local.generate(req)  # noqa: E731 - started on the engine thread
        return self.engine.submit(r, listener=listener, fallback=fallback)

    def alternatives(self, stream: TokenStream, first_text: str, req: InfillRequest, *,
                     n: int, cut: Cut) -> TokenStream | None:
        """``n - 1`` sampled alternatives, requested one after the other on a thread; None when
        the suggestion did not come from the remote server (the local fallback answered)."""
        if n < 2 or not isinstance(stream.prompt, dict):
            return None
        out = TokenStream(req)
        threading.Thread(target=self._samples, args=(out, stream.events, first_text, req, n, cut),
                         name="codefill-remote-candidates", daemon=True).start()
        return out

    def _samples(self, out: TokenStream, first: Sequence[TokenEvent], first_text: str,
                 req: InfillRequest, n: int, cut: Cut) -> None:
        cands = [EngineCandidate(first_text, "greedy", logprob=_logprob(first, first_text))]
        sample = dataclasses.replace(self.remote_request(req), logprobs=True,
                                     temperature=CandidatesRequest.temperature)
        try:
            for k in range(1, n):
                if out.cancelled:
                    break
                sub = self.engine.submit(dataclasses.replace(sample, seed=req.seed + k))
                out.on_cancel(sub.cancel)
                reason = sub.wait().stop_reason
                if reason in (StopReason.ERROR, StopReason.CANCELLED):
                    break  # the server is failing, or the user moved on: keep what came
                text = "".join(e.text for e in sub.events)
                end = cut(text)
                text, stop = (text, reason.value if reason else "") if end is None \
                    else (text[:end[0]], end[1])
                cands.append(EngineCandidate(text, "sample", logprob=_logprob(sub.events, text),
                                             order=k, stop=stop))
        finally:
            out.result = fold_repeats(cands, lambda c: c.text.rstrip())
            out._finish(StopReason.CANCELLED if out.cancelled else StopReason.STOP_TOKEN)

    def remote_request(self, req: InfillRequest) -> RemoteRequest:
        """The text request for ``req``, cut to the character budget of the remote context."""
        p = self.config.prompt
        rc = self.config.remote
        budget = req.budget or self.budget(req.max_tokens)
        common = dict(max_tokens=req.max_tokens, temperature=req.temperature, seed=req.seed,
                      time_budget_ms=int(req.time_budget_s * 1000) if req.time_budget_s else None,
                      model=rc.model, path=req.path, logprobs=req.logprobs)
        if self.template is not None:  # the prompt is rendered here
            tok = TextTokenizer()
            prompt = assemble(self.template, tok, prefix=req.prefix, suffix=req.suffix,
                              budget=budget, path=req.path, context=req.context,
                              order=self._order())
            stops = tuple(s for s in self.template.stops if not s.startswith("\u2581"))
            return RemoteRequest(prefix=req.prefix, suffix=req.suffix,
                                 prompt=tok.render(prompt.tokens), stop=stops, **common)
        # The server lays out FIM: send the text nearest the cursor that fits. Context selected
        # within context_allowance(budget) always fits; like assemble, the layout still skips a
        # file that would overrun the context share (a caller may pass any files).
        tok = TextTokenizer()
        context, used = [], 0
        for f in req.context:
            cost = len(f.text) + len(f.path) + 2
            if used + cost <= budget.context_allowance(0):
                context.append(f)
                used += cost
        rest = budget.total - used
        suffix_chars = int(rest * budget.suffix_share)
        prefix_cap = rest
        if rc.api == "llama-server":
            # /infill's own cut (server-common.cpp format_infill) keeps the last 3/4·batch prefix
            # tokens and the first batch/4 − 2 suffix tokens: staying inside that window (with
            # the estimate's margin) means the server never cuts, and our cut is at a line
            # start that only moves every quarter window (sticky), so its prompt cache holds.
            window = rc.infill_batch / 4
            suffix_chars = min(suffix_chars, int((window - 2) * CHARS_PER_TOKEN * 0.9))
            prefix_cap = int(3 * window * CHARS_PER_TOKEN * 0.9)
        suffix_ids, _ = fit_head(tok, req.suffix, suffix_chars)
        prefix_budget = min(prefix_cap, rest - len(suffix_ids))
        prefix_ids, _ = fit_tail(tok, req.prefix, prefix_budget,
                                 stride=int(prefix_budget * p.sticky_cut))
        prefix, suffix = tok.render(prefix_ids), tok.render(suffix_ids)
        if self.config.remote.api == "openai" and context:
            # prompt + suffix: the context goes in front of the prefix as commented files.
            prefix = "".join(_commented(f.path, f.text, req.path) for f in context) + prefix
            context = []
        return RemoteRequest(prefix=prefix, suffix=suffix, context=tuple(context), **common)

    def status(self) -> dict[str, Any]:
        h = self.engine.health
        out: dict[str, Any] = {
            "backend": self.kind,
            "model": self.config.remote.model or self.label,
            "url": self.engine.url,
            "template": self.template.name if self.template else "server's FIM template",
            "context_size": self.n_ctx,
            "remote": {"health": h.state, "last_error": h.last_error,
                       "consecutive_failures": h.consecutive_failures, "errors": h.errors,
                       "retries": h.retries, "fallbacks": h.fallbacks},
            "engine": dict(vars(self.engine.counters)),
        }
        if self.fallback is not None:
            out["fallback"] = self.fallback.status()
        return out

    def close(self) -> None:
        self.engine.close()
        if self.fallback is not None:
            self.fallback.close()


def _logprob(events: Sequence[TokenEvent], text: str) -> float:
    """The log-probability of the events that make up ``text`` (a cut generation): those that
    end within it; a token the cut splits counts as kept."""
    total, length = 0.0, 0
    for ev in events:
        if length >= len(text):
            break
        total += ev.logprob
        length += len(ev.text)
    return total


def _commented(path: str, text: str, current: str) -> str:
    from ..languages import line_comment

    body = text if text.endswith("\n") else text + "\n"
    return f"{line_comment(current)} file: {path}\n{body}"
