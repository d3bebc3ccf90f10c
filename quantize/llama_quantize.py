"""llama.cpp's own quantizer (``llama_model_quantize``, as llama-cpp-python exposes it).

The types are llama.cpp's (the names ``llama-quantize`` takes); types whose tensors need an
importance matrix are refused up front without one. An importance matrix is read from a GGUF
written by ``llama-imatrix`` (``<tensor>.in_sum2`` / ``<tensor>.counts``) and passed as
per-column mean squared activations, as llama-quantize does. Output goes to a temporary file
that is renamed into place only on success.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import gguf
import numpy as np

from lsp_server.errors import ModelError
from lsp_server.models.gguf_info import read_model_info

from .errors import QuantizeError
from .outputs import atomic_output, check_free_space

# llama-quantize's type names → llama_ftype (gguf's LlamaFileType mirrors llama.h's enum).
_F = gguf.LlamaFileType
QUANT_TYPES: dict[str, int] = {
    "Q4_0": _F.MOSTLY_Q4_0, "Q4_1": _F.MOSTLY_Q4_1, "Q5_0": _F.MOSTLY_Q5_0,
    "Q5_1": _F.MOSTLY_Q5_1, "Q8_0": _F.MOSTLY_Q8_0,
    "Q2_K": _F.MOSTLY_Q2_K, "Q2_K_S": _F.MOSTLY_Q2_K_S,
    "Q3_K_S": _F.MOSTLY_Q3_K_S, "Q3_K_M": _F.MOSTLY_Q3_K_M, "Q3_K_L": _F.MOSTLY_Q3_K_L,
    "Q4_K_S": _F.MOSTLY_Q4_K_S, "Q4_K_M": _F.MOSTLY_Q4_K_M,
    "Q5_K_S": _F.MOSTLY_Q5_K_S, "Q5_K_M": _F.MOSTLY_Q5_K_M, "Q6_K": _F.MOSTLY_Q6_K,
    "IQ1_S": _F.MOSTLY_IQ1_S, "IQ1_M": _F.MOSTLY_IQ1_M,
    "IQ2_XXS": _F.MOSTLY_IQ2_XXS, "IQ2_XS": _F.MOSTLY_IQ2_XS, "IQ2_S": _F.MOSTLY_IQ2_S,
    "IQ2_M": _F.MOSTLY_IQ2_M, "IQ3_XXS": _F.MOSTLY_IQ3_XXS, "IQ3_XS": _F.MOSTLY_IQ3_XS,
    "IQ3_S": _F.MOSTLY_IQ3_S, "IQ3_M": _F.MOSTLY_IQ3_M, "IQ4_NL": _F.MOSTLY_IQ4_NL,
    "IQ4_XS": _F.MOSTLY_IQ4_XS, "TQ1_0": _F.MOSTLY_TQ1_0, "TQ2_0": _F.MOSTLY_TQ2_0,
    "F16": _F.MOSTLY_F16, "BF16": _F.MOSTLY_BF16, "F32": _F.ALL_F32,
}
ALIASES: dict[str, str] = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}
# Types llama.cpp refuses to produce without an importance matrix.
NEEDS_IMATRIX: frozenset[str] = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S",
                                           "Q2_K_S"})
# Upper bounds of bits per weight (embeddings and some layers get larger types in the mixes),
# for the free-space check only.
_BPW_BOUND: dict[str, float] = {"F32": 32.0, "F16": 16.0, "BF16": 16.0, "Q8_0": 8.5}
_BPW_OTHER = 8.5


def canonical_type(name: str) -> str:
    """``q4_k_m`` → ``Q4_K_M``; unknown names are refused with the list."""
    key = ALIASES.get(name.strip().upper(), name.strip().upper())
    if key not in QUANT_TYPES:
        raise QuantizeError(f"unknown quantization type {name!r}",
                            f"choose one of {', '.join(QUANT_TYPES)}")
    return key


def read_imatrix(path: Path) -> dict[str, np.ndarray]:
    """Tensor name → float32 importance vector from a llama-imatrix GGUF file."""
    fix = "pass an importance matrix written by llama-imatrix (GGUF format)"
    try:
        reader = gguf.GGUFReader(path)
    except (OSError, ValueError) as exc:
        raise QuantizeError(f"cannot read importance matrix {path}: {exc}", fix) from None
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        if t.tensor_type != gguf.GGMLQuantizationType.F32:
            raise QuantizeError(f"importance matrix {path}: tensor {t.name} is not F32", fix)
        data = np.asarray(t.data, dtype=np.float32)
        if t.name.endswith(".in_sum2"):
            sums[t.name.removesuffix(".in_sum2")] = data.reshape(-1, int(t.shape[0]))
        elif t.name.endswith(".counts"):
            counts[t.name.removesuffix(".counts")] = data.reshape(-1)
    if not sums:
        raise QuantizeError(f"importance matrix {path} has no <tensor>.in_sum2 entries", fix)
    out: dict[str, np.ndarray] = {}
    for name, s in sums.items():  # s: (n_experts, n_columns)
        c = counts.get(name)
        if c is None or len(c) != s.shape[0]:
            raise QuantizeError(f"importance matrix {path}: {name} has no matching counts", fix)
        # Mean of squared activations per column; experts never seen get a neutral 1.
        mean = np.where(c[:, None] > 0, s / np.maximum(c[:, None], 1), 1.0)
        if not np.all(np.isfinite(mean)):
            raise QuantizeError(f"importance matrix {path}: {name} has non-finite values", fix)
        out[name] = np.ascontiguousarray(mean.reshape(-1), dtype=np.float32)
    return out


@contextlib.contextmanager
def _captured_llama_log() -> Iterator[list[str]]:
    """Collect llama.cpp's log lines (routed to the ``codefill.llama_cpp`` logger)."""
    from lsp_server.engine.llama_loader import log as llama_log, route_llama_logs

    route_llama_logs()
    lines: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = _Collect(logging.DEBUG)
    old_level = llama_log.level
    llama_log.addHandler(handler)
    llama_log.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        llama_log.removeHandler(handler)
        llama_log.setLevel(old_level)


