"""`codefill quantize`: Hugging Face checkpoint (or GGUF) → quantized GGUF(s), with a report.

A thin layer over :mod:`quantize.pipeline`; see docs/quantize.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = ("convert a Hugging Face Gemma/CodeGemma checkpoint (or requantize a GGUF) to quantized "
        "GGUF files, optionally with a perplexity/speed report")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from quantize.llama_quantize import QUANT_TYPES

    p.add_argument("source", metavar="SRC",
                   help="checkpoint directory (config.json, *.safetensors, tokenizer.model or "
                        "tokenizer.json) or a .gguf file to requantize")
    p.add_argument("--out", required=True, metavar="OUT.gguf",
                   help="output file; with several --type values '-TYPE' is added before the "
                        "extension, or '{type}' in the name is replaced")
    p.add_argument("--type", dest="types", action="append", metavar="TYPE",
                   help=f"output type, repeatable or comma-separated (default Q4_K_M): "
                        f"{', '.join(QUANT_TYPES)}")
    p.add_argument("--eval", dest="eval_corpus", metavar="CORPUS",
                   help="held-out code (a file or directory): report perplexity and tok/s")
    p.add_argument("--report", metavar="PATH",
                   help="where to write the JSON report (default: OUT with .report.json)")
    p.add_argument("--eval-ctx", type=int, default=512, help="perplexity chunk size in tokens")
    p.add_argument("--eval-chunks", type=int, default=8,
                   help="perplexity chunks at most (0: the whole corpus)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: automatic)")
    p.add_argument("--imatrix", metavar="FILE",
                   help="importance matrix from llama-imatrix (GGUF); needed by IQ1/IQ2 types")
    p.add_argument("--intermediate", default="auto", choices=("auto", "F32", "F16", "BF16"),
                   help="type of the temporary GGUF llama.cpp quantizes from (auto: the "
                        "checkpoint's own precision)")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from quantize.pipeline import QuantizeJob, run as run_job
    from quantize.report import format_table

    types = [t for spec in (args.types or ["Q4_K_M"]) for t in spec.split(",") if t.strip()]
    out = Path(args.out)
    report_path = Path(args.report) if args.report else (
        out.with_name(out.name.replace("{type}", "all")).with_suffix(".report.json")
        if args.eval_corpus else None)
    job = QuantizeJob(
        source=Path(args.source), out=out, types=types,
        eval_corpus=Path(args.eval_corpus) if args.eval_corpus else None,
        report_path=report_path, force=args.force, threads=args.threads,
        imatrix=Path(args.imatrix) if args.imatrix else None, intermediate=args.intermediate,
        eval_ctx=args.eval_ctx, eval_chunks=args.eval_chunks, progress=sys.stderr.isatty())
    report = run_job(job)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        print()
    else:
        print(format_table(report))
        if report_path is not None and report_path.exists():
            print(f"report: {report_path}")
    return 0
