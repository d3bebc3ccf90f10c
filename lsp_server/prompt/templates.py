"""Registry of fill-in-the-middle prompt families.

Each family is data: the sentinel tokens, the layouts it was trained on (PSM and/or SPM), how
repository context is introduced, and the tokens that end a suggestion. Sentinels are special
tokens looked up by their vocabulary text; a sentinel may have several spellings (Code Llama's
SentencePiece vocabulary stores ``▁<PRE>``), the first one present in the model wins.

Layouts are tuples of parts: a sentinel role (``"pre"``, ``"suf"``, ``"mid"``) or a slot
(``PREFIX``, ``SUFFIX``) that the assembler fills with tokenized text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..errors import TemplateError


class Order(str, enum.Enum):
    """Where the prefix goes relative to the suffix."""

    PSM = "psm"  # prefix, suffix, middle
    SPM = "spm"  # suffix first: typing at the cursor only appends tokens (best KV reuse)


PREFIX = "{prefix}"
SUFFIX = "{suffix}"

# The SPM variant of Bavarian et al. (2022, appendix D) used by StarCoder, Code Llama and
# CodeGemma's training code: <PRE><SUF>suffix<MID>prefix. The prefix comes last, so the
# model continues the prefix directly and keystrokes at the cursor append to the prompt.
_PSM = ("pre", PREFIX, "suf", SUFFIX, "mid")
_SPM = ("pre", "suf", SUFFIX, "mid", PREFIX)


@dataclass(frozen=True)
class FimTemplate:
    """One prompt family. Field values are vocabulary texts of special tokens."""

    name: str
    """Registry key, used by `--template` and the `prompt.template` setting."""
    label: str
    """Human-readable family name."""
    sentinels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Role ("pre", "suf", "mid", "sep", "repo") → accepted spellings in the vocabulary."""
    layouts: dict[Order, tuple[str, ...]] = field(default_factory=dict)
    """Orders the family was trained on, the preferred one first."""
    stops: tuple[str, ...] = ()
    """Special tokens that end a suggestion (besides the model's EOS/EOT)."""
    detect: tuple[str, ...] = ()
    """Roles whose tokens must all be in the vocabulary for auto-detection."""
    bos: bool = True
    """Start the prompt with BOS when the model's tokenizer adds one."""
    text_sentinels: bool = False
    """Sentinels are spelled as ordinary text (several tokens each), for models taught FIM by
    an adapter that cannot add vocabulary entries (docs/adapter-training-notes.md); never detected from
    a vocabulary, only named by an adapter's metadata or chosen explicitly."""

    @property
    def is_fim(self) -> bool:
        return bool(self.layouts)

    @property
    def orders(self) -> tuple[Order, ...]:
        return tuple(self.layouts)

    def layout(self, order: Order | None) -> tuple[str, ...]:
        """Parts in prompt order for ``order`` (None: the preferred order)."""
        if not self.layouts:
            return (PREFIX,)
        if order is None:
            return next(iter(self.layouts.values()))
        if order not in self.layouts:
            raise TemplateError(
                f"template '{self.name}' was not trained on {order.value.upper()} order",
                f"use one of: {', '.join(o.value for o in self.layouts)}")
        return self.layouts[order]


def _fim(*spellings: str) -> tuple[str, ...]:
    return spellings


