"""Template detection from GGUF files written by the tests (vocabulary only, no weights)."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from lsp_server.errors import TemplateError
from lsp_server.models import read_model_info
from lsp_server.prompt import choose_template, detect_template
from tests.gguf_factory import FAMILY_SPECIALS, write_family_gguf, write_vocab_gguf

EXPECTED_FAMILY = {
    "codegemma": "codegemma",
    "qwen2.5-coder": "qwen2.5-coder",
    "starcoder": "starcoder",
    "starcoder1": "starcoder",
    "deepseek-coder": "deepseek-coder",
    "codellama": "codellama",
    "codestral": "codestral",
    "plain": "plain",
}


@pytest.mark.parametrize("family", list(FAMILY_SPECIALS))
def test_family_detected_from_vocabulary(tmp_path: Path, family: str) -> None:
    info = read_model_info(write_family_gguf(tmp_path, family))
    det = detect_template(info)
    assert det.template.name == EXPECTED_FAMILY[family]
    assert det.template.is_fim == (family != "plain")


def test_detection_ignores_the_file_name(tmp_path: Path) -> None:
    path = write_vocab_gguf(tmp_path / "codegemma-2b.Q4_K_M.gguf", FAMILY_SPECIALS["plain"])
    assert detect_template(read_model_info(path)).template.name == "plain"


def test_metadata_fim_ids_give_a_template_when_the_vocabulary_is_unknown(tmp_path: Path) -> None:
    specials = ["<s>", "</s>", "<|x_pre|>", "<|x_suf|>", "<|x_mid|>", "<|x_sep|>"]
    path = write_vocab_gguf(tmp_path / "m.gguf", specials, metadata_ids={
        gguf.Keys.Tokenizer.FIM_PRE_ID: 2, gguf.Keys.Tokenizer.FIM_SUF_ID: 3,
        gguf.Keys.Tokenizer.FIM_MID_ID: 4, gguf.Keys.Tokenizer.FIM_SEP_ID: 5})
    det = detect_template(read_model_info(path))
    assert det.template.name == "gguf-metadata"
    assert det.template.sentinels["pre"] == ("<|x_pre|>",)
    assert det.template.sentinels["sep"] == ("<|x_sep|>",)
    assert "<|x_sep|>" in det.template.stops


def test_metadata_agreement_is_reported(tmp_path: Path) -> None:
    specials = FAMILY_SPECIALS["codegemma"]
    path = write_vocab_gguf(tmp_path / "m.gguf", specials, metadata_ids={
        gguf.Keys.Tokenizer.FIM_PRE_ID: specials.index("<|fim_prefix|>"),
        gguf.Keys.Tokenizer.FIM_SUF_ID: specials.index("<|fim_suffix|>"),
        gguf.Keys.Tokenizer.FIM_MID_ID: specials.index("<|fim_middle|>")})
    det = detect_template(read_model_info(path))
    assert det.template.name == "codegemma" and "agree" in det.reason


def test_override_must_fit_the_vocabulary(tmp_path: Path) -> None:
    info = read_model_info(write_family_gguf(tmp_path, "starcoder"))
    assert choose_template(info, "starcoder").template.name == "starcoder"
    assert choose_template(info, "plain").template.name == "plain"
    with pytest.raises(TemplateError, match="<\\|fim_prefix\\|>"):
        choose_template(info, "codegemma")
    with pytest.raises(TemplateError, match="unknown FIM template 'codegemmaa'"):
        choose_template(info, "codegemmaa")


@pytest.mark.model
def test_embedded_gemma3_is_plain(embedded_model: Path) -> None:
    info = read_model_info(embedded_model)
    assert info.architecture == "gemma3"
    det = detect_template(info)
    assert det.template.name == "plain", det.reason
