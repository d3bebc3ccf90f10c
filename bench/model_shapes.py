"""Prompt-evaluation and generation speed per model shape, with random-weight GGUFs.

    .venv/bin/python bench/model_shapes.py --threads 2 --prompt-tokens 512 --gen-tokens 64 \\
        --reps 2 --json bench/results/model-shapes.json

    options: --shapes 0.5b,1.5b,2b,3b  --types Q8_0,Q4_K_M  --cache DIR  --prepare-only
             --no-reference

What it answers: how fast would a 0.5B / 1.5B / 2B / 3B code model run on this machine, at
Q4_K_M and Q8_0? No weights can be downloaded here, but the speed of a forward pass depends on
the model's shape (hidden size, layers, FFN size, heads, KV heads, head dim, vocabulary) and
the quantization type, not on the weights' values. So each shape of SHAPES (taken from the real
models' config.json) is written as a random-weight checkpoint and quantized by this project's
own quantizer, and the resulting GGUFs are timed.

Files, cached under --cache (default ~/.cache/codefill/bench-shapes/), one folder per shape
keyed by its dimensions, reused when present:
1. a Hugging Face checkpoint in the Gemma (1) layout (``GemmaForCausalLM``, the only family
   besides Gemma 2/3 the quantizer converts), BF16 safetensors, one shard per layer, weights
   N(0, 0.02) (norms N(0, 0.1)), written one layer at a time (the whole model in float32 would
   need 12 GB for the 3B shape). config.json, tokenizer and generation_config come from
   bench.common's ``write_checkpoint``; its SentencePiece BPE tokenizer has 512 pieces, and the
   converter (quantize/vocab.py ``read_vocab``) pads the GGUF vocabulary with unused
   ``[PADk]`` tokens up to config.json's ``vocab_size``: the embedding and output matrices,
   and llama.cpp's vocabulary, have the real model's row count. Prompt tokens come from the
   512 trained pieces, which does not change the cost of a token;
2. ``quantize.pipeline`` (what ``codefill quantize`` runs) writes ``<shape>-Q8_0.gguf`` (this
   project's converter) and ``<shape>-Q4_K_M.gguf`` (llama.cpp's quantizer from a BF16
   intermediate, deleted afterwards); the checkpoint is deleted once every selected type exists.

Gemma (1) differs from the Qwen2 models it stands in for only in ways that cost next to
nothing per token: GELU instead of SiLU in the FFN, no q/k/v biases, an embedding scale. All
four real models tie the output matrix to the embedding, as Gemma does, so the output matmul
(vocabulary × hidden, Q6_K in Q4_K_M files, Q8_0 in Q8_0 files) is the same as in llama.cpp
files of those models. Hidden size 896 (0.5B) is not a multiple of 256, so llama.cpp stores the
Q4_K_M tensors that have 896 columns as Q5_0 (and Q6_K ones as Q8_0), as in real files.

Timing, each GGUF in a fresh process (so its RSS is its own): codefill's ``LlamaEngine`` (the
daemon's engine; CPU only, the daemon's default context size, --threads threads), the model
loaded, then one warm-up request (short prompt, 2 tokens) that pages in every weight, then for
each of --reps: a cold --prompt-tokens prompt (only BOS kept in the KV cache) generating
--gen-tokens greedy tokens (no stop token, so exactly that many). Reported, best of the reps:
- prompt tok/s: evaluated prompt tokens / the engine's prompt-evaluation time;
- gen tok/s: tokens after the first / time from the first to the last token (llama.cpp decode
  plus the engine's argmax over the vocabulary, as the daemon does);
- load s (LlamaEngine.load_seconds; shorter when the file is still in the page cache, as it
  usually is right after --prepare-only), RSS after load and peak RSS (VmRSS, VmHWM; --json
  splits the RSS after load into anonymous memory and mapped file pages: llama.cpp repacks
  Q4_K weights into anonymous buffers, so a Q4_K_M file can count twice until the kernel
  drops the mapped pages);
- the embedded default model (Gemma 3 270M Q4_K_M) as a reference row, timed the same way.
--json also records the machine: CPU model and flags, cores, memory, load average before and
after, llama-cpp-python version and llama.cpp's system info, date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quantize import _child  # noqa: E402


@dataclass(frozen=True)
class Shape:
    model: str
    hidden: int
    layers: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @property
    def key(self) -> str:
        return (f"h{self.hidden}-l{self.layers}-f{self.ffn}-q{self.heads}-kv{self.kv_heads}"
                f"-d{self.head_dim}-v{self.vocab}")


# From each model's config.json on Hugging Face (hidden_size, num_hidden_layers,
# intermediate_size, num_attention_heads, num_key_value_heads, head_dim or
# hidden_size / num_attention_heads, vocab_size): huggingface.co/Qwen/Qwen2.5-Coder-0.5B,
# /Qwen/Qwen2.5-Coder-1.5B, /google/codegemma-2b, /Qwen/Qwen2.5-Coder-3B. All four tie the
# output matrix to the embedding (tie_word_embeddings), as the Gemma layout does.
SHAPES: dict[str, Shape] = {
    "0.5b": Shape("Qwen2.5-Coder-0.5B", 896, 24, 4864, 14, 2, 64, 151936),
    "1.5b": Shape("Qwen2.5-Coder-1.5B", 1536, 28, 8960, 12, 2, 128, 151936),
    "2b": Shape("CodeGemma-2B", 2048, 18, 16384, 8, 1, 256, 256000),
    "3b": Shape("Qwen2.5-Coder-3B", 2048, 36, 11008, 16, 2, 128, 151936),
}
TYPES = ("Q8_0", "Q4_K_M")
REFERENCE = "Gemma 3 270M (embedded default)"


# --- files -------------------------------------------------------------------------------


def shape_dir(cache: Path, name: str) -> Path:
    return cache / f"{name}-{SHAPES[name].key}"


def gguf_path(cache: Path, name: str, qtype: str) -> Path:
    return shape_dir(cache, name) / f"{name}-{qtype}.gguf"


def write_shape_checkpoint(directory: Path, shape: Shape, seed: int = 0) -> None:
    """The checkpoint of module docstring step 1, written into ``directory``."""
    import numpy as np

    from bench.common.checkpoints import (make_config, random_weights, save_safetensors,
                                          write_checkpoint)

    cfg = make_config("GemmaForCausalLM", hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                      intermediate_size=shape.ffn, num_attention_heads=shape.heads,
                      num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim,
                      vocab_size=shape.vocab)
    # Tokenizer, config.json and generation_config.json; no tensors (they are streamed below).
    write_checkpoint(directory, cfg, seed=seed, dtype="bfloat16", weights={})
    (directory / "model.safetensors").unlink()
    # One layer at full size, for the published tensor names and shapes of a layer.
    layer = {k.removeprefix("model.layers.0."): v.shape for k, v in random_weights(
        {**cfg, "num_hidden_layers": 1, "vocab_size": 1}).items() if ".layers.0." in k}
    rng = np.random.default_rng(seed)

    def draw(dims: tuple[int, ...]) -> Any:
        std = 0.1 if len(dims) == 1 else 0.02
        return rng.standard_normal(dims, dtype=np.float32) * np.float32(std)

    n = shape.layers + 1
    weight_map: dict[str, str] = {}
    total = 0
    for k in range(n):
        if k == 0:
            tensors = {"model.embed_tokens.weight": draw((shape.vocab, shape.hidden)),
                       "model.norm.weight": draw((shape.hidden,))}
        else:
            tensors = {f"model.layers.{k - 1}.{s}": draw(dims) for s, dims in layer.items()}
        fname = f"model-{k + 1:05d}-of-{n:05d}.safetensors"
        save_safetensors(directory / fname, tensors, "bfloat16")
        weight_map.update(dict.fromkeys(tensors, fname))
        total += sum(2 * v.size for v in tensors.values())
        del tensors
    (directory / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def prepare(cache: Path, name: str, types: list[str], threads: int) -> dict[str, Any]:
    """Every selected GGUF of shape ``name`` present; what it took."""
    from quantize.pipeline import QuantizeJob, run

    folder = shape_dir(cache, name)
    missing = [t for t in types if not gguf_path(cache, name, t).exists()]
    facts: dict[str, Any] = {"shape": name, "made": missing, "checkpoint_s": 0.0,
                             "quantize_s": 0.0}
    if not missing:
        return facts
    folder.mkdir(parents=True, exist_ok=True)
    ck, partial = folder / "checkpoint", folder / "checkpoint.partial"
    if not (ck / "model.safetensors.index.json").exists():
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(ck, ignore_errors=True)
        print(f"{name}: writing the random-weight checkpoint", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        write_shape_checkpoint(partial, SHAPES[name])
        partial.rename(ck)
        facts["checkpoint_s"] = time.perf_counter() - t0
    facts["checkpoint_bytes"] = sum(p.stat().st_size for p in ck.glob("*.safetensors"))
    print(f"{name}: checkpoint {facts['checkpoint_bytes'] / 2**30:.2f} GiB "
          f"({facts['checkpoint_s']:.0f} s); quantizing to {', '.join(missing)}",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    job = QuantizeJob(source=ck, out=folder / f"{name}-{{type}}.gguf", types=missing,
                      threads=threads)
    report = run(job)
    facts["quantize_s"] = time.perf_counter() - t0
    facts["rows"] = [{"type": r.type, "seconds": r.seconds, "by": r.produced_by,
                      "size_bytes": r.size_bytes} for r in report.rows]
    if all(gguf_path(cache, name, t).exists() for t in TYPES):
        shutil.rmtree(ck)
    print(f"{name}: quantized in {facts['quantize_s']:.0f} s", file=sys.stderr, flush=True)
    return facts


# --- timing (runs in a fresh process per model) ------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(path: str, threads: int, n_prompt: int, n_gen: int, reps: int) -> dict[str, Any]:
    """Load ``path`` in codefill's engine and time it (module docstring); one process."""
    from bench.engine import invalidate, source_text
    from lsp_server.config import EngineConfig
    from lsp_server.engine import GenerationRequest, StopReason
    from lsp_server.engine.llama_engine import LlamaEngine
    from lsp_server.models import read_model_info

    info = read_model_info(path)
    ctx = max(EngineConfig().context_size, n_prompt + n_gen + 16)
    engine = LlamaEngine(path, EngineConfig(context_size=ctx, threads=threads, gpu_layers=0),
                         n_ctx_train=info.context_length)
    engine.wait_ready()
    out: dict[str, Any] = {
        "architecture": info.architecture, "quantization": info.quantization,
        "n_params": info.n_params, "size_bytes": info.size_bytes, "n_vocab": len(info.tokens),
        "threads": engine.threads, "n_ctx": engine.n_ctx, "load_s": engine.load_seconds,
        "rss_loaded_mib": _status_kib("VmRSS") / 1024,
        "hwm_loaded_mib": _status_kib("VmHWM") / 1024,
        "rss_anon_loaded_mib": _status_kib("RssAnon") / 1024,
        "rss_file_loaded_mib": _status_kib("RssFile") / 1024}
    tokens = engine.llama.tokenize(source_text(n_prompt * 16).encode(), add_bos=True)[:n_prompt]
    if len(tokens) < n_prompt:
        raise SystemExit(f"the prompt text gives only {len(tokens)} tokens")
    if n_prompt + n_gen >= engine.n_ctx:
        raise SystemExit(f"{n_prompt} + {n_gen} tokens do not fit the context of {engine.n_ctx}")
    engine.submit(GenerationRequest(tokens=tokens[:8], max_tokens=2)).text()  # warm-up
    runs = []
    for _ in range(reps):
        invalidate(engine, tokens)
        c0 = time.process_time()
        s = engine.submit(GenerationRequest(tokens=tokens, max_tokens=n_gen))
        s.text()
        st = s.stats
        if st.n_generated != n_gen or st.stop_reason is not StopReason.MAX_TOKENS:
            raise SystemExit(f"generation stopped early: {st}")
        first = st.t_first_token or 0.0
        runs.append({"n_evaluated": st.n_evaluated, "prompt_eval_s": st.t_prompt_eval,
                     "first_token_s": first, "gen_s": st.t_total - first,
                     "cpu_s": time.process_time() - c0,
                     "prompt_tok_s": st.n_evaluated / st.t_prompt_eval,
                     "gen_tok_s": (n_gen - 1) / (st.t_total - first)})
    engine.close()
    out.update(runs=runs, prompt_tok_s=max(r["prompt_tok_s"] for r in runs),
               gen_tok_s=max(r["gen_tok_s"] for r in runs),
               first_token_s=min(r["first_token_s"] for r in runs),
               hwm_peak_mib=_status_kib("VmHWM") / 1024)
    return out


