"""What the benchmarks and the tests share: a real LSP client, engine hooks, remote completion
servers and random-weight checkpoints.

Not shipped (pyproject ships lsp_server, quantize and model); it needs those packages and their
dependencies, nothing from tests/. Bench scripts import it after putting the repository root on
``sys.path``; the tests import it too, so each of these exists once (the benchmarks are
programs that must run without the test suite, the tests may use anything in the repository):

* :class:`Harness`: a real LSP client (pygls) driving the real ``codefill serve`` process over
  stdio. The client lives on an asyncio loop in a background thread so that synchronous code can
  share one server: ``h.run(coro)`` runs a coroutine on that loop and returns its value.
* :class:`RawServer`: the same process driven with raw JSON-RPC bytes (malformed messages,
  long soaks).
* Engine hooks: ``python -m bench.common [--record-prompts FILE] [--engine-fault N[,K]] serve``
  is ``codefill serve`` with the in-process engine patched (:func:`install_engine_hooks`);
  ``Harness(record_prompts=…, engine_fault=…)`` starts the server that way.
* Remote servers: llama.cpp's ``llama-server`` and llama-cpp-python's OpenAI-compatible server,
  and :func:`fim_test_model`, a copy of the embedded model with FIM token ids.
* :func:`write_checkpoint`: random-weight Hugging Face Gemma checkpoints for the quantizer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import http.client
import json
import os
import queue
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Iterator, Mapping, TypeVar

import numpy as np
from lsprotocol import types
from pygls.lsp.client import LanguageClient

from lsp_server.models.resolve import cache_dir, resolve_model
from lsp_server.server import plain
from model.config import CODEGEMMA_2B_CONFIG
from model.tokenizer import reserved_symbols, write_tokenizer_config
from quantize.hf_config import ARCHITECTURES
from quantize.tensor_map import LAYER_TENSORS

REPO = Path(__file__).resolve().parent.parent

T = TypeVar("T")

# What VS Code (1.9x, with the LSP 3.18 inline completion proposal) and Neovim 0.11 announce,
# reduced to the parts that change a server's behaviour.
VSCODE_CAPABILITIES = types.ClientCapabilities(
    workspace=types.WorkspaceClientCapabilities(
        configuration=True, workspace_folders=True,
        did_change_configuration=types.DidChangeConfigurationClientCapabilities(
            dynamic_registration=True)),
    text_document=types.TextDocumentClientCapabilities(
        synchronization=types.TextDocumentSyncClientCapabilities(did_save=True),
        completion=types.CompletionClientCapabilities(
            completion_item=types.ClientCompletionItemOptions(snippet_support=True)),
        inline_completion=types.InlineCompletionClientCapabilities(dynamic_registration=True)),
    window=types.WindowClientCapabilities(work_done_progress=True),
    general=types.GeneralClientCapabilities(
        position_encodings=[types.PositionEncodingKind.Utf16]),
)
NEOVIM_CAPABILITIES = types.ClientCapabilities(
    workspace=types.WorkspaceClientCapabilities(configuration=True, workspace_folders=True),
    text_document=types.TextDocumentClientCapabilities(
        synchronization=types.TextDocumentSyncClientCapabilities(did_save=True),
        completion=types.CompletionClientCapabilities(
            completion_item=types.ClientCompletionItemOptions(snippet_support=False))),
    window=types.WindowClientCapabilities(work_done_progress=True),
    general=types.GeneralClientCapabilities(
        position_encodings=[types.PositionEncodingKind.Utf8, types.PositionEncodingKind.Utf16]),
)


class Harness:
    def __init__(self, root: Path, *, capabilities: types.ClientCapabilities = VSCODE_CAPABILITIES,
                 settings: dict[str, Any] | None = None,
                 init_options: dict[str, Any] | None = None, process_id: int | None = None,
                 env: dict[str, str] | None = None, record_prompts: Path | None = None,
                 engine_fault: str | None = None) -> None:
        """``record_prompts``, ``engine_fault``: start the server with those engine hooks
        (:func:`install_engine_hooks`); without them it is the plain ``codefill serve``."""
        self.root = root
        self.capabilities = capabilities
        self.settings = settings if settings is not None else {}
        self.init_options = init_options
        self.process_id = process_id if process_id is not None else os.getpid()
        self.env = env
        self.hooks = hook_args(record_prompts=record_prompts, engine_fault=engine_fault)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client: LanguageClient | None = None
        self.messages: list[types.ShowMessageParams] = []
        self.logs: list[str] = []
        self.partials: list[dict[str, Any]] = []
        self.progress: list[Any] = []
        self.config_requests = 0
        self.versions: dict[str, int] = {}

    def run(self, aw: Awaitable[T], timeout: float = 300) -> T:
        """Run a coroutine (or await a future) on the client's loop, from the test thread."""
        async def wrapper() -> T:
            return await aw
        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call a client method on the loop thread (the transport is not thread-safe)."""
        if threading.current_thread() is self.thread:  # already there (inside a scenario)
            return fn(*args)

        async def wrapper() -> T:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(30)

    # --- lifecycle -------------------------------------------------------------------------
    async def _start(self) -> types.InitializeResult:
        client = LanguageClient("codefill-tests", "0")
        self.client = client

        @client.feature(types.WINDOW_SHOW_MESSAGE)
        def show(params: types.ShowMessageParams) -> None:
            self.messages.append(params)

        @client.feature(types.WINDOW_LOG_MESSAGE)
        def log(params: types.LogMessageParams) -> None:
            self.logs.append(params.message)

        @client.feature("codefill/partial")
        def partial(params: Any) -> None:
            self.partials.append(plain(params))

        @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def create(params: Any) -> None:
            return None

        @client.feature(types.PROGRESS)
        def progress(params: Any) -> None:
            self.progress.append(params)

        @client.feature(types.WORKSPACE_CONFIGURATION)
        def configuration(params: types.ConfigurationParams) -> list[Any]:
            self.config_requests += 1
            return [self.settings for _ in params.items]

        env = {**os.environ, **(self.env or {})}
        extra = ["--log-file", os.environ["CODEFILL_TEST_SERVER_LOG"], "--debug"] \
            if os.environ.get("CODEFILL_TEST_SERVER_LOG") else []
        if self.hooks:
            # bench.common must be importable in the server, wherever its working directory.
            env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
            entry = ["-m", "bench.common", *self.hooks]
        else:
            entry = ["-m", "lsp_server.cli.main"]
        await client.start_io(sys.executable, *entry, "serve", *extra, env=env)
        result = await client.initialize_async(types.InitializeParams(
            capabilities=self.capabilities, process_id=self.process_id,
            root_uri=self.root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=self.root.as_uri(), name="ws")],
            initialization_options=self.init_options))
        client.initialized(types.InitializedParams())
        return result

    def start(self, wait_ready: bool = True) -> types.InitializeResult:
        result = self.run(self._start())
        if wait_ready:
            self.wait_state({"ready"})
        return result

    def wait_state(self, states: set[str], timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if st["model"]["state"] in states:
                return st
            if time.monotonic() > deadline:
                raise TimeoutError(f"model state {st['model']}")
            time.sleep(0.1)

    def stop(self) -> int | None:
        async def _stop() -> int | None:
            assert self.client is not None
            await self.client.shutdown_async(None)
            self.client.exit(None)
            server = self.client._server
            try:
                await asyncio.wait_for(server.wait(), 20) if server else None
            except asyncio.TimeoutError:
                server.kill()
            code = server.returncode if server else None
            await self.client.stop()
            return code
        try:
            return self.run(_stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)

    # --- requests --------------------------------------------------------------------------
    def request(self, method: str, params: Any, msg_id: str | None = None) -> Any:
        assert self.client is not None
        client = self.client

        async def req() -> Any:
            return await client.protocol.send_request_async(method, params, msg_id=msg_id)
        return plain(self.run(req()))

    def status(self) -> dict[str, Any]:
        return self.request("codefill/status", {})

    def open(self, path: Path, text: str, language: str = "python") -> str:
        assert self.client is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = path.as_uri()
        self.versions[uri] = 1
        self.call(self.client.text_document_did_open, types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language, version=1,
                                                 text=text)))
        return uri

    def change(self, uri: str, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
        assert self.client is not None
        self.versions[uri] += 1
        self.call(self.client.text_document_did_change, types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri,
                                                                version=self.versions[uri]),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=types.Position(*start), end=types.Position(*end)),
                text=text)]))

    def inline(self, uri: str, line: int, character: int) -> str | None:
        assert self.client is not None
        client = self.client

        async def req() -> Any:
            return await client.text_document_inline_completion_async(
                self.inline_params(uri, line, character))
        result = self.run(req())
        if result is None:
            return None
        items = result.items if isinstance(result, types.InlineCompletionList) else result
        return items[0].insert_text if items else None

    def inline_params(self, uri: str, line: int, character: int) -> types.InlineCompletionParams:
        return types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line, character),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic))

    def counters(self) -> dict[str, int]:
        return self.status()["completion"]["counters"]


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


# ---------------------------------------------------------------------------------------------
# Engine hooks: prompt recording and decode faults, patched into a server process


def record_prompt(path: str, llama: Any, tokens: list[int]) -> None:
    """Append ``tokens`` (detokenized) to ``path`` as one JSON line ``{"pid", "n_tokens",
    "prompt"}``; ``prompt`` is null before the model is loaded."""
    text = (llama.detokenize(list(tokens), special=True).decode("utf-8", errors="replace")
            if llama is not None else None)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"pid": os.getpid(), "n_tokens": len(tokens), "prompt": text}) + "\n")


def install_engine_hooks(*, record_prompts: str | os.PathLike[str] | None = None,
                         engine_fault: str | None = None) -> None:
    """Patch :class:`~lsp_server.engine.llama_engine.LlamaEngine` in this process.

    ``record_prompts``: ``submit`` appends every prompt to that file (:func:`record_prompt`), so
    a test sees what reaches the model, e.g. that no secret ever does.
    ``engine_fault`` ``"N"`` or ``"N,K"``: in each engine created afterwards, the decode of the
    N-th generated token raises in the next K generations (default 1), with the error
    llama-cpp-python raises when ``llama_decode`` fails; the engine thread raising
    mid-generation (docs/reliability.md).
    """
    from lsp_server.engine.llama_engine import LlamaEngine

    if record_prompts:
        path = os.fspath(record_prompts)
        submit = LlamaEngine.submit

        def recording_submit(self: LlamaEngine, request: Any, listener: Any = None) -> Any:
            record_prompt(path, self._llama, request.tokens)
            return submit(self, request, listener)
        LlamaEngine.submit = recording_submit  # type: ignore[method-assign]

    if engine_fault:
        after_s, _, times_s = engine_fault.partition(",")
        after, times = max(1, int(after_s)), int(times_s or 1)
        init, generate = LlamaEngine.__init__, LlamaEngine._generate

        def faulty_init(self: LlamaEngine, *args: Any, **kwargs: Any) -> None:
            self._faults_left = times  # type: ignore[attr-defined]
            init(self, *args, **kwargs)

        def faulty_generate(self: LlamaEngine, stream: Any) -> None:
            if self._faults_left <= 0:  # type: ignore[attr-defined]
                return generate(self, stream)
            llm, stats = self._llama, stream.stats
            real_eval = llm.eval

            def failing_eval(tokens: Any) -> Any:
                # Prompt chunks are evaluated with nothing generated yet (after >= 1).
                if stats.n_generated == after:
                    self._faults_left -= 1  # type: ignore[attr-defined]
                    raise RuntimeError("llama_decode returned -1 (fault injected by "
                                       "bench.common --engine-fault)")
                return real_eval(tokens)
            llm.eval = failing_eval
            try:
                return generate(self, stream)
            finally:
                del llm.eval
        LlamaEngine.__init__ = faulty_init  # type: ignore[method-assign]
        LlamaEngine._generate = faulty_generate  # type: ignore[method-assign]


def hook_args(*, record_prompts: str | os.PathLike[str] | None = None,
              engine_fault: str | None = None) -> list[str]:
    """The options of :func:`main` for these hooks ([] for none)."""
    args = ["--record-prompts", os.fspath(record_prompts)] if record_prompts else []
    return args + (["--engine-fault", engine_fault] if engine_fault else [])


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.common [--record-prompts FILE] [--engine-fault N[,K]] serve …``:
    ``codefill`` with the engine hooks installed (the hook options come first; the rest is
    codefill's command line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    hooks: dict[str, str] = {}
    while args and args[0] in ("--record-prompts", "--engine-fault"):
        if len(args) < 2:
            raise SystemExit(f"{args[0]} needs a value")
        hooks[args[0][2:].replace("-", "_")] = args[1]
        del args[:2]
    install_engine_hooks(**hooks)
    from lsp_server.cli.main import main as codefill

    return codefill(args)


# ---------------------------------------------------------------------------------------------
# Remote completion servers on 127.0.0.1 (what they do with FIM: tests/remote_servers.py)
#
# * llama.cpp's ``llama-server``, built from the sdist of the installed llama-cpp-python by
#   ``scripts/build-llama-server`` (``scripts/test`` runs it before pytest) into
#   ``$XDG_CACHE_HOME/codefill/llama-server/<version>/``. :func:`llama_server_binary` finds it,
#   :func:`why_no_llama_server` says why it is missing (the reason to skip with).
# * llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``, the ``server``
#   extra; listed in codefill's ``dev`` extra).
#
# Both run with llama.cpp's extra weight buffers (repacking, AMX) off: on this project's build
# machines llama.cpp's AMX matrix multiply segfaults on Q4_K models (ggml-org/llama.cpp#20824;
# llama-cpp-python with the embedded model dies with SIGSEGV on its first token). llama-server
# takes ``--no-repack`` (common/arg.cpp: it sets ``no_extra_bufts``); llama-cpp-python's server
# has no such setting, so it is started through a small bootstrap that clears
# ``llama_model_params.use_extra_bufts``, as lsp_server/engine/llama_engine.py does in-process.

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
    missing. …"; tests/remote_servers.py). This writes a *copy* of the GGUF (the original is
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
    sharing the context), 2 threads, no warm-up run, no web UI, ``--no-repack`` (see above). ``batch`` (default ``min(1024, ctx // 2)``) must stay well below ``ctx``: /infill
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


# Runs llama-cpp-python's server with llama_model_params.use_extra_bufts off (see above): Llama() builds its parameters from llama_model_default_params(), looked up on the
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
# Random-weight checkpoints in the exact Hugging Face Gemma layout
#
# Nothing may download weights here, so the quantizer's tests and bench/quantize.py build their
# own: config.json with the keys CodeGemma 2B publishes (dimensions overridden),
# ``model.safetensors`` (or shards with an index) under the published tensor names, and a small
# SentencePiece BPE tokenizer trained on the spot with the FIM sentinels as user-defined symbols
# and Gemma's special-token ids (pad 0, eos 1, bos 2, unk 3). Needs the ``sentencepiece`` and
# ``safetensors`` packages (dev extra).

# What Gemma 2 / Gemma 3 (text) configs add or change.
ARCH_CONFIG_EXTRA: dict[str, dict[str, Any]] = {
    "GemmaForCausalLM": {},
    "Gemma2ForCausalLM": {"model_type": "gemma2", "attn_logit_softcapping": 50.0,
                          "final_logit_softcapping": 30.0, "query_pre_attn_scalar": None,
                          "sliding_window": 4096, "cache_implementation": "hybrid"},
    "Gemma3ForCausalLM": {"model_type": "gemma3_text", "query_pre_attn_scalar": None,
                          "rope_local_base_freq": 10000.0, "rope_theta": 1000000.0,
                          "sliding_window": 512, "sliding_window_pattern": 6,
                          "final_logit_softcapping": None, "attn_logit_softcapping": None},
}

CODE_SAMPLES = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "import os\nimport sys\n\n\ndef main(argv):\n    for name in argv[1:]:\n        print(os.path.basename(name))\n    return 0\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n        self.items.append(item)\n\n    def pop(self):\n        return self.items.pop()\n",
    "function add(a, b) {\n  return a + b;\n}\n\nconst total = [1, 2, 3].reduce(add, 0);\nconsole.log(total);\n",
    "for (int i = 0; i < n; ++i) {\n    sum += values[i] * weights[i];\n}\nreturn sum / n;\n",
    "SELECT name, count(*) FROM users WHERE age > 30 GROUP BY name ORDER BY name;\n",
    "with open(path, 'r', encoding='utf-8') as fh:\n    data = json.load(fh)\nresult = {k: v for k, v in data.items() if v}\n",
    "fn main() {\n    let xs: Vec<i32> = (0..10).collect();\n    println!(\"{:?}\", xs);\n}\n",
]


def corpus_lines(n: int = 400, seed: int = 0) -> Iterator[str]:
    """Deterministic code-like text (samples with renamed identifiers and numbers)."""
    rng = np.random.default_rng(seed)
    names = ["value", "count", "index", "result", "items", "total", "node", "path", "data", "key"]
    for i in range(n):
        text = CODE_SAMPLES[i % len(CODE_SAMPLES)]
        a, b = rng.choice(names, 2, replace=False)
        text = text.replace("n", str(a)[0] + "n", 1).replace("sum", str(b)).replace(
            "30", str(int(rng.integers(0, 1000))))
        yield from text.splitlines()


def train_tokenizer(directory: Path, vocab_size: int = 512, seed: int = 0) -> Path:
    """Train a SentencePiece BPE tokenizer like Gemma's (byte fallback, no dummy prefix)."""
    import sentencepiece as spm

    directory.mkdir(parents=True, exist_ok=True)
    prefix = directory / "tokenizer"
    spm.SentencePieceTrainer.train(
        sentence_iterator=corpus_lines(seed=seed), model_prefix=str(prefix),
        model_type="bpe", vocab_size=vocab_size, byte_fallback=True, character_coverage=1.0,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", unk_piece="<unk>", user_defined_symbols=reserved_symbols(),
        add_dummy_prefix=False, remove_extra_whitespaces=False, split_digits=True,
        normalization_rule_name="identity", allow_whitespace_only_pieces=True,
        num_threads=1, minloglevel=2)
    prefix.with_suffix(".vocab").unlink()
    return prefix.with_suffix(".model")


