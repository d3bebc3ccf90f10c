"""Gemma 3 FIM LoRA training (docs/adapter-training-notes.md): tokenizer parity with the daemon,
the gemma3-fim layout against ``assemble()``, middle-only loss, the licensed corpus, resumable data
positions, and the trainer's exact resume — on a tiny random Gemma 3 (only the tokenizer test uses
the real vocab).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="model/ needs torch: scripts/setup dev installs it")

from lsp_server.prompt.assemble import Budget, ContextFile, assemble  # noqa: E402
from lsp_server.prompt.templates import TEMPLATES, Order  # noqa: E402
from model.data.corpus import Corpus  # noqa: E402
from model.data.dataset import DataConfig, RowStream, pack_rows  # noqa: E402
from model.data.fim import Example, FimRates, FimSplit, Layout, fim_split  # noqa: E402
from model.data.sources import build_corpus, dist_license  # noqa: E402
from model.gemma import IGNORE_INDEX  # noqa: E402
from model.gemma3 import Gemma3Config, Gemma3ForCausalLM  # noqa: E402
from model.recipes import (RECIPES, RUN_LOCAL, TrainConfig, config_for,  # noqa: E402
                           recipe_config)
from model.train import train  # noqa: E402
from model.train_state import checkpoints  # noqa: E402
from tests.fake_tokenizer import CharTokenizer  # noqa: E402

G3 = TEMPLATES["gemma3-fim"]
REPO = {
    "shop/__init__.py": "",
    "shop/money.py": "class Money:\n    def __init__(self, cents):\n        self.cents = cents\n",
    "shop/tax.py": "from shop.money import Money\n\n\ndef vat(m: Money) -> Money:\n"
                   "    return Money(m.cents * 21 // 100)\n",
    "shop/cart.py": "from shop.money import Money\nfrom shop.tax import vat\n\n\nclass Cart:\n"
                    "    def total(self):\n        return vat(Money(100))\n",
    "tests/test_cart.py": "from shop.cart import Cart\n\n\ndef test_total():\n"
                          "    assert Cart().total().cents == 21\n",
    "shop/other.py": "def unrelated():\n    return 1\n",
}


def char_tok() -> CharTokenizer:
    tok = CharTokenizer(["<eos>", "<end_of_turn>", "<|fim_prefix|>"])
    tok.eos_id = tok.token_id("<eos>")  # type: ignore[attr-defined]
    tok.pad_id = 0  # type: ignore[attr-defined]
    return tok


class ByteTokenizer:
    """Bytes as tokens 3..258 (pad 0, <eos> 1, <bos> 2): a vocabulary a tiny model can hold."""

    bos_id = 2
    eos_id = 1
    pad_id = 0
    add_bos = True
    vocab_size = 259

    def tokenize(self, text: str) -> list[int]:
        return [b + 3 for b in text.encode()]

    def token_id(self, piece: str) -> int | None:
        return {"<pad>": 0, "<eos>": 1, "<bos>": 2}.get(piece)


# -- the layout is the daemon's prompt plus the middle and <eos> -------------------------------

@pytest.mark.parametrize("order", [Order.PSM, Order.SPM])
def test_gemma3_fim_example_is_the_daemons_prompt_plus_middle_and_eos(order: Order) -> None:
    tok = char_tok()
    lay = Layout(tok, G3, middle_loss=True)
    ctx = [ContextFile("shop/money.py", REPO["shop/money.py"]),
           ContextFile("shop/tax.py", REPO["shop/tax.py"])]
    text = REPO["shop/cart.py"]
    split = FimSplit(text[:40], text[40:71], text[71:], order)
    eos = tok.token_id("<eos>")
    for files in (ctx, []):
        got = lay.example(split, "shop/cart.py", files)
        prompt = assemble(G3, tok, prefix=split.prefix, suffix=split.suffix,
                          budget=Budget(total=100_000), path="shop/cart.py", context=files,
                          order=order)
        assert prompt.context_files == [f.path for f in files]
        assert list(got) == prompt.tokens + tok.tokenize(split.middle) + [eos]
        assert got.n_target == len(split.middle) + 1
        # Text sentinels: spelled as characters, no special token besides BOS and <eos>.
        rendered = tok.render(list(got))
        assert rendered.count("<|fim_middle|>") == 1 and rendered.endswith("<eos>")
        assert [t for t in got if t >= 100_000] == [eos]


def test_plain_document_and_codegemma_layout_unchanged() -> None:
    tok = char_tok()
    doc = "import os\nprint(os.sep)\n"
    ex = Layout(tok, G3, middle_loss=True).example(FimSplit(doc, "", "", None), "m.py")
    assert list(ex[-len(doc) - 1:]) == tok.tokenize(doc) + [tok.eos_id]
    assert ex.n_target == len(doc) + 1
    assert Layout(tok, G3).example(FimSplit(doc, "", "", None), "m.py").n_target is None


def test_middle_only_loss_in_packed_rows() -> None:
    tok = char_tok()
    lay = Layout(tok, G3, middle_loss=True)
    rng = random.Random(1)
    exs = [lay.example(fim_split(t, rng, FimRates(1.0)), p) for p, t in REPO.items() if t]
    rows = list(pack_rows(exs, 400, 0))
    assert sum(int((r.labels != IGNORE_INDEX).sum()) for r in rows) == \
        sum(e.n_target for e in exs)
    eos = tok.token_id("<eos>")
    for r in rows:  # every segment's last label is its <eos>, and its targets are contiguous
        for s in set(r.segment_ids.tolist()) - {-1}:
            lab = r.labels[r.segment_ids == s]
            keep = (lab != IGNORE_INDEX).nonzero().flatten().tolist()
            assert keep == list(range(keep[0], len(lab))) and int(lab[-1]) == eos
    # A cut example keeps only the targets that remain.
    e = Example(list(range(10)), 4)
    assert e.cut(8).n_target == 2 and e.cut(5).n_target == 0 and e.cut(20) is e


def test_positioned_rows_resume_where_they_left_off() -> None:
    tok = char_tok()
    corpus = Corpus("repo", {p: t for p, t in REPO.items() if t})
    cfg = DataConfig(seq_len=160, eval_share=0.0, seed=3)
    stream = RowStream(corpus, Layout(tok, G3, middle_loss=True), cfg)
    first = [x for _, x in zip(range(14), stream.positioned_rows())]  # crosses epochs
    plain = [x for _, x in zip(range(14), stream.rows())]
    assert all(torch.equal(a.input_ids, b.input_ids) for (a, _), b in zip(first, plain))
    assert first[-1][1][0] >= 1
    for k in (3, 7):
        again = [x for _, x in zip(range(14 - k - 1), stream.positioned_rows(*first[k][1]))]
        for (a, pa), (b, pb) in zip(first[k + 1:], again):
            assert pa == pb and torch.equal(a.input_ids, b.input_ids) and \
                torch.equal(a.labels, b.labels)


# -- the corpus ---------------------------------------------------------------------------------

def _dist(sp: Path, name: str, meta: list[str], files: dict[str, str]) -> None:
    info = sp / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("\n".join(["Metadata-Version: 2.4", f"Name: {name}",
                                              "Version: 1.0", *meta]) + "\n")
    record = []
    for rel, text in files.items():
        (sp / rel).parent.mkdir(parents=True, exist_ok=True)
        (sp / rel).write_text(text)
        record.append(f"{rel},,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


def test_corpus_licenses_dedup_contamination_and_filters(tmp_path: Path) -> None:
    import gzip

    sp = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    solution = "    return sorted(set(x for x in numbers if numbers.count(x) == 1), reverse=True)\n"
    _dist(sp, "okpkg", ["License-Expression: MIT"], {
        "okpkg/__init__.py": "from okpkg.core import run\n",
        "okpkg/core.py": "def run():\n    return 42\n",
        "okpkg/copy.py": "def run():\n  return 42\n",  # near-duplicate of bsdpkg.py
        "okpkg/keys.py": "K = '-----BEGIN RSA PRIVATE KEY-----\\nabc'\n",  # a secret
        "okpkg/_vendor/lib.py": "x = 1\n",  # vendored: another project's license
        "okpkg/leak.py": "def unique(numbers):\n" + solution,  # an evaluation problem
    })
    _dist(sp, "bsdpkg", ["License: BSD", "Classifier: License :: OSI Approved :: BSD License"],
          {"bsdpkg.py": "def run():\n    return 42\n"})  # okpkg/core.py is an exact copy
    _dist(sp, "mplpkg", ["License-Expression: MPL-2.0"], {"mplpkg.py": "y = 2\n"})
    _dist(sp, "mixed", ["License-Expression: MIT AND Zlib"], {"mixed.py": "z = 3\n"})
    _dist(sp, "either", ["License-Expression: Apache-2.0 OR BSD-2-Clause"],
          {"either.py": "w = 4\n"})
    std = tmp_path / "stdlib"
    (std / "json").mkdir(parents=True)
    (std / "json" / "__init__.py").write_text("from json.decoder import x\n")
    (std / "json" / "decoder.py").write_text("x = 'decoder'\n")
    (std / "site-packages").mkdir()
    (std / "site-packages" / "global.py").write_text("g = 1\n")
    bench = tmp_path / "bench" / "humaneval"
    bench.mkdir(parents=True)
    with gzip.open(bench / "t.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"prompt": 'def unique(numbers):\n    """Unique."""\n',
                             "canonical_solution": solution, "suffix": ""}) + "\n")
    sc = build_corpus(tmp_path / "venv", stdlib=std, bench_dir=tmp_path / "bench")
    # Path order within a root, stdlib first: the first copy is kept.
    assert sorted(sc.corpus.files) == ["bsdpkg.py", "either.py", "json/__init__.py",
                                       "json/decoder.py", "okpkg/__init__.py"]
    assert sc.origin["json/decoder.py"] == "python-stdlib" and sc.origin["bsdpkg.py"] == "bsdpkg"
    allowed = {lic.name: lic.allowed for lic in sc.licenses}
    assert allowed == {"bsdpkg": True, "either": True, "mixed": False, "mplpkg": False,
                       "okpkg": True}
    assert sc.stats["okpkg"] == {"files_read": 4, "exact_dups": 1, "near_dups": 1,
                                 "contaminated": 1, "path_clash": 0, "files": 1,
                                 "chars": len("from okpkg.core import run\n")}
    assert sc.skipped.get("binary, secret or unreadable") == 1
    assert len(sc.fingerprint()) == 16
    # The manifest pins a run's files: the same corpus passes, a changed file is reported.
    manifest = sc.manifest()
    assert sc.restrict(manifest) == [] and sc.fingerprint() == manifest["fingerprint"]
    (std / "json" / "decoder.py").write_text("x = 'changed'\n")
    (std / "extra.py").write_text("e = 5\n")
    again = build_corpus(tmp_path / "venv", stdlib=std, bench_dir=tmp_path / "bench")
    assert again.restrict(manifest) == ["json/decoder.py"] and "extra.py" not in again.corpus.files


def test_license_of_the_installed_distributions() -> None:
    import importlib.metadata as md

    lic = {d.metadata["Name"].lower(): dist_license(d) for d in md.distributions()}
    if "click" in lic:
        assert lic["click"].allowed
    if "hypothesis" in lic:  # MPL-2.0
        assert not lic["hypothesis"].allowed


# -- the trainer on a tiny random Gemma 3 -------------------------------------------------------

TINY = Gemma3Config(
    vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=512,
    sliding_window=8, sliding_window_pattern=2)


def tiny_model() -> Gemma3ForCausalLM:
    torch.manual_seed(0)
    return Gemma3ForCausalLM(TINY)


def _cfg(out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        out_dir=str(out), seq_len=128, grad_accum=2, steps=8, warmup=2, lr=5e-3,
        eval_share=0.34, eval_rows=2, eval_every=3, save_every=2, keep=2, threads=1,
        csv=str(out / "loss.csv"))
    base.update(kw)
    return recipe_config("gemma3-fim", **base)


def test_train_resumes_exactly_and_checkpoints_hold_only_lora(tmp_path: Path) -> None:
    corpus = Corpus("repo", {p: t * 3 for p, t in REPO.items() if t})
    tok = ByteTokenizer()
    full = train(_cfg(tmp_path / "a"), model=tiny_model(), tok=tok, corpus=corpus,
                 meta={"corpus": "c1"})
    assert full.step == 8 and full.evals[0]["step"] == 0
    train(_cfg(tmp_path / "b", stop_after=3), model=tiny_model(), tok=tok, corpus=corpus,
          meta={"corpus": "c1"})
    before = checkpoints(tmp_path / "b")
    resumed = train(_cfg(tmp_path / "b"), model=tiny_model(), tok=tok, corpus=corpus,
                    meta={"corpus": "c1"})
    # What the run found at its start stays (committed, or an adapter's source); of what it
    # wrote, the newest keep=2.
    after = checkpoints(tmp_path / "b")
    assert set(before) <= set(after) and len(after) == len(before) + 2
    key = ("step", "loss", "lr", "tokens", "loss_tokens", "grad_norm")
    assert [tuple(h[k] for k in key) for h in resumed.history] == \
        [tuple(h[k] for k in key) for h in full.history]
    assert resumed.evals == full.evals
    a = torch.load(checkpoints(tmp_path / "a")[-1], weights_only=False)
    b = torch.load(checkpoints(tmp_path / "b")[-1], weights_only=False)
    assert a["lora"].keys() == b["lora"].keys()
    assert all(torch.equal(a["lora"][k], b["lora"][k]) for k in a["lora"])
    assert a["data_pos"] == b["data_pos"] and a["trained_tokens"] == b["trained_tokens"]
    # Only LoRA tensors of the attention projections: 2 layers x 4 projections x (A, B).
    assert len(a["lora"]) == 16 and all(".lora_" in k for k in a["lora"])
    assert all(any(p in k for p in ("q_proj", "k_proj", "v_proj", "o_proj")) for k in a["lora"])
    assert len(checkpoints(tmp_path / "a")) == 2  # keep=2
    # Tokens: every trained token counted, loss tokens a strict subset.
    assert 0 < full.loss_tokens < full.trained_tokens <= 8 * 2 * 128
    lines = (tmp_path / "a" / "loss.csv").read_text().splitlines()
    assert lines[0].startswith("step,loss,eval_loss") and lines[1].startswith("0,,")
    assert len(lines) == 2 + 8
    # Another corpus cannot continue this run's data position.
    with pytest.raises(ValueError, match="corpus"):
        train(_cfg(tmp_path / "b", steps=9), model=tiny_model(), tok=tok, corpus=corpus,
              meta={"corpus": "c2"})


def test_training_lowers_the_middle_loss(tmp_path: Path) -> None:
    corpus = Corpus("repo", {p: t for p, t in REPO.items() if t})
    res = train(_cfg(tmp_path, steps=30, save_every=30, eval_share=0.0, lr=2e-2),
                model=tiny_model(), tok=ByteTokenizer(), corpus=corpus)
    first = sum(h["loss"] for h in res.history[:5]) / 5
    last = sum(h["loss"] for h in res.history[-5:]) / 5
    assert last < first


# -- the real vocabulary: training tokenizes as the daemon does ---------------------------------

@pytest.mark.model
def test_gguf_tokenizer_matches_the_daemons(session, embedded_model: Path) -> None:  # noqa: ANN001
    from model.tokenizer import GGUFTokenizer

    ours = GGUFTokenizer(embedded_model)
    daemon = session.tokenizer
    try:
        assert (ours.bos_id, ours.add_bos) == (daemon.bos_id, daemon.add_bos) == (2, True)
        assert ours.eos_id == daemon.token_id("<eos>") == 1
        texts = ["", "def f(x):\n    return x  # ünïcode ✓\n", "\t\tif a<|b|>c:\n",
                 "<|fim_prefix|>", "<|file_separator|>", "<eos><bos><start_of_turn>",
                 "    \n\n\n        x = '''\r\n'''", "日本語のコメント", "<unused61>"]
        for t in texts:
            assert ours.tokenize(t) == daemon.tokenize(t), t
        # Text in special-token spelling stays text.
        assert 1 not in ours.tokenize("<eos>") and len(ours.tokenize("<|fim_middle|>")) == 6
        for order in (Order.PSM, Order.SPM):
            kw = dict(prefix="import os\ndef main(", suffix=")\n", budget=Budget(total=256),
                      path="pkg/main.py", context=[ContextFile("pkg/util.py", "X = 1\n")],
                      order=order)
            assert assemble(G3, ours, **kw).tokens == assemble(G3, daemon, **kw).tokens
    finally:
        ours.close()


# -- recipes, the command line and the committed runs ------------------------------------------

def test_cli_maps_options_onto_recipes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from lsp_server.cli.main import main as codefill
    from model import train as trainer

    seen: list[TrainConfig] = []

    def fake(cfg: TrainConfig, **options: object) -> object:
        seen.append(cfg)
        return trainer.TrainResult(step=0)

    monkeypatch.setattr(trainer, "train", fake)
    new = str(tmp_path / "new")  # no checkpoint there: a new run takes the options given
    assert codefill(["train", "--gemma3-fim", "--out", new, "--time-limit", "60"]) == 0
    assert codefill(["train", "--gemma3-fim", "--out", new, "--lr", "1e-4"]) == 0
    assert codefill(["train", "--gemma3-fim", "--recipe", "editor", "--out", new]) == 0
    assert codefill(["train", "--recipe", "gemma3-fim-editor", "--out", new]) == 0
    a, b, c, d = seen
    assert (a.recipe, a.time_limit, a.lr, a.steps, a.threads) == ("gemma3-fim", 60.0, 3e-4,
                                                                  5000, 1)
    assert (b.lr, b.time_limit, b.lora_rank, b.targets) == (1e-4, None, 8, a.targets)
    assert c == d and (c.recipe, c.line_rate, c.lr) == ("gemma3-fim-editor", 0.8, 5e-4)
    assert codefill(["train", "--recipe", "editor"]) != 0  # the short name needs --gemma3-fim


def test_unknown_recipe_is_rejected_with_the_known_names(capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    from lsp_server.cli.main import main as codefill
    from model import train_gemma3

    assert codefill(["train", "src", "--out", "o", "--recipe", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown training recipe 'nope'" in err and len(err.splitlines()) == 1
    assert all(name in err for name in RECIPES)
    with pytest.raises(ValueError, match="'nope'.*gemma3-fim-editor"):
        train(TrainConfig(recipe="nope", out_dir="o", corpus="src"))
    with pytest.raises(SystemExit):
        train_gemma3.main(["--recipe", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_recipes_are_valid_run_settings() -> None:
    for name, recipe in RECIPES.items():
        cfg = recipe_config(name, out_dir="o", corpus="src", init_from="ck")
        FimRates(cfg.fim_rate, cfg.spm_rate, cfg.line_rate, cfg.max_lines)
        assert cfg.recipe == name and (cfg.lora_rank > 0 or not recipe.lora_only)
        assert TEMPLATES[cfg.template].is_fim
    with pytest.raises(ValueError, match="lora_rank must be positive"):
        train(recipe_config("gemma3-fim", out_dir="o", lora_rank=0))


def _stand_in(lora: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Modules named like the checkpoint's, holding trainable tensors of its shapes."""
    root = torch.nn.Module()
    for name, t in lora.items():
        *path, leaf = name.split(".")
        m = root
        for part in path:
            if not hasattr(m, part):
                m.add_module(part, torch.nn.Module())
            m = getattr(m, part)
        m.register_parameter(leaf, torch.nn.Parameter(torch.zeros_like(t)))
    return root