_MEASURE = """
import json, sys
from bench.model_shapes import measure
a = sys.argv[1:]
print(json.dumps(measure(a[0], int(a[1]), int(a[2]), int(a[3]), int(a[4]))))
"""


# --- machine facts and report ------------------------------------------------------------


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    import llama_cpp

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines()
                  if ln.startswith("model name")), platform.processor())
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines()
                  if ln.startswith("flags")), [])
    mem = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
               if ln.startswith("MemTotal:"))
    return {
        "cpu_model": model, "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c"))),
        "mem_total_gib": mem / 2**20, "loadavg_before": os.getloadavg(),
        "llama_cpp_python": version("llama_cpp_python"),
        "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "python": platform.python_version(), "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| shape | stands for | type | params | file MiB | load s | RSS MiB loaded / peak "
             "| prompt tok/s | gen tok/s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['stands_for']} | {r['type']} | {r['n_params'] / 1e9:.2f} B "
            f"| {r['size_bytes'] / 2**20:.0f} | {r['load_s']:.2f} "
            f"| {r['rss_loaded_mib']:.0f} / {r['hwm_peak_mib']:.0f} "
            f"| {r['prompt_tok_s']:.1f} | {r['gen_tok_s']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"of {', '.join(SHAPES)}")
    ap.add_argument("--types", default=",".join(TYPES), help=f"of {', '.join(TYPES)}")
    ap.add_argument("--cache", type=Path,
                    default=Path.home() / ".cache" / "codefill" / "bench-shapes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=2, help="timed requests per model; best is kept")
    ap.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the embedded default model")
    ap.add_argument("--prepare-only", action="store_true",
                    help="write the GGUFs that are missing and exit")
    ap.add_argument("--json", type=Path, default=None, help="raw results")
    ap.add_argument("--speeds", type=Path, default=None,
                    help="also write the per-shape speeds codefill's model recommendation reads "
                         "(lsp_server/models/speeds.json)")
    args = ap.parse_args()
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    types = [t.strip().upper() for t in args.types.split(",") if t.strip()]
    for s in shapes:
        if s not in SHAPES:
            ap.error(f"unknown shape {s!r}: choose from {', '.join(SHAPES)}")
    for t in types:
        if t not in TYPES:
            ap.error(f"unknown type {t!r}: choose from {', '.join(TYPES)}")
    if args.gen_tokens < 2 or args.reps < 1 or args.prompt_tokens < 16:
        ap.error("--gen-tokens must be ≥ 2, --reps ≥ 1, --prompt-tokens ≥ 16")

    results: dict[str, Any] = {
        "machine": machine(), "shapes": {k: asdict(SHAPES[k]) for k in shapes},
        "settings": {"threads": args.threads, "prompt_tokens": args.prompt_tokens,
                     "gen_tokens": args.gen_tokens, "reps": args.reps},
        "prepare": [], "rows": []}
    t0 = time.perf_counter()
    for s in shapes:
        results["prepare"].append(prepare(args.cache, s, types, args.threads))
    results["prepare_s"] = time.perf_counter() - t0
    if any(p["made"] for p in results["prepare"]):
        os.sync()  # write-back of fresh files would otherwise slow the first timings down
    print(f"files ready in {results['prepare_s']:.0f} s under {args.cache}", file=sys.stderr,
          flush=True)

    if not args.prepare_only:
        load = os.getloadavg()[0]
        if load > 0.5:
            print(f"warning: load average {load:.2f} before timing; other work on this machine "
                  "lowers every figure", file=sys.stderr, flush=True)
        todo: list[tuple[str, str, str, Path]] = []
        if args.reference:
            from lsp_server.models import resolve_model

            todo.append(("270m (embedded)", REFERENCE, "Q4_K_M", resolve_model("")))
        todo += [(s, SHAPES[s].model, t, gguf_path(args.cache, s, t)) for s in shapes
                 for t in types]
        for shape, model, qtype, path in todo:
            print(f"timing {path.name}", file=sys.stderr, flush=True)
            r = _child([_MEASURE, str(path), str(args.threads), str(args.prompt_tokens),
                        str(args.gen_tokens), str(args.reps)])
            row = {"shape": shape, "stands_for": model, "type": qtype, "path": str(path), **r}
            results["rows"].append(row)
            print(f"  load {r['load_s']:.2f} s, RSS {r['rss_loaded_mib']:.0f} / "
                  f"{r['hwm_peak_mib']:.0f} MiB, prompt {r['prompt_tok_s']:.1f} tok/s, "
                  f"gen {r['gen_tok_s']:.1f} tok/s ({r['wall_s']:.0f} s)",
                  file=sys.stderr, flush=True)
        results["machine"]["loadavg_after"] = os.getloadavg()
        m = results["machine"]
        print(f"{m['cpu_model']}, {m['cpus_usable']} CPUs, {args.threads} threads, "
              f"llama-cpp-python {m['llama_cpp_python']}, {m['date']}; prompt "
              f"{args.prompt_tokens} tokens (cold), {args.gen_tokens} generated, best of "
              f"{args.reps}\n")
        print(table(results["rows"]))
    results["total_s"] = time.perf_counter() - t0
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.speeds and results["rows"]:
        args.speeds.write_text(json.dumps(speeds(results), indent=1) + "\n")
    return 0


def speeds(results: dict[str, Any]) -> dict[str, Any]:
    """What lsp_server/models/catalog.py estimates registry models' speed and memory from: per
    measured shape (the reference row left out: another architecture), its parameters, file
    size, tokens/s at the measured thread count and peak RSS."""
    from lsp_server.models import read_model_info

    m = results["machine"]
    rows = []
    for r in results["rows"]:
        if r["shape"] not in SHAPES:
            continue
        info = read_model_info(r["path"])
        rows.append({"shape": r["shape"], "stands_for": r["stands_for"], "type": r["type"],
                     "parameters": info.n_params, "file_bytes": info.size_bytes,
                     "prompt_tps": round(r["prompt_tok_s"], 1),
                     "gen_tps": round(r["gen_tok_s"], 2),
                     "peak_rss_bytes": int(r["hwm_peak_mib"] * 2**20)})
    return {"measured_by": "bench/model_shapes.py", "date": m["date"], "cpu": m["cpu_model"],
            "threads": results["settings"]["threads"], "rows": rows}


if __name__ == "__main__":
    sys.exit(main())
