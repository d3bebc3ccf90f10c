"""Token healing: the vocabulary index, when a prompt is healed, and the real model's suggestions
and candidates at a cursor inside a token."""

from __future__ import annotations

import random
from typing import Iterator

import numpy as np
import pytest

from lsp_server.completion.completer import Completer, Cursor
from lsp_server.completion.session import ModelSession
from lsp_server.engine.candidates import CandidatesRequest
from lsp_server.engine.healing import Pieces, _after, healable, restrict
from lsp_server.engine.types import GenerationRequest
from lsp_server.prompt.assemble import Budget, assemble
from lsp_server.prompt.templates import Order, get_template

# A block comment's next line: the cursor after the one-space indentation, where the model
# writes " *" as one token. Unhealed, the embedded model's likeliest token after the lone " " is
# the end of the line, and the suggestion is empty.
COMMENT = "/*\n * Copyright (c) Microsoft Corporation. All rights reserved.\n "


def test_tokens_starting_with_a_lead_are_found_as_a_scan_would() -> None:
    rng = random.Random(0)
    alphabet = [b"a", b"b", b" ", b"\xff", b"\x00", b"\xc3\xa9"]
    pieces = [b""] + [b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
                      for _ in range(400)]
    index = Pieces(pieces)
    for lead in [b"a", b" ", b"\xff", b"a\xff", b"\xff\xff", b"ab ", b"\x00", b"\xc3", b"zz"]:
        found = sorted(int(i) for i in index.starting_with(lead))
        assert found == [i for i, p in enumerate(pieces) if p.startswith(lead)], lead
    assert 0 not in index.starting_with(b"a")  # a control token (no bytes) never qualifies
    assert _after(b"ab") == b"ac" and _after(b"a\xff") == b"b" and _after(b"\xff") is None


def test_a_lead_of_blanks_does_not_grow_into_more_blank_text() -> None:
    pieces = [b"", b" ", b"  ", b" *", b" x", b" \n", b"\t", b" \tx", b"    ", b"     ",
              b"    return", b"con", b"config", b"con ", b"x"]
    index = Pieces(pieces)
    ids = lambda lead: sorted(pieces[i] for i in index.allowed(lead))  # noqa: E731
    assert ids(b" ") == [b" ", b" *", b" x"]  # not "  ", " \n", " \tx"
    assert ids(b"    ") == [b"    ", b"    return"]  # the indentation stays as typed
    assert ids(b"con") == [b"con", b"con ", b"config"]  # inside a word: every continuation
    assert index.allowed(b" ") is index.allowed(b" ")  # made once per lead


def test_restrict_keeps_only_the_allowed_tokens() -> None:
    logits = np.array([3.0, 1.0, 2.0, 5.0], dtype=np.float32)
    out = restrict(logits, np.array([1, 2]))
    assert int(out.argmax()) == 2 and out[0] == -np.inf and out[3] == -np.inf
    assert logits[3] == 5.0  # the engine's logits are not touched


@pytest.mark.parametrize("piece, heals", [
    (b" ", True), (b"    ", True), (b"con", True), (b" *", True), (b"\xc3\xa9", True),
    (b"\n", False), (b"\n    ", False), (b"", False), (b"\xc3", False)])
def test_which_last_tokens_are_healed(piece: bytes, heals: bool) -> None:
    assert healable(piece) is heals


def test_only_a_prompt_that_ends_at_the_cursor_is_healed(session: ModelSession) -> None:
    tok = session.tokenizer
    prompt = session.build_prompt("def f(x):\n    return ", "\n")
    assert prompt.ends_with_prefix  # prefix-only: the prompt ends with the prefix
    tokens, lead = session.healed(prompt)
    assert (tokens, lead) == (prompt.tokens[:-1], " ")
    line_start = session.build_prompt("def f(x):\n", "    return x\n")
    assert session.healed(line_start) == (line_start.tokens, "")  # ends with the newline
    budget = Budget(total=512)
    fim = get_template("gemma3-fim")
    spm = assemble(fim, tok, prefix="x = ", suffix="\n", budget=budget, order=Order.SPM)
    psm = assemble(fim, tok, prefix="x = ", suffix="\n", budget=budget, order=Order.PSM)
    assert spm.ends_with_prefix and not psm.ends_with_prefix  # PSM ends with <|fim_middle|>
    session.config.prompt.token_healing = False
    try:
        assert session.healed(prompt) == (prompt.tokens, "")
    finally:
        session.config.prompt.token_healing = True


@pytest.fixture
def healing_off(patient: ModelSession) -> Iterator[ModelSession]:
    patient.config.prompt.token_healing = False
    try:
        yield patient
    finally:
        patient.config.prompt.token_healing = True


def _comment_line(session: ModelSession, candidates: int) -> object:
    return Completer(session).complete(Cursor(COMMENT, "\n */\n", "a.ts", language="typescript"),
                                       single_line=True, max_tokens=16, candidates=candidates)


def test_a_cursor_inside_a_token_gets_the_line_the_model_would_write(
        patient: ModelSession) -> None:
    c = _comment_line(patient, 1)
    assert c.text.startswith("*"), c.text  # " *": the lead " " is the user's, not repeated
    assert c.stats.n_prompt == len(patient.build_prompt(COMMENT, "\n */\n").tokens) - 1


def test_without_healing_the_same_cursor_gets_nothing(healing_off: ModelSession) -> None:
    assert _comment_line(healing_off, 1).text == ""


def test_every_candidate_starts_with_the_lead_and_leaves_it_out(patient: ModelSession) -> None:
    prompt = patient.build_prompt(COMMENT, "\n */\n")
    tokens, lead = patient.healed(prompt)
    assert lead == " "
    detok = patient.engine.llama.detokenize
    first = patient.engine.submit(GenerationRequest(tokens, max_tokens=12, lead=lead,
                                                    stop_ids=patient.stop_ids, logprobs=True))
    events = list(first)
    text = "".join(e.text for e in events).split("\n")[0]
    assert detok([events[0].token_id]).startswith(b" ") and text.startswith("*")

    def cut(raw: str) -> tuple[int, str] | None:
        i = raw.find("\n")
        return None if i < 0 else (i, "line")

    stream = patient.engine.submit(CandidatesRequest(
        tokens=tokens, lead=lead, first=[e.token_id for e in events], first_text=text,
        first_logprobs=[e.logprob for e in events], branches=3, samples=3, max_tokens=12,
        stop_ids=patient.stop_ids, cut=cut, scored_text="\n */\n", score_tokens=8,
        tokenize=patient.tokenizer.tokenize, seed=1))
    stream.wait(120)
    cands = stream.result
    assert len(cands) >= 3, [c.text for c in cands]
    for c in cands:
        raw = detok(c.tokens)
        assert raw.startswith(b" "), (c.origin, raw)  # the model chose the boundary
        # The text is what follows the lead, up to the cut.
        assert raw[1:].decode("utf-8", "replace").startswith(c.text), (c.origin, raw, c.text)
        assert c.suffix_logprob is not None
