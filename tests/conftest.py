"""Shared fixtures: the real embedded model, assembled once per test run."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from lsp_server.config import Config
from lsp_server.completion.session import ModelSession
from lsp_server.models import embedded_model_path

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    return embedded_model_path()


@pytest.fixture(scope="session")
def session(embedded_model: Path) -> Iterator[ModelSession]:
    """One loaded embedded model for the tests that need the real engine."""
    config = Config()
    config.engine.model = str(embedded_model)
    config.engine.context_size = 2048
    with ModelSession(config) as s:
        s.engine.wait_ready()
        yield s
