"""The quantization report: one row per produced file, as a table and as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from lsp_server.models.gguf_header import read_header

from .evaluate import EvalResult
from .outputs import atomic_output


@dataclass
class FileFacts:
    size_bytes: int
    n_params: int
    tensor_bytes: int

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.tensor_bytes / self.n_params if self.n_params else 0.0


def file_facts(path: Path) -> FileFacts:
    """Size, parameter count and tensor bytes of a GGUF (from its header)."""
    header = read_header(path)
    return FileFacts(path.stat().st_size, sum(t.n_elements for t in header.tensors),
                     sum(t.n_bytes for t in header.tensors))


@dataclass
class ReportRow:
    type: str
    path: str
    size_bytes: int
    n_params: int
    bits_per_weight: float
    seconds: float
    """Time to produce this file (conversion and/or quantization)."""
    produced_by: str
    """'converter' (this package's writer) or 'llama.cpp' (llama_model_quantize)."""
    eval: EvalResult | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["eval"] = self.eval.to_json() if self.eval else None
        return d


@dataclass
class Report:
    source: str
    source_kind: str
    """'checkpoint' or 'gguf'."""
    rows: list[ReportRow] = field(default_factory=list)
    corpus: str | None = None
    corpus_chars: int | None = None
    threads: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "source_kind": self.source_kind, "corpus": self.corpus,
                "corpus_chars": self.corpus_chars, "threads": self.threads,
                "results": [r.to_json() for r in self.rows]}

    def write_json(self, path: Path) -> None:
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


_COLUMNS: list[tuple[str, Callable[[ReportRow], str]]] = [
    ("TYPE", lambda r: r.type),
    ("SIZE MiB", lambda r: _mib(r.size_bytes)),
    ("BPW", lambda r: f"{r.bits_per_weight:.2f}"),
    ("PPL", lambda r: f"{r.eval.perplexity:.4f}" if r.eval else "-"),
    ("PROMPT tok/s", lambda r: f"{r.eval.prompt_tokens_per_s:.1f}" if r.eval else "-"),
    ("GEN tok/s", lambda r: f"{r.eval.generation_tokens_per_s:.1f}" if r.eval else "-"),
    ("TIME s", lambda r: f"{r.seconds:.2f}"),
    ("BY", lambda r: r.produced_by),
    ("FILE", lambda r: r.path),
]


def format_table(report: Report) -> str:
    cells = [[h for h, _ in _COLUMNS]] + [[f(r) for _, f in _COLUMNS] for r in report.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.rjust(w) if 0 < i < len(widths) - 2 else c.ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in cells]
    ev = next((r.eval for r in report.rows if r.eval), None)
    if ev is not None:
        lines.append(f"perplexity: {ev.chunks} chunk(s) of {ev.ctx} tokens, {ev.scored_tokens} "
                     f"scored tokens of {report.corpus}; speed: {ev.prompt_tokens}-token prompt, "
                     f"{ev.generated_tokens} generated tokens, {report.threads} thread(s)")
    for r in report.rows:
        for note in r.notes:
            lines.append(f"note: {r.type}: {note}")
    return "\n".join(lines)
