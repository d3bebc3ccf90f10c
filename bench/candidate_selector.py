"""Choose the candidates' settings on held-out data: how many, and which selector.

    .venv/bin/python bench/heldout_lines.py --ctx-size 1536 --threads 2 --per-file 6 --seed 2 \
        --candidates 8 --output bench/results/candidates/heldout-n8-order.jsonl
    .venv/bin/python bench/candidate_selector.py bench/results/candidates/heldout-n8-order.jsonl

The first command records, for every held-out repository line, all 8 candidates the product
generated (greedy, 4 branches, 3 samples: ``ModelSession.alternatives``), ranked, with their
scores, their place in the generation order and the later candidates that repeated their text;
this one replays smaller settings from them without the model: n candidates are the greedy
one, the first ⌈(n−1)/2⌉ branches and the first ⌊(n−1)/2⌋ samples in the generation order (the
split the product uses; the branches come in their first token's likelihood order and each
sample has its own seed, so a smaller run would generate exactly these), ranked by each
selector variant. It prints exact match of the first-ranked candidate, of any candidate (what
cycling can reach), and the paired difference to greedy with its standard error. HumanEval is
not used here: it is the benchmark the chosen settings are reported on.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

Row = dict[str, Any]


def subset(cands: list[dict[str, Any]], n: int, branches: int | None = None
           ) -> list[dict[str, Any]]:
    """The candidates a run with ``n`` would have had, in generation order; ``branches``: that
    many of the alternatives branch and the rest are samples (default: the product's split,
    half rounded up). A recording lists the candidates ranked, each with its place in the
    generation order (``order``) and the later ones that repeated its text (``repeats``): a
    candidate is kept when it, or one of its repeats, is among the first branches and samples
    (the same text either way, so the same scores)."""
    alts = n - 1
    b = (alts + 1) // 2 if branches is None else branches
    s = alts - b
    if any("order" not in c for c in cands):
        # An older recording, ranked, without the generation order: only its own count.
        have = {o: sum(c["origin"] == o for c in cands) for o in ("branch", "sample")}
        if b == s == 0:
            return [c for c in cands if c["origin"] == "greedy"]
        if have["branch"] > b or have["sample"] > s:
            raise SystemExit(f"this recording has no generation order: it replays only "
                             f"counts that keep all of its {have['branch']} branches and "
                             f"{have['sample']} samples, not n={n}")
        kinds = ("greedy", "branch", "sample")
        return sorted(cands, key=lambda c: kinds.index(c["origin"]))
    made = [(o, q, c) for c in cands for o, q in [(c["origin"], c["order"])] + c["repeats"]]
    taken = {o: sorted({q for o2, q, _ in made if o2 == o})[:k]
             for o, k in (("branch", b), ("sample", s))}
    first: dict[int, int] = {}
    for o, q, c in made:
        if o == "greedy" or q in taken.get(o, ()):
            first[id(c)] = min(first.get(id(c), q), q)
    return sorted((c for c in cands if id(c) in first), key=lambda c: first[id(c)])


def _syntax(c: dict[str, Any], least: int) -> int:
    return (c["syntax_errors"] - least) if c["syntax_errors"] is not None else 0


def _suffix(c: dict[str, Any], tokens: int | None) -> float:
    """The suffix's log-probability after ``c``, over its first ``tokens`` scored tokens (all
    when None; needs the per-token values of a recording made with them)."""
    if tokens is None:
        return c["suffix_logprob"] or 0.0
    per_token = c.get("suffix_token_logprobs")
    if per_token is None:
        raise SystemExit("--suffix-tokens needs a recording with per-token suffix "
                         "log-probabilities (suffix_token_logprobs)")
    return float(sum(per_token[:tokens]))


def _score(c: dict[str, Any], use_logprob: bool, use_suffix: bool,
           tokens: int | None = None, weight: float = 1.0) -> float:
    return ((c["logprob"] if use_logprob else 0.0)
            + (weight * _suffix(c, tokens) if use_suffix else 0.0))


#: The selector the product ships (lsp_server/completion/ranking.py).
PRODUCT = "joint + syntax + echo (product)"

SELECTORS: dict[str, tuple[bool, bool, bool, bool]] = {
    # name → (echo, syntax, logprob, suffix)
    PRODUCT: (True, True, True, True),
    "joint + syntax": (False, True, True, True),
    "joint only": (False, False, True, True),
    "suffix + syntax + echo": (True, True, False, True),
    "logprob + syntax + echo": (True, True, True, False),
    "syntax + echo, then generation order": (True, True, False, False),
}


def choose(cands: list[dict[str, Any]], selector: str, tokens: int | None = None,
           weight: float = 1.0) -> dict[str, Any] | None:
    """The candidate ``selector`` ranks first; ``tokens``: score that many suffix tokens;
    ``weight``: the suffix's log-probability counts that many times."""
    echo, syntax, lp, sfx = SELECTORS[selector]
    if not cands:
        return None
    least = min((c["syntax_errors"] for c in cands if c["syntax_errors"] is not None),
                default=0)
    order = sorted(enumerate(cands), key=lambda ic: (
        echo and ic[1]["echoes_suffix"] and any(ch.isalnum() for ch in ic[1]["text"]), _syntax(ic[1], least) if syntax else 0,
        -_score(ic[1], lp, sfx, tokens, weight) if (lp or sfx) else ic[0]))
    return order[0][1]


