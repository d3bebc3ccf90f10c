"""model/gemma3.py and model/gguf_load.py: the torch Gemma 3 against numpy, llama.cpp, itself.

Two levels:

- a tiny random Gemma 3 (GQA, a 6-token sliding window on 3 of 4 layers, distinct local/global
  RoPE bases, linear RoPE scaling on the global layers, non-zero norm weights) against the
  float64 numpy reference (tests/gemma_reference.py, written from transformers' modeling code) and,
  through ``codefill quantize --type F32``, against llama.cpp — sequences longer than the window,
  so the sliding-window masking of both implementations is exercised;
- the embedded Gemma 3 270M (Q4_K_M) loaded into torch from its GGUF, against llama.cpp on the
  same tokens (``-m model``): once with llama.cpp running the same GGUF (its activations are
  rounded to 8 bits before every quantized matmul, so the tolerance is statistical, see below),
  once with llama.cpp running the same dequantized weights as F32 (a tight tolerance).
"""

from __future__ import annotations

import dataclasses
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="model/ needs torch: scripts/setup dev installs it")
pytest.importorskip("sentencepiece")
pytest.importorskip("safetensors")

from model.checkpoint import save_pretrained  # noqa: E402
from model.gemma import lm_loss  # noqa: E402
from model.gemma3 import (FULL, GEMMA3_270M, SLIDING, Gemma3Config,  # noqa: E402
                          Gemma3ForCausalLM, selected_lm_loss)
from model.gguf_load import (GGUFLoadError, config_from_metadata, hf_name,  # noqa: E402
                             load_gemma3_gguf, read_tensor_index)
from model.tokenizer import SentencePieceTokenizer, train_tokenizer  # noqa: E402
from tests.gemma_reference import gemma_logits  # noqa: E402

STDLIB = Path(sysconfig.get_paths()["stdlib"])
CODE = ("def bisect_left(a, x, lo=0, hi=None):\n    if lo < 0:\n        raise ValueError('lo')\n"
        "    while lo < hi:\n        mid = (lo + hi) // 2\n        if a[mid] < x:\n"
        "            lo = mid + 1\n")
WINDOW = 6

TINY = Gemma3Config(
    vocab_size=0, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=1024,
    rope_theta=20_000.0, rope_local_base_freq=500.0, rope_scaling_factor=2.0,
    sliding_window=WINDOW, sliding_window_pattern=3)  # layers: slide, slide, global, slide


def random_model(cfg: Gemma3Config, seed: int = 0) -> Gemma3ForCausalLM:
    torch.manual_seed(seed)
    m = Gemma3ForCausalLM(cfg)
    with torch.no_grad():
        for p in m.parameters():
            # Norm weights away from 0 and matrices larger than the init: logits of order 1-10.
            p.normal_(0.0, 0.1 if p.dim() == 1 else 0.05)
    return m.eval()


def weights_np(m: Gemma3ForCausalLM) -> dict[str, np.ndarray]:
    return {k: v.detach().double().numpy() for k, v in m.state_dict().items()}


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
def tiny(tok: SentencePieceTokenizer) -> Gemma3ForCausalLM:
    return random_model(TINY.with_vocab(tok.vocab_size))


@pytest.fixture(scope="module")
def ids(tok: SentencePieceTokenizer) -> list[int]:
    out = [tok.bos_id] + tok.tokenize(CODE)
    assert len(out) > 4 * WINDOW  # most positions see beyond the window
    return out


