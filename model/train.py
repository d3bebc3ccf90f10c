"""The trainer behind ``codefill train``: FIM training of a Gemma-family model, by recipe.

One loop for every recipe (:mod:`model.recipes`): AdamW (decay on matrices only), linear warmup
then cosine decay to ``min_lr_ratio``, gradient accumulation, bf16 autocast (float32 master
weights), gradient-norm clipping, periodic eval loss on held-out files, checkpoints with exact
resume (:mod:`model.train_state`) every ``save_every`` steps and every ``save_minutes``, a
``time_limit`` that stops cleanly (checkpointed), LoRA on a frozen base, the CPU or a CUDA GPU
(:mod:`model.device`), and DDP (gloo on CPUs, NCCL on GPUs) when launched by ``torchrun``
(``WORLD_SIZE`` > 1). Throughput is logged as tokens/s and loss tokens/s (the tokens the loss
covers: the middles, for middle-only recipes). The recipe's family (:mod:`model.families`) supplies the
model, tokenizer and loss; its data source (:mod:`model.data.loaders`) the files.

The loss of a step is the sum of token cross-entropies over the *global* batch divided by the
global number of predicted tokens. Every rank regenerates the same deterministic row stream and
takes its own slice, so each knows that token count without a collective, and the update is the
same however the global batch is split across processes and micro-batches.
"""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from lsp_server.prompt.templates import get_template

from . import device as devices
from . import train_state
from .data.corpus import Corpus
from .data.dataset import Row, RowStream, collate, eval_rows_of, prefetch
from .data.packed import Packed
from .data.fim import Layout
from .data.loaders import load as load_data
from .families import FAMILIES, Batch, Built, Family
from .gemma import IGNORE_INDEX
from .lora import apply_lora
from .recipes import TrainConfig, check_config, config_for, data_config
from .train_state import Progress

__all__ = ["TrainConfig", "TrainResult", "config_for", "evaluate", "lr_at", "train"]


@dataclass
class TrainResult:
    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    hf_dir: Path | None = None
    params: int = 0
    trainable: int = 0
    trained_tokens: int = 0
    loss_tokens: int = 0
    checkpoint: Path | None = None


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

    def say(self, msg: str) -> None:
        if self.main:
            print(time.strftime("%H:%M:%S ") + msg, file=sys.stderr, flush=True)


def init_dist(dev: torch.device) -> tuple[Dist, torch.device]:
    """The processes of the run, and this one's device (one GPU per process under torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), dev
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size()), dev


# -- pieces of a step ---------------------------------------------------------------------------

def optimizer(model: nn.Module, cfg: TrainConfig, dev: torch.device = torch.device("cpu")
              ) -> torch.optim.AdamW:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    # No weight decay on norm scales (1-D): decaying them pulls 1+w towards 1, not towards 0.
    decay = [p for _, p in params if p.dim() >= 2]
    rest = [p for _, p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas,
                             **devices.fused_adamw(dev))


LossFn = Callable[[nn.Module, Batch, bool], tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def evaluate(model: nn.Module, rows: list[Row], batch: int, bf16: bool, loss: LossFn,
             dev: torch.device = torch.device("cpu")) -> float:
    """Mean cross-entropy per predicted token over ``rows``, ``batch`` rows per forward pass."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(rows), batch):
        s, k = loss(model, devices.to_device(collate(rows[i:i + batch]), dev), bf16)
        total, n = total + float(s), n + int(k)
    model.train(was)
    return total / max(1, n)


def _progress(rec: dict[str, float], total: int, seconds: float, steps: int) -> str:
    """The progress line; ``seconds`` and ``steps`` since this process started (for the ETA)."""
    width = 24
    step = int(rec["step"])
    done = int(width * step / max(1, total))
    eta = seconds / max(1, steps) * (total - step)
    return (f"[{'#' * done}{'.' * (width - done)}] step {step}/{total}  loss {rec['loss']:.4f}  "
            f"lr {rec['lr']:.2e}  |g| {rec['grad_norm']:.3f}  tokens {int(rec['tokens']):,} "
            f"(loss {int(rec['loss_tokens']):,})  {rec['tok_s']:,.0f} tok/s "
            f"({rec['loss_tok_s']:,.0f} loss tok/s)  "
            f"{rec['elapsed']:.0f}s (eta {eta:.0f}s)")


