"""The language server end to end: a real pygls client over stdio, the real model."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from lsprotocol import types

from bench.common import NEOVIM_CAPABILITIES, Harness, RawServer
from tests.conftest import REPO

pytestmark = pytest.mark.model

CODE = "def fibonacci(n):\n    if n < 2:\n        return n\n    return \n"
CURSOR = (3, 11)  # after "    return "


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("ws")
    harness = Harness(root, settings=merged({}))
    result = harness.start()
    caps = result.capabilities
    assert caps.inline_completion_provider is not None
    assert caps.completion_provider is not None
    sync = caps.text_document_sync
    assert getattr(sync, "change", sync) == types.TextDocumentSyncKind.Incremental
    yield harness
    assert harness.stop() == 0


def test_model_loads_with_progress_and_status(h: Harness) -> None:
    st = h.status()
    assert st["model"]["state"] == "ready"
    assert st["model"]["template"] == "plain" and st["model"]["architecture"] == "gemma3"
    kinds = [p.value.get("kind") if isinstance(p.value, dict) else getattr(p.value, "kind", None)
             for p in h.progress]
    assert "begin" in kinds and "end" in kinds
    assert h.config_requests >= 1  # settings pulled with workspace/configuration


def test_inline_completion(h: Harness) -> None:
    uri = h.open(h.root / "fib.py", CODE)
    text = h.inline(uri, *CURSOR)
    assert text and "\n" not in text.strip("\n")  # end of a statement line: one line
    calls = h.counters()["model_calls"]
    again = h.inline(uri, *CURSOR)
    assert again == text  # served from the cache (or the generation still running)
    c = h.counters()
    assert c["model_calls"] == calls
    assert c["cache_hits"] + c["in_flight_adopted"] >= 1


def test_notifications_leave_no_handler_behind(h: Harness) -> None:
    """pygls 2.1 kept the future of every didOpen/didChange forever (the 10k soak's RSS growth);
    the server's protocol drops it once the handler is done."""
    uri = h.open(h.root / "churn.py", "x = 1\n")
    for i in range(300):
        h.change(uri, (1, 0), (1, 0), "y" if i % 2 == 0 else "\n")
    st = h.status()  # notifications are handled in order before this request
    assert st["protocol"]["pending_handlers"] < 10, st["protocol"]


def test_completion_fallback_item(h: Harness) -> None:
    uri = h.open(h.root / "fallback.py", CODE)
    assert h.client is not None
    result = h.run(_completion(h, uri))
    assert isinstance(result, types.CompletionList) and result.is_incomplete
    item = result.items[0]
    assert item.detail == "codefill" and item.sort_text.startswith("~") and not item.preselect
    assert item.text_edit.new_text


def test_typing_through_needs_no_model_call(h: Harness) -> None:
    uri = h.open(h.root / "through.py", "import os\n\ndef list_files(path):\n    return os.\n")
    text = h.inline(uri, 3, 14)
    assert text and len(text) >= 3
    before = h.counters()
    line = "    return os."
    for i, ch in enumerate(text[:3]):  # the user types what the ghost text shows
        h.change(uri, (3, len(line) + i), (3, len(line) + i), ch)
        rest = h.inline(uri, 3, len(line) + i + 1)
        assert rest == text[i + 1:] or (rest and text[i + 1:].startswith(rest))
    after = h.counters()
    assert after["model_calls"] == before["model_calls"]
    assert after["typing_through"] - before["typing_through"] == 3


def test_streaming_request(h: Harness) -> None:
    uri = h.open(h.root / "stream.py", "class Stack:\n    def __init__(self):\n        ")
    h.partials.clear()
    result = h.request("codefill/complete", {"textDocument": {"uri": uri},
                                             "position": {"line": 2, "character": 8},
                                             "streamId": "s1"})
    assert result["source"] == "model"
    texts = [p["text"] for p in h.partials if p["streamId"] == "s1"]
    assert texts, "partial notifications were sent"
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:])), texts  # it only grows
    assert result["text"].startswith(texts[-1].rstrip()) or texts[-1].startswith(result["text"])