def make_config(arch: str = "GemmaForCausalLM", **dims: Any) -> dict[str, Any]:
    """A config.json dict of ``arch`` with the dimensions in ``dims`` overridden."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch}")
    cfg = {**CODEGEMMA_2B_CONFIG, **ARCH_CONFIG_EXTRA[arch], "architectures": [arch]}
    cfg.update(dims)
    if cfg.get("query_pre_attn_scalar", 0) is None:
        cfg["query_pre_attn_scalar"] = cfg["head_dim"]
    return cfg


def random_weights(cfg: dict[str, Any], seed: int = 0, std: float = 0.02,
                   norm_std: float = 0.1) -> dict[str, np.ndarray]:
    """Tensors under the published names, float32. Norm weights are stored as Gemma stores them
    (the effective scale is 1 + w), so a missing +1 in conversion shows in the logits."""
    rng = np.random.default_rng(seed)
    arch = ARCHITECTURES[cfg["architectures"][0]].gguf_arch
    h, inter, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    nh, nkv, vocab = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]
    shapes = {
        "input_layernorm.weight": (h,), "post_attention_layernorm.weight": (h,),
        "pre_feedforward_layernorm.weight": (h,), "post_feedforward_layernorm.weight": (h,),
        "self_attn.q_proj.weight": (nh * hd, h), "self_attn.k_proj.weight": (nkv * hd, h),
        "self_attn.v_proj.weight": (nkv * hd, h), "self_attn.o_proj.weight": (h, nh * hd),
        "self_attn.q_norm.weight": (hd,), "self_attn.k_norm.weight": (hd,),
        "mlp.gate_proj.weight": (inter, h), "mlp.up_proj.weight": (inter, h),
        "mlp.down_proj.weight": (h, inter),
    }

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        s = norm_std if len(shape) == 1 else std
        return (rng.standard_normal(shape, dtype=np.float32) * s).astype(np.float32)

    out = {"model.embed_tokens.weight": draw((vocab, h))}
    for i in range(cfg["num_hidden_layers"]):
        for suffix in LAYER_TENSORS[arch]:
            out[f"model.layers.{i}.{suffix}"] = draw(shapes[suffix])
    out["model.norm.weight"] = draw((h,))
    return out


_ST_DTYPES = {"float32": ("F32", "<f4"), "float16": ("F16", "<f2"), "bfloat16": ("BF16", None)}


def save_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str = "float32") -> None:
    """Write ``tensors`` (float32) as ``dtype``. F32/F16 go through the safetensors package;
    BF16 (no numpy dtype) is written byte by byte per the format (rounded to nearest even)."""
    code, np_dtype = _ST_DTYPES[dtype]
    if np_dtype is not None:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v.astype(np_dtype)) for k, v in tensors.items()},
                  str(path), metadata={"format": "pt"})
        return
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name, arr in tensors.items():
        bits = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)
        bf = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")  # round to nearest even
        raw = bf.tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(head)) + head)
        for raw in blobs:
            fh.write(raw)


def bf16_round(a: np.ndarray) -> np.ndarray:
    """What a float32 array becomes after a BF16 round trip (for reference computations)."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)


