"""The trainer behind ``codefill train``: FIM training of a Gemma model on a source tree.

AdamW (decay on matrices only), linear warmup then cosine decay to ``min_lr_ratio``, gradient
accumulation, bf16 autocast on CPU (float32 master weights), gradient-norm clipping, periodic
eval loss on held-out files, checkpoints with exact resume, LoRA for fine-tuning, and DDP over
gloo when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

The loss of a step is the sum of token cross-entropies over the *global* batch divided by the
global number of predicted tokens. Every rank regenerates the same deterministic row stream and
takes its own slice, so each knows that token count without a collective, and the update is the
same however the global batch is split across processes and micro-batches.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import load_pretrained, save_pretrained
from .config import named_config
from .data.corpus import Corpus, read_corpus
from .data.dataset import DataConfig, Row, RowStream, collate, prefetch
from .data.fim import FimRates, Layout
from .gemma import GemmaForCausalLM, lm_loss
from .lora import apply_lora
from .tokenizer import SentencePieceTokenizer, train_tokenizer

STATE_FILE = "trainer_state.pt"


@dataclass
class TrainConfig:
    corpus: str
    """Root of the source tree to train on (read through the daemon's filters)."""
    out_dir: str
    model: str = "tiny"
    """A named config (``tiny``, ``small``, ``codegemma-2b``) for training from scratch."""
    init_from: str | None = None
    """A Hugging Face Gemma checkpoint directory to fine-tune (its own tokenizer is used)."""
    tokenizer: str | None = None
    """Directory holding tokenizer.model; default: train one on the corpus (from scratch)."""
    vocab_size: int = 4096
    seq_len: int = 512
    micro_batch: int = 4
    grad_accum: int = 1
    steps: int = 1000
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    clip: float = 1.0
    bf16: bool = True
    fim_rate: float = 0.9
    spm_rate: float = 0.5
    repo_context: bool = True
    eval_share: float = 0.02
    eval_every: int = 100
    eval_rows: int = 16
    save_every: int = 200
    log_every: int = 10
    seed: int = 0
    lora_rank: int = 0
    lora_alpha: float = 16.0
    time_limit: float | None = None
    """Seconds of training after which the run stops (checkpointed and exported) early."""
    threads: int | None = None
    max_files: int | None = None
    export: bool = True
    """Write the Hugging Face checkpoint (``out_dir/hf``) at the end."""
    stop_after: int | None = None
    """Stop (checkpointed) after this step although ``steps`` sets the schedule (tests, pauses)."""


@dataclass
class TrainResult:
    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    hf_dir: Path | None = None
    params: int = 0
    trainable: int = 0


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from lr to lr·min_lr_ratio at ``steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    t = min(1.0, (step - cfg.warmup) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


# -- distributed --------------------------------------------------------------------------------

@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, x: float) -> float:
        if self.world == 1:
            return x
        t = torch.tensor([x], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init_dist() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("gloo")  # CPU collectives; NCCL would need GPUs
    return Dist(dist.get_rank(), dist.get_world_size())


# -- setup --------------------------------------------------------------------------------------

def _say(d: Dist, msg: str) -> None:
    if d.main:
        print(msg, file=sys.stderr, flush=True)


def _tokenizer(cfg: TrainConfig, corpus: Corpus, d: Dist) -> tuple[SentencePieceTokenizer, Path]:
    if cfg.init_from:
        src = Path(cfg.tokenizer or cfg.init_from)
        return SentencePieceTokenizer.from_checkpoint(src), src
    if cfg.tokenizer:
        return SentencePieceTokenizer.from_checkpoint(Path(cfg.tokenizer)), Path(cfg.tokenizer)
    tdir = Path(cfg.out_dir) / "tokenizer"
    if d.main and not (tdir / "tokenizer.model").is_file():
        _say(d, f"training a {cfg.vocab_size}-piece tokenizer on {len(corpus.files)} files")
        from .data.dataset import is_eval_path

        train_tokenizer((t for p, t in corpus.files.items()
                         if not is_eval_path(p, cfg.eval_share)), tdir, cfg.vocab_size,
                        seed=cfg.seed)
    d.barrier()
    return SentencePieceTokenizer.from_checkpoint(tdir), tdir


def _build_model(cfg: TrainConfig, vocab: int) -> GemmaForCausalLM:
    # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
    torch.manual_seed(cfg.seed)
    if cfg.init_from:
        model = load_pretrained(Path(cfg.init_from))
    else:
        mcfg = named_config(cfg.model).with_vocab(vocab)
        model = GemmaForCausalLM(mcfg)
    if model.config.vocab_size < vocab:
        raise ValueError(f"the tokenizer has {vocab} pieces but the model only "
                         f"{model.config.vocab_size} embeddings")
    if cfg.seq_len > model.config.max_position_embeddings:
        raise ValueError(f"seq_len {cfg.seq_len} exceeds the model's "
                         f"{model.config.max_position_embeddings} positions")
    if cfg.lora_rank:
        apply_lora(model, cfg.lora_rank, cfg.lora_alpha)
    return model


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    # No weight decay on norm scales (1-D): decaying them pulls 1+w towards 1, not towards 0.
    decay = [p for n, p in params if p.dim() >= 2]
    rest = [p for n, p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=cfg.lr, betas=cfg.betas)


def _forward_loss(model: nn.Module, batch: dict[str, torch.Tensor], bf16: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    with ctx:
        logits = model(batch["input_ids"], position_ids=batch["position_ids"],
                       segment_ids=batch["segment_ids"])  # (B, T, vocab) float32
    return lm_loss(logits, batch["labels"])


@torch.no_grad()
def evaluate(model: nn.Module, rows: list[Row], micro_batch: int, bf16: bool) -> float:
    """Mean cross-entropy per predicted token over ``rows``."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(rows), micro_batch):
        s, k = _forward_loss(model, collate(rows[i:i + micro_batch]), bf16)
        total, n = total + float(s), n + int(k)
    model.train(was)
    return total / max(1, n)


# -- checkpoints --------------------------------------------------------------------------------

def _save_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int,
                rows_done: int, result: TrainResult, cfg: TrainConfig) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                "rows_done": rows_done, "history": result.history, "evals": result.evals,
                "config": asdict(cfg)}, tmp)
    tmp.replace(path)  # a crash mid-write never leaves a truncated checkpoint


def _progress(step: int, total: int, loss: float, lr: float, tok_s: float, elapsed: float
              ) -> str:
    width = 24
    done = int(width * step / max(1, total))
    eta = elapsed / max(1, step) * (total - step)
    return (f"[{'#' * done}{'.' * (width - done)}] step {step}/{total}  loss {loss:.4f}  "
            f"lr {lr:.2e}  {tok_s:,.0f} tok/s  {elapsed:.0f}s (eta {eta:.0f}s)")


# -- the loop -----------------------------------------------------------------------------------

def train(cfg: TrainConfig, *, on_log: Callable[[dict[str, float]], None] | None = None
          ) -> TrainResult:
    d = init_dist()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif d.world > 1:  # processes on one machine share its cores; oversubscription is slow
        local = int(os.environ.get("LOCAL_WORLD_SIZE", d.world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    out = Path(cfg.out_dir)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    d.barrier()
    corpus = read_corpus(cfg.corpus, max_files=cfg.max_files)
    if not corpus.files:
        raise ValueError(f"no source files under {cfg.corpus}")
    tok, tok_dir = _tokenizer(cfg, corpus, d)
    model = _build_model(cfg, tok.vocab_size)
    model.train()
    opt = _optimizer(model, cfg)
    result = TrainResult(step=0, params=sum(p.numel() for p in model.parameters()),
                         trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))

    state_path = out / STATE_FILE
    rows_done = 0
    if state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        result.step, rows_done = st["step"], st["rows_done"]
        result.history, result.evals = st["history"], st["evals"]
        _say(d, f"resuming at step {result.step} (row {rows_done})")

    ddp: nn.Module = model
    if d.world > 1:
        ddp = nn.parallel.DistributedDataParallel(model)

    dcfg = DataConfig(seq_len=cfg.seq_len, rates=FimRates(cfg.fim_rate, cfg.spm_rate),
                      repo_context=cfg.repo_context, seed=cfg.seed, eval_share=cfg.eval_share)
    layout = Layout(tok)
    stream = prefetch(RowStream(corpus, layout, dcfg).rows(start=rows_done))
    eval_rows: list[Row] = []
    if d.main and cfg.eval_share > 0 and cfg.eval_rows > 0:
        try:
            ev = RowStream(corpus, layout, dcfg, split="eval").epoch_rows(0)
            eval_rows = [r for _, r in zip(range(cfg.eval_rows), ev)]
        except ValueError:  # no held-out file in a tiny corpus
            eval_rows = []

    per_rank = cfg.micro_batch * cfg.grad_accum
    global_rows = per_rank * d.world
    _say(d, f"model {cfg.init_from or cfg.model}: {result.params:,} parameters "
            f"({result.trainable:,} trainable), {len(corpus.files)} files, vocab "
            f"{tok.vocab_size}, global batch {global_rows} x {cfg.seq_len} tokens, "
            f"{d.world} process(es)")
    t0 = time.perf_counter()
    # Totals carry over a resume; tok/s is this session's rate.
    tokens_before = int(result.history[-1]["tokens"]) if result.history else 0
    elapsed_before = float(result.history[-1]["elapsed"]) if result.history else 0.0
    tokens_seen = 0
    last_save = result.step
    stop_at = min(cfg.steps, cfg.stop_after if cfg.stop_after is not None else cfg.steps)
    while result.step < stop_at:
        step = result.step
        rows = [next(stream) for _ in range(global_rows)]
        rows_done += global_rows
        n_global = sum(int((r.labels != -100).sum()) for r in rows)
        mine = rows[d.rank * per_rank:(d.rank + 1) * per_rank]
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        loss_sum = 0.0
        for m in range(cfg.grad_accum):
            batch = collate(mine[m * cfg.micro_batch:(m + 1) * cfg.micro_batch])
            sync = m == cfg.grad_accum - 1 or d.world == 1
            ctx = ddp.no_sync() if not sync else nullcontext()  # type: ignore[operator]
            with ctx:
                s, _ = _forward_loss(ddp, batch, cfg.bf16)
                # DDP averages gradients over ranks: scale by world so the result is the
                # global sum divided by the global token count.
                (s * d.world / max(1, n_global)).backward()
            loss_sum += float(s.detach())
        if cfg.clip > 0:
            nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                     cfg.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = d.all_sum(loss_sum) / max(1, n_global)
        result.step = step + 1
        tokens_seen += sum(int((r.segment_ids >= 0).sum()) for r in rows)
        elapsed = time.perf_counter() - t0
        rec = {"step": result.step, "loss": loss, "lr": lr,
               "tokens": tokens_before + tokens_seen, "tok_s": tokens_seen / elapsed,
               "elapsed": elapsed_before + elapsed}
        result.history.append(rec)
        if on_log:
            on_log(rec)
        if d.main and (result.step % cfg.log_every == 0 or result.step == stop_at):
            _say(d, _progress(result.step, cfg.steps, loss, lr, rec["tok_s"], rec["elapsed"]))
        if eval_rows and (result.step % cfg.eval_every == 0 or result.step == stop_at):
            ev_loss = evaluate(model, eval_rows, cfg.micro_batch, cfg.bf16)
            result.evals.append({"step": result.step, "eval_loss": ev_loss})
            _say(d, f"eval loss {ev_loss:.4f} at step {result.step}")
        timed_out = cfg.time_limit is not None and elapsed >= cfg.time_limit
        if d.main and (result.step - last_save >= cfg.save_every or result.step == stop_at
                       or timed_out):
            _save_state(state_path, model, opt, result.step, rows_done, result, cfg)
            last_save = result.step
        # Each rank has its own clock: rank 0 decides (and has already checkpointed).
        if cfg.time_limit is not None and d.all_sum(1.0 if timed_out and d.main else 0.0) > 0:
            _say(d, f"time limit reached at step {result.step}")
            break
    if d.main:
        (out / "history.json").write_text(json.dumps(
            {"history": result.history, "evals": result.evals, "params": result.params,
             "config": asdict(cfg)}, indent=1))
        if cfg.export:
            result.hf_dir = save_pretrained(model, out / "hf", tokenizer_dir=tok_dir)
            _say(d, f"exported {result.hf_dir} (codefill quantize {result.hf_dir} --out "
                    f"model.gguf --type Q8_0)")
    d.barrier()
    return result