def test_cancel_request_then_next_is_served(h: Harness) -> None:
    h.run(_set(h, {"prompt": {"max_tokens": 300}, "completion": {"mode": "multi",
                                                                 "debounce_min_ms": 0}}))
    _ready(h)  # longer suggestions than the candidates' cells were set aside for: a reload
    uri = h.open(h.root / "cancel.py", "# the first hundred primes\nPRIMES = [\n    2, 3, 5,")
    assert h.client is not None
    before = h.status()

    async def scenario() -> Exception | None:
        h.partials.clear()
        fut = h.client.protocol.send_request_async("codefill/complete", {
            "textDocument": {"uri": uri}, "position": {"line": 2, "character": 12},
            "streamId": "c1"}, msg_id="to-cancel")
        deadline = time.monotonic() + 120
        while not h.partials:  # generation is running
            assert time.monotonic() < deadline, "no partial text arrived"
            await asyncio.sleep(0.02)
        h.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="to-cancel"))
        try:
            await asyncio.wait_for(fut, 30)
        except Exception as exc:
            return exc
        return None

    err = h.run(scenario(), timeout=300)
    assert err is not None and "cancel" in str(err).lower(), err
    # After the grace period in which a keystroke could adopt it, the generation stops at the
    # next token boundary (which takes a while on a loaded machine).
    deadline = time.monotonic() + 120
    while True:
        after = h.status()
        if after["model"]["engine"]["cancelled"] > before["model"]["engine"]["cancelled"]:
            break
        assert time.monotonic() < deadline, after
        time.sleep(0.2)
    assert after["completion"]["counters"]["cancelled_requests"] > \
        before["completion"]["counters"]["cancelled_requests"]
    h.run(_set(h, {"prompt": {"max_tokens": 16}, "completion": {"debounce_min_ms": 0}}))
    uri2 = h.open(h.root / "after_cancel.py", CODE)
    assert h.inline(uri2, *CURSOR)


def test_did_change_during_generation_returns_nothing_stale(h: Harness) -> None:
    h.run(_set(h, {"prompt": {"max_tokens": 120}, "completion": {"debounce_min_ms": 0,
                                                                 "log_level": "debug"}}))
    _ready(h)
    uri = h.open(h.root / "stale.py", "def total(items):\n    result = 0\n    ")
    assert h.client is not None

    async def scenario() -> object:
        fut = h.client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION,
                                                   h.inline_params(uri, 2, 4))
        await asyncio.sleep(0.25)
        # An edit elsewhere that contradicts every suggestion made for the old text.
        h.change(uri, (0, 4), (0, 9), "summe")
        return await asyncio.wait_for(fut, 60)

    result = h.run(scenario())
    assert result is None or not result.items
    h.run(_set(h, {"prompt": {"max_tokens": 16}}))


def test_burst_only_newest_runs(h: Harness) -> None:
    h.run(_set(h, {"completion": {"debounce_min_ms": 50, "debounce_max_ms": 150}}))
    uri = h.open(h.root / "burst.py", "def greet(name):\n    print(")
    assert h.client is not None
    before = h.counters()

    async def burst() -> list[object]:
        futs = [h.client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION,
                                                     h.inline_params(uri, 1, 10))
                for _ in range(20)]
        return await asyncio.gather(*futs)

    results = h.run(burst())
    after = h.counters()
    assert after["model_calls"] - before["model_calls"] == 1
    assert after["superseded"] - before["superseded"] == 19
    assert results[-1] is not None and results[-1].items
    h.run(_set(h, {"completion": {"debounce_min_ms": 0, "log_level": "debug"}}))


