"""The adapter's learning curve on our own held-out data, and the checkpoint to stop at.

    .venv/bin/python bench/adapter_curve.py run CHECKPOINT.pt|ADAPTER.gguf ... \
        [--dir bench/results/adapter-curve] [--per-file 6] [--ctx-size 1024] [--threads 1]
    .venv/bin/python bench/adapter_curve.py summary [--dir …] [--baseline prefix-only]

``run`` evaluates each training checkpoint (a step checkpoint or the optimizer-free ``.pt`` a
run writes beside ``--adapter-out``; exported to a llama.cpp adapter first), adapter GGUF, or
``base`` (the base model with the adapter's template and no adapter: the curve at 0 tokens) on
the held-out repository lines (bench/heldout_lines.py: ``--per-file 6`` draws 560 lines from the
corpus's ~100 held-out files, which no training run ever targets), through the product's
completion path with the adapter's template in SPM order, one greedy candidate. Each result is
``DIR/NAME.jsonl`` (one row per line) and ``DIR/NAME.json`` (checkpoint, step, tokens seen,
options). A prefix-only baseline is ``heldout_lines.py --per-file 6 --ctx-size 1024 --threads 1
--candidates 1 --output DIR/prefix-only.jsonl``.

``summary`` prints exact match against tokens seen, each paired with the baseline (difference in
points and its standard error, lines gained and lost), writes ``DIR/curve.csv``, and names the
checkpoint with the best exact match: early stopping on held-out repository lines, never on
HumanEval, which only the acceptance run reads.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from candidate_selector import paired  # noqa: E402
from heldout_lines import held_out, run_lines  # noqa: E402

from lsp_server.cli.common import add_model_options, config_from_args  # noqa: E402

DEFAULT_DIR = ROOT / "bench" / "results" / "adapter-curve"
CACHE = Path.home() / ".cache" / "codefill" / "bench" / "adapter-curve"


def as_adapter(path: Path, base: str) -> tuple[Path | None, dict[str, Any]]:
    """The adapter GGUF for ``path`` (exported from a torch checkpoint when it is one; None for
    ``base``) and what the checkpoint says about itself."""
    if str(path) == "base":
        return None, {"tokens_seen": 0, "step": 0}
    if path.suffix == ".gguf":
        from lsp_server.models.adapter import read_adapter_info

        info = read_adapter_info(path)
        return path, {"tokens_seen": info.tokens_seen, "step": None}
    import torch

    from lsp_server.models.resolve import resolve_model
    from model.export_adapter import load_checkpoint, write_adapter

    ck = load_checkpoint(path)
    step = torch.load(path, map_location="cpu", weights_only=True).get("step")
    out = CACHE / f"{path.parent.name}-{path.stem}.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_adapter(out, ck.pairs, alpha=ck.alpha or 0.0, base=resolve_model(base),
                  template=ck.template or "gemma3-fim", tokens_seen=ck.tokens_seen or 0)
    return out, {"tokens_seen": ck.tokens_seen, "step": step}


def run(a: argparse.Namespace) -> int:
    a.dir.mkdir(parents=True, exist_ok=True)
    data = held_out(a.venv, a.bench_dir, a.per_file, a.seed)
    print(f"{len(data.tasks)} lines of {len(data.files)} held-out files", file=sys.stderr)
    for ck in a.checkpoints:
        name = a.name if a.name and len(a.checkpoints) == 1 else f"{ck.parent.name}-{ck.stem}"
        adapter, meta = as_adapter(ck, a.model)
        a.adapter, a.order, a.candidates, a.selector = str(adapter or ""), "spm", 1, None
        if adapter is None:
            a.template = "gemma3-fim"
        with (a.dir / f"{name}.jsonl").open("w") as out:
            rows, label = run_lines(config_from_args(a), data, a.max_tokens, out, f"{name} ")
        meta.update(checkpoint=str(ck), model=label, lines=len(rows),
                    exact=sum(r["exact"] for r in rows), per_file=a.per_file, seed=a.seed,
                    ctx_size=a.ctx_size, max_tokens=a.max_tokens)
        (a.dir / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"{name}: exact {meta['exact']}/{len(rows)}", file=sys.stderr)
    return 0


def _rows(path: Path) -> dict[tuple[str, int], bool]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            out[(r["path"], r["line"])] = bool(r["exact"])
    return out


def summary(a: argparse.Namespace) -> int:
    base_path = a.dir / f"{a.baseline}.jsonl"
    if not base_path.is_file():
        print(f"error: no baseline {base_path}", file=sys.stderr)
        return 2
    base = _rows(base_path)
    table = []
    for meta_path in sorted(a.dir.glob("*.json")):
        meta = json.loads(meta_path.read_text())
        got = _rows(meta_path.with_suffix(".jsonl"))
        keys = [k for k in base if k in got]
        diff, se = paired([got[k] for k in keys], [base[k] for k in keys])
        table.append({"name": meta_path.stem, "step": meta.get("step"),
                      "tokens_seen": meta.get("tokens_seen") or 0, "lines": len(keys),
                      "exact": sum(got[k] for k in keys), "baseline": sum(base[k] for k in keys),
                      "diff": round(diff, 2), "se": round(se, 2),
                      "gained": sum(got[k] and not base[k] for k in keys),
                      "lost": sum(base[k] and not got[k] for k in keys)})
    if not table:
        print(f"error: no adapter results in {a.dir}", file=sys.stderr)
        return 2
    table.sort(key=lambda r: r["tokens_seen"])
    n = len(base)
    print(f"baseline {a.baseline}: {sum(base.values())}/{n} "
          f"({100 * sum(base.values()) / n:.1f} %)")
    print("| checkpoint | step | tokens seen | exact match | vs baseline (points) | gained / lost |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in table:
        print(f"| {r['name']} | {r['step'] if r['step'] is not None else ''} | "
              f"{r['tokens_seen']:,} | {100 * r['exact'] / r['lines']:.1f} % ({r['exact']}) | "
              f"{r['diff']:+.1f} ± {r['se']:.1f} | {r['gained']} / {r['lost']} |")
    with (a.dir / "curve.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    best = max(table, key=lambda r: (r["exact"], -r["tokens_seen"]))
    print(f"stop at: {best['name']} ({best['exact']}/{best['lines']} exact, "
          f"{best['tokens_seen']:,} tokens seen)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="evaluate checkpoints or adapters on the held-out lines")
    r.add_argument("checkpoints", type=Path, nargs="+")
    r.add_argument("--name", help="result name (one checkpoint; default: run directory + file)")
    r.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    r.add_argument("--per-file", type=int, default=6)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--max-tokens", type=int, default=64)
    r.add_argument("--venv", default=str(ROOT / ".venv"))
    r.add_argument("--bench-dir", default=str(ROOT.parent / "shared" / "benchmarks"))
    add_model_options(r)
    r.set_defaults(ctx_size=1024, threads=1, time_budget_ms=60000)
    s = sub.add_parser("summary", help="the curve against tokens seen, and where to stop")
    s.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    s.add_argument("--baseline", default="prefix-only")
    a = ap.parse_args(argv)
    return run(a) if a.cmd == "run" else summary(a)


if __name__ == "__main__":
    raise SystemExit(main())
