"""model/train.py and `codefill train` with the gemma recipes: schedule, exact resume, DDP
(torchrun, gloo) against one process, eval loss, LoRA fine-tuning of an exported checkpoint, CLI
errors."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Iterator

import pytest

torch = pytest.importorskip("torch", reason="model/ needs torch: scripts/setup dev installs it")
pytest.importorskip("sentencepiece")
pytest.importorskip("safetensors")

from lsp_server.cli.main import main as codefill  # noqa: E402
from model.checkpoint import load_pretrained  # noqa: E402
from model.tokenizer import train_tokenizer  # noqa: E402
from model.train import TrainConfig, lr_at, train  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
STDLIB = Path(sysconfig.get_paths()["stdlib"])
FILES = ("bisect.py", "heapq.py", "abc.py", "keyword.py", "colorsys.py", "this.py")
PKG = {
    "shop/__init__.py": "",
    "shop/money.py": "class Money:\n    def __init__(self, cents):\n        self.cents = cents\n",
    "shop/cart.py": "from shop.money import Money\n\n\nclass Cart:\n    def total(self):\n"
                    "        return Money(100)\n",
    "tests/test_cart.py": "from shop.cart import Cart\n\n\ndef test_total():\n"
                          "    assert Cart().total().cents == 100\n",
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # 2 busy cores: one thread per process is much faster than two contending ones.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for name in FILES:
        shutil.copyfile(STDLIB / name, root / name)
    for p, t in PKG.items():
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_text(t)
    return root


@pytest.fixture(scope="module")
def tok_dir(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tok")
    train_tokenizer([p.read_text() for p in sorted(corpus.rglob("*.py"))], d, vocab_size=400)
    return d


def cfg(corpus: Path, tok_dir: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(corpus=str(corpus), out_dir=str(out), tokenizer=str(tok_dir), model="tiny",
                seq_len=96, micro_batch=2, grad_accum=1, steps=6, warmup=2, lr=3e-3,
                eval_share=0.0, log_every=100, threads=1)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_lr_schedule_warmup_then_cosine() -> None:
    c = TrainConfig(corpus="", out_dir="", lr=1e-3, warmup=10, steps=110, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(1e-4) and lr_at(9, c) == pytest.approx(1e-3)
    assert lr_at(60, c) == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # half way down the cosine
    assert lr_at(110, c) == pytest.approx(1e-4) and lr_at(500, c) == pytest.approx(1e-4)
    lrs = [lr_at(s, c) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_training_lowers_loss_and_exports(corpus: Path, tok_dir: Path, tmp_path: Path) -> None:
    r = train(cfg(corpus, tok_dir, tmp_path / "run", steps=12, eval_share=0.34, eval_every=6,
                  eval_rows=4))
    losses = [h["loss"] for h in r.history]
    assert len(losses) == 12 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3
    assert [e["step"] for e in r.evals] == [6, 12]
    assert r.evals[1]["eval_loss"] < r.evals[0]["eval_loss"]
    assert all(h["tok_s"] > 0 for h in r.history)
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["loss"] for h in hist["history"]] == losses
    assert r.hf_dir is not None and (r.hf_dir / "tokenizer.model").is_file()
    load_pretrained(r.hf_dir)  # loads as a plain Gemma checkpoint


def test_resume_continues_the_exact_schedule(corpus: Path, tok_dir: Path, tmp_path: Path) -> None:
    straight = train(cfg(corpus, tok_dir, tmp_path / "a"))
    first = train(cfg(corpus, tok_dir, tmp_path / "b", stop_after=3))
    assert first.step == 3 and (tmp_path / "b" / "trainer_state.pt").is_file()
    resumed = train(cfg(corpus, tok_dir, tmp_path / "b"))
    assert resumed.step == 6
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in straight.history]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert [h["tokens"] for h in resumed.history] == [h["tokens"] for h in straight.history]
    a, b = load_pretrained(straight.hf_dir), load_pretrained(resumed.hf_dir)  # type: ignore[arg-type]
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_equal_one_with_the_same_global_batch(corpus: Path, tok_dir: Path,
                                                               tmp_path: Path) -> None:
    steps = 3
    one = train(cfg(corpus, tok_dir, tmp_path / "one", steps=steps, micro_batch=2, grad_accum=2,
                    export=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
           "-m", "lsp_server.cli.main", "train", str(corpus), "--out", str(tmp_path / "two"),
           "--tokenizer", str(tok_dir), "--model", "tiny", "--seq-len", "96",
           "--micro-batch", "2", "--grad-accum", "1", "--steps", str(steps), "--warmup", "2",
           "--lr", "3e-3", "--threads", "1", "--log-every", "1"]
    p = subprocess.run(cmd + ["--eval-every", "100"], env=env, capture_output=True, text=True,
                       timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 process(es)" in p.stderr
    two = json.loads((tmp_path / "two" / "history.json").read_text())["history"]
    assert len(two) == steps
    for a, b in zip(one.history, two):
        assert a["tokens"] == b["tokens"]  # the same global batch
        assert abs(a["loss"] - b["loss"]) < 1e-4 * abs(a["loss"]), (a["loss"], b["loss"])
    # The updates agree too: step 3's loss depends on the first two updates.
    assert one.history[-1]["loss"] != one.history[0]["loss"]
    w1 = torch.load(tmp_path / "one" / "trainer_state.pt", weights_only=False)["model"]
    w2 = torch.load(tmp_path / "two" / "trainer_state.pt", weights_only=False)["model"]
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=2e-5, rtol=1e-4)


def test_lora_fine_tunes_an_exported_checkpoint(corpus: Path, tok_dir: Path,
                                                tmp_path: Path) -> None:
    base = train(cfg(corpus, tok_dir, tmp_path / "base", steps=2))
    assert base.hf_dir is not None
    r = train(cfg(corpus, None, tmp_path / "ft", init_from=str(base.hf_dir), tokenizer=None,
                  lora_rank=4, lora_alpha=8.0, steps=8, lr=1e-2))  # type: ignore[arg-type]
    assert 0 < r.trainable < r.params // 3
    losses = [h["loss"] for h in r.history]
    assert sum(losses[-2:]) < sum(losses[:2])
    a, b = load_pretrained(base.hf_dir), load_pretrained(r.hf_dir)  # type: ignore[arg-type]
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    # Only the adapted projections moved; embeddings and norms are frozen.
    assert torch.equal(sa["model.embed_tokens.weight"], sb["model.embed_tokens.weight"])
    assert torch.equal(sa["model.norm.weight"], sb["model.norm.weight"])
    assert not torch.equal(sa["model.layers.0.self_attn.q_proj.weight"],
                           sb["model.layers.0.self_attn.q_proj.weight"])


def test_cli_trains_from_scratch_with_its_own_tokenizer(corpus: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    rc = codefill(["train", str(corpus), "--out", str(out), "--vocab-size", "400",
                   "--seq-len", "64", "--steps", "2", "--threads", "1"])
    assert rc == 0
    cap = capsys.readouterr()
    assert "trained 2 steps" in cap.out and "tok/s" in cap.err
    assert (out / "tokenizer" / "tokenizer.model").is_file()
    assert (out / "hf" / "config.json").is_file()


@pytest.mark.parametrize("args, problem", [
    (["--model", "huge"], "unknown model config 'huge'"),
    (["--seq-len", "0"], "--seq-len must be at least 1"),
    (["--seq-len", "4096"], "exceeds the model's 1024 positions"),
    (["--recipe", "gemma-lora"], "recipe gemma-lora fine-tunes a checkpoint: pass init_from"),
    (["--recipe", "small"], "unknown training recipe 'small' — use one of: gemma, gemma-lora"),
])
def test_cli_errors_are_one_line(corpus: Path, tok_dir: Path, tmp_path: Path, args: list[str],
                                 problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = codefill(["train", str(corpus), "--out", str(tmp_path / "x"), "--tokenizer",
                   str(tok_dir), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and problem in err and len(err.splitlines()) == 1


def test_cli_empty_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    rc = codefill(["train", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "no source files" in capsys.readouterr().err
