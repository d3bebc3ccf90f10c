"""Where the repository is: :data:`REPO`, its root (the benchmarks and tests start servers
there and put it on the servers' ``PYTHONPATH``)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
