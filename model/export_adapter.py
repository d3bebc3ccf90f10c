"""A torch LoRA on Gemma 3 (model/lora.py on model/gemma3.py) → a llama.cpp LoRA GGUF.

The file is what llama.cpp's ``llama_adapter_lora_init`` (llama-cpp-python's ``lora_path``)
applies to the unmodified base model at load, and what the daemon's ``engine.adapter`` takes:

- metadata ``general.type = "adapter"``, ``general.architecture = "gemma3"``,
  ``adapter.type = "lora"``, ``adapter.lora.alpha``; codefill's own ``codefill.fim.template``
  (the template the adapter was trained with, e.g. ``gemma3-fim``), ``codefill.adapter.base.name``
  and ``codefill.adapter.base.size`` (the base GGUF's ``general.name`` and its size in bytes, so
  the daemon can refuse another base), ``codefill.adapter.tokens_seen``, ``codefill.adapter.rank``;
- per adapted projection a pair ``blk.N.<tensor>.weight.lora_a`` / ``.lora_b``. llama.cpp
  computes ``W x + (alpha / r) · B (A x)`` with ``A = lora_a`` of ggml shape ``(in, r)`` and
  ``B = lora_b`` of ggml shape ``(r, out)`` (``llama-adapter.cpp`` checks ``a.ne[0]`` against the
  base tensor's ``ne[0]``, ``b.ne[1]`` against its ``ne[1]`` and ``a.ne[1] == b.ne[0]``, and takes
  the rank from ``b.ne[0]``). ggml's dims are the row-major shape reversed, so these are exactly
  LoRALinear's ``lora_A`` ``(r, in)`` and ``lora_B`` ``(out, r)``, written as they are; the scale
  ``alpha / r`` is LoRALinear's too.

Only the layers' projections (q, k, v, o, gate, up, down) can be exported. Norms are skipped by
llama.cpp's loader, and ``token_embd`` cannot be adapted for Gemma 3: its output projection is the
same tensor, llama.cpp applies the pair there too and aborts (docs/adapter-training-notes.md). Module names
map to GGUF names through the quantizer's HF → GGUF table for Gemma 3 (quantize/tensor_map.py),
and anything else is refused by name. The base model is read (header only) to check every pair's
shape against the tensor it adapts.

    python -m model.export_adapter model/checkpoints/gemma3-270m-fim/step-000020.pt \
        --out lsp_server/models/adapters/gemma3-270m-fim.gguf

The file is written to a temporary name and renamed into place. Sizes (float16, the default):
rank 8 on q/k/v/o of the 270M is 1.5 MB, with gate/up/down 3.8 MB (docs/training.md).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import gguf
import numpy as np

from lsp_server.models.adapter import (KEY_BASE_NAME, KEY_BASE_SIZE, KEY_RANK, KEY_TEMPLATE,
                                       KEY_TOKENS_SEEN)
from lsp_server.models.gguf_header import read_header
from lsp_server.prompt.templates import TEMPLATES
from quantize.tensor_map import GLOBAL_TENSORS, LAYER_TENSORS

ARCH = "gemma3"
DEFAULT_TEMPLATE = "gemma3-fim"
DTYPES = {"f16": np.float16, "f32": np.float32}

_T = gguf.MODEL_TENSOR
PROJECTIONS = frozenset({_T.ATTN_Q, _T.ATTN_K, _T.ATTN_V, _T.ATTN_OUT, _T.FFN_GATE, _T.FFN_UP,
                         _T.FFN_DOWN})
# HF module suffix ("self_attn.q_proj") → GGUF tensor template ("blk.{bid}.attn_q"), from the
# quantizer's table: the projections only.
_MODULES: dict[str, str] = {
    hf.removesuffix(".weight"): gguf.TENSOR_NAMES[kind]
    for hf, kind in LAYER_TENSORS[gguf.MODEL_ARCH.GEMMA3].items() if kind in PROJECTIONS}
_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")


class AdapterExportError(ValueError):
    """The LoRA cannot be written as a llama.cpp adapter for this base model."""


def gguf_tensor_name(module: str) -> str:
    """llama.cpp's name of the weight a LoRA on the torch module ``module`` adapts
    (``model.layers.3.self_attn.q_proj`` → ``blk.3.attn_q.weight``); refuses anything else."""
    name = module.removeprefix("module.")  # a DDP-wrapped model's names
    known = ", ".join(sorted(_MODULES))
    kind = GLOBAL_TENSORS.get(f"{name}.weight")
    if kind in (_T.TOKEN_EMBD, _T.OUTPUT):
        raise AdapterExportError(
            f"LoRA on {module!r} cannot be exported: Gemma 3's output projection is the token "
            "embedding, and llama.cpp applies a token_embd adapter to it too and aborts "
            f"(docs/adapter-training-notes.md); adapt model.layers.N.{{{known}}} only")
    m = _LAYER.fullmatch(name)
    if m and m.group(2) in _MODULES:
        return _MODULES[m.group(2)].format(bid=int(m.group(1))) + ".weight"
    if kind is not None or (m and f"{m.group(2)}.weight" in LAYER_TENSORS[gguf.MODEL_ARCH.GEMMA3]):
        raise AdapterExportError(f"LoRA on {module!r} cannot be exported: llama.cpp adapters "
                                 f"skip norms; adapt model.layers.N.{{{known}}} only")
    raise AdapterExportError(f"unknown module {module!r} for a Gemma 3 adapter (known: "
                             f"model.layers.N.{{{known}}})")


@dataclass(frozen=True)
class ExportReport:
    path: Path
    n_pairs: int
    rank: int
    alpha: float
    dtype: str
    size_bytes: int
    targets: tuple[str, ...]
    """The adapted projections (GGUF tensor kinds, e.g. attn_q), sorted."""


def write_adapter(out: str | os.PathLike[str],
                  pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], *, alpha: float,
                  base: str | os.PathLike[str], template: str | None = DEFAULT_TEMPLATE,
                  tokens_seen: int = 0, dtype: str = "f16", name: str | None = None
                  ) -> ExportReport:
    """Write ``pairs`` (torch module name → (A (r, in), B (out, r))) as a LoRA GGUF for the
    base GGUF ``base``; the update is ``alpha / r · B @ A``, as in model/lora.py."""
    out, base = Path(out), Path(base)
    if dtype not in DTYPES:
        raise AdapterExportError(f"dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    if template is not None and template not in TEMPLATES:
        raise AdapterExportError(f"unknown FIM template {template!r} (known: "
                                 f"{', '.join(TEMPLATES)})")
    if not pairs:
        raise AdapterExportError("no LoRA pairs to export (was model/lora.py's apply_lora used?)")
    if not (alpha > 0 and np.isfinite(alpha)):
        raise AdapterExportError(f"alpha must be positive, got {alpha}")
    header = read_header(base)
    if header.metadata.get("general.architecture") != ARCH:
        raise AdapterExportError(f"base model {base} is {header.metadata.get('general.architecture')!r}"
                                 f", not {ARCH!r}")
    if header.metadata.get("general.type", "model") != "model":
        raise AdapterExportError(f"base {base} is not a model (general.type "
                                 f"{header.metadata.get('general.type')!r})")
    dims = {t.name: t.dims for t in header.tensors}

    tensors: list[tuple[str, np.ndarray, np.ndarray]] = []
    ranks: set[int] = set()
    for module, (a, b) in pairs.items():
        target = gguf_tensor_name(module)
        if target not in dims:
            raise AdapterExportError(f"{module!r} → {target!r}, which the base {base} does not "
                                     "have (a model of another size?)")
        a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
        in_f, out_f = dims[target][0], dims[target][1]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1] or a.shape[1] != in_f \
                or b.shape[0] != out_f:
            raise AdapterExportError(
                f"{module!r}: A {tuple(a.shape)} and B {tuple(b.shape)} do not make a rank-r "
                f"update of {target} ({out_f} × {in_f}): need A (r, {in_f}), B ({out_f}, r)")
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise AdapterExportError(f"{module!r}: A or B holds NaN or infinite values")
        ranks.add(a.shape[0])
        tensors.append((target, a, b))
    if len(ranks) != 1:
        raise AdapterExportError(f"the pairs have different ranks {sorted(ranks)}; one alpha "
                                 "cannot scale them as the torch modules did")
    rank = ranks.pop()

    def order(t: tuple[str, Any, Any]) -> tuple[int, str]:
        m = re.match(r"blk\.(\d+)\.", t[0])
        return (int(m.group(1)) if m else -1, t[0])

    tensors.sort(key=order)
    np_dtype = DTYPES[dtype]
    for target, a, b in tensors:
        for label, x in (("lora_a", a), ("lora_b", b)):
            if np.abs(x).max(initial=0.0) > float(np.finfo(np_dtype).max):
                raise AdapterExportError(f"{target}.{label} overflows {dtype}; export as f32")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        w = gguf.GGUFWriter(tmp, ARCH)
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_name(name or f"{header.metadata.get('general.name') or base.stem} LoRA "
                           f"(rank {rank}{', ' + template if template else ''})")
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        if template is not None:
            w.add_string(KEY_TEMPLATE, template)
        w.add_string(KEY_BASE_NAME, str(header.metadata.get("general.name") or ""))
        w.add_uint64(KEY_BASE_SIZE, base.stat().st_size)
        w.add_uint64(KEY_TOKENS_SEEN, int(tokens_seen))
        w.add_uint32(KEY_RANK, rank)
        for target, a, b in tensors:
            # numpy (r, in) / (out, r) are ggml (in, r) / (r, out): llama.cpp's lora_a / lora_b.
            w.add_tensor(f"{target}.lora_a", np.ascontiguousarray(a.astype(np_dtype)))
            w.add_tensor(f"{target}.lora_b", np.ascontiguousarray(b.astype(np_dtype)))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    kinds = {t.split(".")[2] for t, _, _ in tensors}
    return ExportReport(out, len(tensors), rank, float(alpha), dtype, out.stat().st_size,
                        tuple(sorted(kinds)))


# -- from torch ---------------------------------------------------------------------------------

def lora_pairs(model: Any) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], float]:
    """(module name → (A, B), alpha) of every LoRALinear in ``model``; one alpha for all."""
    from .lora import LoRALinear

    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    alphas: set[float] = set()
    for name, mod in model.named_modules():
        if isinstance(mod, LoRALinear):
            a, b = mod.lora_A.detach().float().cpu().numpy(), mod.lora_B.detach().float().cpu().numpy()
            pairs[name] = (a, b)
            alphas.add(round(mod.scale * a.shape[0], 6))
    if len(alphas) > 1:
        raise AdapterExportError(f"the LoRA modules have different alphas {sorted(alphas)}; a "
                                 "llama.cpp adapter has one")
    return pairs, (alphas.pop() if alphas else 0.0)


def lora_pairs_from_state(state: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pairs from a state dict of a LoRA-wrapped model (keys ``<module>.lora_A`` / ``.lora_B``;
    the frozen ``<module>.base.weight`` and everything else are ignored)."""
    halves: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        module, _, half = key.rpartition(".")
        if half in ("lora_A", "lora_B"):
            halves.setdefault(module, {})[half] = value.detach().float().cpu().numpy()
    pairs = {}
    for module, h in halves.items():
        if set(h) != {"lora_A", "lora_B"}:
            raise AdapterExportError(f"{module}: only {', '.join(h)} in the checkpoint")
        pairs[module] = (h["lora_A"], h["lora_B"])
    return pairs


