"""Engine overhead and KV reuse, measured against a bare llama-cpp-python loop in the same run.

    .venv/bin/python bench/engine.py [--model PATH] [--reps 5] [--prompt-tokens 512] [--gen 64]

Figures (medians over --reps, the two sides alternating so machine drift hits both):
- prompt eval tok/s: a cold prompt (a different first line each rep, so nothing is reused);
- generation tok/s: greedy tokens after the first;
- first-token latency: submission to first token, cold prompt;
- ratio codefill / bare for each (goal: time ratio ≤ 1.05), in wall time and in the process's
  CPU time (all threads), which a machine shared with other work disturbs much less;
- one-token extension: the prompt plus one token, with KV reuse (codefill's engine) vs cold.

    .venv/bin/python bench/engine.py --candidates N [--reps 9] [--json FILE]

What several candidates cost (completion.candidates): single-line suggestions through the
completion path (``Completer.complete``) at cursors after the indentation of lines of real code
(the rest of the file after the cursor's line is the suffix, as in an editor), one candidate vs
N in alternating order at each cursor. The prompt is in the KV cache first (as after a prefill
or the previous keystroke), so the figures are the generation and ranking the user waits for.
Reported: median wall and CPU time of each and their ratio, and the resident memory after
suggestions with one candidate and after suggestions with N (VmRSS).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lsp_server.config import EngineConfig  # noqa: E402
from lsp_server.engine import GenerationRequest  # noqa: E402
from lsp_server.engine.llama_engine import LlamaEngine  # noqa: E402
from lsp_server.engine.llama_loader import _llama_factory, cpu_has_amx  # noqa: E402
from lsp_server.models import read_model_info, resolve_model  # noqa: E402


def source_text(n_chars: int) -> str:
    """Real Python code from the standard library (present on every install)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    text = "".join((stdlib / name).read_text() for name in ("textwrap.py", "shlex.py"))
    return text[:n_chars]


def bare_run(llm, tokens: list[int], n_gen: int) -> tuple[float, float, float, float, float]:
    """(prompt eval s, first token s, generation s for n_gen-1 tokens, prompt eval CPU s,
    whole-run CPU s) with llama-cpp-python."""
    llm.reset()
    t0, c0 = time.perf_counter(), time.process_time()
    llm.eval(tokens)  # the same batched decode the engine uses
    t_eval, c_eval = time.perf_counter() - t0, time.process_time() - c0
    llm.reset()
    t0, c0 = time.perf_counter(), time.process_time()
    t_first = 0.0
    n = 0
    for _ in llm.generate(tokens, temp=0.0, top_k=1, reset=True):
        n += 1
        if n == 1:
            t_first = time.perf_counter() - t0
        if n == n_gen:
            break
    return (t_eval, t_first, time.perf_counter() - t0 - t_first, c_eval,
            time.process_time() - c0)


def invalidate(engine: LlamaEngine, tokens: list[int]) -> None:
    """Make the next request for ``tokens`` cold: cache a prompt that differs after BOS."""
    engine.submit(GenerationRequest(tokens=tokens[:1] + [tokens[1] + 1], max_tokens=1)).text()


def engine_run(engine: LlamaEngine, tokens: list[int], n_gen: int) -> tuple[float, float, float]:
    """Like bare_run, through the engine; prompt eval time scaled to the whole prompt (the
    engine keeps BOS, which a cold bare llama.cpp evaluates)."""
    invalidate(engine, tokens)
    c0 = time.process_time()
    s = engine.submit(GenerationRequest(tokens=tokens, max_tokens=1))
    s.text()
    c_eval = (time.process_time() - c0) * len(tokens) / s.stats.n_evaluated
    t_eval = s.stats.t_prompt_eval * len(tokens) / s.stats.n_evaluated
    invalidate(engine, tokens)
    c0 = time.process_time()
    s = engine.submit(GenerationRequest(tokens=tokens, max_tokens=n_gen))
    s.text()
    c_all = time.process_time() - c0
    assert s.stats.n_generated == n_gen, s.stats
    first = s.stats.t_first_token or 0.0
    return t_eval, first, s.stats.t_total - first, c_eval, c_all


