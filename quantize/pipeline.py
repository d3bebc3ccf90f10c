"""`codefill quantize` end to end: checkpoint or GGUF → one or more types → report.

Order matters for "no partial output": every input and every output path is validated before
the first byte is written; each file is then produced under a temporary name and renamed when
complete. Types the converter writes itself (F32, F16, BF16, Q8_0) come straight from the
checkpoint; the others go through llama.cpp's quantizer from a lossless intermediate GGUF
(the checkpoint's own precision), which is deleted at the end unless it was asked for.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .convert import DIRECT_TYPES, ConversionPlan, plan_conversion, write_gguf
from .errors import QuantizeError
from .hf_config import read_config
from .evaluate import evaluate, load_corpus
from .llama_quantize import canonical_type, quantize_gguf
from .outputs import atomic_output, check_free_space, check_output_path, temp_path_for
from .report import Report, ReportRow, file_facts

INTERMEDIATE_BY_DTYPE: dict[str, str] = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}


@dataclass
class QuantizeJob:
    source: Path
    out: Path
    types: list[str]
    eval_corpus: Path | None = None
    report_path: Path | None = None
    force: bool = False
    threads: int = 0
    imatrix: Path | None = None
    intermediate: str = "auto"
    eval_ctx: int = 512
    eval_chunks: int = 8
    eval_gen_tokens: int = 64
    progress: bool = False
    outputs: dict[str, Path] = field(default_factory=dict)


def output_paths(out: Path, types: list[str]) -> dict[str, Path]:
    """One type: ``out`` itself. Several: ``{type}`` in the name is replaced, else ``-TYPE`` is
    inserted before the extension (model.gguf → model-Q4_K_M.gguf)."""
    if "{type}" in out.name:
        return {t: out.with_name(out.name.replace("{type}", t)) for t in types}
    if len(types) == 1:
        return {types[0]: out}
    suffix = out.suffix or ".gguf"
    return {t: out.with_name(f"{out.stem}-{t}{suffix}") for t in types}


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"GGUF"
    except OSError:
        return False


class _Bar:
    """A tqdm bar on stderr when progress is wanted, else nothing."""

    def __init__(self, enabled: bool, total: int, desc: str, unit: str = "B") -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B",
                            file=sys.stderr, leave=False)
        self.done = 0

    def to(self, done: int, *_: object) -> None:
        if self.bar is not None and done > self.done:
            self.bar.update(done - self.done)
            self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _say(job: QuantizeJob, msg: str) -> None:
    if job.progress:
        print(f"codefill: {msg}", file=sys.stderr, flush=True)


def _convert(job: QuantizeJob, plan: ConversionPlan, path: Path, desc: str) -> float:
    t0 = time.monotonic()
    bar = _Bar(job.progress, plan.data_bytes, desc)
    try:
        with atomic_output(path) as tmp:
            write_gguf(plan, tmp, bar.to)
    finally:
        bar.close()
    return time.monotonic() - t0


@contextlib.contextmanager
def _intermediate(job: QuantizeJob, plan: ConversionPlan, made: dict[str, Path],
                  kind: str) -> Iterator[tuple[Path, float]]:
    """A lossless GGUF to quantize from: one already produced, or a temporary one."""
    if kind in made:
        yield made[kind], 0.0
        return
    tmp = temp_path_for(job.out.parent / f"intermediate-{kind}.gguf")
    try:
        check_free_space(tmp.parent, plan.data_bytes, f"the {kind} intermediate")
        _say(job, f"converting {job.source} to a temporary {kind} GGUF")
        seconds = _convert(job, plan, tmp, f"convert {kind}")
        yield tmp, seconds
    finally:
        tmp.unlink(missing_ok=True)


def run(job: QuantizeJob) -> Report:
    """Produce every requested type (see module docstring) and, with a corpus, evaluate them."""
    types = list(dict.fromkeys(canonical_type(t) for t in job.types))
    if not types:
        raise QuantizeError("no output type given", "pass --type, e.g. --type Q4_K_M")
    outputs = output_paths(job.out.expanduser(), types)
    for path in outputs.values():
        check_output_path(path, force=job.force)
    if len(set(outputs.values())) != len(outputs):
        raise QuantizeError(f"several types would be written to {job.out}",
                            "put {type} in --out, e.g. --out model-{type}.gguf")
    if job.report_path is not None:
        check_output_path(job.report_path, force=job.force)
    if job.imatrix is not None and not job.imatrix.is_file():
        raise QuantizeError(f"importance matrix not found: {job.imatrix}",
                            "pass --imatrix with a file written by llama-imatrix")
    corpus = load_corpus(job.eval_corpus) if job.eval_corpus is not None else None
    job.outputs = outputs
    source = job.source.expanduser()
    if not source.exists():
        raise QuantizeError(f"source not found: {source}",
                            "pass a Hugging Face checkpoint directory or a .gguf file")

    report = Report(str(source), "gguf" if source.is_file() else "checkpoint",
                    corpus=str(job.eval_corpus) if job.eval_corpus else None,
                    corpus_chars=len(corpus) if corpus else None)
    if source.is_file():
        if not _is_gguf(source):
            raise QuantizeError(f"not a checkpoint directory or GGUF file: {source}",
                                "pass a Hugging Face checkpoint directory or a .gguf file")
        for t in types:
            _say(job, f"quantizing {source.name} to {t} with llama.cpp")
            q = quantize_gguf(source, outputs[t], t, threads=job.threads, imatrix=job.imatrix)
            report.rows.append(_row(t, outputs[t], q.seconds, "llama.cpp", q.notes))
    else:
        _from_checkpoint(job, source, types, outputs, report)

    if corpus is not None:
        from lsp_server.engine.llama_loader import default_threads

        report.threads = job.threads or default_threads()
        for row in report.rows:
            _say(job, f"evaluating {row.type}")
            bar = _Bar(job.progress, job.eval_chunks, f"perplexity {row.type}", unit="chunk")
            try:
                row.eval = evaluate(Path(row.path), corpus, ctx=job.eval_ctx,
                                    max_chunks=job.eval_chunks, threads=job.threads,
                                    n_gen=job.eval_gen_tokens, progress=bar.to)
            finally:
                bar.close()
        if job.report_path is not None:
            report.write_json(job.report_path)
    return report


def _row(t: str, path: Path, seconds: float, by: str, notes: list[str] | None = None) -> ReportRow:
    f = file_facts(path)
    return ReportRow(t, str(path), f.size_bytes, f.n_params, f.bits_per_weight, seconds, by,
                     notes=list(notes or []))


def _from_checkpoint(job: QuantizeJob, source: Path, types: list[str],
                     outputs: dict[str, Path], report: Report) -> None:
    direct = [t for t in types if t in DIRECT_TYPES]
    via_llama = [t for t in types if t not in DIRECT_TYPES]
    plans: dict[str, ConversionPlan] = {}
    try:
        for t in direct:  # validates the whole checkpoint before any output exists
            plans[t] = plan_conversion(source, t)
        kind = job.intermediate.upper()
        if via_llama:
            if kind == "AUTO":  # the checkpoint's own precision: lossless, no larger
                kind = INTERMEDIATE_BY_DTYPE.get(read_config(source)[1].torch_dtype, "F32")
            if kind not in ("F32", "F16", "BF16"):
                raise QuantizeError(f"intermediate type {job.intermediate!r} is not lossless "
                                    "enough to quantize from", "use auto, F32, F16 or BF16")
            if kind not in plans:
                plans[kind] = plan_conversion(source, kind)
        for t in direct:
            check_free_space(outputs[t].parent, plans[t].data_bytes, f"{outputs[t].name} ({t})")
        made: dict[str, Path] = {}
        for t in direct:
            _say(job, f"converting {source} to {t}")
            seconds = _convert(job, plans[t], outputs[t], f"convert {t}")
            made[t] = outputs[t]
            report.rows.append(_row(t, outputs[t], seconds, "converter"))
        if via_llama:
            with _intermediate(job, plans[kind], made, kind) as (inter, conv_seconds):
                for t in via_llama:
                    _say(job, f"quantizing to {t} with llama.cpp")
                    q = quantize_gguf(inter, outputs[t], t, threads=job.threads,
                                      imatrix=job.imatrix, allow_requantize=False)
                    notes = [f"from a {kind} intermediate converted in {conv_seconds:.2f} s"] \
                        if conv_seconds else [f"from the {kind} file above"]
                    report.rows.append(_row(t, outputs[t], q.seconds, "llama.cpp", notes))
    finally:
        for p in {id(p): p for p in plans.values()}.values():
            p.checkpoint.close()
