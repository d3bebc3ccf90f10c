"""The FIM transform (Bavarian et al. 2022, as CodeGemma trains it) and its token layout.

Character level: two cut points drawn uniformly over the document split it into prefix, middle
and suffix, so a middle can start or end inside a token, a word or a line, as a cursor can. With
probability ``fim_rate`` (0.9) a document becomes a FIM example, in SPM order with probability
``spm_rate`` (0.5, CodeGemma 2B v1.1's 50/50 split) and PSM otherwise; the rest stay plain
left-to-right documents.

Line level (``line_rate`` of the FIM examples; 0 = CodeGemma's recipe): the cuts an editor's
requests make. The cursor sits on a non-blank line (at its start, after its indentation, or
inside its code) and the middle runs to the end of that line or of a few lines below it, the
last newline left in the suffix: the editor's view of a completion, where the cursor is on a
line of its own and the text after it starts with that line's end (HumanEval's infilling tasks
as the daemon sees them, ``quality.data.Task.editor_suffix``). Uniform character cuts give
~170-token middles that start mid-word.

The layout of an example is the daemon's prompt plus the answer: sentinel roles and slots come
from the daemon's template (``TEMPLATES["codegemma"].layout(order)``) and the repository context
section is ``(SEP path\\n text)* SEP current-path\\n`` as ``lsp_server.prompt.assemble`` writes
it, each piece tokenized separately as the assembler does; then the middle and the file
separator that ends it (the first stop token of the template). Templates with text sentinels
(``gemma3-fim``) spell each sentinel as the assembler does, several ordinary tokens, and end the
middle with ``<eos>``; with ``middle_loss`` only the middle and that end token are trained on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate
from typing import Sequence

from lsp_server.prompt.assemble import ContextFile, sentinel_tokens
from lsp_server.prompt.templates import PREFIX, SUFFIX, TEMPLATES, FimTemplate, Order
from lsp_server.prompt.tokens import Tokenizer


@dataclass(frozen=True)
class FimRates:
    fim_rate: float = 0.9
    spm_rate: float = 0.5
    """Share of the FIM examples laid out suffix-first."""
    line_rate: float = 0.0
    """Share of the FIM examples cut at an editor's cursor (:func:`line_cut`), not uniformly."""
    max_lines: int = 8
    """Longest line-level middle, in lines (half of them are one line, the rest 2..max_lines)."""

    def __post_init__(self) -> None:
        if not all(0.0 <= r <= 1.0 for r in (self.fim_rate, self.spm_rate, self.line_rate)):
            raise ValueError(f"FIM rates must be within [0, 1], got {self}")
        if self.max_lines < 1:
            raise ValueError(f"max_lines must be at least 1, got {self.max_lines}")


@dataclass(frozen=True)
class FimSplit:
    prefix: str
    middle: str
    suffix: str
    order: Order | None
    """PSM or SPM; None for a plain (left-to-right) document, whose text is all in ``prefix``."""

    @property
    def document(self) -> str:
        return self.prefix + self.middle + self.suffix


def line_offsets(lines: Sequence[str]) -> list[int]:
    """Offset of every line's start and of the end, for ``text.splitlines(keepends=True)``."""
    return [0, *accumulate(map(len, lines))]


def line_cut(text: str, rng: random.Random, max_lines: int) -> tuple[int, int] | None:
    """Cut points (start, end) of a middle that begins at a cursor on a non-blank line and ends
    before the newline of that line or of one up to ``max_lines - 1`` lines below; None when
    the text has no non-blank line."""
    lines = text.splitlines(keepends=True)
    starts = line_offsets(lines)
    code = [i for i, line in enumerate(lines) if line.strip()]
    if not code:
        return None
    i = rng.choice(code)
    line = lines[i]
    indent = len(line) - len(line.lstrip(" \t"))
    body = len(line.rstrip("\r\n"))
    r = rng.random()
    # Where cursors are when a completion is asked for: an empty new line (HumanEval's
    # single-line tasks), after the editor's auto-indent, or inside code being typed.
    col = 0 if r < 0.4 else indent if r < 0.7 else rng.randint(indent, body - 1)
    n = 1 if max_lines == 1 or rng.random() < 0.5 else rng.randint(2, max_lines)
    n = min(n, len(lines) - i)
    while not lines[i + n - 1].strip():  # a block ends on code, not on blank lines
        n -= 1
    last = lines[i + n - 1]
    # The newline stays in the suffix: a middle that swallowed it would teach "the prefix ends
    # a line and the suffix starts one, so the middle is empty" (measured: 8 of 104 HumanEval
    # single-line suggestions came back empty with an adapter trained that way).
    return starts[i] + col, starts[i + n] - (len(last) - len(last.rstrip("\r\n")))


