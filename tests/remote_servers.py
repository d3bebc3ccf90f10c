r"""Real remote completion servers, and a fault-injection proxy, for the remote-engine tests.

Not a test file: the remote-engine tests import it. Everything listens on 127.0.0.1 only.

* llama.cpp's ``llama-server``, built from the sdist of the installed llama-cpp-python by
  ``scripts/build-llama-server`` (``scripts/test`` runs it before pytest) into
  ``$XDG_CACHE_HOME/codefill/llama-server/<version>/``. :func:`llama_server_binary` finds it,
  :func:`why_no_llama_server` says why it is missing (the reason to skip with).
* llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``, the ``server``
  extra; listed in codefill's ``dev`` extra).
* :class:`FaultProxy`: a stdlib HTTP proxy in front of either, whose behaviour the test switches
  at any time (down, slow, error statuses, malformed JSON, a stream cut mid-way, redirects), and
  which records the requests it received and the connections the client closed.

Both servers run with llama.cpp's extra weight buffers (repacking, AMX) off: on this project's
build machines llama.cpp's AMX matrix multiply segfaults on Q4_K models (ggml-org/llama.cpp#20824;
llama-cpp-python with the embedded model dies with SIGSEGV on its first token). llama-server takes
``--no-repack`` (common/arg.cpp: it sets ``no_extra_bufts``); llama-cpp-python's server has no such
setting, so it is started through a small bootstrap that clears
``llama_model_params.use_extra_bufts``, as lsp_server/engine/llama_engine.py does in-process.

What the servers do with fill-in-the-middle (read from their source, checked by
tests/test_remote_servers.py):

llama-server ``/infill`` (tools/server/server-context.cpp, ``post_infill``)
    refuses a model whose vocabulary has no FIM prefix, suffix or middle token: HTTP 501,
    ``{"error": {"code": 501, "type": "not_supported_error", "message": "Infill is not supported
    by this model: prefix token is missing. suffix token is missing. middle token is missing. "}}``.
    The embedded Gemma 3 270M has none, hence :func:`fim_test_model`. With FIM tokens, the prompt
    is built from tokens (tools/server/server-common.cpp, ``format_prompt_infill``)::

        [FIM_REP]myproject\n [FIM_SEP]{filename}\n{text} ... [FIM_SEP]filename\n   (input_extra)
        [BOS] [FIM_PRE]{input_prefix}{prompt} [FIM_SUF]{input_suffix} [FIM_MID]

    (``--spm-infill`` puts the suffix part first). Without FIM_REP/FIM_SEP tokens the extra
    chunks are joined with a plain-text ``\n\n--- snippet ---\n\n`` separator instead.
    Surprises:

    - the extra context goes *before* BOS;
    - the request's ``prompt`` is appended to the prefix (before FIM_SUF), not after FIM_MID as
      the source comment claims;
    - ``input_prefix``/``input_suffix`` are tokenized without parsing special tokens;
    - the prefix is cut to 3/4 of ``n_batch`` tokens, the suffix to 1/4, and ``input_extra`` gets
      only ``n_ctx - n_batch - 2*n_predict`` tokens (n_predict: the server's ``-n``, default -1):
      with the default ``--batch-size`` 2048 and a 2048-token context the extra context is
      dropped without a word (see :func:`start_llama_server`);
    - a request without ``input_prefix`` or ``input_suffix`` gets HTTP 500 (``server_error``,
      "[json.exception.out_of_range.403] key 'input_prefix' not found"): the handler forgets to
      ``return`` after its 400 and then throws;
    - ``cache_prompt`` reuses nothing for a sliding-window model such as Gemma 3 unless the
      server runs with ``--swa-full``;
    - ``t_max_predict_ms`` is a soft limit: generation stops only when a token containing a
      newline arrives after the time has passed (``stop_type`` "limit"); the clock starts after
      the first generated token, so a newline as the first token never stops it.

    Errors are ``{"error": {"code", "message", "type"}}``: 401 ``authentication_error`` for a
    missing or wrong ``Authorization: Bearer`` key (``/health`` stays public), 501
    ``not_supported_error`` as above.
    Streams are ``data: {json}\n\n`` events, chunked; the last has ``"stop": true`` and carries
    ``timings``, ``tokens_evaluated``, ``stop_type``; there is no ``[DONE]``.

llama-cpp-python ``/v1/completions`` with ``suffix`` (llama_cpp/llama.py, ``_create_completion``)
    ignores the model's FIM tokens: the prefix, suffix and middle token ids are hard-coded to 0
    (``# self._model.token_prefix() # TODO: Fix``), so a request with ``suffix`` is evaluated as
    ``[BOS] 0 {prompt} 0 {suffix} 0`` with token 0 (``<pad>`` for Gemma) as every sentinel —
    the same with or without FIM tokens in the GGUF — and the suffix is not appended to the
    returned text. A remote engine must not send ``suffix`` to llama-cpp-python's server; it
    should send the whole FIM prompt as text. The prompt is tokenized with special tokens parsed
    when ``suffix`` is absent (``special=True``: sentinel text such as ``<start_of_turn>`` or
    ``<unused0>`` becomes its single control token) and as plain text when ``suffix`` is present.
    See ``test_openai_*`` for the token counts that show both. A missing or wrong key gets 401
    ``{"detail": "Invalid API key"}``. Streams are ``data: {json}\n\n`` events ending with
    ``data: [DONE]``.

Client side (stdlib ``http.client``): a chunked SSE stream that the server or a proxy cuts at an
event boundary reads like a complete one with ``readline()`` — only ``read()`` raises
``IncompleteRead`` — so a cut shows as a stream that ends without its final event (llama-server:
``"stop": true``; OpenAI: ``finish_reason`` and ``data: [DONE]``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import http.client
import http.server
import json
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from lsp_server.models.resolve import cache_dir, resolve_model

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "scripts" / "build-llama-server"
#: Use this llama-server binary instead of the cached build.
LLAMA_SERVER_ENV = "CODEFILL_LLAMA_SERVER"
#: Servers get this long to load the model and answer (the test machines are loaded).
READY_TIMEOUT = 300.0
THREADS = 2

# ---------------------------------------------------------------------------------------------
# llama-server binary


def llama_cpp_version() -> str:
    from importlib.metadata import version

    return version("llama-cpp-python")


def llama_server_dir() -> Path:
    """Where scripts/build-llama-server puts the binary of the installed llama-cpp-python."""
    return cache_dir() / "llama-server" / llama_cpp_version()


def _runs(binary: Path) -> bool:
    try:
        return subprocess.run([str(binary), "--version"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@lru_cache(maxsize=None)
def _find_binary() -> tuple[Path | None, str]:
    override = os.environ.get(LLAMA_SERVER_ENV, "")
    if override:
        path = Path(override)
        if _runs(path):
            return path, ""
        return None, f"{LLAMA_SERVER_ENV}={override} does not run (`{override} --version` failed)"
    try:
        where = llama_server_dir()
    except Exception as exc:  # llama-cpp-python missing: nothing to build from
        return None, f"llama-cpp-python is not installed ({exc})"
    path = where / "llama-server"
    if path.is_file() and _runs(path):
        return path, ""
    failed = where / "build-failed"
    if failed.is_file():
        return None, failed.read_text(errors="replace").strip().replace("\n", " ")
    if path.exists():
        return None, f"{path} does not run; rebuild it: scripts/build-llama-server --force"
    return None, (f"llama-server is not built ({path} is missing); scripts/test builds it, "
                  "or run scripts/build-llama-server")


def llama_server_binary() -> Path | None:
    """The llama-server binary (cached build, or $CODEFILL_LLAMA_SERVER), or None."""
    return _find_binary()[0]


def why_no_llama_server() -> str:
    """Why :func:`llama_server_binary` is None (the skip reason); empty when it is not."""
    return _find_binary()[1]


# ---------------------------------------------------------------------------------------------
# A copy of the embedded model with FIM token ids

#: FIM roles → reserved ``<unusedN>`` control tokens of the Gemma 3 vocabulary (ids 6…11).
FIM_TOKENS = {
    "fim_pre": "<unused0>",
    "fim_suf": "<unused1>",
    "fim_mid": "<unused2>",
    "fim_pad": "<unused3>",
    "fim_rep": "<unused4>",
    "fim_sep": "<unused5>",
}


def fim_test_model(directory: Path | None = None, source: Path | None = None) -> Path:
    """The embedded Gemma 3 270M with FIM token ids in its metadata, for llama-server's /infill.

    Gemma 3 was not FIM-trained and its vocabulary names no FIM tokens; llama-server's /infill
    refuses such a model with HTTP 501 ("Infill is not supported by this model: prefix token is
    missing. …"; see the module docstring). This writes a *copy* of the GGUF (the original is
    never touched) whose ``tokenizer.ggml.fim_{pre,suf,mid,pad,rep,sep}_token_id`` name the
    reserved control tokens ``<unused0>`` … ``<unused5>`` (:data:`FIM_TOKENS`), with gguf-py:
    every key and tensor copied by GGUFReader → GGUFWriter, plus the six ids. llama.cpp then
    reports the model as FIM-capable (and makes fim_pad/rep/sep end-of-generation tokens), and
    codefill detects its template as ``gguf-metadata``. The model still answers plausibly — it
    is a real model, it just continues the prefix — which is all the protocol tests need; the
    FIM sentinels mean nothing to it. Writing the copy takes about 30 s of CPU (GGUFReader
    decodes the 262k-token vocabulary).

    The copy lives in ``directory`` (default: ``$XDG_CACHE_HOME/codefill/test-models``) and is
    written once per source file: a stamp records the source's path, size and mtime.
    """
    import gguf

    src = Path(source) if source else resolve_model("")
    directory = Path(directory) if directory else cache_dir() / "test-models"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / (src.stem + "-fim-tokens.gguf")
    stamp = target.with_name(target.name + ".src")
    st = src.stat()
    key = f"{src.resolve()}\n{st.st_size}\n{st.st_mtime_ns}\n"

    def fresh() -> bool:
        return target.is_file() and stamp.is_file() and stamp.read_text() == key

    if fresh():
        return target
    with open(directory / ".fim-tokens.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be writing it
        if fresh():
            return target
        reader = gguf.GGUFReader(src)
        tokens = reader.fields["tokenizer.ggml.tokens"].contents()
        ids = {}
        for role, text in FIM_TOKENS.items():
            try:
                ids[role] = tokens.index(text)
            except ValueError:
                raise ValueError(f"{src} has no {text} token: not a Gemma 3 vocabulary") from None
        arch = reader.fields["general.architecture"].contents()
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            writer = gguf.GGUFWriter(tmp, arch, endianess=reader.endianess)
            for field in reader.fields.values():
                # GGUFWriter writes the architecture and the GGUF.* header fields itself.
                if field.name == "general.architecture" or field.name.startswith("GGUF."):
                    continue
                vtype = field.types[0]
                sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
                writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
            for role, token_id in ids.items():
                writer.add_uint32(f"tokenizer.ggml.{role}_token_id", token_id)
            for t in reader.tensors:
                writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes,
                                       t.tensor_type)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for t in reader.tensors:
                writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
            writer.close()
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        stamp.write_text(key)
    return target


# ---------------------------------------------------------------------------------------------
# Running servers


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


def start_llama_server(model: Path, *, port: int = 0, ctx: int = 2048, batch: int | None = None,
                       swa_full: bool = True,
                       extra_args: Iterable[str] = (), api_key: str | None = None,
                       log_dir: Path | None = None,
                       timeout: float = READY_TIMEOUT) -> RunningServer:
    """llama.cpp's llama-server on 127.0.0.1, ready (``/health`` answers 200).

    One slot (``-np 1``: the whole ``ctx`` for it; newer llama.cpp defaults to several slots
    sharing the context), 2 threads, no warm-up run, no web UI, ``--no-repack`` (see the module
    docstring). ``batch`` (default ``min(1024, ctx // 2)``) must stay well below ``ctx``: /infill
    gives ``input_extra`` only ``ctx - batch - 2*n_predict`` tokens, so with llama-server's
    default batch (2048) and a 2048 context the extra context is dropped without a word; the
    prefix gets up to 3/4 of ``batch`` tokens, the suffix 1/4. ``swa_full`` (``--swa-full``):
    Gemma 3 uses sliding-window attention, and without a full-size SWA cache llama-server
    re-evaluates the whole prompt on every request, ``cache_prompt`` or not (measured: 50 of 50
    prompt tokens for a repeated /infill; 1 of 50 with ``--swa-full``). ``extra_args`` go last
    (e.g. ``["--cache-reuse", "64"]``).
    """
    if batch is None:
        batch = max(64, min(1024, ctx // 2))
    binary = llama_server_binary()
    if binary is None:
        raise RuntimeError(why_no_llama_server())
    argv = [str(binary), "--model", str(model), "--host", "127.0.0.1", "--port", "{port}",
            "--ctx-size", str(ctx), "--batch-size", str(batch), "--parallel", "1",
            "--threads", str(THREADS), "--threads-batch", str(THREADS), "--threads-http", "4",
            "--no-warmup", "--no-webui", "--no-repack"]
    if swa_full:
        argv.append("--swa-full")
    if api_key is not None:
        argv += ["--api-key", api_key]
    argv += list(extra_args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    return _start_retrying("llama-server", port, lambda p: _start(
        "llama-server", argv, port=p, model=Path(model), api_key=api_key, ready_path="/health",
        ready={200}, env=env, log_dir=log_dir, timeout=timeout))


# Runs llama-cpp-python's server with llama_model_params.use_extra_bufts off (see the module
# docstring): Llama() builds its parameters from llama_model_default_params(), looked up on the
# module at each call, so wrapping that one function is enough.
_OPENAI_BOOTSTRAP = """\
import runpy, sys
import llama_cpp.llama_cpp as ll
_default = ll.llama_model_default_params
def _no_extra_bufts():
    p = _default()
    p.use_extra_bufts = False
    return p
ll.llama_model_default_params = _no_extra_bufts
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def _openai_clean_env(port: int) -> dict[str, str]:
    """The environment minus what pydantic-settings would read as server or model settings."""
    try:
        from llama_cpp.server.settings import Settings

        names = {n.lower() for n in Settings.model_fields}
    except Exception:
        names = {"host", "port", "model", "api_key", "n_ctx"}
    env = {k: v for k, v in os.environ.items() if k.lower() not in names | {"config_file"}}
    # uvicorn.run() in llama_cpp.server takes HOST and PORT from the environment first.
    env.update(HOST="127.0.0.1", PORT=str(port))
    return env


def start_openai_server(model: Path, *, port: int = 0, ctx: int = 2048,
                        extra_args: Iterable[str] = (), api_key: str | None = None,
                        log_dir: Path | None = None,
                        timeout: float = READY_TIMEOUT) -> RunningServer:
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1, ready (``/v1/models`` answers).

    Started as ``python -c <bootstrap> --model … --host 127.0.0.1 --port …`` with this
    interpreter (llama-cpp-python's ``server`` extra must be installed). ``extra_args`` take its
    CLI form (``--n_batch 512``, ``--interrupt_requests false``).
    """
    argv = [sys.executable, "-c", _OPENAI_BOOTSTRAP, "--model", str(model),
            "--host", "127.0.0.1", "--port", "{port}", "--n_ctx", str(ctx),
            "--n_threads", str(THREADS), "--n_threads_batch", str(THREADS)]
    if api_key is not None:
        argv += ["--api_key", api_key]
    argv += list(extra_args)
    # Any HTTP answer means uvicorn is serving, and it starts only after the model is loaded.
    return _start_retrying("llama-cpp-python", port, lambda p: _start(
        "llama-cpp-python", argv, port=p, model=Path(model), api_key=api_key,
        ready_path="/v1/models", ready=range(200, 600), env=_openai_clean_env(p),
        log_dir=log_dir, timeout=timeout))


def openai_server_available() -> str:
    """Empty when llama-cpp-python's server extra is importable, else the reason to skip."""
    try:
        import fastapi  # noqa: F401
        import sse_starlette  # noqa: F401
        import starlette_context  # noqa: F401
        import uvicorn  # noqa: F401
        import pydantic_settings  # noqa: F401
    except ImportError as exc:
        return (f"llama-cpp-python's server extra is not installed ({exc.name} missing): "
                "scripts/setup dev")
    return ""


# ---------------------------------------------------------------------------------------------
# Fault-injection proxy

MODES = ("pass", "down", "reset", "slow", "status", "malformed", "cut", "redirect")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailer", "trailers", "transfer-encoding", "upgrade", "content-length", "host"}


@dataclasses.dataclass
class RecordedRequest:
    """One request the proxy received, and what became of its response."""

    index: int
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    fault: str  # the mode applied to it: "pass" or a fault
    time: float = dataclasses.field(default_factory=time.monotonic)
    status: int | None = None  # the status sent to the client
    bytes_sent: int = 0  # response body bytes sent to the client
    events_sent: int = 0  # complete SSE events sent to the client
    completed: bool = False  # the whole response reached the client
    closed_by_client: bool = False  # the client closed the connection before the end
    ended: bool = False  # the proxy is done with it (whatever the outcome)

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _ClientGone(Exception):
    pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (_ClientGone, OSError):  # the client went away, or the socket timed out
            self.close_connection = True

    def _dispatch(self) -> None:
        self.server.proxy._handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


class _ProxyHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)


class _SSECounter:
    r"""Finds where SSE events end (a blank line: "\n\n" or "\r\n\r\n") across chunks."""

    def __init__(self) -> None:
        self.newlines = 0  # consecutive line ends seen so far ("\r" ignored)

    def ends(self, data: bytes) -> list[int]:
        """Offsets just past each event end in data."""
        out = []
        for i, byte in enumerate(data):
            if byte == 0x0A:
                self.newlines += 1
                if self.newlines == 2:
                    out.append(i + 1)
                    self.newlines = 0
            elif byte != 0x0D:
                self.newlines = 0
        return out


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 (its own thread) in front of ``upstream``, with faults.

    Set the behaviour at any time with :meth:`set` (or the ``mode`` attribute):

    ``pass``
        forward the request and stream the response back as it arrives, chunk by chunk.
    ``down``
        stop listening: connections are refused (``fail_times`` does not apply: nothing reaches
        the proxy to be counted; set the mode back to end it).
    ``reset``
        accept the connection and close it at once (TCP RST), before any byte of a response.
    ``slow``
        wait ``delay`` seconds before the first byte of the response, then pass; ``chunk_delay``
        also waits before each later chunk of the response.
    ``status``
        answer ``status`` (500, 503, 429, 401 …) with ``body`` (str, bytes or JSON-able;
        default an OpenAI/llama-server style error object) and extra ``headers``
        (e.g. ``{"Retry-After": "2"}``), without asking upstream.
    ``malformed``
        answer 200 with a body that is not JSON: for a request with ``"stream": true`` an SSE
        stream whose ``data:`` lines are broken JSON, else a truncated JSON object
        (``body`` overrides either).
    ``cut``
        forward the response but close the connection after ``cut_after_bytes`` body bytes or
        ``cut_after_events`` complete SSE events (whichever comes first; the chunked body is
        never terminated, so the client sees an incomplete response).
    ``redirect``
        answer ``redirect_status`` (default 307) with ``Location: redirect_to`` + the request
        path (``redirect_to`` is the test's other host, e.g. another FaultProxy's url).

    ``fail_times=N`` applies the fault to the next N requests only, then passes. ``only_paths``
    limits faults to requests whose path starts with one of the given prefixes (others pass).
    Every request that reaches the proxy is recorded in :attr:`requests`, including the status
    sent, the bytes and SSE events sent, and whether the client closed the connection before
    the end (:meth:`closed_by_client`, :meth:`wait_client_close`).
    """

    def __init__(self, upstream: str | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, upstream_timeout: float = 600.0) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.upstream_timeout = upstream_timeout
        self.host = host
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.requests: list[RecordedRequest] = []
        self._settings: dict[str, Any] = {}
        self._faults_left: int | None = None
        self.set()
        self._httpd: _ProxyHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._listen(port)
        self.port = self._httpd.server_address[1]  # type: ignore[union-attr]

    # -- configuration ------------------------------------------------------------------------

    def set(self, mode: str = "pass", *, fail_times: int | None = None, delay: float = 0.0,
            chunk_delay: float = 0.0, status: int = 500, body: Any = None,
            headers: Mapping[str, str] | None = None, cut_after_bytes: int | None = None,
            cut_after_events: int | None = None, redirect_to: str | None = None,
            redirect_status: int = 307, only_paths: Iterable[str] | None = None) -> FaultProxy:
        """Switch to ``mode`` with these parameters (all others back to their defaults)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        if mode == "redirect" and not redirect_to:
            raise ValueError("mode 'redirect' needs redirect_to")
        if mode == "cut" and cut_after_bytes is None and cut_after_events is None:
            raise ValueError("mode 'cut' needs cut_after_bytes or cut_after_events")
        with self._lock:
            self._settings = dict(
                mode=mode, delay=delay, chunk_delay=chunk_delay, status=status, body=body,
                headers=dict(headers or {}), cut_after_bytes=cut_after_bytes,
                cut_after_events=cut_after_events, redirect_to=redirect_to,
                redirect_status=redirect_status,
                only_paths=tuple(only_paths) if only_paths is not None else None)
            self._faults_left = fail_times
        if hasattr(self, "port"):  # (not while __init__ sets the defaults)
            self._apply_listening()
        return self

    @property
    def mode(self) -> str:
        return self._settings["mode"]

    @mode.setter
    def mode(self, value: str) -> None:
        self.set(value)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- listening ----------------------------------------------------------------------------

    def _listen(self, port: int) -> None:
        if self._settings["mode"] == "down":
            # Reserve the port number without listening: connections are refused.
            if port == 0:
                port = free_port(self.host)
            self.port = port
            return
        httpd = _ProxyHTTPServer((self.host, port), self)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                  name=f"FaultProxy:{httpd.server_address[1]}", daemon=True)
        thread.start()
        self._httpd, self._thread = httpd, thread

    def _apply_listening(self) -> None:
        if self._closed:
            return
        down = self._settings["mode"] == "down"
        if down and self._httpd is not None:
            httpd, self._httpd = self._httpd, None
            httpd.shutdown()
            httpd.server_close()
        elif not down and self._httpd is None and hasattr(self, "port"):
            for _ in range(50):  # the old socket may linger a moment
                try:
                    self._listen(self.port)
                    return
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    time.sleep(0.1)
            raise RuntimeError(f"FaultProxy cannot listen on port {self.port} again")

    def close(self) -> None:
        self._closed = True
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- records ------------------------------------------------------------------------------

    def closed_by_client(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.closed_by_client]

    def wait_requests(self, n: int, timeout: float = 30.0) -> list[RecordedRequest]:
        """Wait until at least n requests were received; returns them all."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(f"{len(self.requests)} requests reached the proxy, not {n}")
            return list(self.requests)

    def wait_client_close(self, timeout: float = 30.0) -> RecordedRequest:
        """Wait until the client closed a connection before its response ended."""
        with self._changed:
            if not self._changed.wait_for(
                    lambda: any(r.closed_by_client for r in self.requests), timeout):
                raise TimeoutError("no response was closed by the client")
            return next(r for r in self.requests if r.closed_by_client)

    def wait_done(self, request: RecordedRequest, timeout: float = 60.0) -> RecordedRequest:
        """Wait until the proxy finished with this request's response (any outcome)."""
        with self._changed:
            if not self._changed.wait_for(lambda: request.ended, timeout):
                raise TimeoutError(f"request {request.index} still in progress")
            return request

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def _update(self, record: RecordedRequest, **changes: Any) -> None:
        with self._changed:
            for k, v in changes.items():
                setattr(record, k, v)
            self._changed.notify_all()

    # -- request handling ---------------------------------------------------------------------

    def _read_body(self, h: _Handler) -> bytes:
        if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(h.rfile.read(size))
                h.rfile.readline()
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length else b""

    def _handle(self, h: _Handler) -> None:
        body = self._read_body(h)
        with self._changed:
            s = dict(self._settings)
            fault = s["mode"]
            if fault != "pass" and s["only_paths"] is not None and not any(
                    h.path.startswith(p) for p in s["only_paths"]):
                fault = "pass"
            if fault != "pass" and self._faults_left is not None:
                if self._faults_left > 0:
                    self._faults_left -= 1
                else:
                    fault = "pass"
            record = RecordedRequest(len(self.requests), h.command, h.path,
                                     {k.lower(): v for k, v in h.headers.items()}, body, fault)
            self.requests.append(record)
            self._changed.notify_all()
        try:
            if fault == "down":
                # A request on a connection opened before the proxy went down: drop it.
                self._reset(h, record)
            elif fault == "reset":
                self._reset(h, record)
            elif fault == "status":
                self._reply_status(h, record, s)
            elif fault == "malformed":
                self._reply_malformed(h, record, s)
            elif fault == "redirect":
                location = s["redirect_to"].rstrip("/") + h.path
                self._send_simple(h, record, s["redirect_status"], b"", {"Location": location})
            else:
                if fault == "slow":
                    self._sleep_watching(h, record, s["delay"])
                self._forward(h, record, body, s if fault in ("slow", "cut") else None)
        except (_ClientGone, BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self._update(record, closed_by_client=True)
            h.close_connection = True
        finally:
            self._update(record, ended=True)

    def _reset(self, h: _Handler, record: RecordedRequest) -> None:
        h.close_connection = True
        with contextlib.suppress(OSError):
            # SO_LINGER 0: closing sends RST instead of FIN. (The descriptor really closes when
            # the handler releases its rfile/wfile, before socketserver's shutdown(SHUT_WR)
            # could send a FIN.)
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
            h.connection.close()
        self._update(record, status=0)

    @staticmethod
    def _client_closed(h: _Handler) -> bool:
        """Whether the client has closed its end (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([h.connection], [], [], 0)
            if not readable:
                return False
            return h.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _sleep_watching(self, h: _Handler, record: RecordedRequest, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            if self._client_closed(h):
                raise _ClientGone
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def _write(self, h: _Handler, data: bytes) -> None:
        if self._client_closed(h):
            raise _ClientGone
        try:
            h.wfile.write(data)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            raise _ClientGone from exc

    def _send_head(self, h: _Handler, record: RecordedRequest, status: int,
                   headers: Iterable[tuple[str, str]]) -> None:
        h.send_response_only(status)
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()  # flushes the headers to the client
        self._update(record, status=status)

    def _send_simple(self, h: _Handler, record: RecordedRequest, status: int, body: bytes,
                     headers: Mapping[str, str], content_type: str = "application/json") -> None:
        extra = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        if not any(k.lower() == "content-type" for k in extra):
            extra["Content-Type"] = content_type
        self._send_head(h, record, status, [*extra.items(), ("Content-Length", str(len(body)))])
        if h.command != "HEAD" and body:
            self._write(h, body)
        self._update(record, bytes_sent=len(body), completed=True)

    def _reply_status(self, h: _Handler, record: RecordedRequest, s: dict[str, Any]) -> None:
        body = s["body"]
        if body is None:
            status = s["status"]
            body = {"error": {"code": status, "message": f"injected fault: HTTP {status}",
                              "type": "server_error" if status >= 500 else "invalid_request_error"}}
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self._send_simple(h, record, s["status"], body, s["headers"])

    def _reply_malformed(self, h: _Handler, record: RecordedRequest, s: dict[str, Any]) -> None:
        streaming = isinstance(record.json, dict) and bool(record.json.get("stream"))
        body = s["body"]
        if streaming:
            if body is None:
                body = (b'data: {"content": "ok", "stop": false}\n\n'
                        b'data: {"content": "bro\n\n'
                        b"data: this is not json\n\n")
            elif isinstance(body, str):
                body = body.encode()
            head = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                    ("Transfer-Encoding", "chunked")]
            self._send_head(h, record, 200, head)
            self._write(h, b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            self._update(record, bytes_sent=len(body), events_sent=len(_SSECounter().ends(body)),
                         completed=True)
        else:
            if body is None:
                body = b'{"content": "def f(x):\\n    return", "stop": tr'
            elif isinstance(body, str):
                body = body.encode()
            self._send_simple(h, record, 200, body, s["headers"])

    def _forward(self, h: _Handler, record: RecordedRequest, body: bytes,
                 s: dict[str, Any] | None) -> None:
        if not self.upstream:
            self._send_simple(h, record, 502, b'{"error": "FaultProxy has no upstream"}', {})
            return
        up = urllib.parse.urlsplit(self.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port or 80,
                                          timeout=self.upstream_timeout)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Host"] = up.netloc
            if body or h.command in ("POST", "PUT", "PATCH"):
                headers["Content-Length"] = str(len(body))
            try:
                conn.request(h.command, up.path.rstrip("/") + h.path, body=body or None,
                             headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self._send_simple(h, record, 502, json.dumps(
                    {"error": f"FaultProxy: upstream {self.upstream}: {exc}"}).encode(), {})
                return
            cut_bytes = s.get("cut_after_bytes") if s else None
            cut_events = s.get("cut_after_events") if s else None
            chunk_delay = s.get("chunk_delay", 0.0) if s else 0.0
            out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
            length = resp.getheader("Content-Length")
            chunked = length is None and h.command != "HEAD" and resp.status not in (204, 304)
            out_headers.append(("Transfer-Encoding", "chunked") if chunked
                               else ("Content-Length", length or "0"))
            self._send_head(h, record, resp.status, out_headers)
            sent = 0
            events = 0
            counter = _SSECounter()
            first = True
            while True:
                # read1: whatever has arrived (one chunk of a chunked stream), without waiting
                # for more, so SSE events reach the client as the server sends them.
                data = resp.read1(65536) if h.command != "HEAD" else b""
                if not data:
                    break
                if chunk_delay and not first:
                    self._sleep_watching(h, record, chunk_delay)
                first = False
                cut = False
                if cut_bytes is not None and sent + len(data) >= cut_bytes:
                    data, cut = data[:max(0, cut_bytes - sent)], True
                ends = counter.ends(data)
                if cut_events is not None and events + len(ends) >= cut_events:
                    keep = cut_events - events  # events of this piece still to send
                    data, cut = (data[:ends[keep - 1]] if keep > 0 else b""), True
                    ends = ends[:max(0, keep)]
                if data:
                    self._write(h, b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                    sent += len(data)
                    events += len(ends)
                    self._update(record, bytes_sent=sent, events_sent=events)
                if cut:
                    h.close_connection = True
                    with contextlib.suppress(OSError):
                        h.connection.shutdown(socket.SHUT_RDWR)
                    return
            if chunked:
                self._write(h, b"0\r\n\r\n")
            self._update(record, completed=True)
        finally:
            conn.close()


def sse_data(lines: Iterable[str]) -> list[Any]:
    """The JSON payloads of an SSE stream's ``data:`` lines (``[DONE]`` skipped)."""
    out = []
    for line in lines:
        if line.startswith("data:"):
            payload = line[5:].strip()
            if payload and payload != "[DONE]":
                out.append(json.loads(payload))
    return out


__all__ = [
    "FIM_TOKENS", "FaultProxy", "LLAMA_SERVER_ENV", "MODES", "RecordedRequest", "RunningServer",
    "fim_test_model", "free_port", "llama_cpp_version", "llama_server_binary",
    "llama_server_dir", "openai_server_available", "sse_data", "start_llama_server",
    "start_openai_server", "why_no_llama_server",
]
