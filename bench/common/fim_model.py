"""A copy of the embedded model with FIM token ids (:func:`fim_test_model`), so that
llama-server's /infill accepts it."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from lsp_server.models.paths import cache_dir
from lsp_server.models.resolve import resolve_model

#: FIM roles → reserved ``<unusedN>`` control tokens of the Gemma 3 vocabulary (ids 6…11).
FIM_TOKENS = {
    "fim_pre": "<unused0>",
    "fim_suf": "<unused1>",
    "fim_mid": "<unused2>",
    "fim_pad": "<unused3>",
    "fim_rep": "<unused4>",
    "fim_sep": "<unused5>",
}


def fim_test_model(directory: Path | None = None, source: Path | None = None) -> Path:
    """The embedded Gemma 3 270M with FIM token ids in its metadata, for llama-server's /infill.

    Gemma 3 was not FIM-trained and its vocabulary names no FIM tokens; llama-server's /infill
    refuses such a model with HTTP 501 ("Infill is not supported by this model: prefix token is
    missing. …"; tests/remote_servers.py). This writes a *copy* of the GGUF (the original is
    never touched) whose ``tokenizer.ggml.fim_{pre,suf,mid,pad,rep,sep}_token_id`` name the
    reserved control tokens ``<unused0>`` … ``<unused5>`` (:data:`FIM_TOKENS`), with gguf-py:
    every key and tensor copied by GGUFReader → GGUFWriter, plus the six ids. llama.cpp then
    reports the model as FIM-capable (and makes fim_pad/rep/sep end-of-generation tokens), and
    codefill detects its template as ``gguf-metadata``. The model still answers plausibly — it
    is a real model, it just continues the prefix — which is all the protocol tests need; the
    FIM sentinels mean nothing to it. Writing the copy takes about 30 s of CPU (GGUFReader
    decodes the 262k-token vocabulary).

    The copy lives in ``directory`` (default: ``$XDG_CACHE_HOME/codefill/test-models``) and is
    written once per source file: a stamp records the source's path, size and mtime.
    """
    import gguf

    src = Path(source) if source else resolve_model("")
    directory = Path(directory) if directory else cache_dir() / "test-models"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / (src.stem + "-fim-tokens.gguf")
    stamp = target.with_name(target.name + ".src")
    st = src.stat()
    key = f"{src.resolve()}\n{st.st_size}\n{st.st_mtime_ns}\n"

    def fresh() -> bool:
        return target.is_file() and stamp.is_file() and stamp.read_text() == key

    if fresh():
        return target
    with open(directory / ".fim-tokens.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be writing it
        if fresh():
            return target
        reader = gguf.GGUFReader(src)
        tokens = reader.fields["tokenizer.ggml.tokens"].contents()
        ids = {}
        for role, text in FIM_TOKENS.items():
            try:
                ids[role] = tokens.index(text)
            except ValueError:
                raise ValueError(f"{src} has no {text} token: not a Gemma 3 vocabulary") from None
        arch = reader.fields["general.architecture"].contents()
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            writer = gguf.GGUFWriter(tmp, arch, endianess=reader.endianess)
            for field in reader.fields.values():
                # GGUFWriter writes the architecture and the GGUF.* header fields itself.
                if field.name == "general.architecture" or field.name.startswith("GGUF."):
                    continue
                vtype = field.types[0]
                sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
                writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
            for role, token_id in ids.items():
                writer.add_uint32(f"tokenizer.ggml.{role}_token_id", token_id)
            for t in reader.tensors:
                writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes,
                                       t.tensor_type)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for t in reader.tensors:
                writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
            writer.close()
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        stamp.write_text(key)
    return target
