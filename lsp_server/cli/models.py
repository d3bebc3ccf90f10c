"""`codefill models`: the models available and what each supports; pull and remove models
from the registry (docs/models.md)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import ModelError
from ..models.adapter import AdapterInfo, open_adapter
from ..models.gguf_info import ModelInfo, read_model_info
from ..models.resolve import available_models, resolve_model
from ..prompt.detect import detect_template
from .common import progress

HELP = ("list the models you have and the ones the registry offers; pull or remove one; "
        "describe one GGUF")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="list", choices=tuple(ACTIONS),
                   help="list (default), pull NAME (download a registry model or "
                        "hf://OWNER/REPO/FILE.gguf), rm NAME (delete a pulled one)")
    p.add_argument("name", nargs="?", default="", metavar="NAME",
                   help="for pull and rm: a registry name, NAME:QUANT, or hf://OWNER/REPO/FILE.gguf")
    p.add_argument("--available", action="store_true",
                   help="list only the registry's models (with what is pulled)")
    p.add_argument("--model", metavar="PATH", default="", help="describe this GGUF file only")
    p.add_argument("--adapter", metavar="PATH", default="",
                   help="check this LoRA adapter GGUF against the model (--model, default the "
                        "embedded one) and show the template it selects")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def describe(info: ModelInfo, source: str = "", adapter: AdapterInfo | None = None
             ) -> dict[str, Any]:
    """The facts `codefill models` shows for one model (with ``adapter`` applied)."""
    if adapter is not None:
        from ..completion.session import choose_session_template

        det = choose_session_template(info, adapter)
    else:
        det = detect_template(info)
    t = det.template
    row = {
        "path": str(info.path),
        "source": source,
        "name": info.name,
        "architecture": info.architecture,
        "family": t.label,
        "template": t.name,
        "fim": t.is_fim,
        "fim_orders": [o.value for o in t.orders],
        "detected_by": det.reason,
        "context_length": info.context_length,
        "quantization": info.quantization,
        "parameters": info.n_params,
        "size_bytes": info.size_bytes,
        "vocabulary": len(info.tokens),
    }
    if adapter is not None:
        row["adapter"] = adapter.describe()
    return row


def _human(n: float, unit: str = "B") -> str:
    for prefix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f} {prefix}{unit}" if not prefix else f"{n:.1f} {prefix}{unit}"
        n /= 1000
    return f"{n:.1f} P{unit}"


def _table(rows: list[dict[str, Any]]) -> str:
    cols = [("MODEL", lambda r: r["name"] or "?"), ("SOURCE", lambda r: r["source"] or "-"),
            ("ARCH", lambda r: r["architecture"]), ("FAMILY", lambda r: r["family"]),
            ("FIM", lambda r: "/".join(r["fim_orders"]).upper() if r["fim"] else "no"),
            ("CONTEXT", lambda r: str(r["context_length"] or "?")),
            ("QUANT", lambda r: r["quantization"]), ("PARAMS", lambda r: _human(r["parameters"], "")),
            ("SIZE", lambda r: _human(r["size_bytes"]))]
    cells = [[h for h, _ in cols]] + [[f(r) for _, f in cols] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    for r in rows:
        out.append(f"  {r['name'] or '?'}: {r['path']} — template '{r['template']}' "
                   f"({r['detected_by']})")
        a = r.get("adapter")
        if a:
            seen = f", {a['tokens_seen']:,} tokens seen" if a["tokens_seen"] is not None else ""
            out.append(f"  adapter: {a['path']} — {a['name']}, rank {a['rank'] or '?'}, "
                       f"alpha {a['alpha']:g}, {a['tensors']} tensors, "
                       f"{_human(a['size_bytes'])}{seen}")
    return "\n".join(out)


def _list(args: argparse.Namespace) -> int:
    from ..models.catalog import rows as registry_rows
    from .model_registry import registry_table

    if args.available:
        rows = registry_rows()
        print(json.dumps(rows, indent=2) if args.json else registry_table(rows))
        return 0
    if args.adapter:
        info = read_model_info(resolve_model(args.model, progress))
        rows = [describe(info, "--model" if args.model else "embedded default",
                         open_adapter(args.adapter, info))]
    elif args.model:
        rows = [describe(read_model_info(resolve_model(args.model)), "--model")]
    else:
        rows = []
        for m in available_models(progress):
            try:
                rows.append(describe(read_model_info(m.path), m.source))
            except ModelError as exc:  # one bad file must not hide the others
                print(f"codefill: warning: skipped {m.path}: {exc}", file=sys.stderr)
    if args.json:
        json.dump(rows[0] if args.model or args.adapter else rows, sys.stdout, indent=2)
        print()
        return 0
    print(_table(rows))
    if not (args.model or args.adapter):
        print("\nAvailable to pull (codefill models pull NAME; docs/models.md):")
        print(registry_table(registry_rows()))
    return 0


def _pull(args: argparse.Namespace) -> int:
    from .model_registry import pull_command

    return pull_command(args.name, as_json=args.json)


def _rm(args: argparse.Namespace) -> int:
    from .model_registry import rm_command

    return rm_command(args.name)


ACTIONS = {"list": _list, "pull": _pull, "rm": _rm}


def run(args: argparse.Namespace) -> int:
    if args.action in ("pull", "rm") and not args.name:
        raise ModelError(f"`codefill models {args.action}` needs a model name",
                         "see the names with `codefill models --available`")
    if args.action == "list" and args.name:
        raise ModelError(f"unexpected {args.name!r} after `codefill models`",
                         "use `codefill models pull NAME` or `--model PATH`")
    return ACTIONS[args.action](args)
