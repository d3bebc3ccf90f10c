"""The server driven without a client library: :class:`RawServer` writes raw JSON-RPC bytes to
``codefill serve`` over stdio (malformed messages, long soaks)."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time

from .paths import REPO


class RawServer:
    """`codefill serve` driven over stdio with raw JSON-RPC bytes, no client library (malformed
    messages, long soaks). A reader thread puts every message the server writes (replies, its own
    requests and notifications) on ``replies``, then ``{"eof": True}`` when its stdout closes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "lsp_server.cli.main", "serve"],
                                     cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.replies: "queue.Queue[dict]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            header = out.readline()
            if not header:
                self.replies.put({"eof": True})
                return
            if header.startswith(b"Content-Length:"):
                length = int(header.split(b":")[1])
                while out.readline().strip():  # other headers, then the blank line
                    pass
                self.replies.put(json.loads(out.read(length)))

    def send_bytes(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, obj: object) -> None:
        body = json.dumps(obj).encode()
        self.send_bytes(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def reply(self, msg_id: object, timeout: float = 30) -> dict:
        """The reply to request ``msg_id``; what comes before it is dropped."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.replies.get(timeout=max(0.01, deadline - time.monotonic()))
            if msg.get("id") == msg_id and "method" not in msg:
                return msg
        raise TimeoutError(msg_id)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
