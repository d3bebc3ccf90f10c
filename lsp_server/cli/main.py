"""`codefill` entry point: a registry of subcommands, one module each.

Errors caused by input or environment (:class:`CodefillError`) print one line naming the problem
and the fix and exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from .. import __version__
from ..errors import CodefillError

# name → module under lsp_server.cli; each module has HELP, add_arguments(parser), run(args).
COMMANDS: dict[str, str] = {
    "complete": "complete",
    "models": "models",
    "doctor": "doctor",
    "serve": "serve",
    "context": "context",
    "quantize": "quantize",
    "train": "train",
    "bench": "bench",
}

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codefill", description="Local, offline code completion with llama.cpp.")
    parser.add_argument("--version", action="version", version=f"codefill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"{__package__}.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("--debug", action="store_true",
                       help="show tracebacks and llama.cpp's log instead of one-line errors")
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except CodefillError as exc:
        if args.debug:
            raise
        print(f"codefill: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