def test_accept_starts_the_next_suggestion_speculatively(h: Harness) -> None:
    code = "def area(width, height):\n    return width * height\n\n\ndef perimeter(width, height):\n"
    uri = h.open(h.root / "accept.py", code)
    before = h.counters()
    # The user accepted a suggestion that ended at the start of line 5 (the cursor is there).
    h.call(h.client.protocol.notify, "codefill/didAccept",
           {"textDocument": {"uri": uri}, "position": {"line": 5, "character": 0}})
    deadline = time.monotonic() + 120
    while h.counters()["speculative"] == before["speculative"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    text = h.inline(uri, 5, 0)
    after = h.counters()
    assert text
    # Served by the speculative generation: no new model call for the request itself.
    assert after["model_calls"] - before["model_calls"] == 1
    assert after["in_flight_adopted"] + after["cache_hits"] > \
        before["in_flight_adopted"] + before["cache_hits"]


def test_accept_is_inferred_from_the_document(h: Harness) -> None:
    # Multi-line mode: the request waits for the whole suggestion, so no generation is still
    # running (a running one would simply continue past the accepted text instead).
    h.run(_set(h, {"completion": {"mode": "multi", "debounce_min_ms": 0}}))
    uri = h.open(h.root / "infer.py", "import math\n\ndef circle_area(r):\n    return ")
    text = h.inline(uri, 3, 11)
    assert text
    before = h.counters()
    h.change(uri, (3, 11), (3, 11), text)  # the editor inserts the suggestion as shown
    deadline = time.monotonic() + 60
    while h.counters()["speculative"] == before["speculative"]:
        assert time.monotonic() < deadline, "no speculative generation after the accept"
        time.sleep(0.05)
    h.run(_set(h, {}))


def test_repository_context_reaches_the_prompt(h: Harness, tmp_path: Path) -> None:
    indexed = h.status()["context"]["source_files"]
    (h.root / "geometry").mkdir(exist_ok=True)
    (h.root / "geometry" / "__init__.py").write_text("")
    (h.root / "geometry" / "shapes.py").write_text(
        "class Square:\n    def __init__(self, side):\n        self.side = side\n")
    (h.root / ".env").write_text("API_KEY=sk-canary-0123456789\n")
    deadline = time.monotonic() + 60
    # The index was built at start-up; watchdog brings in the files made since.
    while h.status()["context"]["source_files"] < indexed + 2:
        assert time.monotonic() < deadline, h.status()["context"]
        time.sleep(0.1)
    uri = h.open(h.root / "geometry" / "main.py",
                 "from geometry.shapes import Square\n\nsq = Square(3)\nprint(sq.")
    h.logs.clear()
    h.inline(uri, 3, 9)
    lines = [m for m in h.logs if "geometry/main.py: context" in m]
    assert lines and "context ok, 1 file(s)" in lines[-1], h.logs[-10:]
    assert not any("sk-canary" in m for m in h.logs)
    # The same workspace and cursor through a server that records its prompts: the one file of
    # context is shapes.py, and the .env canary beside it never reaches the prompt.
    record = tmp_path / "prompts.jsonl"
    rec = Harness(h.root, settings=merged({"prompt": {"max_tokens": 4}}), record_prompts=record)
    rec.start()
    try:
        deadline = time.monotonic() + 60
        while rec.status()["context"]["state"] != "ready":
            assert time.monotonic() < deadline, rec.status()["context"]
            time.sleep(0.1)
        u = rec.open(h.root / "geometry" / "main.py",
                     "from geometry.shapes import Square\n\nsq = Square(3)\nprint(sq.")
        reply = rec.request("codefill/complete", {"textDocument": {"uri": u},
                                                  "position": {"line": 3, "character": 9}})
    finally:
        assert rec.stop() == 0
    records = [json.loads(x) for x in record.read_text().splitlines()]
    prompts = [r["prompt"] for r in records if r["kind"] == "generate"]
    assert reply is not None and reply["source"] == "model" and len(prompts) == 1, (reply, prompts)
    assert "self.side = side" in prompts[0], prompts[0]
    assert "sk-canary" not in prompts[0] and "API_KEY" not in prompts[0], prompts[0]
    assert not any("sk-canary" in m for m in rec.logs)


def test_settings_change_applies_without_restart(h: Harness) -> None:
    uri = h.open(h.root / "toggle.py", CODE)
    h.run(_set(h, {"completion": {"enabled": False}}))
    assert h.inline(uri, *CURSOR) is None
    assert "disabled" in h.status()["completion"]["last_empty_reason"]
    h.run(_set(h, {"completion": {"languages": {"python": False}}}))
    assert h.inline(uri, *CURSOR) is None
    h.run(_set(h, {"completion": {"debounce_min_ms": 0}, "prompt": {"max_tokens": 16}}))
    assert h.inline(uri, *CURSOR)
    assert h.status()["model"]["state"] == "ready"  # no reload for non-engine settings


def test_invalid_settings_are_reported(h: Harness) -> None:
    n = len(h.messages)
    h.run(_set(h, {"completion": {"mode": "sometimes"}, "prompt": {"max_tokens": 16}}))
    assert any("completion.mode" in m.message for m in h.messages[n:])
    assert h.status()["settings"]["mode"] == "auto"


def test_changing_only_the_template_changes_the_next_prompt(h: Harness) -> None:
    """prompt.template alone must reload the model with the new layout. Every component reads
    the one settings holder, so the reload decision compares the settings the model was loaded
    with, not the live tree (which once made the comparison always equal)."""
    uri = h.open(h.root / "template.py", CODE)
    assert h.status()["model"]["template"] == "plain"
    h.logs.clear()
    h.run(_set(h, {"completion": {"debounce_min_ms": 0}, "prompt": {"template": "gemma3-fim"}}))
    deadline = time.monotonic() + 120
    while (st := h.status()["model"])["state"] != "ready" or st["template"] != "gemma3-fim":
        assert st["state"] != "failed" and time.monotonic() < deadline, st
        time.sleep(0.1)
    h.logs.clear()
    h.inline(uri, *CURSOR)
    prompts = [m for m in h.logs if "template.py: prompt" in m]
    assert prompts and prompts[-1].endswith("(gemma3-fim)"), h.logs[-10:]
    h.run(_set(h, {"completion": {"debounce_min_ms": 0}}))  # back to "auto": plain again
    deadline = time.monotonic() + 120
    while (st := h.status()["model"])["state"] != "ready" or st["template"] != "plain":
        assert st["state"] != "failed" and time.monotonic() < deadline, st
        time.sleep(0.1)


def test_more_candidates_reload_the_engine_with_their_kv_cells(h: Harness) -> None:
    """The engine sets KV cells aside for the candidates at load (beside the context window).
    Asking for more candidates than it holds room for reloads it with that room; fewer need no
    reload. Without the reload every prompt would give up the missing room until a restart."""
    uri = h.open(h.root / "cells.py", CODE)

    before = _ready(h)
    window = before["context_size"]
    # Six candidates of up to 400 tokens: more cells than any earlier test's settings held.
    assert before["kv_cells"] - window < 5 * 400 + 6 * 24, before
    h.run(_set(h, {"completion": {"debounce_min_ms": 0, "candidates": 6},
                   "prompt": {"max_tokens": 400}}))
    st = _ready(h, more_cells_than=before["kv_cells"])
    assert st["context_size"] == window, st  # the window is the same: the cells are beside it
    more = st["kv_cells"]
    assert h.inline(uri, *CURSOR)
    h.run(_set(h, {"completion": {"debounce_min_ms": 0, "candidates": 2},
                   "prompt": {"max_tokens": 400}}))
    st = _ready(h)
    assert st["kv_cells"] == more and st["context_size"] == window, st  # no reload for fewer
    h.run(_set(h, {"completion": {"debounce_min_ms": 0}}))


@pytest.mark.parametrize(("uri_kind", "line", "char"), [
    ("never-opened", 0, 0), ("untitled", 0, 0), ("outside", 0, 0),
    ("open", 999, 0), ("open", 0, 9999)])
def test_bad_documents_and_positions_get_empty_results(h: Harness, uri_kind: str, line: int,
                                                       char: int, tmp_path: Path) -> None:
    uris = {"never-opened": (h.root / "nope.py").as_uri(),
            "untitled": "untitled:Untitled-1",
            "outside": (tmp_path / "outside.py").as_uri(),
            "open": h.open(h.root / "bad.py", "x = 1\n")}
    uri = uris[uri_kind]
    if uri_kind in ("untitled", "outside"):
        assert h.client is not None
        h.call(h.client.text_document_did_open, types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                 text="import os\nos.")))
    try:
        result = h.inline(uri, line, char)
    except Exception as exc:  # an error reply is acceptable for invalid params
        result = None
        assert "Invalid" in str(exc) or "invalid" in str(exc)
    if uri_kind == "open" and char == 9999:
        assert result is None or isinstance(result, str)  # past the line end = end of line
    else:
        assert result is None
    assert h.status()["model"]["state"] == "ready"  # the server survived


