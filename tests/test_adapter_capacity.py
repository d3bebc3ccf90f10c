"""bench/adapter_capacity.py: teacher-forced exact match and middle loss on a tiny Gemma 3."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import adapter_capacity  # noqa: E402

from model.data.fim import Example  # noqa: E402
from model.gemma3 import Gemma3Config, Gemma3ForCausalLM  # noqa: E402

TINY = Gemma3Config(
    vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
    sliding_window=8, sliding_window_pattern=2)


@torch.no_grad()
def greedy(model: Gemma3ForCausalLM, ids: list[int], n: int) -> list[int]:
    """``n`` tokens decoded greedily, one full forward pass per token."""
    out = list(ids)
    for _ in range(n):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(torch.tensor([out]))[0, -1].float()
        out.append(int(logits.argmax()))
    return out[len(ids):]


def test_greedy_exact_is_what_greedy_decoding_writes_and_the_loss_is_the_middles() -> None:
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(TINY).eval()
    prefix = [int(x) for x in torch.randint(3, 64, (20,))]
    middle = greedy(model, prefix, 6)  # five middle tokens, then the "end token"
    end_id = middle[-1]
    wrong = list(middle)
    wrong[2] = (wrong[2] + 1) % 64 if (wrong[2] + 1) % 64 != end_id else (wrong[2] + 2) % 64
    exs = [Example(prefix + middle, 6), Example(prefix + wrong, 6)]
    s = adapter_capacity.score(model, exs, end_id)
    assert s.exact == [True, False]
    assert s.tokens == [6, 6]
    # The loss is the cross-entropy of exactly the middle's tokens (a full forward pass here).
    for ex, nats in zip(exs, s.nats):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(torch.tensor([ex[:-1]]))[0, -6:].float()
        want = float(F.cross_entropy(logits, torch.tensor(ex[-6:]), reduction="sum"))
        assert nats == pytest.approx(want, rel=2e-2)
    assert s.nats[1] > s.nats[0]
    with pytest.raises(AssertionError, match="end token"):
        adapter_capacity.score(model, [Example(prefix + middle[:-1] + [end_id ^ 1], 6)], end_id)


def test_paired_difference_and_its_standard_error() -> None:
    mean, se = adapter_capacity.paired([1.0, 2.0, 3.0, 6.0], [1.0, 1.0, 1.0, 1.0], scale=1.0)
    assert mean == pytest.approx(2.0)
    # differences 0, 1, 2, 5: sample variance 14/3, SE sqrt(14/3/4)
    assert se == pytest.approx((14 / 3 / 4) ** 0.5)


def test_a_missing_checkpoint_is_refused_before_anything_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert adapter_capacity.main([str(tmp_path / "nope.pt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
