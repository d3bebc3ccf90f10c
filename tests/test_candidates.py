"""Several candidates per cursor: parallel sequences in the engine (checked against a
reference evaluation with llama.cpp's own full logits), the selector, and the ranked answer
through a real language server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from bench.common import Harness
from lsp_server.completion.completer import Completer, Cursor
from lsp_server.completion.ranking import Candidate, echoes, next_line, rank
from lsp_server.completion.session import ModelSession
from lsp_server.completion.syntax import syntax_errors
from lsp_server.engine.candidates import CandidatesRequest, kept_tokens
from lsp_server.engine.types import GenerationRequest, StopReason

PREFIX = 'def fib(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n        return n\n'
SUFFIX = "\n\nprint(fib(10))\n"


def _line_end(raw: str) -> int | None:
    i = raw.find("\n", len(raw) - len(raw.lstrip("\n")))
    return i if i >= 0 else None


def _line_cut(raw: str) -> tuple[int, str] | None:
    i = _line_end(raw)
    return None if i is None else (i, "line")


def _candidates(session: ModelSession, n_branch: int = 3, n_sample: int = 2,
                scored: str = SUFFIX) -> tuple[list[int], object]:
    prompt = session.build_prompt(PREFIX, SUFFIX).tokens
    first = session.engine.submit(GenerationRequest(prompt, max_tokens=24,
                                                    stop_ids=session.stop_ids, logprobs=True))
    events = list(first)
    raw = "".join(e.text for e in events)
    text = raw[:_line_end(raw) or len(raw)]
    stream = session.engine.submit(CandidatesRequest(
        tokens=prompt, first=[e.token_id for e in events], first_text=text,
        first_logprobs=[e.logprob for e in events], branches=n_branch, samples=n_sample,
        max_tokens=24, stop_ids=session.stop_ids, cut=_line_cut, scored_text=scored,
        score_tokens=16, tokenize=session.tokenizer.tokenize, seed=3))
    stream.wait(120)
    return prompt, stream


@pytest.fixture(scope="module")
def reference(embedded_model: Path) -> Iterator[object]:
    """The same model in a plain llama.cpp context that keeps every position's logits."""
    from lsp_server.engine.llama_loader import _llama_factory, cpu_has_amx

    # Without llama.cpp's extra (AMX) buffers on an AMX CPU, as the engine loads it: a plain
    # Llama() there crashes in its first decode.
    llm = _llama_factory(model_path=str(embedded_model), n_ctx=1024, logits_all=True,
                         n_threads=2, verbose=False, use_extra_bufts=not cpu_has_amx())
    yield llm
    llm.close()


def _reference_logprob(llm: object, context: list[int], tokens: list[int]) -> float:
    """log p(tokens | context) from one evaluation with all logits kept."""
    llm.reset()  # type: ignore[attr-defined]
    llm.eval(context + tokens)  # type: ignore[attr-defined]
    scores = np.asarray(llm.scores[: len(context) + len(tokens)], dtype=np.float64)  # type: ignore[attr-defined]
    total = 0.0
    for k, tok in enumerate(tokens):
        row = scores[len(context) + k - 1]  # (n_vocab,) the logits that predict tokens[k]
        m = row.max()
        total += row[tok] - m - np.log(np.exp(row - m).sum())
    return float(total)


