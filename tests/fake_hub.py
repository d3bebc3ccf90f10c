"""A local HTTP server that speaks the Hugging Face hub's file-download protocol.

Tests point ``HF_ENDPOINT`` at it, so ``huggingface_hub`` (and so ``codefill models pull``) talks
to it exactly as to the hub: ``HEAD``/``GET /OWNER/REPO/resolve/REVISION/FILE`` answered with
``X-Repo-Commit``, ``ETag``/``X-Linked-Etag`` (the sha256 of an LFS file), ``X-Linked-Size``,
``Accept-Ranges`` and ``206`` partial content for ``Range: bytes=N-``; errors carry the hub's
``X-Error-Code`` (``RepoNotFound``, ``EntryNotFound``, ``GatedRepo``). Nothing here reaches the
network.

Per file, a test can make the server misbehave the way real networks and hubs do:
``cut_after`` (close the connection after that many bytes of the body, once), ``corrupt`` (serve
other bytes than the sha256 announces), ``claimed_size`` (announce a size larger than the body),
``gated`` (refuse requests without the right token) and ``rate`` (bytes per second).

Run it alone: ``python -m tests.fake_hub --port 0 OWNER/REPO/FILE=PATH ...`` prints its URL.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

COMMIT = "0123456789abcdef0123456789abcdef01234567"
GOOD_TOKEN = "hf_test_token_allowed"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


@dataclass
class HubFile:
    data: bytes
    gated: bool = False
    cut_after: int | None = None
    """Close the connection after this many body bytes, on the first GET only."""
    corrupt: bool = False
    claimed_size: int | None = None
    rate: int | None = None
    """Bytes per second (None: as fast as loopback goes)."""
    sha256: str = ""
    gets: int = 0

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.data).hexdigest()


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass
class FakeHub:
    files: dict[str, HubFile] = field(default_factory=dict)
    """'OWNER/REPO/FILE' → file."""
    requests: list[Request] = field(default_factory=list)
    served_bytes: int = 0
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, repo: str, file: str, data: bytes, **kw: object) -> HubFile:
        f = HubFile(data=data, **kw)  # type: ignore[arg-type]
        self.files[f"{repo}/{file}"] = f
        return f

    def add_path(self, repo: str, file: str, path: Path, **kw: object) -> HubFile:
        return self.add(repo, file, Path(path).read_bytes(), **kw)

    def gets(self, file: str) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/" + file)]

    def start(self, port: int = 0) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                hub._answer(self, body=False)

            def do_GET(self) -> None:  # noqa: N802
                hub._answer(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "FakeHub":
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the protocol -------------------------------------------------------------------------

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        body = ('{"error": "%s"}' % message).encode()
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command == "GET":
            h.wfile.write(body)

    def _answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        with self._lock:
            self.requests.append(Request(h.command, h.path, h.headers.get("Range"),
                                         h.headers.get("Authorization")))
        m = _RESOLVE.match(h.path.split("?")[0])
        if not m:
            return self._error(h, 404, "RepoNotFound", "Repository not found")
        key = f"{m['repo']}/{m['file']}"
        f = self.files.get(key)
        if f is None:
            if any(k.startswith(m["repo"] + "/") for k in self.files):
                return self._error(h, 404, "EntryNotFound", f"{m['file']} does not exist")
            return self._error(h, 401, "RepoNotFound", "Repository not found")
        if f.gated and h.headers.get("Authorization") != f"Bearer {GOOD_TOKEN}":
            return self._error(h, 403, "GatedRepo", f"Access to model {m['repo']} is restricted "
                                                    "and you are not in the authorized list.")
        data = f.data if not f.corrupt else bytes(b ^ 0xFF for b in f.data)
        size = f.claimed_size or len(data)
        start = 0
        rng = h.headers.get("Range")
        if rng:
            rm = re.match(r"bytes=(\d+)-(\d*)$", rng)
            if rm:
                start = int(rm[1])
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", COMMIT)
        h.send_header("ETag", f'"{f.sha256}"')
        h.send_header("X-Linked-Etag", f'"{f.sha256}"')
        h.send_header("X-Linked-Size", str(size))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(max(size - start, 0)))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        h.end_headers()
        if not body:
            return
        f.gets += 1
        cut = f.cut_after if f.gets == 1 else None
        sent = 0
        try:
            for chunk in _chunks(data[start:], 64 * 1024):
                if cut is not None and sent + len(chunk) > cut:
                    chunk = chunk[:cut - sent]
                    h.wfile.write(chunk)
                    with self._lock:
                        self.served_bytes += len(chunk)
                    h.wfile.flush()
                    h.close_connection = True
                    # Drop the connection mid-body, as a flaky network does.
                    import socket

                    h.connection.shutdown(socket.SHUT_RDWR)
                    return
                h.wfile.write(chunk)
                sent += len(chunk)
                with self._lock:
                    self.served_bytes += len(chunk)
                if f.rate:
                    time.sleep(len(chunk) / f.rate)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True


def _chunks(data: bytes, n: int) -> Iterator[bytes]:
    for i in range(0, len(data), n):
        yield data[i:i + n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("files", nargs="*", metavar="OWNER/REPO/FILE=PATH")
    args = ap.parse_args()
    hub = FakeHub()
    for spec in args.files:
        name, _, path = spec.partition("=")
        owner, repo, file = name.split("/", 2)
        hub.add_path(f"{owner}/{repo}", file, Path(path))
    hub.start(args.port)
    print(hub.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main()
