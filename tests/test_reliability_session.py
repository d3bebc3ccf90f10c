"""One real editing session through `codefill serve`, checked for process hygiene and sync:

- random incremental edits (non-BMP characters, CRLF and LF documents) sent over stdio, and the
  server's view compared with the client's through the prompt it gives the model (recorded by
  the engine hook ``Harness(record_prompts=…)``): the text before the cursor is the client's text;
- no file is created, changed or deleted anywhere in the workspace (tree snapshot before/after);
- no network connection is attempted (an audit hook, installed in the server process through a
  ``sitecustomize`` on PYTHONPATH, records every ``socket.connect``/``getaddrinfo``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest

from bench.common import Harness
from tests.test_reliability_secrets import account_for_every_request
from tests.test_reliability_sync import Edit, apply, boundaries, position
from tests.test_server import merged

pytestmark = pytest.mark.model

GUARD = '''
import json, os, sys

_LOG = os.environ.get("CODEFILL_TEST_NET_LOG")


def _hook(event, args):
    if _LOG and event in ("socket.connect", "socket.getaddrinfo", "socket.sendto",
                          "socket.bind"):
        sock = args[0] if event != "socket.getaddrinfo" else None
        family = getattr(sock, "family", None)
        with open(_LOG, "a") as f:
            f.write(json.dumps({"event": event, "family": int(family) if family is not None
                                else None, "args": repr(args[1:])[:200]}) + "\\n")


if _LOG:
    sys.addaudithook(_hook)
    with open(_LOG, "a") as f:  # proof that the guard is installed in the server process
        f.write(json.dumps({"event": "guard-installed", "pid": os.getpid()}) + "\\n")
'''

UNITS_LF = ["a", "b", " ", "(", ")", "é", "中", "😀", "𝔘", "\n", "x = 1\n", "def f():\n    "]
UNITS_CRLF = [u.replace("\n", "\r\n") for u in UNITS_LF]


def snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under root (symlinks not followed): kind, size, content hash, mtime_ns."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink():
                out[str(p.relative_to(root))] = ("link", 0, os.readlink(p))
            elif p.is_dir():
                out[str(p.relative_to(root))] = ("dir", 0, "")
            else:
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                out[str(p.relative_to(root))] = ("file", st.st_size, f"{digest}:{st.st_mtime_ns}")
    return out


def random_text(rng: random.Random, units: list[str], n: int) -> str:
    return "".join(rng.choice(units) for _ in range(rng.randint(0, n)))


def test_session_hygiene_and_sync(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / ".git").mkdir()
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "util.py").write_text("def helper(x):\n    return x * 2\n")
    (root / "main.py").write_text("from pkg import util\n\nprint(util.helper(2))\n")
    (root / "win.py").write_bytes(b"import os\r\n\r\ndef g():\r\n    return os.sep\r\n")
    (root / "data.bin").write_bytes(os.urandom(256))
    os.symlink(root / "pkg", root / "pkg_link")
    before = snapshot(root)

    guard_dir = tmp_path / "guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(GUARD)
    net_log = tmp_path / "net.jsonl"
    record = tmp_path / "prompts.jsonl"
    env = {"PYTHONPATH": os.pathsep.join([str(guard_dir), os.environ.get("PYTHONPATH", "")]),
           "CODEFILL_TEST_NET_LOG": str(net_log)}
    h = Harness(root, settings=merged({"prompt": {"max_tokens": 4}}), env=env,
                record_prompts=record)
    h.start()
    rng = random.Random(9)
    checks = []
    try:
        docs = {"main.py": (root / "main.py").read_text(),
                "win.py": (root / "win.py").read_bytes().decode()}
        uris = {name: h.open(root / name, text) for name, text in docs.items()}
        for round_ in range(4):
            for name, units in (("main.py", UNITS_LF), ("win.py", UNITS_CRLF)):
                text = docs[name]
                for _ in range(15):
                    cuts = boundaries(text)
                    a, b = sorted((rng.choice(cuts), rng.choice(cuts)))
                    edit = Edit(a, b, random_text(rng, units, 4))
                    start, end = position(text, edit.start), position(text, edit.end)
                    h.change(uris[name], (start.line, start.character),
                             (end.line, end.character), edit.new)
                    text = apply(text, edit)
                docs[name] = text
                # The cursor at a random boundary; the prompt must hold the client's prefix.
                offset = rng.choice(boundaries(text))
                pos = position(text, offset)
                n_before = len(record.read_text().splitlines()) if record.exists() else 0
                result = h.request("codefill/complete", {"textDocument": {"uri": uris[name]},
                                                         "position": {"line": pos.line,
                                                                      "character": pos.character}})
                assert result is not None, (name, pos)
                lines = record.read_text().splitlines() if record.exists() else []
                prompts = [r["prompt"] for r in map(json.loads, lines[n_before:])
                           if r["kind"] == "generate"]
                checks.append((name, text[:offset], prompts, result))
        st = h.status()
    finally:
        assert h.stop() == 0

    # Sync: every completion that reached the model saw exactly the client's text before the
    # cursor (the tail of the prompt's prefix part; the prompt may trim a long file's start).
    compared = 0
    for name, prefix, prompts, result in checks:
        tail = prefix[-120:]
        for p in prompts:
            assert tail in p, (name, tail, p[-400:])
            compared += 1
    # Every request accounted for: each "model" reply put exactly one prompt on record while it
    # was served, the others (answered from an earlier generation, or nothing ran) none.
    counters = st["completion"]["counters"]
    recorded = [r["prompt"] for r in map(json.loads, record.read_text().splitlines())
                if r["kind"] == "generate"]  # not the candidates of those prompts
    by_source = account_for_every_request([c[3] for c in checks], recorded, counters)
    assert len(checks) == 8
    if counters["speculative"] == 0:
        assert compared == len(recorded) == by_source.get("model", 0), (compared, by_source)
        assert [len(c[2]) for c in checks] == [int(c[3]["source"] == "model") for c in checks]

    # Hygiene: the workspace is untouched, and no network was used.
    after = snapshot(root)
    assert after == before, {k: (before.get(k), after.get(k))
                             for k in set(before) | set(after) if before.get(k) != after.get(k)}
    events = [json.loads(x) for x in net_log.read_text().splitlines()]
    assert any(e["event"] == "guard-installed" for e in events), "the socket guard did not load"
    inet = [e for e in events if e["event"] != "guard-installed"
            and e.get("family") not in (int(__import__("socket").AF_UNIX),)]
    assert inet == [], inet
    print(f"\n{len(checks)} completions checked against the client's text ({compared} prompts,"
          f" {by_source});"
          f" {len(before)} workspace entries unchanged; network events: {len(events) - 1}")