def logits(m: Gemma3ForCausalLM, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return m(torch.tensor([ids]))[0].double().numpy()


def test_config_layers_and_hf_round_trip() -> None:
    assert TINY.sliding_layers() == (True, True, False, True)
    assert [i for i, s in enumerate(GEMMA3_270M.sliding_layers()) if not s] == [5, 11, 17]
    assert GEMMA3_270M.query_scale == 256 ** -0.5
    cfg = TINY.with_vocab(100)
    assert Gemma3Config.from_hf(cfg.to_hf()) == dataclasses.replace(
        cfg, layer_types=(SLIDING, SLIDING, FULL, SLIDING), query_pre_attn_scalar=32)
    m = Gemma3ForCausalLM(cfg)
    assert sum(p.numel() for p in m.parameters()) == cfg.n_params()
    # 270M: 268M parameters, 168M of them the 262k × 640 embedding.
    assert 2.6e8 < GEMMA3_270M.n_params() < 2.7e8


def test_forward_matches_numpy_reference(tiny: Gemma3ForCausalLM, ids: list[int]) -> None:
    cfg = tiny.config.to_hf()
    ref = gemma_logits(cfg, weights_np(tiny), ids)
    got = logits(tiny, ids)
    assert np.abs(ref).max() > 1.0
    assert np.abs(got - ref).max() < 1e-4
    # Sharp: each Gemma 3 feature moves the reference far beyond the tolerance.
    for change in ({"rope_local_base_freq": 10_000.0}, {"rope_scaling": None},
                   {"sliding_window": 10_000}, {"query_pre_attn_scalar": 64}):
        other = gemma_logits({**cfg, **change}, weights_np(tiny), ids)
        assert np.abs(other - got).max() > 1e-2, change


def test_sliding_window_masks_only_beyond_the_window(tiny: Gemma3ForCausalLM,
                                                     ids: list[int]) -> None:
    """Without the window the first WINDOW positions are unchanged and every later one moves."""
    # Same weights and layer kinds (sliding layers keep the local RoPE base), window > T.
    wide = random_model(dataclasses.replace(tiny.config, sliding_window=len(ids) + 1))
    wide.load_state_dict(tiny.state_dict())
    assert [layer.sliding for layer in wide.model.layers] == [True, True, False, True]
    a, b = logits(tiny, ids), logits(wide, ids)
    assert np.abs(a[:WINDOW] - b[:WINDOW]).max() < 1e-5
    assert (np.abs(a[WINDOW:] - b[WINDOW:]).max(axis=1) > 1e-3).all()


def test_packed_rows_equal_separate_sequences(tiny: Gemma3ForCausalLM, ids: list[int]) -> None:
    """Segments and the window combine: each packed example computes what it computes alone."""
    a, b = torch.tensor(ids[:17]), torch.tensor(ids[5:27])  # both longer than the window
    row = torch.cat([a, b])[None]
    pos = torch.cat([torch.arange(len(a)), torch.arange(len(b))])[None]
    seg = torch.tensor([[0] * len(a) + [1] * len(b)])
    with torch.no_grad():
        packed = tiny(row, position_ids=pos, segment_ids=seg)[0]
        la, lb = tiny(a[None])[0], tiny(b[None])[0]
    torch.testing.assert_close(packed[:len(a)], la, atol=1e-5, rtol=0)
    torch.testing.assert_close(packed[len(a):], lb, atol=1e-5, rtol=0)


def test_selected_loss_equals_full_loss_and_trains(tok: SentencePieceTokenizer,
                                                   ids: list[int]) -> None:
    m = random_model(TINY.with_vocab(tok.vocab_size), seed=1).train()
    x = torch.tensor([ids[:-1]])
    y = torch.tensor([ids[1:]])
    y[:, :10] = -100  # only the "middle" positions carry loss
    s_full, n_full = lm_loss(m(x), y)
    s_sel, n_sel = selected_lm_loss(m, x, y)
    assert n_full == n_sel == y.shape[1] - 10
    torch.testing.assert_close(s_sel, s_full, atol=1e-4, rtol=1e-5)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(3):
        s, n = selected_lm_loss(m, x, y)
        opt.zero_grad()
        (s / n).backward()
        opt.step()
        losses.append((s / n).item())
    assert losses[2] < losses[1] < losses[0]


def test_llama_cpp_logits_equal_torch_and_gguf_loads_back(
        tiny: Gemma3ForCausalLM, tok_dir: Path, ids: list[int], tmp_path: Path) -> None:
    """Our Gemma 3 → HF checkpoint → codefill quantize F32 → llama.cpp: the same logits, with
    llama.cpp's own sliding-window masking; and the GGUF loads back into torch exactly."""
    from lsp_server.cli.main import main as codefill

    ck = save_pretrained(tiny, tmp_path / "ck", tokenizer_dir=tok_dir, name="tiny-gemma3")
    out = tmp_path / "tiny-gemma3-f32.gguf"
    assert codefill(["quantize", str(ck), "--out", str(out), "--type", "F32"]) == 0
    llama_ids, got = llama_logits(out, CODE)
    assert llama_ids == ids
    ours = logits(tiny, ids)
    assert np.abs(ours).max() > 1.0
    # Measured 9.2e-4 (logits up to 1.8): float32 on both sides, but llama.cpp's CPU GELU rounds
    # its input to fp16 and reads an fp16 table (2^-11 ≈ 4.9e-4 relative); emulating that in
    # torch brings the difference to 2.5e-4. 3e-3 leaves room for other thread counts and
    # builds and is still 450× below what a one-token-wider window costs (1.38, below).
    assert np.abs(got - ours).max() < 3e-3
    # A window one token wider already misses (llama.cpp masks p1 - p0 >= n_swa, as we do).
    wider = random_model(dataclasses.replace(tiny.config, sliding_window=WINDOW + 1))
    wider.load_state_dict(tiny.state_dict())
    assert np.abs(got - logits(wider, ids)).max() > 1e-2

    from lsp_server.models.gguf_header import read_header

    index = read_tensor_index(out)  # agrees with the daemon's header reader, plus dimensions
    assert [(t.name, t.offset, t.n_bytes) for t in index] == [
        (t.name, t.offset, t.n_bytes) for t in read_header(out).tensors]
    assert {t.name: t.shape for t in index}["blk.0.ffn_down.weight"] == (64, 128)
    back = load_gemma3_gguf(out)
    assert back.config.sliding_layers() == tiny.config.sliding_layers()
    assert back.config.rms_norm_eps == pytest.approx(1e-6, rel=1e-6)  # stored as float32
    assert dataclasses.replace(back.config, layer_types=None, sliding_window_pattern=3,
                               rms_norm_eps=1e-6) == dataclasses.replace(
        tiny.config, query_pre_attn_scalar=32)
    for name, value in tiny.state_dict().items():
        # Norms come back as (w + 1) − 1 in float32: equal to within an ulp of 1.
        torch.testing.assert_close(back.state_dict()[name], value, atol=2e-7, rtol=0)


def test_gguf_names_are_a_closed_table() -> None:
    assert hf_name("blk.3.ffn_norm.weight", 18) == (
        "model.layers.3.pre_feedforward_layernorm.weight", True)
    assert hf_name("blk.3.attn_q_norm.weight", 18) == ("model.layers.3.self_attn.q_norm.weight",
                                                       True)
    assert hf_name("blk.0.attn_q.weight", 18) == ("model.layers.0.self_attn.q_proj.weight", False)
    assert hf_name("token_embd.weight", 18) == ("model.embed_tokens.weight", False)
    with pytest.raises(GGUFLoadError, match="'blk.0.attn_qkv.weight'"):
        hf_name("blk.0.attn_qkv.weight", 18)
    with pytest.raises(GGUFLoadError, match="layer 18"):
        hf_name("blk.18.attn_q.weight", 18)
    with pytest.raises(GGUFLoadError, match="untied"):
        hf_name("output.weight", 18)


def test_config_from_metadata_defaults_as_llama_cpp() -> None:
    meta = {"general.architecture": "gemma3", "gemma3.embedding_length": 640,
            "gemma3.block_count": 18, "gemma3.feed_forward_length": 2048,
            "gemma3.attention.head_count": 4, "gemma3.attention.head_count_kv": 1,
            "gemma3.attention.key_length": 256, "gemma3.attention.value_length": 256,
            "gemma3.rope.freq_base": 1e6, "gemma3.attention.sliding_window": 512,
            "gemma3.context_length": 32768, "gemma3.attention.layer_norm_rms_epsilon": 1e-6}
    assert config_from_metadata(meta, 262144) == GEMMA3_270M  # no freq_base_swa: 10 000
    with pytest.raises(GGUFLoadError, match="'llama'"):
        config_from_metadata({**meta, "general.architecture": "llama"}, 262144)
    with pytest.raises(GGUFLoadError, match="yarn"):
        config_from_metadata({**meta, "gemma3.rope.scaling.type": "yarn"}, 262144)
    scaled = config_from_metadata({**meta, "gemma3.rope.scaling.type": "linear",
                                   "gemma3.rope.scaling.factor": 8.0}, 262144)
    assert scaled.rope_scaling_factor == 8.0


# -- the embedded 270M ------------------------------------------------------------------------

def _kl_top1_corr(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Agreement figures of two (T, vocab) logit arrays; ``ref`` is llama.cpp's."""
    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    lr, lg = log_softmax(ref), log_softmax(got)
    kl = (np.exp(lr) * (lr - lg)).sum(axis=1)  # KL(llama.cpp ‖ torch) per position, nats
    agree = ref.argmax(axis=1) == got.argmax(axis=1)
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]  # how far llama.cpp's top-1 leads its runner-up
    corr = np.array([np.corrcoef(r, g)[0, 1] for r, g in zip(ref, got)])
    return {"mean_abs": float(np.abs(ref - got).mean()), "max_abs": float(np.abs(ref - got).max()),
            "kl_mean": float(kl.mean()), "top1": float(agree.mean()),
            "miss_margin": float(margin[~agree].max(initial=0.0)),
            "corr_min": float(corr.min()), "corr_median": float(np.median(corr))}


@pytest.fixture(scope="module")
def torch_270m(embedded_model: Path) -> Gemma3ForCausalLM:
    return load_gemma3_gguf(embedded_model)


def llama_logits(path: Path, text: str, n: int | None = None,
                 **llama: Any) -> tuple[list[int], np.ndarray]:
    """llama.cpp's tokens of ``text`` (BOS first, the first ``n``) and its logits (float64) at
    each, for the GGUF at ``path``; ``llama`` goes to the Llama constructor."""
    import gguf

    from lsp_server.engine.llama_loader import _llama_factory, cpu_has_amx

    f32 = int(gguf.GGMLQuantizationType.F32)
    # F32 KV cache: keeps llama.cpp's K/V out of the comparison's error budget.
    llm = _llama_factory(model_path=str(path), n_ctx=256, logits_all=True, verbose=False,
                         use_extra_bufts=not cpu_has_amx(), type_k=f32, type_v=f32, **llama)
    try:
        ids = llm.tokenize(text.encode(), add_bos=True, special=False)[:n]
        llm.eval(ids)
        return ids, np.array(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()


SNIPPET = (STDLIB / "bisect.py").read_text(encoding="utf-8")[2000:6000]


@pytest.mark.model
def test_embedded_270m_matches_llama_cpp_q4_k_m(embedded_model: Path,
                                                 torch_270m: Gemma3ForCausalLM) -> None:
    """Same GGUF, same 64 tokens. torch multiplies float32 activations by the dequantized
    weights; llama.cpp rounds the activations to 8 bits (Q8_0 blocks of 32 for the Q5_0/Q8_0
    tensors, Q8_K blocks of 256 for Q4_K/Q6_K) before every matmul, through 18 layers. That is
    the whole difference: with the same weights stored as F32 (next test) the mean |Δlogit|
    drops 100× (0.24 → 0.002). So the tolerance is statistical, from measurement (512 positions
    of 8 stdlib files: mean |Δ| 0.24, KL 0.007 nats, top-1 94.9 % with every disagreement at a
    near-tie, leader ahead by ≤ 0.39 logits, per-position correlation ≥ 0.9895), and each bound
    is failed by every planted bug tried (docs/adapter-training-notes.md: query scale 1/√160
    instead of 1/√256 gives KL 0.067, top-1 84 %, a disagreement with a 0.63 lead, correlation
    0.967)."""
    ids, ref = llama_logits(embedded_model, SNIPPET, 64, n_threads=2)
    assert len(ids) == 64
    with torch.no_grad():
        got = torch_270m(torch.tensor([ids]))[0].double().numpy()
    f = _kl_top1_corr(ref, got)
    # Measured on these tokens: mean_abs 0.20, KL 0.006, top-1 0.969, miss margin 0.08,
    # correlation min 0.9963 / median 0.9993.
    assert f["mean_abs"] < 0.4, f
    assert f["kl_mean"] < 0.03, f
    assert f["top1"] >= 0.90 and f["miss_margin"] < 0.5, f
    assert f["corr_min"] > 0.98 and f["corr_median"] > 0.998, f


@pytest.mark.model
def test_embedded_270m_matches_llama_cpp_on_the_same_f32_weights(
        embedded_model: Path, torch_270m: Gemma3ForCausalLM, tmp_path: Path) -> None:
    """llama.cpp re-stores the Q4_K_M file as F32 (its own dequantization, no activation
    rounding in F32 matmuls): now both sides run the same weights in float32 and only the
    summation order and llama.cpp's fp16-table GELU (~5e-4 relative) differ. Measured: max
    |Δlogit| 0.021 at logits up to 39, correlation ≥ 0.9999998."""
    import ctypes

    import llama_cpp

    out = tmp_path / "g3-f32.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = 0  # LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    assert llama_cpp.llama_model_quantize(str(embedded_model).encode(), str(out).encode(),
                                          ctypes.byref(params)) == 0
    try:
        ids, ref = llama_logits(out, SNIPPET, 64, n_threads=2)
    finally:
        out.unlink()  # 1 GB
    with torch.no_grad():
        got = torch_270m(torch.tensor([ids]))[0].double().numpy()
    f = _kl_top1_corr(ref, got)
    assert np.abs(ref).max() > 20
    assert f["max_abs"] < 0.1 and f["corr_min"] > 0.99999, f
    assert f["miss_margin"] < 0.01, f  # only exact near-ties may flip


def test_lora_on_gemma3_starts_as_base_trains_adapters_only_and_merges(
        tiny: Gemma3ForCausalLM, ids: list[int]) -> None:
    """model/lora.py wraps Gemma 3's projections by name (q/k/v/o, gate/up/down); the q/k norms,
    the other norms and the tied embedding stay frozen (llama.cpp's adapters cannot carry
    norms or, for a tied model, the embedding: docs/adapter-training-notes.md)."""
    from model.lora import LoRALinear, apply_lora, merged_state_dict

    m = random_model(tiny.config)
    x = torch.tensor([ids[:-1]])
    y = torch.tensor([ids[1:]])
    y[:, :12] = -100
    with torch.no_grad():
        before = m(x)
    n_train = apply_lora(m, r=4, alpha=8.0)
    wrapped = {n.rsplit(".", 1)[-1] for n, mod in m.named_modules() if isinstance(mod, LoRALinear)}
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                       "down_proj"}
    cfg = tiny.config
    r, h = 4, cfg.hidden_size  # each wrapped linear adds r · (in + out)
    per_layer = 2 * r * (h + cfg.num_attention_heads * cfg.head_dim)  # q, o
    per_layer += 2 * r * (h + cfg.num_key_value_heads * cfg.head_dim)  # k, v
    per_layer += 3 * r * (h + cfg.intermediate_size)  # gate, up, down
    assert n_train == cfg.num_hidden_layers * per_layer
    with torch.no_grad():
        torch.testing.assert_close(m(x), before, atol=1e-6, rtol=0)
    frozen = {k: v.clone() for k, v in m.state_dict().items() if "lora_" not in k}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    s, n = selected_lm_loss(m, x, y)
    (s / n).backward()
    opt.step()
    for k, v in m.state_dict().items():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k
    with torch.no_grad():
        after = m(x)
    assert (after - before).abs().max() > 1e-4
    plain = random_model(tiny.config)
    plain.load_state_dict(merged_state_dict(m))
    with torch.no_grad():
        torch.testing.assert_close(plain(x), after, atol=1e-4, rtol=0)
