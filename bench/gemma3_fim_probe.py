"""Does the Gemma 3 FIM adapter know the layout? Loss by middle position, base vs checkpoints.

    .venv/bin/python bench/gemma3_fim_probe.py [--examples 24] [CHECKPOINT.pt ...]

The held-out loss of the training run is a per-token average over whole middles (~170 tokens
each), where the layout decision -- what the first token after ``<|fim_middle|>`` is, and when
``<eos>`` ends the middle -- is 2 tokens in 170 and drowns. This probe takes held-out files
(never training targets), cuts each at the same two points in PSM and in SPM order (with the
training's repository context), and reports per order and per model: the first middle token's
loss and top-1 accuracy, the loss of tokens 2-8 and of the rest, and the end token's loss and
how often it is the argmax where the middle ends. Without arguments it probes the newest
checkpoint of the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lsp_server.prompt.templates import Order, get_template  # noqa: E402
from model.data.dataset import DataConfig, RowStream  # noqa: E402
from model.data.fim import Example, FimRates, Layout  # noqa: E402
from model.gemma3 import Gemma3ForCausalLM  # noqa: E402
from model.lora import apply_lora  # noqa: E402
from model.recipes import GEMMA3_OUT  # noqa: E402
from model.train_state import checkpoints  # noqa: E402

ORDERS = {Order.PSM: FimRates(1.0, 0.0), Order.SPM: FimRates(1.0, 1.0)}


def examples(stream: RowStream, n: int, seed: int) -> dict[Order, list[Example]]:
    """``n`` held-out examples per order; the same cut points for both orders."""
    out: dict[Order, list[Example]] = {o: [] for o in ORDERS}
    base_cfg = stream.builder.cfg
    paths = list(stream.targets)
    random.Random(seed).shuffle(paths)
    for path in paths:
        if len(out[Order.PSM]) >= n:
            break
        built = {}
        for order, rates in ORDERS.items():
            stream.builder.cfg = dataclasses.replace(base_cfg, rates=rates)
            built[order] = stream.builder.build(path, random.Random(f"{seed}:{path}"))
        # Keep examples whose middle has text and survived the row limit whole (ends with the
        # end token), so "first token" and "end token" mean the same in both orders.
        if all(ex.n_target and ex.n_target >= 2 and len(ex) <= base_cfg.seq_len + 1
               for ex in built.values()):
            for order, ex in built.items():
                out[order].append(ex)
    stream.builder.cfg = base_cfg
    return out


@torch.no_grad()
def measure(model: Gemma3ForCausalLM, exs: list[Example], end_id: int) -> dict[str, float]:
    first, first_ok, early, rest, end, end_ok = [], [], [], [], [], []
    for ex in exs:
        ids = torch.tensor(ex, dtype=torch.long)[None]  # (1, T)
        n, T = ex.n_target, len(ex)
        keep = torch.zeros(1, T - 1, dtype=torch.bool)
        keep[0, T - 1 - n:] = True  # the positions that predict the n targets
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(ids[:, :-1], logits_at=keep).float()  # (n, vocab)
        labels = ids[0, T - n:]  # (n,)
        ce = F.cross_entropy(logits, labels, reduction="none")  # (n,)
        top = logits.argmax(-1) == labels
        assert int(labels[-1]) == end_id
        first.append(float(ce[0]))
        first_ok.append(float(top[0]))
        early.extend(ce[1:min(8, n - 1)].tolist())
        rest.extend(ce[8:n - 1].tolist())
        end.append(float(ce[-1]))
        end_ok.append(float(top[-1]))
    mean = lambda xs: sum(xs) / max(1, len(xs))  # noqa: E731
    return {"first": mean(first), "first_top1": mean(first_ok), "early": mean(early),
            "rest": mean(rest), "end": mean(end), "end_top1": mean(end_ok)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="*", type=Path)
    ap.add_argument("--examples", type=int, default=24, help="held-out examples per order")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--venv", default=str(ROOT / ".venv"))
    a = ap.parse_args(argv)
    from lsp_server.models.resolve import resolve_model
    from model.data.sources import build_corpus
    from model.gguf_load import load_gemma3_gguf
    from model.tokenizer import GGUFTokenizer

    torch.set_num_threads(a.threads)
    ckpts = a.checkpoints or checkpoints(GEMMA3_OUT)[-1:]
    path = resolve_model("")
    t = time.perf_counter()
    corpus = build_corpus(a.venv, bench_dir=str(ROOT.parent / "shared" / "benchmarks")).corpus
    tok = GGUFTokenizer(path)
    layout = Layout(tok, get_template("gemma3-fim"), middle_loss=True)
    stream = RowStream(corpus, layout, DataConfig(), split="eval")
    exs = examples(stream, a.examples, a.seed)
    n_mid = sum(ex.n_target for ex in exs[Order.PSM])
    print(f"{len(exs[Order.PSM])} held-out examples per order ({n_mid:,} middle tokens incl. "
          f"the end token; {time.perf_counter() - t:.0f} s to build)", flush=True)
    model = load_gemma3_gguf(path)
    model.eval()
    rows: list[tuple[str, Order, dict[str, float]]] = []
    for order in ORDERS:
        rows.append(("base", order, measure(model, exs[order], layout.end_id)))
    if ckpts:
        first = torch.load(ckpts[0], map_location="cpu", weights_only=False)
        apply_lora(model, first["lora_rank"], first["lora_alpha"], targets=tuple(first["targets"]))
        params = dict(model.named_parameters())
        for ck in ckpts:
            st = torch.load(ck, map_location="cpu", weights_only=False)
            with torch.no_grad():
                for name, tensor in st["lora"].items():
                    params[name].copy_(tensor)
            label = f"{ck.stem} ({st['trained_tokens']:,} tokens)"
            for order in ORDERS:
                rows.append((label, order, measure(model, exs[order], layout.end_id)))
    print("\n| model | order | first token: loss / top-1 | tokens 2-8 loss | rest loss "
          "| end token: loss / top-1 |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for label, order, m in rows:
        print(f"| {label} | {order.name} | {m['first']:.2f} / {100 * m['first_top1']:.0f} % "
              f"| {m['early']:.2f} | {m['rest']:.2f} | {m['end']:.2f} / "
              f"{100 * m['end_top1']:.0f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
