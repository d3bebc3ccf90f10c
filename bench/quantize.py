"""`codefill quantize` on a checkpoint of a few hundred MB, against llama.cpp's llama-quantize.

    .venv/bin/python bench/quantize.py [--work DIR] [--types Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q4_0]
                                       [--layers 8] [--hidden 1024] [--threads 2] [--json OUT]

No weights can be downloaded here, so the checkpoint is synthetic: CodeGemma 2B's layout and
config keys (BF16, multi-query attention, head_dim 128 here) with random weights, ~150M
parameters / ~300 MB. Its perplexity on code is therefore near-uniform; what the table shows
is how each type changes size, speed and perplexity relative to F16, and whether our pipeline
and llama-quantize agree.

Measured, each in a fresh process (peak RSS is its VmHWM: ru_maxrss would include the
parent's RSS, which Linux carries across fork+exec):
1. `codefill quantize CKPT --type T` for every type: wall time and peak RSS (conversion of the
   checkpoint + llama.cpp quantization for the K/legacy types);
2. on one F16 GGUF written by our converter: quantize_gguf (llama-cpp-python's
   llama_model_quantize) vs the `llama-quantize` binary built from the llama-cpp-python sdist's
   vendored llama.cpp (same version, built once under --cache), same thread count:
   time ratio (goal ≤ 1.1), output size (goal identical), perplexity (goal equal);
3. file size, bits per weight, perplexity on held-out code (Python stdlib modules), prompt and
   generation tok/s for every file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STDLIB_CORPUS = ("textwrap.py", "shlex.py", "argparse.py", "dataclasses.py", "fractions.py")


def _child(argv: list[str]) -> dict[str, Any]:
    """Run ``argv`` (a Python snippet) in a fresh interpreter; it prints one JSON line."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", *argv], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - t0
    return out


_RUN_CLI = """
import json, sys, time
from lsp_server.cli.main import main
t0 = time.perf_counter()
rc = main(["quantize", *sys.argv[1:]])
dt = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"rc": rc, "seconds": dt, "peak_rss_mib": int(hwm) / 1024}))
"""

_RUN_QUANTIZE = """
import json, sys, time
from pathlib import Path
from quantize.llama_quantize import quantize_gguf
t0 = time.perf_counter()
quantize_gguf(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], threads=int(sys.argv[4]))
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mib": int(hwm) / 1024}))
"""


def build_llama_quantize(cache: Path) -> Path:
    """llama-quantize from the vendored llama.cpp of the installed llama-cpp-python's sdist
    (pip fetches the sdist, from its cache when present). Built once per version."""
    from importlib.metadata import version

    ver = version("llama_cpp_python")
    binary = cache / f"llama.cpp-{ver}" / "build" / "bin" / "llama-quantize"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"llama_cpp_python-{ver}.tar.gz"
    if not sdist.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                        ":all:", f"llama-cpp-python=={ver}", "-d", str(cache)], check=True)
    src = cache / f"llama.cpp-{ver}"
    if not (src / "CMakeLists.txt").exists():
        prefix = f"llama_cpp_python-{ver}/vendor/llama.cpp/"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            for m in members:
                m.name = m.name[len(prefix):]
            tar.extractall(src, members=[m for m in members if m.name], filter="data")
    build = src / "build"
    subprocess.run(["cmake", "-S", str(src), "-B", str(build), "-G", "Ninja",
                    "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_TESTS=OFF",
                    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
                    "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DBUILD_SHARED_LIBS=OFF"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build), "--target", "llama-quantize", "-j",
                    str(os.cpu_count() or 2)], check=True, stdout=subprocess.DEVNULL)
    return binary


