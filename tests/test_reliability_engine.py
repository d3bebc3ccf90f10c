"""The engine thread raising mid-generation, through the real server and the real model.

The server runs with the engine hook `Harness(engine_fault="N,K")` (bench/common/engine_hooks.py,
`install_engine_hooks`), which makes the decode raise after N generated tokens in the next K
generations, the way llama-cpp-python raises when `llama_decode` fails. The editor must get a clear message, the
server must stay up, and the next request must be served — from a clean KV cache: greedy
decoding of the same prompt then gives the same tokens the failed generation had streamed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.common import Harness
from tests.test_server import CODE, CURSOR, merged

pytestmark = pytest.mark.model

FAULT_AFTER = 4


def wait_for(cond, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_engine_raising_mid_generation_is_reported_and_the_server_recovers(
        tmp_path: Path) -> None:
    h = Harness(tmp_path, settings=merged({"completion": {"mode": "multi"},
                                           "prompt": {"max_tokens": 24}}),
                engine_fault=f"{FAULT_AFTER},2")
    h.start()
    try:
        uri = h.open(tmp_path / "fib.py", CODE)
        pos = {"line": CURSOR[0], "character": CURSOR[1]}
        # 1. Streaming request: tokens arrive, then the decode raises.
        reply = h.request("codefill/complete", {"textDocument": {"uri": uri}, "position": pos,
                                                "streamId": "s1"})
        assert reply["text"] == ""
        assert "engine error" in reply["reason"] and "llama_decode returned -1" in reply["reason"]
        streamed = [p["text"] for p in h.partials if p["streamId"] == "s1"]
        assert streamed and streamed[-1].strip(), "no token streamed before the fault"
        # The editor's log shows it at error level (window/logMessage).
        wait_for(lambda: any("generation failed" in m and "llama_decode" in m for m in h.logs))
        st = h.status()
        assert st["model"]["state"] == "ready"
        assert "llama_decode returned -1" in st["completion"]["last_empty_reason"]
        # 2. The second fault, on the editor's ordinary request: an empty answer, a reason.
        h.change(uri, (0, 0), (0, 0), "# v2\n")
        assert h.inline(uri, CURSOR[0] + 1, CURSOR[1]) is None
        assert "llama_decode returned -1" in h.status()["completion"]["last_empty_reason"]
        h.change(uri, (0, 0), (1, 0), "")  # back to the first text
        # 3. The hook is spent: the same request is served, from a clean cache.
        reply = h.request("codefill/complete", {"textDocument": {"uri": uri}, "position": pos})
        assert reply["text"], reply
        assert reply["text"].startswith(streamed[-1]), (reply["text"], streamed[-1])
        text = h.inline(uri, *CURSOR)
        assert text == reply["text"]  # the cache holds the recovered suggestion
        st = h.status()
        assert st["model"]["state"] == "ready"
        engine = st["model"].get("engine", {})
        print(f"\nstreamed before the fault: {streamed[-1]!r}; after recovery: {text!r}; "
              f"engine {engine}")
    finally:
        assert h.stop() == 0
