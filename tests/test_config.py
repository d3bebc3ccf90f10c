"""The typed config tree: validation replaces bad values by defaults, never raises."""

from __future__ import annotations

from lsp_server.config import REPO_DOC_HINT, Config, load_config, settings_markdown
from tests.conftest import REPO


def test_defaults() -> None:
    config, problems = load_config({})
    assert config == Config() and problems == []


def test_valid_values_are_taken() -> None:
    config, problems = load_config({"engine": {"threads": 4, "model": "/m.gguf"},
                                    "prompt": {"context_share": 0, "fim_order": "spm"}})
    assert problems == []
    assert config.engine.threads == 4 and config.engine.model == "/m.gguf"
    assert config.prompt.context_share == 0.0 and isinstance(config.prompt.context_share, float)
    assert config.prompt.fim_order == "spm"


def test_invalid_values_are_reported_and_replaced() -> None:
    config, problems = load_config({
        "engine": {"threads": "many", "context_size": 10, "gpu_layers": True, "bogus": 1},
        "prompt": {"fim_order": "mps", "max_tokens": 1e9},
        "extra": {}})
    assert config == Config()
    text = "\n".join(problems)
    assert "'engine.threads' must be int, got 'many'" in text
    assert "'engine.context_size' must be ≥ 256, got 10" in text
    assert "'engine.gpu_layers' must be a number or one of auto, got True" in text
    assert "unknown setting 'engine.bogus'" in text
    assert "'prompt.fim_order' must be one of auto, psm, spm, got 'mps'" in text
    assert "'prompt.max_tokens' must be int" in text
    assert "unknown setting 'extra'" in text
    assert len(problems) == 7


def test_non_mapping_input() -> None:
    config, problems = load_config(["not", "a", "table"])  # type: ignore[arg-type]
    assert config == Config() and "must be a table" in problems[0]
    config, problems = load_config({"engine": 3})
    assert config == Config() and "'engine' must be a table" in problems[0]


def test_docs_list_every_setting() -> None:
    assert (REPO / "docs" / "settings.md").read_text() == settings_markdown(), REPO_DOC_HINT
