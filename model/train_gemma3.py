"""LoRA FIM training of the embedded Gemma 3 270M on CPU, resumable across sessions (issue 11).

    .venv/bin/python -m model.train_gemma3 [--out model/checkpoints/gemma3-270m-fim]
        [--csv docs/figures/gemma3_fim_loss.csv] [--time-limit SECONDS] [--stop-after STEP]

The base weights come from the embedded GGUF (``model.gguf_load``, dequantized, frozen); LoRA
(rank 8, alpha 16) wraps the attention projections q/k/v/o of every layer. The tokenizer is the
GGUF's own vocabulary through llama.cpp (``model.tokenizer.GGUFTokenizer``, as the daemon
tokenizes), the layout the daemon's ``gemma3-fim`` template (text sentinels, the middle ends with
``<eos>``), and the loss covers only the middle and its ``<eos>`` (``selected_lm_loss``: the
262k-row output projection runs only there). The corpus is :mod:`model.data.sources`.

The trainer is :mod:`model.train`'s recipe (AdamW with decay on matrices only, linear warmup then
cosine to ``min_lr_ratio``, gradient accumulation, bf16 autocast with float32 master weights,
gradient-norm clipping, eval loss on held-out files) with checkpoints made for committing:
``step-NNNNNN.pt`` holds only the LoRA tensors, the optimizer state, the step, the data position
(epoch and example index of the deterministic row stream), torch's RNG state, the token counts and
the history (a few MB). Running the same command again resumes from the newest one and continues
exactly as the uninterrupted run would have (tested on a tiny model).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import re
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .data.corpus import Corpus
from .data.dataset import DataConfig, Row, RowStream, collate, prefetch
from .data.fim import FimRates, Layout
from .gemma import IGNORE_INDEX
from .gemma3 import Gemma3ForCausalLM, selected_lm_loss
from .lora import LoRALinear, apply_lora

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "model" / "checkpoints" / "gemma3-270m-fim"
RECIPES: dict[str, dict] = {
    # CodeGemma's: uniform character cuts, PSM and SPM half each, one example per 512-token row.
    "codegemma": {},
    # What the editor asks (issue 11's second run): middles cut at a cursor and ending at a line
    # end (1-8 lines), SPM-heavy (the product's order for gemma3-fim), two 256-token examples to a
    # row (middles of ~15 tokens: the layers over the prompt, not the LM head, are the cost).
    "editor": {"spm_rate": 0.8, "line_rate": 0.8, "example_len": 256, "lr": 5e-4,
               "warmup": 20, "steps": 1500, "eval_every": 20},
}
"""Starting settings of a new run by name (a resumed run keeps the ones it saved)."""
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
MANIFEST = "corpus.json.gz"
"""The run's corpus: every file's path, source and content hash (written at the start)."""
_CKPT = re.compile(r"step-(\d{6,})\.pt$")


@dataclass
class G3Config:
    out_dir: str = str(DEFAULT_OUT)
    csv: str | None = None
    """Where the step / loss / eval-loss / tokens table is (re)written at every checkpoint."""
    template: str = "gemma3-fim"
    seq_len: int = 512
    micro_batch: int = 1
    grad_accum: int = 4
    steps: int = 5000
    """Length of the schedule (the cosine ends here): 5000 × 4 × 512 ≈ 10M tokens."""
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup: int = 30
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    clip: float = 1.0
    bf16: bool = True
    fim_rate: float = 0.9
    spm_rate: float = 0.5
    line_rate: float = 0.0
    """Share of FIM examples cut where an editor asks (line-aligned middles of 1..max_lines)."""
    max_lines: int = 8
    example_len: int | None = None
    """Longest example in tokens (None: seq_len); shorter ones pack several to a row."""
    repo_context: bool = True
    eval_share: float = 0.02
    eval_rows: int = 16
    eval_every: int = 10
    save_every: int = 10
    keep: int = 2
    """Checkpoints kept in ``out_dir`` (the newest ones)."""
    log_every: int = 1
    seed: int = 0
    lora_rank: int = 8
    lora_alpha: float = 16.0
    targets: tuple[str, ...] = ATTENTION
    threads: int | None = 1
    time_limit: float | None = None
    stop_after: int | None = None


def lr_at(step: int, cfg: G3Config) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from lr to lr·min_lr_ratio at ``steps``
    (as ``model.train.lr_at``)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the trainable (LoRA) tensors, under the model's parameter names."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def checkpoints(out: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in out.glob("step-*.pt") if (m := _CKPT.search(p.name))]
    return [p for _, p in sorted(found)]


def _optimizer(model: nn.Module, cfg: G3Config) -> torch.optim.AdamW:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for _, p in params if p.dim() >= 2]
    rest = [p for _, p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)


def _loss(model: nn.Module, batch: dict[str, torch.Tensor], bf16: bool
          ) -> tuple[torch.Tensor, torch.Tensor]:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    with ctx:
        return selected_lm_loss(model, batch["input_ids"], batch["labels"],  # type: ignore[arg-type]
                                batch["position_ids"], batch["segment_ids"])


@torch.no_grad()
def evaluate(model: nn.Module, rows: list[Row], bf16: bool) -> float:
    """Mean cross-entropy per loss token (middle + <eos>) over ``rows``."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    for r in rows:
        s, k = _loss(model, collate([r]), bf16)
        total, n = total + float(s), n + int(k)
    model.train(was)
    return total / max(1, n)


