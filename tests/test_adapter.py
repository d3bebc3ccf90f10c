"""LoRA adapters: torch LoRA → llama.cpp LoRA GGUF (model/export_adapter.py), checked against
torch, and the daemon loading it (engine.adapter, lsp_server/models/adapter.py).

- the export's name table, shapes and metadata, and what it refuses;
- a tiny random Gemma 3 stored as F32 plus an F32 adapter in llama.cpp equals torch's merged
  model within the tiny-model tolerance of tests/test_model_gemma3.py (3e-3): A/B orientation,
  scale and names are exact, not just plausible;
- the embedded 270M (Q4_K_M) with a random rank-4 float16 adapter in llama.cpp against torch's
  merged model, within the Q4_K statistical tolerance of tests/test_model_gemma3.py, while the
  adapter moves llama.cpp's logits far beyond it (an ignored adapter fails the test);
- the daemon: header checks with clear errors, the adapter's template chosen under "auto",
  `codefill models --adapter`, `complete --adapter`, and the language server loading, refusing
  and recovering through the engine.adapter setting.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from lsp_server.completion.completer import complete_text
from lsp_server.config import Config
from lsp_server.errors import ModelError
from lsp_server.models import adapter as adapter_mod
from lsp_server.models.adapter import open_adapter, read_adapter_info, resolve_adapter
from lsp_server.models.gguf_header import read_header
from lsp_server.models.gguf_info import read_model_info
from model.export_adapter import (AdapterExportError, gguf_tensor_name, main as export_main,
                                  write_adapter)
from tests.test_cli import assert_one_line_error, codefill

ATTN = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def random_pairs(base: Path, modules: tuple[str, ...] = ATTN, r: int = 4, std: float = 0.01,
                 layers: range | None = None, seed: int = 0
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random (A, B) for ``modules`` of every layer of the GGUF ``base`` (shapes from it)."""
    dims = {t.name: t.dims for t in read_header(base).tensors}
    n_layers = 1 + max(int(n.split(".")[1]) for n in dims if n.startswith("blk."))
    rng = np.random.default_rng(seed)
    out = {}
    for i in layers if layers is not None else range(n_layers):
        for m in modules:
            name = f"model.layers.{i}.{m}"
            in_f, out_f = dims[gguf_tensor_name(name)][:2]
            out[name] = (rng.normal(0, std, (r, in_f)).astype(np.float32),
                         rng.normal(0, std, (out_f, r)).astype(np.float32))
    return out


def write_raw_adapter(path: Path, *, arch: str = "gemma3", meta: dict | None = None,
                      tensors: dict[str, np.ndarray] | None = None,
                      general_type: str = "adapter") -> Path:
    """An adapter GGUF with exactly the given metadata and tensors (what other tools write)."""
    w = gguf.GGUFWriter(path, arch)
    w.add_type(general_type)
    if general_type == "adapter":
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 8.0)
    for key, value in (meta or {}).items():
        if isinstance(value, str):
            w.add_string(key, value)
        else:
            w.add_uint64(key, value)
    for name, value in (tensors or {}).items():
        w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# -- export: names, shapes, metadata -----------------------------------------------------------

def test_module_names_map_through_the_quantizers_table_and_others_are_refused() -> None:
    expect = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
              "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for hf, gg in expect.items():
        assert gguf_tensor_name(f"model.layers.17.{hf}") == f"blk.17.{gg}.weight"
    assert gguf_tensor_name("module.model.layers.0.self_attn.q_proj") == "blk.0.attn_q.weight"
    with pytest.raises(AdapterExportError, match="'model.embed_tokens'.*aborts"):
        gguf_tensor_name("model.embed_tokens")
    with pytest.raises(AdapterExportError, match="'model.layers.2.self_attn.q_norm'.*norms"):
        gguf_tensor_name("model.layers.2.self_attn.q_norm")
    with pytest.raises(AdapterExportError, match="unknown module 'model.layers.0.attn.qkv'"):
        gguf_tensor_name("model.layers.0.attn.qkv")
    with pytest.raises(AdapterExportError, match="'lm_head'.*aborts"):
        gguf_tensor_name("lm_head")
    with pytest.raises(AdapterExportError, match="'model.norm'.*norms"):
        gguf_tensor_name("model.norm")
    with pytest.raises(AdapterExportError, match="unknown module 'encoder.layers.0.q_proj'"):
        gguf_tensor_name("encoder.layers.0.q_proj")


