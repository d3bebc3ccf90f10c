"""Replay a typing session through the language server over stdio and measure latency.


    .venv/bin/python bench/typing_session.py [--model PATH] [--chars 400] [--seed 1] [--plot docs/typing.png]
    .venv/bin/python bench/typing_session.py --engine remote [--model FIM.gguf] [--spm]

A real file (the standard library's `textwrap.py`) is retyped character by character from a
point in its middle, with realistic pauses (log-normal inter-key intervals, longer at line ends
and now and then a thinking pause). Like VS Code, each keystroke sends didChange and then an
inline completion request, cancelling the previous request if it is still open. Three runs:

- codefill: the server as shipped;
- no cache / no KV reuse: the same server with `completion.cache` and `engine.kv_reuse` off;
- floor: the engine alone generating each served suggestion with its prompt already evaluated.

With ``--engine remote`` both runs use llama.cpp's llama-server (scripts/build-llama-server),
started fresh for each run with the same model and flags:

- codefill → llama-server: the daemon with ``remote.url`` pointing at it (/infill, streaming,
  cache_prompt, repository context as input_extra, plus the daemon's cache, typing-through and
  speculative completion);
- llama.vim-style: llama-server driven directly the way llama.vim drives it — one non-streaming
  ``/infill`` per keystroke with ``cache_prompt``, the previous request aborted when a key
  arrives, prefix = the lines before the cursor line, ``prompt`` = the cursor line up to the
  cursor, suffix = the rest (llama.vim's n_prefix 256 / n_suffix 64 lines).

Without --model the remote runs use the embedded model with FIM token ids added
(tests/remote_servers.fim_test_model: /infill refuses a model without FIM tokens).

Reported: p50/p95 keystroke→suggestion latency (requests that returned a suggestion), model
calls per keystroke, prompt tokens evaluated per model request, cache hit rate.

(Named typing_session.py, not typing.py: a typing.py in bench/ would shadow the standard
library's typing module for every script run from this directory.)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lsprotocol import types  # noqa: E402

from tests.lsp_harness import Harness  # noqa: E402


@dataclass
class RunResult:
    name: str
    latencies: list[float] = field(default_factory=list)
    served: list[tuple[str, int, str]] = field(default_factory=list)  # (doc text, offset, text)
    keystrokes: int = 0
    status: dict[str, Any] = field(default_factory=dict)


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

    async def watch(fut: Any, sent: float, doc: str, off: int) -> None:
        try:
            res = await fut
        except Exception:
            return
        items = (res.items if isinstance(res, types.InlineCompletionList) else res) if res else []
        if items and items[0].insert_text:
            result.latencies.append(time.monotonic() - sent)
            result.served.append((doc, off, items[0].insert_text))

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
        fut = h.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION,
            h.inline_params(uri, position(text, offset).line, position(text, offset).character),
            msg_id=msg_id)
        pending = (fut, sent, msg_id, offset)
        tasks.append(asyncio.ensure_future(watch(fut, sent, text, offset)))
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


async def replay_direct(url: str, before: str, span: str, after: str, delays: list[float],
                        result: RunResult, n_predict: int, budget_ms: int) -> None:
    """llama.vim's way: /infill per keystroke, the previous request aborted."""
    from lsp_server.config import RemoteConfig
    from lsp_server.engine.remote.http import HttpClient, RemoteError

    client = HttpClient(RemoteConfig(url=url, read_timeout_ms=600000, api_key_env=""))
    text, offset = before + after, len(before)
    aborts: list[Any] = []
    tasks = []
    result.status = {"requests": 0}

    def ask(doc: str, off: int, abort_box: list[Any]) -> str:
        line_start = doc.rfind("\n", 0, off) + 1
        line_end = doc.find("\n", off)
        line_end = len(doc) if line_end < 0 else line_end
        prefix_lines = doc[:line_start].split("\n")[-257:]
        suffix_lines = doc[line_end:].split("\n")[:65]
        body = {"input_prefix": "\n".join(prefix_lines), "prompt": doc[line_start:off],
                "input_suffix": doc[off:line_end] + "\n".join(suffix_lines),
                "input_extra": [], "n_predict": n_predict, "stream": False,
                "cache_prompt": True, "t_max_predict_ms": budget_ms, "top_k": 1,
                "samplers": ["top_k"]}
        resp = client.request("POST", "/infill", body, on_connection=abort_box.append)
        abort_box.append(resp.close)
        import json

        data = json.loads("".join(resp.events()) or "{}")
        return data.get("content", "") if isinstance(data, dict) else ""

    async def one(doc: str, off: int, sent: float, box: list[Any]) -> None:
        try:
            content = await asyncio.to_thread(ask, doc, off, box)
        except (RemoteError, ValueError):
            return  # aborted by the next keystroke
        if content.strip():
            result.latencies.append(time.monotonic() - sent)
            result.served.append((doc, off, content))

    for ch, delay in zip(span, delays):
        await asyncio.sleep(delay)
        for box in aborts:
            for abort in box:
                abort()
        aborts.clear()
        text = text[:offset] + ch + text[offset:]
        offset += 1
        result.keystrokes += 1
        result.status["requests"] += 1
        box: list[Any] = []
        aborts.append(box)
        tasks.append(asyncio.ensure_future(one(text, offset, time.monotonic(), box)))
    await asyncio.gather(*tasks)


