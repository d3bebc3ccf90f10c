"""Which LoRA capacity learns the editor recipe better: held-out middles, paired by example.

    .venv/bin/python bench/adapter_capacity.py CHECKPOINT.pt ... [--per-file 4] [--seed 0] \
        [--threads 1] [--json OUT.json]

Takes examples of the editor recipe (``gemma3-fim-editor``: line-aligned middles, SPM-heavy,
256-token examples with the daemon's repository context) from the corpus's held-out files, which
no run ever targets, ``--per-file`` cut points each, and scores every checkpoint on the same
examples -- whatever its LoRA rank and targets -- and the untrained base:

- the loss per middle token (nats, the middle's ``<eos>`` included), the figure a run's own
  ``eval loss`` reports on 16 rows, here on hundreds of examples and paired;
- how many middles greedy decoding would write exactly: every middle token, ``<eos>`` included,
  the argmax after the true tokens before it (greedy decoding follows exactly that path as long
  as it is right), so one forward pass gives exact match without generating.

Each checkpoint is paired with the first one given, example by example: the difference and its
standard error. The held-out repository lines of bench/adapter_curve.py measure the same thing
through the product's completion path; this is the cheaper, more sensitive measure for choosing
between training settings at equal tokens.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from candidate_selector import paired  # noqa: E402

from model.data.dataset import RowStream  # noqa: E402
from model.data.fim import Example, Layout  # noqa: E402
from model.lora import apply_lora  # noqa: E402
from model.recipes import data_config, recipe_config  # noqa: E402

RECIPE = "gemma3-fim-editor"


@dataclass
class Scores:
    """Per example: summed middle loss (nats), middle tokens, greedy-exact."""

    nats: list[float]
    tokens: list[int]
    exact: list[bool]

    def loss(self) -> float:
        return sum(self.nats) / max(1, sum(self.tokens))


def examples(stream: RowStream, per_file: int, seed: int) -> list[Example]:
    """``per_file`` examples from every held-out file whose middle is whole (ends with the end
    token within the example length)."""
    limit = (stream.cfg.example_len or stream.cfg.seq_len) + 1
    out: list[Example] = []
    for path in stream.targets:
        for k in range(per_file):
            ex = stream.builder.build(path, random.Random(f"{seed}:{k}:{path}"))
            if ex.n_target and ex.n_target >= 1 and len(ex) <= limit:
                out.append(ex)
    return out


@torch.no_grad()
def score(model: torch.nn.Module, exs: list[Example], end_id: int) -> Scores:
    s = Scores([], [], [])
    for ex in exs:
        ids = torch.tensor(ex, dtype=torch.long)[None]  # (1, T)
        n, T = ex.n_target, len(ex)
        keep = torch.zeros(1, T - 1, dtype=torch.bool)
        keep[0, T - 1 - n:] = True  # the positions that predict the n middle tokens
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(ids[:, :-1], logits_at=keep).float()  # (n, vocab)
        labels = ids[0, T - n:]  # (n,): the middle and its end token
        assert int(labels[-1]) == end_id, "an example's middle must end with the end token"
        s.nats.append(float(F.cross_entropy(logits, labels, reduction="sum")))
        s.tokens.append(n)
        s.exact.append(bool((logits.argmax(-1) == labels).all()))
    return s


def load(gguf: str, checkpoint: Path | None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The base (float32) with ``checkpoint``'s LoRA in place, and what the checkpoint says."""
    from model.gguf_load import load_gemma3_gguf

    model = load_gemma3_gguf(gguf)
    if checkpoint is None:
        return model.eval(), {"name": "base", "tokens_seen": 0, "rank": 0, "targets": []}
    st = torch.load(checkpoint, map_location="cpu", weights_only=False)
    targets = tuple(st["targets"])
    apply_lora(model, st["lora_rank"], st["lora_alpha"], targets=targets)
    params = dict(model.named_parameters())
    for name, tensor in st["lora"].items():
        params[name].data.copy_(tensor)
    info = {"name": f"{checkpoint.parent.name}/{checkpoint.stem}",
            "tokens_seen": int(st.get("trained_tokens", 0)), "rank": int(st["lora_rank"]),
            "targets": list(targets), "step": int(st.get("step", 0))}
    return model.eval(), info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--per-file", type=int, default=4, help="cut points per held-out file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--venv", default=str(ROOT / ".venv"))
    ap.add_argument("--json", type=Path, help="write the per-example scores here")
    a = ap.parse_args(argv)
    from lsp_server.models.resolve import resolve_model
    from lsp_server.prompt.templates import get_template
    from model.data.sources import build_corpus
    from model.tokenizer import GGUFTokenizer

    torch.set_num_threads(a.threads)
    for c in a.checkpoints:
        if not c.is_file():
            print(f"no such checkpoint: {c}", file=sys.stderr)
            return 2
    gguf = resolve_model("")
    t = time.perf_counter()
    cfg = recipe_config(RECIPE)
    corpus = build_corpus(a.venv, bench_dir=str(ROOT.parent / "shared" / "benchmarks")).corpus
    layout = Layout(GGUFTokenizer(gguf), get_template(cfg.template), middle_loss=True)
    stream = RowStream(corpus, layout, data_config(cfg), split="eval")
    exs = examples(stream, a.per_file, a.seed)
    print(f"{len(exs)} held-out examples from {len(stream.targets)} files "
          f"({sum(e.n_target for e in exs):,} middle tokens; "
          f"{time.perf_counter() - t:.0f} s to build)", flush=True)
    runs: list[tuple[dict[str, Any], Scores]] = []
    for ck in [None, *a.checkpoints]:
        t = time.perf_counter()
        model, info = load(gguf, ck)
        runs.append((info, score(model, exs, layout.end_id)))
        del model
        print(f"  {info['name']}: {time.perf_counter() - t:.0f} s", flush=True)
    first = runs[1][1]
    print("\n| checkpoint | LoRA | tokens seen | loss per middle token | vs first (± SE) "
          "| greedy-exact middles | vs first, points (± SE) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for info, s in runs:
        lora = f"rank {info['rank']}, {len(info['targets'])} projections" if info["rank"] else "—"
        per_ex = [x / n for x, n in zip(s.nats, s.tokens)]
        dl, sl = paired(per_ex, [x / n for x, n in zip(first.nats, first.tokens)], scale=1.0)
        de, se = paired([float(x) for x in s.exact], [float(x) for x in first.exact])
        print(f"| {info['name']} | {lora} | {info['tokens_seen']:,} | {s.loss():.4f} "
              f"| {dl:+.4f} ± {sl:.4f} | {100 * sum(s.exact) / len(s.exact):.1f} % "
              f"({sum(s.exact)}) | {de:+.1f} ± {se:.1f} |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({
            "recipe": RECIPE, "per_file": a.per_file, "seed": a.seed, "examples": len(exs),
            "runs": [{**info, "loss": s.loss(), "nats": s.nats, "tokens": s.tokens,
                      "exact": s.exact} for info, s in runs]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
