"""model/gemma.py: the torch Gemma against the numpy reference, llama.cpp, and itself.

A tiny config in CodeGemma's shape (multi-query attention, head_dim > hidden/heads) with random
non-zero norm weights, so that every Gemma quirk (1 + w norms, √hidden embedding scale, tanh
GeGLU, MQA, RoPE base) moves the logits far beyond the tolerances used here.
"""

from __future__ import annotations

import dataclasses
import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="model/ needs torch: scripts/setup dev installs it")
pytest.importorskip("sentencepiece")
pytest.importorskip("safetensors")

from model.checkpoint import load_pretrained, save_pretrained  # noqa: E402
from model.config import CONFIGS, GemmaConfig  # noqa: E402
from model.gemma import GemmaForCausalLM, lm_loss  # noqa: E402
from model.lora import apply_lora  # noqa: E402
from model.tokenizer import SentencePieceTokenizer, train_tokenizer  # noqa: E402
from tests.gemma_reference import gemma_logits  # noqa: E402
from tests.test_model_gemma3 import llama_logits  # noqa: E402

STDLIB = Path(sysconfig.get_paths()["stdlib"])
CODE = "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1)"


def random_model(cfg: GemmaConfig, seed: int = 0) -> GemmaForCausalLM:
    torch.manual_seed(seed)
    m = GemmaForCausalLM(cfg)
    with torch.no_grad():
        for name, p in m.named_parameters():
            # Norm weights away from 0 and larger matrices than the init: logits of order 1-10.
            p.normal_(0.0, 0.1 if p.dim() == 1 else 0.05)
    return m.eval()


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tok")
    texts = [(STDLIB / n).read_text(encoding="utf-8") for n in ("bisect.py", "heapq.py", "abc.py")]
    train_tokenizer(texts, d, vocab_size=400)
    return d


@pytest.fixture(scope="module")
def tok(tok_dir: Path) -> SentencePieceTokenizer:
    return SentencePieceTokenizer.from_checkpoint(tok_dir)


@pytest.fixture(scope="module")
def tiny(tok: SentencePieceTokenizer) -> GemmaForCausalLM:
    cfg = dataclasses.replace(CONFIGS["tiny"].with_vocab(tok.vocab_size), rope_theta=5000.0)
    return random_model(cfg)


def weights_np(m: GemmaForCausalLM) -> dict[str, np.ndarray]:
    return {k: v.detach().double().numpy() for k, v in m.state_dict().items()}


def test_forward_matches_numpy_reference(tiny: GemmaForCausalLM, tok: SentencePieceTokenizer
                                         ) -> None:
    ids = [tok.bos_id] + tok.tokenize(CODE)
    cfg = tiny.config.to_hf()
    ref = gemma_logits(cfg, weights_np(tiny), ids)
    with torch.no_grad():
        got = tiny(torch.tensor([ids]))[0].double().numpy()
    assert np.abs(ref).max() > 1.0
    assert np.abs(got - ref).max() < 1e-4
    # The comparison is sharp: the reference with another RoPE base misses by far more.
    other = gemma_logits({**cfg, "rope_theta": 100.0}, weights_np(tiny), ids)
    assert np.abs(other - got).max() > 1e-2


def test_named_configs() -> None:
    cg = CONFIGS["codegemma-2b"]
    assert (cg.hidden_size, cg.intermediate_size, cg.num_hidden_layers, cg.num_attention_heads,
            cg.num_key_value_heads, cg.head_dim, cg.vocab_size) == (2048, 16384, 18, 8, 1, 256,
                                                                   256000)
    assert 2.4e9 < cg.n_params() < 2.6e9  # "2B": 2.5B with the 256k embedding
    m = GemmaForCausalLM(CONFIGS["tiny"].with_vocab(100))
    assert sum(p.numel() for p in m.parameters()) == CONFIGS["tiny"].with_vocab(100).n_params()
    assert GemmaConfig.from_hf(cg.to_hf()) == cg


