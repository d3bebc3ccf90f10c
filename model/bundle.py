"""A training run for a rented GPU machine: everything it needs, in pieces small enough to carry.

The machine is reached through a job runner: each job uploads a copy of the repository plus a
few named extra files ("carried"; 64 MB per job in all), runs one command and downloads an output
folder of at most eight 16 MB files; files stay on the machine between jobs while it is in use.
It has torch and a GPU but no network, no llama.cpp, none of our corpus and none of our base
model. So the run goes in two halves:

Here (``make``): the base GGUF is split into parts of ``--part-mb``, the training rows are the
packed token ids of :mod:`model.data.packed` (no tokenizer needed there), and the two pure-Python
wheels the trainer imports beyond torch and numpy (``gguf`` to read the base, ``watchdog``
imported by the daemon's context package) are downloaded for the machine's Python. ``bundle.json``
lists every file with its sha256, and ``make`` prints which files to carry in which job so
that each stays under the limit.

There (``train``): the parts present are checked against ``bundle.json`` and joined into the
base GGUF, the wheels are put on ``sys.path``, and the trainer runs on the GPU with a time budget
(the ``gemma3-fim-gpu`` recipe fits its schedule to it), writing at every checkpoint (every
``--save-minutes``) the adapter GGUF of that step, the last optimizer-free checkpoint and the
loss table into ``--out``, the folder that comes back: ``adapter-STEP.gguf`` for each
checkpoint (held-out lines choose among them here), ``adapter-last.pt``, ``loss.csv``,
``train.log``. Eight files come back at most: keep ``--minutes`` / ``--save-minutes`` under 5.

    python -m model.bundle make .gpu --rows ROWS_DIR [--part-mb 36] [--python 3.12]
    python3 -m model.bundle train .gpu --out OUTPUT_DIR --minutes 8 [--micro-batch 32 ...]

Anything after the known options of ``train`` goes to the trainer
(``python -m model.train_gemma3``) unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from lsp_server.models.pull import file_sha256 as sha256

BUNDLE = "bundle.json"
WHEELS = ("gguf", "watchdog")
"""What the trainer imports beyond torch and numpy (the GPU image's own packages)."""
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")


def split(src: Path, out: Path, part_bytes: int) -> list[dict[str, Any]]:
    """``src`` as ``out/<name>.partNN`` files of at most ``part_bytes``."""
    parts = []
    with src.open("rb") as fh:
        for k in range(10_000):
            block = fh.read(part_bytes)
            if not block:
                break
            p = out / f"{src.name}.part{k:02d}"
            p.write_bytes(block)
            parts.append({"file": p.name, "bytes": len(block),
                          "sha256": hashlib.sha256(block).hexdigest()})
    return parts


def join(root: Path, info: dict[str, Any], dest: Path) -> Path:
    """The base GGUF reassembled at ``dest`` from its parts, each checked."""
    missing = [p["file"] for p in info["parts"] if not (root / p["file"]).is_file()]
    if missing:
        raise ValueError(f"{len(missing)} of {len(info['parts'])} parts of the base are not "
                         f"here: {', '.join(missing)} (carry them first)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        for p in info["parts"]:
            data = (root / p["file"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != p["sha256"]:
                raise ValueError(f"{p['file']} does not match its sha256 in {BUNDLE}: carry it "
                                 "again")
            out.write(data)
    if sha256(dest) != info["sha256"]:
        raise ValueError(f"the joined base {dest} does not match its sha256")
    return dest


def carry_plan(files: list[tuple[str, int]], budget: int) -> list[list[str]]:
    """Files (path, bytes) grouped into commands of at most ``budget`` bytes, 8 paths each."""
    groups: list[list[str]] = []
    size = 0
    for path, n in sorted(files, key=lambda f: f[0]):
        if not groups or size + n > budget or len(groups[-1]) == 8:
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += n
    return groups


def fetch_wheels(wheels: Path, python: str) -> None:
    """The versions installed here of :data:`WHEELS`, as wheels for the machine's Python."""
    from importlib.metadata import version

    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
           "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
           "-d", str(wheels)]
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    subprocess.run(cmd + [f"{w}=={version(w)}" for w in WHEELS], check=True)


def make(a: argparse.Namespace) -> int:
    from lsp_server.models.resolve import resolve_model

    from .data.packed import Packed

    out: Path = a.dir
    out.mkdir(parents=True, exist_ok=True)
    rows = Packed.open(a.rows)
    base = resolve_model(a.model)
    if rows.manifest.get("base_bytes") not in (None, base.stat().st_size):
        raise SystemExit(f"error: the rows were made with another base "
                         f"({rows.manifest.get('base')}), not {base}")
    part_bytes = int(a.part_mb * 2**20)
    info: dict[str, Any] = {"base": base.name, "bytes": base.stat().st_size,
                            "sha256": sha256(base), "parts": split(base, out, part_bytes)}
    dest_rows = out / "rows"
    if dest_rows.resolve() != Path(a.rows).resolve():
        shutil.rmtree(dest_rows, ignore_errors=True)
        shutil.copytree(a.rows, dest_rows, ignore=shutil.ignore_patterns("corpus.json.gz"))
    wheels = out / "wheels"
    wheels.mkdir(exist_ok=True)
    if not a.no_wheels:
        fetch_wheels(wheels, a.python)
    info["wheels"] = sorted(p.name for p in wheels.glob("*.whl"))
    info["rows"] = {"tokens": rows.manifest["tokens"], "rows": rows.rows}
    (out / BUNDLE).write_text(json.dumps(info, indent=1) + "\n")

    rel = os.path.relpath(out)  # carry names paths from the repository's root
    files = [(f"{rel}/{p['file']}", p["bytes"]) for p in info["parts"]]
    files += [(f"{rel}/rows", sum(f.stat().st_size for f in dest_rows.iterdir())),
              (f"{rel}/wheels", sum(f.stat().st_size for f in wheels.iterdir())),
              (f"{rel}/{BUNDLE}", (out / BUNDLE).stat().st_size)]
    budget = int(a.carry_mb * 2**20)
    plan = carry_plan(files, budget)
    print(f"{out}: base {base.name} in {len(info['parts'])} parts, {rows.manifest['tokens']:,} "
          f"tokens of rows, wheels {', '.join(info['wheels'])}")
    print(f"carry in {len(plan)} jobs (each under {a.carry_mb:.0f} MB beside the repository), "
          "one after the other while the machine is in use; the last one trains:")
    for k, group in enumerate(plan, 1):
        print(f"  {k}. carry {json.dumps(group)}")
    return 0


def train(a: argparse.Namespace, rest: list[str]) -> int:
    root: Path = a.dir
    info = json.loads((root / BUNDLE).read_text())
    site = Path(a.site)
    if info.get("wheels"):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
                        "--no-deps", "--no-compile", "--target", str(site),
                        *[str(root / "wheels" / w) for w in info["wheels"]]], check=True)
    base = join(root, info, Path(a.base_to))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(site), str(Path(__file__).resolve().parent.parent),
         os.environ.get("PYTHONPATH", "")]), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "model.train_gemma3", "--recipe", a.recipe,
           "--packed", str(root / "rows"), "--model", str(base), "--device", a.device,
           "--minutes", str(a.minutes), "--out", str(Path(a.run_dir)),
           "--csv", str(out / "loss.csv"), "--adapter-out", str(out / "adapter-{step}.gguf"),
           *(["--save-minutes", str(a.save_minutes)] if a.save_minutes else []), *rest]
    print("running: " + " ".join(cmd), file=sys.stderr, flush=True)
    with (out / "train.log").open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        assert proc.stdout is not None
        for line in proc.stdout:  # to the console and to the log that comes back
            sys.stderr.write(line)
            log.write(line)
            log.flush()
        return proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.bundle",
                                 description=(__doc__ or "").split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="split the base, copy the rows, fetch the wheels")
    m.add_argument("dir", type=Path)
    m.add_argument("--rows", required=True, help="packed rows (python -m model.data.packed)")
    m.add_argument("--model", default="", help="base GGUF (default: the embedded model)")
    m.add_argument("--part-mb", type=float, default=36.0)
    m.add_argument("--carry-mb", type=float, default=38.0,
                   help="what one job may carry beside the repository")
    m.add_argument("--python", default="3.12", help="the GPU machine's Python (3.12)")
    m.add_argument("--no-wheels", action="store_true",
                   help="fetch no wheels (the machine has gguf and watchdog)")
    t = sub.add_parser("train", help="on the GPU machine: join, install, train")
    t.add_argument("dir", type=Path)
    t.add_argument("--out", required=True, help="where the adapter, log and loss table go")
    t.add_argument("--minutes", type=float, required=True)
    t.add_argument("--save-minutes", type=float, help="(default: the recipe's)")
    t.add_argument("--recipe", default="gpu")
    t.add_argument("--device", default="cuda")
    t.add_argument("--run-dir", default="/tmp/codefill-run",
                   help="checkpoints with optimizer state (stay there)")
    t.add_argument("--site", default="/tmp/codefill-site", help="where the wheels go")
    t.add_argument("--base-to", default="/tmp/codefill-base.gguf")
    a, rest = ap.parse_known_args(argv)
    if a.cmd == "make":
        if rest:
            ap.error(f"unknown options {' '.join(rest)}")
        return make(a)
    try:
        return train(a, rest)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
