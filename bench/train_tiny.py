"""Train a few-million-parameter Gemma from scratch on the Python standard library, then serve it.

    .venv/bin/python bench/train_tiny.py [--minutes 10] [--work DIR] [--tasks 60] [--threads 1]
                                         [--png docs/figures/train_tiny_loss.png] [--json OUT]

Nothing is downloaded: the corpus is this interpreter's standard library source, read through
the daemon's filters (``model.data.corpus``). Steps:
1. a 4096-piece SentencePiece tokenizer on the training files (held-out files excluded);
2. the ``small`` config (~4.9M parameters) trained with ``model.train.train`` for a bounded time
   (the cosine schedule is sized from a measured step time), FIM rate 0.9, PSM/SPM 50/50,
   dependency-graph packing;
3. export (Hugging Face layout) → ``codefill quantize --type Q8_0`` → the daemon's
   ``ModelSession`` (template detected from the GGUF), for the untrained (step 0) and the trained
   model;
4. single-line infilling on held-out stdlib files: a random line's text (indentation kept in the
   prefix) is the middle, the rest of the file the prefix and suffix; repository context is
   what the daemon's selection picks for the file; exact match of the suggestion (stripped)
   with the line, PSM and SPM;
5. the loss curve (train and held-out eval) as a PNG, and a JSON of every number.

No weights are committed: the work directory defaults to a temporary one.
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lsp_server.cli.main import main as codefill  # noqa: E402
from lsp_server.config import Config  # noqa: E402
from lsp_server.completion.session import ModelSession  # noqa: E402
from lsp_server.context.graph import DependencyGraph  # noqa: E402
from lsp_server.completion.completer import Completer, Cursor  # noqa: E402
from lsp_server.context.packing import TokenCounter  # noqa: E402
from model.checkpoint import save_pretrained  # noqa: E402
from model.config import named_config  # noqa: E402
from model.data.corpus import read_corpus  # noqa: E402
from model.data.dataset import is_eval_path  # noqa: E402
from model.data.repo_select import select_for_target  # noqa: E402
from model.gemma import GemmaForCausalLM, lm_loss  # noqa: E402
from model.tokenizer import SentencePieceTokenizer, train_tokenizer  # noqa: E402
from model.train import TrainConfig, train  # noqa: E402

SEQ_LEN, MICRO_BATCH, EVAL_SHARE = 256, 8, 0.02
N_CTX, MAX_TOKENS = 1024, 48


def log(msg: str) -> None:
    print(f"[train_tiny] {msg}", file=sys.stderr, flush=True)


def step_seconds(vocab: int, threads: int) -> float:
    """Measured time of one optimizer step of the small config on random tokens."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = GemmaForCausalLM(named_config("small").with_vocab(vocab))
    opt = torch.optim.AdamW(m.parameters())
    x = torch.randint(0, vocab, (MICRO_BATCH, SEQ_LEN))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = m(x)
        s, n = lm_loss(logits, x)
        (s / n).backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def tasks_from(files: dict[str, str], held: list[str], n: int, seed: int = 0
               ) -> list[dict[str, str]]:
    """Single-line infilling tasks: one whole line's text of a held-out file is the middle."""
    rng = random.Random(seed)
    out: list[dict[str, str]] = []
    while len(out) < n:
        path = rng.choice(held)
        lines = files[path].splitlines(keepends=True)
        cands = [i for i, ln in enumerate(lines) if len(ln.strip()) >= 8 and ln.endswith("\n")
                 and not ln.lstrip().startswith("#")]
        if not cands:
            continue
        i = rng.choice(cands)
        line = lines[i]
        indent = line[: len(line) - len(line.lstrip())]
        out.append({"path": path, "prefix": "".join(lines[:i]) + indent,
                    "middle": line.strip(), "suffix": "\n" + "".join(lines[i + 1:])})
    return out