def test_packed_rows_equal_separate_sequences(tiny: GemmaForCausalLM) -> None:
    """Position ids restarting at 0 and segment masks make packing invisible to each example."""
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, tiny.config.vocab_size, (7,), generator=g)
    b = torch.randint(0, tiny.config.vocab_size, (5,), generator=g)
    row = torch.cat([a, b])[None]
    pos = torch.cat([torch.arange(7), torch.arange(5)])[None]
    seg = torch.tensor([[0] * 7 + [1] * 5])
    with torch.no_grad():
        packed = tiny(row, position_ids=pos, segment_ids=seg)[0]
        la, lb = tiny(a[None])[0], tiny(b[None])[0]
        unmasked = tiny(row)[0]
    torch.testing.assert_close(packed[:7], la, atol=1e-5, rtol=0)
    torch.testing.assert_close(packed[7:], lb, atol=1e-5, rtol=0)
    assert (unmasked[7:] - lb).abs().max() > 1e-3  # without the mask b would see a


def test_save_load_identical_logits_and_hf_layout(tiny: GemmaForCausalLM, tok_dir: Path,
                                                  tmp_path: Path) -> None:
    out = save_pretrained(tiny, tmp_path / "ck", tokenizer_dir=tok_dir)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["GemmaForCausalLM"] and cfg["head_dim"] == 32
    assert (out / "tokenizer.model").is_file() and (out / "tokenizer_config.json").is_file()
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "np") as f:
        names = set(f.keys())
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names
    assert "model.layers.1.self_attn.k_proj.weight" in names and len(names) == 2 + 9 * 2
    loaded = load_pretrained(out)
    ids = torch.tensor([[2, 5, 9, 11, 40, 7]])
    with torch.no_grad():
        assert torch.equal(loaded(ids), tiny(ids))


def test_training_step_lowers_loss(tok: SentencePieceTokenizer) -> None:
    torch.manual_seed(0)
    m = GemmaForCausalLM(CONFIGS["tiny"].with_vocab(tok.vocab_size))
    ids = torch.tensor([[tok.bos_id] + tok.tokenize(CODE)])
    x, y = ids[:, :-1], ids[:, 1:]
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(3):
        s, n = lm_loss(m(x), y)
        loss = s / n
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[1] < losses[0] and losses[2] < losses[1]


def test_lora_starts_as_base_trains_adapters_only_and_merges(tiny: GemmaForCausalLM,
                                                             tmp_path: Path, tok_dir: Path
                                                             ) -> None:
    base = random_model(tiny.config)
    ids = torch.tensor([[2, 5, 9, 11, 40, 7, 3, 8]])
    with torch.no_grad():
        before = base(ids)
    n_train = apply_lora(base, r=4, alpha=8.0)
    assert 0 < n_train < sum(p.numel() for p in base.parameters()) // 4
    with torch.no_grad():
        torch.testing.assert_close(base(ids), before, atol=1e-6, rtol=0)
    emb = base.model.embed_tokens.weight.clone()
    opt = torch.optim.AdamW([p for p in base.parameters() if p.requires_grad], lr=1e-2)
    s, n = lm_loss(base(ids[:, :-1]), ids[:, 1:])
    (s / n).backward()
    opt.step()
    assert torch.equal(base.model.embed_tokens.weight, emb)  # frozen
    with torch.no_grad():
        after = base(ids)
    assert (after - before).abs().max() > 1e-4
    merged = load_pretrained(save_pretrained(base, tmp_path / "lora", tokenizer_dir=tok_dir))
    with torch.no_grad():
        torch.testing.assert_close(merged(ids), after, atol=1e-4, rtol=0)


def test_llama_cpp_logits_equal_torch_after_codefill_quantize(
        tiny: GemmaForCausalLM, tok_dir: Path, tok: SentencePieceTokenizer, tmp_path: Path
) -> None:
    from lsp_server.cli.main import main as codefill
    from lsp_server.models.gguf_info import read_model_info
    from lsp_server.prompt.detect import detect_template

    ck = save_pretrained(tiny, tmp_path / "ck", tokenizer_dir=tok_dir)
    out = tmp_path / "tiny-f32.gguf"
    assert codefill(["quantize", str(ck), "--out", str(out), "--type", "F32"]) == 0
    assert detect_template(read_model_info(out)).template.name == "codegemma"
    ids, got = llama_logits(out, CODE)
    assert ids == [tok.bos_id] + tok.tokenize(CODE)  # llama.cpp tokenizes as we trained
    with torch.no_grad():
        ours = tiny(torch.tensor([ids]))[0].double().numpy()
    assert np.abs(ours).max() > 1.0
    assert np.abs(got - ours).max() < 1e-3
