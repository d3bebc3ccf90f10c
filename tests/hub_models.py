"""GGUFs for the local hub (tests/fake_hub.py): a tiny real CodeGemma-layout model that llama.cpp
runs, and vocabulary-only files of other FIM families, served under registry repo names."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from lsp_server.models.registry import registry
from lsp_server.models.paths import cache_dir
from tests.fake_hub import FakeHub
from tests.gguf_factory import write_family_gguf

#: Larger than huggingface_hub's 10 MiB download chunk, so that an interrupted download has
#: bytes on disk to resume from.
RUNNABLE_DIMS = dict(hidden_size=512, intermediate_size=1024, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=1, head_dim=128, vocab_size=0,
                     max_position_embeddings=2048)


def runnable_codegemma() -> Path:
    """A random-weight CodeGemma-layout GGUF (F32, ~26 MB) with CodeGemma's FIM tokens that
    answers "nacci": written once into the cache by the project's own converter.

    Random weights and Gemma's tied output head echo the last prompt token, <|fim_middle|>, a
    stop token (an empty answer). Here that token's embedding points the way of the token
    "nacci", which is longer, so greedy decoding says "nacci" (and again, which the repetition
    rule cuts): a model that gives an editor something to show."""
    import sentencepiece as spm

    from bench.common.checkpoints import make_config, write_checkpoint
    from quantize.convert import convert_checkpoint

    directory = cache_dir() / "test-models"
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "hub-codegemma-talking-f32.gguf"
    with open(directory / ".hub-codegemma-talking.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several test processes may want it at once
        if not out.is_file():
            ckpt = directory / "hub-codegemma-talking-ckpt"
            cfg = make_config("GemmaForCausalLM", **RUNNABLE_DIMS)
            weights = write_checkpoint(ckpt, cfg, std=0.04)
            sp = spm.SentencePieceProcessor(model_file=str(ckpt / "tokenizer.model"))
            embed = weights["model.embed_tokens.weight"]
            word, middle = sp.piece_to_id("nacci"), sp.piece_to_id("<|fim_middle|>")
            embed[word] *= 8
            embed[middle] = embed[word] * 0.5
            write_checkpoint(ckpt, cfg, std=0.04, weights=weights)
            tmp = out.with_suffix(".tmp.gguf")
            convert_checkpoint(ckpt, tmp, "F32", force=True)
            tmp.rename(out)
    return out


def serve_registry_files(hub: FakeHub, vocab_dir: Path) -> dict[str, Path]:
    """Serve, under the registry's own repo and file names: the runnable model as
    ``codegemma-2b`` (its default file), and vocabulary-only GGUFs of each family for the Qwen,
    StarCoder and DeepSeek entries' default files. Returns registry name → served file."""
    served: dict[str, Path] = {}
    families = {"qwen2.5-coder": "qwen2.5-coder", "starcoder": "starcoder",
                "deepseek-coder": "deepseek-coder"}
    for m in registry().values():
        f = m.file()
        if m.name == "codegemma-2b":
            path = runnable_codegemma()
        elif m.template in families:
            sub = vocab_dir / m.name
            sub.mkdir(parents=True, exist_ok=True)
            path = write_family_gguf(sub, families[m.template], context_length=m.context_length)
        else:
            continue
        hub.add_path(f.repo, f.file, path)
        served[m.name] = path
    return served


def hub_env(hub: FakeHub, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A user with an empty codefill cache (the embedded model shared from the real one),
    the hub at ``hub.url``, and no token or hub settings of the machine's."""
    cache = tmp_path / "cache"
    models = cache / "codefill" / "models"
    if not models.exists():
        from lsp_server.models.resolve import embedded_model_path

        real = embedded_model_path()
        models.mkdir(parents=True)
        for p in (real, real.with_name(real.name + ".ok")):
            (models / p.name).symlink_to(p) if p.suffix != ".ok" else \
                (models / p.name).write_text(p.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_ENDPOINT": hub.url, "XDG_CACHE_HOME": str(cache),
                "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"})
    env.update(extra)
    return env
