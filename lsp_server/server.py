"""The codefill language server: LSP registration and glue only. What decides lives in plain
modules: completion/ (pipeline, completer, prefill), lifecycle.py, settings.py, context_host.py,
model_requests.py; protocol.py, textsync.py, messages.py, notify.py hold the LSP details.
docs/protocol.md documents the codefill/* methods; docs/architecture.md one keystroke's path."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Callable

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from . import __version__
from .completion.pipeline import Pipeline, Suggestion
from .completion.prefill import Prefiller
from .lifecycle import ModelHost, watch_parent
from .model_requests import MODEL_HANDLERS
from .messages import PositionParams, complete_reply, completion_list, inline_items
from .notify import ClientNotifier
from .protocol import CappedStdin, CodefillProtocol, plain
from .settings import Settings, section
from .textsync import is_stale, request_at, uri_path, use_lsp_lines
from .context_host import WorkspaceContext

log = logging.getLogger("codefill.server")


class CodefillServer(LanguageServer):
    """pygls server plus the codefill components it glues, all reading one settings holder."""

    def __init__(self) -> None:
        super().__init__("codefill", __version__,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         protocol_cls=CodefillProtocol)
        self.settings = Settings()
        self.notify = ClientNotifier(self, self.settings)
        self.host = ModelHost(self.settings, self.notify.model_state,
                              on_health=self.notify.remote_health)
        self.context = WorkspaceContext(self.settings)
        self.pipeline = Pipeline(self.settings, lambda: self.host.ready, self.notify.log,
                                 context=self.context, unavailable=self.host.why_unavailable)
        self.prefill = Prefiller(self.settings, lambda: self.host.ready, self.pipeline,
                                 self.notify.log, self.context.version)
        self._tasks: set[asyncio.Task] = set()  # background work, referenced until it ends

    def background(self, work: Any) -> None:
        """Run a coroutine without awaiting it (a reference is kept until it ends)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def apply_settings(self, data: Any, source: str) -> None:
        """Validate and apply a settings table; report problems; rebuild and reload as needed."""
        data = plain(data)
        if data is None:
            return
        old, problems = self.settings.update(data)
        for problem in problems:
            self.notify.message(types.MessageType.Warning, f"codefill: {problem} ({source})")
        if old.context != self.settings.config.context and self.context.started:
            self.context.start(self._buffers())  # rebuild (or build, or stop)
        if self.host.state != "idle" and self.host.needs_reload():
            self.pipeline.reset()
            self.host.start()

    async def pull_settings(self) -> None:
        """Ask the client for the ``codefill`` section (the pull model); a failed, missing or
        malformed reply is logged and the settings stay as they are."""
        ws = self.client_capabilities.workspace
        if ws is None or not ws.configuration:
            return
        try:
            result = plain(await asyncio.wait_for(self.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section="codefill")])),
                timeout=5))
            if not (isinstance(result, list) and result
                    and (result[0] is None or isinstance(result[0], dict))):
                raise ValueError(f"answered {str(result)[:80]!r}, not a list of settings tables")
        except Exception as exc:  # failed, malformed or no answer: keep what we have
            why = str(exc) or type(exc).__name__
            log.info("workspace/configuration failed: %s", why)
            self.notify.log("info", f"codefill: workspace/configuration: {why}; using the "
                                    "settings we have")
            return
        if isinstance(result[0], dict):
            self.apply_settings(result[0], "workspace/configuration")

    def report_server_error(self, error: Exception, source: Any) -> None:
        self.notify.protocol_error(error, source)

    def _buffers(self) -> list[tuple[Any, str]]:
        return [(p, d.source) for d in list(self.workspace.text_documents.values())
                if (p := uri_path(d.uri)) is not None]

    async def suggest(self, uri: str, position: types.Position,
                      on_text: Callable[[str], None] | None = None) -> Suggestion | None:
        """The pipeline's suggestion at a cursor; None for a cursor codefill does not serve.
        A suggestion the document has outdated meanwhile comes back empty."""
        req = request_at(self.workspace, self.context.roots, uri, position)
        if req is None:
            return None
        self.prefill.noticed(req, position.line)
        result = await self.pipeline.complete(req, on_text=on_text)
        if is_stale(self.workspace, req):
            return Suggestion("", result.source, "the document changed", result.single_line,
                              result.latency_s)
        return result


# --- handlers -------------------------------------------------------------------------------
def initialize(ls: CodefillServer, params: types.InitializeParams) -> None:
    use_lsp_lines(ls.workspace)
    folders = [f.uri for f in params.workspace_folders or []]
    if not folders and params.root_uri:
        folders = [params.root_uri]
    ls.context.roots = [r for r in map(uri_path, folders) if r is not None]
    ls.apply_settings(section(plain(params.initialization_options)), "initializationOptions")
    if (watch := watch_parent(params.process_id)) is not None:
        ls._tasks.add(watch)


async def initialized(ls: CodefillServer, params: types.InitializedParams) -> None:
    # Nothing in loading the model waits on the client: it starts with the settings we have
    # (initializationOptions, else the defaults); the pulled ones reload it only if they change
    # what it was loaded with.
    ls.host.start()
    ls.background(ls.notify.begin_progress("codefill", "loading the model"))
    await ls.pull_settings()
    ls.context.start(ls._buffers())


