"""What the server process opens, seen from inside it: a Python audit hook (``open`` events:
``open()``, ``io.open``, ``os.open``, ``pathlib`` reads) installed in the real ``codefill serve``
before codefill is imported (``python -m bench.common --audit-opens FILE serve``,
bench/common/engine_hooks.py), over a workspace that holds secrets, ignored folders, symlinks
out of the root and files outside it, every one of them imported or named by the file being
completed. The index is built, completions run with repository context, and no secret, ignored
or out-of-root file may ever be opened for reading, not only kept out of the prompts.

The prompt tests (tests/test_reliability_secrets.py, tests/test_reliability_fs.py) see what
reaches the model; this one sees what is read at all, so a rule that reads a secret and drops
it afterwards fails here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from bench.common import Harness
from tests.test_server import merged

pytestmark = pytest.mark.model

LEGIT = "LEGIT_MARKER_9b17"  # helpers.py: context reaches the prompts (the test is not vacuous)

# Root-relative files that must never be opened for reading, and why.
SECRETS = {
    ".env": "API_KEY=CANARY-AUDIT-ENV\n",
    "id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\nCANARY-AUDIT-IDRSA\n"
              "-----END OPENSSH PRIVATE KEY-----\n",
    "config/credentials.json": '{"token": "CANARY-AUDIT-JSON"}\n',
    "config/credentials.py": 'TOKEN = "CANARY-AUDIT-CREDPY"\n',  # a source file, secret by name
    "certs/server.pem": "-----BEGIN CERTIFICATE-----\nCANARY-AUDIT-PEM\n"
                        "-----END CERTIFICATE-----\n",
}
IGNORED = {
    "node_modules/leftpad/leftpad.py": "def pad(s):\n    return s\n",    # built-in ignored dir
    "build/lib/app_copy.py": "def copy():\n    return 1\n",             # built-in + .gitignore
    "generated/models.py": "class Model:\n    pass\n",                    # .gitignore only
    "local_settings.py": 'API_KEY = "CANARY-AUDIT-GITIGNORED"\n',        # a gitignored file
}
OUTSIDE = {  # relative to the directory beside the root
    "creds.py": 'TOKEN = "CANARY-AUDIT-OUTSIDE"\n',         # reached by the file symlink creds.py
    "tools.py": "def tool():\n    return 2\n",              # reached by the directory symlink ext/
    "__init__.py": "",
    "unlinked.py": "def far():\n    return 3\n",            # outside, no link to it
}

APP = '''"""The app: loads .env, id_rsa, config/credentials.json and certs/server.pem."""
import helpers
import local_settings
import creds
from ext import tools
from config import credentials
from generated import models
from build.lib import app_copy
from node_modules.leftpad import leftpad

ENV_FILE = ".env"
KEY_FILE = "id_rsa"
CRED_FILE = "config/credentials.json"
CERT_FILE = "certs/server.pem"


def run():
    token = credentials.TOKEN or creds.TOKEN or local_settings.API_KEY
    value = tools.tool() + app_copy.copy()
    return helpers.'''


def plant(root: Path) -> Path:
    """The workspace under ``root``; returns the directory outside it."""
    (root / ".git").mkdir(parents=True)
    (root / ".gitignore").write_text("build/\ngenerated/\nlocal_settings.py\n")
    for table in (SECRETS, IGNORED):
        for rel, text in table.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
    (root / "config" / "__init__.py").write_text("")
    (root / "helpers.py").write_text(f'"""Helpers ({LEGIT})."""\n\n\ndef fetch(url):\n'
                                     "    return url\n")
    outside = root.parent / "outside"
    outside.mkdir()
    for rel, text in OUTSIDE.items():
        (outside / rel).write_text(text)
    os.symlink(outside / "creds.py", root / "creds.py")   # a file symlink out of the root
    os.symlink(outside, root / "ext")                     # a directory symlink out of the root
    return outside


def audit_reads(log: Path) -> tuple[list[dict], list[str]]:
    """(the log's lines, the paths opened for reading)."""
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    return lines, [e["path"] for e in lines if e.get("read")]


def test_secret_ignored_and_outside_files_are_never_opened(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    outside = plant(root)
    audit, record = tmp_path / "opens.jsonl", tmp_path / "prompts.jsonl"
    h = Harness(root, settings=merged({"prompt": {"max_tokens": 4}}), audit_opens=audit,
                record_prompts=record)
    h.start()
    try:
        deadline = time.monotonic() + 120
        while (st := h.status())["context"]["state"] != "ready":
            assert time.monotonic() < deadline, st["context"]
            time.sleep(0.2)
        uri = h.open(root / "app.py", APP)
        lines = APP.split("\n")
        replies = [h.request("codefill/complete", {"textDocument": {"uri": uri},
                                                   "position": {"line": row,
                                                                "character": len(lines[row])}})
                   for row in (len(lines) - 1, len(lines) - 3)]
        final = h.status()
    finally:
        assert h.stop() == 0

    events, reads = audit_reads(audit)
    assert events[0].get("audit") == "installed", events[:1]
    real_root, real_out = os.path.realpath(root), os.path.realpath(outside)
    # Not vacuous: the hook saw the server read the workspace (its .gitignore, the index's
    # sources), and repository context reached the prompts.
    seen = {os.path.realpath(p) for p in reads}
    assert os.path.join(real_root, ".gitignore") in seen, sorted(seen)[:50]
    assert os.path.join(real_root, "helpers.py") in seen, sorted(seen)[:50]
    assert final["context"]["state"] == "ready", final["context"]
    assert all(r is not None and r["source"] == "model" for r in replies), replies
    records = [json.loads(x) for x in record.read_text().splitlines()]
    prompts = [r["prompt"] for r in records]  # the candidates' scored suffixes included
    generated = [r for r in records if r["kind"] == "generate"]
    assert len(generated) == len(replies) and any(LEGIT in p for p in prompts), prompts

    forbidden_files = {os.path.join(real_root, rel) for rel in (*SECRETS, *IGNORED)}
    forbidden_dirs = [os.path.join(real_root, d) for d in ("node_modules", "build", "generated")]
    forbidden_dirs += [real_out, os.path.join(os.path.abspath(root), "ext")]
    forbidden_links = {os.path.join(os.path.abspath(root), "creds.py")}

    def forbidden(path: str) -> bool:
        real = os.path.realpath(path)
        return (path in forbidden_links or real in forbidden_files or path in forbidden_files
                or any(p == d or p.startswith(d + os.sep)
                       for d in forbidden_dirs for p in (path, real)))

    opened = sorted({p for p in reads if forbidden(p)})
    print(f"\n{len(events) - 1} opens audited ({len(reads)} for reading, "
          f"{sum(p.startswith(real_root) for p in seen)} in the workspace); forbidden: {opened}")
    assert opened == [], opened