def test_parallel_candidates_match_a_reference_evaluation(session: ModelSession,
                                                          reference: object) -> None:
    prompt, stream = _candidates(session)
    assert stream.stats.stop_reason is StopReason.MAX_TOKENS, stream.stats
    cands = stream.result
    assert cands[0].origin == "greedy" and len(cands) >= 3, [c.text for c in cands]
    assert len({c.text for c in cands}) == len(cands)  # distinct
    assert {c.origin for c in cands[1:]} <= {"branch", "sample"}
    # Each generated sequence is a candidate or noted as a repeat of one, exactly once.
    made = [(c.origin, c.order) for c in cands] + [r for c in cands for r in c.repeats]
    assert sorted(o for _, o in made) == list(range(len(made))), made
    tok = session.tokenizer.tokenize
    # Each alternative says why it ended: the cut's rule, or the engine's reason.
    assert cands[0].stop == "" and all(c.stop in ("line", "max_tokens", "stop_token")
                                       for c in cands[1:]), [(c.text, c.stop) for c in cands]
    for c in cands:
        assert "\n" not in c.text.strip("\n")
        assert c.stop != "max_tokens" or len(c.tokens) == 24, (c.text, len(c.tokens))
        assert c.stop != "line" or c.raw[len(c.text):].startswith("\n"), (c.text, c.raw)
        # The candidate's own log-probability: its tokens after the prompt.
        pieces = [session.engine.llama.detokenize([t]).decode("utf-8", "replace")
                  for t in c.tokens]
        kept = c.tokens[: kept_tokens(pieces, c.text)]
        fragment = c.text[len("".join(pieces[: len(kept)])):]
        # The suffix's log-probability after it, as the engine tokenized it.
        n_frag = len(tok(fragment)) if fragment else 0
        scored = tok(fragment + SUFFIX)[: n_frag + 16]
        ref_all = _reference_logprob(reference, prompt, kept + scored)
        ref_cand = _reference_logprob(reference, prompt, kept + scored[:n_frag])
        assert c.suffix_logprob is not None and c.n_suffix == len(scored) - n_frag
        # Batches of another shape give slightly different logits: a tolerance, not equality.
        assert abs(c.logprob - ref_cand) < 0.05 * max(1, len(kept)), (c.text, c.logprob, ref_cand)
        assert abs((c.logprob + c.suffix_logprob) - ref_all) < 0.1 * len(kept + scored), \
            (c.text, c.logprob + c.suffix_logprob, ref_all)
        # Per scored token: they sum to the total, and the first four agree with the reference.
        assert len(c.suffix_logprobs) == c.n_suffix
        assert abs(sum(c.suffix_logprobs) - c.suffix_logprob) < 1e-6
        ref_four = _reference_logprob(reference, prompt, kept + scored[:n_frag + 4])
        assert abs((c.logprob + sum(c.suffix_logprobs[:4])) - ref_four) < 0.1 * (len(kept) + 4 + n_frag)


def test_branch_continues_greedily_like_a_sequential_generation(session: ModelSession) -> None:
    prompt, stream = _candidates(session, n_branch=2, n_sample=0)
    for c in stream.result[1:]:
        assert c.origin == "branch"
        # The branch's first own token forced, then greedy: a plain request from there agrees.
        n_ws = 0
        while n_ws < len(c.tokens) and not session.engine.llama.detokenize(
                [c.tokens[n_ws]]).decode("utf-8", "replace").strip():
            n_ws += 1
        head = c.tokens[: n_ws + 1]
        ref = session.engine.submit(GenerationRequest(prompt + head, max_tokens=24,
                                                      stop_ids=session.stop_ids))
        raw = "".join(e.text for e in ref)
        start = session.engine.llama.detokenize(head).decode("utf-8", "replace")
        full = start + raw
        assert full[: _line_end(full) or len(full)] == c.text


def test_sequence_zero_is_kept_for_the_next_keystroke(session: ModelSession) -> None:
    prompt, stream = _candidates(session)
    greedy = stream.result[0]
    again = session.engine.submit(GenerationRequest(prompt, max_tokens=24,
                                                    stop_ids=session.stop_ids))
    text = again.text()
    assert again.wait().n_reused == len(prompt) - 1  # all but the one re-evaluated for logits
    assert text[: _line_end(text) or len(text)] == greedy.text


