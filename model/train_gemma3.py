"""LoRA FIM training of the embedded Gemma 3 270M on CPU, resumable: the ``gemma3-fim`` and
``gemma3-fim-editor`` recipes of the trainer (:mod:`model.train`, :mod:`model.recipes`).

    .venv/bin/python -m model.train_gemma3 [--recipe codegemma|editor]
        [--out model/checkpoints/gemma3-270m-fim] [--csv docs/figures/gemma3_fim_loss.csv]
        [--time-limit SECONDS | --minutes N] [--save-minutes N] [--stop-after STEP]
        [--device cpu|cuda|auto] [--adapter-out FILE.gguf] [--micro-batch N] [--lora-rank R]

The base weights come from the embedded GGUF (``model.gguf_load``, dequantized, frozen); LoRA
(rank 8, alpha 16) wraps the attention projections q/k/v/o of every layer. The tokenizer is the
GGUF's own vocabulary through llama.cpp (``model.tokenizer.GGUFTokenizer``, as the daemon
tokenizes), the layout the daemon's ``gemma3-fim`` template (text sentinels, the middle ends with
``<eos>``), and the loss covers only the middle and its ``<eos>``. The corpus is
:mod:`model.data.sources`, pinned per run by its manifest (:mod:`model.data.loaders`).

Checkpoints are made for committing: ``step-NNNNNN.pt`` holds only the LoRA tensors, the
optimizer state, the step, the data position, torch's RNG state, the token counts and the
history (a few MB; :mod:`model.train_state`). Running the same command again resumes from the
newest one with the settings it saved and continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import argparse
import sys

from .recipes import GEMMA3_RUNS, MLP, RECIPES, ATTENTION, ROOT

CHOICES = (*GEMMA3_RUNS, *(n for n, r in RECIPES.items() if r.family == "gemma3"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--recipe", default="codegemma", choices=CHOICES,
                    help="starting settings of a new run: codegemma (gemma3-fim, the default) "
                         "or editor (gemma3-fim-editor); the run's directory and CSV default "
                         "to names with the recipe in them")
    ap.add_argument("--out", default=None, help="checkpoint directory (the recipe's)")
    ap.add_argument("--csv", default=None, help="loss table (the recipe's, in docs/figures)")
    ap.add_argument("--model", default=None, help="GGUF of the base (default: the embedded one)")
    ap.add_argument("--venv", default=str(ROOT / ".venv"))
    ap.add_argument("--bench-dir", default=str(ROOT.parent / "shared" / "benchmarks"),
                    help="evaluation data whose problems are kept out of the corpus")
    ap.add_argument("--steps", type=int, help="schedule length")
    ap.add_argument("--grad-accum", type=int, help="rows per step")
    ap.add_argument("--lr", type=float, help="peak learning rate")
    ap.add_argument("--mlp", action="store_true", help="LoRA on the MLP projections too")
    ap.add_argument("--save-every", type=int)
    ap.add_argument("--eval-every", type=int, help="steps between evals")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--allow-corpus-change", action="store_true",
                    help="continue although the corpus differs from the run's manifest (the "
                         "data order changes: the run is no longer reproducible)")
    ap.add_argument("--time-limit", type=float)
    ap.add_argument("--minutes", type=float, help="the same as --time-limit, in minutes")
    ap.add_argument("--save-minutes", type=float, help="also checkpoint every N minutes")
    ap.add_argument("--device", help="cpu (default), cuda, cuda:N or auto")
    ap.add_argument("--adapter-out", help="at every checkpoint also write the adapter GGUF "
                                          "here (and its LoRA tensors as .pt)")
    ap.add_argument("--micro-batch", type=int, help="rows per forward pass")
    ap.add_argument("--lora-rank", type=int, help="LoRA rank of a new run")
    ap.add_argument("--log-every", type=int)
    ap.add_argument("--packed", help="train on rows written ahead by python -m "
                                     "model.data.packed (no corpus, no tokenizer needed)")
    ap.add_argument("--stop-after", type=int)
    a = ap.parse_args(argv)
    from .train import run

    given = {"out_dir": a.out, "csv": a.csv, "init_from": a.model, "venv": a.venv,
             "bench_dir": a.bench_dir, "steps": a.steps, "grad_accum": a.grad_accum,
             "lr": a.lr, "save_every": a.save_every, "eval_every": a.eval_every,
             "threads": a.threads, "stop_after": a.stop_after,
             "time_limit": a.minutes * 60 if a.minutes is not None else a.time_limit,
             "save_minutes": a.save_minutes, "device": a.device, "adapter_out": a.adapter_out,
             "micro_batch": a.micro_batch, "lora_rank": a.lora_rank, "log_every": a.log_every,
             "packed": a.packed,
             "targets": ATTENTION + MLP if a.mlp else None}
    try:
        res = run(GEMMA3_RUNS.get(a.recipe, a.recipe), given,
                  allow_corpus_change=a.allow_corpus_change)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"stopped at step {res.step}: {res.trained_tokens:,} tokens trained, "
          f"{res.loss_tokens:,} loss tokens; checkpoint {res.checkpoint}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