def export_adapter(model: Any, out: str | os.PathLike[str], *, base: str | os.PathLike[str],
                   template: str | None = DEFAULT_TEMPLATE, tokens_seen: int = 0,
                   dtype: str = "f16", name: str | None = None) -> ExportReport:
    """Export the LoRALinear modules of ``model`` (a Gemma3ForCausalLM after ``apply_lora``)."""
    pairs, alpha = lora_pairs(model)
    return write_adapter(out, pairs, alpha=alpha, base=base, template=template,
                         tokens_seen=tokens_seen, dtype=dtype, name=name)


# -- command line -------------------------------------------------------------------------------

@dataclass
class Checkpoint:
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]
    alpha: float | None
    tokens_seen: int | None
    template: str | None
    base_size: int | None
    """Size of the base GGUF the LoRA was trained on, when the checkpoint records it."""


def load_checkpoint(path: Path) -> Checkpoint:
    """The LoRA of a torch checkpoint: the Gemma 3 FIM recipes' ``step-N.pt`` (``lora``,
    ``lora_alpha``, ``trained_tokens``, ``config.template``, ``meta.base_bytes``),
    model/train.py's ``trainer_state.pt`` (``model``, ``config.lora_alpha``, ``history``) or a
    bare state dict."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise AdapterExportError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # pickle errors, not a torch file
        raise AdapterExportError(f"cannot read {path} as a torch checkpoint: {exc}") from None
    if not isinstance(obj, Mapping):
        raise AdapterExportError(f"{path} holds a {type(obj).__name__}, not a state dict")
    cfg = obj.get("config") if isinstance(obj.get("config"), Mapping) else {}
    meta = obj.get("meta") if isinstance(obj.get("meta"), Mapping) else {}
    history = obj.get("history") or []
    state: Mapping[str, Any] = obj
    for key in ("lora", "model"):
        if isinstance(obj.get(key), Mapping):
            state = obj[key]
            break
    alpha = obj.get("lora_alpha", cfg.get("lora_alpha"))
    tokens = obj.get("trained_tokens")
    if tokens is None and history and isinstance(history[-1], Mapping):
        tokens = history[-1].get("tokens")
    template = cfg.get("template")
    return Checkpoint(lora_pairs_from_state(state),
                      float(alpha) if alpha else None,
                      int(tokens) if tokens is not None else None,
                      template if isinstance(template, str) and template else None,
                      int(meta["base_bytes"]) if meta.get("base_bytes") else None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.export_adapter", description=(
        "Write the LoRA of a torch checkpoint (a Gemma 3 FIM recipe's step-N.pt, "
        "model/train.py's trainer_state.pt, or any state dict with <module>.lora_A / .lora_B) "
        "as a llama.cpp LoRA GGUF for engine.adapter."))
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True, help="the adapter GGUF to write")
    p.add_argument("--base", default="", help="base model GGUF (default: the embedded Gemma 3 "
                                              "270M)")
    p.add_argument("--template", default=None,
                   help="FIM template the adapter was trained with ('' for none; default: the "
                        f"checkpoint's, else {DEFAULT_TEMPLATE})")
    p.add_argument("--alpha", type=float, help="LoRA alpha (default: from the checkpoint)")
    p.add_argument("--tokens-seen", type=int, help="training tokens (default: from the "
                                                   "checkpoint's history)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="f16")
    p.add_argument("--name", help="general.name of the adapter")
    args = p.parse_args(argv)
    from lsp_server.errors import CodefillError
    from lsp_server.models.resolve import resolve_model

    try:
        ck = load_checkpoint(args.checkpoint)
        alpha = args.alpha if args.alpha is not None else ck.alpha
        if alpha is None:
            raise AdapterExportError(f"{args.checkpoint} does not record the LoRA alpha: pass "
                                     "--alpha")
        template = args.template if args.template is not None else (ck.template
                                                                    or DEFAULT_TEMPLATE)
        base = resolve_model(args.base)
        if ck.base_size is not None and ck.base_size != base.stat().st_size:
            raise AdapterExportError(f"{args.checkpoint} was trained on a {ck.base_size}-byte "
                                     f"base model, {base} has {base.stat().st_size} bytes: "
                                     "pass the training's base with --base")
        tokens = args.tokens_seen if args.tokens_seen is not None else ck.tokens_seen
        report = write_adapter(args.out, ck.pairs, alpha=alpha, base=base,
                               template=template or None, tokens_seen=tokens or 0,
                               dtype=args.dtype, name=args.name)
    except (AdapterExportError, CodefillError, OSError) as exc:
        print(f"export_adapter: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {report.path}: {report.n_pairs} LoRA pairs ({', '.join(report.targets)}), "
          f"rank {report.rank}, alpha {report.alpha:g}, {report.dtype}, "
          f"{report.size_bytes:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