def test_cancelled_candidates_end_at_once_and_leave_the_engine_usable(
        session: ModelSession) -> None:
    prompt = session.build_prompt(PREFIX, SUFFIX).tokens
    first = session.engine.submit(GenerationRequest(prompt, max_tokens=4,
                                                    stop_ids=session.stop_ids, logprobs=True))
    events = list(first)
    stream = session.engine.submit(CandidatesRequest(
        tokens=prompt, first=[e.token_id for e in events], first_text="".join(e.text for e in events),
        branches=4, samples=3, max_tokens=64, stop_ids=frozenset()))
    stream.cancel()
    assert stream.wait(30).stop_reason in (StopReason.CANCELLED, StopReason.MAX_TOKENS)
    after = session.engine.submit(GenerationRequest(prompt, max_tokens=4,
                                                    stop_ids=session.stop_ids))
    assert after.text() == "".join(e.text for e in events)


def test_completer_ranks_by_what_follows(patient: ModelSession) -> None:
    session = patient
    """The greedy line leaves the function unparsable; a candidate that completes it is
    ranked first, and the ranked list says why."""
    c = Completer(session).complete(Cursor(PREFIX, SUFFIX, "fib.py", language="python"),
                                    single_line=True, candidates=8)
    assert len(c.candidates) >= 3 and c.text == c.candidates[0].text
    # The suggestion's stop is the shown candidate's; every candidate has one.
    assert c.stop == c.candidates[0].stop and all(x.stop for x in c.candidates), \
        [(x.text, x.stop) for x in c.candidates]
    origins = {x.origin for x in c.candidates}
    assert "greedy" in origins and origins & {"branch", "sample"}
    best = c.candidates[0]
    assert best.syntax_errors == 0 and best.suffix_logprob is not None
    assert all(best.score >= x.score for x in c.candidates if x.syntax_errors == 0)
    one = Completer(session).complete(Cursor(PREFIX, SUFFIX, "fib.py", language="python"),
                                      single_line=True, candidates=1)
    greedy = next(x for x in c.candidates if x.origin == "greedy")
    assert one.candidates == [] and (one.text, one.stop) == (greedy.text, greedy.stop)


# --- the selector, as a unit ------------------------------------------------------------------
def test_rank_orders_by_echo_syntax_then_score() -> None:
    prefix, suffix = "def f(x):\n", "\n    return y\n"
    cands = [Candidate("    y = x +", "greedy", -1.0, (-5.0,)),
             Candidate("    y = x + 1", "branch", -2.0, (-6.0,)),
             Candidate("    return y", "branch", -0.5, (-1.0,)),
             Candidate("    y = 2 * x", "sample", -3.0, (-2.0,)),
             Candidate("   ", "sample", 0.0, (0.0,)),
             Candidate("    y = x + 1", "sample", -9.0, (-9.0,))]
    for k, c in enumerate(cands):
        c.order = k
    out = rank(cands, prefix=prefix, suffix=suffix, language="python")
    assert [c.text for c in out] == ["    y = 2 * x", "    y = x + 1", "    y = x +",
                                     "    return y"]
    assert out[1].repeats == (("sample", 5),) and out[1].explain()["repeats"] == [["sample", 5]]
    assert out[-1].echoes_suffix and out[2].syntax_errors == 1
    plain = rank(cands, prefix=prefix, suffix=suffix, language="python", selector=False)
    assert [c.text for c in plain] == ["    y = x +", "    y = x + 1", "    return y",
                                       "    y = 2 * x"]


def test_syntax_errors_for_other_languages() -> None:
    prefix, suffix = "function f(x) {\n  ", "\n}\n"
    assert syntax_errors("javascript", prefix, ["return x + 1;", "return x +;"], suffix) \
        == [0, 1]
    assert syntax_errors("go", "package m\nfunc f() int {\n\t", ["return 1", "return (1"],
                         "\n}\n")[0] == 0
    assert syntax_errors("plaintext", "", ["x"], "") == [None]
    assert syntax_errors("python", "x" * 70_000, ["y"], "") == [None]  # too long to parse


def test_a_repeated_closing_bracket_is_not_an_echo() -> None:
    assert echoes("    return y", "return y")
    assert not echoes("    ],", "],") and not echoes("}", "}") and not echoes("x", "")


def test_next_line() -> None:
    assert next_line("rest of line\n\n   return y\nz") == "return y"
    assert next_line("only") == ""


