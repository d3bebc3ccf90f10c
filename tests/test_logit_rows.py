"""bench/logit_rows.py on the embedded model: what a row of logits costs, and the split of a
several-candidate suggestion into decoding the alternatives and scoring them."""

from __future__ import annotations

from pathlib import Path

from bench import logit_rows
from lsp_server.engine.candidates import CandidateDecoder


def test_rows_of_logits_cost_time_beyond_the_layers(embedded_model: Path) -> None:
    costs = logit_rows.batch_costs(str(embedded_model), threads=2, reps=2, step_rows=(1, 4),
                                   batch_tokens=(16,))
    assert [r["rows"] for r in costs["steps"]] == [1, 4]
    assert [r["tokens"] for r in costs["batches"]] == [16]
    for r in costs["steps"] + costs["batches"]:
        # Gemma 3's output layer (262,144 × 640) is most of a step: a row of logits is never
        # close to free.
        assert 0 < r["none_ms"] < r["logits_ms"], r
        assert r["output_ms_per_row"] > 0


def test_the_breakdown_times_the_engines_alternatives_and_scoring(embedded_model: Path,
                                                                 capsys) -> None:  # noqa: ANN001
    originals = (CandidateDecoder._decode, CandidateDecoder._score)
    split = logit_rows.breakdown(str(embedded_model), threads=2, reps=1, n=3)
    # bench/engine.py's three cursors with three candidates (two of them warm-ups), each
    # through _decode and _score once.
    assert split["candidates"] == 3 and split["suggestions"] == 3
    assert split["alternatives_ms"] > 0 and split["scoring_ms"] > 0
    assert split["alternatives_ms"] + split["scoring_ms"] < split["mean_wall_ms_n"] * 1.5
    assert (CandidateDecoder._decode, CandidateDecoder._score) == originals  # put back
    assert "| wall time per suggestion |" in capsys.readouterr().out
