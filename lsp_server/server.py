"""The codefill language server: LSP registration and glue only.

Everything that decides anything lives in plain modules: the completion pipeline
(lsp_server/completion/pipeline.py), the model's lifecycle (lsp_server/lifecycle.py), the
config tree (lsp_server/config.py). See docs/protocol.md for the codefill/* methods.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidRequest
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from . import __version__
from .completion.pipeline import CompletionRequest, Pipeline, Suggestion
from .config import Config, load_config
from .context import WorkspaceIndex, context_budget
from .prompt.assemble import ContextFile
from .lifecycle import ModelHost
from .textsync import use_lsp_lines

log = logging.getLogger("codefill.server")

# JSON-RPC bodies above this are read and thrown away instead of parsed (a bad client must not
# make us allocate gigabytes).
MAX_CONTENT_LENGTH = int(os.environ.get("CODEFILL_MAX_MESSAGE_BYTES", 64 * 1024 * 1024))
LOG_LEVELS = {"error": types.MessageType.Error, "warning": types.MessageType.Warning,
              "info": types.MessageType.Info, "debug": types.MessageType.Log}
COMPLETION_ITEM_MARK = "codefill"


class CodefillProtocol(LanguageServerProtocol):
    """pygls' protocol, plus an error reply to requests whose params do not validate.

    pygls validates params while parsing the JSON and then drops the message, so the client
    would wait forever for an answer; here the request gets InvalidParams instead.
    """

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "id" in data and "method" in data:
                self._send_response(data["id"], error=exc.to_response_error())
            raise

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._finished_notifications: list[Any] = []  # before super(): it runs handlers
        super().__init__(*args, **kwargs)

    def _execute_handler(self, msg_id: Any, handler: Any, callback: Any,
                         args: tuple[Any, ...] | None = None,
                         kwargs: dict[str, Any] | None = None) -> None:
        self._forget_finished()
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        # pygls 2.1 files the future of every notification handled by a coroutine or generator
        # (didOpen, didChange, ...) in _request_futures under a fresh uuid and never removes it
        # (only responses do): ~0.6 KB per notification, unbounded (found by the 10k soak).
        # Forgotten at the next message, not in the callback: cancel() runs callbacks at once,
        # and pygls' shutdown cancels while iterating over that dict.
        if callback == self._check_handler_result:  # how pygls runs notifications
            future = self._request_futures.get(msg_id)
            if future is not None:
                future.add_done_callback(
                    lambda _f: self._finished_notifications.append(msg_id))

    def _forget_finished(self) -> None:
        while self._finished_notifications:
            self._request_futures.pop(self._finished_notifications.pop(), None)

    @property
    def pending_handlers(self) -> int:
        """Requests and notifications whose handlers have not finished."""
        self._forget_finished()
        return len(self._request_futures)

    def handle_message(self, message: Any) -> None:
        # The spec: requests after `shutdown` error with InvalidRequest (pygls drops them).
        if (self._shutdown and getattr(message, "method", types.EXIT) != types.EXIT
                and getattr(message, "id", None) is not None):
            self._send_response(message.id, error=JsonRpcInvalidRequest(
                "the server is shutting down").to_response_error())
            return
        super().handle_message(message)


class CodefillServer(LanguageServer):
    """pygls server plus the codefill components it glues together."""

    def __init__(self) -> None:
        super().__init__("codefill", __version__,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         protocol_cls=CodefillProtocol)
        self.config = Config()
        self.host = ModelHost(self.config, self._model_state, on_health=self._remote_health)
        self.pipeline = Pipeline(self.config, lambda: self.host.ready, self._log,
                                 context=self.context_for, unavailable=self._why_no_model)
        self.roots: list[Path] = []
        self.index: WorkspaceIndex | None = None
        self._progress_token: str | None = None
        self._parent_watch: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._index_started = False  # start_index ran (after initialize): settings may rebuild

    # --- settings ------------------------------------------------------------------------
    def apply_settings(self, data: Any, source: str) -> None:
        """Validate and apply a settings table; report problems; reload the model if needed."""
        data = plain(data)
        if data is None:
            return
        config, problems = load_config(data)
        for problem in problems:
            self._message(types.MessageType.Warning, f"codefill: {problem} ({source})")
        context_changed = config.context != self.config.context
        self.config = config
        self.host.config = config
        self.pipeline.config = config
        if self.host.session is not None:
            self.host.session.config = config
        if context_changed and (self.index is not None or self._index_started):
            self.start_index()  # rebuild (or build, or stop) with the new filters and limits
        if self.host.state != "idle" and self.host.needs_reload():
            self.pipeline.reset()
            self.host.start()

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Protocol-level errors (bad JSON, bad params) go to the log, not to a popup: the
        request already got its error reply, and the user can do nothing about a client bug."""
        log.warning("protocol error (%s): %s", getattr(source, "__name__", source), error)
        self._log("warning", f"codefill: protocol error: {error}")

    # --- messages ------------------------------------------------------------------------
    def _message(self, kind: types.MessageType, text: str) -> None:
        try:
            self.window_show_message(types.ShowMessageParams(type=kind, message=text))
        except Exception:  # no client yet / connection gone
            log.warning(text)

    def _log(self, level: str, text: str) -> None:
        order = list(LOG_LEVELS)
        if order.index(level) > order.index(self.config.completion.log_level):
            return
        try:
            self.window_log_message(types.LogMessageParams(type=LOG_LEVELS[level], message=text))
        except Exception:
            log.debug(text)

    def _model_state(self, state: str, detail: str) -> None:
        self._log("info", f"model {state}: {detail}")
        token = self._progress_token
        if token is not None:
            try:
                if state == "loading":
                    self.work_done_progress.report(token, types.WorkDoneProgressReport(
                        message=detail))
                elif state in ("ready", "failed"):
                    self.work_done_progress.end(token, types.WorkDoneProgressEnd(
                        message=f"{state}: {detail}"))
                    self._progress_token = None
            except Exception:
                pass
        if state == "failed":
            self._message(types.MessageType.Error, f"codefill: {detail}")

    def _remote_health(self, state: str, detail: str) -> None:
        """A remote engine stopped or started answering (called from engine threads)."""
        if state == "failing":
            text = f"codefill: remote engine failing: {detail}"
            if self.config.remote.fallback:
                text += " (completing with the local model meanwhile)"
            kind = types.MessageType.Warning
        else:
            text, kind = f"codefill: {detail}", types.MessageType.Info
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._message, kind, text)
        else:
            self._message(kind, text)

    async def load_model(self) -> None:
        self._loop = asyncio.get_running_loop()
        caps = self.client_capabilities.window
        if caps is not None and caps.work_done_progress:
            token = f"codefill-load-{uuid.uuid4().hex[:8]}"
            try:
                await self.work_done_progress.create_async(token)
                self.work_done_progress.begin(token, types.WorkDoneProgressBegin(
                    title="codefill", message="loading the model", cancellable=False))
                self._progress_token = token
            except Exception:
                self._progress_token = None
        self.host.start()

    def _why_no_model(self) -> str:
        if self.host.state == "failed":
            return f"the model failed to load: {self.host.error}"
        return f"the model is not loaded yet ({self.host.state})"

    # --- repository context --------------------------------------------------------------
    def start_index(self) -> None:
        """(Re)build the workspace index in the background."""
        self._index_started = True
        if self.index is not None:
            self.index.stop()
            self.index = None
        if not self.roots or not self.config.context.enabled:
            return
        self.index = WorkspaceIndex(self.roots, self.config.context)
        for doc in list(self.workspace.text_documents.values()):
            path = _uri_path(doc.uri)
            if path is not None:
                self.index.update_buffer(path, doc.source)
        self.index.start()

    def context_for(self, req: CompletionRequest, session: Any, max_tokens: int
                    ) -> list[ContextFile]:
        """The repository-context files for a request (called on a worker thread)."""
        if self.index is None or not req.file_path:
            return []
        total = session.n_ctx - max_tokens - 1
        sel = self.index.select_context(
            req.file_path, req.text[:req.offset], req.text[req.offset:], session.tokenizer,
            context_budget(total, self.config.prompt.context_share))
        self._log("debug", f"{req.path}: context {sel.status}, {len(sel.files)} file(s) "
                           f"in {sel.elapsed_ms:.1f} ms{' (cached)' if sel.cached else ''}")
        return list(sel.files)

    def buffer_changed(self, uri: str, text: str | None) -> None:
        """Editor buffers win over the disk in the index; None: the buffer was closed."""
        path = _uri_path(uri)
        if self.index is None or path is None:
            return
        if text is None:
            self.index.close_buffer(path)
        else:
            self.index.update_buffer(path, text)

    # --- documents -----------------------------------------------------------------------
    async def suggest(self, uri: str, position: types.Position,
                      on_text: Callable[[str], None] | None = None) -> Suggestion | None:
        """The pipeline's suggestion at a cursor; None for a cursor codefill does not serve
        (unknown document, outside the roots, bad position). A suggestion the document has
        outdated meanwhile comes back empty: stale text is never shown."""
        req = self.request_at(uri, position)
        if req is None:
            return None
        result = await self.pipeline.complete(req, on_text=on_text)
        if _stale(self, req):
            return Suggestion("", result.source, "the document changed", result.single_line,
                              result.latency_s)
        return result

    def request_at(self, uri: str, position: types.Position) -> CompletionRequest | None:
        """The pipeline request for ``position`` in an open ``file:`` document inside the
        workspace, or None (unknown document, other scheme, outside the roots, bad position)."""
        doc = self.workspace.text_documents.get(uri)
        if doc is None:
            return None
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            return None
        path = Path(unquote(parsed.path))
        rel = relative_to_roots(path, self.roots)
        if self.roots and rel is None:
            return None
        lines = doc.lines
        if position.line < 0 or position.character < 0:
            return None
        if position.line > len(lines) or (position.line == len(lines) and position.character):
            return None
        if position.line == len(lines):
            offset = len(doc.source)
        else:
            line = lines[position.line]
            text = line.rstrip("\r\n")
            pos = doc.position_codec.position_from_client_units(lines, position)
            # Past the end of a line means its end (LSP spec).
            offset = sum(len(x) for x in lines[:position.line]) + min(pos.character, len(text))
        return CompletionRequest(uri=uri, text=doc.source, offset=offset,
                                 language=doc.language_id or "",
                                 path=rel.as_posix() if rel is not None else path.name,
                                 file_path=str(path))

    def watch_parent(self, pid: int | None) -> None:
        """Exit when the editor process that started us dies (LSP initialize processId)."""
        if not pid or pid == os.getpid():
            return

        async def watch() -> None:
            while True:
                await asyncio.sleep(1.0)
                if not pid_alive(pid):
                    log.info("parent process %s is gone; exiting", pid)
                    os._exit(0)

        self._parent_watch = asyncio.get_running_loop().create_task(watch())


