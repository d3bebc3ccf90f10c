"""The data card of the Gemma 3 FIM adapter's corpus (model/data/sources.py), as JSON.

    .venv/bin/python bench/gemma3_data_card.py [--json docs/figures/gemma3_fim_data_card.json]

Per source (the Python standard library, each allowed distribution of .venv): license and where
it was read, files read, exact and near-exact duplicates dropped, files dropped as evaluation
overlap, files and characters kept, Gemma 3 tokens (the GGUF's vocabulary through llama.cpp, as
the daemon tokenizes), and how many of them are held out (by path hash, never trained on). Also
every distribution left out and why (its license), and what the daemon's filters skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lsp_server.models.resolve import resolve_model  # noqa: E402
from model.data.dataset import is_eval_path  # noqa: E402
from model.data.sources import build_corpus  # noqa: E402
from model.tokenizer import GGUFTokenizer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", default=str(ROOT / ".venv"))
    ap.add_argument("--bench-dir", default=str(ROOT.parent / "shared" / "benchmarks"))
    ap.add_argument("--eval-share", type=float, default=0.02)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    sc = build_corpus(a.venv, bench_dir=a.bench_dir)
    tok = GGUFTokenizer(resolve_model(""))
    lic = {x.name: x for x in sc.licenses}
    sources: dict[str, dict] = {}
    for src, st in sc.stats.items():
        row = dict(st)
        if src == "python-stdlib":
            row.update(license="PSF-2.0", license_field="Python's own LICENSE", version=sys.version.split()[0])
        else:
            row.update(license=lic[src].license, license_field=lic[src].source,
                       version=lic[src].version)
        row.update(tokens=0, held_out_files=0, held_out_tokens=0, held_out_chars=0)
        sources[src] = row
    for path, text in sc.corpus.files.items():
        row = sources[sc.origin[path]]
        n = len(tok.tokenize(text))
        row["tokens"] += n
        if is_eval_path(path, a.eval_share):
            row["held_out_files"] += 1
            row["held_out_tokens"] += n
            row["held_out_chars"] += len(text)
    tok.close()
    total = {k: sum(r[k] for r in sources.values())
             for k in ("files_read", "exact_dups", "near_dups", "contaminated", "path_clash",
                       "files", "chars", "tokens", "held_out_files", "held_out_tokens",
                       "held_out_chars")}
    card = {"fingerprint": sc.fingerprint(), "total": total, "sources": sources,
            "excluded_distributions": {x.name: x.license for x in sc.licenses if not x.allowed},
            "filter_skips": sc.skipped, "eval_share": a.eval_share}
    text = json.dumps(card, indent=1)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n")
    print(json.dumps(total))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
