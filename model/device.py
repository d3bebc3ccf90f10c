"""Where the trainer computes: the CPU, or a CUDA GPU when torch sees one.

One place decides what differs between them, so the training loop stays the same:

- :func:`resolve` turns the ``device`` setting (``cpu``, ``cuda``, ``cuda:N``, ``auto``) into a
  ``torch.device``, refusing a GPU torch cannot see with the reason (a CPU build of torch, or no
  driver) instead of failing later inside a kernel;
- :func:`place` moves the model there. On a GPU with bf16 the frozen base matrices are stored in
  bf16 (half the memory, and autocast would otherwise re-cast every frozen float32 weight on every
  forward pass); the trainable LoRA factors and the norms stay float32, the master weights AdamW
  updates;
- :func:`autocast` is bf16 autocast on the tensors' device type;
- :func:`to_device` moves a collated batch (pinned and non-blocking on a GPU, so the copy overlaps
  the previous step's kernels);
- :func:`memory` reports the peak GPU memory of the run, the figure that says whether a larger
  micro-batch still fits the card.

Attention is ``scaled_dot_product_attention`` (model/gemma3.py), which picks torch's fused kernels
(flash or memory-efficient) on a GPU by itself.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from typing import Any, Mapping

import torch
from torch import nn

DEVICES = ("cpu", "cuda", "cuda:N", "auto")
_CUDA = re.compile(r"cuda(?::(\d+))?$")


def resolve(name: str) -> torch.device:
    """The device the ``device`` setting names; a GPU torch cannot use is refused with why."""
    name = (name or "cpu").strip().lower()
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    m = _CUDA.match(name)
    if m is None:
        raise ValueError(f"unknown device {name!r}: use one of {', '.join(DEVICES)}")
    if not torch.cuda.is_available():
        why = ("this torch is a CPU build" if torch.version.cuda is None
               else f"torch (CUDA {torch.version.cuda}) finds no GPU or driver")
        raise ValueError(f"device {name!r} asked for, but {why} (torch {torch.__version__}); "
                         "train with --device cpu, or on a machine with a GPU")
    index = int(m.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: torch sees {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", index)


def place(model: nn.Module, device: torch.device, bf16: bool) -> nn.Module:
    """``model`` on ``device``; on a GPU with bf16, frozen matrices (the base) in bf16."""
    model.to(device)
    if device.type == "cuda" and bf16:
        bf16_base(model)
    return model


def bf16_base(model: nn.Module) -> int:
    """Store the frozen matrices of ``model`` in bf16; returns how many were converted. Frozen
    weights are never updated, so they need no float32 master copy; norm scales (1-D) stay
    float32 because the norms compute in float32 anyway."""
    n = 0
    for p in model.parameters():
        if not p.requires_grad and p.dim() >= 2 and p.dtype != torch.bfloat16:
            p.data = p.data.to(torch.bfloat16)
            n += 1
    return n


def autocast(device_type: str, bf16: bool) -> Any:
    """bf16 autocast on ``device_type`` (``cpu`` or ``cuda``), or nothing."""
    return torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else nullcontext()


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device
              ) -> dict[str, torch.Tensor]:
    """The batch's tensors on ``device`` (a no-op on the CPU)."""
    if device.type == "cpu":
        return dict(batch)
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


def fused_adamw(device: torch.device) -> dict[str, Any]:
    """AdamW's keyword for its fused kernel where torch has one (CUDA): one launch per step
    instead of several per parameter."""
    return {"fused": True} if device.type == "cuda" else {}


def memory(device: torch.device) -> str:
    """The run's peak GPU memory so far ('' on the CPU)."""
    if device.type != "cuda":
        return ""
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    return f"GPU memory peak {peak:.1f} of {total:.0f} GiB"
