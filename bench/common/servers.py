"""Remote completion servers on 127.0.0.1 (what they do with FIM: tests/remote_servers.py): the
process plumbing both launchers share. :class:`RunningServer` is a started server;
:func:`free_port` picks a port.

* llama.cpp's ``llama-server`` (:mod:`bench.common.llama_server`), built from the sdist of the
  installed llama-cpp-python by ``scripts/build-llama-server`` (``scripts/test`` runs it before
  pytest) into ``$XDG_CACHE_HOME/codefill/llama-server/<version>/``.
* llama-cpp-python's OpenAI-compatible server (:mod:`bench.common.openai_server`;
  ``python -m llama_cpp.server``, the ``server`` extra; listed in codefill's ``dev`` extra).

Both run with llama.cpp's extra weight buffers (repacking, AMX) off: on this project's build
machines llama.cpp's AMX matrix multiply segfaults on Q4_K models (ggml-org/llama.cpp#20824;
llama-cpp-python with the embedded model dies with SIGSEGV on its first token). llama-server
takes ``--no-repack`` (common/arg.cpp: it sets ``no_extra_bufts``); llama-cpp-python's server
has no such setting, so it is started through a small bootstrap that clears
``llama_model_params.use_extra_bufts``, as lsp_server/engine/llama_engine.py does in-process.
"""

from __future__ import annotations

import dataclasses
import http.client
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Mapping

#: Servers get this long to load the model and answer (the test machines are loaded).
READY_TIMEOUT = 300.0
THREADS = 2


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class RunningServer:
    """A server process on 127.0.0.1; stop() (or the with block) ends it."""

    kind: str  # "llama-server" | "llama-cpp-python"
    port: int
    process: subprocess.Popen[bytes]
    log: Path  # its stdout and stderr
    model: Path
    api_key: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _log_path(log_dir: Path | None, name: str) -> Path:
    directory = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="codefill-remote-"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{name}.log"


def _probe(url: str, timeout: float = 5.0) -> int | None:
    """HTTP status of GET url, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, http.client.HTTPException):
        return None


def _start(kind: str, argv: list[str], *, port: int, model: Path, api_key: str | None,
           ready_path: str, ready: Iterable[int], env: Mapping[str, str] | None,
           log_dir: Path | None, timeout: float) -> RunningServer:
    log = _log_path(log_dir, f"{kind}-{port}")
    with open(log, "wb") as out:
        proc = subprocess.Popen([a.replace("{port}", str(port)) for a in argv],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else None,
                                start_new_session=True)
    server = RunningServer(kind, port, proc, log, model, api_key)
    deadline = time.monotonic() + timeout
    ready = set(ready)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited with status {proc.returncode} before it was "
                               f"ready; its log ({log}):\n{server.log_tail()}")
        if _probe(server.url + ready_path) in ready:
            return server
        if time.monotonic() > deadline:
            server.stop()
            raise TimeoutError(f"{kind} was not ready within {timeout:.0f} s; its log ({log}):\n"
                               f"{server.log_tail()}")
        time.sleep(0.25)


def _start_retrying(kind: str, port: int, start: Any) -> RunningServer:
    """Start on the given port, or on a free one; a lost race for the port is tried again."""
    for attempt in range(3):
        chosen = port or free_port()
        try:
            return start(chosen)
        except RuntimeError as exc:
            if port or attempt == 2 or "address already in use" not in str(exc).lower():
                raise
    raise AssertionError("unreachable")