def similarity(text: str, expected: str) -> float:
    """Edit similarity of a line to the expected one, 0–1 (difflib's ratio, blanks at the
    ends aside): a finer measure than exact match for choosing between close settings."""
    return difflib.SequenceMatcher(None, text.strip(), expected.strip()).ratio()


def greedy_text(r: Row) -> str:
    """The greedy candidate's text of a recorded line (the completion when none recorded)."""
    return next((c["text"] for c in r["candidates"] if c["origin"] == "greedy"), r["completion"])


def paired(a: Sequence[float], b: Sequence[float], scale: float = 100.0
           ) -> tuple[float, float]:
    """Mean of a − b and its standard error, times ``scale`` (100: points of 0/1 outcomes)."""
    d = [float(x) - float(y) for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
    return scale * mean, scale * math.sqrt(var / n)


def replay(rows: list[Row], greedy: list[bool], n: int, tokens: int | None = None,
           weight: float = 1.0) -> tuple[list[bool], list[float]]:
    """Per line, whether the shipped selector's first choice among ``n`` candidates is exact,
    and its edit similarity (greedy's where nothing was chosen)."""
    hits, sims = [], []
    for r, g in zip(rows, greedy):
        best = choose(subset(r["candidates"], n), PRODUCT, tokens, weight)
        hits.append(bool(best["exact"]) if best else g)
        sims.append(similarity(best["text"] if best else greedy_text(r), r["expected"]))
    return hits, sims


def versus(rows: list[Row], other: Path) -> int:
    """The suggestions shown in ``rows`` against another run's over the same lines."""
    theirs = {(r["path"], r["line"]): r for r in
              (json.loads(x) for x in other.read_text().splitlines() if x.strip())}
    pairs = [(r, theirs[(r["path"], r["line"])]) for r in rows if (r["path"], r["line"]) in theirs]
    if not pairs:
        print(f"no line of {other} in this recording", file=sys.stderr)
        return 1
    mine = [bool(r["exact"]) for r, _ in pairs]
    base = [bool(o["exact"]) for _, o in pairs]
    d, se = paired(mine, base)
    anys = sum(bool(r["exact"]) or any(c["exact"] for c in r["candidates"]) for r, _ in pairs)
    k = len(pairs)
    print(f"{k} lines in both: {other.name} {100 * sum(base) / k:.1f} % ({sum(base)}), this "
          f"{100 * sum(mine) / k:.1f} % ({sum(mine)}); difference {d:+.1f} ± {se:.1f} points "
          f"({sum(m and not b for m, b in zip(mine, base))} gained, "
          f"{sum(b and not m for m, b in zip(mine, base))} lost); any candidate "
          f"{100 * anys / k:.1f} % ({anys}); empty {sum(not o['completion'] for _, o in pairs)} "
          f"vs {sum(not r['completion'] for r, _ in pairs)}")
    return 0


def gate(rows: list[Row], greedy: list[bool], n: int, tokens: int | None,
         thresholds: list[float]) -> None:
    """Exact match when the alternatives are made only where the greedy line is unlikely
    (log-probability below the threshold): the share of lines that would skip them, against
    the shipped selector over ``n`` candidates everywhere and against greedy alone."""
    ranked, _ = replay(rows, greedy, n, tokens)
    likely = [next((c["logprob"] for c in r["candidates"] if c["origin"] == "greedy"), -math.inf)
              for r in rows]
    print(f"| greedy log-probability at least | lines without alternatives | exact match | vs "
          f"{n} candidates everywhere (± SE) | vs greedy (± SE) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for t in thresholds:
        hits = [g if lp >= t else h for h, g, lp in zip(ranked, greedy, likely)]
        skip = sum(lp >= t for lp in likely)
        d, se = paired(hits, ranked)
        dg, seg = paired(hits, greedy)
        print(f"| {t:g} | {100 * skip / len(rows):.1f} % | {100 * sum(hits) / len(rows):.1f} % "
              f"({sum(hits)}) | {d:+.1f} ± {se:.1f} | {dg:+.1f} ± {seg:.1f} |")


def _table(label: str, against: str, settings: list[tuple[str, tuple[list[bool], list[float]]]],
           base: tuple[list[bool], list[float]], n: int) -> None:
    """One row per setting: exact match and edit similarity, each paired against ``base``."""
    print(f"| {label} | exact match, {n} candidates | vs {against} (± SE) | edit similarity "
          f"| vs {against} (± SE) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for name, (hits, sims) in settings:
        d, se = paired(hits, base[0])
        ds, ses = paired(sims, base[1])
        print(f"| {name} | {100 * sum(hits) / len(hits):.1f} % ({sum(hits)}) | {d:+.2f} ± {se:.2f} "
              f"| {100 * sum(sims) / len(sims):.1f} | {ds:+.2f} ± {ses:.2f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="heldout_lines.py --candidates 8 --output JSONL")
    ap.add_argument("--n", default="1,2,3,4,6,8", help="candidate counts to replay")
    ap.add_argument("--splits", type=int, default=0, metavar="N",
                    help="instead: N candidates with every split into branches and samples")
    ap.add_argument("--suffix-tokens", default="", metavar="K,K",
                    help="instead: the shipped selector scoring only the suffix's first K tokens, "
                         "for each K (a recording with per-token suffix log-probabilities)")
    ap.add_argument("--suffix-weights", default="", metavar="W,W",
                    help="instead: the shipped selector with the suffix's log-probability "
                         "weighted W times against the candidate's, for each W (with "
                         "--suffix-tokens K: over its first K tokens)")
    ap.add_argument("--vs", type=Path, metavar="ONE.jsonl",
                    help="instead: pair the suggestions shown in this recording with those of "
                         "another run over the same lines (heldout_lines.py --candidates 1): "
                         "exact match, gained and lost lines")
    ap.add_argument("--gate", default="", metavar="T,T",
                    help="instead: skip the alternatives (show the greedy line alone) where the "
                         "greedy line's log-probability is at least T, for each T (with "
                         "--suffix-tokens K: the selector scoring K suffix tokens)")
    a = ap.parse_args(argv)
    rows: list[Row] = [json.loads(x) for x in a.results.read_text().splitlines() if x.strip()]
    if not rows:
        print("no rows", file=sys.stderr)
        return 1
    greedy = [next((c["exact"] for c in r["candidates"] if c["origin"] == "greedy"),
                   r["exact"] if not r["candidates"] else False) for r in rows]
    print(f"{len(rows)} held-out lines; greedy exact match {100 * sum(greedy) / len(rows):.1f} % "
          f"({sum(greedy)})")
    n = max(int(x) for x in a.n.split(","))
    if a.vs:
        return versus(rows, a.vs)
    if a.gate:
        gate(rows, greedy, n, int(a.suffix_tokens) if a.suffix_tokens else None,
             [float(x) for x in a.gate.split(",")])
        return 0
    if a.suffix_weights:
        tokens = int(a.suffix_tokens) if a.suffix_tokens else None
        _table("suffix weight", "weight 1",
               [(f"{w:g}", replay(rows, greedy, n, tokens, w))
                for w in (float(x) for x in a.suffix_weights.split(","))],
               replay(rows, greedy, n, tokens), n)
        return 0
    if a.suffix_tokens:
        _table("suffix tokens scored", "greedy",
               [(str(k), replay(rows, greedy, n, k)) for k in (int(x) for x in a.suffix_tokens.split(","))],
               (greedy, [similarity(greedy_text(r), r["expected"]) for r in rows]), n)
        return 0
    if a.splits:
        print(f"| {a.splits} candidates | exact match, shipped selector | any candidate |")
        print("| --- | ---: | ---: |")
        for b in range(a.splits - 1, -1, -1):
            hits, anys = [], []
            for r, g in zip(rows, greedy):
                sub = subset(r["candidates"], a.splits, b)
                best = choose(sub, PRODUCT)
                hits.append(bool(best["exact"]) if best else g)
                anys.append(any(c["exact"] for c in sub) or g)
            print(f"| greedy + {b} branch(es) + {a.splits - 1 - b} sample(s) | "
                  f"{100 * sum(hits) / len(rows):.1f} % ({sum(hits)}) | "
                  f"{100 * sum(anys) / len(rows):.1f} % ({sum(anys)}) |")
        return 0
    print("| n | selector | exact match | vs greedy (± SE) | edit similarity | vs greedy (± SE) "
          "| any candidate |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    greedy_sims = [similarity(greedy_text(r), r["expected"]) for r in rows]
    for n in (int(x) for x in a.n.split(",")):
        for name in SELECTORS:
            hits, sims, anys = [], [], []
            for r, g, gs in zip(rows, greedy, greedy_sims):
                sub = subset(r["candidates"], n)
                best = choose(sub, name) if n > 1 else None
                hits.append(bool(best["exact"]) if best else g)
                sims.append(similarity(best["text"], r["expected"]) if best else gs)
                anys.append(any(c["exact"] for c in sub) or g)
            d, se = paired(hits, greedy)
            ds, ses = paired(sims, greedy_sims)
            print(f"| {n} | {name} | {100 * sum(hits) / len(rows):.1f} % ({sum(hits)}) | "
                  f"{d:+.1f} ± {se:.1f} | {100 * sum(sims) / len(rows):.1f} | {ds:+.2f} ± {ses:.2f} "
                  f"| {100 * sum(anys) / len(rows):.1f} % ({sum(anys)}) |")
            if n == 1:
                break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
