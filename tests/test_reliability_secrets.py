"""Secrets canary, end to end: canary secrets planted where a workspace keeps them, source files
that import and mention those files, many completions with repository context through the real
server — and no canary in any prompt the engine was given.

Prompts are seen through the engine hook `Harness(record_prompts=…)`
(bench/common/engine_hooks.py, docs/reliability.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import pytest

from bench.common import Harness
from tests.test_server import merged

pytestmark = pytest.mark.model

CANARIES = {
    ".env": "CANARY-ENV-3f9a1c",
    "config/.env.local": "CANARY-ENVLOCAL-77be02",
    "id_rsa": "CANARY-IDRSA-c41d5e",
    "server.pem": "CANARY-PEM-0a8f33",
    "local_settings.py": "CANARY-GITIGNORED-5d2e90",   # listed in .gitignore
    "../outside/creds.py": "CANARY-OUTSIDE-b61f47",   # reached through symlinks
}
LEGIT = "LEGIT_MARKER_e4c2"  # in an ordinary imported module: context does reach prompts

APP = '''"""The app: loads its settings from .env, config/.env.local, id_rsa and server.pem."""
import os
import local_settings
import creds
from ext import creds as ext_creds
from config import loader
import helpers

KEY_FILE = "id_rsa"
CERT = "server.pem"
ENV = loader.read_env(".env") | loader.read_env("config/.env.local")


def api_key():
    return local_settings.API_KEY or creds.TOKEN or ext_creds.TOKEN


def connect():
    key = open(KEY_FILE).read()
    token = api_key()
    return helpers.'''


# How a ``codefill/complete`` reply accounts for the prompts the engine was given
# (lsp_server/completion/pipeline.py, ``Suggestion.source``):
#   "model": the request started a generation job, whose Completer.start submitted exactly one
#       prompt to the engine (recorded by the engine hook before the reply is sent);
#   "cache", "typing_through", "in_flight": answered from a generation an earlier request
#       started: no prompt of its own;
#   "none": nothing ran, and the reason says why (below): no prompt.
# Jobs no request asked for are speculative ones after an accept (counters.speculative).
PROMPT_SOURCES = {"model"}
REUSE_SOURCES = {"cache", "typing_through", "in_flight"}
NOTHING_RAN = ("completions are disabled", "completions are off for language ",
               "cursor outside the document", "superseded by a newer request")
# Why a request that reached a generation may come back empty.
EMPTY_AFTER_GENERATION = ("nothing left after post-processing (", "the document changed")


def account_for_every_request(replies: Sequence[dict[str, Any] | None], prompts: Sequence[Any],
                              counters: dict[str, int]) -> dict[str, int]:
    """Every ``codefill/complete`` request of a session (sent one at a time, each waited for)
    is accounted for: its reply names where the text came from, an empty reply has a known
    reason, no request failed or was cancelled, and the prompts recorded are exactly the
    generations the requests started (plus speculative ones, if any ran). ``counters``: the
    server's completion counters at the end. Returns the replies per source."""
    assert all(r is not None for r in replies), replies
    by_source: dict[str, int] = {}
    for r in replies:
        assert r is not None
        by_source[r["source"]] = by_source.get(r["source"], 0) + 1
        if r["source"] == "none":
            assert not r["text"] and r["reason"].startswith(NOTHING_RAN), r
        else:
            assert r["source"] in PROMPT_SOURCES | REUSE_SOURCES, r
            assert r["text"] or r["reason"].startswith(EMPTY_AFTER_GENERATION), r
    n = len(replies)
    assert counters["requests"] == n, (counters, n)
    assert counters["served"] == sum(bool(r["text"]) for r in replies if r), counters
    assert counters["served"] + counters["empty"] == n, counters
    assert counters["cancelled_requests"] == 0, counters
    n_model = sum(by_source.get(s, 0) for s in PROMPT_SOURCES)
    assert counters["model_calls"] == n_model + counters["speculative"], (counters, by_source)
    # One prompt per generation: exactly one per "model" reply; a speculative job may have
    # been cancelled before it submitted its prompt.
    assert n_model <= len(prompts) <= counters["model_calls"], (len(prompts), counters, by_source)
    if counters["speculative"] == 0:
        assert len(prompts) == n_model
    return by_source


