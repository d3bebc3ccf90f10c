"""A huge workspace through the real language server: index time, memory, and whether the editor
is still answered while the index builds.

    python bench/big_tree.py                   # 100,000 files (docs/reliability.md, "Huge tree")
    python bench/big_tree.py --files 20000     # what tests/test_reliability_fs.py runs

Generates ``--files`` small Python files (100 a package, each importing two others), starts
`codefill serve` over stdio on it with repository context on (watching included), and while the
index builds plays an editor: ``codefill/status`` every 100 ms and, one at a time without
waiting for them, a few keystrokes each followed by a completion request in an open file. The
server starts with repository context off; once the model is loaded it is switched on
(didChangeConfiguration), so the whole build runs while the model serves the keystrokes.

Figures: generation time, index time (the setting → the status reports the index ready), files
and import edges indexed, status and completion latency during the build, the first completion
with context after it, the server's RSS (sampled at every status poll), peak RSS (VmHWM) and
what the index added to the peak with the model loaded, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lsprotocol import types  # noqa: E402

from lsp_server.protocol import plain  # noqa: E402
from bench.common import Harness  # noqa: E402

PER_DIR = 100
SETTINGS = {"completion": {"debounce_min_ms": 0, "log_level": "info"},
            "prompt": {"max_tokens": 4},
            "engine": {"context_size": 2048, "time_budget_ms": 60000}}


def generate_tree(root: Path, n: int) -> None:
    """``n`` small Python files, PER_DIR a package (``__init__.py`` included), each importing
    two others (deterministic)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / ".git").mkdir(exist_ok=True)
    for d in range(n // PER_DIR):
        pkg = root / f"p{d:04d}"
        pkg.mkdir()
        (pkg / "__init__.py").write_bytes(b"")
        for i in range(PER_DIR - 1):
            k = d * PER_DIR + i
            a, b = (k * 7919) % n, (k * 104729) % n
            src = (f"from p{a // PER_DIR:04d} import m{a % PER_DIR}\n"
                   f"from p{b // PER_DIR:04d} import m{b % PER_DIR}\n\n"
                   f"def f{k}(x):\n    return x + {k}\n")
            with open(pkg / f"m{i}.py", "w") as fh:
                fh.write(src)


def tree_state(root: Path) -> dict[str, tuple[int, int, int]]:
    """(mode, size, mtime_ns) of every entry, symlinks not followed: what a write changes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[p] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def proc_mem(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def server_pid(h: Harness) -> int:
    assert h.client is not None and h.client._server is not None
    return h.client._server.pid


async def request(h: Harness, method: str, params: Any) -> Any:
    assert h.client is not None
    return await h.client.protocol.send_request_async(method, params)


def run(n_files: int, tmp: Path | None = None, *, keystrokes: int = 6, timeout_s: float = 600,
        env: dict[str, str] | None = None, tmp_dir: str | None = None,
        complete_after: bool = True) -> dict[str, Any]:
    """Generate the tree under ``tmp`` (a new temporary directory if None), run the session,
    remove the tree; returns the figures."""
    own = tmp is None
    tmp = Path(tempfile.mkdtemp(prefix="codefill-big-tree-", dir=tmp_dir)) if tmp is None else tmp
    root = tmp / "ws"
    record = tmp / "prompts.jsonl"
    figures: dict[str, Any] = {"files": n_files, "load_start": os.getloadavg()}
    try:
        t0 = time.monotonic()
        generate_tree(root, n_files)
        figures["generate_s"] = round(time.monotonic() - t0, 1)
        before = tree_state(root)
        figures.update(_session(root, env or {}, record, keystrokes, timeout_s, complete_after))
        after = tree_state(root)
        figures["written"] = sorted(os.path.relpath(p, root) for p in set(before) | set(after)
                                    if before.get(p) != after.get(p))
        figures["prompts"] = (sum(json.loads(x)["kind"] == "generate" for x in record.open())
                              if record.exists() else 0)
        figures["load_end"] = os.getloadavg()
        return figures
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if own:
            shutil.rmtree(tmp, ignore_errors=True)


def _session(root: Path, env: dict[str, str], record: Path, keystrokes: int, timeout_s: float,
             complete_after: bool) -> dict[str, Any]:
    h = Harness(root, settings=SETTINGS, env=env, record_prompts=record)
    status_ms: list[float] = []
    completion_ms: list[float] = []
    rss: list[int] = []
    states: list[str] = []
    served = 0  # completions sent during the build and answered with text
    try:
        # Context off until the model is loaded, then on (a user enabling it): the whole index
        # then builds while the model serves the keystrokes.
        h.settings = {**SETTINGS, "context": {"enabled": False}}
        h.start()
        pid = server_pid(h)
        model_rss = proc_mem(pid)["VmHWM"]
        uri = h.open(root / "p0000" / "edit.py", "def add(a, b):\n    return ")
        h.settings = SETTINGS
        t_init = time.monotonic()
        h.call(h.client.workspace_did_change_configuration,
               types.DidChangeConfigurationParams(settings={"codefill": SETTINGS}))
        n = 0
        pending: Any = None  # the completion in flight (the editor does not wait for it)
        t_req = 0.0

        def collect(reply: Any) -> None:
            nonlocal served
            completion_ms.append((time.monotonic() - t_req) * 1000)
            reply = plain(reply)
            served += bool(reply and reply.get("text"))

        while True:
            t = time.monotonic()
            st = h.status()
            status_ms.append((time.monotonic() - t) * 1000)
            rss.append(proc_mem(pid)["VmRSS"])
            state = st["context"]["state"]
            if not states or states[-1] != state:
                states.append(state)
            if pending is not None and pending.done():
                collect(pending.result())
                pending = None
            if state not in ("off", "idle", "indexing"):
                break
            if pending is None and n < keystrokes and state == "indexing":
                n += 1
                h.change(uri, (1, 10 + n), (1, 10 + n), "a")  # type one character
                t_req = time.monotonic()
                pending = asyncio.run_coroutine_threadsafe(request(h, "codefill/complete", {
                    "textDocument": {"uri": uri},
                    "position": {"line": 1, "character": 11 + n}}), h.loop)
            if time.monotonic() - t_init > timeout_s:
                raise TimeoutError(f"index not ready after {timeout_s} s: {st['context']}")
            time.sleep(0.1)
        if pending is not None:  # still generating when the index was ready
            collect(pending.result(timeout_s))
        ready_s = time.monotonic() - t_init
        mem = proc_mem(pid)
        after, after_ms = None, None
        if complete_after:  # the first completion with context in a file of the tree
            rel = "p0001/m5.py"
            src = (root / rel).read_text()
            t = time.monotonic()
            line = src.split("\n")[4]  # "    return x + k": complete at its end
            after = h.request("codefill/complete", {
                "textDocument": {"uri": h.open(root / rel, src)},
                "position": {"line": 4, "character": len(line)}})
            after_ms = (time.monotonic() - t) * 1000
        final = h.status()
    finally:
        code = h.stop()
    return {
        "states": states, "index_ready_s": round(ready_s, 1),
        "indexed": final["context"]["files"], "source_files": final["context"]["source_files"],
        "edges": final["context"]["edges"], "watching": final["context"]["watching"],
        "model_state": final["model"]["state"],
        "status_polls": len(status_ms), "status_ms_p50": round(statistics.median(status_ms), 1),
        "status_ms_p95": round(sorted(status_ms)[int(0.95 * (len(status_ms) - 1))], 1),
        "status_ms_max": round(max(status_ms), 1),
        "completions_during_index": len(completion_ms), "served_during_index": served,
        "completion_ms_max": round(max(completion_ms), 1) if completion_ms else None,
        "completion_after_index_ms": round(after_ms, 1) if after_ms is not None else None,
        "completion_after_index": after,
        "rss_model_loaded_mb": round(model_rss / 1024, 1),
        "rss_max_mb": round(max(rss) / 1024, 1), "rss_peak_mb": round(mem["VmHWM"] / 1024, 1),
        "rss_index_added_mb": round((mem["VmHWM"] - model_rss) / 1024, 1),
        "rss_ready_mb": round(mem["VmRSS"] / 1024, 1), "exit_code": code}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--keystrokes", type=int, default=6)
    ap.add_argument("--dir", help="where to generate the tree (default: the temporary "
                                  "directory; /dev/shm keeps a busy disk out of the figures)")
    args = ap.parse_args()
    print(json.dumps(run(args.files, keystrokes=args.keystrokes, tmp_dir=args.dir), indent=1))


if __name__ == "__main__":
    main()
