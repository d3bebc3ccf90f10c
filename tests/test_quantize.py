"""quantize/: tiny checkpoints in the exact Hugging Face CodeGemma layout → GGUF → llama.cpp.

The checkpoints are built here (random weights, a SentencePiece BPE tokenizer trained on the
spot with the FIM sentinels as user-defined symbols); llama.cpp's logits are compared with an
independent float64 numpy forward pass of the HF model (tests/gemma_reference.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import gguf
import numpy as np
import pytest

pytest.importorskip("sentencepiece")
pytest.importorskip("safetensors")

from lsp_server.completion.completer import complete_text  # noqa: E402
from lsp_server.config import Config  # noqa: E402
from lsp_server.completion.session import ModelSession  # noqa: E402
from lsp_server.engine.types import StopReason  # noqa: E402
from lsp_server.engine.llama_loader import _llama_factory, cpu_has_amx  # noqa: E402
from lsp_server.models.gguf_info import TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED, read_model_info  # noqa: E402
from lsp_server.prompt.detect import detect_template  # noqa: E402
from quantize.convert import convert_checkpoint  # noqa: E402
from quantize.evaluate import evaluate  # noqa: E402
from quantize.llama_quantize import quantize_gguf, read_imatrix  # noqa: E402
from quantize.pipeline import QuantizeJob, output_paths, run  # noqa: E402
from tests.gemma_reference import gemma_logits  # noqa: E402
from quantize.report import format_table  # noqa: E402
from bench.common import make_config, write_checkpoint  # noqa: E402

# CodeGemma 2B's shape in miniature: multi-query attention (1 KV head), head_dim > hidden/heads.
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=1, head_dim=32, vocab_size=0, max_position_embeddings=512)
# Rows of 256 so that the K-quants apply (smaller rows fall back to other types).
SMALL = dict(TINY, hidden_size=256, intermediate_size=512, head_dim=64)
GGML_F32 = int(gguf.GGMLQuantizationType.F32)
TEXT = "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1)"


def load(path: Path, n_ctx: int = 256) -> Any:
    # An F32 KV cache (llama.cpp defaults to F16): the comparison is about the file's weights;
    # F16 K/V rounding alone costs ~5e-4 once Gemma 2/3's post-attention norm rescales it.
    return _llama_factory(model_path=str(path), n_ctx=n_ctx, logits_all=True, verbose=False,
                          use_extra_bufts=not cpu_has_amx(), type_k=GGML_F32, type_v=GGML_F32)


def llama_logits(path: Path, text: str = TEXT) -> tuple[list[int], np.ndarray]:
    llm = load(path)
    try:
        toks = llm.tokenize(text.encode(), add_bos=True, special=False)
        llm.eval(toks)
        return toks, np.array(llm.scores[: len(toks)], dtype=np.float64)
    finally:
        llm.close()


class Ckpt:
    def __init__(self, root: Path, arch: str = "GemmaForCausalLM", dims: dict = TINY,
                 **kw: Any) -> None:
        self.dir = root
        self.weights = write_checkpoint(root, make_config(arch, **dims), std=0.04, **kw)
        self.cfg = json.loads((root / "config.json").read_text())


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Ckpt:
    return Ckpt(tmp_path_factory.mktemp("codegemma"))


@pytest.fixture(scope="module")
def f32_gguf(ckpt: Ckpt, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "tiny-f32.gguf"
    convert_checkpoint(ckpt.dir, out, "F32")
    return out


# --- interop: llama.cpp logits equal the reference --------------------------------------------

def test_f32_logits_match_reference(ckpt: Ckpt, f32_gguf: Path) -> None:
    toks, got = llama_logits(f32_gguf)
    ref = gemma_logits(ckpt.cfg, ckpt.weights, toks)
    assert np.abs(ref).max() > 1.0  # logits large enough for the tolerance to mean something
    assert np.abs(got - ref).max() < 1e-3


def test_reference_sees_gemma_quirks(ckpt: Ckpt, f32_gguf: Path) -> None:
    """The match above is meaningful: a converter that forgot Gemma's 1 + w norms would miss
    the reference by far more than 1e-3."""
    toks, got = llama_logits(f32_gguf)
    no_shift = dict(ckpt.weights)
    for k in no_shift:
        if k.endswith("norm.weight"):
            no_shift[k] = no_shift[k] - 1.0  # the reference adds 1: this makes it use w, not 1+w
    assert np.abs(gemma_logits(ckpt.cfg, no_shift, toks) - got).max() > 0.05


def test_stored_norms_are_one_plus_w_and_output_is_tied(ckpt: Ckpt, f32_gguf: Path) -> None:
    r = gguf.GGUFReader(f32_gguf)
    t = {x.name: x for x in r.tensors}
    np.testing.assert_allclose(np.asarray(t["blk.0.attn_norm.weight"].data),
                               1.0 + ckpt.weights["model.layers.0.input_layernorm.weight"])
    np.testing.assert_allclose(np.asarray(t["blk.1.ffn_norm.weight"].data),
                               1.0 + ckpt.weights["model.layers.1.post_attention_layernorm.weight"])
    np.testing.assert_allclose(np.asarray(t["output_norm.weight"].data),
                               1.0 + ckpt.weights["model.norm.weight"])
    np.testing.assert_array_equal(np.asarray(t["blk.0.attn_q.weight"].data),
                                  ckpt.weights["model.layers.0.self_attn.q_proj.weight"])
    # Embeddings unscaled (llama.cpp's gemma graph multiplies by sqrt(hidden) itself) and tied.
    np.testing.assert_array_equal(np.asarray(t["token_embd.weight"].data),
                                  ckpt.weights["model.embed_tokens.weight"])
    assert "output.weight" not in t
    assert len(t) == 2 + 9 * 2


@pytest.mark.parametrize("arch", ["Gemma2ForCausalLM", "Gemma3ForCausalLM"])
def test_gemma2_and_gemma3_logits_match_reference(arch: str, tmp_path: Path) -> None:
    # A window shorter than the prompt so that the sliding layers really slide.
    dims = dict(TINY, num_hidden_layers=3, sliding_window=8)
    c = Ckpt(tmp_path / "ck", arch, dims)
    out = tmp_path / "m.gguf"
    convert_checkpoint(c.dir, out, "F32")
    toks, got = llama_logits(out)
    assert len(toks) > 8
    ref = gemma_logits(c.cfg, c.weights, toks)
    assert np.abs(got - ref).max() < 1e-3
    assert read_model_info(out).architecture == {"Gemma2ForCausalLM": "gemma2",
                                                 "Gemma3ForCausalLM": "gemma3"}[arch]


def test_bf16_checkpoint_sharded_to_f32_bf16_and_f16(tmp_path: Path) -> None:
    c = Ckpt(tmp_path / "ck", dtype="bfloat16", shards=3)  # c.weights: the BF16-rounded values
    assert (c.dir / "model.safetensors.index.json").is_file()
    q = "model.layers.1.self_attn.q_proj.weight"
    for kind in ("F32", "BF16", "F16"):
        out = tmp_path / f"m-{kind}.gguf"
        convert_checkpoint(c.dir, out, kind)
        assert read_model_info(out).quantization == kind
        t = {x.name: x for x in gguf.GGUFReader(out).tensors}["blk.1.attn_q.weight"]
        stored = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(c.weights[q].shape)
        if kind == "F16":
            np.testing.assert_allclose(stored, c.weights[q], rtol=1e-3, atol=1e-7)
        else:  # F32 and BF16 hold the BF16 source values exactly
            np.testing.assert_array_equal(stored, c.weights[q])
        toks, got = llama_logits(out)
        ref = gemma_logits(c.cfg, c.weights, toks)
        # F32 weights: the interop bound. BF16/F16 weights: llama.cpp also rounds activations to
        # that type inside the matmuls, which alone costs a few 1e-3 here.
        assert np.abs(got - ref).max() < (1e-3 if kind == "F32" else 1e-2), kind


def test_q8_0_close_to_reference_and_to_llama_cpp_q8_0(ckpt: Ckpt, f32_gguf: Path,
                                                       tmp_path: Path) -> None:
    ours = tmp_path / "ours-q8.gguf"
    convert_checkpoint(ckpt.dir, ours, "Q8_0")
    theirs = tmp_path / "llama-q8.gguf"
    quantize_gguf(f32_gguf, theirs, "Q8_0")
    toks, got = llama_logits(ours)
    ref = gemma_logits(ckpt.cfg, ckpt.weights, toks)
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()
    # The same tensor types and bytes as llama.cpp's own Q8_0 of the same weights.
    a = {t.name: t for t in gguf.GGUFReader(ours).tensors}
    b = {t.name: t for t in gguf.GGUFReader(theirs).tensors}
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].tensor_type == b[name].tensor_type, name
        assert np.asarray(a[name].data).tobytes() == np.asarray(b[name].data).tobytes(), name
    assert ours.stat().st_size == theirs.stat().st_size


# --- metadata round trip and template detection ----------------------------------------------

def test_metadata_round_trip_and_codegemma_detection(ckpt: Ckpt, f32_gguf: Path) -> None:
    info = read_model_info(f32_gguf)
    assert info.architecture == "gemma"
    assert info.context_length == 512
    assert info.quantization == "F32"
    assert info.name == "codegemma" or info.name  # from _name_or_path or the directory
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(ckpt.dir / "tokenizer.model"))
    assert info.tokens == [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    ids = {t: sp.piece_to_id(t) for t in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
                                          "<|file_separator|>", "<end_of_turn>")}
    assert info.special_ids["fim_pre"] == ids["<|fim_prefix|>"]
    assert info.special_ids["fim_suf"] == ids["<|fim_suffix|>"]
    assert info.special_ids["fim_mid"] == ids["<|fim_middle|>"]
    assert info.special_ids["fim_sep"] == ids["<|file_separator|>"]
    assert info.special_ids["eot"] == ids["<end_of_turn>"]
    assert (info.special_ids["bos"], info.special_ids["eos"], info.special_ids["pad"]) == (2, 1, 0)
    assert info.add_bos
    assert info.token_types[ids["<|fim_prefix|>"]] == TOKEN_TYPE_USER_DEFINED
    assert info.token_types[ids["<end_of_turn>"]] == TOKEN_TYPE_CONTROL
    assert info.token_types[2] == TOKEN_TYPE_CONTROL  # <bos>
    det = detect_template(info)
    assert det.template.name == "codegemma"
    assert "metadata FIM ids agree" in det.reason

    r = gguf.GGUFReader(f32_gguf)
    f = lambda key: r.fields[key].contents()  # noqa: E731
    assert f("gemma.embedding_length") == 64
    assert f("gemma.block_count") == 2
    assert f("gemma.feed_forward_length") == 128
    assert f("gemma.attention.head_count") == 4
    assert f("gemma.attention.head_count_kv") == 1
    assert f("gemma.attention.key_length") == 32
    assert f("gemma.attention.value_length") == 32
    assert f("gemma.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    assert f("gemma.rope.freq_base") == 10000.0
    assert f("tokenizer.ggml.model") == "llama"
    assert f("tokenizer.ggml.add_space_prefix") is False


def test_llama_cpp_tokenizes_like_sentencepiece(ckpt: Ckpt, f32_gguf: Path) -> None:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(ckpt.dir / "tokenizer.model"))
    llm = load(f32_gguf)
    try:
        for text in (TEXT, "  x = {'a': [1, 22, 333]}\n\n\tprint(x)  # é ü 漢字",
                     "<|fim_prefix|>def f(<|fim_suffix|>)<|fim_middle|>"):
            assert llm.tokenize(text.encode(), add_bos=False, special=False) == sp.encode(text)
    finally:
        llm.close()


def test_tokenizer_json_only_checkpoint_tokenizes_the_same(ckpt: Ckpt, f32_gguf: Path,
                                                           tmp_path: Path) -> None:
    """A checkpoint with only tokenizer.json (HF BPE, byte fallback) gives the same vocabulary
    and tokenization as the one with tokenizer.model."""
    import shutil

    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(ckpt.dir / "tokenizer.model"))
    d = tmp_path / "json-ck"
    shutil.copytree(ckpt.dir, d)
    (d / "tokenizer.model").unlink()
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    vocab = {p: i for i, p in enumerate(pieces)}
    # Merges as transformers' SentencePiece→BPE converter makes them: every split of a piece
    # into two vocabulary pieces, ordered by the piece's score (then by the left part's id).
    merges = []
    for p in sorted(pieces, key=lambda p: -sp.get_score(vocab[p])):
        if sp.is_control(vocab[p]) or sp.is_unknown(vocab[p]) or sp.is_byte(vocab[p]):
            continue
        splits = [(vocab[p[:k]], p[:k], p[k:]) for k in range(1, len(p))
                  if p[:k] in vocab and p[k:] in vocab]
        merges += [f"{a} {b}" for _, a, b in sorted(splits)]
    user = ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|file_separator|>",
            "<start_of_turn>", "<end_of_turn>"]
    added = [{"id": vocab[t], "content": t, "special": t in ("<pad>", "<eos>", "<bos>", "<unk>",
                                                              "<start_of_turn>", "<end_of_turn>")}
             for t in ["<pad>", "<eos>", "<bos>", "<unk>", *user]]
    (d / "tokenizer.json").write_text(json.dumps({
        "version": "1.0", "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        "pre_tokenizer": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "byte_fallback": True,
                  "fuse_unk": True, "vocab": vocab, "merges": merges},
        "decoder": {"type": "Sequence", "decoders": []}}))
    out = tmp_path / "json.gguf"
    convert_checkpoint(d, out, "F32")
    a, b = read_model_info(out), read_model_info(f32_gguf)
    assert a.tokens == b.tokens
    assert a.token_types == b.token_types
    assert a.special_ids == b.special_ids
    llm = load(out)
    try:
        for text in (TEXT, "result = {k: v for k, v in data.items() if v}\n"):
            assert llm.tokenize(text.encode(), add_bos=False, special=False) == sp.encode(text)
    finally:
        llm.close()


# --- llama.cpp quantization ------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ckpt, Path]:
    c = Ckpt(tmp_path_factory.mktemp("small"), dims=SMALL)
    out = tmp_path_factory.mktemp("small-out") / "small-f32.gguf"
    convert_checkpoint(c.dir, out, "F32")
    return c, out


@pytest.mark.parametrize("qtype", ["Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"])
def test_quantized_types_load_and_stay_close(small: tuple[Ckpt, Path], qtype: str,
                                             tmp_path: Path) -> None:
    c, f32 = small
    out = tmp_path / f"m-{qtype}.gguf"
    res = quantize_gguf(f32, out, qtype)
    info = read_model_info(out)
    assert info.quantization == qtype
    assert res.size_bytes == out.stat().st_size < f32.stat().st_size / 4
    toks, got = llama_logits(out)
    ref = gemma_logits(c.cfg, c.weights, toks)
    # Quantization noise, not a broken model: logits stay strongly correlated with the reference.
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.98


def test_quantized_model_generates_in_the_daemon(small: tuple[Ckpt, Path],
                                                 tmp_path: Path) -> None:
    _, f32 = small
    out = tmp_path / "m-Q4_K_M.gguf"
    quantize_gguf(f32, out, "Q4_K_M")
    config = Config()
    config.engine.model = str(out)
    config.engine.context_size = 256
    with ModelSession(config) as s:
        assert s.template.name == "codegemma"
        c = complete_text(s, "def add(a, b):\n    return ", "\n", max_tokens=8, single_line=False)
        # The greedy generation ran (its own stats: the shown candidate may be another).
        assert c.stats.n_generated > 0 or c.stats.stop_reason is StopReason.STOP_TOKEN
        assert c.prompt.tokens[0] == s.info.special_ids["bos"]
        assert s.info.special_ids["fim_pre"] in c.prompt.tokens


def test_importance_matrix_is_read_and_changes_the_result(small: tuple[Ckpt, Path],
                                                          tmp_path: Path) -> None:
    c, f32 = small
    info = read_model_info(f32)
    # An imatrix in llama-imatrix's GGUF layout, skewed so that it must matter.
    w = gguf.GGUFWriter(tmp_path / "imatrix.gguf", "imatrix")
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", ["synthetic"])
    w.add_uint32("imatrix.chunk_count", 4)
    w.add_uint32("imatrix.chunk_size", 512)
    rng = np.random.default_rng(1)
    r = gguf.GGUFReader(f32)
    for t in r.tensors:
        if len(t.shape) == 2 and t.name != "token_embd.weight":
            cols = int(t.shape[0])
            w.add_tensor(f"{t.name}.in_sum2",
                         (rng.random((1, cols)) ** 8 * 1000).astype(np.float32))
            w.add_tensor(f"{t.name}.counts", np.array([[10.0]], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    im = read_imatrix(tmp_path / "imatrix.gguf")
    assert "blk.0.attn_q.weight" in im and im["blk.0.attn_q.weight"].shape == (256,)
    plain, weighted = tmp_path / "plain.gguf", tmp_path / "weighted.gguf"
    quantize_gguf(f32, plain, "IQ4_XS")
    quantize_gguf(f32, weighted, "IQ4_XS", imatrix=tmp_path / "imatrix.gguf")
    a = {t.name: np.asarray(t.data).tobytes() for t in gguf.GGUFReader(plain).tensors}
    b = {t.name: np.asarray(t.data).tobytes() for t in gguf.GGUFReader(weighted).tensors}
    assert a["blk.0.attn_q.weight"] != b["blk.0.attn_q.weight"]
    # And a type that needs one works with it.
    iq2 = tmp_path / "iq2.gguf"
    quantize_gguf(f32, iq2, "IQ2_XXS", imatrix=tmp_path / "imatrix.gguf")
    assert read_model_info(iq2).quantization == "IQ2_XXS"
    assert info.n_params == read_model_info(iq2).n_params


# --- the whole pipeline with a report --------------------------------------------------------

def test_pipeline_report_and_perplexity_against_reference(small: tuple[Ckpt, Path],
                                                          tmp_path: Path) -> None:
    c, _ = small
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.py").write_text("\n".join(f"def f{i}(x):\n    return x * {i} + {i * i}\n"
                                           for i in range(60)))
    (corpus / "blob.bin").write_bytes(b"\0\1\2" * 100)  # skipped: binary
    job = QuantizeJob(source=c.dir, out=tmp_path / "m-{type}.gguf",
                      types=["F32", "Q8_0", "q4_k_m"], eval_corpus=corpus,
                      report_path=tmp_path / "report.json", eval_ctx=64, eval_chunks=3,
                      eval_gen_tokens=8)
    report = run(job)
    assert [r.type for r in report.rows] == ["F32", "Q8_0", "Q4_K_M"]
    assert [r.produced_by for r in report.rows] == ["converter", "converter", "llama.cpp"]
    sizes = [r.size_bytes for r in report.rows]
    assert sizes[0] > sizes[1] > sizes[2]
    bpw = [r.bits_per_weight for r in report.rows]
    assert bpw[0] == pytest.approx(32.0) and 8.5 < bpw[1] < 8.6  # Q8_0 + F32 norms
    for r in report.rows:
        assert r.eval is not None and r.eval.chunks == 3 and r.eval.scored_tokens == 3 * 32
        assert r.eval.prompt_tokens_per_s > 0 and r.eval.generation_tokens_per_s > 0
        assert r.eval.generated_tokens == 8
    data = json.loads((tmp_path / "report.json").read_text())
    assert [d["type"] for d in data["results"]] == ["F32", "Q8_0", "Q4_K_M"]
    table = format_table(report)
    assert "Q4_K_M" in table and "PPL" in table
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]

    # The F32 perplexity equals one computed from the numpy reference on the same chunks.
    f32 = tmp_path / "m-F32.gguf"
    llm = load(f32, 64)
    text = (corpus / "a.py").read_text()
    toks = llm.tokenize(text.encode(), add_bos=False, special=False)
    llm.close()
    nll, n = 0.0, 0
    for k in range(3):
        chunk = [2] + toks[k * 63:(k + 1) * 63]
        logits = gemma_logits(c.cfg, c.weights, chunk)
        for i in range(32, 64):
            row = logits[i - 1]
            nll += np.log(np.exp(row - row.max()).sum()) + row.max() - row[chunk[i]]
            n += 1
    assert report.rows[0].eval.perplexity == pytest.approx(np.exp(nll / n), rel=1e-3)


def test_requantize_a_gguf_source(small: tuple[Ckpt, Path], tmp_path: Path) -> None:
    _, f32 = small
    report = run(QuantizeJob(source=f32, out=tmp_path / "r.gguf", types=["Q5_K_M", "Q8_0"]))
    assert [r.produced_by for r in report.rows] == ["llama.cpp", "llama.cpp"]
    assert read_model_info(tmp_path / "r-Q5_K_M.gguf").quantization == "Q5_K_M"
    q8 = tmp_path / "r-Q8_0.gguf"
    again = run(QuantizeJob(source=q8, out=tmp_path / "again.gguf", types=["Q4_0"]))
    assert again.rows[0].notes and "requantized from Q8_0" in again.rows[0].notes[0]


def test_output_names() -> None:
    assert output_paths(Path("m.gguf"), ["Q4_K_M"]) == {"Q4_K_M": Path("m.gguf")}
    assert output_paths(Path("d/m.gguf"), ["Q8_0", "Q4_0"]) == {
        "Q8_0": Path("d/m-Q8_0.gguf"), "Q4_0": Path("d/m-Q4_0.gguf")}
    assert output_paths(Path("x-{type}.bin"), ["F16"]) == {"F16": Path("x-F16.bin")}


# --- readers and registries ------------------------------------------------------------------

def test_sentencepiece_reader_agrees_with_sentencepiece(ckpt: Ckpt) -> None:
    import sentencepiece as spm

    from quantize.sentencepiece_model import (BYTE, CONTROL, NORMAL, UNKNOWN, USER_DEFINED,
                                              read_sentencepiece)

    path = ckpt.dir / "tokenizer.model"
    sp = spm.SentencePieceProcessor(model_file=str(path))
    m = read_sentencepiece(path)
    n = sp.get_piece_size()
    assert m.pieces == [sp.id_to_piece(i) for i in range(n)]
    assert m.scores == [pytest.approx(sp.get_score(i)) for i in range(n)]
    for i in range(n):
        expected = (UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i) else
                    BYTE if sp.is_byte(i) else
                    USER_DEFINED if sp.id_to_piece(i) in ("<|fim_prefix|>", "<|fim_suffix|>",
                                                          "<|fim_middle|>", "<|file_separator|>",
                                                          "<start_of_turn>", "<end_of_turn>")
                    else NORMAL)
        assert m.types[i] == expected, (i, sp.id_to_piece(i))
    assert (m.unk_id, m.bos_id, m.eos_id, m.pad_id) == (3, 2, 1, 0)
    assert m.model_type == "bpe" and m.byte_fallback
    assert m.add_dummy_prefix is False and m.remove_extra_whitespaces is False


def test_safetensors_reader_agrees_with_safetensors(ckpt: Ckpt) -> None:
    from safetensors.numpy import load_file

    from quantize.safetensors_io import SafetensorsCheckpoint

    expected = load_file(str(ckpt.dir / "model.safetensors"))
    with SafetensorsCheckpoint(ckpt.dir) as c:
        assert c.tensors.keys() == expected.keys()
        for name, arr in expected.items():
            np.testing.assert_array_equal(c.array(c.tensors[name]), arr)
        emb = c.tensors["model.embed_tokens.weight"]
        np.testing.assert_array_equal(c.rows(emb, 5, 9), expected["model.embed_tokens.weight"][5:9])


def test_tensor_tables_only_name_tensors_llama_cpp_knows() -> None:
    from quantize.hf_config import ARCHITECTURES
    from quantize.tensor_map import GLOBAL_TENSORS, LAYER_TENSORS, SHAPES

    for spec in ARCHITECTURES.values():
        known = set(gguf.MODEL_TENSORS[spec.gguf_arch])
        used = set(LAYER_TENSORS[spec.gguf_arch].values()) | {
            t for t in GLOBAL_TENSORS.values() if t is not gguf.MODEL_TENSOR.OUTPUT}
        assert used <= known, (spec.hf_name, used - known)
        assert all(t in SHAPES for t in used)
