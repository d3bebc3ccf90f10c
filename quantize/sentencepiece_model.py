"""Read a SentencePiece ``tokenizer.model`` without the sentencepiece or protobuf packages.

The file is a serialized ``ModelProto``; the converter needs only the pieces (text, score,
type) and a few trainer/normalizer settings, so a small protobuf wire-format reader suffices and
keeps both packages out of the runtime dependencies. Field numbers are those of
sentencepiece_model.proto. The piece types use the same numbers as llama.cpp's token types.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .errors import QuantizeError

# Wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

# ModelProto fields.
_PIECES, _TRAINER_SPEC, _NORMALIZER_SPEC = 1, 2, 3
# SentencePiece (piece) fields.
_PIECE, _SCORE, _TYPE = 1, 2, 3
# TrainerSpec fields.
_MODEL_TYPE, _BYTE_FALLBACK, _UNK_ID, _BOS_ID, _EOS_ID, _PAD_ID = 3, 35, 40, 41, 42, 43
# NormalizerSpec fields.
_ADD_DUMMY_PREFIX, _REMOVE_EXTRA_WS = 3, 4

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


class _WireError(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _WireError("varint runs past the end")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _WireError("varint longer than 10 bytes")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field in one message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == _VARINT:
            v, pos = _varint(buf, pos)
            yield num, wt, v
        elif wt == _LEN:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise _WireError("field runs past the end")
            yield num, wt, buf[pos:pos + n]
            pos += n
        elif wt == _I32:
            if pos + 4 > len(buf):
                raise _WireError("field runs past the end")
            yield num, wt, buf[pos:pos + 4]
            pos += 4
        elif wt == _I64:
            if pos + 8 > len(buf):
                raise _WireError("field runs past the end")
            yield num, wt, buf[pos:pos + 8]
            pos += 8
        else:
            raise _WireError(f"unsupported wire type {wt}")


def _int32(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v  # negative int32 are 10-byte two's complement


@dataclass
class SentencePieceModel:
    pieces: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    types: list[int] = field(default_factory=list)
    model_type: str = "unigram"
    byte_fallback: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True


def read_sentencepiece(path: Path) -> SentencePieceModel:
    """Parse ``path``; a :class:`QuantizeError` if it is not a SentencePiece model."""
    fix = "use the tokenizer.model that was published with the checkpoint"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise QuantizeError(f"cannot read {path}: {exc.strerror or exc}", fix) from None
    m = SentencePieceModel()
    try:
        for num, wt, val in _fields(data):
            if num == _PIECES and wt == _LEN:
                assert isinstance(val, bytes)
                piece, score, ptype = None, 0.0, NORMAL
                for pn, pwt, pv in _fields(val):
                    if pn == _PIECE and pwt == _LEN:
                        piece = bytes(pv).decode("utf-8")  # type: ignore[arg-type]
                    elif pn == _SCORE and pwt == _I32:
                        (score,) = struct.unpack("<f", pv)  # type: ignore[arg-type]
                    elif pn == _TYPE and pwt == _VARINT:
                        ptype = int(pv)  # type: ignore[arg-type]
                if piece is None:
                    raise _WireError(f"piece {len(m.pieces)} has no text")
                m.pieces.append(piece)
                m.scores.append(float(score))
                m.types.append(ptype)
            elif num == _TRAINER_SPEC and wt == _LEN:
                for tn, twt, tv in _fields(val):  # type: ignore[arg-type]
                    if twt != _VARINT:
                        continue
                    assert isinstance(tv, int)
                    if tn == _MODEL_TYPE:
                        m.model_type = MODEL_TYPES.get(tv, f"type {tv}")
                    elif tn == _BYTE_FALLBACK:
                        m.byte_fallback = bool(tv)
                    elif tn == _UNK_ID:
                        m.unk_id = _int32(tv)
                    elif tn == _BOS_ID:
                        m.bos_id = _int32(tv)
                    elif tn == _EOS_ID:
                        m.eos_id = _int32(tv)
                    elif tn == _PAD_ID:
                        m.pad_id = _int32(tv)
            elif num == _NORMALIZER_SPEC and wt == _LEN:
                for nn, nwt, nv in _fields(val):  # type: ignore[arg-type]
                    if nwt == _VARINT and nn == _ADD_DUMMY_PREFIX:
                        m.add_dummy_prefix = bool(nv)
                    elif nwt == _VARINT and nn == _REMOVE_EXTRA_WS:
                        m.remove_extra_whitespaces = bool(nv)
    except (_WireError, UnicodeDecodeError, struct.error) as exc:
        raise QuantizeError(f"not a SentencePiece model: {path} ({exc})", fix) from None
    if not m.pieces:
        raise QuantizeError(f"not a SentencePiece model: {path} (no pieces)", fix)
    if any(t not in (NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE) for t in m.types):
        raise QuantizeError(f"not a SentencePiece model: {path} (unknown piece type)", fix)
    return m
