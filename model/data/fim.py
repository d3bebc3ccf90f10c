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

The layout of an example is the daemon's prompt plus the answer. The prompt is rendered by the
daemon's own ``lsp_server.prompt.assemble`` with a budget nothing is cut in (the data code sizes
an example before it is rendered): BOS, the repository section (the repository header where the
template has one, then ``(SEP path\\n text)* SEP current-path\\n``) and the template's FIM layout,
each piece tokenized separately. Then come the middle and the token that ends it (the first stop
token of the template: CodeGemma's file separator, ``<eos>`` for ``gemma3-fim``, whose sentinels
are spelled as text). With ``middle_loss`` only the middle and that end token are trained on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import accumulate
from typing import Sequence

from lsp_server.prompt.assemble import Budget, ContextFile, assemble, fixed_tokens, \
    sentinel_tokens
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


_ROOMY = Budget(total=1 << 40)
"""A budget nothing is cut in: a training example is sized by the data code before rendering."""


def daemon_prompt(template: FimTemplate, tok: Tokenizer, *, prefix: str, suffix: str, path: str,
                  context: Sequence[ContextFile], order: Order, repo_name: str = "") -> list[int]:
    """The tokens the daemon would send for this cursor, rendered by its own ``assemble`` with
    room for everything: BOS, the repository section, the FIM layout of ``order``."""
    prompt = assemble(template, tok, prefix=prefix, suffix=suffix, budget=_ROOMY, path=path,
                      context=context, order=order, repo_name=repo_name)
    if prompt.prefix_truncated or prompt.suffix_truncated or \
            len(prompt.context_files) != len(context):
        raise RuntimeError(f"the prompt of {path or 'a file'} was cut although nothing should be")
    return prompt.tokens


class Layout:
    """Token layout of training examples for one FIM template and tokenizer: the daemon's
    prompt (:func:`daemon_prompt`) followed by the answer."""

    def __init__(self, tok: Tokenizer, template: FimTemplate = TEMPLATES["codegemma"],
                 eos_id: int | None = None, *, middle_loss: bool = False,
                 repo_name: str = "") -> None:
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
        self.eos_id: int | None = eos_id if eos_id is not None else getattr(tok, "eos_id", None)
        # The middle ends with the template's first stop token (CodeGemma: the file separator;
        # gemma3-fim: <eos>), the token the daemon stops generation on.
        end = tok.token_id(template.stops[0]) if template.stops else None
        self.end_id: int | None = end if end is not None else self.eos_id
        self.middle_loss = middle_loss
        """Examples carry ``n_target``: the loss covers only the middle and its end token (the
        whole text and EOS for a plain document), not the prompt."""
        self.repo_name = repo_name
        """The repository header's name (the daemon sends none: "workspace" is shown)."""
        fixed = self.template.layout(None)
        self._n_sentinels = sum(len(self.ids[p]) for p in fixed if p not in (PREFIX, SUFFIX))

    def prompt(self, split: FimSplit, path: str, files: Sequence[ContextFile] = ()
               ) -> list[int]:
        """The prompt part of an example. A plain document gets what precedes the FIM layout
        in the daemon's prompt (BOS and the repository section): the prompt of an empty
        cursor in the preferred order, less its trailing sentinels."""
        if split.order is not None:
            return daemon_prompt(self.template, self.tok, prefix=split.prefix,
                                 suffix=split.suffix, path=path, context=files,
                                 order=split.order, repo_name=self.repo_name)
        empty = daemon_prompt(self.template, self.tok, prefix="", suffix="", path=path,
                              context=files, order=self.template.orders[0],
                              repo_name=self.repo_name)
        return empty[:len(empty) - self._n_sentinels]

    def example(self, split: FimSplit, path: str, files: Sequence[ContextFile] = ()
                ) -> "Example":
        """The tokens of one training example: the prompt, then the middle and its end token
        (a plain document: its text and EOS)."""
        if split.order is None:
            target = self.tok.tokenize(split.prefix) + \
                ([self.eos_id] if self.eos_id is not None else [])
        else:
            target = self.tok.tokenize(split.middle) + \
                ([self.end_id] if self.end_id is not None else [])
        toks = self.prompt(split, path, files)
        return Example(toks + target, len(target) if self.middle_loss else None)

    def overhead(self, path: str) -> int:
        """Tokens an example spends besides its text and context files."""
        return fixed_tokens(self.template, self.tok) + len(self.tok.tokenize(f"{path}\n")) + 1 \
            + len(self.ids["sep"])
