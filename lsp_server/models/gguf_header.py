"""A fast reader of a GGUF file's header: metadata and tensor index, no tensor data.

gguf-py's ``GGUFReader`` builds a numpy view per string, which takes ~22 s for the 262k-token
vocabulary of Gemma 3 — too slow for `codefill models` or server start. This reader walks the
same layout (GGUF v2/v3, little or big endian) with ``struct`` over an mmap, ~100× faster, and
uses gguf-py's constants for everything it names.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

_SCALARS: dict[int, tuple[str, str]] = {  # value type → (struct code, numpy dtype)
    GGUFValueType.UINT8: ("B", "u1"), GGUFValueType.INT8: ("b", "i1"),
    GGUFValueType.UINT16: ("H", "u2"), GGUFValueType.INT16: ("h", "i2"),
    GGUFValueType.UINT32: ("I", "u4"), GGUFValueType.INT32: ("i", "i4"),
    GGUFValueType.FLOAT32: ("f", "f4"), GGUFValueType.UINT64: ("Q", "u8"),
    GGUFValueType.INT64: ("q", "i8"), GGUFValueType.FLOAT64: ("d", "f8"),
    GGUFValueType.BOOL: ("?", "?"),
}


class GGUFFormatError(ValueError):
    """The bytes are not a well-formed GGUF header."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    type_name: str
    n_elements: int
    n_bytes: int
    offset: int
    """Absolute file offset of the tensor's data."""
    dims: tuple[int, ...] = ()
    """ggml order: dims[0] is the contiguous one (a matrix's in_features), dims[1] its rows."""


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorEntry]
    data_offset: int


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, order: str) -> None:
        self.buf = buf
        self.pos = 0
        self.order = order

    def take(self, code: str) -> Any:
        fmt = self.order + code
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GGUFFormatError(f"header ends early at byte {self.pos}")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("Q")
        end = self.pos + n
        if end > len(self.buf):
            raise GGUFFormatError(f"string of {n} bytes runs past the end of the file")
        raw = bytes(self.buf[self.pos:end])
        self.pos = end
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            sub = self.take("I")
            count = self.take("Q")
            if sub == GGUFValueType.STRING:
                return [self.string() for _ in range(count)]
            if sub in _SCALARS:
                dtype = np.dtype(_SCALARS[sub][1]).newbyteorder(self.order)
                end = self.pos + count * dtype.itemsize
                if end > len(self.buf):
                    raise GGUFFormatError(f"array of {count} values runs past the end of the file")
                arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).copy()
                self.pos = end
                return arr.tolist()
            return [self.value(sub) for _ in range(count)]
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype][0])
        raise GGUFFormatError(f"unknown metadata value type {vtype}")


def read_header(path: str | Path) -> GGUFHeader:
    """Parse metadata and the tensor index of the GGUF at ``path``."""
    with open(path, "rb") as fh:
        try:
            buf: mmap.mmap | bytes = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            buf = b""
    try:
        return _parse(buf)
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def _parse(buf: mmap.mmap | bytes) -> GGUFHeader:
    if buf[:4] != GGUF_MAGIC:
        raise GGUFFormatError("GGUF magic missing")
    if len(buf) < 8:
        raise GGUFFormatError("header ends early at byte 4")
    order = "<"
    (version,) = struct.unpack_from("<I", buf, 4)
    if version & 0xFFFF == 0:  # written on a machine of the other byte order
        order = ">"
        (version,) = struct.unpack_from(">I", buf, 4)
    if version not in (2, 3):
        raise GGUFFormatError(f"unsupported GGUF version {version}")
    cur = _Cursor(buf, order)
    cur.pos = 8
    n_tensors = cur.take("Q")
    n_kv = cur.take("Q")
    if n_kv > 1 << 20 or n_tensors > 1 << 24:
        raise GGUFFormatError(f"implausible counts ({n_kv} metadata keys, {n_tensors} tensors)")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        metadata[key] = cur.value(cur.take("I"))
    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.take("I")
        if n_dims > 8:
            raise GGUFFormatError(f"tensor {name!r} has {n_dims} dimensions")
        dims = [cur.take("Q") for _ in range(n_dims)]
        ttype = cur.take("I")
        offset = cur.take("Q")
        infos.append((name, dims, ttype, offset))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise GGUFFormatError(f"invalid alignment {alignment!r}")
    data_offset = -(-cur.pos // alignment) * alignment
    tensors = []
    for name, dims, ttype, offset in infos:
        try:
            qtype = GGMLQuantizationType(ttype)
        except ValueError:
            raise GGUFFormatError(f"tensor {name!r} has unknown type {ttype}") from None
        block, type_size = GGML_QUANT_SIZES[qtype]
        n = int(np.prod(dims, dtype=np.uint64)) if dims else 1
        tensors.append(TensorEntry(name, qtype.name, n, n * type_size // block,
                                   data_offset + offset, tuple(dims)))
    return GGUFHeader(version, metadata, tensors, data_offset)
