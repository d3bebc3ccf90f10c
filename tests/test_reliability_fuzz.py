"""JSON-RPC fuzzing of the real `codefill serve` process over raw stdio (hypothesis).

Random byte bodies, random JSON values as the params of every method we register (as requests
and as notifications), random ids, and a half-sent message at the end. After every example the
server still answers ``codefill/status``, and every fuzzed request got exactly one reply.
The hand-written malformed cases live in tests/test_server.py; this adds the random ones.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.test_server import RawServer

pytestmark = pytest.mark.model

REQUESTS = ["textDocument/inlineCompletion", "textDocument/completion", "codefill/complete",
            "codefill/status"]
NOTIFICATIONS = ["textDocument/didOpen", "textDocument/didChange", "textDocument/didClose",
                 "workspace/didChangeConfiguration", "codefill/didAccept"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12)


@st.composite
def near_valid(draw: st.DrawFn, uri: str) -> Any:
    """Params shaped like the real ones with random holes and wrong types: these get past the
    first checks, which pure random JSON rarely does."""
    pos = draw(st.one_of(
        st.fixed_dictionaries({"line": st.integers(-5, 2**31), "character": st.integers(-5, 2**31)}),
        json_values))
    doc = draw(st.one_of(st.just({"uri": uri}),
                         st.fixed_dictionaries({"uri": st.sampled_from(
                             [uri, "file:///etc/passwd", "untitled:1", "", "file://", "x"])}),
                         json_values))
    params = {"textDocument": doc, "position": pos,
              "context": draw(st.one_of(st.just({"triggerKind": 1}), json_values)),
              "streamId": draw(json_values)}
    if draw(st.booleans()):  # a didChange-like body
        params = {"textDocument": {"uri": uri, "version": draw(st.integers(-3, 2**31))},
                  "contentChanges": draw(st.lists(st.one_of(
                      st.fixed_dictionaries({"range": st.fixed_dictionaries(
                          {"start": st.just(pos), "end": st.just(pos)}),
                          "text": st.text(max_size=10)}),
                      st.fixed_dictionaries({"text": st.text(max_size=10)}),
                      json_values), max_size=3))}
    drop = draw(st.lists(st.sampled_from(sorted(params)), max_size=2))
    return {k: v for k, v in params.items() if k not in drop}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RawServer, str]]:
    root = tmp_path_factory.mktemp("fuzz")
    server = RawServer()
    server.send({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                 "params": {"capabilities": {}, "processId": None, "rootUri": root.as_uri(),
                            "initializationOptions": {"prompt": {"max_tokens": 4},
                                                      "completion": {"debounce_min_ms": 0}}}})
    assert "result" in server.reply(0, timeout=60)
    server.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    uri = (root / "a.py").as_uri()
    server.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": uri, "languageId": "python", "version": 1, "text": "def f(x):\n    return \n"}}})
    yield server, uri
    assert server.proc.poll() is None, "the server died during fuzzing"
    server.close()


FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_seq = iter(range(10**9))
# Outcomes over the whole module, for docs/reliability.md (printed with -s).
TALLY: dict[str, int] = {}


def _count(key: str) -> None:
    TALLY[key] = TALLY.get(key, 0) + 1


def alive(raw: RawServer, timeout: float = 60) -> None:
    n = next(_seq)
    raw.send({"jsonrpc": "2.0", "id": f"alive{n}", "method": "codefill/status", "params": {}})
    reply = raw.reply(f"alive{n}", timeout=timeout)
    assert "result" in reply and reply["result"]["version"], reply


def replied(raw: RawServer, msg_id: Any, timeout: float = 60) -> dict:
    reply = raw.reply(msg_id, timeout=timeout)
    assert ("result" in reply) != ("error" in reply), reply
    _count("error reply" if "error" in reply else "result reply")
    return reply


@FUZZ
@given(body=st.binary(max_size=200))
def test_random_byte_bodies(raw: tuple[RawServer, str], body: bytes) -> None:
    server, _ = raw
    server.send_bytes(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    _count("random bytes body")
    alive(server)


@FUZZ
@given(method=st.sampled_from(REQUESTS + NOTIFICATIONS), params=json_values,
       as_request=st.booleans())
def test_random_params_for_every_method(raw: tuple[RawServer, str], method: str, params: Any,
                                        as_request: bool) -> None:
    server, _ = raw
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if as_request and method in REQUESTS:
        msg["id"] = f"r{next(_seq)}"
        _count("fuzzed request")
    server.send(msg)
    _count(f"random params: {method}")
    if "id" in msg:
        replied(server, msg["id"])
    alive(server)


@FUZZ
@given(method=st.sampled_from(REQUESTS + NOTIFICATIONS), data=st.data())
def test_near_valid_params_for_every_method(raw: tuple[RawServer, str], method: str,
                                            data: st.DataObject) -> None:
    server, uri = raw
    params = data.draw(near_valid(uri))
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if method in REQUESTS:
        msg["id"] = f"n{next(_seq)}"
        _count("fuzzed request")
    server.send(msg)
    _count(f"near-valid params: {method}")
    if "id" in msg:
        replied(server, msg["id"])
    alive(server)


@FUZZ
@given(envelope=st.dictionaries(st.sampled_from(["jsonrpc", "id", "method", "params", "result",
                                                  "error", "extra"]), json_values, max_size=5))
def test_random_envelopes(raw: tuple[RawServer, str], envelope: dict[str, Any]) -> None:
    """Random JSON-RPC envelopes: wrong version, ids of every type, responses to nothing."""
    server, _ = raw
    server.send(envelope)
    _count("random envelope")
    alive(server)


def test_half_sent_message_then_the_rest(raw: tuple[RawServer, str]) -> None:
    """A client that sends half a message and waits: the server waits too (alive, no busy
    error), and answers once the rest arrives."""
    server, _ = raw
    body = json.dumps({"jsonrpc": "2.0", "id": "half", "method": "codefill/status",
                       "params": {}}).encode()
    frame = b"Content-Length: %d\r\n\r\n" % len(body) + body
    server.send_bytes(frame[:len(frame) // 2])
    time.sleep(1.0)
    assert server.proc.poll() is None
    server.send_bytes(frame[len(frame) // 2:])
    assert "result" in server.reply("half", timeout=30)
    alive(server)
    _count("half-sent message")


def test_half_sent_message_then_eof(tmp_path: Path) -> None:
    """The editor dies mid-message (stdin closes): the server exits instead of hanging."""
    server = RawServer()
    try:
        server.send_bytes(b"Content-Length: 100\r\n\r\n{\"jsonrpc\": \"2.0\", ")
        assert server.proc.stdin is not None
        server.proc.stdin.close()
        server.proc.wait(timeout=30)
    finally:
        server.close()
    _count("half-sent message then EOF")


# What each test of this module adds to TALLY: the keys (a prefix, for the per-method ones) and
# how many (one per hypothesis example, or one per run).
EXPECTED = {
    "test_random_byte_bodies": ("random bytes body", FUZZ.max_examples),
    "test_random_params_for_every_method": ("random params: ", FUZZ.max_examples),
    "test_near_valid_params_for_every_method": ("near-valid params: ", FUZZ.max_examples),
    "test_random_envelopes": ("random envelope", FUZZ.max_examples),
    "test_half_sent_message_then_the_rest": ("half-sent message", 1),
    "test_half_sent_message_then_eof": ("half-sent message then EOF", 1),
}


def test_zz_report_tally(request: pytest.FixtureRequest) -> None:
    """The tally of the tests of this module in this session (it runs last), printed
    (docs/reliability.md) and checked: every example of every fuzz test that ran was sent (40
    each), and every fuzzed request (one with an id) got exactly one reply, a result or an
    error. Alone, it checks that the tally is empty."""
    print("\nfuzz tally:", json.dumps(TALLY, indent=1, sort_keys=True))
    ran = {item.originalname for item in request.session.items
           if item.module is request.module and item.originalname != "test_zz_report_tally"}

    def total(key: str) -> int:
        if key.endswith(": "):
            return sum(n for k, n in TALLY.items() if k.startswith(key))
        return TALLY.get(key, 0)

    for name, (key, n) in EXPECTED.items():
        assert total(key) == (n if name in ran else 0), (name, key, TALLY)
    known = [key for key, _ in EXPECTED.values()]
    assert all(k in ("fuzzed request", "result reply", "error reply")
               or any(k == key or key.endswith(": ") and k.startswith(key) for key in known)
               for k in TALLY), TALLY
    # Each fuzzed request (one with an id) got exactly one reply, a result or an error.
    if ran & {"test_random_params_for_every_method", "test_near_valid_params_for_every_method"}:
        assert TALLY.get("fuzzed request", 0) > 0, TALLY
    assert TALLY.get("result reply", 0) + TALLY.get("error reply", 0) \
        == TALLY.get("fuzzed request", 0), TALLY
    # Only the registered methods were fuzzed (drawn at random: not every one in 40 examples).
    for prefix in ("random params: ", "near-valid params: "):
        assert {k[len(prefix):] for k in TALLY if k.startswith(prefix)} \
            <= set(REQUESTS + NOTIFICATIONS), TALLY
