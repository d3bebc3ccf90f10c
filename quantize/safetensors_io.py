"""Memory-mapped reading of (sharded) safetensors checkpoints, one row block at a time.

The format is an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
shape and byte range, then the raw data. Reading it directly over an mmap (instead of through a
framework loader) keeps a 2B checkpoint out of RAM: only the rows being converted are
materialised, and BF16 — which numpy has no dtype for — is widened to float32 by bit shifting.
Every inconsistency (truncated file, byte range that does not match the shape, overlapping
ranges, a shard the index names but that is missing) is a :class:`QuantizeError` naming the file.
"""

from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import QuantizeError

INDEX_NAME = "model.safetensors.index.json"
MAX_HEADER_BYTES = 100 << 20  # the format's own limit; a larger value means a corrupt file


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    # bf16 is the top half of an IEEE float32: shift the bits into place.
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


@dataclass(frozen=True)
class _DType:
    itemsize: int
    to_f32: Callable[[np.ndarray], np.ndarray]
    """Raw bytes (uint8 array) → float32 array (same element count)."""


DTYPES: dict[str, _DType] = {
    "F32": _DType(4, lambda b: b.view("<f4").astype(np.float32, copy=True)),
    "F16": _DType(2, lambda b: b.view("<f2").astype(np.float32)),
    "BF16": _DType(2, _bf16_to_f32),
    "F64": _DType(8, lambda b: b.view("<f8").astype(np.float32)),
}


@dataclass(frozen=True)
class TensorSlot:
    """Where one tensor's bytes live."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    start: int
    """Absolute byte offset of the data in ``file``."""
    nbytes: int

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


def _read_header(path: Path) -> tuple[dict[str, dict], int, int]:
    """(tensor entries, data start offset, file size) of one safetensors file."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise QuantizeError(f"truncated safetensors file: {path} ({size} bytes)",
                                "download or export the checkpoint again")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise QuantizeError(f"truncated or corrupt safetensors file: {path} (header of {n} "
                                f"bytes, file of {size})", "download or export the checkpoint again")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QuantizeError(f"corrupt safetensors header in {path}: {exc}",
                            "download or export the checkpoint again") from None
    if not isinstance(header, dict):
        raise QuantizeError(f"corrupt safetensors header in {path}: not a JSON object",
                            "download or export the checkpoint again")
    header.pop("__metadata__", None)
    return header, 8 + n, size


def _slots_of(path: Path) -> dict[str, TensorSlot]:
    header, data_start, size = _read_header(path)
    fix = "download or export the checkpoint again"
    slots: dict[str, TensorSlot] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        try:
            dtype = str(entry["dtype"])
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise QuantizeError(f"corrupt safetensors entry {name!r} in {path}", fix) from None
        if dtype not in DTYPES:
            raise QuantizeError(
                f"tensor {name!r} in {path} has dtype {dtype}, which cannot be converted",
                f"export the checkpoint as one of {', '.join(DTYPES)}")
        n_el = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if end - begin != n_el * DTYPES[dtype].itemsize or begin < 0:
            raise QuantizeError(f"tensor {name!r} in {path}: byte range {begin}..{end} does not "
                                f"hold shape {list(shape)} of {dtype}", fix)
        if data_start + end > size:
            raise QuantizeError(f"truncated safetensors file: {path} ends at byte {size}, tensor "
                                f"{name!r} needs bytes up to {data_start + end}", fix)
        spans.append((begin, end, name))
        slots[name] = TensorSlot(name, dtype, shape, path, data_start + begin, end - begin)
    spans.sort()
    for (_, end_a, a), (begin_b, _, b) in zip(spans, spans[1:]):
        if begin_b < end_a:
            raise QuantizeError(f"corrupt safetensors file {path}: tensors {a!r} and {b!r} "
                                f"overlap", fix)
    return slots


