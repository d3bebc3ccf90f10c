"""Checkpoints of the trainer: what a run saves, and how it resumes from them.

Two layouts, chosen by the recipe:

``state``: one ``trainer_state.pt`` in the run's directory, rewritten in place; it holds the
whole model's state dict (``model``).

``steps``: ``step-NNNNNN.pt`` files, the newest ``keep`` of those a run writes kept (the ones it
found when it started are left alone: they may be committed, and an adapter shipped from one
of them); they hold only the
trainable tensors (``lora``) with ``lora_rank``, ``lora_alpha`` and ``targets``, a few MB, small
enough to commit (``model/checkpoints/``).

Both hold the optimizer state, the step, the data position (epoch and example index of the
deterministic row stream, ``data_pos``; ``rows_done`` counts the rows consumed), torch's RNG
state, the token counts, the loss history and evals, the run's settings (``config``) and
``meta`` (the corpus fingerprint and base model, where known). A checkpoint is written to a
temporary name and renamed, so a crash never leaves a truncated one. Resuming restores all of it,
so the run continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import csv
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .recipes import TrainConfig

STATE_FILE = "trainer_state.pt"
_STEP = re.compile(r"step-(\d{6,})\.pt$")


@dataclass
class Progress:
    """Where a run stands: everything a checkpoint restores besides tensors."""

    step: int = 0
    rows_done: int = 0
    data_pos: tuple[int, int] | None = (0, 0)
    """None when only ``rows_done`` is known (a state saved before data positions were kept):
    the stream is then regenerated up to that row."""
    trained_tokens: int = 0
    loss_tokens: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)


def checkpoints(out: Path) -> list[Path]:
    """The ``step-NNNNNN.pt`` files in ``out``, oldest first."""
    found = [(int(m.group(1)), p) for p in out.glob("step-*.pt") if (m := _STEP.search(p.name))]
    return [p for _, p in sorted(found)]


def latest(out: Path, layout: str) -> Path | None:
    """The checkpoint a run in ``out`` resumes from, if any."""
    if layout == "state":
        path = out / STATE_FILE
        return path if path.is_file() else None
    if layout == "steps":
        found = checkpoints(out)
        return found[-1] if found else None
    raise ValueError(f"unknown checkpoint layout {layout!r}: use state or steps")


def saved_config(out: Path, layout: str) -> dict[str, Any] | None:
    """The settings saved in the newest checkpoint in ``out`` (None: no checkpoint)."""
    path = latest(out, layout)
    if path is None:
        return None
    return dict(torch.load(path, map_location="cpu", weights_only=False)["config"])


def lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the trainable (LoRA) tensors, under the model's parameter names."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def say(msg: str, *, stamp: bool = False) -> None:
    """A progress line of the trainer on stderr (``stamp``: with the time of day)."""
    print((time.strftime("%H:%M:%S ") if stamp else "") + msg, file=sys.stderr, flush=True)


def save(out: Path, layout: str, model: nn.Module, opt: torch.optim.Optimizer, at: Progress,
         cfg: "TrainConfig", meta: dict[str, Any], *, keep_also: frozenset[Path] = frozenset()
         ) -> Path:
    """Write a checkpoint of ``layout`` (and the CSV table when ``cfg.csv`` is set); older step
    checkpoints beyond the newest ``cfg.keep`` are removed, except those in ``keep_also``."""
    payload: dict[str, Any] = {
        "optimizer": opt.state_dict(), "step": at.step, "rows_done": at.rows_done,
        "data_pos": list(at.data_pos) if at.data_pos is not None else None,
        "rng": torch.get_rng_state(), "trained_tokens": at.trained_tokens,
        "loss_tokens": at.loss_tokens, "history": at.history, "evals": at.evals,
        "config": asdict(cfg), "meta": meta}
    if layout == "steps":
        payload.update(lora=lora_state(model), lora_rank=cfg.lora_rank,
                       lora_alpha=cfg.lora_alpha, targets=list(cfg.targets))
        path = out / f"step-{at.step:06d}.pt"
    else:
        payload["model"] = model.state_dict()
        path = out / STATE_FILE
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never a truncated checkpoint
    if layout == "steps":
        for old in [p for p in checkpoints(out) if p not in keep_also][:-cfg.keep]:
            old.unlink()
        say(f"checkpoint {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if cfg.csv:
        write_csv(Path(cfg.csv), at.history, at.evals)
    return path


def save_weights(path: Path, model: nn.Module, at: Progress, cfg: "TrainConfig",
                 meta: dict[str, Any]) -> Path:
    """The trainable tensors with what an export needs (``lora``, ``lora_alpha``, the template,
    tokens seen, base size) and the history, but no optimizer state: a third of a step
    checkpoint's size, what a run elsewhere brings back (``python -m model.export_adapter``
    reads it). It cannot resume the run: the step checkpoints do that."""
    payload = {"lora": {k: v.cpu() for k, v in lora_state(model).items()},
               "lora_rank": cfg.lora_rank, "lora_alpha": cfg.lora_alpha,
               "targets": list(cfg.targets), "step": at.step,
               "trained_tokens": at.trained_tokens, "loss_tokens": at.loss_tokens,
               "history": at.history, "evals": at.evals, "config": asdict(cfg), "meta": meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def restore(path: Path, model: nn.Module, opt: torch.optim.Optimizer, meta: dict[str, Any], *,
            allow_corpus_change: bool = False, packed: bool = False) -> Progress:
    """Load the checkpoint at ``path`` into ``model`` and ``opt``; where the run stands.

    A checkpoint made on another corpus (``meta["corpus"]``) is refused unless allowed: its
    data position would point at other rows."""
    st = torch.load(path, map_location="cpu", weights_only=False)
    if bool(st.get("config", {}).get("packed")) != packed:
        kinds = ("rows generated from the corpus", "packed rows")
        raise ValueError(f"{path} counts its data position in {kinds[not packed]}, this run "
                         f"reads {kinds[packed]}: start a new run (another output directory)")
    was = st.get("meta", {}).get("corpus")
    if meta.get("corpus") and not allow_corpus_change and was not in (None, meta["corpus"]):
        raise ValueError(f"{path} was trained on corpus {was}, this one is {meta['corpus']}: "
                         "the data position would not match")
    if "lora" in st:
        missing = set(lora_state(model)) - set(st["lora"])
        if missing:
            raise ValueError(f"{path} lacks LoRA tensors, e.g. {sorted(missing)[:2]}")
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, t in st["lora"].items():
                params[n].copy_(t)
    else:
        model.load_state_dict(st["model"])
    opt.load_state_dict(st["optimizer"])
    if "rng" in st:
        torch.set_rng_state(st["rng"])
    history = st["history"]
    last = history[-1] if history else {}
    pos = st.get("data_pos")
    return Progress(
        step=st["step"], rows_done=st.get("rows_done", 0),
        data_pos=tuple(pos) if pos is not None else None,  # type: ignore[arg-type]
        trained_tokens=st.get("trained_tokens", int(last.get("tokens", 0))),
        loss_tokens=st.get("loss_tokens", int(last.get("loss_tokens", 0))),
        history=history, evals=st["evals"])


def write_csv(path: Path, history: list[dict[str, float]], evals: list[dict[str, float]]
              ) -> None:
    """The step / loss / eval-loss / lr / tokens table, rewritten whole."""
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
            # Records of older Gemma 3 runs call the token count trained_tokens.
            tokens = h.get("tokens", h.get("trained_tokens"))
            w.writerow([h["step"], f"{h['loss']:.5f}", "" if e is None else f"{e:.5f}",
                        f"{h['lr']:.3e}", tokens, h.get("loss_tokens", ""), f"{h['elapsed']:.1f}"])
    tmp.replace(path)