def run_remote(args: argparse.Namespace) -> None:
    from tests.remote_servers import fim_test_model, start_llama_server

    model = Path(args.model) if args.model else fim_test_model()
    extra = ["--spm-infill"] if args.spm else []
    before, span, after = session_text(args.chars)
    delays = pauses(span, args.seed)
    n_predict, budget_ms = 32, 5000
    batch = 1024
    with start_llama_server(model, ctx=4096, batch=batch, extra_args=extra) as srv:
        daemon = run_server("codefill → llama-server", {
            "remote": {"url": srv.url, "read_timeout_ms": 600000,
                       "infill_batch": batch},
            "engine": {"time_budget_ms": budget_ms}, "prompt": {"max_tokens": n_predict}}, args)
    direct = RunResult("llama.vim-style /infill per keystroke")
    with start_llama_server(model, ctx=4096, batch=batch, extra_args=extra) as srv:
        asyncio.run(replay_direct(srv.url, before, span, after, delays, direct, n_predict,
                                  budget_ms))
    print(f"typing replay through llama-server ({model.name}{', --spm-infill' if args.spm else ''}):"
          f" {daemon.keystrokes} keystrokes of textwrap.py, seed {args.seed}\n")
    print("| run | suggestions | p50 latency | p95 latency | server requests / keystroke |")
    print("| --- | ---: | ---: | ---: | ---: |")
    c = daemon.status["completion"]["counters"]
    for r, calls in ((daemon, c["model_calls"]), (direct, direct.status["requests"])):
        print(f"| {r.name} | {len(r.latencies)} | {pct(r.latencies, .5) * 1000:.0f} ms | "
              f"{pct(r.latencies, .95) * 1000:.0f} ms | {calls / max(1, r.keystrokes):.2f} |")
    keep = ("model_calls", "superseded", "cancelled_jobs", "in_flight_adopted", "typing_through",
            "cache_hits", "speculative", "stale_dropped")
    print("\ncodefill counters: " + ", ".join(f"{k} {c.get(k)}" for k in keep))
    if daemon.latencies and direct.latencies:
        print(f"\np50 llama.vim-style / codefill = "
              f"{pct(direct.latencies, .5) / pct(daemon.latencies, .5):.2f} (goal ≥ 2)")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


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
    args = ap.parse_args()
    if args.engine == "remote":
        run_remote(args)
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
        c = r.status["completion"]["counters"]
        eng = r.status["model"]["engine"] or {}
        evals = eng.get("evaluated_tokens", 0) / max(1, eng.get("requests", 1))
        hit = r.status["completion"]["cache_hit_rate"]
        print(f"| {r.name} | {len(r.latencies)} | {pct(r.latencies, .5) * 1000:.0f} ms | "
              f"{pct(r.latencies, .95) * 1000:.0f} ms | {c['model_calls'] / r.keystrokes:.2f} | "
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