class SafetensorsCheckpoint:
    """All tensors of a checkpoint directory, memory-mapped; use as a context manager."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = self._shard_files(directory)
        self.tensors: dict[str, TensorSlot] = {}
        for f in self.files:
            for name, slot in _slots_of(f).items():
                if name in self.tensors:
                    raise QuantizeError(f"tensor {name!r} appears in both {self.tensors[name].file.name}"
                                        f" and {f.name}", "remove the duplicate shard")
                self.tensors[name] = slot
        self._check_index(directory)
        self._maps: dict[Path, mmap.mmap] = {}

    @staticmethod
    def _shard_files(directory: Path) -> list[Path]:
        index = directory / INDEX_NAME
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                names = sorted(set(str(v) for v in weight_map.values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise QuantizeError(f"unreadable {index}: {exc}",
                                    "download or export the checkpoint again") from None
            missing = [n for n in names if not (directory / n).is_file()]
            if missing:
                raise QuantizeError(f"{index.name} names shards that are missing: "
                                    f"{', '.join(missing)}", "download the missing shards")
            return [directory / n for n in names]
        files = sorted(directory.glob("*.safetensors"))
        if not files:
            raise QuantizeError(f"no *.safetensors weights in {directory}",
                                "export the checkpoint in the Hugging Face safetensors layout")
        return files

    def _check_index(self, directory: Path) -> None:
        index = directory / INDEX_NAME
        if not index.is_file():
            return
        weight_map: dict[str, str] = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        for name, file in weight_map.items():
            slot = self.tensors.get(name)
            if slot is None or slot.file.name != file:
                raise QuantizeError(f"{INDEX_NAME} places tensor {name!r} in {file}, which does "
                                    "not contain it", "download or export the checkpoint again")

    def _map(self, path: Path) -> mmap.mmap:
        m = self._maps.get(path)
        if m is None:
            with path.open("rb") as fh:
                m = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            self._maps[path] = m
        return m

    def raw_rows(self, slot: TensorSlot, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (along the first axis) as raw uint8, zero-copy over the mmap."""
        row_bytes = slot.nbytes // slot.shape[0] if slot.shape and slot.shape[0] else slot.nbytes
        m = self._map(slot.file)
        return np.frombuffer(m, dtype=np.uint8, count=(stop - start) * row_bytes,
                             offset=slot.start + start * row_bytes)

    def rows(self, slot: TensorSlot, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as float32 (a copy), shape ``(stop - start, *slot.shape[1:])``."""
        raw = self.raw_rows(slot, start, stop)
        out = DTYPES[slot.dtype].to_f32(raw)
        del raw
        self._release(slot, start, stop)
        return out.reshape((stop - start, *slot.shape[1:]))

    def _release(self, slot: TensorSlot, start: int, stop: int) -> None:
        """Drop the mapped pages of rows already copied out of the process's resident set.

        Pages read through an mmap count toward RSS until unmapped; without this, converting a
        5 GB checkpoint would show 5 GB resident although none of it is needed any more. The
        mapping is read-only and file-backed, so a later access simply reads the file again.
        """
        advise = getattr(mmap, "MADV_DONTNEED", None)
        if advise is None:
            return
        row_bytes = slot.nbytes // slot.shape[0] if slot.shape and slot.shape[0] else slot.nbytes
        begin = slot.start + start * row_bytes
        end = slot.start + stop * row_bytes
        page = mmap.PAGESIZE
        begin = begin // page * page
        if end - begin >= page:
            self._map(slot.file).madvise(advise, begin, (end - begin) // page * page)

    def array(self, slot: TensorSlot) -> np.ndarray:
        """The whole tensor as float32 (for 1-D and small tensors)."""
        if not slot.shape:
            return DTYPES[slot.dtype].to_f32(self.raw_rows(slot, 0, 1)).reshape(())
        return self.rows(slot, 0, slot.shape[0])

    def close(self) -> None:
        for m in self._maps.values():
            try:
                m.close()
            except BufferError:  # a numpy view still references it; the GC closes it later
                pass
        self._maps.clear()

    def __enter__(self) -> "SafetensorsCheckpoint":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