async def did_change_configuration(ls: CodefillServer,
                                   params: types.DidChangeConfigurationParams) -> None:
    settings = plain(params.settings)
    if isinstance(settings, dict) and isinstance(settings.get("codefill"), dict):
        ls.apply_settings(settings["codefill"], "didChangeConfiguration")
    else:  # the pull model: the notification carries nothing
        await ls.pull_settings()


def did_open(ls: CodefillServer, params: types.DidOpenTextDocumentParams) -> None:
    doc = params.text_document
    ls.context.buffer_changed(uri_path(doc.uri), doc.text)  # then prefill the prompt's start:
    did_focus(ls, {"textDocument": {"uri": doc.uri}, "position": {"line": 0, "character": 0}})


def did_focus(ls: CodefillServer, params: Any) -> None:
    """The user looks at a cursor: prefill the prompt a request there would send."""
    where = PositionParams.parse(params)
    if where and (req := request_at(ls.workspace, ls.context.roots, where.uri, where.position)):
        ls.prefill.focus(req, where.position.line)


def did_change(ls: CodefillServer, params: types.DidChangeTextDocumentParams) -> None:
    doc = ls.workspace.text_documents.get(params.text_document.uri)
    if doc is not None:
        ls.pipeline.document_changed(doc.uri, doc.source)
        ls.context.buffer_changed(uri_path(doc.uri), doc.source)


def did_close(ls: CodefillServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.pipeline.document_closed(params.text_document.uri)
    ls.prefill.forget(params.text_document.uri)
    ls.context.buffer_changed(uri_path(params.text_document.uri), None)


async def inline_completion(ls: CodefillServer, params: types.InlineCompletionParams
                            ) -> types.InlineCompletionList | None:
    return inline_items(await ls.suggest(params.text_document.uri, params.position),
                        params.position)


async def completion(ls: CodefillServer, params: types.CompletionParams
                     ) -> types.CompletionList | None:
    return completion_list(await ls.suggest(params.text_document.uri, params.position),
                           params.position)


async def codefill_complete(ls: CodefillServer, params: Any) -> dict[str, Any] | None:
    """Streaming completion: codefill/partial notifications, then the final text."""
    where = PositionParams.parse(params)
    if where is None:
        return None

    def on_text(text: str) -> None:
        if where.stream_id is not None:
            ls.protocol.notify("codefill/partial", {"streamId": where.stream_id, "text": text})

    return complete_reply(await ls.suggest(where.uri, where.position, on_text=on_text))


def did_accept(ls: CodefillServer, params: Any) -> None:
    where = PositionParams.parse(params)
    if where and (req := request_at(ls.workspace, ls.context.roots, where.uri, where.position)):
        ls.pipeline.accepted(req)


def status(ls: CodefillServer, params: Any) -> dict[str, Any]:
    return {"version": __version__, "model": ls.host.status(),
            "completion": ls.pipeline.status(), "context": ls.context.status(),
            "prefill": ls.prefill.status(),
            "settings": {"enabled": ls.settings.config.completion.enabled,
                         "mode": ls.settings.config.completion.mode},
            "protocol": {"pending_handlers": ls.protocol.pending_handlers}}


async def shutdown(ls: CodefillServer, params: Any) -> None:
    ls.pipeline.reset()
    ls.context.stop()
    await ls.host.close()


HANDLERS: tuple[tuple[str, Callable[..., Any], Any], ...] = (
    (types.INITIALIZE, initialize, None),
    (types.INITIALIZED, initialized, None),
    (types.WORKSPACE_DID_CHANGE_CONFIGURATION, did_change_configuration, None),
    (types.TEXT_DOCUMENT_DID_OPEN, did_open, None),
    (types.TEXT_DOCUMENT_DID_CHANGE, did_change, None),
    (types.TEXT_DOCUMENT_DID_CLOSE, did_close, None),
    (types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_completion, types.InlineCompletionOptions()),
    (types.TEXT_DOCUMENT_COMPLETION, completion,
     types.CompletionOptions(trigger_characters=None, resolve_provider=False)),
    ("codefill/complete", codefill_complete, None),
    ("codefill/didAccept", did_accept, None),
    ("codefill/didFocus", did_focus, None),
    ("codefill/status", status, None),
    (types.SHUTDOWN, shutdown, None),
) + MODEL_HANDLERS  # (LSP method, handler, registration options): what the server answers


def create_server() -> CodefillServer:
    ls = CodefillServer()
    for method, handler, options in HANDLERS:
        ls.feature(method, options)(handler)
    return ls


def serve(tcp: str | None = None) -> None:
    """Run the server on stdio (or on TCP: ``PORT`` binds 127.0.0.1, ``HOST:PORT`` HOST)."""
    if tcp:
        from .transport import parse_tcp_address, serve_tcp
        address = parse_tcp_address(tcp)  # a bad value fails before anything starts
    server = create_server()
    if tcp:
        serve_tcp(server, *address)
    else:
        server.start_io(CappedStdin(sys.stdin.buffer), sys.stdout.buffer)