def write_csv(path: Path, history: list[dict], evals: list[dict]) -> None:
    ev = {int(e["step"]): e["eval_loss"] for e in evals}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "loss", "eval_loss", "lr", "trained_tokens", "loss_tokens",
                    "elapsed_s"])
        if 0 in ev:  # the untrained start
            w.writerow([0, "", f"{ev[0]:.5f}", "", 0, 0, 0])
        for h in history:
            e = ev.get(int(h["step"]))
            w.writerow([h["step"], f"{h['loss']:.5f}", "" if e is None else f"{e:.5f}",
                        f"{h['lr']:.3e}", h["trained_tokens"], h["loss_tokens"],
                        f"{h['elapsed']:.1f}"])
    tmp.replace(path)


@dataclass
class Result:
    step: int = 0
    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    trained_tokens: int = 0
    loss_tokens: int = 0
    checkpoint: Path | None = None
    trainable: int = 0


def _say(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, file=sys.stderr, flush=True)


def train(cfg: G3Config, *, model: Gemma3ForCausalLM, tok, corpus: Corpus,  # noqa: ANN001
          meta: dict | None = None, on_step: Callable[[dict], None] | None = None,
          allow_corpus_change: bool = False) -> Result:
    """Train ``model`` (its base frozen, LoRA added here) on ``corpus``; resume from the newest
    checkpoint in ``cfg.out_dir``. ``meta`` (corpus fingerprint, base model) goes into every
    checkpoint; a checkpoint from another corpus is refused."""
    from lsp_server.prompt.templates import get_template

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    torch.manual_seed(cfg.seed)  # the LoRA A init (overwritten on resume)
    trainable = apply_lora(model, cfg.lora_rank, cfg.lora_alpha, targets=cfg.targets)
    model.train()
    opt = _optimizer(model, cfg)
    res = Result(trainable=trainable)
    data_pos = (0, 0)

    found = checkpoints(out)
    if found:
        st = torch.load(found[-1], map_location="cpu", weights_only=False)
        if meta.get("corpus") and not allow_corpus_change and \
                st.get("meta", {}).get("corpus") not in (None, meta["corpus"]):
            raise ValueError(f"{found[-1]} was trained on corpus {st['meta']['corpus']}, this "
                             f"one is {meta['corpus']}: the data position would not match")
        missing = set(lora_state(model)) - set(st["lora"])
        if missing:
            raise ValueError(f"{found[-1]} lacks LoRA tensors, e.g. {sorted(missing)[:2]}")
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, t in st["lora"].items():
                params[n].copy_(t)
        opt.load_state_dict(st["optimizer"])
        torch.set_rng_state(st["rng"])
        res.step, data_pos = st["step"], tuple(st["data_pos"])
        res.history, res.evals = st["history"], st["evals"]
        res.trained_tokens, res.loss_tokens = st["trained_tokens"], st["loss_tokens"]
        _say(f"resuming from {found[-1].name}: step {res.step}, data position {data_pos}, "
             f"{res.trained_tokens:,} tokens trained ({res.loss_tokens:,} loss tokens)")

    dcfg = DataConfig(seq_len=cfg.seq_len, example_len=cfg.example_len,
                      rates=FimRates(cfg.fim_rate, cfg.spm_rate, cfg.line_rate, cfg.max_lines),
                      repo_context=cfg.repo_context, seed=cfg.seed, eval_share=cfg.eval_share)
    layout = Layout(tok, get_template(cfg.template), middle_loss=True)
    # Held-out rows first (the tokenizer is then used by the prefetch thread alone).
    eval_rows: list[Row] = []
    if cfg.eval_share > 0 and cfg.eval_rows > 0:
        ev = RowStream(corpus, layout, dcfg, split="eval").epoch_rows(0)
        eval_rows = [r for _, r in zip(range(cfg.eval_rows), ev)]
    train_stream = RowStream(corpus, layout, dcfg)
    _say(f"{len(train_stream.targets):,} training files, "
         f"{len(corpus.files) - len(train_stream.targets):,} held out; "
         f"{len(eval_rows)} eval rows ({sum(int((r.labels != IGNORE_INDEX).sum()) for r in eval_rows):,} "
         f"loss tokens); LoRA rank {cfg.lora_rank} on {','.join(cfg.targets)}: {trainable:,} "
         f"trainable; batch {cfg.micro_batch * cfg.grad_accum} x {cfg.seq_len}")
    stream = prefetch(train_stream.positioned_rows(*data_pos), depth=16)

    if eval_rows and not any(int(e["step"]) == res.step for e in res.evals) and res.step == 0:
        t = time.perf_counter()
        loss0 = evaluate(model, eval_rows, cfg.bf16)
        res.evals.append({"step": 0, "eval_loss": loss0})
        _say(f"eval loss {loss0:.4f} at step 0 (untrained start, {time.perf_counter() - t:.0f} s)")

    def save() -> Path:
        path = out / f"step-{res.step:06d}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save({"lora": lora_state(model), "optimizer": opt.state_dict(), "step": res.step,
                    "data_pos": list(data_pos), "rng": torch.get_rng_state(),
                    "trained_tokens": res.trained_tokens, "loss_tokens": res.loss_tokens,
                    "history": res.history, "evals": res.evals, "config": asdict(cfg),
                    "lora_rank": cfg.lora_rank, "lora_alpha": cfg.lora_alpha,
                    "targets": list(cfg.targets), "meta": meta}, tmp)
        tmp.replace(path)  # never a truncated checkpoint
        for old in checkpoints(out)[:-cfg.keep]:
            old.unlink()
        if cfg.csv:
            write_csv(Path(cfg.csv), res.history, res.evals)
        res.checkpoint = path
        _say(f"checkpoint {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return path

    t0 = time.perf_counter()
    elapsed_before = float(res.history[-1]["elapsed"]) if res.history else 0.0
    session_tokens = 0
    stop_at = min(cfg.steps, cfg.stop_after if cfg.stop_after is not None else cfg.steps)
    n_rows = cfg.micro_batch * cfg.grad_accum
    trainable_params = [p for p in model.parameters() if p.requires_grad]
    while res.step < stop_at:
        rows = []
        for _ in range(n_rows):
            row, data_pos = next(stream)
            rows.append(row)
        n_loss = sum(int((r.labels != IGNORE_INDEX).sum()) for r in rows)
        n_tok = sum(int((r.segment_ids >= 0).sum()) for r in rows)
        lr = lr_at(res.step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        loss_sum = 0.0
        for m in range(cfg.grad_accum):
            batch = collate(rows[m * cfg.micro_batch:(m + 1) * cfg.micro_batch])
            s, _ = _loss(model, batch, cfg.bf16)
            (s / max(1, n_loss)).backward()
            loss_sum += float(s.detach())
        gnorm = float(nn.utils.clip_grad_norm_(trainable_params, cfg.clip if cfg.clip > 0
                                               else float("inf")))
        opt.step()
        opt.zero_grad(set_to_none=True)
        res.step += 1
        res.trained_tokens += n_tok
        res.loss_tokens += n_loss
        session_tokens += n_tok
        el = time.perf_counter() - t0
        rec = {"step": res.step, "loss": loss_sum / max(1, n_loss), "lr": lr,
               "grad_norm": gnorm, "trained_tokens": res.trained_tokens,
               "loss_tokens": res.loss_tokens, "tok_s": session_tokens / el,
               "elapsed": elapsed_before + el}
        res.history.append(rec)
        if on_step:
            on_step(rec)
        if res.step % cfg.log_every == 0:
            _say(f"step {res.step}/{cfg.steps} loss {rec['loss']:.4f} lr {lr:.2e} "
                 f"|g| {gnorm:.3f} tokens {res.trained_tokens:,} (loss {res.loss_tokens:,}) "
                 f"{rec['tok_s']:.1f} tok/s")
        if eval_rows and (res.step % cfg.eval_every == 0 or res.step == stop_at):
            t = time.perf_counter()
            ev_loss = evaluate(model, eval_rows, cfg.bf16)
            res.evals.append({"step": res.step, "eval_loss": ev_loss})
            _say(f"eval loss {ev_loss:.4f} at step {res.step} ({time.perf_counter() - t:.0f} s)")
        timed_out = cfg.time_limit is not None and time.perf_counter() - t0 >= cfg.time_limit
        if res.step % cfg.save_every == 0 or res.step == stop_at or timed_out:
            save()
        if timed_out:
            _say(f"time limit reached at step {res.step}")
            break
    return res


# -- the real run -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="codegemma", choices=tuple(RECIPES),
                    help="starting settings of a new run (default codegemma); the run's "
                         "directory and CSV default to names with the recipe in them")
    ap.add_argument("--out", default=None, help=f"checkpoint directory ({DEFAULT_OUT}[-RECIPE])")
    ap.add_argument("--csv", default=None,
                    help="loss table (docs/figures/gemma3_fim[_RECIPE]_loss.csv)")
    ap.add_argument("--model", default="", help="GGUF of the base (default: the embedded one)")
    ap.add_argument("--venv", default=str(ROOT / ".venv"))
    ap.add_argument("--bench-dir", default=str(ROOT.parent / "shared" / "benchmarks"),
                    help="evaluation data whose problems are kept out of the corpus")
    ap.add_argument("--steps", type=int, help=f"schedule length ({G3Config.steps})")
    ap.add_argument("--grad-accum", type=int, help=f"rows per step ({G3Config.grad_accum})")
    ap.add_argument("--lr", type=float, help=f"peak learning rate ({G3Config.lr})")
    ap.add_argument("--mlp", action="store_true", help="LoRA on the MLP projections too")
    ap.add_argument("--save-every", type=int, default=G3Config.save_every)
    ap.add_argument("--eval-every", type=int, help=f"steps between evals ({G3Config.eval_every})")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--allow-corpus-change", action="store_true",
                    help="continue although the corpus differs from the run's manifest (the "
                         "data order changes: the run is no longer reproducible)")
    ap.add_argument("--time-limit", type=float)
    ap.add_argument("--stop-after", type=int)
    a = ap.parse_args(argv)
    suffix = "" if a.recipe == "codegemma" else f"-{a.recipe}"
    a.out = a.out or f"{DEFAULT_OUT}{suffix}"
    a.csv = a.csv or str(ROOT / "docs" / "figures" /
                         f"gemma3_fim{suffix.replace('-', '_')}_loss.csv")
    from lsp_server.models.resolve import resolve_model

    from .data.sources import build_corpus
    from .gguf_load import load_gemma3_gguf
    from .tokenizer import GGUFTokenizer

    torch.set_num_threads(a.threads)
    path = resolve_model(a.model)
    t = time.perf_counter()
    sc = build_corpus(a.venv, bench_dir=a.bench_dir)
    manifest_path = Path(a.out) / MANIFEST
    if manifest_path.is_file():  # a run in progress: train on exactly its files
        with gzip.open(manifest_path, "rt") as fh:
            manifest = json.load(fh)
        bad = sc.restrict(manifest)
        if bad and not a.allow_corpus_change:
            _say(f"{len(bad)} files of the run's corpus are missing or changed here (e.g. "
                 f"{bad[:3]}): the venv's packages differ from the run's; reinstall them or "
                 "pass --allow-corpus-change")
            return 2
        if bad or sc.fingerprint() != manifest["fingerprint"]:
            _say(f"corpus changed ({len(bad)} files): continuing on {sc.fingerprint()}")
            with gzip.open(manifest_path, "wt") as fh:
                json.dump(sc.manifest(), fh)
    else:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        with gzip.open(manifest_path, "wt") as fh:
            json.dump(sc.manifest(), fh)
    _say(f"corpus: {len(sc.corpus.files):,} files, {sc.corpus.n_chars:,} characters, "
         f"fingerprint {sc.fingerprint()} ({time.perf_counter() - t:.0f} s)")
    tok = GGUFTokenizer(path)
    t = time.perf_counter()
    model = load_gemma3_gguf(path)
    _say(f"base {path} loaded ({time.perf_counter() - t:.0f} s)")
    found = checkpoints(Path(a.out))
    if found:  # a run in progress keeps its own hyperparameters (the schedule, the batch, ...)
        saved = torch.load(found[-1], map_location="cpu", weights_only=False)["config"]
        saved.update(targets=tuple(saved["targets"]), betas=tuple(saved["betas"]))
        cfg = G3Config(**saved)
        cfg.out_dir, cfg.csv, cfg.threads = a.out, a.csv, a.threads
        cfg.time_limit, cfg.stop_after = a.time_limit, a.stop_after
    else:
        given = {k: v for k, v in (("steps", a.steps), ("grad_accum", a.grad_accum),
                                   ("lr", a.lr), ("eval_every", a.eval_every)) if v is not None}
        cfg = G3Config(**{**RECIPES[a.recipe], **given}, out_dir=a.out, csv=a.csv,
                       targets=ATTENTION + MLP if a.mlp else ATTENTION,
                       save_every=a.save_every, threads=a.threads,
                       time_limit=a.time_limit, stop_after=a.stop_after)
    meta = {"corpus": sc.fingerprint(), "base": os.path.basename(path),
            "base_bytes": os.path.getsize(path)}
    res = train(cfg, model=model, tok=tok, corpus=sc.corpus, meta=meta,
                allow_corpus_change=a.allow_corpus_change)
    _say(f"stopped at step {res.step}: {res.trained_tokens:,} tokens trained, "
         f"{res.loss_tokens:,} loss tokens; checkpoint {res.checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
