"""`codefill train`: FIM-train a Gemma model by recipe (model/train.py does the work).

Thin on purpose: ``--recipe`` picks the starting settings (model/recipes.py: ``gemma`` by
default, ``gemma-lora``, ``gemma3-fim``, ``gemma3-fim-editor``), and the options given on the
command line override them; ``--gemma3-fim`` is the Gemma 3 run (``--recipe editor`` there picks
its editor variant). torch is imported only when the command runs, so the rest of the CLI works
without the ``train`` extra.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import CodefillError

HELP = "FIM-train (or LoRA-fine-tune) a Gemma model by recipe, with repository packing"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("corpus", nargs="?",
                   help="root of the source tree to train on (daemon's ignore, secret and binary "
                        "filters apply)")
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help="starting settings: gemma (default: a Gemma from scratch, or from "
                        "--init-from), gemma-lora, gemma3-fim, gemma3-fim-editor; with "
                        "--gemma3-fim also codegemma or editor")
    p.add_argument("--gemma3-fim", action="store_true",
                   help="the embedded Gemma 3 270M's FIM LoRA run (recipe gemma3-fim: licensed "
                        "stdlib + venv corpus, resumes from model/checkpoints/gemma3-270m-fim "
                        "with the settings it saved)")
    p.add_argument("--out", help="output directory: checkpoints, history.json, "
                                 "hf/ (the Hugging Face checkpoint)")
    p.add_argument("--model", help="named config for training from scratch: tiny (default), "
                                   "small, codegemma-2b")
    p.add_argument("--init-from", metavar="DIR",
                   help="fine-tune this Hugging Face Gemma checkpoint (uses its tokenizer); "
                        "for the gemma3 recipes the base GGUF (default: the embedded model)")
    p.add_argument("--tokenizer", metavar="DIR", help="directory with tokenizer.model "
                                                      "(default: train one on the corpus)")
    p.add_argument("--vocab-size", type=int, help="pieces of a trained tokenizer (4096)")
    p.add_argument("--seq-len", type=int, help="tokens per row (512)")
    p.add_argument("--micro-batch", type=int, help="rows per process and micro-step (4)")
    p.add_argument("--grad-accum", type=int, help="micro-steps per step (1)")
    p.add_argument("--steps", type=int, help="length of the LR schedule (1000)")
    p.add_argument("--lr", type=float, help="peak learning rate (1e-3)")
    p.add_argument("--warmup", type=int, help="warmup steps (50)")
    p.add_argument("--weight-decay", type=float, help="on matrices (0.1)")
    p.add_argument("--clip", type=float, help="gradient-norm clip (1.0)")
    p.add_argument("--no-bf16", action="store_true", help="float32 instead of bf16 autocast")
    p.add_argument("--fim-rate", type=float, help="share of FIM examples (0.9)")
    p.add_argument("--spm-rate", type=float, help="share of FIM examples in SPM order (0.5)")
    p.add_argument("--no-repo-context", action="store_true",
                   help="single files, without dependency-graph packing")
    p.add_argument("--eval-every", type=int, help="steps between evals (100)")
    p.add_argument("--save-every", type=int, help="steps between checkpoints (200)")
    p.add_argument("--log-every", type=int, help="steps between progress lines (10)")
    p.add_argument("--seed", type=int)
    p.add_argument("--lora-rank", type=int, help="LoRA rank (0: full training)")
    p.add_argument("--lora-alpha", type=float, help="LoRA alpha (16)")
    p.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop (checkpointed and exported) after this much training time")
    p.add_argument("--minutes", type=float, metavar="N",
                   help="the same as --time-limit, in minutes")
    p.add_argument("--save-minutes", type=float, metavar="N",
                   help="also checkpoint every N minutes of training")
    p.add_argument("--device", help="cpu (default), cuda, cuda:N or auto (a GPU when torch "
                                    "sees one); bf16, fused AdamW and attention kernels on a GPU")
    p.add_argument("--adapter-out", metavar="FILE.gguf",
                   help="gemma3 recipes: at every checkpoint also write the llama.cpp adapter "
                        "here and its LoRA tensors (no optimizer state) as FILE.pt")
    p.add_argument("--packed", metavar="DIR",
                   help="gemma3 recipes: train on rows written ahead by python -m "
                        "model.data.packed (no corpus read, no tokenizer loaded)")
    p.add_argument("--stop-after", type=int, metavar="STEP",
                   help="stop after this step, checkpointed; run again to resume")
    p.add_argument("--threads", type=int, help="torch threads per process")
    p.add_argument("--max-files", type=int, help="read at most this many files of the corpus")
    p.add_argument("--allow-corpus-change", action="store_true",
                   help="gemma3 recipes: continue although the corpus differs from the run's "
                        "manifest (the data order changes: the run is no longer reproducible)")


_GIVEN = ("model", "init_from", "tokenizer", "vocab_size", "seq_len", "micro_batch",
          "grad_accum", "steps", "lr", "warmup", "weight_decay", "clip", "fim_rate", "spm_rate",
          "eval_every", "save_every", "log_every", "seed", "lora_rank", "lora_alpha",
          "time_limit", "stop_after", "threads", "max_files", "save_minutes", "device",
          "adapter_out", "packed")
"""Options that map one to one onto settings (model/recipes.py's TrainConfig)."""


def recipe_name(args: argparse.Namespace) -> str:
    """The recipe the options ask for; unknown names are rejected with the known ones."""
    from model.recipes import GEMMA3_RUNS, RECIPES

    name = args.recipe
    if args.gemma3_fim:
        name = GEMMA3_RUNS.get(name or "codegemma", name)
        if name in RECIPES and RECIPES[name].family != "gemma3":
            raise CodefillError(f"--gemma3-fim with recipe {name!r}, which trains another "
                                "family", "drop --gemma3-fim, or use --recipe gemma3-fim-editor")
    name = name or "gemma"
    if name not in RECIPES:
        known = ", ".join(RECIPES)
        short = ", ".join(GEMMA3_RUNS)
        raise CodefillError(f"unknown training recipe {name!r}",
                            f"use one of: {known} (with --gemma3-fim also {short})")
    return name


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gives (None: not given, the recipe's default applies)."""
    given: dict[str, Any] = {k: getattr(args, k) for k in _GIVEN}
    given.update(corpus=args.corpus, out_dir=args.out,
                 bf16=False if args.no_bf16 else None,
                 repo_context=False if args.no_repo_context else None)
    for name in ("seq_len", "micro_batch", "grad_accum", "steps"):
        if given[name] is not None and given[name] < 1:
            raise CodefillError(f"--{name.replace('_', '-')} must be at least 1",
                                "pass a positive number")
    for name in ("minutes", "save_minutes", "time_limit"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise CodefillError(f"--{name.replace('_', '-')} must be positive, got "
                                f"{getattr(args, name)}", "pass a positive number")
    if args.minutes is not None:
        if args.time_limit is not None:
            raise CodefillError("--minutes and --time-limit both given",
                                "pass one of them")
        given["time_limit"] = args.minutes * 60
    return given


def run(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CodefillError("torch is not installed", "pip install torch==2.13.0 (a CPU wheel), "
                            "or scripts/setup dev") from None
    from model import train as trainer
    from model.config import CONFIGS
    from model.recipes import RECIPES, config_for

    name = recipe_name(args)
    recipe = RECIPES[name]
    given = given_settings(args)
    if recipe.data == "tree" and (args.corpus is None or args.out is None):
        raise CodefillError("codefill train needs a corpus directory and --out",
                            "codefill train ~/src/repo --out runs/a (or --gemma3-fim)")
    try:
        cfg = config_for(name, given)
        if recipe.family == "gemma" and cfg.init_from is None and cfg.model not in CONFIGS:
            raise CodefillError(f"unknown model config {cfg.model!r}",
                                f"use one of: {', '.join(CONFIGS)}, or --init-from DIR")
        result = trainer.train(cfg, allow_corpus_change=args.allow_corpus_change)
    except (ValueError, FileNotFoundError) as exc:
        raise CodefillError(str(exc), "check the corpus, --init-from and --tokenizer paths "
                            "and the sizes given") from None
    last = result.history[-1]["loss"] if result.history else float("nan")
    where = result.hf_dir or result.checkpoint
    print(f"trained {result.step} steps; final loss {last:.4f}"
          + (f"; checkpoint {where}" if where else ""), file=sys.stdout)
    return 0