# --- through the language server ----------------------------------------------------------------
def _settings(candidates: int) -> dict:
    return {"completion": {"candidates": candidates, "mode": "single", "debounce_min_ms": 0},
            "prompt": {"max_tokens": 16},
            "engine": {"context_size": 2048, "time_budget_ms": 60000}}


def test_server_answers_ranked_candidates_and_types_through_each(tmp_path: Path) -> None:
    h = Harness(tmp_path, settings=_settings(candidates=4))
    h.start()
    try:
        uri = h.open(tmp_path / "fib.py", PREFIX + SUFFIX)
        line = PREFIX.count("\n")
        h.partials.clear()
        first = h.request("codefill/complete", {"textDocument": {"uri": uri},
                                                "position": {"line": line, "character": 0},
                                                "streamId": "c"})
        # Served as soon as the greedy line is done: the alternatives come after it.
        assert first["source"] == "model" and first["candidates"] == [first["text"]], first
        assert first["moreCandidates"] is True, first
        streamed = [p["text"] for p in h.partials if p["streamId"] == "c"]
        # Asked again at the same place (an editor cycling): the ranked list, the text the user
        # is looking at first.
        reply = h.request("codefill/complete", {"textDocument": {"uri": uri},
                                                "position": {"line": line, "character": 0}})
        cands = reply["candidates"]
        assert reply["source"] in ("cache", "in_flight") and len(cands) >= 2, reply
        assert reply["text"] == cands[0] and reply["moreCandidates"] is False, reply
        assert cands[0] == first["text"] and (not streamed or cands[0].startswith(streamed[-1]))
        client = h.client
        assert client is not None

        async def inline() -> object:
            return await client.text_document_inline_completion_async(
                h.inline_params(uri, line, 0))
        texts = [i.insert_text for i in h.run(inline()).items]  # type: ignore[attr-defined]
        assert texts == cands, (texts, cands)
        # Type the first characters of the second candidate where it differs from the first.
        other = cands[1]
        k = next(i for i, (a, b) in enumerate(zip(other + "\0", cands[0] + "\0")) if a != b) + 1
        before = h.counters()
        h.change(uri, (line, 0), (line, 0), other[:k])
        rest = h.inline(uri, line, k)
        assert rest == other[k:], (rest, other, k)
        assert h.counters()["model_calls"] == before["model_calls"]
        assert h.counters()["candidates"] >= 2
    finally:
        assert h.stop() == 0


def test_one_candidate_setting_answers_as_before(tmp_path: Path) -> None:
    h = Harness(tmp_path, settings=_settings(candidates=1))
    h.start()
    try:
        uri = h.open(tmp_path / "fib.py", PREFIX + SUFFIX)
        t0 = time.monotonic()
        reply = h.request("codefill/complete", {"textDocument": {"uri": uri},
                                                "position": {"line": PREFIX.count("\n"),
                                                             "character": 0}})
        assert time.monotonic() - t0 < 120
        assert reply["candidates"] == ([reply["text"]] if reply["text"] else [])
    finally:
        assert h.stop() == 0