def make_checkpoint(path: Path, layers: int, hidden: int) -> None:
    from bench.common import make_config, write_checkpoint

    if (path / "config.json").exists():
        return
    cfg = make_config("GemmaForCausalLM", hidden_size=hidden, intermediate_size=4 * hidden,
                      num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=1,
                      head_dim=hidden // 8, vocab_size=32768, max_position_embeddings=8192)
    write_checkpoint(path, cfg, dtype="bfloat16", shards=2, std=0.02)


def corpus(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in STDLIB_CORPUS:
        shutil.copy(stdlib / name, path / name)
    return path


def evaluate_file(path: Path, text: str, threads: int) -> dict[str, Any]:
    from quantize.evaluate import evaluate
    from quantize.report import file_facts

    ev = evaluate(path, text, ctx=512, max_chunks=6, threads=threads, n_gen=64)
    f = file_facts(path)
    return {"size_bytes": f.size_bytes, "bits_per_weight": f.bits_per_weight,
            "n_params": f.n_params, **ev.to_json()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/codefill-bench-quantize"))
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "codefill" / "bench")
    ap.add_argument("--types", default="Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q4_0")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the timing comparison")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    types = args.types.split(",")
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    ck = work / "checkpoint"
    t0 = time.perf_counter()
    make_checkpoint(ck, args.layers, args.hidden)
    ck_bytes = sum(p.stat().st_size for p in ck.glob("*.safetensors"))
    print(f"checkpoint: {ck} ({ck_bytes / 2**20:.0f} MiB safetensors, BF16; "
          f"built in {time.perf_counter() - t0:.1f} s)", flush=True)
    text = "\n".join((corpus(work / "corpus") / n).read_text() for n in STDLIB_CORPUS)
    results: dict[str, Any] = {"checkpoint_bytes": ck_bytes, "threads": args.threads,
                               "pipeline": {}, "vs_llama_quantize": {}, "eval": {}}

    # 1. The whole pipeline per type, checkpoint → file, each in a fresh process.
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for t in ["F16", *types]:
        r = _child([_RUN_CLI, str(ck), "--out", str(out / f"ours-{t}.gguf"), "--type", t,
                    "--threads", str(args.threads)])
        results["pipeline"][t] = r
        print(f"pipeline {t:7s} {r['seconds']:7.2f} s  peak RSS {r['peak_rss_mib']:7.0f} MiB",
              flush=True)

    # 2. Same F16 input: llama_model_quantize via llama-cpp-python vs the llama-quantize binary.
    binary = build_llama_quantize(args.cache)
    f16 = out / "ours-F16.gguf"
    for t in types:
        ours, theirs = [], []
        for rep in range(args.reps):  # alternate so that machine drift hits both sides
            a = out / f"lib-{t}.gguf"
            b = out / f"bin-{t}.gguf"
            for p in (a, b):
                p.unlink(missing_ok=True)
            ours.append(_child([_RUN_QUANTIZE, str(f16), str(a), t, str(args.threads)]))
            t1 = time.perf_counter()
            proc = subprocess.run([str(binary), str(f16), str(b), t, str(args.threads)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"llama-quantize failed:\n{proc.stderr[-2000:]}")
            theirs.append({"seconds": time.perf_counter() - t1})
        ta = min(r["seconds"] for r in ours)
        tb = min(r["seconds"] for r in theirs)
        same = a.read_bytes() == b.read_bytes()
        ppl_a = evaluate_file(a, text, args.threads)["perplexity"]
        ppl_b = evaluate_file(b, text, args.threads)["perplexity"]
        results["vs_llama_quantize"][t] = {
            "ours_s": ta, "llama_quantize_s": tb, "time_ratio": ta / tb,
            "ours_bytes": a.stat().st_size, "llama_quantize_bytes": b.stat().st_size,
            "identical_bytes": same, "ours_ppl": ppl_a, "llama_quantize_ppl": ppl_b,
            "ours_peak_rss_mib": max(r["peak_rss_mib"] for r in ours)}
        print(f"vs llama-quantize {t:7s} ours {ta:6.2f} s  theirs {tb:6.2f} s  "
              f"ratio {ta / tb:5.3f}  size {a.stat().st_size} vs {b.stat().st_size}  "
              f"identical={same}  ppl {ppl_a:.4f} vs {ppl_b:.4f}", flush=True)

    # 3. Size / perplexity / speed for every file of the pipeline.
    for t in ["F16", *types]:
        results["eval"][t] = evaluate_file(out / f"ours-{t}.gguf", text, args.threads)
    print("\n| type | size MiB | bpw | ppl | prompt tok/s | gen tok/s | pipeline s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for t in ["F16", *types]:
        e, p = results["eval"][t], results["pipeline"][t]
        print(f"| {t} | {e['size_bytes'] / 2**20:.1f} | {e['bits_per_weight']:.2f} | "
              f"{e['perplexity']:.3f} | {e['prompt_tokens_per_s']:.0f} | "
              f"{e['generation_tokens_per_s']:.1f} | {p['seconds']:.2f} | "
              f"{p['peak_rss_mib']:.0f} |")
    print("\n| type | ours s | llama-quantize s | ratio | same bytes | ppl ours | ppl llama-quantize |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for t, v in results["vs_llama_quantize"].items():
        print(f"| {t} | {v['ours_s']:.2f} | {v['llama_quantize_s']:.2f} | "
              f"{v['time_ratio']:.3f} | {v['identical_bytes']} | {v['ours_ppl']:.4f} | "
              f"{v['llama_quantize_ppl']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