def test_unknown_method_gets_method_not_found(h: Harness) -> None:
    with pytest.raises(Exception, match="[Mm]ethod"):
        h.request("codefill/doesNotExist", {})
    assert h.status()["model"]["state"] == "ready"


async def _completion(h: Harness, uri: str) -> types.CompletionList:
    assert h.client is not None
    return await h.client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(*CURSOR)))


BASE_SETTINGS = {"completion": {"debounce_min_ms": 0, "log_level": "debug"},
                 "prompt": {"max_tokens": 16},
                 "engine": {"context_size": 2048, "time_budget_ms": 60000}}


def merged(overrides: dict) -> dict:
    """The module's base settings with ``overrides`` (a whole settings table, as editors send)."""
    out = {k: dict(v) for k, v in BASE_SETTINGS.items()}
    for section, values in overrides.items():
        out.setdefault(section, {}).update(values)
    return out


def _ready(h: Harness, more_cells_than: int = 0) -> dict:
    """The model's status once it is ready (after a reload that settings asked for: a short
    pause lets one start) with more than ``more_cells_than`` KV cells."""
    time.sleep(0.5)
    deadline = time.monotonic() + 120
    while (st := h.status()["model"])["state"] != "ready" or st["kv_cells"] <= more_cells_than:
        assert st["state"] != "failed" and time.monotonic() < deadline, st
        time.sleep(0.1)
    return st