def rss_mib() -> float:
    """The process's resident memory now (VmRSS), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def candidates_cost(args: argparse.Namespace) -> dict:
    from lsp_server.completion.completer import Completer, Cursor
    from lsp_server.completion.session import ModelSession
    from lsp_server.config import Config

    config = Config()
    config.engine.model = args.model or ""
    config.engine.context_size, config.engine.threads = 2048, args.threads
    config.engine.time_budget_ms = 60000
    session = ModelSession(config)
    session.wait_ready()
    completer = Completer(session)
    lines = source_text(60000).splitlines(keepends=True)
    picks = [i for i in range(40, len(lines)) if lines[i].startswith("        ")
             and len(lines[i].strip()) > 10][:: 7][: args.reps + 2]
    cursors = []
    for i in picks:
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        cursors.append(Cursor("".join(lines[:i]) + indent, "\n" + "".join(lines[i + 1:]),
                              "textwrap.py", language="python"))

    def timed(cursor: Cursor, n: int) -> tuple[float, float, int]:
        completer.complete(cursor, single_line=True, max_tokens=1, candidates=1)  # warm prompt
        t0, c0 = time.perf_counter(), time.process_time()
        r = completer.complete(cursor, single_line=True, max_tokens=args.gen, candidates=n)
        return time.perf_counter() - t0, time.process_time() - c0, len(r.candidates)

    mem = {"loaded": rss_mib()}
    for n in (1, args.candidates):  # memory: one candidate first, then N
        for cursor in cursors[:2]:
            timed(cursor, n)
        mem[f"after_{n}"] = rss_mib()
    rows: dict[str, list[float]] = {"wall_1": [], "wall_n": [], "cpu_1": [], "cpu_n": [],
                                    "listed": []}
    for rep, cursor in enumerate(cursors[2:]):
        for n in ((1, args.candidates) if rep % 2 == 0 else (args.candidates, 1)):
            wall, cpu, listed = timed(cursor, n)
            key = "1" if n == 1 else "n"
            rows[f"wall_{key}"].append(wall)
            rows[f"cpu_{key}"].append(cpu)
            if n != 1:
                rows["listed"].append(listed)
    session.close()
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    print(f"model: {session.model_path.name}, threads {session.engine.threads}, "
          f"{len(rows['wall_1'])} cursors, up to {args.gen} tokens, single-line, prompt cached; "
          f"median {med['listed']:.0f} distinct candidates of {args.candidates}\n")
    print(f"| figure | 1 candidate | {args.candidates} candidates | ratio |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| wall time per suggestion | {med['wall_1'] * 1000:.0f} ms "
          f"| {med['wall_n'] * 1000:.0f} ms | {med['wall_n'] / med['wall_1']:.2f} |")
    print(f"| CPU time per suggestion | {med['cpu_1'] * 1000:.0f} ms "
          f"| {med['cpu_n'] * 1000:.0f} ms | {med['cpu_n'] / med['cpu_1']:.2f} |")
    print(f"| resident memory (model loaded: {mem['loaded']:.0f} MiB) "
          f"| {mem['after_1']:.0f} MiB | {mem[f'after_{args.candidates}']:.0f} MiB "
          f"| {mem[f'after_{args.candidates}'] / mem['after_1']:.2f} |")
    return {"candidates": args.candidates, "threads": session.engine.threads, "gen": args.gen,
            "rows": rows, "medians": med, "rss_mib": mem}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--candidates", type=int, default=0,
                    help="measure N candidates against one instead (see above)")
    ap.add_argument("--json", type=Path, default=None, help="write the raw figures here")
    args = ap.parse_args()
    if args.candidates:
        if args.gen == 64:
            args.gen = 48  # a single line
        out = candidates_cost(args)
        if args.json:
            import json

            args.json.write_text(json.dumps(out, indent=1) + "\n")
        return

    path = resolve_model(args.model or None)
    info = read_model_info(path)
    cfg = EngineConfig(context_size=2048, threads=args.threads)
    engine = LlamaEngine(path, cfg, n_ctx_train=info.context_length)
    engine.wait_ready()
    bare = _llama_factory(model_path=str(path), n_ctx=engine.n_ctx, n_batch=cfg.batch_size,
                          n_ubatch=cfg.batch_size, n_threads=engine.threads,
                          n_threads_batch=engine.threads, n_gpu_layers=0,
                          swa_full=True, use_extra_bufts=not cpu_has_amx())
    text = source_text(args.prompt_tokens * 6)
    base = bare.tokenize(text.encode(), add_bos=True)[: args.prompt_tokens]

    rows: dict[str, list[float]] = {k: [] for k in (
        "eval_b", "eval_e", "first_b", "first_e", "gen_b", "gen_e", "ext_cold", "ext_warm",
        "cpu_eval_b", "cpu_eval_e", "cpu_all_b", "cpu_all_e")}
    for rep in range(args.reps + 1):  # rep 0 warms up
        tokens = base[:1] + bare.tokenize(f"# run {rep}\n".encode(), add_bos=False) + base[1:]
        tokens = tokens[: args.prompt_tokens]
        b = bare_run(bare, tokens, args.gen)
        e = engine_run(engine, tokens, args.gen)
        # One-token extension: warm (KV reuse of `tokens`) vs the same prompt cold.
        engine.submit(GenerationRequest(tokens=tokens, max_tokens=1)).text()
        warm = engine.submit(GenerationRequest(tokens=tokens + [tokens[-1]], max_tokens=1))
        warm.text()
        assert warm.stats.n_evaluated == 1, warm.stats
        invalidate(engine, tokens)
        cold = engine.submit(GenerationRequest(tokens=tokens + [tokens[-1]], max_tokens=1))
        cold.text()
        if rep == 0:
            continue
        for key, value in zip(("eval_b", "first_b", "gen_b", "cpu_eval_b", "cpu_all_b"), b):
            rows[key].append(value)
        for key, value in zip(("eval_e", "first_e", "gen_e", "cpu_eval_e", "cpu_all_e"), e):
            rows[key].append(value)
        rows["ext_warm"].append(warm.stats.t_first_token or 0.0)
        rows["ext_cold"].append(cold.stats.t_first_token or 0.0)
    engine.close()
    bare.close()

    med = {k: statistics.median(v) for k, v in rows.items()}
    n_p, n_g = len(tokens), args.gen - 1
    print(f"model: {path.name} ({info.architecture}, {info.quantization}), threads {engine.threads}, "
          f"prompt {n_p} tokens, {args.gen} generated, median of {args.reps} reps\n")
    print("| figure | bare llama-cpp-python | codefill engine | time ratio (codefill / bare) |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| prompt eval | {n_p / med['eval_b']:.0f} tok/s | {n_p / med['eval_e']:.0f} tok/s "
          f"| {med['eval_e'] / med['eval_b']:.3f} |")
    print(f"| generation | {n_g / med['gen_b']:.1f} tok/s | {n_g / med['gen_e']:.1f} tok/s "
          f"| {med['gen_e'] / med['gen_b']:.3f} |")
    print(f"| first token (cold prompt) | {med['first_b'] * 1000:.0f} ms "
          f"| {med['first_e'] * 1000:.0f} ms | {med['first_e'] / med['first_b']:.3f} |")
    print(f"| CPU time, prompt eval | {med['cpu_eval_b']:.2f} s | {med['cpu_eval_e']:.2f} s "
          f"| {med['cpu_eval_e'] / med['cpu_eval_b']:.3f} |")
    print(f"| CPU time, prompt + {args.gen} tokens | {med['cpu_all_b']:.2f} s "
          f"| {med['cpu_all_e']:.2f} s | {med['cpu_all_e'] / med['cpu_all_b']:.3f} |")
    print()
    print("| one-token extension of the prompt | first token | tokens evaluated |")
    print("| --- | ---: | ---: |")
    print(f"| cold (no reuse) | {med['ext_cold'] * 1000:.1f} ms | {n_p + 1} |")
    print(f"| KV reuse (codefill engine) | {med['ext_warm'] * 1000:.1f} ms | 1 |")
    print(f"| speed-up | {med['ext_cold'] / med['ext_warm']:.1f}× | |")


if __name__ == "__main__":
    main()
