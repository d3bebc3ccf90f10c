"""`codefill serve --tcp`: loopback by default, a warning for exposed addresses, one-line errors
for bad values, and the stdio message-size cap on TCP too. Real server processes, real sockets;
only `initialize` is sent, so the model never loads."""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from lsp_server.errors import CodefillError
from lsp_server.transport import is_loopback, parse_tcp_address
from tests.conftest import REPO

START_TIMEOUT = 60


class TcpServer:
    """`codefill serve --tcp VALUE` in a subprocess; stderr is read for its listening line."""

    def __init__(self, value: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lsp_server.cli.main", "serve", "--tcp", value], cwd=REPO,
            env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.stderr: list[str] = []
        self.port = self._listening_port()

    def _listening_port(self) -> int:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.5)
            if not ready:
                continue
            line = self.proc.stderr.readline().decode()
            if not line:
                break
            self.stderr.append(line)
            if "listening on " in line:
                address = line.split("listening on ", 1)[1].split()[0]
                return int(address.rpartition(":")[2])
        raise AssertionError(f"no listening line; stderr: {self.stderr}")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def stop(self) -> str:
        """Kill the server (if still running); everything it wrote on stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.stderr.append(self.proc.stderr.read().decode(errors="replace"))
            self.proc.stderr.close()
        return "".join(self.stderr)


@pytest.fixture
def servers() -> Iterator[list[TcpServer]]:
    started: list[TcpServer] = []
    yield started
    for server in started:
        server.stop()


def start(servers: list[TcpServer], value: str, **env: str) -> TcpServer:
    server = TcpServer(value, env)
    servers.append(server)
    return server


def frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


INITIALIZE = frame({"jsonrpc": "2.0", "id": 7, "method": "initialize",
                    "params": {"capabilities": {}, "processId": None}})


def replies_until(conn: socket.socket, msg_id: int) -> list[dict]:
    """Read framed messages until the reply to ``msg_id``; all of them, in order."""
    stream = conn.makefile("rb")
    seen: list[dict] = []
    while not seen or seen[-1].get("id") != msg_id:
        header = stream.readline()
        assert header.startswith(b"Content-Length: "), (header, seen)
        length = int(header.split(b":")[1])
        while stream.readline().strip():  # other headers, then the blank line
            pass
        seen.append(json.loads(stream.read(length)))
    return seen


def listening_ipv4(port: int) -> set[str]:
    """The IPv4 addresses listening on ``port``, from /proc/net/tcp."""
    path = Path("/proc/net/tcp")
    if not path.exists():
        pytest.skip("no /proc/net/tcp")
    found = set()
    for row in path.read_text().splitlines()[1:]:
        fields = row.split()
        address, _, port_hex = fields[1].partition(":")
        if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
            found.add(socket.inet_ntoa(struct.pack("=I", int(address, 16))))
    return found


# --- parsing ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expect"), [
    ("2087", ("127.0.0.1", 2087)),
    (":2087", ("127.0.0.1", 2087)),
    ("0", ("127.0.0.1", 0)),
    ("localhost:2087", ("localhost", 2087)),
    ("0.0.0.0:2087", ("0.0.0.0", 2087)),
    ("[::1]:2087", ("::1", 2087)),
])
def test_tcp_values(value: str, expect: tuple[str, int]) -> None:
    assert parse_tcp_address(value) == expect


@pytest.mark.parametrize("value", ["abc", "", ":", "70000", "127.0.0.1:65536", "host:x",
                                   "127.0.0.1:-1", "::1:2087", "bad host:1"])
def test_bad_tcp_values_are_refused(value: str) -> None:
    with pytest.raises(CodefillError):
        parse_tcp_address(value)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.4.5.6", True), ("::1", True), ("localhost", True),
    ("LOCALHOST", True), ("0.0.0.0", False), ("::", False), ("192.168.1.10", False),
    ("example.com", False),
])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# --- the CLI ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["abc", "70000", "127.0.0.1:99999", "127.0.0.1:port"])
def test_bad_tcp_value_exits_2_with_one_line(value: str) -> None:
    done = subprocess.run([sys.executable, "-m", "lsp_server.cli.main", "serve", "--tcp", value],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codefill: error: --tcp"), done.stderr
    assert repr(value) in lines[0] and "e.g. --tcp" in lines[0]
    assert done.stdout == ""


@pytest.mark.parametrize("value", ["0", ":0"])
def test_bare_port_listens_on_loopback_only(servers: list[TcpServer], value: str) -> None:
    server = start(servers, value)
    assert f"listening on 127.0.0.1:{server.port}" in "".join(server.stderr)
    assert listening_ipv4(server.port) == {"127.0.0.1"}
    assert not any("warning" in line.lower() for line in server.stderr), server.stderr
    with server.connect() as conn:
        conn.sendall(INITIALIZE)
        assert "capabilities" in replies_until(conn, 7)[-1]["result"]


def test_non_loopback_address_warns(servers: list[TcpServer]) -> None:
    server = start(servers, "0.0.0.0:0")
    text = "".join(server.stderr)
    assert f"0.0.0.0:{server.port}" in text and "not a loopback address" in text
    assert "no authentication" in text and "read the code" in text
    assert "WARNING" in text or "warning" in text
    assert listening_ipv4(server.port) == {"0.0.0.0"}
    with server.connect() as conn:  # still served: the user asked for it
        conn.sendall(INITIALIZE)
        assert "capabilities" in replies_until(conn, 7)[-1]["result"]


def test_address_in_use_is_a_one_line_error(servers: list[TcpServer]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "lsp_server.cli.main", "serve", "--tcp",
                               str(port)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("codefill: error: cannot listen on 127.0.0.1:"), done.stderr


# --- the message-size cap on TCP --------------------------------------------------------------

def test_oversized_body_on_tcp_is_skipped_and_the_next_message_answered(
        servers: list[TcpServer]) -> None:
    server = start(servers, "0", CODEFILL_MAX_MESSAGE_BYTES="100000")
    big = b'{"jsonrpc": "2.0", "method": "x", "params": "' + b"y" * 3_000_000 + b'"}'
    with server.connect() as conn:
        conn.sendall(b"Content-Length: %d\r\n\r\n" % len(big) + big + INITIALIZE)
        seen = replies_until(conn, 7)
    assert "capabilities" in seen[-1]["result"]
    assert not any(m.get("method") == "window/showMessage" for m in seen), seen
    assert f"message of {len(big)} bytes exceeds the 100000 byte limit" in server.stop()


def test_overlong_header_line_on_tcp_is_skipped(servers: list[TcpServer]) -> None:
    server = start(servers, "0")
    with server.connect() as conn:
        conn.sendall(b"X-Junk: " + b"z" * 200_000 + b"\r\n" + INITIALIZE)
        assert "capabilities" in replies_until(conn, 7)[-1]["result"]
    assert "header line over the stream's limit" in server.stop()


def test_connection_closed_inside_a_skipped_body_stops_the_server(
        servers: list[TcpServer]) -> None:
    server = start(servers, "0", CODEFILL_MAX_MESSAGE_BYTES="1000")
    with server.connect() as conn:
        conn.sendall(b"Content-Length: 50000\r\n\r\n" + b"y" * 20_000)
    assert server.proc.wait(timeout=30) == 0
    assert "message of 50000 bytes exceeds the 1000 byte limit" in server.stop()