def exact_match(gguf: Path, tasks: list[dict[str, str]], files: dict[str, str], order: str,
                threads: int) -> dict[str, Any]:
    cfg = Config()
    cfg.engine.model = str(gguf)
    cfg.engine.context_size = N_CTX
    cfg.engine.threads = threads
    cfg.prompt.fim_order = order
    cfg.prompt.max_tokens = MAX_TOKENS
    cfg.engine.cold_share = 0.0  # a measurement: every prompt whole, never a short one
    graph = DependencyGraph.from_texts(files)
    hits, nonempty, sim, times, examples = 0, 0, 0.0, [], []
    with ModelSession(cfg) as s:
        s.engine.wait_ready()
        assert s.template.name == "codegemma", s.template.name
        count = TokenCounter(s.tokenizer)
        completer = Completer(s)
        budget = s.context_allowance(completer.budget())
        for t in tasks:
            ctx = select_for_target(graph, files, t["path"], count, budget).files
            c = completer.complete(Cursor(t["prefix"], t["suffix"], t["path"], language="python"),
                                   context=ctx, single_line=True)
            ok = c.text.strip() == t["middle"]
            hits += ok
            nonempty += bool(c.text.strip())
            sim += difflib.SequenceMatcher(None, c.text.strip(), t["middle"]).ratio()
            times.append(c.timings["total"])
            if len(examples) < 5:
                examples.append({"want": t["middle"], "got": c.text, "ok": ok, "stop": c.stop})
    return {"exact_match": hits / len(tasks), "hits": hits, "n": len(tasks),
            "nonempty": nonempty, "mean_similarity": sim / len(tasks),
            "ms_per_completion": 1000 * sum(times) / len(times), "examples": examples}


def quantize(hf: Path, out: Path) -> Path:
    rc = codefill(["quantize", str(hf), "--out", str(out), "--type", "Q8_0"])
    if rc != 0:
        raise SystemExit(f"codefill quantize failed ({rc})")
    return out