def plain(value: Any) -> Any:
    """JSON-like data as dicts and lists: pygls turns the params of custom methods into
    namedtuples, and LSPAny values may come either way."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def relative_to_roots(path: Path, roots: list[Path]) -> Path | None:
    for root in roots:
        try:
            return path.resolve().relative_to(root.resolve())
        except ValueError:
            continue
    return None


def _uri_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


server = None  # set by create_server()


def create_server() -> CodefillServer:
    ls = CodefillServer()

    @ls.feature(types.INITIALIZE)
    def initialize(ls: CodefillServer, params: types.InitializeParams) -> None:
        use_lsp_lines(ls.workspace)
        folders = params.workspace_folders or []
        roots = [_uri_path(f.uri) for f in folders]
        if not roots and params.root_uri:
            roots = [_uri_path(params.root_uri)]
        ls.roots = [r for r in roots if r is not None]
        opts = plain(params.initialization_options)
        if isinstance(opts, dict) and "codefill" in opts and isinstance(opts["codefill"], dict):
            opts = opts["codefill"]
        ls.apply_settings(opts, "initializationOptions")
        ls.watch_parent(params.process_id)

    @ls.feature(types.INITIALIZED)
    async def initialized(ls: CodefillServer, params: types.InitializedParams) -> None:
        ws = ls.client_capabilities.workspace
        if ws is not None and ws.configuration:
            try:
                result = await asyncio.wait_for(ls.workspace_configuration_async(
                    types.ConfigurationParams(items=[types.ConfigurationItem(section="codefill")])),
                    timeout=5)
                result = plain(result)
                if result and isinstance(result[0], dict):
                    ls.apply_settings(result[0], "workspace/configuration")
            except Exception as exc:
                log.info("workspace/configuration failed: %s", exc)
        ls.start_index()
        await ls.load_model()

    @ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: CodefillServer,
                                       params: types.DidChangeConfigurationParams) -> None:
        settings = plain(params.settings)
        if isinstance(settings, dict) and isinstance(settings.get("codefill"), dict):
            ls.apply_settings(settings["codefill"], "didChangeConfiguration")
            return
        ws = ls.client_capabilities.workspace
        if ws is not None and ws.configuration:  # pull model: the notification carries nothing
            try:
                result = await ls.workspace_configuration_async(types.ConfigurationParams(
                    items=[types.ConfigurationItem(section="codefill")]))
                result = plain(result)
                if result and isinstance(result[0], dict):
                    ls.apply_settings(result[0], "workspace/configuration")
            except Exception as exc:
                log.info("workspace/configuration failed: %s", exc)

    @ls.feature(types.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(ls: CodefillServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.buffer_changed(params.text_document.uri, params.text_document.text)
        # Warm the context selection (outlines, token counts) off the first keystroke's path.
        session = ls.host.ready
        req = ls.request_at(params.text_document.uri, types.Position(0, 0))
        if session is not None and req is not None:
            await asyncio.to_thread(ls.context_for, req, session, ls.config.prompt.max_tokens)

    @ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CodefillServer, params: types.DidChangeTextDocumentParams) -> None:
        doc = ls.workspace.text_documents.get(params.text_document.uri)
        if doc is not None:
            ls.pipeline.document_changed(doc.uri, doc.source)
            ls.buffer_changed(doc.uri, doc.source)

    @ls.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CodefillServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.pipeline.document_closed(params.text_document.uri)
        ls.buffer_changed(params.text_document.uri, None)

    @ls.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: CodefillServer, params: types.InlineCompletionParams
                                ) -> types.InlineCompletionList | None:
        result = await ls.suggest(params.text_document.uri, params.position)
        if result is None or not result.text:
            return None
        pos = params.position
        return types.InlineCompletionList(items=[types.InlineCompletionItem(
            insert_text=result.text, range=types.Range(start=pos, end=pos))])

    @ls.feature(types.TEXT_DOCUMENT_COMPLETION,
                types.CompletionOptions(trigger_characters=None, resolve_provider=False))
    async def completion(ls: CodefillServer, params: types.CompletionParams
                         ) -> types.CompletionList | None:
        result = await ls.suggest(params.text_document.uri, params.position)
        if result is None:
            return None
        if not result.text:
            return types.CompletionList(is_incomplete=True, items=[])
        pos = params.position
        label = result.text.strip().splitlines()[0][:60] if result.text.strip() else result.text
        item = types.CompletionItem(
            label=label, kind=types.CompletionItemKind.Snippet, detail=COMPLETION_ITEM_MARK,
            # Sorted after the language's own items ("~" sorts late), never preselected.
            sort_text="~" + label, filter_text=None, preselect=False,
            text_edit=types.TextEdit(range=types.Range(start=pos, end=pos),
                                     new_text=result.text),
            documentation=types.MarkupContent(kind=types.MarkupKind.Markdown,
                                              value=f"```\n{result.text}\n```"))
        # isIncomplete: typing refines the suggestion, so the client must ask again.
        return types.CompletionList(is_incomplete=True, items=[item])

    @ls.feature("codefill/complete")
    async def codefill_complete(ls: CodefillServer, params: Any) -> dict[str, Any] | None:
        """Streaming completion: codefill/partial notifications, then the final text."""
        params = plain(params)
        where = _document_position(params)
        if where is None:
            return None
        stream_id = params.get("streamId")

        def on_text(text: str) -> None:
            if stream_id is not None:
                ls.protocol.notify("codefill/partial", {"streamId": stream_id, "text": text})

        result = await ls.suggest(*where, on_text=on_text)
        if result is None:
            return None
        return {"text": result.text, "source": result.source, "reason": result.reason,
                "singleLine": result.single_line, "latencyMs": round(result.latency_s * 1000, 1)}

    @ls.feature("codefill/didAccept")
    def did_accept(ls: CodefillServer, params: Any) -> None:
        where = _document_position(plain(params))
        req = ls.request_at(*where) if where is not None else None
        if req is not None:
            ls.pipeline.accepted(req)

    @ls.feature("codefill/status")
    def status(ls: CodefillServer, params: Any) -> dict[str, Any]:
        index = ls.index.stats() if ls.index is not None else None
        return {"version": __version__, "model": ls.host.status(),
                "completion": ls.pipeline.status(),
                "context": {"state": index.state, "files": index.files,
                            "source_files": index.source_files, "edges": index.edges,
                            "watching": index.watching} if index else {"state": "off"},
                "settings": {"enabled": ls.config.completion.enabled,
                             "mode": ls.config.completion.mode},
                "protocol": {"pending_handlers": ls.protocol.pending_handlers}}

    @ls.feature(types.SHUTDOWN)
    async def shutdown(ls: CodefillServer, params: Any) -> None:
        ls.pipeline.reset()
        if ls.index is not None:
            ls.index.stop()
        await ls.host.close()

    return ls


def _document_position(params: Any) -> tuple[str, types.Position] | None:
    """(uri, position) from the params of codefill's own methods, or None when malformed."""
    try:
        position = types.Position(line=int(params["position"]["line"]),
                                  character=int(params["position"]["character"]))
        uri = params["textDocument"]["uri"]
    except (KeyError, TypeError, ValueError):
        return None
    return (uri, position) if isinstance(uri, str) else None