def plant(root: Path) -> None:
    (root / ".git").mkdir()
    (root / ".gitignore").write_text("local_settings.py\n")
    (root / ".env").write_text(f"API_KEY={CANARIES['.env']}\nDEBUG=1\n")
    (root / "config").mkdir()
    (root / "config" / ".env.local").write_text(f"DB_PASSWORD={CANARIES['config/.env.local']}\n")
    (root / "config" / "__init__.py").write_text("")
    (root / "config" / "loader.py").write_text(
        "def read_env(path):\n    out = {}\n    for line in open(path):\n"
        "        k, _, v = line.strip().partition('=')\n        out[k] = v\n    return out\n")
    (root / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n"
                                 f"b3BlbnNzaC1rZXktdjEAAAAA{CANARIES['id_rsa']}AAAA\n"
                                 "-----END OPENSSH PRIVATE KEY-----\n")
    (root / "server.pem").write_text("-----BEGIN CERTIFICATE-----\n"
                                     f"MIIC{CANARIES['server.pem']}\n-----END CERTIFICATE-----\n")
    (root / "local_settings.py").write_text(f'API_KEY = "{CANARIES["local_settings.py"]}"\n')
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "creds.py").write_text(f'TOKEN = "{CANARIES["../outside/creds.py"]}"\n')
    (outside / "__init__.py").write_text("")
    os.symlink(outside / "creds.py", root / "creds.py")   # a file symlink out of the root
    os.symlink(outside, root / "ext")                     # a directory symlink out of the root
    (root / "helpers.py").write_text(f'"""Helpers ({LEGIT})."""\n\n\ndef request(url, key):\n'
                                     "    return url, key\n")
    (root / "test_app.py").write_text("import app\n\n\ndef test_key():\n"
                                      "    assert app.api_key()\n")


def test_no_canary_reaches_any_prompt(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    plant(root)
    record = tmp_path / "prompts.jsonl"
    h = Harness(root, settings=merged({"prompt": {"max_tokens": 4}}),
                record_prompts=record)
    h.start()
    try:
        st = h.wait_state({"ready"})
        assert st["context"]["state"] != "off"
        # The secret files are open in other editor tabs too (buffers feed the index).
        for rel in (".env", "config/.env.local", "local_settings.py"):
            h.open(root / rel, (root / rel).read_text(), language="plaintext")
        uri = h.open(root / "app.py", APP)
        lines = APP.split("\n")
        # Many completions at different places (different prompts: no cache hits).
        replies = []
        for row in range(len(lines) - 1, 2, -1):
            col = len(lines[row])
            if not lines[row].strip():
                continue
            replies.append(h.request("codefill/complete", {
                "textDocument": {"uri": uri}, "position": {"line": row, "character": col}}))
            if len(replies) >= 12:
                break
        # And in the other source files.
        for rel in ("helpers.py", "test_app.py", "config/loader.py"):
            text = (root / rel).read_text()
            u = h.open(root / rel, text)
            last = text.rstrip("\n").split("\n")
            replies.append(h.request("codefill/complete", {
                "textDocument": {"uri": u},
                "position": {"line": len(last) - 1, "character": len(last[-1])}}))
        status = h.status()
    finally:
        assert h.stop() == 0
    records = [json.loads(line) for line in record.read_text().splitlines()]
    # Every text sent to the model is scanned, the suffixes scored for candidates included;
    # requests are accounted for by the prompts they generated from.
    prompts = [r["prompt"] for r in records]
    n_requests = len(replies)
    assert n_requests == 15
    by_source = account_for_every_request(
        replies, [r["prompt"] for r in records if r["kind"] == "generate"],
        status["completion"]["counters"])
    assert all(p is not None for p in prompts)
    # Not vacuous: repository context is in the prompts, and the canaries' importer is too.
    assert any(LEGIT in p for p in prompts), "no repository context reached a prompt"
    assert any("import local_settings" in p for p in prompts)
    leaks = {name: sum(canary in p for p in prompts) for name, canary in CANARIES.items()}
    print(f"\n{len(prompts)} prompts from {n_requests} requests ({by_source}); leaks: {leaks}")
    assert not any(leaks.values()), leaks