def plot(history: list[dict[str, float]], evals: list[dict[str, float]], png: Path,
         title: str) -> None:
    try:
        import matplotlib
    except ImportError:  # not a project dependency: the numbers are in the JSON anyway
        log("matplotlib is not installed (pip install matplotlib): no PNG")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], lw=1,
            label="train loss (FIM + plain, packed)")
    if evals:
        ax.plot([e["step"] for e in evals], [e["eval_loss"] for e in evals], "o-",
                label="held-out stdlib files")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy per token (nats)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--tasks", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "figures" / "train_tiny_loss.png")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--eval-only", action="store_true",
                    help="reuse the tokenizer, GGUFs and history of an earlier run in --work")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="codefill-train-tiny-"))
    work.mkdir(parents=True, exist_ok=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    res: dict[str, Any] = {"python": sys.version.split()[0], "threads": args.threads}

    t0 = time.perf_counter()
    corpus = read_corpus(stdlib)
    held = sorted(p for p in corpus.files if is_eval_path(p, EVAL_SHARE) and p.endswith(".py"))
    res["corpus"] = {"files": len(corpus.files), "chars": corpus.n_chars, "held_out": len(held),
                     "read_s": time.perf_counter() - t0}
    log(f"corpus: {len(corpus.files)} files, {corpus.n_chars / 1e6:.1f}M chars, "
        f"{len(held)} held out")

    if args.eval_only:
        return evaluate_only(args, work, corpus, held, res)
    tok_dir = work / "tokenizer"
    t0 = time.perf_counter()
    train_tokenizer((t for p, t in corpus.files.items() if not is_eval_path(p, EVAL_SHARE)),
                    tok_dir, args.vocab, max_chunks=6000)
    tok = SentencePieceTokenizer.from_checkpoint(tok_dir)
    sample = "".join(corpus.files[p] for p in held[:20])
    res["tokenizer"] = {"vocab": tok.vocab_size, "train_s": time.perf_counter() - t0,
                        "chars_per_token_held_out": len(sample) / len(tok.tokenize(sample))}
    log(f"tokenizer: {res['tokenizer']}")

    # Untrained baseline: the same init the trainer starts from (seed 0).
    torch.manual_seed(0)
    base = GemmaForCausalLM(named_config("small").with_vocab(tok.vocab_size))
    base_gguf = quantize(save_pretrained(base, work / "untrained", tokenizer_dir=tok_dir),
                         work / "untrained-q8_0.gguf")

    sec = step_seconds(tok.vocab_size, args.threads)
    budget = args.minutes * 60
    # Data generation and eval take time too: size the schedule for ~85 % of the pure step rate.
    steps = max(20, int(budget / sec * 0.85))
    res["calibrated_step_s"] = sec
    log(f"{sec:.2f} s per step of {MICRO_BATCH}x{SEQ_LEN} tokens: scheduling {steps} steps")
    cfg = TrainConfig(corpus=str(stdlib), out_dir=str(work / "run"), model="small",
                      tokenizer=str(tok_dir), seq_len=SEQ_LEN, micro_batch=MICRO_BATCH,
                      steps=steps, lr=2e-3, warmup=max(10, steps // 20), eval_share=EVAL_SHARE,
                      eval_every=max(10, steps // 10), eval_rows=32, save_every=10**9,
                      log_every=max(1, steps // 40), time_limit=budget, threads=args.threads)
    t0 = time.perf_counter()
    r = train(cfg)
    wall = time.perf_counter() - t0
    last = r.history[-1]
    res["training"] = {"params": r.params, "steps": r.step, "scheduled_steps": steps,
                       "tokens": last["tokens"], "train_seconds": last["elapsed"],
                       "wall_seconds_incl_setup": wall, "tok_s": last["tok_s"],
                       "first_loss": r.history[0]["loss"], "final_loss": last["loss"],
                       "evals": r.evals}
    log(f"training: {res['training']}")
    plot(r.history, r.evals, args.png,
         f"Gemma 'small' ({r.params / 1e6:.1f}M params) on the Python {res['python']} stdlib, "
         f"{last['elapsed'] / 60:.1f} min, {args.threads} CPU thread(s), "
         f"{last['tok_s']:,.0f} tok/s")

    trained_gguf = quantize(r.hf_dir, work / "trained-q8_0.gguf")  # type: ignore[arg-type]
    return infill(args, corpus, held, base_gguf, trained_gguf, res)


def evaluate_only(args: argparse.Namespace, work: Path, corpus: Any, held: list[str],
                  res: dict[str, Any]) -> int:
    hist = json.loads((work / "run" / "history.json").read_text())
    last = hist["history"][-1]
    res["training"] = {"params": hist["params"], "steps": last["step"], "tokens": last["tokens"],
                       "train_seconds": last["elapsed"], "tok_s": last["tok_s"],
                       "first_loss": hist["history"][0]["loss"], "final_loss": last["loss"],
                       "evals": hist["evals"]}
    return infill(args, corpus, held, work / "untrained-q8_0.gguf", work / "trained-q8_0.gguf",
                  res)


def infill(args: argparse.Namespace, corpus: Any, held: list[str], base_gguf: Path,
           trained_gguf: Path, res: dict[str, Any]) -> int:
    tasks = tasks_from(corpus.files, held, args.tasks)
    res["infill"] = {}
    for name, gguf in (("untrained", base_gguf), ("trained", trained_gguf)):
        for order in ("psm", "spm"):
            m = exact_match(gguf, tasks, corpus.files, order, args.threads)
            res["infill"][f"{name}/{order}"] = m
            log(f"{name} {order}: exact match {m['hits']}/{m['n']}, non-empty {m['nonempty']}, "
                f"similarity {m['mean_similarity']:.3f} ({m['ms_per_completion']:.0f} ms per "
                f"completion)")
    res["gguf_bytes"] = trained_gguf.stat().st_size
    text = json.dumps(res, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
