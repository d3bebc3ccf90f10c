"""Hugging Face checkpoint → GGUF (F32, F16, BF16 or Q8_0), streamed and written atomically.

Everything that can be wrong with the input (config, tokenizer, tensor names, shapes, truncated
files, free disk space) is checked in :func:`plan_conversion` before the output file is created.
Writing then streams one block of rows at a time from the memory-mapped safetensors through the
conversion into the file, so peak memory is about one block (plus the OS page cache), not the
model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gguf
import numpy as np

from .errors import QuantizeError
from .hf_config import ArchSpec, HParams, read_config, write_hparams
from .outputs import atomic_output, check_free_space, check_output_path
from .safetensors_io import SafetensorsCheckpoint, TensorSlot
from .tensor_map import MappedTensor, expected_names, map_tensor
from .vocab import Vocab, read_vocab, write_vocab

Q = gguf.GGMLQuantizationType
FT = gguf.LlamaFileType

# Rows are converted in blocks of about this many elements (float32: 4× this in bytes).
BLOCK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class OutType:
    """A type the converter writes itself."""

    tensor_type: Q
    file_type: FT


DIRECT_TYPES: dict[str, OutType] = {
    "F32": OutType(Q.F32, FT.ALL_F32),
    "F16": OutType(Q.F16, FT.MOSTLY_F16),
    "BF16": OutType(Q.BF16, FT.MOSTLY_BF16),
    "Q8_0": OutType(Q.Q8_0, FT.MOSTLY_Q8_0),
}


def _encode(rows: np.ndarray, qtype: Q) -> np.ndarray:
    """float32 rows → bytes of ``qtype`` (uint8 array, one row per input row)."""
    out = gguf.quants.quantize(rows, qtype)
    return np.ascontiguousarray(out).view(np.uint8).reshape(rows.shape[0], -1)


@dataclass(frozen=True)
class TensorPlan:
    mapped: MappedTensor
    slot: TensorSlot
    qtype: Q

    @property
    def nbytes(self) -> int:
        return int(np.prod(gguf.quant_shape_to_byte_shape(self.mapped.shape, self.qtype)))


@dataclass
class ConversionPlan:
    source: Path
    spec: ArchSpec
    hp: HParams
    vocab: Vocab
    checkpoint: SafetensorsCheckpoint
    out_type: str
    tensors: list[TensorPlan] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Checkpoint tensors deliberately not written (a tied lm_head)."""

    @property
    def data_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def n_params(self) -> int:
        return sum(t.slot.n_elements for t in self.tensors)


def _tensor_type(m: MappedTensor, out: OutType) -> Q:
    if len(m.shape) == 1:
        return Q.F32  # norms stay F32, as llama.cpp expects and its quantizer leaves them
    block, _ = gguf.GGML_QUANT_SIZES[out.tensor_type]
    if m.shape[-1] % block:
        return Q.F16  # rows that do not split into Q8_0 blocks: llama.cpp's fallback too
    return out.tensor_type


