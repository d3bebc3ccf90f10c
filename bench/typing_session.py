"""Replay a typing session through the language server over stdio and measure latency.


    .venv/bin/python bench/typing_session.py [--model PATH] [--chars 400] [--seed 1] [--plot docs/typing.png]
    .venv/bin/python bench/typing_session.py --engine remote [--model FIM.gguf] [--spm]
    .venv/bin/python bench/typing_session.py --adapter X.gguf [--order spm]
    .venv/bin/python bench/typing_session.py --candidates N [--json FILE]
    .venv/bin/python bench/typing_session.py --healing [--healing-candidates N] [--json FILE]

A real file (the standard library's `textwrap.py`) is retyped character by character from a
point in its middle, with realistic pauses (log-normal inter-key intervals, longer at line ends
and now and then a thinking pause). Like VS Code, each keystroke sends didChange and then an
inline completion request, cancelling the previous request if it is still open. Three runs:

- codefill: the server as shipped;
- no cache / no KV reuse: the same server with `completion.cache` and `engine.kv_reuse` off;
- floor: the engine alone generating each served suggestion with its prompt already evaluated.

With ``--adapter`` two runs of the server as shipped, the embedded model prefix-only (the
default) and the same with the FIM adapter loaded (its template, ``--order``): what the adapter
costs in the editor, where the KV cache keeps the evaluated prompt between keystrokes (a
benchmark's per-task latency evaluates every prompt from scratch).

With ``--candidates N`` two runs of the server as shipped, one with ``completion.candidates`` 1
and one with N: what several ranked candidates cost the typist. With ``--healing`` two runs
with ``prompt.token_healing`` off and on: what healing costs while typing (most keystrokes
leave the cursor inside a word, where healing applies).

With ``--engine remote`` both runs use llama.cpp's llama-server (scripts/build-llama-server),
started fresh for each run with the same model and flags:

- codefill → llama-server: the daemon with ``remote.url`` pointing at it (/infill, streaming,
  cache_prompt, repository context as input_extra, plus the daemon's cache, typing-through and
  speculative completion);
- llama.vim logic: llama-server driven directly the way llama.vim (ggml-org/llama.vim) drives
  it, ported from its autoload/llama.vim: on each keystroke a cached suggestion is shown if one
  fits (typed-through up to 128 characters), else one non-streaming ``/infill`` with
  ``cache_prompt`` (n_predict 128, 250 ms generation limit), one request at a time (a keystroke
  during a request re-arms a 100 ms retry), a speculative request for the text after each
  shown suggestion; prefix = 256 lines before the cursor line, ``prompt`` = the cursor line up
  to the cursor, suffix = the rest and 64 lines (see ``LlamaVim``).

Without --model the remote runs use the embedded model with FIM token ids added
(bench/common.fim_test_model: /infill refuses a model without FIM tokens).

Reported: p50/p95 keystroke→suggestion latency (requests that returned a suggestion), model
calls per keystroke, prompt tokens evaluated per model request, cache hit rate.

(Named typing_session.py, not typing.py: a typing.py in bench/ would shadow the standard
library's typing module for every script run from this directory.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lsprotocol import types  # noqa: E402

from bench.common import Harness  # noqa: E402


@dataclass
class RunResult:
    name: str
    latencies: list[float] = field(default_factory=list)
    served: list[tuple[str, int, str]] = field(default_factory=list)  # (doc text, offset, text)
    keystrokes: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    key_times: list[float] = field(default_factory=list)
    """When each keystroke was sent (monotonic seconds)."""
    shown: dict[int, float] = field(default_factory=dict)
    """Keystroke index → seconds until the first suggestion for its position arrived."""


def session_text(chars: int) -> tuple[str, str, str]:
    """(text before the typed span, the span to type, text after it) from textwrap.py."""
    src = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
    start = src.index("    def _split(self, text):")
    end = start + chars
    end = src.index("\n", end) + 1
    return src[:start], src[start:end], src[end:]


def pauses(span: str, seed: int) -> list[float]:
    """Seconds to wait before each character: ~180 ms median, longer after a line."""
    rng = random.Random(seed)
    out = []
    for i, ch in enumerate(span):
        d = rng.lognormvariate(-1.7, 0.45)  # median e^-1.7 ≈ 0.18 s
        if i and span[i - 1] == "\n":
            d += rng.uniform(0.3, 0.8)
        if rng.random() < 0.03:
            d += rng.uniform(0.8, 1.5)  # thinking
        out.append(d)
    return out


def position(text: str, offset: int) -> types.Position:
    line = text.count("\n", 0, offset)
    col = offset - (text.rfind("\n", 0, offset) + 1)
    return types.Position(line, col)  # ASCII file: UTF-16 units = characters


async def replay(h: Harness, uri: str, before: str, span: str, after: str,
                 delays: list[float], result: RunResult) -> None:
    assert h.client is not None
    text = before + after
    offset = len(before)
    pending: tuple[Any, float, str, int] | None = None
    tasks = []

    async def watch(fut: Any, sent: float, doc: str, off: int, key: int) -> None:
        try:
            res = await fut
        except Exception:
            return
        items = (res.items if isinstance(res, types.InlineCompletionList) else res) if res else []
        if items and items[0].insert_text:
            result.latencies.append(time.monotonic() - sent)
            result.served.append((doc, off, items[0].insert_text))
            result.shown.setdefault(key, result.latencies[-1])

    for ch, delay in zip(span, delays):
        await asyncio.sleep(delay)
        pos = position(text, offset)
        h.versions[uri] += 1
        h.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=h.versions[uri]),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=pos, end=pos), text=ch)]))
        text = text[:offset] + ch + text[offset:]
        offset += 1
        if pending is not None and not pending[0].done():
            h.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=pending[2]))
        msg_id = f"k{result.keystrokes}"
        result.keystrokes += 1
        sent = time.monotonic()
        result.key_times.append(sent)
        fut = h.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION,
            h.inline_params(uri, position(text, offset).line, position(text, offset).character),
            msg_id=msg_id)
        pending = (fut, sent, msg_id, offset)
        tasks.append(asyncio.ensure_future(watch(fut, sent, text, offset,
                                                 result.keystrokes - 1)))
    await asyncio.sleep(2.0)
    for t in tasks:
        t.cancel()


def run_server(name: str, settings: dict[str, Any], args: argparse.Namespace) -> RunResult:
    before, span, after = session_text(args.chars)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        h = Harness(root, settings=settings)
        h.start()
        uri = h.open(root / "textwrap_copy.py", before + after)
        result = RunResult(name)
        h.run(replay(h, uri, before, span, after, pauses(span, args.seed), result), timeout=3600)
        result.status = h.status()
        h.stop()
    return result


def floor(served: list[tuple[str, int, str]], args: argparse.Namespace,
          settings: dict[str, Any]) -> list[float]:
    """Engine-only time to generate each served suggestion, its prompt already evaluated."""
    from lsp_server.completion.session import ModelSession
    from lsp_server.config import load_config
    from lsp_server.engine import GenerationRequest

    config, _ = load_config(settings)
    out = []
    with ModelSession(config) as session:
        session.engine.wait_ready()
        for doc, off, text in served:
            prompt = session.build_prompt(doc[:off], doc[off:], path="textwrap_copy.py")
            session.engine.submit(GenerationRequest(tokens=prompt.tokens, max_tokens=1)).text()
            n = max(1, len(session.tokenizer.tokenize(text)))
            s = session.engine.submit(GenerationRequest(tokens=prompt.tokens, max_tokens=n))
            s.text()
            out.append(s.stats.t_total)
    return out


N_PREFIX, N_SUFFIX = 256, 64  # llama.vim's defaults (lines)


def vim_ctx(doc: str, off: int, prev: list[str] | None = None) -> tuple[str, str, str, int]:
    """llama.vim's s:fim_ctx_local: (prefix lines, cursor-line prefix, suffix, indent); with
    ``prev`` (a shown suggestion's lines) the context as if it had been accepted."""
    lines = doc.split("\n")
    y = doc.count("\n", 0, off)
    x = off - (doc.rfind("\n", 0, off) + 1)
    line = lines[y]
    before = lines[max(0, y - N_PREFIX):y]
    after = lines[y + 1:y + 1 + N_SUFFIX]
    if not prev:
        cur_prefix, cur_suffix = line[:x], line[x:]
        if not line.strip():  # a blank line: start from its beginning
            cur_prefix = cur_suffix = ""
        indent = len(line) - len(line.lstrip())
    else:
        cur = line[:x] + prev[0] if len(prev) == 1 else prev[-1]
        cur_prefix, cur_suffix = cur, ""
        before = lines[max(0, y - N_PREFIX + len(prev) - 1):y]
        if len(prev) > 1:
            before = before + [line[:x] + prev[0]] + prev[1:-1]
        indent = 0
    return "\n".join(before) + "\n", cur_prefix, cur_suffix + "\n" + "\n".join(after) + "\n", \
        indent


class LlamaVim:
    """llama.vim's completion logic (autoload/llama.vim, ggml-org/llama.vim a1c8e6e) driving
    llama-server: on every cursor move (each keystroke) it first shows a cached suggestion if
    one fits (the cache is keyed by context and serves a suggestion whose first characters the
    user has typed since, up to 128 back), then asks ``/infill`` unless the context is cached;
    one request at a time — while one runs, a keystroke re-arms a 100 ms retry instead of
    aborting it. Non-streaming, ``cache_prompt``, n_predict 128, 250 ms generation limit (1 s for
    the speculative request it sends for the text after a shown suggestion). Greedy here (llama.vim
    samples top-k 40 / top-p 0.9) so that both runs decode alike. No ring-buffer chunks: the
    workspace has one file and codefill's run sends no extra context either."""

    def __init__(self, url: str, result: RunResult) -> None:
        from lsp_server.config import RemoteConfig
        from lsp_server.engine.remote.http import HttpClient

        self.client = HttpClient(RemoteConfig(url=url, read_timeout_ms=600000, api_key_env=""))
        self.result = result
        self.cache: dict[str, str] = {}
        self.busy = False
        self.timer: asyncio.TimerHandle | None = None
        self.doc, self.off, self.key_t = "", 0, 0.0
        self.shown = False
        self.tasks: list[asyncio.Task] = []
        result.status = {"requests": 0}

    def keystroke(self, doc: str, off: int) -> None:
        self.doc, self.off, self.key_t, self.shown = doc, off, time.monotonic(), False
        self.try_hint()                 # CursorMovedI → s:on_move
        self.fim(None, use_cache=True)  # CursorMovedI → llama#fim

    def try_hint(self) -> None:
        prefix, middle, suffix, _ = vim_ctx(self.doc, self.off)
        raw = self.cache.get(prefix + middle + "\u00ce" + suffix)
        if raw is None:
            pm, best = prefix + middle, 0
            for i in range(128):
                removed = pm[len(pm) - (1 + i):]
                cached = self.cache.get(pm[:len(pm) - (1 + i)] + "\u00ce" + suffix)
                if cached and cached[:i + 1] == removed and len(cached[i + 1:]) > best:
                    raw, best = cached[i + 1:], len(cached[i + 1:])
        if raw and raw.strip():
            if not self.shown:
                self.shown = True
                self.result.latencies.append(time.monotonic() - self.key_t)
                self.result.served.append((self.doc, self.off, raw))
                self.result.shown[self.result.keystrokes - 1] = self.result.latencies[-1]
            self.fim(raw.split("\n"), use_cache=True)  # speculative: as if accepted

    def fim(self, prev: list[str] | None, use_cache: bool) -> None:
        loop = asyncio.get_running_loop()
        if self.busy:  # "avoid sending repeated requests too fast"
            if self.timer is not None:
                self.timer.cancel()
            self.timer = loop.call_later(0.1, self.fim, prev, use_cache)
            return
        prefix, middle, suffix, indent = vim_ctx(self.doc, self.off, prev)
        hashes = [prefix + middle + "\u00ce" + suffix]
        trimmed = prefix
        for _ in range(3):  # contexts whose first lines scrolled away
            trimmed = trimmed.split("\n", 1)[1] if "\n" in trimmed else ""
            if not trimmed:
                break
            hashes.append(trimmed + middle + "\u00ce" + suffix)
        if use_cache and any(h in self.cache for h in hashes):
            return
        body = {"id_slot": 0, "input_prefix": prefix, "input_suffix": suffix, "input_extra": [],
                "prompt": middle, "n_predict": 128, "stop": [], "n_indent": indent,
                "top_k": 1, "samplers": ["top_k"], "stream": False, "cache_prompt": True,
                "t_max_prompt_ms": 500, "t_max_predict_ms": 1000 if prev else 250}
        self.busy = True
        self.result.status["requests"] += 1
        self.tasks.append(loop.create_task(self._ask(body, hashes)))

    async def _ask(self, body: dict[str, Any], hashes: list[str]) -> None:
        import json

        def post() -> str:
            resp = self.client.request("POST", "/infill", body)
            data = json.loads("".join(resp.events()) or "{}")
            return data.get("content", "") if isinstance(data, dict) else ""

        try:
            content = await asyncio.to_thread(post)
        finally:
            self.busy = False
        for h in hashes:
            self.cache[h] = content
        if not self.shown:
            self.try_hint()


async def replay_direct(url: str, span: str, before: str, after: str, delays: list[float],
                        result: RunResult) -> None:
    vim = LlamaVim(url, result)
    text, offset = before + after, len(before)
    for ch, delay in zip(span, delays):
        await asyncio.sleep(delay)
        text = text[:offset] + ch + text[offset:]
        offset += 1
        result.keystrokes += 1
        result.key_times.append(time.monotonic())
        vim.keystroke(text, offset)
    await asyncio.sleep(2.0)
    while vim.busy:
        await asyncio.sleep(0.05)
    if vim.timer is not None:
        vim.timer.cancel()


def run_remote(args: argparse.Namespace) -> None:
    from bench.common import fim_test_model, start_llama_server

    model = Path(args.model) if args.model else fim_test_model()
    # llama.vim's recommended server setup (llama-server --fim-qwen-*-default): batch and
    # micro-batch 1024, --cache-reuse 256 (KV shifting: its 256-line prefix slides as the file
    # grows; without it every request re-evaluates the whole prompt here).
    extra = ["--ubatch-size", "1024", "--cache-reuse", "256"] + (["--spm-infill"] if args.spm
                                                                  else [])
    before, span, after = session_text(args.chars)
    delays = pauses(span, args.seed)
    n_predict, budget_ms = 32, 5000
    batch = 1024
    with start_llama_server(model, ctx=4096, batch=batch, extra_args=extra) as srv:
        daemon = run_server("codefill → llama-server", {
            "remote": {"url": srv.url, "read_timeout_ms": 600000,
                       "infill_batch": batch},
            "engine": {"time_budget_ms": budget_ms}, "prompt": {"max_tokens": n_predict}}, args)
    direct = RunResult("llama.vim logic, llama-server direct")
    with start_llama_server(model, ctx=4096, batch=batch, extra_args=extra) as srv:
        asyncio.run(replay_direct(srv.url, span, before, after, delays, direct))
    print(f"typing replay through llama-server ({model.name}, {' '.join(extra)}):"
          f" {daemon.keystrokes} keystrokes of textwrap.py, seed {args.seed}\n")
    print("| run | keystrokes with a suggestion before the next one | p50 keystroke → suggestion "
          "(all keystrokes, Kaplan–Meier) | p50 / p95 of the suggestions shown | server requests "
          "/ keystroke |")
    print("| --- | ---: | ---: | ---: | ---: |")
    c = daemon.status["completion"]["counters"]
    for r, calls in ((daemon, c["model_calls"]), (direct, direct.status["requests"])):
        on_time = sum(1 for i in range(r.keystrokes) if km_on_time(r, i))
        print(f"| {r.name} | {on_time} of {r.keystrokes} | {km_quantile(r, .5) * 1000:.0f} ms | "
              f"{pct(r.latencies, .5) * 1000:.0f} / {pct(r.latencies, .95) * 1000:.0f} ms | "
              f"{calls / max(1, r.keystrokes):.2f} |")
    keep = ("model_calls", "superseded", "cancelled_jobs", "in_flight_adopted", "typing_through",
            "cache_hits", "speculative", "stale_dropped")
    print("\ncodefill counters: " + ", ".join(f"{k} {c.get(k)}" for k in keep))
    ours, theirs = km_quantile(daemon, .5), km_quantile(direct, .5)
    print(f"\np50 keystroke → suggestion, llama.vim logic / codefill = "
          f"{theirs / ours if ours else float('nan'):.2f} (goal ≥ 2)")


def run_adapter(args: argparse.Namespace) -> None:
    """The shipped server prefix-only vs the same with the adapter, same keystrokes."""
    base = {"engine": {"model": args.model, "context_size": 2048},
            "prompt": {"max_tokens": 32}}
    runs = [run_server("prefix only (default)", base, args),
            run_server(f"adapter {Path(args.adapter).name}, {args.order.upper()}", {
                "engine": {**base["engine"], "adapter": args.adapter},
                "prompt": {**base["prompt"], "fim_order": args.order}}, args)]
    loaded = runs[1].status["model"]
    if not loaded.get("adapter") or \
            Path(loaded["adapter"]).resolve() != Path(args.adapter).resolve():
        raise SystemExit(f"the server did not load the adapter: {loaded}")
    print(f"typing replay: {runs[0].keystrokes} keystrokes of textwrap.py, seed {args.seed}\n")
    print("| run | suggestions | p50 latency | p95 latency | p50 keystroke → suggestion (all "
          "keystrokes, Kaplan–Meier) | model calls / keystroke | prompt tokens evaluated / model "
          "request |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in runs:
        calls, evals = model_load(r)
        print(f"| {r.name} | {len(r.latencies)} | {pct(r.latencies, .5) * 1000:.0f} ms | "
              f"{pct(r.latencies, .95) * 1000:.0f} ms | {km_quantile(r, .5) * 1000:.0f} ms | "
              f"{calls:.2f} | {evals:.0f} |")
    a, b = (pct(r.latencies, .5) for r in runs)
    print(f"\ntemplates: {runs[0].status['model']['template']} / {loaded['template']}")
    print(f"\np50 adapter / prefix only = {b / a if a else float('nan'):.2f}")


def run_candidates(args: argparse.Namespace) -> None:
    """The shipped server with one candidate vs N, same keystrokes."""
    n = args.candidates
    run_pair(args, f"p50 keystroke → suggestion, {n} candidates / 1",
             ("1 candidate", {"completion": {"candidates": 1}}),
             (f"{n} candidates", {"completion": {"candidates": n}}))


def run_healing(args: argparse.Namespace) -> None:
    """The shipped server with token healing off vs on (docs/token-healing.md), same keystrokes
    and candidates (``--healing-candidates``, the setting's default without it)."""
    n = {"completion": {"candidates": args.healing_candidates}} if args.healing_candidates else {}
    run_pair(args, "p50 keystroke → suggestion, healing on / off",
             ("token healing off", {**n, "prompt": {"token_healing": False}}),
             ("token healing on", {**n, "prompt": {"token_healing": True}}))


def run_pair(args: argparse.Namespace, ratio: str, *pair: tuple[str, dict[str, Any]]) -> None:
    """Two runs of the shipped server, each with its own settings over the same base, the same
    keystrokes; a table, the second run's p50 over the first's and (``--json``) the raw figures."""
    base = {"engine": {"model": args.model, "context_size": 2048}, "prompt": {"max_tokens": 32}}
    runs = [run_server(name, {k: {**base.get(k, {}), **settings.get(k, {})}
                              for k in {*base, *settings}}, args) for name, settings in pair]
    print(f"typing replay: {runs[0].keystrokes} keystrokes of textwrap.py, seed {args.seed}\n")
    print("| run | suggestions | p50 latency | p95 latency | p50 keystroke → suggestion (all "
          "keystrokes, Kaplan–Meier) | model calls / keystroke | candidates / model call |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    out = []
    for r in runs:
        calls, _ = model_load(r)
        c = r.status["completion"]["counters"]
        row = {"run": r.name, "suggestions": len(r.latencies),
               "p50_ms": pct(r.latencies, .5) * 1000, "p95_ms": pct(r.latencies, .95) * 1000,
               "km_p50_ms": km_quantile(r, .5) * 1000, "calls_per_key": calls,
               "candidates_per_call": c["candidates"] / max(1, c["model_calls"]),
               "latencies_s": r.latencies, "counters": c}
        out.append(row)
        print(f"| {r.name} | {row['suggestions']} | {row['p50_ms']:.0f} ms | {row['p95_ms']:.0f} ms"
              f" | {row['km_p50_ms']:.0f} ms | {calls:.2f} | {row['candidates_per_call']:.1f} |")
    a, b = (r["km_p50_ms"] for r in out)
    print(f"\n{ratio} = {b / a if a else float('nan'):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"seed": args.seed, "runs": out}, indent=1) + "\n")


def model_load(r: RunResult) -> tuple[float, float]:
    """(model calls per keystroke, prompt tokens evaluated per model request) of a local run."""
    c = r.status["completion"]["counters"]
    eng = r.status["model"]["engine"] or {}
    return (c["model_calls"] / r.keystrokes,
            eng.get("evaluated_tokens", 0) / max(1, eng.get("requests", 1)))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def km_on_time(r: RunResult, i: int, tail_s: float = 2.0) -> bool:
    """Keystroke ``i`` got its suggestion before the next keystroke."""
    lat = r.shown.get(i)
    gap = (r.key_times[i + 1] - r.key_times[i]) if i + 1 < len(r.key_times) else tail_s
    return lat is not None and lat <= gap


def km_quantile(r: RunResult, q: float, tail_s: float = 2.0) -> float:
    """Keystroke → suggestion latency quantile over *all* keystrokes (Kaplan–Meier): a keystroke
    typed over before its suggestion arrived is censored at the time to the next keystroke (its
    latency is only known to be longer). inf when the estimate never reaches ``q``."""
    times = r.key_times
    obs = []
    for i, t in enumerate(times):
        gap = (times[i + 1] - t) if i + 1 < len(times) else tail_s
        lat = r.shown.get(i)
        obs.append((lat, True) if lat is not None and lat <= gap else (gap, False))
    obs.sort()
    at_risk, surv = len(obs), 1.0
    for value, event in obs:
        if event:
            surv *= 1 - 1 / at_risk
            if 1 - surv >= q:
                return value
        at_risk -= 1
    return float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="")
    ap.add_argument("--chars", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--plot", default="", help="write a latency plot (PNG, needs matplotlib)")
    ap.add_argument("--engine", choices=("local", "remote"), default="local",
                    help="local: the in-process engine; remote: llama-server, codefill vs "
                         "llama.vim-style direct requests")
    ap.add_argument("--spm", action="store_true", help="remote: start llama-server with "
                                                       "--spm-infill")
    ap.add_argument("--adapter", default="", help="local: compare prefix-only with this LoRA "
                                                  "adapter GGUF loaded")
    ap.add_argument("--order", choices=("auto", "psm", "spm"), default="spm",
                    help="with --adapter: its prompt order (spm)")
    ap.add_argument("--candidates", type=int, default=0,
                    help="local: compare one candidate with N (completion.candidates)")
    ap.add_argument("--healing", action="store_true",
                    help="local: compare token healing off with on (prompt.token_healing)")
    ap.add_argument("--healing-candidates", type=int, default=0,
                    help="with --healing: completion.candidates on both sides (default: the "
                         "setting's default)")
    ap.add_argument("--json", default="", help="with --candidates or --healing: write the raw "
                                               "figures here")
    args = ap.parse_args()
    if args.candidates:
        run_candidates(args)
        return
    if args.healing:
        run_healing(args)
        return
    if args.engine == "remote":
        run_remote(args)
        return
    if args.adapter:
        run_adapter(args)
        return

    base = {"engine": {"model": args.model, "context_size": 2048},
            "prompt": {"max_tokens": 32}}
    shipped = run_server("codefill", base, args)
    plain = run_server("no cache / no KV reuse", {
        "engine": {**base["engine"], "kv_reuse": False}, "prompt": base["prompt"],
        "completion": {"cache": False, "speculative": False}}, args)
    floor_s = floor(shipped.served, args, base)

    print(f"typing replay: {shipped.keystrokes} keystrokes of textwrap.py, seed {args.seed}\n")
    print("| run | suggestions | p50 latency | p95 latency | model calls / keystroke | "
          "prompt tokens evaluated / model request | cache hit rate |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in (shipped, plain):
        calls, evals = model_load(r)
        hit = r.status["completion"]["cache_hit_rate"]
        print(f"| {r.name} | {len(r.latencies)} | {pct(r.latencies, .5) * 1000:.0f} ms | "
              f"{pct(r.latencies, .95) * 1000:.0f} ms | {calls:.2f} | "
              f"{evals:.0f} | {hit if hit is not None else '-'} |")
    print(f"| floor (engine, prompt evaluated) | {len(floor_s)} | {pct(floor_s, .5) * 1000:.0f} ms"
          f" | {pct(floor_s, .95) * 1000:.0f} ms | | | |")
    if floor_s and shipped.latencies:
        print(f"\np50 codefill / floor = {pct(shipped.latencies, .5) / pct(floor_s, .5):.2f} "
              f"(goal ≤ 1.2)")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in (shipped, plain):
            ax.plot(sorted(x * 1000 for x in r.latencies),
                    [i / max(1, len(r.latencies)) for i in range(len(r.latencies))], label=r.name)
        ax.plot(sorted(x * 1000 for x in floor_s),
                [i / max(1, len(floor_s)) for i in range(len(floor_s))], label="floor",
                linestyle="--")
        ax.set_xlabel("keystroke → suggestion latency (ms)")
        ax.set_ylabel("fraction of suggestions")
        ax.set_xscale("log")
        ax.legend()
        ax.grid(alpha=.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
