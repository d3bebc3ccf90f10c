"""The trainer's accelerator path (model/device.py, model/train.py), proven on the CPU with a
tiny random Gemma 3: device names, bf16 base storage, a time budget that stops cleanly,
checkpoints every few minutes with the adapter and an optimizer-free checkpoint beside them,
and the throughput lines. The GPU itself is exercised where one is lent (docs/training.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="model/ needs torch: scripts/setup dev installs it")
gguf = pytest.importorskip("gguf")

from lsp_server.models.adapter import read_adapter_info  # noqa: E402
from model import device as devices  # noqa: E402
from model.data.corpus import Corpus  # noqa: E402
from model.export_adapter import main as export_main  # noqa: E402
from model.gemma3 import selected_lm_loss  # noqa: E402
from model.lora import apply_lora  # noqa: E402
from model.train import train  # noqa: E402
from model.train_state import checkpoints  # noqa: E402
from tests.test_model_gemma3_train import (REPO, TINY, ByteTokenizer, _cfg,  # noqa: E402
                                           tiny_model)

CORPUS = Corpus("repo", {p: t * 3 for p, t in REPO.items() if t})


def tiny_base(path: Path) -> Path:
    """A GGUF with the tiny model's projection shapes: what the adapter export checks against
    (it reads the base's header, never its values)."""
    w = gguf.GGUFWriter(path, "gemma3")
    w.add_type("model")
    w.add_name("tiny-gemma3")
    h, hd, i = TINY.hidden_size, TINY.head_dim, TINY.intermediate_size
    nq, nkv = TINY.num_attention_heads * hd, TINY.num_key_value_heads * hd
    shapes = {"attn_q": (nq, h), "attn_k": (nkv, h), "attn_v": (nkv, h), "attn_output": (h, nq),
              "ffn_gate": (i, h), "ffn_up": (i, h), "ffn_down": (h, i)}
    for b in range(TINY.num_hidden_layers):
        for name, shape in shapes.items():
            w.add_tensor(f"blk.{b}.{name}.weight", np.zeros(shape, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_device_names_are_checked() -> None:
    assert devices.resolve("cpu") == torch.device("cpu")
    assert devices.resolve("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'.*cpu, cuda, cuda:N, auto"):
        devices.resolve("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' asked for, but .*--device cpu"):
            devices.resolve("cuda")
        with pytest.raises(ValueError, match="cuda:1"):
            devices.resolve("cuda:1")
        # The trainer refuses before loading anything.
        with pytest.raises(ValueError, match="device 'cuda'"):
            train(_cfg(Path("unused"), device="cuda"), model=tiny_model(), tok=ByteTokenizer(),
                  corpus=CORPUS)


def test_bf16_base_keeps_the_trainable_factors_float32() -> None:
    """What place() does on a GPU with bf16: the frozen base matrices in bf16, LoRA and norms
    float32; the loss moves by bf16 rounding only and the LoRA factors still get gradients."""
    from model.data.dataset import DataConfig, RowStream, collate
    from model.data.fim import FimRates, Layout
    from lsp_server.prompt.templates import get_template

    model = tiny_model()
    apply_lora(model, 4, 8.0)
    rows = RowStream(CORPUS, Layout(ByteTokenizer(), get_template("gemma3-fim"),
                                    middle_loss=True),
                     DataConfig(seq_len=128, rates=FimRates(0.9, 0.8, 0.8, 8), seed=0,
                                eval_share=0.0)).epoch_rows(0)
    batch = collate([next(rows) for _ in range(2)])

    def loss() -> torch.Tensor:
        with devices.autocast("cpu", True):
            s, n = selected_lm_loss(model, batch["input_ids"], batch["labels"],
                                    batch["position_ids"], batch["segment_ids"])
        return s / n

    before = float(loss().detach())
    converted = devices.bf16_base(model)
    assert converted == 2 * 7 + 1  # every frozen projection, and the embedding
    kinds = {(p.requires_grad, p.dim() >= 2, p.dtype) for p in model.parameters()}
    assert (True, True, torch.float32) in kinds and (False, False, torch.float32) in kinds
    assert (False, True, torch.bfloat16) in kinds and (False, True, torch.float32) not in kinds
    after = loss()
    assert abs(float(after.detach()) - before) < 0.02 * before
    after.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float32 for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_time_budget_stops_cleanly_with_adapter_and_small_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tiny_base(tmp_path / "tiny-base.gguf")
    adapter = tmp_path / "back" / "adapter.gguf"
    cfg = _cfg(tmp_path / "run", device="cpu", steps=100_000, eval_share=0.0, save_every=10**6,
               save_minutes=1e-9, time_limit=1.0, adapter_out=str(adapter), init_from=str(base),
               log_every=10**6)
    res = train(cfg, model=tiny_model(), tok=ByteTokenizer(), corpus=CORPUS,
                meta={"corpus": "c1", "base_bytes": base.stat().st_size})
    err = capsys.readouterr().err
    # Stopped by the budget, long before the schedule's end, checkpointed at the last step.
    assert 1 <= res.step < 100_000 and "time limit reached" in err
    assert res.checkpoint == checkpoints(tmp_path / "run")[-1]
    assert res.checkpoint.name == f"step-{res.step:06d}.pt"
    # Throughput: tokens/s and loss tokens/s on the first step's line and at the end.
    assert "loss tok/s" in err and "tok/s over" in err and "on cpu" in err
    last = res.history[-1]
    assert last["tok_s"] > last["loss_tok_s"] > 0
    # The adapter of the last step, and its optimizer-free checkpoint beside it.
    info = read_adapter_info(adapter)
    assert (info.rank, info.tokens_seen, info.template) == (8, res.trained_tokens, "gemma3-fim")
    small = torch.load(adapter.with_suffix(".pt"), weights_only=False)
    full = torch.load(res.checkpoint, weights_only=False)
    assert "optimizer" not in small and "optimizer" in full and small["step"] == res.step
    assert small["lora"].keys() == full["lora"].keys()
    assert all(torch.equal(small["lora"][k], full["lora"][k]) for k in full["lora"])
    assert adapter.with_suffix(".pt").stat().st_size < res.checkpoint.stat().st_size / 2
    # What comes back exports to the same adapter here.
    again = tmp_path / "again.gguf"
    assert export_main([str(adapter.with_suffix(".pt")), "--out", str(again), "--base",
                        str(base)]) == 0
    assert again.read_bytes() == adapter.read_bytes()
    # The run resumes from its checkpoint on another device setting (run-local).
    more = train(_cfg(tmp_path / "run", device="auto", steps=100_000, eval_share=0.0,
                      stop_after=res.step + 2, init_from=str(base)),
                 model=tiny_model(), tok=ByteTokenizer(), corpus=CORPUS,
                 meta={"corpus": "c1", "base_bytes": base.stat().st_size})
    assert more.step == res.step + 2


def test_cli_budget_and_device_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from lsp_server.cli.main import main as codefill
    from model import train as trainer
    from model import train_gemma3

    seen: list[object] = []
    monkeypatch.setattr(trainer, "train",
                        lambda cfg, **kw: seen.append(cfg) or trainer.TrainResult(step=0))
    new = str(tmp_path / "new")
    assert codefill(["train", "--gemma3-fim", "--out", new, "--minutes", "2.5", "--device",
                     "auto", "--save-minutes", "3", "--adapter-out", "a.gguf"]) == 0
    cfg = seen[-1]
    assert (cfg.time_limit, cfg.device, cfg.save_minutes, cfg.adapter_out) == (  # type: ignore[attr-defined]
        150.0, "auto", 3.0, "a.gguf")
    assert codefill(["train", "--gemma3-fim", "--out", new, "--minutes", "0"]) == 2
    assert codefill(["train", "--gemma3-fim", "--out", new, "--minutes", "1",
                     "--time-limit", "60"]) == 2
    assert train_gemma3.main(["--out", new, "--minutes", "1", "--device", "cpu",
                              "--micro-batch", "8", "--lora-rank", "16", "--mlp"]) == 0
    cfg = seen[-1]
    assert (cfg.time_limit, cfg.device, cfg.micro_batch, cfg.lora_rank,  # type: ignore[attr-defined]
            len(cfg.targets)) == (60.0, "cpu", 8, 16, 7)  # type: ignore[attr-defined]


# -- packed rows: what a machine without the tokenizer trains on --------------------------------

def _stream_cfg(**kw: object) -> object:
    """The data settings of the tiny runs (_cfg) the rows are made for."""
    from model.recipes import data_config

    return data_config(_cfg(Path("unused"), **kw))


def _write_packed(out: Path, tokens: int, **kw: object) -> object:
    """Rows for a tiny run with the settings ``_cfg(**kw)``, recorded in the manifest."""
    from dataclasses import asdict

    from lsp_server.prompt.templates import get_template
    from model.data import packed
    from model.data.dataset import RowStream
    from model.data.fim import Layout
    from model.data.dataset import eval_rows_of

    layout = Layout(ByteTokenizer(), get_template("gemma3-fim"), middle_loss=True)
    cfg = _stream_cfg(**kw)
    rows = RowStream(CORPUS, layout, cfg)  # type: ignore[arg-type]
    ev = eval_rows_of(CORPUS, layout, cfg, 2)  # type: ignore[arg-type]
    run_cfg = _cfg(out, **kw)
    return packed.write(out, rows.positioned_rows(), tokens=tokens, eval_rows=ev,
                        meta={"config": asdict(run_cfg), "corpus": "c1"}, shard_rows=3)


def test_packed_rows_read_back_as_the_stream_made_them(tmp_path: Path) -> None:
    from lsp_server.prompt.templates import get_template
    from model.data.dataset import RowStream
    from model.data.fim import Layout
    from model.data.packed import Packed

    cfg = _stream_cfg()
    m = _write_packed(tmp_path / "p", 3000)
    assert m["rows"] >= 3 and m["tokens"] >= 3000 and len(m["shards"]) >= 2  # type: ignore[index]
    p = Packed.open(tmp_path / "p")
    stream = RowStream(CORPUS, Layout(ByteTokenizer(), get_template("gemma3-fim"),
                                      middle_loss=True), cfg).positioned_rows()
    got = list(zip(range(p.rows + 2), p.positioned_rows()))
    for (_, (a, pos_a)), (b, _) in zip(got[:p.rows], stream):
        for field in ("input_ids", "labels", "position_ids", "segment_ids"):
            assert torch.equal(getattr(a, field), getattr(b, field)), field
    # Positions: row after row, then a second pass from the first row.
    assert got[0][1][1] == (0, 1) and got[p.rows - 1][1][1] == (1, 0)
    assert torch.equal(got[p.rows][1][0].input_ids, got[0][1][0].input_ids)
    resumed = next(p.positioned_rows(0, 2))
    assert torch.equal(resumed[0].input_ids, got[2][1][0].input_ids) and resumed[1] == (0, 3)
    assert len(p.eval_rows()) == 2
    with pytest.raises(ValueError, match="no packed rows"):
        Packed.open(tmp_path)
    (tmp_path / "p" / m["shards"][0]["file"]).unlink()  # type: ignore[index]
    with pytest.raises(ValueError, match="shards missing"):
        Packed.open(tmp_path / "p")


def test_training_on_packed_rows_equals_training_on_the_stream(tmp_path: Path) -> None:
    _write_packed(tmp_path / "p", 20_000)
    kw = dict(steps=6, save_every=3, eval_every=3)
    direct = train(_cfg(tmp_path / "a", **kw), model=tiny_model(), tok=ByteTokenizer(),
                   corpus=CORPUS, meta={"corpus": "c1"})
    # No tokenizer and no corpus: the rows are token ids already.
    packed = train(_cfg(tmp_path / "b", packed=str(tmp_path / "p"), **kw), model=tiny_model(),
                   tok=None, corpus=None)
    key = ("step", "loss", "tokens", "loss_tokens", "grad_norm")
    assert [tuple(h[k] for k in key) for h in packed.history] == \
        [tuple(h[k] for k in key) for h in direct.history]
    assert packed.evals == direct.evals
    # Rows made for other settings are refused, and so is a run that counted other rows.
    with pytest.raises(ValueError, match="seq_len=128"):
        train(_cfg(tmp_path / "c", seq_len=64, packed=str(tmp_path / "p"), **kw),
              model=tiny_model(), tok=None, corpus=None)
    with pytest.raises(ValueError, match="packed rows: start a new run"):
        train(_cfg(tmp_path / "a", packed=str(tmp_path / "p"), steps=7), model=tiny_model(),
              tok=None, corpus=None)


# -- a bundle for a lent GPU machine, run here on the CPU --------------------------------------

def test_bundle_parts_join_and_carry_plan(tmp_path: Path) -> None:
    from model import bundle

    src = tmp_path / "base.gguf"
    src.write_bytes(bytes(range(256)) * 40)  # 10,240 bytes
    (tmp_path / "b").mkdir()
    parts = bundle.split(src, tmp_path / "b", 4096)
    assert [p["bytes"] for p in parts] == [4096, 4096, 2048]
    info = {"sha256": bundle.sha256(src), "parts": parts}
    joined = bundle.join(tmp_path / "b", info, tmp_path / "joined.gguf")
    assert joined.read_bytes() == src.read_bytes()
    (tmp_path / "b" / parts[1]["file"]).write_bytes(b"x" * 4096)
    with pytest.raises(ValueError, match="part01 does not match its sha256"):
        bundle.join(tmp_path / "b", info, tmp_path / "joined.gguf")
    (tmp_path / "b" / parts[2]["file"]).unlink()
    with pytest.raises(ValueError, match="1 of 3 parts .*part02"):
        bundle.join(tmp_path / "b", info, tmp_path / "joined.gguf")
    plan = bundle.carry_plan([("a", 30), ("b", 30), ("c", 50), ("d", 1)], budget=60)
    assert plan == [["a", "b"], ["c", "d"]]
    assert all(len(g) <= 8 for g in bundle.carry_plan([(str(i), 1) for i in range(20)], 100))


def test_bundle_trains_from_parts_without_tokenizer_or_corpus(tmp_path: Path) -> None:
    """The whole GPU path on the CPU: a tiny Gemma 3 GGUF split into parts, packed rows, then
    ``model.bundle train`` joins, trains within its minutes and leaves the adapter, the small
    checkpoint, the loss table and the log in the folder that comes back."""
    pytest.importorskip("sentencepiece")
    pytest.importorskip("safetensors")
    from lsp_server.cli.main import main as cli
    from model import bundle
    from model.checkpoint import save_pretrained
    from model.tokenizer import train_tokenizer
    from tests.test_model_gemma3 import STDLIB
    from tests.test_model_gemma3 import TINY as TINY_BASE
    from tests.test_model_gemma3 import random_model

    tok_dir = tmp_path / "tok"
    train_tokenizer([(STDLIB / n).read_text(encoding="utf-8") for n in ("bisect.py", "heapq.py")],
                    tok_dir, vocab_size=400)
    ck = save_pretrained(random_model(TINY_BASE.with_vocab(400)), tmp_path / "ck",
                         tokenizer_dir=tok_dir, name="tiny-gemma3")
    base = tmp_path / "tiny.gguf"
    assert cli(["quantize", str(ck), "--out", str(base), "--type", "F32"]) == 0
    _write_packed(tmp_path / "rows", 4000, seq_len=512)  # rows a gemma3-fim run reads
    assert bundle.main(["make", str(tmp_path / "gpu"), "--rows", str(tmp_path / "rows"),
                        "--model", str(base), "--part-mb", "0.05", "--no-wheels"]) == 0
    parts = sorted((tmp_path / "gpu").glob("tiny.gguf.part*"))
    assert len(parts) >= 2 and not (tmp_path / "gpu" / "tiny.gguf").exists()
    out = tmp_path / "back"
    rc = bundle.main(["train", str(tmp_path / "gpu"), "--out", str(out), "--minutes", "0.02",
                      "--recipe", "codegemma", "--device", "cpu", "--run-dir",
                      str(tmp_path / "run"), "--base-to", str(tmp_path / "joined.gguf"),
                      "--site", str(tmp_path / "site"), "--eval-every", "1000"])
    log = (out / "train.log").read_text()
    assert rc == 0, log
    assert "time limit reached" in log and "on cpu" in log and "loss tok/s" in log
    assert (tmp_path / "joined.gguf").read_bytes() == base.read_bytes()
    small = torch.load(out / "adapter-last.pt", weights_only=False)
    assert "optimizer" not in small and small["step"] >= 1
    adapters = sorted(out.glob("adapter-*.gguf"))  # one per checkpoint, the last one's step
    assert adapters and (out / f"adapter-{small['step']}.gguf") in adapters
    assert read_adapter_info(adapters[-1]).base_name == "tiny-gemma3"
    assert (out / "loss.csv").read_text().startswith("step,loss")


def test_worker_processes_build_the_same_rows() -> None:
    import multiprocessing

    from lsp_server.prompt.templates import get_template
    from model.data import packed
    from model.data.dataset import RowStream
    from model.data.fim import Layout

    def new_stream() -> RowStream:
        return RowStream(CORPUS, Layout(ByteTokenizer(), get_template("gemma3-fim"),
                                        middle_loss=True), _stream_cfg())  # type: ignore[arg-type]

    one = [r for _, r in zip(range(12), new_stream().positioned_rows())]
    with multiprocessing.get_context("fork").Pool(
            2, initializer=packed._start_worker, initargs=(new_stream,)) as pool:
        two = [r for _, r in zip(range(12), new_stream().positioned_rows(
            build_map=lambda items: pool.imap(packed._build, items, chunksize=2)))]
    assert [p for _, p in one] == [p for _, p in two]  # data positions, across epochs
    for (a, _), (b, _) in zip(one, two):
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)


def test_schedule_is_fitted_to_the_time_budget(tmp_path: Path) -> None:
    """fit_schedule: after a few steps the cosine's length is set from the time left, so the
    learning rate decays within the budget instead of staying near its peak."""
    cfg = _cfg(tmp_path / "run", steps=10**6, warmup=10, eval_share=0.0, time_limit=3.0,
               fit_schedule=True, save_every=10**6, log_every=10**6)
    res = train(cfg, model=tiny_model(), tok=ByteTokenizer(), corpus=CORPUS)
    saved = torch.load(checkpoints(tmp_path / "run")[-1], weights_only=False)
    assert saved["config"]["steps"] == cfg.steps < 10**6  # fitted, and recorded
    assert res.step <= cfg.steps
    peak = max(h["lr"] for h in res.history)
    # Decayed well below the peak by the end (the last steps of a cosine ending at 10 %).
    assert res.history[-1]["lr"] < 0.5 * peak, [h["lr"] for h in res.history[-3:]]
