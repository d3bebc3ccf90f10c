"""Run a benchmark: completions through the product's completion path, then sandboxed execution.

Completions come from :class:`lsp_server.completion.completer.Completer` — the budget, template,
prompt assembly, stop rules and post-processors the editor gets — so the score measures the product, not a separate prompt
path. Generation runs first (one engine, tasks in order), execution afterwards in a pool of
sandboxed subprocesses, so programs under test never compete with the model for the CPU while
latencies are measured.

An ablation is a set of named configurations (rule names switched off); for each task all of
them are generated back to back after the task's prompt has been put in the engine's KV cache,
so every configuration starts from the same state and only the generation is paid again.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol, Sequence

from ..completion.backend import CompletionBackend
from ..completion.completer import Completer as CodeCompleter
from ..completion.completer import Cursor
from ..completion.rules import POST_PROCESSORS, STOP_RULES
from ..engine.types import EngineError
from .data import Benchmark, Task, exact_match
from .metrics import TaskResult
from .sandbox import ExecResult, Limits, run_program

BASELINE = "all rules"
LANGUAGE = "python"
LINE_MODES: dict[str, bool | None] = {"single": True, "multi": False, "auto": None}
"""--lines value → ``single_line`` argument of Completer.complete (None: the server's own
decision for the cursor)."""


@dataclass(frozen=True)
class Generated:
    text: str
    tokens: int
    latency_s: float
    stop: str
    candidates: list[str] = field(default_factory=list)
    """All ranked candidates when several were generated (``text`` is the first)."""


class Completer(Protocol):
    def __call__(self, task: Task, *, sample: int, disabled: frozenset[str]) -> Generated: ...


class ModelCompleter:
    """Completions from a loaded backend through the completion path the editor uses."""

    def __init__(self, session: CompletionBackend, bench: Benchmark, *,
                 lines: str | None = None, max_tokens: int | None = None,
                 temperature: float = 0.0, seed: int = 0) -> None:
        self.completer = CodeCompleter(session)
        self.single_line = LINE_MODES[lines or bench.lines]
        self.max_tokens = max_tokens or bench.max_tokens
        self.temperature = temperature
        self.seed = seed

    def __call__(self, task: Task, *, sample: int, disabled: frozenset[str]) -> Generated:
        t0 = time.monotonic()
        # No file path: the benchmark defines the file's text and nothing else.
        c = self.completer.complete(Cursor(task.editor_prefix, task.editor_suffix,
                                           language=LANGUAGE),
                                    single_line=self.single_line, max_tokens=self.max_tokens,
                                    disabled_rules=disabled, temperature=self.temperature,
                                    seed=self.seed + sample,
                                    # Samples for pass@k are the model's own: ranking each
                                    # against deterministic branches would make them alike.
                                    candidates=1 if self.temperature > 0 else None)
        return Generated(text=c.text, tokens=c.stats.n_generated,
                         latency_s=time.monotonic() - t0, stop=c.stop,
                         candidates=[x.text for x in c.candidates])

    def prime(self, task: Task) -> None:
        """Put the task's prompt into the KV cache (one generated token, result dropped)."""
        self.completer.complete(Cursor(task.editor_prefix, task.editor_suffix, language=LANGUAGE),
                                single_line=self.single_line, max_tokens=1)


def canonical_completer(task: Task, *, sample: int, disabled: frozenset[str]) -> Generated:
    """The masked text itself, as a suggestion carries it: checks the harness, not a model."""
    return Generated(text=task.expected, tokens=0, latency_s=0.0, stop="canonical")


# Stop rules that return at once in one length mode (see the ``ctx.single_line`` checks at the
# top of line_end.py, indent_scope.py and suffix_echo.py): switching them off there changes
# nothing, so an ablation in that mode skips them instead of paying for identical runs.
INERT_RULES: dict[bool | None, frozenset[str]] = {
    True: frozenset({"indent_scope", "suffix_echo"}),
    False: frozenset({"line_end"}),
    None: frozenset(),
}


def ablation_configs(base: frozenset[str] = frozenset(), single_line: bool | None = None
                     ) -> dict[str, frozenset[str]]:
    """The baseline and each rule of the pipeline switched off alone (on top of ``base``),
    leaving out the rules that cannot act in the ``single_line`` mode."""
    configs = {BASELINE: base}
    for name in (*STOP_RULES, *POST_PROCESSORS):
        if name not in base and name not in INERT_RULES[single_line]:
            configs[f"-{name}"] = base | {name}
    return configs


Progress = Callable[[str], None]
PROGRESS_EVERY_S = 15.0


def run(completer: Completer, tasks: Sequence[Task], *,
        configs: Mapping[str, frozenset[str]] | None = None, samples: int = 1,
        limits: Limits = Limits(), workers: int = 2,
        progress: Progress | None = None) -> dict[str, list[TaskResult]]:
    """Generate and execute every (task, sample, configuration); results per configuration,
    in task order."""
    configs = dict(configs or {BASELINE: frozenset()})
    # With several configurations, every one of them must start from the same engine state: a
    # prompt evaluated fresh and one reused from the KV cache give slightly different logits
    # (another batch layout), which flips greedy near-ties. Priming puts each task's prompt in
    # the cache first, so a difference between configurations is the rule's doing.
    prime = getattr(completer, "prime", None) if len(configs) > 1 else None
    pending: list[tuple[str, Task, int, Generated | None, str]] = []
    t0 = last = time.monotonic()
    for i, task in enumerate(tasks, 1):
        if prime is not None:
            try:
                prime(task)
            except EngineError:
                pass  # the configurations will report the failure themselves
        for sample in range(samples):
            for name, disabled in configs.items():
                try:
                    gen, err = completer(task, sample=sample, disabled=disabled), ""
                except EngineError as exc:  # one bad generation must not end the run
                    gen, err = None, f"generation failed: {exc}"
                pending.append((name, task, sample, gen, err))
        if progress and (time.monotonic() - last >= PROGRESS_EVERY_S or i == len(tasks)):
            last = time.monotonic()
            progress(f"generated {i}/{len(tasks)} tasks ({last - t0:.0f} s)")

    def execute(item: tuple[str, Task, int, Generated | None, str]) -> TaskResult:
        name, task, sample, gen, err = item
        if gen is None:
            ex = ExecResult(status="generation_error", reason=err, seconds=0.0)
            gen = Generated(text="", tokens=0, latency_s=0.0, stop="error")
        else:
            ex = run_program(task.program(gen.text), limits)
        # pass@list: does any candidate pass (what a user who cycles through them gets)?
        any_passed = ex.passed
        for other in gen.candidates[1:]:
            if any_passed:
                break
            any_passed = run_program(task.program(other), limits).passed
        return TaskResult(task_id=task.task_id, sample=sample, completion=gen.text,
                          passed=ex.passed, status=ex.status, reason=ex.reason,
                          exact_match=exact_match(gen.text, task.expected),
                          latency_s=gen.latency_s, tokens=gen.tokens, stop=gen.stop,
                          exec_s=ex.seconds, config=name if len(configs) > 1 else "",
                          candidates=gen.candidates, passed_any=any_passed)

    t1 = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        done = list(pool.map(execute, pending))
    if progress:
        progress(f"executed {len(done)} programs in {time.monotonic() - t1:.0f} s "
                 f"({workers} workers)")
    out: dict[str, list[TaskResult]] = {name: [] for name in configs}
    for (name, *_), result in zip(pending, done):
        out[name].append(result)
    return out