def _stale(ls: CodefillServer, req: CompletionRequest) -> bool:
    """The document no longer reads as it did when the request was made."""
    doc = ls.workspace.text_documents.get(req.uri)
    return doc is None or doc.source != req.text


class CappedStdin:
    """stdin for pygls that refuses to read absurd Content-Length bodies into memory."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw

    def readline(self) -> bytes:
        return self.raw.readline()

    def read(self, n: int) -> bytes:
        if n <= MAX_CONTENT_LENGTH:
            return self.raw.read(n)
        log.error("message of %d bytes exceeds the %d byte limit; skipped", n, MAX_CONTENT_LENGTH)
        left = n
        while left > 0:  # discard in chunks so the stream stays in sync
            chunk = self.raw.read(min(left, 1 << 20))
            if not chunk:
                return b""
            left -= len(chunk)
        # A "$/" notification nobody handles: the spec lets servers ignore it silently.
        return b'{"jsonrpc": "2.0", "method": "$/codefill/skippedOversizedMessage"}'


def serve(tcp: str | None = None) -> None:
    """Run the server on stdio (or on HOST:PORT for debugging)."""
    global server
    server = create_server()
    if tcp:
        host, _, port = tcp.rpartition(":")
        server.start_tcp(host or "127.0.0.1", int(port))
    else:
        server.start_io(CappedStdin(sys.stdin.buffer), sys.stdout.buffer)
