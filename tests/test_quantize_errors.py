"""Bad input to `codefill quantize`: one line naming the problem, exit 2, and no output left.

Each case mutates a copy of a valid tiny CodeGemma checkpoint, runs the CLI, and checks that
the output directory is exactly as it was (no partial file under the requested name or a
temporary one).
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

pytest.importorskip("sentencepiece")
pytest.importorskip("safetensors")

from lsp_server.cli.main import main  # noqa: E402
from quantize import outputs  # noqa: E402
from quantize.safetensors_io import SafetensorsCheckpoint  # noqa: E402
from bench.common import make_config, save_safetensors, write_checkpoint  # noqa: E402

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=1, head_dim=32, vocab_size=0, max_position_embeddings=512)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("base") / "ck"
    write_checkpoint(d, make_config("GemmaForCausalLM", **TINY), shards=2)
    return d


@pytest.fixture
def ck(base: Path, tmp_path: Path) -> Path:
    d = tmp_path / "ck"
    shutil.copytree(base, d)
    return d


def cli_error(capsys: pytest.CaptureFixture[str], out_dir: Path, *argv: str) -> str:
    """Run the CLI expecting a user error; return its one line. Checks nothing was written."""
    out_dir.mkdir(exist_ok=True)
    before = sorted(p.name for p in out_dir.iterdir())
    assert main(["quantize", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("codefill: error: "), err
    assert "Traceback" not in err[0]
    assert sorted(p.name for p in out_dir.iterdir()) == before
    return err[0]


def _config(ck: Path, **changes: object) -> None:
    cfg = json.loads((ck / "config.json").read_text())
    cfg.update(changes)
    (ck / "config.json").write_text(json.dumps(cfg))


def _shard(ck: Path) -> Path:
    return sorted(ck.glob("*.safetensors"))[0]


def _rewrite_shard(ck: Path, change: Callable[[dict], None]) -> None:
    """Load the first shard, let ``change`` edit the tensors, write it back (index updated)."""
    shard = _shard(ck)
    with SafetensorsCheckpoint(ck) as c:
        tensors = {n: c.array(s).copy() for n, s in c.tensors.items() if s.file == shard}
    change(tensors)
    save_safetensors(shard, tensors)
    index = ck / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"] = {n: f for n, f in data["weight_map"].items() if f != shard.name}
    data["weight_map"].update({n: shard.name for n in tensors})
    index.write_text(json.dumps(data))


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "no config": (lambda ck: (ck / "config.json").unlink(), "not a Hugging Face checkpoint"),
    "unsupported architecture": (
        lambda ck: _config(ck, architectures=["LlamaForCausalLM"], model_type="llama"),
        "unsupported architecture 'LlamaForCausalLM'"),
    "missing tokenizer": (lambda ck: (ck / "tokenizer.model").unlink(), "missing tokenizer"),
    "broken tokenizer": (lambda ck: (ck / "tokenizer.model").write_bytes(b"\xff" * 64),
                         "not a SentencePiece model"),
    "shape mismatch": (lambda ck: _config(ck, intermediate_size=96), "shape mismatch"),
    "config key missing": (lambda ck: _config(ck, num_attention_heads=None),
                           "num_attention_heads is missing"),
    "wrong activation": (lambda ck: _config(ck, hidden_act="silu", hidden_activation=None),
                         "'silu'"),
    "truncated safetensors": (
        lambda ck: _shard(ck).write_bytes(_shard(ck).read_bytes()[:-100]), "truncated"),
    "corrupt safetensors header": (
        lambda ck: _shard(ck).write_bytes(struct.pack("<Q", 20) + b"{not json" + b" " * 11),
        "corrupt safetensors header"),
    "missing shard": (lambda ck: _shard(ck).unlink(), "names shards that are missing"),
    "unknown tensor": (
        lambda ck: _rewrite_shard(ck, lambda t: t.update(
            {"model.layers.0.mlp.extra_proj.weight": t[next(iter(t))]})),
        "unknown tensor 'model.layers.0.mlp.extra_proj.weight'"),
    "missing tensor": (
        lambda ck: _rewrite_shard(ck, lambda t: t.pop(next(
            n for n in t if n.endswith("mlp.down_proj.weight")))),
        "checkpoint lacks tensor"),
    "tensor beyond the layers": (
        lambda ck: _rewrite_shard(ck, lambda t: t.update(
            {"model.layers.7.mlp.up_proj.weight": t[next(iter(t))]})),
        "belongs to layer 7"),
    "untied config without lm_head": (lambda ck: _config(ck, tie_word_embeddings=False),
                                      "tie_word_embeddings = false"),
    "untied lm_head on gemma": (
        lambda ck: (_config(ck, tie_word_embeddings=False), _rewrite_shard(ck, lambda t: t.update(
            {"lm_head.weight": np.ones((512, 64), dtype=np.float32)}))),
        "always ties the output head"),
    "tokenizer larger than the embedding": (lambda ck: _config(ck, vocab_size=100),
                                            "the tokenizer has 512 tokens"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("otype", ["F16", "Q4_K_M"])
def test_bad_checkpoint(case: str, otype: str, ck: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    mutate, expected = CASES[case]
    mutate(ck)
    out = tmp_path / "out"
    line = cli_error(capsys, out, str(ck), "--out", str(out / "m.gguf"), "--type", otype)
    assert expected in line
    assert " — " in line  # and a fix


def test_unsupported_architecture_lists_the_supported_ones(
        ck: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _config(ck, architectures=["MistralForCausalLM"])
    line = cli_error(capsys, tmp_path / "out", str(ck), "--out", str(tmp_path / "out/m.gguf"))
    for name in ("GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM"):
        assert name in line


def test_existing_output_refused_unless_force(ck: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.gguf").write_bytes(b"precious")
    line = cli_error(capsys, out, str(ck), "--out", str(out / "m.gguf"), "--type", "F16")
    assert "already exists" in line and "--force" in line
    assert (out / "m.gguf").read_bytes() == b"precious"
    assert main(["quantize", str(ck), "--out", str(out / "m.gguf"), "--type", "F16",
                 "--force"]) == 0
    assert (out / "m.gguf").read_bytes()[:4] == b"GGUF"
    assert sorted(p.name for p in out.iterdir()) == ["m.gguf"]


def test_one_existing_output_of_several_stops_all(ck: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "m-Q4_0.gguf").write_bytes(b"x")
    cli_error(capsys, out, str(ck), "--out", str(out / "m.gguf"), "--type", "F16,Q8_0,Q4_0")


@pytest.mark.parametrize("otype", ["F16", "Q4_K_M"])
def test_not_enough_disk(ck: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch, otype: str) -> None:
    monkeypatch.setattr(outputs, "disk_free", lambda directory: 1 << 20)
    out = tmp_path / "out"
    line = cli_error(capsys, out, str(ck), "--out", str(out / "m.gguf"), "--type", otype)
    assert "not enough disk space" in line


def test_failure_while_writing_leaves_nothing(ck: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An error in the middle of writing (here: the disk filling up) removes the partial file."""
    import quantize.convert as convert

    real = convert._encode
    calls = {"n": 0}

    def failing(rows, qtype):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        return real(rows, qtype)

    monkeypatch.setattr(convert, "_encode", failing)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OSError):
        main(["quantize", str(ck), "--out", str(out / "m.gguf"), "--type", "Q8_0"])
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("argv, expected", [
    (["--type", "Q9_9"], "unknown quantization type 'Q9_9'"),
    (["--type", "IQ2_XXS"], "IQ2_XXS needs an importance matrix"),
    (["--imatrix", "/nonexistent/imatrix.gguf"], "importance matrix not found"),
    (["--eval", "/nonexistent/corpus"], "evaluation corpus not found"),
])
def test_bad_options(ck: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                     argv: list[str], expected: str) -> None:
    out = tmp_path / "out"
    assert expected in cli_error(capsys, out, str(ck), "--out", str(out / "m.gguf"), *argv)


def test_bad_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert "source not found" in cli_error(capsys, out, str(tmp_path / "nope"),
                                           "--out", str(out / "m.gguf"))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model at all")
    assert "not a checkpoint directory or GGUF file" in cli_error(
        capsys, out, str(junk), "--out", str(out / "m.gguf"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a Hugging Face checkpoint" in cli_error(capsys, out, str(empty),
                                                        "--out", str(out / "m.gguf"))
    truncated = tmp_path / "t.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 8)
    assert "GGUF" in cli_error(capsys, out, str(truncated), "--out", str(out / "m.gguf"))


def test_tied_lm_head_copy_is_skipped(ck: Path, tmp_path: Path) -> None:
    """Some exports save the tied head as its own tensor: equal to the embedding, it is dropped."""
    with SafetensorsCheckpoint(ck) as c:
        emb = c.array(c.tensors["model.embed_tokens.weight"]).copy()
    _rewrite_shard(ck, lambda t: t.update({"lm_head.weight": emb}))
    _config(ck, tie_word_embeddings=False)
    from quantize.convert import convert_checkpoint

    res = convert_checkpoint(ck, tmp_path / "m.gguf", "F16")
    assert res.skipped == ["lm_head.weight"]