def _reason(lines: list[str]) -> str:
    """The most telling line of a failed llama.cpp run."""
    for key in ("error", "failed", "requires", "exception"):
        for line in reversed(lines):
            if key in line.lower():
                return line.strip()
    return lines[-1].strip() if lines else "no message"


@dataclass
class QuantizeResult:
    path: Path
    type_name: str
    seconds: float
    size_bytes: int
    source: Path
    requantized: bool = False
    imatrix: Path | None = None
    notes: list[str] = field(default_factory=list)


def quantize_gguf(source: Path, out: Path, type_name: str, *, threads: int = 0,
                  imatrix: Path | None = None, allow_requantize: bool = True) -> QuantizeResult:
    """Quantize the GGUF ``source`` to ``type_name`` at ``out`` (checked by the caller)."""
    import llama_cpp

    qtype = canonical_type(type_name)
    try:
        info = read_model_info(source)
    except ModelError as exc:
        raise QuantizeError(exc.problem, exc.fix) from None
    requantize = info.quantization not in ("F32", "F16", "BF16")
    if requantize and not allow_requantize:
        raise QuantizeError(f"{source} is already quantized ({info.quantization})",
                            "quantize from an F32/F16/BF16 GGUF or the checkpoint")
    if qtype in NEEDS_IMATRIX and imatrix is None:
        raise QuantizeError(f"{qtype} needs an importance matrix",
                            "pass --imatrix FILE (from llama-imatrix) or choose another type")
    weights = read_imatrix(imatrix) if imatrix is not None else {}
    check_free_space(out.parent, int(info.n_params * _BPW_BOUND.get(qtype, _BPW_OTHER) / 8),
                     f"{out.name} ({qtype})")

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[qtype]
    params.nthread = threads
    params.allow_requantize = requantize
    keep: list[Any] = []  # ctypes buffers must outlive the call
    if weights:
        arr = (llama_cpp.llama_model_imatrix_data * (len(weights) + 1))()
        for i, (name, vec) in enumerate(weights.items()):
            bname = name.encode()
            keep += [bname, vec]
            arr[i].name = bname
            arr[i].data = vec.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            arr[i].size = vec.size
        arr[len(weights)].name = None  # terminator
        keep.append(arr)
        params.imatrix = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))

    t0 = time.monotonic()
    with atomic_output(out) as tmp, _captured_llama_log() as lines:
        rc = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(),
                                            ctypes.byref(params))
        if rc != 0:
            raise QuantizeError(f"llama.cpp could not quantize {source} to {qtype}: "
                                f"{_reason(lines)}", "run with --debug to see llama.cpp's log")
    notes = [f"requantized from {info.quantization}: errors of both quantizations add up"] \
        if requantize else []
    return QuantizeResult(out, qtype, time.monotonic() - t0, out.stat().st_size, source,
                          requantize, imatrix, notes)