TEMPLATES: dict[str, FimTemplate] = {t.name: t for t in (
    FimTemplate(
        name="codegemma", label="CodeGemma",
        sentinels={"pre": _fim("<|fim_prefix|>"), "suf": _fim("<|fim_suffix|>"),
                   "mid": _fim("<|fim_middle|>"), "sep": _fim("<|file_separator|>")},
        layouts={Order.PSM: _PSM, Order.SPM: _SPM},
        stops=("<|file_separator|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
               "<eos>", "<end_of_turn>"),
        detect=("pre", "suf", "mid", "sep"),
    ),
    FimTemplate(
        name="qwen2.5-coder", label="Qwen2.5-Coder",
        sentinels={"pre": _fim("<|fim_prefix|>"), "suf": _fim("<|fim_suffix|>"),
                   "mid": _fim("<|fim_middle|>"), "sep": _fim("<|file_sep|>"),
                   "repo": _fim("<|repo_name|>")},
        layouts={Order.PSM: _PSM},
        stops=("<|endoftext|>", "<|file_sep|>", "<|fim_pad|>", "<|repo_name|>", "<|im_end|>",
               "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
        detect=("pre", "suf", "mid", "sep", "repo"),
        bos=False,
    ),
    FimTemplate(
        name="starcoder", label="StarCoder / StarCoder2",
        sentinels={"pre": _fim("<fim_prefix>"), "suf": _fim("<fim_suffix>"),
                   "mid": _fim("<fim_middle>"), "sep": _fim("<file_sep>"),
                   "repo": _fim("<repo_name>")},
        layouts={Order.PSM: _PSM, Order.SPM: _SPM},
        stops=("<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>",
               "<fim_pad>", "<repo_name>", "<filename>"),
        detect=("pre", "suf", "mid"),
        bos=False,
    ),
    FimTemplate(
        name="deepseek-coder", label="DeepSeek-Coder",
        sentinels={"pre": _fim("<｜fim▁begin｜>"), "suf": _fim("<｜fim▁hole｜>"),
                   "mid": _fim("<｜fim▁end｜>")},
        layouts={Order.PSM: _PSM},
        stops=("<｜end▁of▁sentence｜>", "<|EOT|>", "<｜fim▁begin｜>", "<｜fim▁hole｜>",
               "<｜fim▁end｜>"),
        detect=("pre", "suf", "mid"),
    ),
    FimTemplate(
        name="codellama", label="Code Llama",
        sentinels={"pre": _fim("▁<PRE>", "<PRE>"), "suf": _fim("▁<SUF>", "<SUF>"),
                   "mid": _fim("▁<MID>", "<MID>")},
        layouts={Order.PSM: _PSM, Order.SPM: _SPM},
        stops=("▁<EOT>", "<EOT>", "</s>"),
        detect=("pre", "suf", "mid"),
    ),
    FimTemplate(
        name="codestral", label="Codestral",
        # Mistral's FIM puts the suffix first and has no middle sentinel: the model continues
        # right after the prefix.
        sentinels={"pre": _fim("[PREFIX]"), "suf": _fim("[SUFFIX]")},
        layouts={Order.SPM: ("suf", SUFFIX, "pre", PREFIX)},
        stops=("</s>", "[PREFIX]", "[SUFFIX]", "[MIDDLE]"),
        detect=("pre", "suf"),
    ),
    FimTemplate(
        name="gemma3-fim", label="Gemma 3 with codefill's FIM adapter (text sentinels)",
        sentinels={"pre": _fim("<|fim_prefix|>"), "suf": _fim("<|fim_suffix|>"),
                   "mid": _fim("<|fim_middle|>"), "sep": _fim("<|file_separator|>")},
        # SPM first: there the middle continues the prefix, which Gemma 3 does untrained; in PSM
        # it must jump back from the suffix, which the adapter has not learned yet (HumanEval
        # single-line every 10th, step-110 adapter: SPM 36.5 %, PSM near 5 %, empty middles;
        # docs/adapter-training-notes.md). SPM also keeps the KV cache while typing at the cursor.
        layouts={Order.SPM: _SPM, Order.PSM: _PSM},
        # The middle ends with <eos>: one trained token the engine already stops on.
        stops=("<eos>", "<end_of_turn>"),
        text_sentinels=True,
    ),
    FimTemplate(
        name="plain", label="plain prefix continuation (no FIM)",
        stops=("<end_of_turn>", "<eos>", "</s>", "<|endoftext|>"),
    ),
)}


def get_template(name: str) -> FimTemplate:
    """Look up a template by name; unknown names are rejected with the list of known ones."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise TemplateError(f"unknown FIM template {name!r}",
                            f"use one of: auto, {', '.join(TEMPLATES)}") from None


def chosen_order(template: FimTemplate | None, setting: str) -> Order | None:
    """The order ``prompt.fim_order`` asks of ``template``: None for 'auto' (the template's
    preferred order) and for templates without FIM."""
    if template is None or setting == "auto" or not template.is_fim:
        return None
    return Order(setting)
