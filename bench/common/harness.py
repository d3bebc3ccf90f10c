"""The LSP client of the benchmarks and tests: :class:`Harness`, a real LSP client (pygls)
driving the real ``codefill serve`` process over stdio, and the client capabilities of the
editors it plays (:data:`VSCODE_CAPABILITIES`, :data:`NEOVIM_CAPABILITIES`).

The client lives on an asyncio loop in a background thread so that synchronous code can share one
server: ``h.run(coro)`` runs a coroutine on that loop and returns its value. With engine hooks
(``Harness(record_prompts=…, engine_fault=…)``) the server is started through
``python -m bench.common`` (:mod:`bench.common.engine_hooks`).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from lsp_server.protocol import plain

from .engine_hooks import hook_args
from .paths import REPO

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
                 engine_fault: str | None = None, audit_opens: Path | None = None) -> None:
        """``record_prompts``, ``engine_fault``, ``audit_opens``: start the server with those
        hooks (:mod:`.engine_hooks`); without them it is the plain ``codefill serve``."""
        self.root = root
        self.capabilities = capabilities
        self.settings = settings if settings is not None else {}
        self.init_options = init_options
        self.process_id = process_id if process_id is not None else os.getpid()
        self.env = env
        self.hooks = hook_args(record_prompts=record_prompts, engine_fault=engine_fault,
                               audit_opens=audit_opens)
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
