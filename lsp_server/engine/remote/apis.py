"""Wire formats of the remote engines: one request builder and one event parser per API.

* ``llama-server`` — llama.cpp's server: ``/infill`` takes the prefix, the suffix and the
  repository context as ``input_extra`` chunks and lays out the model's FIM prompt itself
  (repo/file-separator tokens included); ``/completion`` takes a prompt text (plain mode, or a
  raw prompt rendered locally). ``cache_prompt`` keeps the slot's KV cache between requests.
* ``openai`` — ``/v1/completions`` of OpenAI-compatible servers (vLLM, Ollama,
  llama-cpp-python's server): ``prompt`` + ``suffix`` (the server applies the model's FIM
  template) or a raw FIM prompt rendered locally; streamed as server-sent events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from ...prompt.assemble import ContextFile
from ..types import StopReason
from .http import RemoteError


@dataclass(frozen=True)
class RemoteRequest:
    """One generation as text; built by the remote session, sent by the engine."""

    prefix: str
    suffix: str
    context: tuple[ContextFile, ...] = ()
    path: str = ""
    prompt: str | None = None
    """A whole prompt rendered locally (plain mode, raw FIM); None lets the server lay out FIM
    from prefix, suffix and context."""
    max_tokens: int = 64
    time_budget_ms: int | None = None
    temperature: float = 0.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    """Texts that end the generation on the server (raw prompts: the template's sentinels)."""
    model: str = ""
    logprobs: bool = False
    """Ask for each generated token's log-probability (llama-server ``n_probs``, OpenAI
    ``logprobs``): what ranks several candidates."""


@dataclass
class Chunk:
    """What one stream event carried."""

    text: str = ""
    done: bool = False
    reason: StopReason | None = None
    stats: dict[str, int] = field(default_factory=dict)
    """Final token counts when the server reports them: prompt, reused, evaluated, generated."""
    logprob: float = 0.0
    """Sum of the log-probabilities of the tokens this event carried, when asked for."""


def _sum_logprobs(values: Any) -> float:
    """The sum of the numbers in ``values`` (a server's per-token log-probabilities); anything
    else counts as 0: a missing figure must not break the text."""
    if not isinstance(values, list):
        return 0.0
    return float(sum(v for v in values if isinstance(v, (int, float)) and v == v))


class RemoteApi(Protocol):
    name: str
    probe_path: str
    """A cheap GET that shows the server is up (and, for llama-server, its context size)."""

    def build(self, r: RemoteRequest) -> tuple[str, dict[str, Any]]:
        """(path, JSON body) of the request."""
        ...

    def parse(self, event: Any) -> Chunk:
        """One decoded event of the stream; raises :class:`RemoteError` for error events."""
        ...

    def context_size(self, probe: Any) -> int | None:
        """The server's context window per request from the probe's answer, if it says."""
        ...


def _raise_if_error(event: Any) -> None:
    if not isinstance(event, dict):
        raise RemoteError(f"the remote engine sent an unexpected event: {json.dumps(event)[:120]}")
    err = event.get("error")
    if err:
        msg = err.get("message", err) if isinstance(err, dict) else err
        raise RemoteError(f"the remote engine reported an error: {str(msg)[:300]}")


class LlamaServerApi:
    """llama.cpp's llama-server (tools/server)."""

    name = "llama-server"
    probe_path = "/props"
    # stop_type of the final event → our stop reason
    STOP_TYPES = {"eos": StopReason.STOP_TOKEN, "word": StopReason.STOP_TOKEN,
                  "limit": StopReason.MAX_TOKENS}

    def build(self, r: RemoteRequest) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "n_predict": r.max_tokens,
            "stream": True,
            "cache_prompt": True,  # keep the slot's KV cache: the next keystroke reuses it
            "temperature": r.temperature,
            "seed": r.seed,
            "samplers": ["top_k", "temperature"] if r.temperature > 0 else ["top_k"],
            "top_k": 40 if r.temperature > 0 else 1,  # top_k 1 is greedy
        }
        if r.time_budget_ms:
            body["t_max_predict_ms"] = r.time_budget_ms
        if r.stop:
            body["stop"] = list(r.stop)
        if r.logprobs:
            body["n_probs"] = 1  # completion_probabilities[i].logprob: of the raw distribution
        if r.prompt is not None:
            body["prompt"] = r.prompt
            return "/completion", body
        body["input_prefix"] = r.prefix
        body["input_suffix"] = r.suffix
        body["input_extra"] = [{"filename": f.path, "text": f.text} for f in r.context]
        body["prompt"] = ""
        return "/infill", body

    def parse(self, event: Any) -> Chunk:
        _raise_if_error(event)
        text = event.get("content", "")
        if not isinstance(text, str):
            raise RemoteError(f"the remote engine sent content that is not text: {text!r:.80}")
        probs = event.get("completion_probabilities")
        logprob = _sum_logprobs([p.get("logprob") for p in probs if isinstance(p, dict)]
                                if isinstance(probs, list) else None)
        if not event.get("stop"):
            return Chunk(text=text, logprob=logprob)
        timings = event.get("timings") or {}
        n_eval = int(timings.get("prompt_n") or 0)
        if isinstance(timings.get("cache_n"), int):  # tokens taken from the slot's KV cache
            n_prompt = timings["cache_n"] + n_eval
        else:
            n_prompt = int(event.get("tokens_evaluated") or 0)
        stats = {"prompt": n_prompt, "evaluated": n_eval,
                 "reused": max(0, n_prompt - n_eval),
                 "generated": int(timings.get("predicted_n") or event.get("tokens_predicted") or 0)}
        return Chunk(text=text, done=True,
                     reason=self.STOP_TYPES.get(str(event.get("stop_type")), StopReason.STOP_TOKEN),
                     stats=stats, logprob=logprob)

    def context_size(self, probe: Any) -> int | None:
        if not isinstance(probe, dict):
            return None
        settings = probe.get("default_generation_settings") or {}
        n = settings.get("n_ctx") if isinstance(settings, dict) else None
        return int(n) if isinstance(n, int) and n > 0 else None