def test_export_writes_llama_cpp_layout_and_our_metadata(embedded_model: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "a.gguf"
    pairs = random_pairs(embedded_model, ATTN + MLP, r=8)
    rep = write_adapter(out, pairs, alpha=16.0, base=embedded_model, tokens_seen=123_456,
                        dtype="f16")
    h = read_header(out)
    m = h.metadata
    assert m["general.type"] == "adapter" and m["general.architecture"] == "gemma3"
    assert m["adapter.type"] == "lora" and m["adapter.lora.alpha"] == 16.0
    assert m["codefill.fim.template"] == "gemma3-fim"
    assert m["codefill.adapter.base.name"] == "Gemma 3 270m"
    assert m["codefill.adapter.base.size"] == embedded_model.stat().st_size
    assert m["codefill.adapter.tokens_seen"] == 123_456 and m["codefill.adapter.rank"] == 8
    t = {x.name: x for x in h.tensors}
    assert len(t) == 2 * 18 * 7 == 2 * rep.n_pairs
    assert not any("token_embd" in n or "norm" in n for n in t)
    # ggml dims: lora_a (in, r), lora_b (r, out) — llama-adapter.cpp's checks.
    assert t["blk.0.attn_q.weight.lora_a"].dims == (640, 8)
    assert t["blk.0.attn_q.weight.lora_b"].dims == (8, 1024)
    assert t["blk.5.attn_output.weight.lora_a"].dims == (1024, 8)
    assert t["blk.17.ffn_down.weight.lora_b"].dims == (8, 640)
    assert {x.type_name for x in h.tensors} == {"F16"}
    # Measured sizes: rank 8, float16, q/k/v/o 1.48 MB, with the MLP 3.81 MB.
    assert rep.size_bytes == out.stat().st_size < 4_000_000
    assert rep.targets == ("attn_k", "attn_output", "attn_q", "attn_v", "ffn_down", "ffn_gate",
                           "ffn_up")
    a = read_adapter_info(out)
    assert (a.rank, a.template, a.tokens_seen, a.base_name) == (8, "gemma3-fim", 123_456,
                                                                 "Gemma 3 270m")
    assert len(a.pairs) == 126
    f32 = write_adapter(tmp_path / "b.gguf", random_pairs(embedded_model, ATTN, r=8),
                        alpha=16.0, base=embedded_model, dtype="f32")
    assert {x.type_name for x in read_header(f32.path).tensors} == {"F32"}


def test_export_refuses_what_llama_cpp_cannot_apply(embedded_model: Path,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "a.gguf"
    out.write_bytes(b"previous")
    good = random_pairs(embedded_model, ("self_attn.q_proj",), layers=range(2))
    a, b = good["model.layers.0.self_attn.q_proj"]
    cases = [
        ({"model.layers.0.self_attn.q_proj": (a.T, b)}, {}, "do not make a rank-r update"),
        ({**good, "model.layers.1.self_attn.q_proj": (a[:2], b[:, :2])}, {}, "different ranks"),
        ({"model.layers.18.self_attn.q_proj": (a, b)}, {}, "'blk.18.attn_q.weight'"),
        ({"model.embed_tokens": (a, b)}, {}, "aborts"),
        ({"model.layers.0.self_attn.q_proj": (a * np.nan, b)}, {}, "NaN"),
        ({"model.layers.0.self_attn.q_proj": (a * 1e8, b)}, {}, "overflows f16"),
        (good, {"template": "fim-of-my-own"}, "unknown FIM template"),
        ({}, {}, "no LoRA pairs"),
    ]
    for pairs, kw, msg in cases:
        with pytest.raises(AdapterExportError, match=msg):
            write_adapter(out, pairs, alpha=8.0, base=embedded_model, **kw)
    with pytest.raises(AdapterExportError, match="not a model"):
        write_adapter(out, good, alpha=8.0, base=write_adapter(
            tmp_path / "x.gguf", good, alpha=8.0, base=embedded_model).path)
    assert out.read_bytes() == b"previous"  # never half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gguf", "x.gguf"]  # no temp files


# -- the daemon's header checks ---------------------------------------------------------------

def test_adapter_checks_refuse_with_the_value_and_a_fix(embedded_model: Path,
                                                        tmp_path: Path) -> None:
    info = read_model_info(embedded_model)
    good = write_adapter(tmp_path / "good.gguf", random_pairs(embedded_model),
                         alpha=8.0, base=embedded_model).path
    a = open_adapter(str(good), info)
    assert a is not None and a.template == "gemma3-fim" and a.rank == 4
    assert open_adapter("", info) is None and open_adapter("  ", info) is None

    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(good.read_bytes()[:-1000])
    cut_header = tmp_path / "cut-header.gguf"
    cut_header.write_bytes(good.read_bytes()[:300])
    text = tmp_path / "notes.gguf"
    text.write_text("not an adapter")
    q = random_pairs(embedded_model, ("self_attn.q_proj",), layers=range(1))
    qa, qb = q["model.layers.0.self_attn.q_proj"]
    embd = np.zeros((8, 262144), np.float32)  # ggml (vocab, r): llama.cpp's token_embd layout
    cases = [
        (str(tmp_path / "missing.gguf"), "adapter file not found"),
        (str(tmp_path), "is a directory"),
        (str(text), "not a GGUF adapter file"),
        (str(truncated), "truncated adapter file"),
        (str(cut_header), "truncated or corrupted adapter file"),
        (str(embedded_model), "is a model, not a LoRA adapter"),
        (str(write_raw_adapter(tmp_path / "llama.gguf", arch="llama")),
         "architecture 'llama', the model"),
        (str(write_raw_adapter(tmp_path / "other-base.gguf", meta={
            "codefill.adapter.base.name": "Gemma 3 1b"})), "base model 'Gemma 3 1b'"),
        (str(write_raw_adapter(tmp_path / "other-size.gguf", meta={
            "codefill.adapter.base.name": "Gemma 3 270m", "codefill.adapter.base.size": 12345})),
         "12345-byte"),
        (str(write_raw_adapter(tmp_path / "embd.gguf", tensors={
            "token_embd.weight.lora_a": embd, "token_embd.weight.lora_b": np.zeros(
                (640, 8), np.float32)})), "token_embd.weight"),
        (str(write_raw_adapter(tmp_path / "shape.gguf", tensors={
            "blk.0.attn_k.weight.lora_a": qa, "blk.0.attn_k.weight.lora_b": qb})),
         "do not fit the model's [640, 256]"),
        (str(write_raw_adapter(tmp_path / "half.gguf", tensors={
            "blk.0.attn_q.weight.lora_a": qa})), "no blk.0.attn_q.weight.lora_b"),
        (str(write_raw_adapter(tmp_path / "nobase.gguf", tensors={
            "blk.40.attn_q.weight.lora_a": qa, "blk.40.attn_q.weight.lora_b": qb})),
         "'blk.40.attn_q.weight', which the model"),
        (str(write_raw_adapter(tmp_path / "odd.gguf", tensors={"rope_freqs.weight": qa})),
         "'rope_freqs.weight'"),
    ]
    for value, msg in cases:
        with pytest.raises(ModelError) as exc:
            open_adapter(value, info)
        assert msg in str(exc.value), (value, str(exc.value))
        assert exc.value.fix, value
    # An adapter without our metadata (another tool's) is checked by shape only, and norms
    # (which llama.cpp skips) are allowed.
    other = write_raw_adapter(tmp_path / "plain.gguf", tensors={
        "blk.0.attn_q.weight.lora_a": qa, "blk.0.attn_q.weight.lora_b": qb,
        "blk.0.attn_norm.weight": np.ones(640, np.float32)})
    o = open_adapter(str(other), info)
    assert o is not None and o.template is None and o.base_name is None and len(o.pairs) == 1


def test_embedded_keyword_resolves_to_the_package_file(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = adapter_mod.EMBEDDED_ADAPTER
    assert shipped.parent.name == "adapters" and shipped.parent.parent.name == "models"
    assert shipped.is_file() and resolve_adapter(" embedded ") == shipped
    assert resolve_adapter(" ~/x.gguf ") == Path("~/x.gguf").expanduser()
    assert Config().engine.adapter == ""  # opt-in, not the default (docs/default-model.md)
    # A package built without the file says so, and how to do without it.
    monkeypatch.setattr(adapter_mod, "EMBEDDED_ADAPTER", tmp_path / "gemma3-270m-fim.gguf")
    with pytest.raises(ModelError, match="ships no FIM adapter") as exc:
        resolve_adapter("embedded")
    assert "engine.adapter" in exc.value.fix


SHIPPED_FROM = Path(__file__).resolve().parent.parent / "model" / "checkpoints" / \
    "gemma3-270m-fim-editor" / "step-000100.pt"
"""The committed checkpoint the shipped adapter is exported from (adapters/README.md)."""


def test_shipped_adapter_is_the_export_of_the_committed_checkpoint(embedded_model: Path,
                                                                   tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="model/ needs torch: scripts/setup dev")
    out = tmp_path / "again.gguf"
    assert export_main([str(SHIPPED_FROM), "--out", str(out)]) == 0
    shipped = adapter_mod.EMBEDDED_ADAPTER
    assert out.read_bytes() == shipped.read_bytes(), "re-export the shipped adapter " \
        "(lsp_server/models/adapters/README.md)"
    a = open_adapter(str(shipped), read_model_info(embedded_model))
    assert a is not None and a.template == "gemma3-fim" and a.tokens_seen == 185_890
    assert a.base_size == embedded_model.stat().st_size and len(a.pairs) == 72


def test_adapter_template_is_chosen_under_auto_only(embedded_model: Path,
                                                    tmp_path: Path) -> None:
    from lsp_server.completion.session import choose_session_template, stop_ids_for

    info = read_model_info(embedded_model)
    a = open_adapter(str(write_adapter(tmp_path / "fim.gguf", random_pairs(embedded_model),
                                       alpha=8.0, base=embedded_model).path), info)
    det = choose_session_template(info, a, "auto")
    assert det.template.name == "gemma3-fim"
    assert det.reason == "adapter fim.gguf names gemma3-fim"
    assert choose_session_template(info, a, "plain").reason == "chosen explicitly"
    assert choose_session_template(info, None, "auto").template.name == "plain"
    stops = stop_ids_for(info, det)
    assert info.token_id("<eos>") in stops
    bare = open_adapter(str(write_adapter(tmp_path / "bare.gguf", random_pairs(embedded_model),
                                          alpha=8.0, base=embedded_model, template=None).path),
                        info)
    assert choose_session_template(info, bare, "auto").template.name == "plain"
    odd = read_adapter_info(write_raw_adapter(tmp_path / "odd.gguf", meta={
        "codefill.fim.template": "fim-2030"}))
    with pytest.raises(ModelError, match="'fim-2030', which this codefill does not know"):
        choose_session_template(info, odd, "auto")


def test_cli_models_with_adapter(embedded_model: Path, tmp_path: Path) -> None:
    good = write_adapter(tmp_path / "fim.gguf", random_pairs(embedded_model), alpha=8.0,
                         base=embedded_model, tokens_seen=4096).path
    proc = codefill("models", "--model", str(embedded_model), "--adapter", str(good), "--json")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert row["template"] == "gemma3-fim" and row["detected_by"] == "adapter fim.gguf names " \
                                                                    "gemma3-fim"
    assert row["adapter"]["rank"] == 4 and row["adapter"]["tokens_seen"] == 4096
    assert row["adapter"]["base"] == {"name": "Gemma 3 270m",
                                      "size_bytes": embedded_model.stat().st_size}
    table = codefill("models", "--adapter", str(good))  # the embedded model is the base
    assert table.returncode == 0, table.stderr
    assert "template 'gemma3-fim' (adapter fim.gguf names gemma3-fim)" in table.stdout
    assert "rank 4, alpha 8, 72 tensors" in table.stdout
    assert_one_line_error(codefill("models", "--adapter", str(embedded_model)),
                          "not a LoRA adapter")
    assert_one_line_error(codefill("models", "--adapter", str(tmp_path / "nope.gguf")),
                          "adapter file not found", "nope.gguf")
    proc = codefill("models", "--adapter", "embedded")
    assert proc.returncode == 0, proc.stderr
    assert "gemma3-fim" in proc.stdout and "185,890" in proc.stdout, proc.stdout


# -- llama.cpp against torch ------------------------------------------------------------------

def _torch():
    torch = pytest.importorskip("torch", reason="model/ needs torch: scripts/setup dev")
    torch.set_num_threads(1)
    return torch


def _randomize_lora(model, std: float, seed: int = 0) -> None:  # noqa: ANN001
    torch = _torch()
    from model.lora import LoRALinear

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, LoRALinear):
                mod.lora_A.normal_(0.0, std, generator=g)
                mod.lora_B.normal_(0.0, std, generator=g)


def _merge_in_place(model) -> None:  # noqa: ANN001
    """Replace every LoRALinear by a plain Linear holding the merged weight (model/lora.py)."""
    torch = _torch()
    from model.lora import LoRALinear

    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                out_f, in_f = child.base.weight.shape
                plain = torch.nn.Linear(in_f, out_f, bias=False)
                with torch.no_grad():
                    plain.weight.copy_(child.merged_weight())
                setattr(module, name, plain)


def _llama_logits(model: Path, ids: list[int] | str, lora: Path | None = None, n: int = 64
                  ) -> tuple[list[int], np.ndarray]:
    from lsp_server.engine.llama_loader import _llama_factory

    f32 = int(gguf.GGMLQuantizationType.F32)
    extra = {"lora_path": str(lora)} if lora else {}
    # No extra buffers: llama.cpp's AMX path crashes on Q4_K on some CPUs (llama_engine.py).
    llm = _llama_factory(model_path=str(model), n_ctx=256, logits_all=True, n_threads=2,
                         use_extra_bufts=False, type_k=f32, type_v=f32, **extra)
    try:
        if isinstance(ids, str):
            ids = llm.tokenize(ids.encode(), add_bos=True, special=False)[:n]
        llm.eval(ids)
        return ids, np.array(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()


def test_tiny_gemma3_adapter_in_llama_cpp_equals_torch_merged(tmp_path: Path) -> None:
    """Everything in float32 (tiny model stored as F32, F32 adapter): llama.cpp with the adapter
    equals torch's merged model within the tiny model's tolerance (3e-3: llama.cpp's fp16 GELU,
    tests/test_model_gemma3.py), while the adapter moves them by ~800× that (max 2.3). Also the
    `python -m model.export_adapter` entry on a trainer_state.pt-shaped checkpoint."""
    torch = _torch()
    pytest.importorskip("sentencepiece")
    pytest.importorskip("safetensors")
    from lsp_server.cli.main import main as cli
    from model.checkpoint import save_pretrained
    from model.lora import apply_lora
    from model.tokenizer import train_tokenizer
    from tests.test_model_gemma3 import CODE, STDLIB, TINY, random_model

    tok_dir = tmp_path / "tok"
    train_tokenizer([(STDLIB / n).read_text(encoding="utf-8") for n in ("bisect.py", "heapq.py")],
                    tok_dir, vocab_size=400)
    from model.tokenizer import SentencePieceTokenizer

    tok = SentencePieceTokenizer.from_checkpoint(tok_dir)
    model = random_model(TINY.with_vocab(tok.vocab_size))
    base = tmp_path / "tiny-f32.gguf"
    ck = save_pretrained(model, tmp_path / "ck", tokenizer_dir=tok_dir, name="tiny-gemma3")
    assert cli(["quantize", str(ck), "--out", str(base), "--type", "F32"]) == 0
    ids = [tok.bos_id] + tok.tokenize(CODE)

    apply_lora(model, r=4, alpha=8.0)
    _randomize_lora(model, std=0.1)
    state = tmp_path / "trainer_state.pt"
    torch.save({"model": model.state_dict(), "config": {"lora_alpha": 8.0, "lora_rank": 4},
                "history": [{"step": 1, "tokens": 777}]}, state)
    out = tmp_path / "tiny-lora.gguf"
    assert export_main([str(state), "--out", str(out), "--base", str(base), "--dtype",
                        "f32"]) == 0
    a = read_adapter_info(out)
    assert (a.alpha, a.rank, a.tokens_seen, a.base_name) == (8.0, 4, 777, "tiny-gemma3")
    assert len(a.pairs) == 4 * 7
    # model/train_gemma3.py's step-N.pt: LoRA tensors only, template and base size recorded.
    lora = {k: v for k, v in model.state_dict().items() if ".lora_" in k}
    step = tmp_path / "step-000003.pt"
    torch.save({"lora": lora, "lora_alpha": 8.0, "trained_tokens": 999, "config": {
        "template": "gemma3-fim"}, "meta": {"base_bytes": base.stat().st_size}}, step)
    out2 = tmp_path / "tiny-lora-2.gguf"
    assert export_main([str(step), "--out", str(out2), "--base", str(base)]) == 0
    b = read_adapter_info(out2)
    assert (b.alpha, b.tokens_seen, b.template, b.pairs) == (8.0, 999, "gemma3-fim", a.pairs)
    torch.save({"lora": lora, "lora_alpha": 8.0, "meta": {"base_bytes": 1}}, step)
    assert export_main([str(step), "--out", str(out2), "--base", str(base)]) == 2
    torch.save(lora, step)  # a bare state dict: the alpha must be given
    assert export_main([str(step), "--out", str(out2), "--base", str(base)]) == 2
    assert export_main([str(step), "--out", str(out2), "--base", str(base), "--alpha",
                        "8", "--template", ""]) == 0
    assert read_adapter_info(out2).template is None

    _, plain = _llama_logits(base, ids)
    _, got = _llama_logits(base, ids, lora=out)
    with torch.no_grad():
        wrapped = model(torch.tensor([ids]))[0].double().numpy()
    _merge_in_place(model)
    with torch.no_grad():
        merged = model(torch.tensor([ids]))[0].double().numpy()
    assert np.abs(merged - wrapped).max() < 1e-4
    moved = np.abs(got - plain).max()
    err = np.abs(got - merged).max()
    print(f"tiny: adapter moves llama.cpp by max {moved:.3f}; llama.cpp+adapter vs torch merged "
          f"max {err:.2e}")
    assert err < 3e-3
    assert moved > 1.0  # 300× the tolerance (measured 2.3): an ignored adapter fails above


@pytest.mark.model
def test_embedded_270m_adapter_in_llama_cpp_matches_torch_merged(embedded_model: Path,
                                                                 tmp_path: Path) -> None:
    """The shipping format (float16 adapter) on the embedded Q4_K_M model. llama.cpp rounds
    activations to 8 bits before every quantized matmul, so the comparison uses the Q4_K
    statistical bounds of test_embedded_270m_matches_llama_cpp_q4_k_m. Measured on these 64
    tokens: llama.cpp + adapter vs torch merged mean |Δ| 0.23, KL 0.010, top-1 93.8 % (flips at a
    lead ≤ 0.17), correlation ≥ 0.9975; the adapter itself moves llama.cpp's logits by mean
    |Δ| 2.6, KL 1.6 nats, top-1 agreement 38 %, correlation down to 0.77."""
    torch = _torch()
    from model.gguf_load import load_gemma3_gguf
    from model.export_adapter import export_adapter
    from model.lora import apply_lora
    from tests.test_model_gemma3 import SNIPPET, _kl_top1_corr

    ids, plain = _llama_logits(embedded_model, SNIPPET)
    assert len(ids) == 64
    model = load_gemma3_gguf(embedded_model)
    apply_lora(model, r=4, alpha=8.0)  # all seven projections
    _randomize_lora(model, std=0.03)
    rep = export_adapter(model, tmp_path / "g3-lora.gguf", base=embedded_model, dtype="f16")
    assert rep.n_pairs == 18 * 7 and rep.rank == 4
    _merge_in_place(model)
    with torch.no_grad():
        merged = model(torch.tensor([ids]))[0].double().numpy()
    del model
    _, got = _llama_logits(embedded_model, ids, lora=rep.path)
    f = _kl_top1_corr(got, merged)
    moved = _kl_top1_corr(got, plain)
    print(f"270M: llama.cpp+adapter vs torch merged {f}; adapter vs none {moved}")
    # The Q4_K bounds of tests/test_model_gemma3.py.
    assert f["mean_abs"] < 0.4, f
    assert f["kl_mean"] < 0.03, f
    assert f["top1"] >= 0.90 and f["miss_margin"] < 0.5, f
    assert f["corr_min"] > 0.98 and f["corr_median"] > 0.998, f
    # The adapter is applied: it moves llama.cpp far outside every bound.
    assert moved["mean_abs"] > 4 * 0.4 and moved["kl_mean"] > 10 * 0.03, moved
    assert moved["top1"] < 0.6 and moved["corr_min"] < 0.9, moved


# -- the daemon with an adapter ---------------------------------------------------------------

@pytest.mark.model
def test_session_and_complete_with_adapter(embedded_model: Path, tmp_path: Path) -> None:
    from lsp_server.completion.session import ModelSession
    from tests.test_cli import DEMO

    good = write_adapter(tmp_path / "fim.gguf", random_pairs(embedded_model), alpha=8.0,
                         base=embedded_model).path
    config = Config()
    config.engine.adapter = str(good)
    config.engine.context_size = 1024
    with ModelSession(config) as s:
        s.wait_ready(300)
        assert s.engine.lora_path == good
        st = s.status()
        assert st["adapter"] == str(good) and st["template"] == "gemma3-fim"
        assert st["template_reason"] == "adapter fim.gguf names gemma3-fim"
        assert s.label == f"{embedded_model.name} + fim.gguf (gemma3-fim)"
        p = s.build_prompt("def add(a, b):\n    return ", "\n", path="m.py")
        text = s.tokenizer._llama.detokenize(p.tokens).decode()
        # The adapter's preferred order is SPM: the middle continues the prefix.
        assert text.endswith("<|fim_prefix|><|fim_suffix|>\n<|fim_middle|>def add(a, b):\n"
                             "    return "), text
        r = complete_text(s, "def add(a, b):\n    return ", "\n", path="m.py", max_tokens=4)
        # SPM ends at the cursor, after a space: the trailing " " token is healed.
        assert s.healed(p) == (p.tokens[:-1], " ")
        assert r.stats.n_prompt == len(p.tokens) - 1
    proc = codefill("complete", str(DEMO), "--line", "23", "--col", "16", "--max-tokens", "4",
                    "--time-budget-ms", "120000", "--adapter", str(good), "--verbose",
                    timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"+ adapter {good}" in proc.stderr
    assert "template   gemma3-fim (adapter fim.gguf names gemma3-fim)" in proc.stderr
    assert_one_line_error(codefill("complete", str(DEMO), "--line", "1", "--col", "1",
                                   "--adapter", str(embedded_model)), "not a LoRA adapter")
    # The quality bench names the adapter in its header (results must say what ran).
    proc = codefill("bench", "infill", "--benchmark", "single-line", "--limit", "1",
                    "--max-tokens", "4", "--workers", "1", "--adapter", str(good), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "(template gemma3-fim, Q4_K_M) + adapter fim.gguf (0 tokens trained)" in proc.stdout


@pytest.mark.model
def test_language_server_loads_refuses_and_recovers_adapters(embedded_model: Path,
                                                            tmp_path: Path) -> None:
    import asyncio

    from lsprotocol import types

    from bench.common import Harness

    good = write_adapter(tmp_path / "fim.gguf", random_pairs(embedded_model), alpha=8.0,
                         base=embedded_model).path
    base_settings = {"completion": {"debounce_min_ms": 0},
                     "prompt": {"max_tokens": 4},
                     "engine": {"context_size": 1024, "time_budget_ms": 60000}}

    def settings(adapter: str) -> dict:
        return {**base_settings, "engine": {**base_settings["engine"], "adapter": adapter}}

    (tmp_path / "ws").mkdir()
    h = Harness(tmp_path / "ws", settings=settings(str(good)),
                init_options=settings(str(good)))

    async def change(s: dict) -> None:
        assert h.client is not None
        h.settings = s
        h.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"codefill": s}))
        await asyncio.sleep(0.1)

    def wait_model(state: str, template: str | None = None) -> dict:
        """Poll codefill/status until the model is in ``state`` (with ``template``); a load
        that ends in the other final state fails at once."""
        deadline = time.monotonic() + 300
        while True:
            st = h.status()["model"]
            if st["state"] == state and (template is None or st["template"] == template):
                return st
            other = {"ready": "failed", "failed": "ready"}[state]
            # After a settings change the old final state lingers until the reload starts.
            assert not (st["state"] == other and time.monotonic() > deadline - 290), st
            assert time.monotonic() < deadline, st
            time.sleep(0.2)

    try:
        h.start(wait_ready=False)
        st = wait_model("ready", "gemma3-fim")
        assert st["adapter"] == str(good)
        assert st["template_reason"] == "adapter fim.gguf names gemma3-fim"

        bad = tmp_path / "missing-adapter.gguf"
        h.run(change(settings(str(bad))))
        st = wait_model("failed")
        assert f"adapter file not found: {bad}" in st["error"] and "engine.adapter" in st["error"]
        assert any("adapter file not found" in m.message for m in h.messages)
        uri = h.open(tmp_path / "ws" / "a.py", "def add(a, b):\n    return \n")
        assert h.inline(uri, 1, 11) is None  # the server answers (nothing) and stays up
        assert "adapter file not found" in h.status()["completion"]["last_empty_reason"]

        h.run(change(settings("")))  # no adapter: the plain embedded model
        st = wait_model("ready", "plain")
        assert st["adapter"] is None

        h.run(change(settings(str(good))))  # and back: the setting change alone reloads
        wait_model("ready", "gemma3-fim")

        h.run(change(settings("embedded")))  # the adapter shipped in the package
        deadline = time.monotonic() + 300
        while (st := wait_model("ready"))["adapter"] != str(adapter_mod.EMBEDDED_ADAPTER):
            assert time.monotonic() < deadline, st  # the old model's state until the reload
            time.sleep(0.2)
        assert st["template"] == "gemma3-fim", st
        text = h.inline(h.open(tmp_path / "ws" / "b.py", "def add(a, b):\n    return \n"), 1, 11)
        assert text and text.strip(), h.status()["completion"]
    finally:
        assert h.stop() == 0


def test_engine_resolves_the_setting_when_no_path_is_given(tmp_path: Path) -> None:
    """Callers that build a LlamaEngine from an EngineConfig directly get the adapter too."""
    from lsp_server.config import EngineConfig
    from lsp_server.engine.llama_engine import LlamaEngine

    seen: dict = {}

    def factory(**kw):  # noqa: ANN003, ANN202
        seen.update(kw)
        raise ValueError("stop here")

    adapter = tmp_path / "a.gguf"
    cfg = EngineConfig(adapter=str(adapter))
    e = LlamaEngine(tmp_path / "m.gguf", cfg, llama_factory=factory)
    with pytest.raises(ModelError) as exc:
        e.wait_ready(30)
    assert seen["lora_path"] == str(adapter)
    assert f"with adapter {adapter}" in str(exc.value) and "--adapter" in exc.value.fix
    e.close()
    seen.clear()
    e = LlamaEngine(tmp_path / "m.gguf", EngineConfig(), llama_factory=factory)
    with pytest.raises(ModelError):
        e.wait_ready(30)
    assert "lora_path" not in seen
    e.close()
