"""The CI soak: bench/soak.py shortened (the full one is `python bench/soak.py`, 10k requests).

Typing, cancels, didChange and configuration changes across four documents (one CRLF with
non-BMP text); no stale suggestion may be returned and the server must stay up.
"""

from __future__ import annotations

import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.model
sys.path.insert(0, str(REPO / "bench"))

import soak  # noqa: E402


def test_short_soak() -> None:
    figures = soak.run(24, seed=1, timeout_s=120)
    print("\nsoak:", figures)
    assert figures["alive"]
    assert figures["stale"] == 0
    assert figures["errors"] == 0
    assert figures["requests"] == 24
    assert figures["served"] + figures["empty"] + figures["cancelled"] == 24
    assert figures["served"] >= 1  # suggestions were actually returned (the check is not vacuous)
    assert figures["server_counters"]["requests"] == 24
