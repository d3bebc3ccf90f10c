"""Quality harness: HumanEval infilling through the real completion path, executed in a sandbox.

* :mod:`.data` — the benchmark registry, task loading, the editor's view of a task;
* :mod:`.sandbox` (+ :mod:`.sandbox_boot`) — bounded, isolated execution of generated programs;
* :mod:`.harness` — completions through :class:`~lsp_server.completion.session.ModelSession`,
  parallel execution, per-task results, ablation over the completion rules;
* :mod:`.metrics` — pass@k and the summary.
"""