def test_cli_explains_every_candidate(tmp_path: Path) -> None:
    from tests.test_cli import codefill

    src = tmp_path / "fib.py"
    src.write_text(PREFIX + SUFFIX)
    proc = codefill("complete", str(src), "--line", str(PREFIX.count("\n") + 1), "--col", "1",
                    "--single-line", "--candidates", "3", "--explain", "--verbose",
                    "--no-context", "--time-budget-ms", "120000")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    head = next(i for i, x in enumerate(lines) if "candidates, best first" in x)
    n = int(lines[head].split("codefill: ")[1].split()[0])
    assert 2 <= n <= 3, proc.stderr
    first = lines[head + 1]
    assert first.startswith("codefill: 1. ") and "score" in lines[head + 2], proc.stderr
    assert "logprob" in lines[head + 2] and "syntax errors" in lines[head + 2]
    assert "ended by line_end" in proc.stderr, proc.stderr  # a single line ends at its newline
    # stdout is the best-ranked candidate.
    assert repr(proc.stdout.rstrip("\n")) == first.split("1. ", 1)[1], (proc.stdout, first)
    # --verbose: the token count and stop are the greedy generation's, and when another
    # candidate is shown a line says which and why it ended.
    explained = [lines[head + 2 * i + 2] for i in range(n)]
    greedy = next(x for x in explained if "codefill:    greedy, ended by " in x)
    greedy_stop = greedy.split("ended by ", 1)[1].split(": score", 1)[0]
    generated = next(x for x in lines if x.startswith("codefill: generated  "))
    assert "(the greedy suggestion), stop: " + greedy_stop == generated.split(" tokens ", 1)[1]
    shown = [x for x in lines if x.startswith("codefill: shown      ")]
    shown_origin = explained[0].split("codefill:    ", 1)[1].split(",", 1)[0]
    assert len(shown) == (shown_origin != "greedy"), (shown, shown_origin)


def test_selector_replay_scores_the_first_k_suffix_tokens() -> None:
    """bench/candidate_selector.py replays a recording with fewer scored suffix tokens from
    the per-token values (the choice of SCORED_TOKENS rests on it)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from candidate_selector import choose, similarity

    def cand(text: str, origin: str, logprob: float, per_token: list[float]) -> dict:
        return {"text": text, "origin": origin, "logprob": logprob,
                "suffix_logprob": sum(per_token), "suffix_token_logprobs": per_token,
                "syntax_errors": 0, "echoes_suffix": False}

    # a: the likelier first suffix token, then far less likely ones; b: the reverse.
    cands = [cand("a", "greedy", -1.0, [-0.1, -5.0, -5.0]),
             cand("b", "branch", -1.0, [-2.0, -0.5, -0.5])]
    product = "joint + syntax + echo (product)"
    assert choose(cands, product)["text"] == "b"  # all three tokens: -3.0 vs -10.1
    assert choose(cands, product, 3)["text"] == "b"
    assert choose(cands, product, 1)["text"] == "a"  # the first token only
    assert choose(cands, product, 0)["text"] == "a"  # none: ties on logprob, generation order
    # The suffix weighted against the candidate's own log-probability.
    cands[1]["logprob"] = -9.0  # b: -9 - 3w, a: -1 - 10.1w
    assert choose(cands, product, None, 1.0)["text"] == "a"
    assert choose(cands, product, None, 2.0)["text"] == "b"
    del cands[0]["suffix_token_logprobs"]
    with pytest.raises(SystemExit, match="per-token"):
        choose(cands, product, 1)
    assert similarity("  x = 1", "x = 1 ") == 1.0 and similarity("abc", "xyz") == 0.0


def test_selector_replay_keeps_the_candidates_a_smaller_count_would_have_had() -> None:
    """A recording lists the candidates ranked; a smaller count's are found by their place in
    the generation order, repeats included (the choice of the default count rests on it)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from candidate_selector import subset

    def cand(text: str, origin: str, order: int, repeats: list | None = None) -> dict:
        return {"text": text, "origin": origin, "order": order, "repeats": repeats or []}

    # Eight generated: greedy 0, branches 1–4, samples 5–7; sample 5 repeated branch 3's text
    # and sample 6 the greedy one's; listed best first.
    ranked = [cand("b4", "branch", 4), cand("s7", "sample", 7), cand("b3", "branch", 3, [["sample", 5]]),
              cand("g", "greedy", 0, [["sample", 6]]), cand("b1", "branch", 1), cand("b2", "branch", 2)]
    texts = lambda n, b=None: [c["text"] for c in subset(ranked, n, b)]  # noqa: E731
    assert texts(8) == ["g", "b1", "b2", "b3", "b4", "s7"]
    assert texts(3) == ["g", "b1", "b3"]  # branch 1 and sample 5, which was b3's text
    assert texts(4) == ["g", "b1", "b2", "b3"]
    assert texts(5) == ["g", "b1", "b2", "b3"]  # sample 6 repeats the greedy text
    assert texts(3, 0) == ["g", "b3"]
    assert texts(1) == ["g"]
    # An older recording without the generation order replays only its own count.
    old = [{k: v for k, v in c.items() if k not in ("order", "repeats")} for c in ranked]
    assert len(subset(old, 8)) == 6
    with pytest.raises(SystemExit, match="no generation order"):
        subset(old, 3)


