"""The shapes of what the server answers, and the params of codefill's own methods.

A suggestion becomes an inline completion item, a completion item (sorted after the language's
own items, never preselected) or the reply of ``codefill/complete``; the untyped params of
``codefill/complete`` and ``codefill/didAccept`` (docs/protocol.md) are read into
:class:`PositionParams`, malformed ones into None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lsprotocol import types

from .completion.pipeline import Suggestion
from .protocol import plain

COMPLETION_ITEM_MARK = "codefill"


@dataclass(frozen=True)
class PositionParams:
    """A cursor in a document, as codefill's own methods send it."""

    uri: str
    position: types.Position
    stream_id: Any = None
    """``codefill/complete``: the id its ``codefill/partial`` notifications carry."""

    @classmethod
    def parse(cls, params: Any) -> "PositionParams | None":
        params = plain(params)
        try:
            position = types.Position(line=int(params["position"]["line"]),
                                      character=int(params["position"]["character"]))
            uri = params["textDocument"]["uri"]
        except (KeyError, TypeError, ValueError):
            return None
        if not isinstance(uri, str):
            return None
        return cls(uri, position, params.get("streamId"))


def inline_items(result: Suggestion | None, pos: types.Position
                 ) -> types.InlineCompletionList | None:
    if result is None or not result.text:
        return None
    # Several candidates: one item each, best first (editors cycle through them).
    return types.InlineCompletionList(items=[types.InlineCompletionItem(
        insert_text=text, range=types.Range(start=pos, end=pos))
        for text in result.candidates or [result.text]])


def completion_list(result: Suggestion | None, pos: types.Position
                    ) -> types.CompletionList | None:
    if result is None:
        return None
    if not result.text:
        return types.CompletionList(is_incomplete=True, items=[])
    label = result.text.strip().splitlines()[0][:60] if result.text.strip() else result.text
    item = types.CompletionItem(
        label=label, kind=types.CompletionItemKind.Snippet, detail=COMPLETION_ITEM_MARK,
        # Sorted after the language's own items ("~" sorts late), never preselected.
        sort_text="~" + label, filter_text=None, preselect=False,
        text_edit=types.TextEdit(range=types.Range(start=pos, end=pos), new_text=result.text),
        documentation=types.MarkupContent(kind=types.MarkupKind.Markdown,
                                          value=f"```\n{result.text}\n```"))
    # isIncomplete: typing refines the suggestion, so the client must ask again.
    return types.CompletionList(is_incomplete=True, items=[item])


def complete_reply(result: Suggestion | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {"text": result.text, "source": result.source, "reason": result.reason,
            "singleLine": result.single_line, "latencyMs": round(result.latency_s * 1000, 1),
            "candidates": result.candidates or ([result.text] if result.text else []),
            "moreCandidates": result.more_candidates}
