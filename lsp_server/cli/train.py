"""`codefill train`: FIM-train a Gemma model on a source tree (model/train.py does the work).

Thin on purpose: arguments map onto :class:`model.train.TrainConfig`; torch is imported only when
the command runs, so the rest of the CLI works without the ``train`` extra.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import CodefillError

HELP = "FIM-train (or LoRA-fine-tune) a Gemma model on a source tree, with repository packing"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("corpus", nargs="?",
                   help="root of the source tree to train on (daemon's ignore, secret and binary "
                        "filters apply)")
    p.add_argument("--gemma3-fim", action="store_true",
                   help="the embedded Gemma 3 270M's FIM LoRA run instead (model/train_gemma3.py:"
                        " licensed stdlib + venv corpus, resumes from model/checkpoints/"
                        "gemma3-270m-fim; --out, --steps, --lr, --grad-accum, --time-limit, "
                        "--stop-after, --threads, --recipe apply)")
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help="with --gemma3-fim: the starting settings of a new run, codegemma "
                        "(default) or editor (line-aligned middles, SPM-heavy; its own "
                        "directory gemma3-270m-fim-editor)")
    p.add_argument("--out", help="output directory: checkpoints, history.json, "
                                 "hf/ (the Hugging Face checkpoint)")
    p.add_argument("--model", default="tiny",
                   help="named config for training from scratch: tiny, small, codegemma-2b")
    p.add_argument("--init-from", metavar="DIR",
                   help="fine-tune this Hugging Face Gemma checkpoint (uses its tokenizer)")
    p.add_argument("--tokenizer", metavar="DIR", help="directory with tokenizer.model "
                                                      "(default: train one on the corpus)")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--steps", type=int, default=1000, help="length of the LR schedule")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--no-bf16", action="store_true", help="float32 instead of bf16 autocast")
    p.add_argument("--fim-rate", type=float, default=0.9)
    p.add_argument("--spm-rate", type=float, default=0.5)
    p.add_argument("--no-repo-context", action="store_true",
                   help="single files, without dependency-graph packing")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lora-rank", type=int, default=0, help="LoRA rank (0: full training)")
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop (checkpointed and exported) after this much training time")
    p.add_argument("--stop-after", type=int, metavar="STEP",
                   help="stop after this step, checkpointed; run again to resume")
    p.add_argument("--threads", type=int, help="torch threads per process")
    p.add_argument("--max-files", type=int, help="read at most this many files of the corpus")


def run(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CodefillError("torch is not installed", "pip install torch==2.13.0 (a CPU wheel), "
                            "or scripts/setup dev") from None
    if args.gemma3_fim:
        return _gemma3_fim(args)
    if args.recipe is not None:
        raise CodefillError(f"--recipe {args.recipe} is for the Gemma 3 FIM run",
                            "codefill train --gemma3-fim --recipe editor")
    if args.corpus is None or args.out is None:
        raise CodefillError("codefill train needs a corpus directory and --out",
                            "codefill train ~/src/repo --out runs/a (or --gemma3-fim)")
    from model.config import CONFIGS
    from model.train import TrainConfig, train

    if args.init_from is None and args.model not in CONFIGS:
        raise CodefillError(f"unknown model config {args.model!r}",
                            f"use one of: {', '.join(CONFIGS)}, or --init-from DIR")
    for name in ("seq_len", "micro_batch", "grad_accum", "steps"):
        if getattr(args, name) < 1:
            raise CodefillError(f"--{name.replace('_', '-')} must be at least 1",
                                "pass a positive number")
    cfg = TrainConfig(
        corpus=args.corpus, out_dir=args.out, model=args.model, init_from=args.init_from,
        tokenizer=args.tokenizer, vocab_size=args.vocab_size, seq_len=args.seq_len,
        micro_batch=args.micro_batch, grad_accum=args.grad_accum, steps=args.steps, lr=args.lr,
        warmup=args.warmup, weight_decay=args.weight_decay, clip=args.clip,
        bf16=not args.no_bf16, fim_rate=args.fim_rate, spm_rate=args.spm_rate,
        repo_context=not args.no_repo_context, eval_every=args.eval_every,
        save_every=args.save_every, log_every=args.log_every, seed=args.seed,
        lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, time_limit=args.time_limit,
        stop_after=args.stop_after, threads=args.threads, max_files=args.max_files)
    try:
        result = train(cfg)
    except (ValueError, FileNotFoundError) as exc:
        raise CodefillError(str(exc), "check the corpus, --init-from and --tokenizer paths "
                            "and the sizes given") from None
    print(f"trained {result.step} steps; final loss "
          f"{result.history[-1]['loss'] if result.history else float('nan'):.4f}"
          + (f"; checkpoint {result.hf_dir}" if result.hf_dir else ""), file=sys.stdout)
    return 0


def _gemma3_fim(args: argparse.Namespace) -> int:
    from model import train_gemma3

    argv: list[str] = []
    if args.out:
        argv += ["--out", args.out]
    # Only what the user gave: the run's own defaults (and a resumed run's saved settings) rule.
    defaults = {"steps": 1000, "lr": 1e-3, "grad_accum": 1}
    for name, default in defaults.items():
        if getattr(args, name) != default:
            argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    for name in ("time_limit", "stop_after", "threads", "recipe"):
        if getattr(args, name) is not None:
            argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return train_gemma3.main(argv)