def fim_split(text: str, rng: random.Random, rates: FimRates = FimRates()) -> FimSplit:
    """Split ``text`` at two cut points (or not at all): uniform characters, or with
    probability ``rates.line_rate`` an editor's cursor and the line(s) after it."""
    if rng.random() >= rates.fim_rate:
        return FimSplit(text, "", "", None)
    cut = line_cut(text, rng, rates.max_lines) if rates.line_rate and \
        rng.random() < rates.line_rate else None
    a, b = cut or sorted((rng.randint(0, len(text)), rng.randint(0, len(text))))
    order = Order.SPM if rng.random() < rates.spm_rate else Order.PSM
    return FimSplit(text[:a], text[a:b], text[b:], order)


class Example(list):
    """An example's token ids (a plain list) and how many of its last tokens are loss targets
    (``n_target``; None: every next-token prediction counts)."""

    def __init__(self, tokens: Sequence[int] = (), n_target: int | None = None) -> None:
        super().__init__(tokens)
        self.n_target = n_target

    def cut(self, limit: int) -> "Example":
        """The first ``limit`` tokens; targets cut off the end are no longer targets."""
        if len(self) <= limit:
            return self
        n = None if self.n_target is None else max(0, self.n_target - (len(self) - limit))
        return Example(self[:limit], n)


class Layout:
    """Token layout of training examples for one FIM template and tokenizer."""

    def __init__(self, tok: Tokenizer, template: FimTemplate = TEMPLATES["codegemma"],
                 eos_id: int | None = None, *, middle_loss: bool = False) -> None:
        self.tok = tok
        self.template = template
        # Role → the tokens of each sentinel: one special token, or for a template with text
        # sentinels (gemma3-fim) its tokenized spelling, exactly as the assembler spells it.
        self.ids = sentinel_tokens(template, tok)
        # Repository context needs the file separator: families without one (Code Llama) put
        # context in the prefix slot as comments, a layout this trainer does not produce.
        missing = [r for r in ("pre", "suf", "mid", "sep") if r not in self.ids]
        if missing:
            raise ValueError(f"the tokenizer (or template {template.name}) lacks the sentinels "
                             f"for {missing}")
        # Plain documents end with EOS (the tokenizer's own when not given).
        self.eos_id = eos_id if eos_id is not None else getattr(tok, "eos_id", None)
        # The middle ends with the template's first stop token (CodeGemma: the file separator;
        # gemma3-fim: <eos>), the token the daemon stops generation on.
        end = tok.token_id(template.stops[0]) if template.stops else None
        self.end_id = end if end is not None else self.eos_id
        self.middle_loss = middle_loss
        """Examples carry ``n_target``: the loss covers only the middle and its end token (the
        whole text and EOS for a plain document), not the prompt."""

    def head(self) -> list[int]:
        t = self.template
        return [self.tok.bos_id] if t.bos and self.tok.add_bos and self.tok.bos_id is not None \
            else []

    def context(self, files: Sequence[ContextFile], path: str) -> list[int]:
        """``(SEP path\\n text)* SEP path\\n``: the assembler's context section, nothing cut."""
        sep = self.ids["sep"]
        out: list[int] = []
        for f in files:
            out += sep + self.tok.tokenize(f"{f.path}\n{f.text}")
        return out + (sep + self.tok.tokenize(f"{path}\n") if path else [])

    def example(self, split: FimSplit, path: str, files: Sequence[ContextFile] = ()
                ) -> "Example":
        """The tokens of one training example: BOS, context, the FIM layout, middle, end."""
        toks = self.head() + self.context(files, path)
        if split.order is None:  # plain document: the file's text follows its header
            target = self.tok.tokenize(split.prefix) + \
                ([self.eos_id] if self.eos_id is not None else [])
        else:
            slots = {PREFIX: self.tok.tokenize(split.prefix),
                     SUFFIX: self.tok.tokenize(split.suffix)}
            for part in self.template.layout(split.order):
                toks += slots[part] if part in slots else self.ids[part]
            target = self.tok.tokenize(split.middle) + \
                ([self.end_id] if self.end_id is not None else [])
        return Example(toks + target, len(target) if self.middle_loss else None)

    def overhead(self, path: str) -> int:
        """Tokens an example spends besides its text and context files."""
        return len(self.head()) + len(self.tok.tokenize(f"{path}\n")) + 1 + \
            sum(len(self.ids[r]) for r in ("pre", "suf", "mid", "sep"))
