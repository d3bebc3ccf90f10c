"""Pick the FIM template for a model from the GGUF itself, never from its file name.

Evidence, strongest first: the vocabulary holds every detection sentinel of a family (the family
with the most matching sentinels wins, so Qwen2.5-Coder's five beat a generic three); else the
GGUF metadata names FIM token ids (llama.cpp's converter writes them for FIM-trained families)
and a template is built from those tokens; else the model is served in plain mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

from ..errors import TemplateError
from .assemble import resolve_sentinels
from .templates import TEMPLATES, FimTemplate, Order, get_template, _PSM


class Vocabulary(Protocol):
    special_ids: dict[str, int]

    def token_id(self, text: str) -> int | None: ...

    def token_text(self, token_id: int) -> str | None: ...


@dataclass(frozen=True)
class Detection:
    """The template chosen for a model and why."""

    template: FimTemplate
    reason: str
    """One line of evidence, shown by `codefill models` and `complete --verbose`."""


def _from_metadata(vocab: Vocabulary) -> FimTemplate | None:
    ids: Mapping[str, int] = vocab.special_ids
    if not all(k in ids for k in ("fim_pre", "fim_suf", "fim_mid")):
        return None
    text: Callable[[str], str | None] = lambda role: vocab.token_text(ids[role])
    sentinels = {role: (text(key),) for role, key in
                 (("pre", "fim_pre"), ("suf", "fim_suf"), ("mid", "fim_mid"),
                  ("sep", "fim_sep"), ("repo", "fim_rep")) if key in ids and text(key)}
    if len(sentinels) < 3 or not all(r in sentinels for r in ("pre", "suf", "mid")):
        return None
    stops = tuple(t for key in ("fim_sep", "fim_pad", "fim_rep", "fim_pre", "fim_suf", "fim_mid")
                  if key in ids and (t := text(key)))
    return FimTemplate(name="gguf-metadata", label="FIM tokens named in GGUF metadata",
                       sentinels=sentinels, layouts={Order.PSM: _PSM}, stops=stops,
                       detect=("pre", "suf", "mid"))


def detect_template(vocab: Vocabulary) -> Detection:
    """The best template for ``vocab`` (see module docstring for the evidence order)."""
    best: tuple[int, FimTemplate, dict[str, int]] | None = None
    for t in TEMPLATES.values():
        if not t.detect:
            continue
        ids = resolve_sentinels(t, vocab.token_id)
        if all(role in ids for role in t.detect) and (best is None or len(t.detect) > best[0]):
            best = (len(t.detect), t, ids)
    if best is not None:
        _, t, ids = best
        names = ", ".join(vocab.token_text(ids[r]) or "?" for r in t.detect)
        reason = f"vocabulary has {names}"
        meta_pre = vocab.special_ids.get("fim_pre")
        if meta_pre is not None:
            reason += ("; metadata FIM ids agree" if meta_pre == ids.get("pre")
                       else "; metadata FIM ids disagree (vocabulary wins)")
        return Detection(t, reason)
    meta = _from_metadata(vocab)
    if meta is not None:
        toks = ", ".join(s[0] for s in meta.sentinels.values())
        return Detection(meta, f"metadata names FIM tokens {toks}")
    return Detection(TEMPLATES["plain"], "no FIM tokens in vocabulary or metadata")


def choose_template(vocab: Vocabulary, override: str = "auto") -> Detection:
    """Detect (``override == "auto"``) or validate an explicit template choice."""
    if override in ("", "auto"):
        return detect_template(vocab)
    t = get_template(override)
    ids = resolve_sentinels(t, vocab.token_id)
    missing = [t.sentinels[r][0] for r in t.detect if r not in ids]
    if missing:
        raise TemplateError(
            f"template '{t.name}' does not fit this model: its vocabulary lacks "
            f"{', '.join(repr(m) for m in missing)}",
            f"use --template auto (detects '{detect_template(vocab).template.name}') or plain")
    return Detection(t, "chosen explicitly")