def test_selector_replay_gate_skips_alternatives_where_greedy_is_likely(tmp_path: Path,
                                                                        capsys) -> None:  # noqa: ANN001
    """bench/candidate_selector.py --gate: lines whose greedy line is at least that likely keep
    the greedy line; the others the selector's choice (why no gate meets the cost target)."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import candidate_selector

    def cand(text: str, origin: str, order: int, logprob: float, suffix: float, exact: bool
             ) -> dict:
        return {"text": text, "origin": origin, "order": order, "repeats": [],
                "logprob": logprob, "suffix_logprob": suffix, "syntax_errors": 0,
                "echoes_suffix": False, "exact": exact}

    rows = [  # greedy likely and right; greedy likely and wrong (a branch is right); unlikely
        {"expected": "a", "candidates": [cand("a", "greedy", 0, -0.2, -5, True)]},
        {"expected": "b", "candidates": [cand("x", "greedy", 0, -0.5, -9, False),
                                          cand("b", "branch", 1, -0.9, -1, True)]},
        {"expected": "c", "candidates": [cand("y", "greedy", 0, -7.0, -9, False),
                                          cand("c", "branch", 1, -8.0, -1, True)]},
    ]
    path = tmp_path / "rec.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert candidate_selector.main([str(path), "--n", "5", "--gate=-1,-0.3,-10"]) == 0
    out = capsys.readouterr().out.splitlines()
    table = {x.split("|")[1].strip(): [c.strip() for c in x.split("|")[2:-1]]
             for x in out if x.startswith("| -")}
    # -1: both likely lines skip, the second loses its right branch.
    assert table["-1"] == ["66.7 %", "66.7 % (2)", "-33.3 ± 33.3", "+33.3 ± 33.3"]
    assert table["-0.3"][:2] == ["33.3 %", "100.0 % (3)"]
    assert table["-10"][:3] == ["100.0 %", "33.3 % (1)", "-66.7 ± 33.3"]


def test_selector_versus_pairs_two_runs_over_the_same_lines(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """bench/candidate_selector.py FIVE.jsonl --vs ONE.jsonl: the shown suggestions of two
    heldout_lines.py runs, line by line."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import candidate_selector

    def row(line: int, exact: bool, completion: str = "x", cands: list | None = None) -> str:
        return json.dumps({"path": "a.ts", "line": line, "exact": exact,
                           "completion": completion, "candidates": cands or []}) + "\n"

    one = tmp_path / "one.jsonl"
    one.write_text(row(1, True) + row(2, False) + row(3, False, "") + row(9, True))
    five = tmp_path / "five.jsonl"
    five.write_text(row(1, False) + row(2, True) + row(3, True)
                    + row(4, True, cands=[{"exact": True, "origin": "greedy"}]))
    assert candidate_selector.main([str(five), "--vs", str(one)]) == 0
    out = capsys.readouterr().out
    # Lines 1–3 are in both: one 1 of 3, five 2 of 3; line 9 and line 4 are not paired.
    assert ("3 lines in both: one.jsonl 33.3 % (1), this 66.7 % (2); difference +33.3 ± 66.7 "
            "points (2 gained, 1 lost); any candidate 66.7 % (2); empty 1 vs 0") in out


