"""Shared fixtures (the real embedded model, assembled once per test run), and the CI rule on
skips: with ``CI`` set (``.ci/run`` sets ``CI=true``), a skip whose reason is not in
:data:`ACCEPTED_SKIPS` fails the run, so a missing component (llama-server, npm, code-server,
Chromium, Neovim, torch, ...) cannot pass unnoticed. Outside CI skips stay skips; ``-rs`` (in
pyproject.toml's addopts) lists them with their reasons either way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from lsp_server.config import Config
from lsp_server.completion.session import ModelSession
from lsp_server.models import embedded_model_path

REPO = Path(__file__).resolve().parent.parent

ACCEPTED_SKIPS = frozenset({
    # test_cli.py and test_gguf_info.py: a mode-000 file cannot be made unreadable for root.
    "root reads files regardless of permissions",
})
"""Skip reasons that CI accepts (exact text, as given to ``pytest.skip``)."""


def in_ci() -> bool:
    """``CI`` is set to anything but empty, 0, false or no (CI services set ``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


_bad_skips: list[tuple[str, str]] = []


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _note_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and in_ci():
        reason = _skip_reason(report)
        if reason not in ACCEPTED_SKIPS:
            _bad_skips.append((report.nodeid, reason))


def pytest_sessionstart(session: pytest.Session) -> None:
    _bad_skips.clear()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _note_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _note_skip(report)  # a module-level skip (importorskip, allow_module_level)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _bad_skips and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _bad_skips:
        return
    tr = terminalreporter
    tr.section("CI: skips that fail the run", sep="=", red=True, bold=True)
    tr.line(f"CI is set and {len(_bad_skips)} skip(s) have a reason that is not accepted "
            "(tests/conftest.py ACCEPTED_SKIPS): install what is missing, or fix the test")
    for nodeid, reason in _bad_skips:
        tr.line(f"SKIP NOT ACCEPTED {nodeid}: {reason}", red=True)


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


@pytest.fixture
def patient(session: ModelSession) -> Iterator[ModelSession]:
    """The shared session with a time budget a loaded machine cannot exhaust here."""
    engine = session.config.engine
    before, engine.time_budget_ms = engine.time_budget_ms, 120000
    yield session
    engine.time_budget_ms = before
