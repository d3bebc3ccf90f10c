"""Model families the trainer knows: how a run gets its model and tokenizer, its loss, and
what it leaves behind besides checkpoints.

``gemma``: the Gemma 1 decoder (:mod:`model.gemma`), built from a named config or loaded from a
Hugging Face checkpoint (``init_from``), with a SentencePiece tokenizer (the checkpoint's, one
given, or one trained on the corpus). The loss covers every predicted token of a row (labels
say which); at the end the run writes ``history.json`` and the Hugging Face checkpoint that
``codefill quantize`` reads.

``gemma3``: the Gemma 3 text decoder loaded from a GGUF (``init_from``; default the embedded
270M) and dequantized, with the GGUF's own vocabulary through llama.cpp, as the daemon
tokenizes. Only the positions with a label reach the 262k-row output projection
(:func:`model.gemma3.selected_lm_loss`), which is what makes middle-only loss cheap. The
untrained base is evaluated before the first step, as the loss curve's starting point.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch
from torch import nn

from .data.corpus import Corpus
from .data.dataset import is_eval_path
from .device import autocast
from .train_state import say

if TYPE_CHECKING:
    from .recipes import TrainConfig
    from .train import Dist, TrainResult

Batch = Mapping[str, torch.Tensor]


@dataclass
class Built:
    """What a family hands the trainer: the model (before LoRA), its tokenizer, and where the
    tokenizer lives when it is exported with the model."""

    model: nn.Module
    tok: Any
    tok_dir: Path | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[["TrainConfig", Corpus, "Dist"], Built]
    """(settings, corpus, processes) → model and tokenizer."""
    loss: Callable[[nn.Module, Batch, bool], tuple[torch.Tensor, torch.Tensor]]
    """(model, batch, bf16) → (sum of token cross-entropies, number of predicted tokens)."""
    finish: Callable[["TrainConfig", nn.Module, Built, "TrainResult"], None]
    """Runs on the main process after the last step."""
    eval_batch: int | None
    """Rows per evaluation forward pass (None: the micro-batch)."""
    eval_at_start: bool
    """Evaluate the starting weights before the first step of a new run."""
    export: Callable[["TrainConfig", nn.Module, int, Path], None] | None = None
    """(settings, model, tokens seen, path) → the adapter the daemon loads, written at every
    checkpoint when ``adapter_out`` is set (None: the family exports at the end only)."""


def _autocast(batch: Batch, bf16: bool) -> Any:
    """bf16 autocast on the device the batch is on (model/device.py)."""
    return autocast(batch["input_ids"].device.type, bf16)


# -- Gemma 1 ------------------------------------------------------------------------------------

def _gemma_tokenizer(cfg: "TrainConfig", corpus: Corpus, d: "Dist") -> tuple[Any, Path]:
    from .tokenizer import SentencePieceTokenizer, train_tokenizer

    if cfg.init_from or cfg.tokenizer:
        src = Path(cfg.tokenizer or cfg.init_from or "")
        return SentencePieceTokenizer.from_checkpoint(src), src
    tdir = Path(cfg.out_dir) / "tokenizer"
    if d.main and not (tdir / "tokenizer.model").is_file():
        say(f"training a {cfg.vocab_size}-piece tokenizer on {len(corpus.files)} files")
        train_tokenizer((t for p, t in corpus.files.items()
                         if not is_eval_path(p, cfg.eval_share)), tdir, cfg.vocab_size,
                        seed=cfg.seed)
    d.barrier()  # the other processes read the tokenizer rank 0 wrote
    return SentencePieceTokenizer.from_checkpoint(tdir), tdir


def _gemma_build(cfg: "TrainConfig", corpus: Corpus, d: "Dist") -> Built:
    from .checkpoint import load_pretrained
    from .config import named_config
    from .gemma import GemmaForCausalLM

    tok, tok_dir = _gemma_tokenizer(cfg, corpus, d)
    vocab = tok.vocab_size
    if cfg.init_from:
        model = load_pretrained(Path(cfg.init_from))
    else:
        model = GemmaForCausalLM(named_config(cfg.model).with_vocab(vocab))
    if model.config.vocab_size < vocab:
        raise ValueError(f"the tokenizer has {vocab} pieces but the model only "
                         f"{model.config.vocab_size} embeddings")
    if cfg.seq_len > model.config.max_position_embeddings:
        raise ValueError(f"seq_len {cfg.seq_len} exceeds the model's "
                         f"{model.config.max_position_embeddings} positions")
    return Built(model, tok, tok_dir)


def _gemma_loss(model: nn.Module, batch: Batch, bf16: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
    from .gemma import lm_loss

    with _autocast(batch, bf16):
        logits = model(batch["input_ids"], position_ids=batch["position_ids"],
                       segment_ids=batch["segment_ids"])  # (B, T, vocab) float32
    return lm_loss(logits, batch["labels"])


def _gemma_finish(cfg: "TrainConfig", model: nn.Module, built: Built, result: "TrainResult"
                  ) -> None:
    from .checkpoint import save_pretrained

    out = Path(cfg.out_dir)
    (out / "history.json").write_text(json.dumps(
        {"history": result.history, "evals": result.evals, "params": result.params,
         "config": asdict(cfg)}, indent=1))
    if cfg.export:
        result.hf_dir = save_pretrained(model, out / "hf",  # type: ignore[arg-type]
                                        tokenizer_dir=built.tok_dir)
        say(f"exported {result.hf_dir} (codefill quantize {result.hf_dir} --out "
             f"model.gguf --type Q8_0)")


# -- Gemma 3 ------------------------------------------------------------------------------------

def _gemma3_build(cfg: "TrainConfig", corpus: Corpus, d: "Dist") -> Built:
    import os
    import time

    from lsp_server.models.resolve import resolve_model

    from .gguf_load import load_gemma3_gguf
    from .tokenizer import GGUFTokenizer

    path = resolve_model(cfg.init_from or "")
    # Packed rows are token ids already: no tokenizer (llama.cpp) where they are trained on.
    tok = GGUFTokenizer(path) if not cfg.packed else None
    t = time.perf_counter()
    model = load_gemma3_gguf(path)
    say(f"base {path} loaded ({time.perf_counter() - t:.0f} s)")
    return Built(model, tok, None, {"base": os.path.basename(path),
                                    "base_bytes": os.path.getsize(path)})


def _gemma3_loss(model: nn.Module, batch: Batch, bf16: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    from .gemma3 import selected_lm_loss

    with _autocast(batch, bf16):
        return selected_lm_loss(model,  # type: ignore[arg-type]
                                batch["input_ids"], batch["labels"], batch["position_ids"],
                                batch["segment_ids"])


def _gemma3_export(cfg: "TrainConfig", model: nn.Module, tokens: int, path: Path) -> None:
    from lsp_server.models.resolve import resolve_model

    from .export_adapter import export_adapter

    rep = export_adapter(model, path, base=resolve_model(cfg.init_from or ""),
                         template=cfg.template, tokens_seen=tokens)
    say(f"adapter {path} ({rep.size_bytes / 1e6:.1f} MB, {tokens:,} tokens seen)")


def _nothing(cfg: "TrainConfig", model: nn.Module, built: Built, result: "TrainResult") -> None:
    return None


FAMILIES: Mapping[str, Family] = {f.name: f for f in (
    Family("gemma", _gemma_build, _gemma_loss, _gemma_finish, eval_batch=None,
           eval_at_start=False),
    Family("gemma3", _gemma3_build, _gemma3_loss, _nothing, eval_batch=1, eval_at_start=True,
           export=_gemma3_export),
)}
