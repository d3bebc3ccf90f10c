"""A careless client cannot stall the server: raw JSON-RPC clients (no client library) that
answer the server's own requests wrongly or not at all still get suggestions as soon as the
model is loaded, and loading never waits on them."""

from __future__ import annotations

import queue
import time
from pathlib import Path

import pytest

from bench.common import RawServer

pytestmark = pytest.mark.model

CODE = "def add(a, b):\n    return \n"


def _run(tmp_path: Path, answer: str) -> tuple[list[str], dict, list[str]]:
    """Start a server, open a file, ask for a completion once the model is ready.

    ``answer``: "null" replies null to workspace/configuration (the spec asks for an array)
    and to window/workDoneProgress/create; "silent" never replies to anything the server asks.
    Returns (event log in arrival order, the completion's result, server requests seen)."""
    (tmp_path / "m.py").write_text(CODE)
    root = tmp_path.as_uri()
    s = RawServer()
    events: list[str] = []
    asked: list[str] = []
    try:
        s.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "processId": None, "rootUri": root, "capabilities": {
                "workspace": {"configuration": True}, "window": {"workDoneProgress": True}}}})
        s.reply(1)
        s.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        s.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": f"{root}/m.py", "languageId": "python", "version": 1, "text": CODE}}})
        deadline = time.monotonic() + 120
        while not any(e.startswith("model ready") for e in events):
            assert time.monotonic() < deadline, events
            try:
                msg = s.replies.get(timeout=0.5)
            except queue.Empty:
                continue
            assert not msg.get("eof"), events
            method = msg.get("method")
            if method is not None and "id" in msg:
                asked.append(method)
                if answer == "null":
                    s.send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
            elif method == "window/logMessage":
                events.append(msg["params"]["message"])
        s.send({"jsonrpc": "2.0", "id": 2, "method": "codefill/complete", "params": {
            "textDocument": {"uri": f"{root}/m.py"}, "position": {"line": 1, "character": 11}}})
        result = s.reply(2, timeout=120)["result"]
        # What the server logs while answering, and a last look at anything still queued.
        while not s.replies.empty():
            msg = s.replies.get()
            if msg.get("method") == "window/logMessage":
                events.append(msg["params"]["message"])
        return events, result, asked
    finally:
        s.close()


def test_a_null_configuration_reply_is_logged_once_and_the_model_loads(tmp_path: Path) -> None:
    """pygls could not structure a null reply and dropped it: the settings pull never
    returned, and the model was never loaded for the life of the process."""
    events, result, asked = _run(tmp_path, "null")
    assert "workspace/configuration" in asked
    assert result is not None and result["text"], (result, events)
    failures = [e for e in events if "Invalid Params" in e]  # logged once, by the pull
    assert len(failures) == 1 and "workspace/configuration" in failures[0], events
    assert "using the settings we have" in failures[0]


def test_a_silent_client_does_not_hold_the_model_load_back(tmp_path: Path) -> None:
    """A client that answers neither workspace/configuration nor the progress request: the
    model loads at once with the settings we have; the pull gives up later on its own."""
    events, result, asked = _run(tmp_path, "silent")
    assert {"workspace/configuration", "window/workDoneProgress/create"} <= set(asked)
    assert result is not None and result["text"], (result, events)
    ready = next(i for i, e in enumerate(events) if e.startswith("model ready"))
    # The model was ready before the unanswered pull timed out (5 s): nothing waited on it.
    assert not any("workspace/configuration" in e for e in events[:ready]), events
