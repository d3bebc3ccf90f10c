"""`codefill complete FILE --line L --col C`: one suggestion at a cursor, printed to stdout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..completion.backend import CompletionBackend
from ..completion.completer import Completer, Cursor
from ..completion.factory import open_backend
from ..completion.privacy import refusal
from ..completion.session import ModelSession
from ..context import WorkspaceIndex
from ..errors import CodefillError
from .context import find_root
from ..documents import read_source, split_at
from ..languages import language_of
from .common import (add_candidate_options, add_model_options, add_remote_options,
                     config_from_args, progress)

HELP = "complete the code at a cursor position in a file and print the suggestion"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="source file (it is only read, never written)")
    p.add_argument("--line", type=int, required=True, help="cursor line, 1-based")
    p.add_argument("--col", type=int, required=True,
                   help="cursor column, 1-based, in characters; length+1 is the end of the line")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--single-line", dest="single_line", action="store_true", default=None,
                      help="stop at the end of the line (default when text follows the cursor "
                           "or the line is a complete statement)")
    mode.add_argument("--multi-line", dest="single_line", action="store_false",
                      help="allow several lines, up to the end of the block or --max-tokens")
    p.add_argument("--max-tokens", type=int, default=None, help="generated tokens at most (64)")
    p.add_argument("--time-budget-ms", type=int, default=None,
                   help="wall-clock limit of the generation (5000)")
    p.add_argument("--root", default=None,
                   help="workspace root for repository context (default: the nearest enclosing "
                        "repository or project)")
    p.add_argument("--no-context", action="store_true",
                   help="leave repository context (imported files, test partner) out")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print template, prompt token counts and timings to stderr")
    p.add_argument("--explain", action="store_true",
                   help="print every candidate with its scores to stderr, best first")
    add_candidate_options(p)
    add_model_options(p)
    add_remote_options(p)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    file = Path(args.file).absolute()
    text = read_source(args.file)
    prefix, suffix = split_at(text, args.line, args.col, name=args.file)
    root = Path(args.root).absolute() if args.root else find_root(file)
    try:
        rel = file.relative_to(root).as_posix()
    except ValueError:
        raise CodefillError(f"{file} is not under the workspace root {root}",
                            "pass a --root that contains the file") from None
    index = None
    if not args.no_context and config.context.enabled:
        config.context.watch = False
        index = WorkspaceIndex([root], config.context)
        index.build()
    why = refusal(str(file), text, config)
    if why is not None:  # a secret document: no model is loaded, nothing is sent
        sys.stdout.write("\n")
        print(f"codefill: no suggestion: {why}", file=sys.stderr)
        return 0
    with open_backend(config, progress=progress) as session:
        result = Completer(session, context=index).complete(
            Cursor(prefix, suffix, rel, str(file), language_of(args.file)),
            single_line=args.single_line, max_tokens=args.max_tokens)
    sys.stdout.write(result.text + ("\n" if not result.text.endswith("\n") else ""))
    if args.explain:
        _explain(result)
    if args.verbose:
        _report(session, result)
    return 0


def _explain(r) -> None:  # noqa: ANN001 - Completion
    """Each candidate, best first, with the scores that ranked it (stderr)."""
    if not r.candidates:
        print("codefill: 1 candidate (completion.candidates is 1, or the engine offers one)",
              file=sys.stderr)
        return
    print(f"codefill: {len(r.candidates)} candidates, best first "
          f"({r.timings.get('candidates', 0) * 1000:.0f} ms for the alternatives):", file=sys.stderr)
    for i, c in enumerate(r.candidates, 1):
        e = c.explain()
        suffix = "-" if e["suffix_logprob"] is None else \
            f"{e['suffix_logprob']:.2f} ({e['suffix_tokens']} tokens)"
        flags = ", ".join(f for f, on in (("repeats the next line", e["echoes_suffix"]),)
                          if on)
        print(f"codefill: {i}. {c.text!r}\n"
              f"codefill:    {e['origin']}, ended by {e['stop'] or '-'}: score "
              f"{e['score']:.2f} = logprob "
              f"{e['logprob']:.2f} + suffix {suffix}; syntax errors "
              f"{'-' if e['syntax_errors'] is None else e['syntax_errors']}"
              + (f"; {flags}" if flags else ""), file=sys.stderr)


def _report(session: CompletionBackend, r) -> None:  # noqa: ANN001 - Completion
    if not isinstance(session, ModelSession):
        s = r.stats
        for line in (f"engine     {session.label}",
                     f"kv cache   reused {s.n_reused}, evaluated {s.n_evaluated} (as the server "
                     "reports them)",
                     f"generated  {s.n_generated} chunks, stop: {r.stop}",
                     f"timings    first text {(s.t_first_token or 0) * 1000:.0f} ms, total "
                     f"{s.t_total * 1000:.0f} ms"):
            print(f"codefill: {line}", file=sys.stderr)
        return
    p, s, t = r.prompt, r.stats, r.timings
    gen_s = max(s.t_total - (s.t_first_token or 0.0), 1e-9)
    # The token counts and timings are the greedy generation's; with several candidates the
    # one shown may be another, which ended for its own reason.
    greedy = next((c for c in r.candidates if c.origin == "greedy"), None)
    shown = r.candidates[0] if r.candidates else None
    lines = [
        f"model      {session.model_path} ({session.info.architecture}, {session.info.quantization})"
        + (f" + adapter {session.adapter.path}" if session.adapter else ""),
        f"template   {session.template.name} ({session.detection.reason})"
        + (f", order {p.order.value.upper()}" if p.order else ""),
        f"context    {', '.join(p.context_files) or 'none'}",
        f"prompt     {len(p.tokens)} tokens: context {p.n_context}, prefix {p.n_prefix}"
        f"{' (truncated)' if p.prefix_truncated else ''}, suffix {p.n_suffix}"
        f"{' (truncated)' if p.suffix_truncated else ''}, special {p.n_special}",
        f"offload    {session.engine.gpu_layers} GPU layers ({session.engine.offload})",
        f"kv cache   reused {s.n_reused}, evaluated {s.n_evaluated}",
        f"generated  {s.n_generated} tokens"
        + (" (the greedy suggestion)" if r.candidates else "")
        + f", stop: {greedy.stop if greedy else r.stop}",
        *([f"shown      the {shown.origin} candidate ranked first of {len(r.candidates)}, "
           f"ended by {r.stop}"] if shown and shown is not greedy else []),
        f"timings    model load {t['model_load'] * 1000:.0f} ms, prompt eval "
        f"{s.t_prompt_eval * 1000:.0f} ms ({s.n_evaluated / max(s.t_prompt_eval, 1e-9):.0f} tok/s), "
        f"first token {(s.t_first_token or 0) * 1000:.0f} ms, total {s.t_total * 1000:.0f} ms"
        + (f", {max(s.n_generated - 1, 0) / gen_s:.1f} tok/s generating" if s.n_generated > 1 else ""),
    ]
    for line in lines:
        print(f"codefill: {line}", file=sys.stderr)