class OpenAIApi:
    """OpenAI-compatible ``/v1/completions`` (legacy completions with ``suffix``)."""

    name = "openai"
    probe_path = "/v1/models"
    FINISH = {"stop": StopReason.STOP_TOKEN, "length": StopReason.MAX_TOKENS}

    def build(self, r: RemoteRequest) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "max_tokens": r.max_tokens,
            "stream": True,
            "temperature": r.temperature,
            "seed": r.seed,
        }
        if r.model:
            body["model"] = r.model
        if r.stop:
            body["stop"] = list(r.stop)[:4]  # the OpenAI API takes at most 4 stop sequences
        if r.logprobs:
            body["logprobs"] = 1
        if r.prompt is not None:
            body["prompt"] = r.prompt
        else:
            body["prompt"] = r.prefix
            body["suffix"] = r.suffix
        return "/v1/completions", body

    def parse(self, event: Any) -> Chunk:
        _raise_if_error(event)
        choices = event.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            if "usage" in event:  # a usage-only event (stream_options.include_usage)
                return Chunk()
            raise RemoteError(f"the remote engine sent an event without choices: "
                              f"{json.dumps(event)[:120]}")
        choice = choices[0]
        text = choice.get("text") or ""
        if not isinstance(text, str):
            raise RemoteError(f"the remote engine sent text that is not a string: {text!r:.80}")
        lp = choice.get("logprobs")
        logprob = _sum_logprobs(lp.get("token_logprobs") if isinstance(lp, dict) else None)
        finish = choice.get("finish_reason")
        if not finish:
            return Chunk(text=text, logprob=logprob)
        usage = event.get("usage") or {}
        stats = {}
        if isinstance(usage, dict) and usage.get("prompt_tokens") is not None:
            stats = {"prompt": int(usage["prompt_tokens"]),
                     "evaluated": int(usage["prompt_tokens"]),
                     "generated": int(usage.get("completion_tokens") or 0)}
        return Chunk(text=text, done=True,
                     reason=self.FINISH.get(str(finish), StopReason.STOP_TOKEN), stats=stats,
                     logprob=logprob)

    def context_size(self, probe: Any) -> int | None:
        # vLLM lists max_model_len per model; others say nothing.
        try:
            n = probe["data"][0].get("max_model_len")
        except (TypeError, KeyError, IndexError, AttributeError):
            return None
        return int(n) if isinstance(n, int) and n > 0 else None


APIS: dict[str, type] = {"llama-server": LlamaServerApi, "openai": OpenAIApi}


def get_api(name: str) -> RemoteApi:
    """The wire format named ``name``; unknown names are rejected with the known ones."""
    try:
        return APIS[name]()
    except KeyError:
        raise RemoteError(f"unknown remote API {name!r}; known: {', '.join(APIS)}") from None