def write_checkpoint(directory: Path, cfg: dict[str, Any], *, seed: int = 0,
                     dtype: str = "float32", shards: int = 1, tokenizer_vocab: int = 512,
                     std: float = 0.02, norm_std: float = 0.1,
                     weights: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Write a complete checkpoint into ``directory``; returns its float32 weights.

    ``cfg['vocab_size']`` is set to the trained tokenizer's size when it is 0.
    """
    import sentencepiece as spm

    directory.mkdir(parents=True, exist_ok=True)
    model = train_tokenizer(directory, tokenizer_vocab, seed)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    write_tokenizer_config(directory, pieces)
    if not cfg.get("vocab_size"):
        cfg = {**cfg, "vocab_size": len(pieces)}
    cfg = {**cfg, "torch_dtype": dtype}
    (directory / "config.json").write_text(json.dumps(cfg, indent=2))
    tensors = weights if weights is not None else random_weights(cfg, seed, std, norm_std)
    names = list(tensors)
    if shards <= 1:
        save_safetensors(directory / "model.safetensors", tensors, dtype)
    else:
        weight_map: dict[str, str] = {}
        for k, part in enumerate(np.array_split(np.arange(len(names)), shards)):
            fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            save_safetensors(directory / fname, {names[j]: tensors[names[j]] for j in part}, dtype)
            weight_map.update({names[j]: fname for j in part})
        total = sum(v.size * (4 if dtype == "float32" else 2) for v in tensors.values())
        (directory / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (directory / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}))
    if dtype == "bfloat16":
        return {k: bf16_round(v) for k, v in tensors.items()}
    if dtype == "float16":
        return {k: v.astype(np.float16).astype(np.float32) for k, v in tensors.items()}
    return tensors


if __name__ == "__main__":
    sys.exit(main())
