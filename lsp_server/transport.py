"""The TCP transport of ``codefill serve --tcp``: loopback unless told otherwise, capped bodies.

The server has no authentication: whoever can connect can send it code and read what it
answers. So a bare port (``--tcp 2087`` or ``--tcp :2087``) binds 127.0.0.1, and any other
address is used only because the user named it, with a warning when it is not loopback.

:func:`serve_tcp` does what pygls' ``start_tcp`` does (one connection; the server stops when it
ends), except that the connection's StreamReader is wrapped in
:class:`~lsp_server.protocol.CappedStreamReader`, so a huge Content-Length is discarded in
chunks exactly as on stdio.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sys
from threading import Event
from typing import Any

from pygls.io_ import run_async

from .errors import CodefillError
from .protocol import CappedStreamReader

log = logging.getLogger("codefill.server")

DEFAULT_HOST = "127.0.0.1"
EXAMPLE = "e.g. --tcp 2087 (127.0.0.1) or --tcp 127.0.0.1:2087"


def parse_tcp_address(value: str) -> tuple[str, int]:
    """``PORT``, ``:PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` → (host, port); a missing host is
    127.0.0.1. Port 0 lets the system pick (the listening line says which)."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise CodefillError(f"--tcp: an IPv6 host needs brackets, got {value!r}",
                            "e.g. --tcp [::1]:2087")
    if not port_text.isdigit() or not (0 <= int(port_text) <= 65535):
        raise CodefillError(f"--tcp needs a port from 0 to 65535, got {value!r}", EXAMPLE)
    if any(c.isspace() for c in host):
        raise CodefillError(f"--tcp: bad host in {value!r}", EXAMPLE)
    return host or DEFAULT_HOST, int(port_text)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and "localhost"; anything else (other names included) is not."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int | str) -> str:
    return (f"listening on {host}:{port} (tcp), not a loopback address: the server has no "
            f"authentication, so anyone who can reach {host}:{port} can send it requests and "
            f"read the code it is sent; use --tcp 127.0.0.1:{port} (or an SSH tunnel) unless "
            f"that network is yours alone")


def _say(level: int, message: str) -> None:
    """Log ``message``, and make sure it reaches stderr once even when the log goes to a file
    or is quieter than ``level``."""
    log.log(level, message)
    to_stderr = log.isEnabledFor(level) and any(
        type(h) is logging.StreamHandler and getattr(h, "stream", None) is sys.stderr
        and level >= h.level for h in logging.getLogger().handlers)
    if not to_stderr:
        prefix = "warning: " if level >= logging.WARNING else ""
        print(f"codefill: {prefix}{message}", file=sys.stderr, flush=True)


def serve_tcp(server: Any, host: str, port: int) -> None:
    """Serve one LSP connection on host:port with pygls' message loop (blocks until it ends)."""
    server._stop_event = stop_event = Event()  # what pygls' shutdown() sets and closes
    display = f"[{host}]" if ":" in host else host

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        log.debug("client connected from %s", writer.get_extra_info("peername"))
        server.protocol.set_writer(writer)
        await run_async(stop_event=stop_event, reader=CappedStreamReader(reader),
                        protocol=server.protocol, logger=log,
                        error_handler=server.report_server_error)
        log.debug("connection closed")
        server.shutdown()

    async def main() -> None:
        try:
            server._server = await asyncio.start_server(connection, host, port)
        except OSError as exc:
            raise CodefillError(f"cannot listen on {display}:{port}: {exc.strerror or exc}",
                                "pick another port, or an address of this machine") from exc
        ports = ",".join(sorted({str(sock.getsockname()[1]) for sock in server._server.sockets}))
        if is_loopback(host):
            _say(logging.INFO, f"listening on {display}:{ports} (tcp)")
        else:
            _say(logging.WARNING, exposure_warning(display, ports))
        async with server._server:
            try:
                await server._server.serve_forever()
            except asyncio.CancelledError:  # shutdown() closed the server
                pass

    asyncio.run(main())
