"""Soak: many requests mixing typing, cancels, didChange and configuration changes across several
documents, against the real `codefill serve` over raw stdio.

    python bench/soak.py                 # the full soak: 10,000 completion requests
    python bench/soak.py --switch 0.2    # ... typed in bursts (~5 steps a document)
    python bench/soak.py --switch 0.2 --max-chars 800   # ... with shorter documents (faster)
    python bench/soak.py --requests 300  # the CI variant (tests/test_reliability_soak.py)

By default every step picks a random document: the worst case for the model's KV cache (one
cache, four documents: most requests re-evaluate a whole prompt), so a request costs seconds of
CPU on a 2-core machine and the 10k run takes many hours. ``--switch P`` moves to a random
document with probability P per step instead (bursts of typing, as people type); the documents
still interleave, with requests for several of them in flight.

Figures: requests served (non-empty suggestion), empty, cancelled, errors, stale completions
returned, max RSS and RSS growth of the server process. RSS is sampled every 100 requests; the
output carries a timeline (every 1,000 requests), the RSS after the first 2,000 requests and the
growth from there to the end (caches and the allocator have settled by then, so growth after it
is what a leak would show; a fifth of the run for shorter runs). ``--progress FILE`` appends
the running figures as JSON lines every 500 requests, so a long run can be watched (and is not
lost if it is stopped).

Staleness is checked from the stream order of the server's replies: every didChange is followed
by a ``codefill/status`` *barrier*; pygls applies notifications in order, so once the barrier's
reply has been read, the server holds that version. A non-empty suggestion whose reply comes
after the barrier of a later version of its document, and that later version's text differs from
the text at the request, is stale (it was computed for, or served against, text the client no
longer has). It must never happen. When the text came back to what it was (a character typed,
then deleted) the suggestion still fits the document: those are counted as `served_after_undo`.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RawServer  # noqa: E402

SEEDS = ["def total(items):\n    result = 0\n    for x in items:\n        ",
         "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n        ",
         "import os\n\n\ndef list_files(path):\n    return os.",
         "# 😀 unicode 中文\r\ndef greet(name):\r\n    print("]
TYPED = "abcdefghij_ (),.xyz\n"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Soak(RawServer):
    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.next_id = 0

    def request(self, method: str, params: Any) -> str:
        self.next_id += 1
        msg_id = f"q{self.next_id}"
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return msg_id

    def notify(self, method: str, params: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})


def settings(rng: random.Random) -> dict[str, Any]:
    return {"prompt": {"max_tokens": rng.choice([3, 4, 6])},
            "completion": {"debounce_min_ms": rng.choice([0, 10, 30]),
                           "debounce_max_ms": 150, "mode": rng.choice(["auto", "single"])},
            "engine": {"context_size": 2048, "time_budget_ms": 60000}}


def run(n_requests: int, seed: int = 0, max_outstanding: int = 6,
        timeout_s: float = 3600, progress: str | None = None,
        switch: float = 1.0, max_chars: int = 3000) -> dict[str, Any]:
    rng = random.Random(seed)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / ".git").mkdir()
        s = Soak(root)
        try:
            return _run(s, rng, n_requests, max_outstanding, t0, timeout_s, progress, switch,
                        max_chars)
        finally:
            s.close()


def _run(s: Soak, rng: random.Random, n_requests: int, max_outstanding: int, t0: float,
         timeout_s: float, progress: str | None = None, switch: float = 1.0,
         max_chars: int = 3000) -> dict[str, Any]:
    init = s.request("initialize", {"capabilities": {}, "processId": None,
                                    "rootUri": s.root.as_uri(),
                                    "initializationOptions": settings(rng)})
    docs: dict[str, str] = {}
    version: dict[str, int] = {}
    confirmed: dict[str, int] = {}            # highest version whose barrier reply was read
    barriers: dict[str, tuple[str, int]] = {}  # barrier id -> (uri, version)
    pending: dict[str, tuple[str, int]] = {}   # completion id -> (uri, version at request)
    texts: dict[tuple[str, int], str] = {}     # (uri, version) -> text, for stale reports
    stale_examples: list[dict[str, Any]] = []
    cancelled_ids: set[str] = set()
    figures = {"requests": 0, "served": 0, "empty": 0, "cancelled": 0, "errors": 0,
               "stale": 0, "served_after_undo": 0, "did_change": 0, "cancels_sent": 0,
               "config_changes": 0, "document_switches": 0}
    rss: list[int] = []
    timeline: list[tuple[int, float, int]] = []  # (requests, seconds, RSS kB)
    load_start = os.getloadavg()

    def drain(block: bool) -> None:
        while True:
            try:
                msg = s.replies.get(timeout=120 if block else 0)
            except queue.Empty:
                if block:
                    raise TimeoutError(f"no reply; pending {len(pending)}")
                return
            block = False
            if msg.get("eof"):
                raise RuntimeError("the server exited")
            mid = msg.get("id")
            if "method" in msg or mid is None:
                if msg.get("method") == "workspace/configuration" and mid is not None:
                    s.send({"jsonrpc": "2.0", "id": mid, "result": [None]})
                continue
            if mid in barriers:
                uri, v = barriers.pop(mid)
                confirmed[uri] = max(confirmed.get(uri, 0), v)
            elif mid in pending:
                uri, v = pending.pop(mid)
                if "error" in msg:
                    key = "cancelled" if msg["error"].get("code") == -32800 else "errors"
                    figures[key] += 1
                    continue
                items = (msg.get("result") or {}).get("items") or []
                if items and items[0].get("insertText"):
                    figures["served"] += 1
                    seen = confirmed.get(uri, 0)
                    if seen > v and texts.get((uri, seen)) == texts.get((uri, v)):
                        # Edited and changed back (type, then backspace) before the reply: the
                        # suggestion fits the text the server holds. Counted, not stale.
                        figures["served_after_undo"] += 1
                    elif seen > v:
                        figures["stale"] += 1
                        if len(stale_examples) < 5:
                            stale_examples.append({
                                "id": mid, "uri": uri.rsplit("/", 1)[1], "version": v,
                                "confirmed": confirmed[uri], "client_version": version[uri],
                                "insert": items[0]["insertText"],
                                "text_at_request_tail": texts.get((uri, v), "")[-60:],
                                "text_confirmed_tail": texts.get((uri, confirmed[uri]),
                                                                 "")[-60:],
                                "cancel_sent": mid in cancelled_ids})
                else:
                    figures["empty"] += 1

    while True:  # initialize
        msg = s.replies.get(timeout=120)
        if msg.get("id") == init:
            break
    s.notify("initialized", {})
    for i, text in enumerate(SEEDS):
        uri = (s.root / f"doc{i}.py").as_uri()
        docs[uri], version[uri] = text, 1
        s.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "python", "version": 1, "text": text}})
    # Wait for the model.
    while True:
        b = s.request("codefill/status", {})
        msg = s.replies.get(timeout=120)
        while msg.get("id") != b:
            msg = s.replies.get(timeout=120)
        if msg["result"]["model"]["state"] == "ready":
            break
        assert msg["result"]["model"]["state"] != "failed", msg
        time.sleep(0.2)
    rss.append(rss_kb(s.proc.pid))

    def end_pos(text: str) -> dict[str, int]:
        lines = text.replace("\r\n", "\n").split("\n")
        return {"line": len(lines) - 1,
                "character": len(lines[-1].encode("utf-16-le")) // 2}

    def edit(uri: str, new_text: str, start: dict[str, int], end: dict[str, int],
             after: str) -> None:
        version[uri] += 1
        docs[uri] = after
        texts[(uri, version[uri])] = after
        s.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": version[uri]},
            "contentChanges": [{"range": {"start": start, "end": end}, "text": new_text}]})
        barriers[s.request("codefill/status", {})] = (uri, version[uri])
        figures["did_change"] += 1

    current: str | None = None
    while figures["requests"] < n_requests:
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"soak over {timeout_s} s: {figures}")
        # switch >= 1: a random document every step (and no extra draw: seeds replay as before)
        if current is None or switch >= 1.0 or rng.random() < switch:
            uri = rng.choice(list(docs))
            figures["document_switches"] += uri != current
            current = uri
        uri = current
        text = docs[uri]
        r = rng.random()
        if r < 0.10 and len(text) > 40:  # delete the last character (backspace)
            lines = text.replace("\r\n", "\n").split("\n")
            if lines[-1]:
                pos = end_pos(text)
                last = lines[-1]
                start = {"line": pos["line"],
                         "character": pos["character"] - len(last[-1].encode("utf-16-le")) // 2}
                edit(uri, "", start, pos, text[:-1])
        elif r < 0.13:  # an edit at the top of the file (invalidates every suggestion)
            edit(uri, "#", {"line": 0, "character": 0}, {"line": 0, "character": 0}, "#" + text)
        elif r < 0.15:
            s.notify("workspace/didChangeConfiguration", {"settings": {"codefill": settings(rng)}})
            figures["config_changes"] += 1
        else:  # type one character, then ask
            ch = rng.choice(TYPED)
            if "\r\n" in text and ch == "\n":
                ch = "\r\n"
            pos = end_pos(text)
            edit(uri, ch, pos, pos, text + ch)
            if len(docs[uri]) > max_chars:  # keep documents bounded: start over from the seed
                i = int(uri.rsplit("doc", 1)[1].split(".")[0])
                version[uri] += 1
                docs[uri] = SEEDS[i]
                texts[(uri, version[uri])] = SEEDS[i]
                s.notify("textDocument/didChange", {
                    "textDocument": {"uri": uri, "version": version[uri]},
                    "contentChanges": [{"text": SEEDS[i]}]})
                barriers[s.request("codefill/status", {})] = (uri, version[uri])
            rid = s.request("textDocument/inlineCompletion", {
                "textDocument": {"uri": uri}, "position": end_pos(docs[uri]),
                "context": {"triggerKind": 2}})
            pending[rid] = (uri, version[uri])
            texts[(uri, version[uri])] = docs[uri]
            figures["requests"] += 1
            if rng.random() < 0.15:
                s.notify("$/cancelRequest", {"id": rid})
                cancelled_ids.add(rid)
                figures["cancels_sent"] += 1
            elif rng.random() < 0.3:  # the user pauses: wait for the suggestion
                while rid in pending:
                    drain(block=True)
        drain(block=False)
        while len(pending) >= max_outstanding:
            drain(block=True)
        if figures["requests"] % 100 == 0 and (not timeline
                                               or timeline[-1][0] != figures["requests"]):
            rss.append(rss_kb(s.proc.pid))
            timeline.append((figures["requests"], time.monotonic() - t0, rss[-1]))
            if progress and figures["requests"] % 500 == 0:
                with open(progress, "a", encoding="utf-8") as f:
                    f.write(json.dumps({**figures, "seconds": round(time.monotonic() - t0, 1),
                                        "rss_mb": round(rss[-1] / 1024, 1),
                                        "loadavg": os.getloadavg()}) + "\n")
    while pending or barriers:
        drain(block=True)
    rss.append(rss_kb(s.proc.pid))
    b = s.request("codefill/status", {})
    msg = s.replies.get(timeout=120)
    while msg.get("id") != b:
        msg = s.replies.get(timeout=120)
    status = msg["result"]
    # RSS after the first 2,000 requests (a fifth of shorter runs): the settled baseline.
    warm_n = min(2000, max(100, n_requests // 5 // 100 * 100))
    after_2k = next((kb for n, _, kb in timeline if n >= warm_n), None)
    figures.update({
        "seconds": round(time.monotonic() - t0, 1),
        "rss_start_mb": round(rss[0] / 1024, 1), "rss_max_mb": round(max(rss) / 1024, 1),
        "rss_end_mb": round(rss[-1] / 1024, 1),
        "warmup_requests": warm_n,
        "rss_after_warmup_mb": round(after_2k / 1024, 1) if after_2k else None,
        "rss_growth_warmup_to_end_mb": (round((rss[-1] - after_2k) / 1024, 1)
                                        if after_2k else None),
        "rss_max_after_warmup_mb": (round(max(kb for n, _, kb in timeline if n >= warm_n) / 1024,
                                          1) if after_2k else None),
        "rss_timeline": [{"requests": n, "seconds": round(t, 1), "rss_mb": round(kb / 1024, 1)}
                         for n, t, kb in timeline if n % 1000 == 0 or n == warm_n],
        "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
        "server_counters": status["completion"]["counters"],
        "engine": {k: status["model"].get("engine", {}).get(k)
                   for k in ("requests", "cancelled")},
        "stale_examples": stale_examples,
        "alive": s.proc.poll() is None})
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=24 * 3600,
                    help="give up after this many seconds (default 24 h)")
    ap.add_argument("--progress", help="append running figures here every 500 requests")
    ap.add_argument("--switch", type=float, default=1.0,
                    help="probability that a step moves to a random document (1: every step, "
                         "the adversarial mix; 0.2: bursts of ~5 steps in one document, as "
                         "people type)")
    ap.add_argument("--max-chars", type=int, default=3000,
                    help="a document longer than this starts over from its seed (the prompt "
                         "size, hence a request's cost, grows with it)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    figures = run(args.requests, args.seed, timeout_s=args.timeout, progress=args.progress,
                  switch=args.switch, max_chars=args.max_chars)
    figures["switch"] = args.switch
    figures["max_chars"] = args.max_chars
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
