"""Reading GGUF metadata, and every bad model file."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from lsp_server.errors import ModelError
from lsp_server.models import read_model_info
from tests.gguf_factory import FAMILY_SPECIALS, write_family_gguf, write_vocab_gguf


def test_describes_a_gguf(tmp_path: Path) -> None:
    info = read_model_info(write_family_gguf(tmp_path, "codegemma", context_length=8192,
                                             eos="<eos>"))
    assert info.architecture == "gemma"
    assert info.name == "test-model"
    assert info.context_length == 8192
    assert info.quantization == "F32"
    assert info.n_params == len(info.tokens) * 4
    assert info.token_id("<|fim_middle|>") == FAMILY_SPECIALS["codegemma"].index("<|fim_middle|>")
    assert info.special_ids["eos"] == 1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        read_model_info(tmp_path / "nope.gguf")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is a directory"):
        read_model_info(tmp_path)


def test_not_gguf(tmp_path: Path) -> None:
    p = tmp_path / "model.gguf"
    p.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    with pytest.raises(ModelError, match="not a GGUF model file"):
        read_model_info(p)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "model.gguf"
    p.write_bytes(b"")
    with pytest.raises(ModelError, match="not a GGUF"):
        read_model_info(p)


@pytest.mark.parametrize("keep", [0.02, 0.3, 0.9])
def test_truncated(tmp_path: Path, keep: float) -> None:
    full = write_family_gguf(tmp_path, "starcoder").read_bytes()
    p = tmp_path / "cut.gguf"
    p.write_bytes(full[: max(8, int(len(full) * keep))])
    with pytest.raises(ModelError, match="truncated|corrupted"):
        read_model_info(p)


def test_unknown_architecture(tmp_path: Path) -> None:
    p = write_vocab_gguf(tmp_path / "m.gguf", ["<s>"], arch="frobnicator")
    with pytest.raises(ModelError, match="unknown model architecture 'frobnicator'"):
        read_model_info(p)


def test_unreadable(tmp_path: Path) -> None:
    import os
    if os.geteuid() == 0:
        pytest.skip("root reads files regardless of permissions")
    p = write_family_gguf(tmp_path, "plain")
    p.chmod(0)
    with pytest.raises(ModelError, match="cannot read"):
        read_model_info(p)


def test_quantization_inferred_without_file_type(tmp_path: Path) -> None:
    p = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(p, "llama")
    w.add_architecture()
    import numpy as np
    w.add_tensor("a", np.zeros((8, 8), dtype=np.float16))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    assert read_model_info(p).quantization == "F16"