async def _set(h: Harness, overrides: dict) -> None:
    """Change settings the way VS Code does: the whole table in didChangeConfiguration (and
    the same table for a later workspace/configuration pull)."""
    assert h.client is not None
    settings = merged(overrides)
    h.settings = settings
    h.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"codefill": settings}))
    await asyncio.sleep(0.1)


# --- separate server processes -------------------------------------------------------------

def test_neovim_capabilities_and_initialization_options(tmp_path: Path) -> None:
    h = Harness(tmp_path, capabilities=NEOVIM_CAPABILITIES,
                init_options={"prompt": {"max_tokens": 8}, "completion": {"debounce_min_ms": 0}})
    result = h.start()
    assert result.capabilities.completion_provider is not None
    uri = h.open(tmp_path / "a.py", CODE)
    assert h.client is not None
    lst = h.run(_completion(h, uri))
    assert lst.items and lst.items[0].text_edit.new_text
    assert h.stop() == 0


def test_failed_model_load_keeps_the_server_up_and_recovers(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    h = Harness(tmp_path, settings={"engine": {"model": str(bad)},
                                    "completion": {"debounce_min_ms": 0}})
    h.start(wait_ready=False)
    st = h.wait_state({"failed"})
    assert "not a GGUF" in st["model"]["error"]
    assert any("not a GGUF" in m.message for m in h.messages)
    uri = h.open(tmp_path / "a.py", CODE)
    assert h.inline(uri, *CURSOR) is None
    assert "failed to load" in h.status()["completion"]["last_empty_reason"]
    assert "not a GGUF" in h.status()["completion"]["last_empty_reason"]
    h.run(_set(h, {"engine": {"model": "", "context_size": 2048, "time_budget_ms": 60000}}))
    h.wait_state({"ready"})
    assert h.inline(uri, *CURSOR)
    assert h.stop() == 0


def test_exits_when_the_parent_process_dies(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    h = Harness(tmp_path, process_id=parent.pid)
    h.start(wait_ready=False)
    assert h.client is not None and h.client._server is not None
    server = h.client._server
    parent.kill()
    parent.wait()

    async def wait_exit() -> int | None:
        return await asyncio.wait_for(server.wait(), 15)

    assert h.run(wait_exit()) == 0
    h.loop.call_soon_threadsafe(h.loop.stop)


def test_shutdown_then_exit_code_and_requests_after_shutdown(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.start(wait_ready=False)
    assert h.client is not None

    async def scenario() -> tuple[str, int | None]:
        await h.client.shutdown_async(None)
        try:
            await asyncio.wait_for(h.client.protocol.send_request_async(
                "codefill/status", {}), 10)
            after = "answered"
        except Exception as exc:
            after = f"{type(exc).__name__} {getattr(exc, 'code', '')} {exc}"
        h.client.exit(None)
        code = await asyncio.wait_for(h.client._server.wait(), 20)
        await h.client.stop()
        return after, code

    after, code = h.run(scenario())
    assert "InvalidRequest" in after and "-32600" in after, after  # as the spec says
    assert code == 0
    h.loop.call_soon_threadsafe(h.loop.stop)


@pytest.mark.parametrize(("cap", "size"), [(100_000, 300_000), (None, 64 * 1024 * 1024 + 1)],
                         ids=["100kB-override", "default-64MiB"])
def test_oversized_content_length_is_skipped_and_the_stream_resyncs(
        tmp_path: Path, cap: int | None, size: int) -> None:
    """Raw stdio: a body over the limit is discarded, the next message is answered. Once with a
    100 kB override, once with the real default (64 MiB, no override): that body, one byte over
    the cap, is streamed in 1 MiB chunks, and the server's peak memory must not grow by it."""
    env = {k: v for k, v in os.environ.items() if k != "CODEFILL_MAX_MESSAGE_BYTES"}
    if cap is not None:
        env["CODEFILL_MAX_MESSAGE_BYTES"] = str(cap)
    limit = cap if cap is not None else 64 * 1024 * 1024
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "lsp_server.cli.main", "serve"], cwd=REPO,
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err)
    assert proc.stdin is not None and proc.stdout is not None
    seen: list[dict] = []

    def send(msg: dict) -> None:
        body = json.dumps(msg).encode()
        proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        proc.stdin.flush()

    def reply(msg_id: int) -> dict:
        while True:
            header = proc.stdout.readline()
            assert header.startswith(b"Content-Length: "), (header, seen)
            length = int(header.split(b":")[1])
            while proc.stdout.readline().strip():  # other headers, then the blank line
                pass
            seen.append(json.loads(proc.stdout.read(length)))
            if seen[-1].get("id") == msg_id:
                return seen[-1]

    def peak_rss_kb() -> int:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")

    try:
        send({"jsonrpc": "2.0", "id": 6, "method": "initialize",
              "params": {"capabilities": {}, "processId": None}})
        assert "capabilities" in reply(6)["result"]
        before = peak_rss_kb()
        # A well-formed message, one byte over the cap, streamed: never one big string here.
        head, tail = b'{"jsonrpc": "2.0", "method": "x", "params": "', b'"}'
        proc.stdin.write(b"Content-Length: %d\r\n\r\n" % size + head)
        left, chunk = size - len(head) - len(tail), b"y" * (1 << 20)
        while left > 0:
            proc.stdin.write(chunk[:left])
            left -= min(left, len(chunk))
        proc.stdin.write(tail)
        send({"jsonrpc": "2.0", "id": 7, "method": "codefill/status", "params": {}})
        assert reply(7)["result"]["version"]
        grown_mb = (peak_rss_kb() - before) / 1024
        assert not any(m.get("method") == "window/showMessage" for m in seen), seen
        print(f"\n{size}-byte body over a {limit}-byte cap: skipped; peak RSS "
              f"{before / 1024:.1f} MB, +{grown_mb:.1f} MB")
        assert size > limit and grown_mb < 16, (size, limit, grown_mb)
    finally:
        proc.kill()
        proc.wait()
    assert f"message of {size} bytes exceeds the {limit} byte limit; skipped" \
        in stderr.read_text(), stderr.read_text()[-2000:]


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RawServer]:
    root = tmp_path_factory.mktemp("raw")
    server = RawServer()
    server.send({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                 "params": {"capabilities": {}, "processId": None, "rootUri": root.as_uri(),
                            "initializationOptions": {"prompt": {"max_tokens": 4}}}})
    assert "result" in server.reply(0)
    server.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    uri = (root / "a.py").as_uri()
    server.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}}})
    yield server
    server.close()


