"""Time one LoRA training step (forward + backward + AdamW) of the embedded Gemma 3 270M on CPU.

    .venv/bin/python bench/gemma3_lora_step.py [--seq 512] [--threads 1] [--rank 8]
                                               [--middle 0,256,64,16] [--steps 3] [--json OUT]
                                               [--targets q_proj,k_proj,v_proj,o_proj]

The weights are the embedded Q4_K_M GGUF dequantized into ``model.gemma3`` (float32 master
weights, frozen), LoRA on q/k/v/o/gate/up/down. One row of ``--seq`` tokens of stdlib code.
For each ``--middle`` value the loss covers that many positions (a FIM example's middle span,
at the end of the row) and the output projection is computed only there
(``selected_lm_loss``); 0 means the classic full LM head over every position (``lm_loss``).
Both float32 and bf16 autocast (what the trainer uses) are timed; the median of ``--steps``
steps after one warm-up round is reported (modes interleaved step by step), with tokens/s =
seq / step time (every token of the row is processed, whatever the loss covers), and the
median process CPU time (summed over threads). The batch is the same every step: the loss
falls quickly and means nothing here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import sysconfig
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lsp_server.engine.llama_loader import _llama_factory, cpu_has_amx  # noqa: E402
from lsp_server.models.resolve import resolve_model  # noqa: E402
from model.gemma import IGNORE_INDEX, lm_loss  # noqa: E402
from model.gemma3 import selected_lm_loss  # noqa: E402
from model.gguf_load import load_gemma3_gguf  # noqa: E402
from model.lora import apply_lora  # noqa: E402


def code_tokens(path: Path, n: int) -> list[int]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    text = "".join((stdlib / f).read_text(encoding="utf-8")
                   for f in ("bisect.py", "heapq.py", "textwrap.py", "functools.py"))
    llm = _llama_factory(model_path=str(path), n_ctx=64, vocab_only=True, verbose=False,
                         use_extra_bufts=not cpu_has_amx())
    try:
        ids = llm.tokenize(text.encode(), add_bos=True, special=False)
    finally:
        llm.close()
    if len(ids) < n + 1:
        raise SystemExit(f"only {len(ids)} tokens of code for --seq {n}")
    return ids[: n + 1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--middle", default="0,256,64,16",
                    help="loss positions per row, comma-separated; 0 = every position")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
                    help="projections LoRA wraps, comma-separated")
    ap.add_argument("--dtypes", default="float32,bf16")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = resolve_model("")
    t0 = time.perf_counter()
    model = load_gemma3_gguf(path)
    load_s = time.perf_counter() - t0
    trainable = apply_lora(model, r=args.rank, alpha=2.0 * args.rank,
                           targets=tuple(args.targets.split(",")))
    model.train()
    ids = torch.tensor([code_tokens(path, args.seq)])
    x, y_all = ids[:, :-1], ids[:, 1:]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    print(f"loaded in {load_s:.1f} s; LoRA rank {args.rank}: {trainable:,} trainable of "
          f"{sum(p.numel() for p in model.parameters()):,}; seq {args.seq}; "
          f"threads {args.threads}", flush=True)
    modes = [(dtype, int(m)) for dtype in args.dtypes.split(",")
             for m in args.middle.split(",")]
    wall: dict[tuple[str, int], list[float]] = {k: [] for k in modes}
    cpu: dict[tuple[str, int], list[float]] = {k: [] for k in modes}
    # Round-robin over the modes, step by step, so that a busy machine (other engineers' jobs)
    # slows them alike; process CPU time is reported next to wall time for the same reason.
    for rnd in range(args.steps + 1):
        for dtype, middle in modes:
            y = y_all.clone()
            if middle:
                y[:, : args.seq - middle] = IGNORE_INDEX  # loss on the last `middle` positions
            w0, c0 = time.perf_counter(), time.process_time()
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()
            with ctx:
                s, n = selected_lm_loss(model, x, y) if middle else lm_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            (s / n).backward()
            opt.step()
            if rnd:  # round 0 warms up allocators and kernels
                wall[dtype, middle].append(time.perf_counter() - w0)
                cpu[dtype, middle].append(time.process_time() - c0)
    rows: list[dict[str, Any]] = []
    for dtype, middle in modes:
        sec = statistics.median(wall[dtype, middle])
        row = {"dtype": dtype, "loss_positions": middle or args.seq,
               "lm_head": "selected" if middle else "full", "step_s": round(sec, 3),
               "cpu_s": round(statistics.median(cpu[dtype, middle]), 3),
               "tok_per_s": round(args.seq / sec, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"seq": args.seq, "threads": args.threads,
                                         "rank": args.rank, "trainable": trainable,
                                         "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
