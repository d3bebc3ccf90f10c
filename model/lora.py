"""LoRA (Hu et al., 2021) for fine-tuning an existing checkpoint on a laptop.

The chosen linear layers get a frozen base weight plus a trainable low-rank update
``(alpha / r) · B @ A`` (B starts at zero, so the wrapped model computes exactly what the base
did). Everything else is frozen. For export the update is merged back into the base weight, so
the saved checkpoint is plain Gemma under the HF names and ``codefill quantize`` needs to know
nothing about LoRA.
"""

from __future__ import annotations

import math

import torch
from torch import nn

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float) -> None:
        super().__init__()
        if r <= 0:
            raise ValueError("LoRA rank must be positive")
        self.base = base
        self.base.weight.requires_grad_(False)
        self.scale = alpha / r
        out_f, in_f = base.weight.shape
        self.lora_A = nn.Parameter(torch.empty(r, in_f, device=base.weight.device))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(out_f, r, device=base.weight.device))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear, as the paper's code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (..., in) → (..., out); the low-rank path never materialises B @ A.
        return self.base(x) + (x @ self.lora_A.t().to(x.dtype)) @ self.lora_B.t().to(x.dtype) \
            * self.scale

    def merged_weight(self) -> torch.Tensor:
        return self.base.weight + (self.lora_B @ self.lora_A) * self.scale  # (out, in)


def apply_lora(model: nn.Module, r: int = 8, alpha: float = 16.0,
               targets: tuple[str, ...] = DEFAULT_TARGETS) -> int:
    """Wrap the ``targets`` linears, freeze every other parameter; returns trainable count."""
    for p in model.parameters():
        p.requires_grad_(False)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if name in targets and isinstance(child, nn.Linear):
                setattr(module, name, LoRALinear(child, r, alpha))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict under the plain (HF) names, every LoRA update merged into its weight."""
    out: dict[str, torch.Tensor] = {}
    lora_prefixes = {name for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    for name, m in model.named_modules():
        if isinstance(m, LoRALinear):
            out[f"{name}.weight"] = m.merged_weight().detach()
    for key, value in model.state_dict().items():
        if any(key.startswith(p + ".") for p in lora_prefixes):
            continue  # base.weight / lora_A / lora_B: already merged above
        out[key] = value
    return out
