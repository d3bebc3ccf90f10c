"""pass@k and the summary of a run."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from math import comb
from statistics import mean, median
from typing import Iterable, Sequence


@dataclass
class TaskResult:
    """One completion of one task and what running it gave (a line of the results JSONL)."""

    task_id: str
    sample: int
    completion: str
    passed: bool
    status: str
    """'passed', 'failed', 'timeout', 'blocked', or 'generation_error'."""
    reason: str
    exact_match: bool
    latency_s: float
    """Wall time of ModelSession.complete (prompt build, evaluation, generation, rules)."""
    tokens: int
    stop: str
    exec_s: float
    config: str = ""
    """Ablation configuration name ('' for a plain run)."""
    candidates: list[str] = field(default_factory=list)
    """Every ranked candidate when several were generated (``completion`` is the first)."""
    passed_any: bool | None = None
    """Whether any candidate passed (None in results written before candidates existed)."""

    def to_json(self) -> dict:
        return asdict(self)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from ``n`` samples of which ``c`` passed (Chen et al.,
    2021, "Evaluating Large Language Models Trained on Code", eq. 1)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


@dataclass
class Summary:
    tasks: int
    samples_per_task: int
    pass_at: dict[int, float]
    """k → mean pass@k over tasks, as a fraction."""
    exact_match: float
    """Share of sample-0 completions equal to the masked text (see data.exact_match)."""
    mean_latency_ms: float
    median_latency_ms: float
    tokens_generated: int
    mean_tokens: float
    statuses: dict[str, int] = field(default_factory=dict)
    stops: dict[str, int] = field(default_factory=dict)
    pass_list: float | None = None
    """Share of sample-0 tasks where any of the ranked candidates passed (several per cursor)."""
    mean_candidates: float | None = None


def summarize(results: Iterable[TaskResult], ks: Sequence[int] = (1,)) -> Summary:
    results = list(results)
    if not results:
        raise ValueError("no results to summarize")
    by_task: dict[str, list[TaskResult]] = defaultdict(list)
    for r in results:
        by_task[r.task_id].append(r)
    n = min(len(v) for v in by_task.values())
    pass_at = {k: mean(pass_at_k(len(v), sum(r.passed for r in v), k) for v in by_task.values())
               for k in ks if k <= n}
    first = [r for r in results if r.sample == 0]
    latencies = [r.latency_s * 1000 for r in results]
    # Stop reasons without the post-processing note, so the counts group.
    stops = Counter(r.stop.split(" (", 1)[0] for r in results)
    return Summary(
        tasks=len(by_task), samples_per_task=n, pass_at=pass_at,
        exact_match=mean(r.exact_match for r in first) if first else 0.0,
        mean_latency_ms=mean(latencies), median_latency_ms=median(latencies),
        tokens_generated=sum(r.tokens for r in results),
        mean_tokens=mean(r.tokens for r in results),
        statuses=dict(Counter(r.status for r in results).most_common()),
        stops=dict(stops.most_common()),
        pass_list=mean(bool(r.passed_any) for r in first)
        if first and any(r.candidates for r in first) else None,
        mean_candidates=mean(max(1, len(r.candidates)) for r in first)
        if first and any(r.candidates for r in first) else None)
