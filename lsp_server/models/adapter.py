"""LoRA adapters for the local engine: llama.cpp's LoRA GGUF (``general.type = "adapter"``).

``engine.adapter`` names an adapter file (or ``embedded``: the FIM adapter for the embedded
Gemma 3 270M, shipped in this package once one is trained) that llama.cpp applies to
``engine.model`` when it loads it. Before that, a fast read of the adapter's header refuses what
llama.cpp would refuse with a bare "failed to initialize LoRA adapter" (its reason only in its
log) — not a GGUF, not an adapter, another architecture, tensors the base model does not have or
has in another shape — and what would abort the whole process: a ``token_embd`` pair on a model
whose output projection is tied to the embedding (Gemma 3; docs/adapter-training-notes.md). Adapters
exported by codefill (model/export_adapter.py, docs/training.md) also name their base model,
which is checked, and their FIM template, which the session uses when ``prompt.template`` is
``auto``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import gguf

from ..errors import ModelError
from .gguf_info import ModelInfo, read_gguf_file

ADAPTER_KEYWORD = "embedded"
"""``engine.adapter = "embedded"``: the adapter shipped in the package (EMBEDDED_ADAPTER)."""
EMBEDDED_ADAPTER = Path(__file__).resolve().parent / "adapters" / "gemma3-270m-fim.gguf"

# codefill's own metadata (written by model/export_adapter.py; other adapters lack it).
KEY_TEMPLATE = "codefill.fim.template"
KEY_BASE_NAME = "codefill.adapter.base.name"
KEY_BASE_SIZE = "codefill.adapter.base.size"
KEY_TOKENS_SEEN = "codefill.adapter.tokens_seen"
KEY_RANK = "codefill.adapter.rank"

_FIX = "set engine.adapter (--adapter) to a LoRA GGUF for this model, or to '' for none"


@dataclass
class AdapterInfo:
    """What a LoRA GGUF declares about itself."""

    path: Path
    size_bytes: int
    architecture: str
    name: str
    alpha: float
    """adapter.lora.alpha; llama.cpp scales each pair by alpha / rank (0: by 1)."""
    template: str | None
    """codefill.fim.template: the FIM template the adapter was trained for."""
    base_name: str | None
    base_size: int | None
    tokens_seen: int | None
    rank: int | None
    pairs: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict,
                                                                    repr=False)
    """Base tensor name → (lora_a dims, lora_b dims), ggml order."""

    def describe(self) -> dict[str, object]:
        return {"path": str(self.path), "name": self.name, "architecture": self.architecture,
                "template": self.template, "rank": self.rank, "alpha": self.alpha,
                "tensors": len(self.pairs), "tokens_seen": self.tokens_seen,
                "base": ({"name": self.base_name, "size_bytes": self.base_size}
                         if self.base_name is not None or self.base_size is not None else None),
                "size_bytes": self.size_bytes}


def resolve_adapter(value: str) -> Path | None:
    """The adapter file ``engine.adapter`` names: None for "", the shipped one for "embedded"."""
    value = value.strip()
    if not value:
        return None
    if value == ADAPTER_KEYWORD:
        if not EMBEDDED_ADAPTER.is_file():
            raise ModelError(
                "engine.adapter is 'embedded', but this codefill ships no FIM adapter "
                f"(expected {EMBEDDED_ADAPTER})",
                "set engine.adapter to the path of a LoRA GGUF (model/export_adapter.py "
                "writes one), or to '' for the embedded model without an adapter")
        return EMBEDDED_ADAPTER
    return Path(value).expanduser()


def read_adapter_info(path: str | os.PathLike[str]) -> AdapterInfo:
    """Describe the adapter at ``path``; :class:`ModelError` when it is not a usable LoRA GGUF."""
    p = Path(path)
    header, size = read_gguf_file(p, "adapter", fix=_FIX, damaged="adapter file",
                                  redo="export or copy the adapter again", other_format=_FIX)
    meta = header.metadata
    kind = meta.get(gguf.Keys.General.TYPE)
    if kind != "adapter":
        what = "a model" if kind in (None, "model") else f"of type {kind!r}"
        raise ModelError(f"{p} is {what}, not a LoRA adapter (general.type is {kind!r}, not "
                         "'adapter')", "pass the model as engine.model (--model) and a LoRA GGUF "
                                       "as engine.adapter (--adapter)")
    if meta.get(gguf.Keys.Adapter.TYPE) != "lora":
        raise ModelError(f"adapter {p} is of type {meta.get(gguf.Keys.Adapter.TYPE)!r}; "
                         "llama.cpp applies 'lora' adapters only", _FIX)
    arch = meta.get(gguf.Keys.General.ARCHITECTURE)
    if not isinstance(arch, str) or not arch:
        raise ModelError(f"adapter {p} names no architecture (general.architecture)", _FIX)

    halves: dict[str, dict[str, tuple[int, ...]]] = {}
    for t in header.tensors:
        base, dot, half = t.name.rpartition(".")
        if dot and half in ("lora_a", "lora_b"):
            halves.setdefault(base, {})[half] = t.dims
        elif not t.name.endswith("_norm.weight"):  # llama.cpp skips norms, refuses the rest
            raise ModelError(f"adapter {p} has tensor {t.name!r}, which is neither a .lora_a / "
                             ".lora_b half nor a norm", "export the adapter again")
    pairs: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for base, h in halves.items():
        if "lora_a" not in h or "lora_b" not in h:
            missing = "lora_b" if "lora_a" in h else "lora_a"
            raise ModelError(f"adapter {p} has no {base}.{missing} for its {base} pair",
                             "export the adapter again")
        pairs[base] = (h["lora_a"], h["lora_b"])

    def opt_int(key: str) -> int | None:
        v = meta.get(key)
        return int(v) if isinstance(v, int) and not isinstance(v, bool) else None

    template = meta.get(KEY_TEMPLATE)
    base_name = meta.get(KEY_BASE_NAME)
    return AdapterInfo(
        path=p, size_bytes=size, architecture=arch,
        name=str(meta.get(gguf.Keys.General.NAME) or p.stem),
        alpha=float(meta.get(gguf.Keys.Adapter.LORA_ALPHA) or 0.0),
        template=template if isinstance(template, str) and template else None,
        base_name=base_name if isinstance(base_name, str) else None,
        base_size=opt_int(KEY_BASE_SIZE), tokens_seen=opt_int(KEY_TOKENS_SEEN),
        rank=opt_int(KEY_RANK), pairs=pairs)


def check_adapter(adapter: AdapterInfo, model: ModelInfo) -> None:
    """Refuse an adapter that does not belong to ``model`` (:class:`ModelError`)."""
    a, m = adapter.path, model.path
    fix = (f"use {a.name} with the model it was exported for, or set engine.adapter to '' "
           "(--adapter '')")
    if adapter.architecture != model.architecture:
        raise ModelError(f"adapter {a} is for architecture {adapter.architecture!r}, the model "
                         f"{m} is {model.architecture!r}", fix)
    if adapter.base_name is not None and adapter.base_name != model.name:
        raise ModelError(f"adapter {a} was exported for the base model {adapter.base_name!r}, "
                         f"not {model.name!r} ({m})", fix)
    if adapter.base_size is not None and adapter.base_size != model.size_bytes:
        raise ModelError(f"adapter {a} was exported for a {adapter.base_size}-byte "
                         f"{adapter.base_name or 'base'} file, but {m} has {model.size_bytes} "
                         "bytes (another quantization or version of the model)", fix)
    tied = "output.weight" not in model.tensor_dims
    for name, (da, db) in adapter.pairs.items():
        if name == "token_embd.weight" and tied:
            # llama.cpp applies the pair to the tied output projection too, with shapes that do
            # not multiply: GGML_ASSERT aborts the process at the first decode.
            raise ModelError(f"adapter {a} adapts token_embd.weight, but {m} ties its output "
                             "projection to the token embedding, which llama.cpp cannot adapt "
                             "(it aborts)", "export the adapter without the embedding")
        dims = model.tensor_dims.get(name)
        if dims is None:
            raise ModelError(f"adapter {a} adapts {name!r}, which the model {m} does not have",
                             fix)
        if name == "token_embd.weight":  # llama.cpp: B not transposed, A and B flipped
            ok = len(dims) == 2 and db[:1] == dims[:1] and da[1:2] == dims[1:2]
        else:
            ok = (len(dims) == 2 and len(da) == 2 and len(db) == 2 and da[0] == dims[0]
                  and db[1] == dims[1] and da[1] == db[0])
        if not ok:
            raise ModelError(f"adapter {a}: the {name} pair has shapes lora_a {list(da)}, "
                             f"lora_b {list(db)} (ggml order), which do not fit the model's "
                             f"{list(dims)}", fix)


def open_adapter(setting: str, model: ModelInfo) -> AdapterInfo | None:
    """Resolve, read and check ``engine.adapter`` against ``model``; None when it is empty."""
    path = resolve_adapter(setting)
    if path is None:
        return None
    adapter = read_adapter_info(path)
    check_adapter(adapter, model)
    return adapter