def _alive(raw: RawServer, n: int) -> None:
    raw.send({"jsonrpc": "2.0", "id": f"alive{n}", "method": "codefill/status", "params": {}})
    assert "result" in raw.reply(f"alive{n}")


@pytest.mark.parametrize(("n", "message", "expect"), [
    (1, b"{not json", None),
    (2, {"jsonrpc": "2.0", "id": 2, "method": "textDocument/inlineCompletion",
         "params": {"textDocument": {"uri": "file:///x.py"},
                    "position": {"line": -1, "character": 0}, "context": {"triggerKind": 1}}},
     "error"),
    (3, {"jsonrpc": "2.0", "id": 3, "method": "textDocument/inlineCompletion",
         "params": {"textDocument": {"uri": 42}, "position": "here"}}, "error"),
    (4, {"jsonrpc": "2.0", "id": 4, "method": "textDocument/inlineCompletion",
         "params": "not an object"}, "error"),
    (5, {"jsonrpc": "2.0", "id": 5, "method": "codefill/complete", "params": [1, 2]}, "result"),
    (6, {"jsonrpc": "2.0", "id": 6, "method": "no/suchMethod", "params": {}}, "error"),
    (7, {"jsonrpc": "2.0", "method": "no/suchNotification", "params": {}}, None),
    (8, b"Content-Length: -5\r\n\r\n", None),
    (9, {"jsonrpc": "2.0", "id": 9, "method": "textDocument/didChange", "params": None}, None),
])
def test_malformed_json_rpc_is_survived(raw: RawServer, n: int, message: object,
                                        expect: str | None) -> None:
    if isinstance(message, bytes):
        body = message if message.startswith(b"Content-Length") else \
            b"Content-Length: %d\r\n\r\n" % len(message) + message
        raw.send_bytes(body)
    else:
        raw.send(message)
    if expect is not None:
        reply = raw.reply(n)
        assert expect in reply, reply
    _alive(raw, n)


def test_tcp_transport(tmp_path: Path) -> None:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lsp_server.cli.main", "serve", "--tcp",
                             f"127.0.0.1:{port}"], cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not listen"
                time.sleep(0.1)
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                           "params": {"capabilities": {}, "processId": None}}).encode()
        conn.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        data = b""
        while b"capabilities" not in data:
            chunk = conn.recv(65536)
            assert chunk, data
            data += chunk
        conn.close()
    finally:
        proc.kill()
        proc.wait()
