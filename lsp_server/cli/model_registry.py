"""`codefill models pull|rm` and the registry table of `codefill models`."""

from __future__ import annotations

import json
import sys
from typing import Any

from ..errors import ModelError
from ..models.gguf_info import read_model_info
from ..models.pull import pull, pulled, remove
from ..models.registry import parse_reference
from ..models.resolve import tenths
from ..prompt.detect import detect_template
from .common import progress


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n else "?"


def registry_table(rows: list[dict[str, Any]]) -> str:
    cols = ("NAME", "PARAMS", "QUANT", "SIZE", "MEMORY", "SPEED (prompt/gen tok/s)", "LICENSE",
            "FOR", "PULLED")
    cells: list[list[str]] = [list(cols)]
    for r in rows:
        for i, q in enumerate(r["quantizations"]):
            default = q["quant"] == r["default_quant"]
            name = (r["name"] + (" *" if r["recommended"] else "")) if i == 0 else ""
            speed = (f"{q['prompt_tps']} / {q['gen_tps']:.0f}" if q["prompt_tps"] is not None
                     else "?")
            cells.append([
                name, f"{r['parameters'] / 1e9:.1f}B" if i == 0 else "",
                q["quant"] + (" (default)" if default else ""), _gb(q["size_bytes"]),
                _gb(q["memory_bytes"]), speed,
                (r["license"] + (", gated" if r["gated"] else "")) if i == 0 else "",
                r["for"] if i == 0 else "", "yes" if q["pulled"] else ""])
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    rec = next((r for r in rows if r["recommended"]), None)
    if rec:
        q = rec["recommended_quant"]
        name = rec["name"] if q == rec["default_quant"] else f"{rec['name']}:{q}"
        out.append(f"* recommended for this machine (codefill doctor says why): "
                   f"codefill models pull {name}")
    out.append("Speeds are estimates for this machine's CPU threads from measurements on a "
               "2-core machine (docs/models.md).")
    return "\n".join(out)


def pull_command(name: str, as_json: bool = False) -> int:
    ref = parse_reference(name)
    if ref.model is not None and ref.model.gated:
        progress(f"{ref.model.name} is gated on the hub: accept its license at "
                 f"{ref.model.license_url} and log in (`hf auth login` or HF_TOKEN)")
    tty = sys.stderr.isatty()
    already = pulled(ref.hub) is not None
    try:
        # A progress bar on a terminal; else a line at every tenth of the file.
        got = pull(ref, on_progress=None if tty else tenths(progress), show_progress=tty,
                   say=progress)
    except KeyboardInterrupt:
        progress(f"interrupted: the part downloaded is kept; `codefill models pull {ref.label}` "
                 "resumes it")
        return 130
    info = read_model_info(got.path)
    det = detect_template(info)
    if ref.model is not None and det.template.name != ref.model.template:
        progress(f"warning: the registry lists template {ref.model.template!r} for "
                 f"{ref.model.name}, but the file is detected as {det.template.name!r}; the "
                 "detected one is used")
    result = {"name": ref.label, "path": str(got.path), "sha256": got.sha256,
              "size_bytes": got.size_bytes, "template": det.template.name,
              "already_pulled": already}
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'already pulled' if already else 'pulled'} {ref.label}: {got.path} "
          f"({got.size_bytes / 1e6:.0f} MB, sha256 {got.sha256[:12]}… checked); "
          f"template {det.template.name}")
    print(f"use it: codefill complete FILE --line L --col C --model {ref.label}")
    print(f"  or in the editor: engine.model = \"{ref.label}\"")
    return 0


def rm_command(name: str) -> int:
    ref = parse_reference(name)
    gone = remove(ref.hub)
    if not gone:
        raise ModelError(f"{ref.label} is not pulled", "see what is with `codefill models`")
    print(f"removed {ref.label} ({', '.join(p.name for p in gone)})")
    return 0
