"""HumanEval infilling tasks: the benchmark registry, loading, and the editor's view of a task.

A task is ``prompt`` + hole + ``suffix``. In the single- and multi-line files the hole is whole
lines (the prompt ends with a newline and so does the masked text). An editor never shows a hole
of zero lines: the user's cursor sits on a blank line where the code goes, so the document the
pipeline sees is ``prompt`` + cursor + ``"\\n" + suffix``, and a finished suggestion carries no
final newline (the ``trailing_whitespace`` post-processor strips it). :meth:`Task.program`
rebuilds the file the same way, so the product's own output is what gets executed.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import CodefillError

DATA_DIR = Path(__file__).resolve().parent / "data" / "humaneval_infilling"
FIELDS = ("task_id", "entry_point", "prompt", "suffix", "canonical_solution", "test")


class BenchmarkError(CodefillError):
    """An unknown benchmark name or an unreadable data file."""


@dataclass(frozen=True)
class Benchmark:
    """One data file and how it is run by default."""

    name: str
    file: str
    lines: str
    """Suggestion length mode: 'single', 'multi' or 'auto' (the server's own decision)."""
    max_tokens: int
    """Generated tokens per task; enough for the masked text of almost every task."""


# Benchmark name → file and defaults (the CLI's --benchmark choices come from here).
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("single-line", "HumanEval-SingleLineInfilling.jsonl.gz", "single", 64),
    Benchmark("multi-line", "HumanEval-MultiLineInfilling.jsonl.gz", "multi", 256),
    Benchmark("random-span", "HumanEval-RandomSpanInfillingLight.jsonl.gz", "auto", 128),
)}


@dataclass(frozen=True)
class Task:
    task_id: str
    entry_point: str
    prompt: str
    suffix: str
    canonical_solution: str
    test: str

    @property
    def whole_lines(self) -> bool:
        """The hole is whole lines (see the module docstring)."""
        return (not self.prompt or self.prompt.endswith("\n")) \
            and self.canonical_solution.endswith("\n")

    @property
    def editor_prefix(self) -> str:
        return self.prompt

    @property
    def editor_suffix(self) -> str:
        """Text after the cursor in the editor: a blank line's end, then the suffix."""
        return "\n" + self.suffix if self.whole_lines else self.suffix

    @property
    def expected(self) -> str:
        """The masked text as a suggestion would carry it (no final newline for whole lines)."""
        return self.canonical_solution[:-1] if self.whole_lines else self.canonical_solution

    def program(self, completion: str) -> str:
        """The file with ``completion`` at the cursor, its test, and the call of the test."""
        return (self.editor_prefix + completion + self.editor_suffix + "\n" + self.test
                + f"\n\ncheck({self.entry_point})\n")


def exact_match(completion: str, expected: str) -> bool:
    """Equal up to trailing blanks on each line and blank lines at either end."""
    def norm(s: str) -> str:
        return "\n".join(line.rstrip() for line in s.split("\n")).strip("\n")
    return norm(completion) == norm(expected)


def benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise BenchmarkError(f"unknown benchmark '{name}'",
                             f"use one of {', '.join(BENCHMARKS)}") from None


def _rows(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            yield from enumerate(f, 1)
    except FileNotFoundError:
        raise BenchmarkError(f"benchmark data file not found: {path}",
                             "reinstall codefill or pass --data-dir DIR") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        # gzip raises BadGzipFile (an OSError) for a bad header, EOFError when cut short.
        raise BenchmarkError(f"corrupted benchmark data file {path}: {exc or type(exc).__name__}",
                             "restore it from the repository (git checkout) or pass "
                             "--data-dir DIR") from None


def load_tasks(name: str, *, limit: int | None = None, every: int = 1, offset: int = 0,
               data_dir: Path | None = None) -> list[Task]:
    """Tasks of benchmark ``name``: every ``every``-th from ``offset``, at most ``limit``.

    The whole file is read and checked first, so a damaged line anywhere is reported even when
    the selection would skip it.
    """
    bench = benchmark(name)
    if every < 1 or offset < 0 or (limit is not None and limit < 0):
        raise BenchmarkError(f"bad task selection (limit={limit}, every={every}, "
                             f"offset={offset})", "use --limit ≥ 0, --every ≥ 1, --offset ≥ 0")
    path = (data_dir or DATA_DIR) / bench.file
    tasks: list[Task] = []
    for lineno, line in _rows(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            missing = [k for k in FIELDS if not isinstance(row.get(k), str)]
        except (json.JSONDecodeError, AttributeError) as exc:
            raise BenchmarkError(f"corrupted benchmark data file {path}: line {lineno} is not "
                                 f"a JSON object ({exc})", "restore it from the repository "
                                 "(git checkout) or pass --data-dir DIR") from None
        if missing:
            raise BenchmarkError(f"corrupted benchmark data file {path}: line {lineno} lacks "
                                 f"text field(s) {', '.join(missing)}", "restore it from the "
                                 "repository (git checkout) or pass --data-dir DIR")
        tasks.append(Task(**{k: row[k] for k in FIELDS}))
    if not tasks:
        raise BenchmarkError(f"benchmark data file {path} holds no tasks",
                             "restore it from the repository (git checkout)")
    chosen = tasks[offset::every]
    return chosen if limit is None else chosen[:limit]