def _threads(cfg: TrainConfig, d: Dist) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif d.world > 1:  # processes on one machine share its cores; oversubscription is slow
        local = int(os.environ.get("LOCAL_WORLD_SIZE", d.world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def _stream(rows: RowStream | Packed, at: Progress) -> Iterator[tuple[Row, tuple[int, int]]]:
    """Rows from where the run stands, each with the data position after it."""
    if at.data_pos is not None or isinstance(rows, Packed):
        if at.data_pos is None:
            raise ValueError("this checkpoint records no data position to continue packed "
                             "rows from")
        return rows.positioned_rows(*at.data_pos)
    skip = rows.positioned_rows()  # only a row count is known: regenerate up to it
    for _ in range(at.rows_done):
        next(skip)
    return skip


# -- the loop -----------------------------------------------------------------------------------

def train(cfg: TrainConfig, *, model: nn.Module | None = None, tok: Any = None,
          corpus: Corpus | None = None, meta: dict[str, Any] | None = None,
          allow_corpus_change: bool = False) -> TrainResult:
    """Run (or resume) the training ``cfg`` describes. ``model``, ``tok`` and ``corpus`` replace
    what the recipe would load (tests, benchmarks); ``meta`` goes into every checkpoint."""
    recipe = check_config(cfg, corpus_given=corpus is not None)
    family: Family = FAMILIES[recipe.family]
    d, dev = init_dist(devices.resolve(cfg.device))
    _threads(cfg, d)
    out = Path(cfg.out_dir)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    d.barrier()
    meta = dict(meta or {})
    packed = Packed.open(cfg.packed) if cfg.packed else None
    if packed is not None:
        _check_packed(packed, cfg)
        meta = {"corpus": packed.manifest.get("corpus"), **meta}
        corpus = corpus or Corpus("packed", {})
    elif corpus is None:
        loaded = load_data(recipe.data, cfg, allow_change=allow_corpus_change)
        corpus, meta = loaded.corpus, {**loaded.meta, **meta}
    # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's), and
    # the LoRA A init (overwritten on resume).
    torch.manual_seed(cfg.seed)
    given = model is not None and (tok is not None or cfg.packed)  # packed rows need no tok
    built = Built(model, tok) if given else family.build(cfg, corpus, d)  # type: ignore[arg-type]
    meta = {**(built.meta or {}), **meta}
    model = built.model
    if cfg.lora_rank:
        apply_lora(model, cfg.lora_rank, cfg.lora_alpha, targets=cfg.targets)
    devices.place(model, dev, cfg.bf16)
    model.train()
    opt = optimizer(model, cfg, dev)
    res = TrainResult(step=0, params=sum(p.numel() for p in model.parameters()),
                      trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))
    at = Progress()
    found = train_state.latest(out, recipe.checkpoints)
    found_at_start = frozenset(train_state.checkpoints(out))
    if found is not None:
        at = train_state.restore(found, model, opt, meta, allow_corpus_change=allow_corpus_change,
                                 packed=bool(cfg.packed))
        d.say(f"resuming from {found.name}: step {at.step}, data position {at.data_pos}, "
              f"{at.trained_tokens:,} tokens trained ({at.loss_tokens:,} loss tokens)")
    ddp: nn.Module = model
    if d.world > 1:
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None)

    dcfg = data_config(cfg)
    # Held-out rows first: the tokenizer is then used by the prefetch thread alone.
    eval_rows: list[Row] = []
    rows: RowStream | Packed
    if packed is not None:
        rows = packed
        if d.main and cfg.eval_rows > 0:
            eval_rows = packed.eval_rows()[:cfg.eval_rows]
    else:
        layout = Layout(built.tok, get_template(cfg.template), middle_loss=cfg.middle_loss)
        if d.main and cfg.eval_share > 0 and cfg.eval_rows > 0:
            eval_rows = eval_rows_of(corpus, layout, dcfg, cfg.eval_rows)
        rows = RowStream(corpus, layout, dcfg)
    per_rank = cfg.micro_batch * cfg.grad_accum
    global_rows = per_rank * d.world
    name = (cfg.init_from or cfg.model) if recipe.family == "gemma" else cfg.recipe
    lora = f", LoRA rank {cfg.lora_rank} on {','.join(cfg.targets)}" if cfg.lora_rank else ""
    d.say(f"model {name}: {res.params:,} parameters ({res.trainable:,} trainable{lora}), vocab "
          f"{getattr(built.tok, 'vocab_size', '?')}, global batch {global_rows} x "
          f"{cfg.seq_len} tokens, {d.world} process(es) on {dev}")
    d.say((f"{packed.rows:,} packed rows ({packed.manifest['tokens']:,} tokens) in {cfg.packed}"
           if packed is not None else
           f"{len(rows.targets):,} training files, {len(corpus.files) - len(rows.targets):,} "
           "held out")  # type: ignore[union-attr]
          + f"; {len(eval_rows)} eval rows "
          f"({sum(int((r.labels != IGNORE_INDEX).sum()) for r in eval_rows):,} loss tokens)")
    stream = prefetch(_stream(rows, at), depth=16)
    eval_batch = family.eval_batch or cfg.micro_batch

    def run_eval(step: int) -> None:
        t = time.perf_counter()
        loss = evaluate(model, eval_rows, eval_batch, cfg.bf16, family.loss, dev)
        at.evals.append({"step": step, "eval_loss": loss})
        d.say(f"eval loss {loss:.4f} at step {step} ({time.perf_counter() - t:.0f} s)")

    if eval_rows and family.eval_at_start and at.step == 0 and \
            not any(int(e["step"]) == 0 for e in at.evals):
        run_eval(0)  # the starting weights: the loss curve's first point

    t0 = time.perf_counter()
    elapsed_before = float(at.history[-1]["elapsed"]) if at.history else 0.0
    # Totals carry over a resume; tok/s and the ETA are this process's.
    new_tokens, new_loss_tokens, new_steps = 0, 0, 0
    saved_at = t0

    def checkpoint() -> None:
        nonlocal saved_at
        res.checkpoint = train_state.save(out, recipe.checkpoints, model, opt, at, cfg, meta,
                                          keep_also=found_at_start)
        if cfg.adapter_out:  # what a run away from this machine brings back
            # "{step}" in the name keeps every checkpoint's adapter (early stopping chooses
            # among them); the optimizer-free checkpoint is the last one ("last").
            train_state.save_weights(Path(cfg.adapter_out.format(step="last")).with_suffix(".pt"),
                                     model, at, cfg, meta)
            if family.export is not None:
                family.export(cfg, model, at.trained_tokens,
                              Path(cfg.adapter_out.format(step=at.step)))
        saved_at = time.perf_counter()

    stop_at = min(cfg.steps, cfg.stop_after if cfg.stop_after is not None else cfg.steps)
    # With fit_schedule the cosine is made to end with the time budget, once the steps after
    # the first (which warms kernels and caches up) have shown what a step costs.
    fit_at = max(3, min(cfg.warmup, 20)) if cfg.fit_schedule and cfg.time_limit else 0
    first_done = t0
    trainable = [p for p in model.parameters() if p.requires_grad]
    while at.step < stop_at:
        step = at.step
        batch_rows = []
        for _ in range(global_rows):
            row, at.data_pos = next(stream)
            batch_rows.append(row)
        at.rows_done += global_rows
        n_loss = sum(int((r.labels != IGNORE_INDEX).sum()) for r in batch_rows)
        n_tok = sum(int((r.segment_ids >= 0).sum()) for r in batch_rows)
        mine = batch_rows[d.rank * per_rank:(d.rank + 1) * per_rank]
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        loss_sum = 0.0
        for m in range(cfg.grad_accum):
            batch = devices.to_device(collate(mine[m * cfg.micro_batch:(m + 1) * cfg.micro_batch]),
                                      dev)
            sync = m == cfg.grad_accum - 1 or d.world == 1
            with ddp.no_sync() if not sync else nullcontext():  # type: ignore[operator]
                s, _ = family.loss(ddp, batch, cfg.bf16)
                # DDP averages gradients over ranks: scale by world so the result is the
                # global sum divided by the global token count.
                (s * d.world / max(1, n_loss)).backward()
            loss_sum += float(s.detach())
        gnorm = float(nn.utils.clip_grad_norm_(trainable, cfg.clip if cfg.clip > 0
                                               else float("inf")))
        opt.step()
        opt.zero_grad(set_to_none=True)
        at.step = step + 1
        at.trained_tokens += n_tok
        at.loss_tokens += n_loss
        new_tokens += n_tok
        new_loss_tokens += n_loss
        new_steps += 1
        now = time.perf_counter()
        el = now - t0
        rec = {"step": at.step, "loss": d.all_sum(loss_sum) / max(1, n_loss), "lr": lr,
               "grad_norm": gnorm, "tokens": at.trained_tokens, "loss_tokens": at.loss_tokens,
               "tok_s": new_tokens / el, "loss_tok_s": new_loss_tokens / el,
               "elapsed": elapsed_before + el}
        at.history.append(rec)
        if at.step % cfg.log_every == 0 or at.step == stop_at or new_steps == 1:
            d.say(_progress(rec, cfg.steps, el, new_steps) + (
                f"  {devices.memory(dev)}" if new_steps == 1 else ""))
        if new_steps == 1:
            first_done = now
        elif fit_at == new_steps:
            stop_at = _fit_schedule(cfg, at.step, (now - first_done) / (new_steps - 1),
                                    cfg.time_limit - (now - t0), stop_at, d)  # type: ignore[operator]
        if eval_rows and (at.step % cfg.eval_every == 0 or at.step == stop_at):
            run_eval(at.step)
        now = time.perf_counter()
        timed_out = cfg.time_limit is not None and now - t0 >= cfg.time_limit
        due = cfg.save_minutes is not None and now - saved_at >= cfg.save_minutes * 60
        if d.main and (at.step % cfg.save_every == 0 or at.step == stop_at or timed_out or due):
            checkpoint()
        # Each rank has its own clock: rank 0 decides (and has already checkpointed).
        if cfg.time_limit is not None and d.all_sum(1.0 if timed_out and d.main else 0.0) > 0:
            d.say(f"time limit reached at step {at.step}")
            break
    res.step, res.history, res.evals = at.step, at.history, at.evals
    res.trained_tokens, res.loss_tokens = at.trained_tokens, at.loss_tokens
    if d.main:
        if new_steps:
            d.say(f"{new_tokens / max(1e-9, time.perf_counter() - t0):,.0f} tok/s over "
                  f"{new_steps} steps on {dev}; {devices.memory(dev)}".rstrip("; "))
        family.finish(cfg, model, built, res)
    d.barrier()
    return res