@pytest.mark.parametrize("recipe", ["gemma3-fim", "gemma3-fim-editor"])
def test_committed_checkpoints_resume(recipe: str) -> None:
    from model.train import optimizer
    from model.train_state import restore

    cfg = recipe_config(recipe)
    found = checkpoints(Path(cfg.out_dir))
    if not found:
        pytest.skip(f"no committed checkpoint in {cfg.out_dir}")
    st = torch.load(found[-1], map_location="cpu", weights_only=True)
    # A plain re-run keeps the run's saved settings, the run-local ones aside.
    resumed = recipe_config(recipe, **{k: v for k, v in st["config"].items()
                                       if k not in RUN_LOCAL})
    assert config_for(recipe, {"lr": 1.0, "steps": 1}) == resumed
    model = _stand_in(st["lora"])
    at = restore(found[-1], model, optimizer(model, resumed), {"corpus": st["meta"]["corpus"]})
    assert (at.step, at.data_pos, at.trained_tokens) == (st["step"], tuple(st["data_pos"]),
                                                        st["trained_tokens"])
    assert all(torch.equal(p, st["lora"][n]) for n, p in model.named_parameters())
    with pytest.raises(ValueError, match="corpus"):
        restore(found[-1], model, optimizer(model, resumed), {"corpus": "another"})