def test_candidates_keep_the_prompt_one_candidate_gets(embedded_model: Path) -> None:
    """The alternatives and their scoring write to KV cells the engine holds beside the context
    window, so five candidates see the same prompt (repository context included) as one: a
    full window, then the greedy line and the ranked alternatives, within the cache."""
    from lsp_server.config import Config

    def session(n: int) -> ModelSession:
        config = Config()
        config.engine.model = str(embedded_model)
        config.engine.context_size, config.engine.time_budget_ms = 1024, 60000
        config.completion.candidates, config.prompt.max_tokens = n, 24
        return ModelSession(config)

    # A file far longer than the window: the prompt fills what the budget gives it.
    body = "".join(f"def helper_{i}(x):\n    return x * {i} + {i * 7}\n\n\n" for i in range(120))
    cursor = Cursor(body + "def total(values):\n    ", "\n    return result\n", "calc.py",
                    language="python")
    prompts, listed = {}, {}
    for n in (1, 5):
        with session(n) as s:
            s.engine.wait_ready()
            need = 4 * 24 + 5 * (16 + 8) if n == 5 else 0  # alternatives + scored tokens
            assert (s.engine.window, s.engine.n_ctx) == (1024, 1024 + need)
            assert s.status()["context_size"] == 1024 and s.status()["kv_cells"] == 1024 + need
            assert s.candidates_room(24) == 0  # held beside the window: the prompt keeps it all
            assert s.candidates_room(48) == (4 * 24 if n == 5 else 0)  # longer than sized for
            c = Completer(s).complete(cursor, single_line=True, max_tokens=24, candidates=n)
            prompts[n], listed[n] = c.stats.n_prompt, len(c.candidates)
    assert prompts[5] == prompts[1] > 700, prompts  # the same, most of the window
    assert listed[1] <= 1 and listed[5] >= 2, listed


@pytest.mark.parametrize(("template", "adapter", "scored"), [
    ("auto", "", True), ("gemma3-fim", "", True), ("auto", "embedded", False)])
def test_the_suffix_is_scored_unless_the_model_learned_to_read_it(
        embedded_model: Path, template: str, adapter: str, scored: bool) -> None:
    """Prefix-only prompts, and the text-sentinel layout on the base model (which shows it the
    suffix but never taught it what that is), rank candidates on the suffix's likelihood after
    each; with the adapter that taught the layout the model's own likelihood ranks them."""
    from lsp_server.config import Config

    config = Config()
    config.engine.model, config.engine.adapter = str(embedded_model), adapter
    config.engine.context_size, config.engine.time_budget_ms = 512, 60000
    config.prompt.template, config.prompt.max_tokens = template, 24
    with ModelSession(config) as s:
        assert s.scores_suffix is scored
        c = Completer(s).complete(Cursor(PREFIX, SUFFIX, "fib.py", language="python"),
                                  single_line=True, max_tokens=24, candidates=3)
    assert len(c.candidates) >= 2, c.candidates
    assert all((x.suffix_logprob is not None) is scored for x in c.candidates), \
        [(x.text, x.suffix_logprob) for x in c.candidates]


def test_a_reload_is_asked_for_only_when_it_would_hold_more_cells() -> None:
    """The rule alone (the real reload: tests/test_server.py): more candidates than the cells set
    aside at load ask for a reload, unless the model's trained context is already all held (a
    reload would change nothing, and asking again after every load would never end)."""
    from lsp_server.config import Config
    from lsp_server.engine.llama_engine import LlamaEngine
    from lsp_server.settings import Settings

    config = Config()
    config.completion.candidates, config.prompt.max_tokens = 5, 32
    s = ModelSession.__new__(ModelSession)
    s.settings = Settings.of(config)
    held = s.candidates_cells(32)  # what a load with these settings sets aside
    for n, trained, more in ((5, 32768, False), (2, 32768, False), (8, 32768, True),
                             (8, 1024 + held, False), (8, None, True)):
        config.completion.candidates = n
        # The engine's sizing alone (no model loaded): a window of 1024 and the cells it holds.
        s.engine = LlamaEngine.__new__(LlamaEngine)
        s.engine.window, s.engine.n_ctx, s.engine.n_ctx_train = 1024, 1024 + held, trained
        assert s.needs_more_cells() is more, (n, trained)