def _fit_schedule(cfg: TrainConfig, step: int, per_step: float, left: float, stop_at: int,
                  d: Dist) -> int:
    """Shorten the schedule (``cfg.steps``, which the checkpoints record) to the steps that fit
    the ``left`` seconds at ``per_step`` each (a 5 % margin for checkpoints and evaluations);
    rank 0's estimate for every rank. Returns the new last step."""
    fitted = step + max(1, int(0.95 * left / max(per_step, 1e-9)))
    fitted = int(d.all_sum(float(fitted) if d.main else 0.0))
    if fitted >= cfg.steps:
        return stop_at
    d.say(f"schedule fitted to the time budget: {fitted} steps ({per_step:.2f} s a step, "
          f"{left:.0f} s left), was {cfg.steps}")
    cfg.steps = fitted
    return min(stop_at, fitted)


def _check_packed(packed: Packed, cfg: TrainConfig) -> None:
    """Packed rows were made by a recipe: the settings that shaped them must be this run's."""
    made = packed.manifest.get("config", {})
    for key in ("seq_len", "template", "middle_loss", "example_len", "fim_rate", "spm_rate",
                "line_rate", "max_lines", "repo_context"):
        if key in made and made[key] != getattr(cfg, key):
            raise ValueError(f"packed rows in {cfg.packed} were made with {key}={made[key]!r}, "
                             f"this run has {getattr(cfg, key)!r}")


def run(name: str, given: dict[str, Any], *, allow_corpus_change: bool = False) -> TrainResult:
    """Train with recipe ``name``: its defaults and the settings ``given`` (None: not given);
    a run in progress in the output directory resumes."""
    return train(config_for(name, given), allow_corpus_change=allow_corpus_change)
