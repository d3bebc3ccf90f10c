"""Secrets stay home, end to end: a real server over stdio with the real model (every prompt it
builds recorded by the engine hook), and a real llama-server behind a recording proxy. Secret
documents produce no prompt and no remote request; secret values in ordinary files never appear
in a prompt, a remote request or the server's log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from bench.common import Harness, fim_test_model, llama_server_binary, start_llama_server, \
    why_no_llama_server
from tests.remote_servers import FaultProxy

pytestmark = pytest.mark.model

OPENAI_KEY = "sk-" + "Q7w8E9r0" * 5
AWS_KEY = "AKIA" + "ZYXWVUTSRQPONMLK"
KEY_BODY = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB"
KEY_BLOCK = (f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_BODY}\n"
             "-----END OPENSSH PRIVATE KEY-----\n")
CANARIES = (OPENAI_KEY, AWS_KEY, KEY_BODY, "hunter2-canary-password")

SECRET_DOCUMENTS = {  # path → text: each pattern family of the secret table, and a key by content
    ".env": f"OPENAI_API_KEY={OPENAI_KEY}\nDEBUG=",
    ".env.production": f"AWS_ACCESS_KEY_ID={AWS_KEY}\nREGION=",
    "deploy/id_rsa": KEY_BLOCK,
    "certs/server.pem": KEY_BLOCK,
    "certs/server.key": KEY_BLOCK,
    "config/credentials.json": '{"password": "hunter2-canary-password",\n "user": ',
    "config/db_secret.yaml": "password: hunter2-canary-password\nhost: ",
    "notes/key.txt": KEY_BLOCK,  # a private key whatever the name
}
ORDINARY = ("import os\n\n"
            f"OPENAI_API_KEY = \"{OPENAI_KEY}\"\n"
            f"DB_PASSWORD = 'hunter2-canary-password'\n"
            f"AWS = \"{AWS_KEY}\"\n\n\n"
            "def add(a, b):\n    return \n")
CURSOR = (8, 11)
MASKED = ORDINARY.replace(OPENAI_KEY, "<redacted>").replace(AWS_KEY, "<redacted>") \
    .replace("hunter2-canary-password", "<redacted>")
"""The ordinary file as it may reach the model: its secret values masked in place."""


def _workspace(root: Path) -> None:
    for rel, text in SECRET_DOCUMENTS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "app.py").write_text(ORDINARY)


def _ask_everywhere(h: Harness) -> None:
    """Completions at the end of every secret document, then in the ordinary file."""
    for rel, text in SECRET_DOCUMENTS.items():
        uri = h.open(h.root / rel, text, language="plaintext")
        lines = text.split("\n")
        assert h.inline(uri, len(lines) - 1, len(lines[-1])) is None, rel
        reason = h.status()["completion"]["last_empty_reason"]
        assert "secret" in reason or "private key" in reason, (rel, reason)
    uri = h.open(h.root / "app.py", ORDINARY)
    h.inline(uri, *CURSOR)


def test_secret_documents_reach_no_prompt_and_secret_values_are_masked(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    _workspace(root)
    record = tmp_path / "prompts.jsonl"
    h = Harness(root, settings={"completion": {"debounce_min_ms": 0, "log_level": "debug"},
                                "engine": {"time_budget_ms": 60000}},
                record_prompts=record)
    h.start()
    try:
        _ask_everywhere(h)
        calls = h.counters()["model_calls"]
    finally:
        h.stop()
    records = [json.loads(line) for line in record.read_text().splitlines()]
    records = [r for r in records if r["prompt"] is not None]
    prompts = [r["prompt"] for r in records]  # candidates' scored suffixes included
    # Only the ordinary file was ever sent to the model (the secret documents: no prompt), its
    # secret values masked in place. The plain template's prompt is the text before a cursor,
    # and no other file may be context: a prompt or prefill is a beginning of the masked file
    # (a prefill at the opened file's first line, e.g. again once the workspace index is
    # ready, is just BOS).
    generated = [r for r in records if r["kind"] == "generate"]
    assert len(generated) == calls >= 1, (len(generated), calls)
    for r in records:
        text = r["prompt"].removeprefix("<bos>")
        if r["kind"] == "candidates":  # the prompt, the suggestion and the code after it
            assert "def add(a, b):" in text, r
        else:
            assert MASKED.startswith(text), r
    assert all("def add(a, b):" in r["prompt"] and "<redacted>" in r["prompt"] for r in generated)
    for p in prompts:
        for canary in CANARIES:
            assert canary not in p
    for line in h.logs:
        for canary in CANARIES:
            assert canary not in line, line


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if llama_server_binary() is None:
        pytest.fail(why_no_llama_server() or "llama-server is not built")
    with start_llama_server(fim_test_model(), ctx=2048,
                            log_dir=tmp_path_factory.mktemp("llama-server")) as srv:
        yield srv


def test_secret_documents_send_no_remote_request(tmp_path: Path, llama_server: object) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    _workspace(root)
    with FaultProxy(llama_server.url) as proxy:  # type: ignore[attr-defined]
        h = Harness(root, settings={"completion": {"debounce_min_ms": 0},
                                    "remote": {"url": proxy.url},
                                    "engine": {"time_budget_ms": 60000}})
        h.start()
        try:
            _ask_everywhere(h)
        finally:
            h.stop()
        generating = [r for r in proxy.requests if r.path in ("/infill", "/completion")]
        bodies = [r.body.decode("utf-8", errors="replace") for r in proxy.requests]
    # One document was completed: the ordinary one; nothing else asked for a generation.
    assert generating and all("def add(a, b):" in r.body.decode() for r in generating)
    for body in bodies:
        for canary in CANARIES:
            assert canary not in body
