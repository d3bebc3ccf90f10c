"""`codefill serve`: run the language server."""

from __future__ import annotations

import argparse
import logging
import sys

from ..transport import parse_tcp_address

HELP = "run the language server on stdio (or --tcp [HOST:]PORT for debugging)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tcp", metavar="[HOST:]PORT",
                   help="listen on TCP instead of stdio; 127.0.0.1 unless HOST is given (the "
                        "server has no authentication: a non-loopback HOST exposes your code)")
    # vscode-languageclient appends --stdio for its stdio transport; stdio is the default.
    p.add_argument("--stdio", action="store_true", help="use stdio (the default)")
    p.add_argument("--log-file", metavar="PATH", help="write the server's own log here")


def run(args: argparse.Namespace) -> int:
    from ..server import serve

    if args.tcp is not None:
        parse_tcp_address(args.tcp)  # a bad value is a one-line error before anything loads
    if args.log_file:
        logging.basicConfig(filename=args.log_file, level=logging.DEBUG if args.debug else
                            logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                            force=True)
    elif not args.debug:
        # stdout carries the protocol; keep library chatter off stderr too unless asked.
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    serve(args.tcp)  # pygls and the model load from here on
    return 0