def _same_tensor(ck: SafetensorsCheckpoint, a: TensorSlot, b: TensorSlot) -> bool:
    if a.shape != b.shape:
        return False
    step = max(1, BLOCK_ELEMENTS // max(1, a.n_elements // a.shape[0]))
    return all(np.array_equal(ck.rows(a, i, min(i + step, a.shape[0])),
                              ck.rows(b, i, min(i + step, a.shape[0])))
               for i in range(0, a.shape[0], step))


def plan_conversion(source: Path, out_type: str) -> ConversionPlan:
    """Read and validate a checkpoint directory; raise :class:`QuantizeError` on bad input."""
    if out_type not in DIRECT_TYPES:
        raise QuantizeError(f"the converter writes {', '.join(DIRECT_TYPES)}, not {out_type}",
                            "quantize other types from one of these with llama.cpp")
    if not source.is_dir():
        raise QuantizeError(f"not a checkpoint directory or GGUF file: {source}",
                            "pass a Hugging Face checkpoint directory or a .gguf file")
    spec, hp = read_config(source)
    vocab = read_vocab(source, hp)
    ck = SafetensorsCheckpoint(source)
    try:
        plan = ConversionPlan(source, spec, hp, vocab, ck, out_type)
        out = DIRECT_TYPES[out_type]
        mapped = {name: map_tensor(spec, hp, name) for name in ck.tensors}
        missing = [n for n in expected_names(spec, hp) if n not in mapped]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise QuantizeError(f"checkpoint lacks tensor(s) {', '.join(missing[:3])}{more}",
                                "the safetensors files are incomplete: copy all shards")
        for name, m in mapped.items():
            slot = ck.tensors[name]
            if slot.shape != m.shape:
                raise QuantizeError(f"shape mismatch: tensor {name!r} is {list(slot.shape)}, "
                                    f"config.json implies {list(m.shape)}",
                                    "the weights and config.json do not belong together")
        head = mapped.pop("lm_head.weight", None)
        if head is not None:
            tied = hp.tie_word_embeddings or _same_tensor(
                ck, ck.tensors[head.hf_name], ck.tensors["model.embed_tokens.weight"])
            if tied:
                plan.skipped.append(head.hf_name)  # llama.cpp reuses token_embd
            elif spec.supports_untied_output:
                mapped[head.hf_name] = head
            else:
                raise QuantizeError(f"lm_head.weight differs from the embedding, but llama.cpp's "
                                    f"{spec.gguf_name} graph always ties the output head",
                                    "export the model with tied embeddings")
        elif not hp.tie_word_embeddings:
            raise QuantizeError("config.json sets tie_word_embeddings = false but the checkpoint "
                                "has no lm_head.weight", "copy all shards of the checkpoint")
        # GGUF order: embeddings, then layer by layer, then the output norm/head (llama.cpp's
        # converter order; readers do not depend on it but diffs of two files stay readable).
        order = {n: i for i, n in enumerate(expected_names(spec, hp))}
        for name in sorted(mapped, key=lambda n: (n == "model.norm.weight" or n ==
                                                  "lm_head.weight", order.get(n, len(order)))):
            m = mapped[name]
            plan.tensors.append(TensorPlan(m, ck.tensors[name], _tensor_type(m, out)))
        return plan
    except BaseException:
        ck.close()
        raise


Progress = Callable[[int, int, str], None]
"""Called with (bytes written so far, total bytes, tensor name)."""


def _write_metadata(w: gguf.GGUFWriter, plan: ConversionPlan) -> None:
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(plan.hp.name)
    w.add_file_type(DIRECT_TYPES[plan.out_type].file_type)
    if plan.out_type == "Q8_0":
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    write_hparams(w, plan.spec, plan.hp)
    write_vocab(w, plan.vocab)


def write_gguf(plan: ConversionPlan, path: Path, progress: Progress | None = None) -> None:
    """Stream the planned tensors into ``path`` (a fresh file)."""
    w = gguf.GGUFWriter(path, plan.spec.gguf_name)
    _write_metadata(w, plan)
    for t in plan.tensors:
        byte_shape = gguf.quant_shape_to_byte_shape(t.mapped.shape, t.qtype)
        w.add_tensor_info(t.mapped.gguf_name, byte_shape, np.dtype(np.uint8), t.nbytes,
                          raw_dtype=t.qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None
    fout = w.fout[0]
    w.write_padding(fout, fout.tell())
    done, total = 0, plan.data_bytes
    ck = plan.checkpoint
    for t in plan.tensors:
        slot, shape = t.slot, t.mapped.shape
        if len(shape) == 1:
            data = ck.array(slot) + np.float32(t.mapped.norm_shift)  # (n,)
            fout.write(data.astype(np.float32).tobytes())
        else:
            rows, cols = shape
            step = max(1, BLOCK_ELEMENTS // cols)
            for i in range(0, rows, step):
                block = ck.rows(slot, i, min(i + step, rows))  # (step, cols) float32
                if t.mapped.norm_shift:
                    block += np.float32(t.mapped.norm_shift)
                fout.write(_encode(block, t.qtype).tobytes())
                if progress:
                    progress(done + (min(i + step, rows) * t.nbytes) // rows, total,
                             t.mapped.gguf_name)
        w.write_padding(fout, t.nbytes)
        done += t.nbytes
        if progress:
            progress(done, total, t.mapped.gguf_name)
    w.close()


@dataclass
class ConversionResult:
    path: Path
    out_type: str
    seconds: float
    n_params: int
    n_tensors: int
    size_bytes: int
    skipped: list[str]


def convert_checkpoint(source: Path, out: Path, out_type: str = "F16", *, force: bool = False,
                       progress: Progress | None = None) -> ConversionResult:
    """Convert the checkpoint directory ``source`` to ``out``; nothing is left at ``out`` on
    failure."""
    t0 = time.monotonic()
    out = check_output_path(out, force=force)
    plan = plan_conversion(source, out_type)
    try:
        check_free_space(out.parent, plan.data_bytes, f"{out.name} ({out_type})")
        with atomic_output(out) as tmp:
            write_gguf(plan, tmp, progress)
    finally:
        plan.checkpoint.close()
    return ConversionResult(out, out_type, time.monotonic() - t0, plan.n_params,
                            len(plan.tensors), out.stat().st_size, plan.skipped)
