"""Training rows written once, as token ids, and read back by a run that has no tokenizer.

A GPU machine rented for minutes has torch but neither llama.cpp (the tokenizer the daemon and the
trainer share) nor our corpus, and little can be carried to it. So the rows a run would train on
are made here, by the very :class:`~model.data.dataset.RowStream` that trains on the CPU (the
same examples, layout and packing, from the same data position), and stored as compressed
shards:

    DIR/manifest.json        what made the rows (recipe settings, corpus fingerprint, base
                             model, data positions), row and token counts, the shards
    DIR/rows-NNNNN.npz       ``input_ids`` int32 (rows, seq_len), ``labels`` int32 (IGNORE_INDEX
                             where no loss), ``segment_ids`` int16; positions are recomputed
    DIR/eval.npz             the held-out rows the eval loss reads

``python -m model.data.packed OUT --recipe editor --tokens 20_000_000`` writes them;
``codefill train --packed DIR`` (or ``TrainConfig.packed``) trains on them: the trainer then
reads no corpus and loads no tokenizer. A run over packed rows keeps its position as (pass, row),
and starts over from the first row after the last (a second pass over the same rows).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..gemma import IGNORE_INDEX
from .dataset import Row

MANIFEST = "manifest.json"
FORMAT = 1


def positions(segment_ids: np.ndarray) -> np.ndarray:
    """Position of each token within its example (B, T), from the segment ids (B, T): 0 at every
    segment start; padding (segment -1) is at position 0, as the packer writes it."""
    B, T = segment_ids.shape
    idx = np.broadcast_to(np.arange(T), (B, T))
    start = np.ones((B, T), dtype=bool)
    start[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    # The index of the latest segment start at or before each token.
    first = np.maximum.accumulate(np.where(start, idx, 0), axis=1)
    pos = idx - first
    pos[segment_ids < 0] = 0
    return pos


def _arrays(rows: list[Row]) -> dict[str, np.ndarray]:
    return {"input_ids": torch.stack([r.input_ids for r in rows]).numpy().astype(np.int32),
            "labels": torch.stack([r.labels for r in rows]).numpy().astype(np.int32),
            "segment_ids": torch.stack([r.segment_ids for r in rows]).numpy().astype(np.int16)}


def _rows(arrays: Any) -> list[Row]:
    ids, labels, seg = arrays["input_ids"], arrays["labels"], arrays["segment_ids"]
    pos = positions(seg)
    return [Row(torch.from_numpy(ids[i].astype(np.int64)),
                torch.from_numpy(labels[i].astype(np.int64)),
                torch.from_numpy(pos[i].astype(np.int64)),
                torch.from_numpy(seg[i].astype(np.int64))) for i in range(len(ids))]


def write(out: Path, stream: Iterator[tuple[Row, tuple[int, int]]], *, tokens: int,
          eval_rows: list[Row], meta: dict[str, Any], shard_rows: int = 4096,
          say: Any = None) -> dict[str, Any]:
    """Rows from ``stream`` until they hold ``tokens`` tokens (padding not counted), in shards of
    ``shard_rows``; returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, Any]] = []
    buf: list[Row] = []
    n_tok = n_loss = n_rows = seq_len = 0
    pos_after: tuple[int, int] | None = None
    t0 = time.perf_counter()

    def flush() -> None:
        name = f"rows-{len(shards):05d}.npz"
        np.savez_compressed(out / name, **_arrays(buf))
        shards.append({"file": name, "rows": len(buf)})
        if say:
            say(f"{name}: {n_rows:,} rows, {n_tok:,} tokens ({n_tok / max(1e-9, time.perf_counter() - t0):,.0f}"
                " tokens/s)")
        buf.clear()

    for row, pos_after in stream:
        seq_len = int(row.input_ids.numel())
        buf.append(row)
        n_rows += 1
        n_tok += int((row.segment_ids >= 0).sum())
        n_loss += int((row.labels != IGNORE_INDEX).sum())
        if len(buf) == shard_rows:
            flush()
        if n_tok >= tokens:
            break
    if buf:
        flush()
    if eval_rows:
        np.savez_compressed(out / "eval.npz", **_arrays(eval_rows))
    manifest = {"format": FORMAT, "rows": n_rows, "tokens": n_tok, "loss_tokens": n_loss,
                "seq_len": seq_len, "data_pos_after": list(pos_after) if pos_after else None,
                "eval_rows": len(eval_rows), "shards": shards, **meta}
    if not manifest["seq_len"]:
        first = np.load(out / shards[0]["file"])["input_ids"] if shards else None
        manifest["seq_len"] = int(first.shape[1]) if first is not None else 0
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


_WORKER: Any = None
"""In a worker process of :func:`make`: the row stream whose examples it builds."""


def _start_worker(make_stream: Any) -> None:
    global _WORKER
    _WORKER = make_stream()  # its own tokenizer: llama.cpp state is not shared across a fork


def _build(item: tuple[int, str]) -> Any:
    return _WORKER.build_at(*item)


def make(recipe: str, out: Path, tokens: int, *, seed: int | None = None,
         venv: str | None = None, bench_dir: str | None = None, workers: int = 1
         ) -> dict[str, Any]:
    """Write the first ``tokens`` tokens of the rows a new run of ``recipe`` trains on to
    ``out`` (with its corpus manifest, ``corpus.json.gz``). ``workers`` processes build the
    examples (each a pure function of seed, epoch and path), this one packs them in order: the
    same rows as one process makes."""
    import multiprocessing

    from dataclasses import asdict

    from lsp_server.models.resolve import resolve_model
    from lsp_server.prompt.templates import get_template

    from ..recipes import GEMMA3_RUNS, config_for, data_config, get_recipe
    from ..tokenizer import GGUFTokenizer
    from .dataset import RowStream, eval_rows_of
    from .fim import Layout
    from .loaders import load

    name = GEMMA3_RUNS.get(recipe, recipe)
    rec = get_recipe(name)
    if rec.family != "gemma3":
        raise ValueError(f"recipe {name!r} trains its own tokenizer: only the gemma3 recipes "
                         "can be packed ahead")
    if (out / MANIFEST).exists():
        raise ValueError(f"{out} already holds packed rows: choose another directory")
    given = {"out_dir": str(out), "seed": seed, "venv": venv, "bench_dir": bench_dir}
    cfg = config_for(name, {k: v for k, v in given.items() if v is not None})
    loaded = load(rec.data, cfg)
    base = resolve_model(cfg.init_from or "")
    dcfg = data_config(cfg)

    def new_stream() -> RowStream:
        layout = Layout(GGUFTokenizer(base), get_template(cfg.template),
                        middle_loss=cfg.middle_loss)
        return RowStream(loaded.corpus, layout, dcfg)

    main = new_stream()
    tok = main.layout.tok
    pool = None
    try:
        ev = eval_rows_of(loaded.corpus, main.layout, dcfg, cfg.eval_rows)
        build_map = None
        if workers > 1:
            pool = multiprocessing.get_context("fork").Pool(
                workers, initializer=_start_worker, initargs=(new_stream,))
            build_map = lambda items: pool.imap(_build, items, chunksize=8)  # noqa: E731
        stream = main.positioned_rows(build_map=build_map)
        meta = {"recipe": name, "config": asdict(cfg), "corpus": loaded.meta.get("corpus"),
                "base": base.name, "base_bytes": base.stat().st_size}
        return write(out, stream, tokens=tokens, eval_rows=ev, meta=meta,
                     say=lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        if pool is not None:
            pool.terminate()
        tok.close()


@dataclass
class Packed:
    """Rows written by :func:`write`, read shard by shard."""

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path) -> "Packed":
        root = Path(root)
        try:
            manifest = json.loads((root / MANIFEST).read_text())
        except FileNotFoundError:
            raise ValueError(f"{root} holds no packed rows ({MANIFEST} missing): write them "
                             "with python -m model.data.packed") from None
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{root}: packed rows of format {manifest.get('format')!r}, this "
                             f"trainer reads format {FORMAT}")
        missing = [s["file"] for s in manifest["shards"] if not (root / s["file"]).is_file()]
        if missing:
            raise ValueError(f"{root}: shards missing ({', '.join(missing[:3])})")
        return cls(root, manifest)

    @property
    def rows(self) -> int:
        return int(self.manifest["rows"])

    def eval_rows(self) -> list[Row]:
        path = self.root / "eval.npz"
        return _rows(np.load(path)) if path.is_file() else []

    def positioned_rows(self, passes: int = 0, index: int = 0
                        ) -> Iterator[tuple[Row, tuple[int, int]]]:
        """Rows from row ``index`` of pass ``passes`` on, each with the position after it."""
        if self.rows == 0:
            return
        while True:
            start = 0
            for shard in self.manifest["shards"]:
                n = int(shard["rows"])
                if index < start + n:
                    rows = _rows(np.load(self.root / shard["file"]))
                    for i in range(max(0, index - start), n):
                        k = start + i + 1
                        yield rows[i], ((passes + 1, 0) if k >= self.rows else (passes, k))
                start += n
            passes, index = passes + 1, 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.data.packed",
                                 description="write a recipe's training rows as token ids")
    ap.add_argument("out", type=Path)
    ap.add_argument("--recipe", default="editor", help="gemma3 run or recipe (editor)")
    ap.add_argument("--tokens", type=float, required=True, help="tokens to write (e.g. 2e7)")
    ap.add_argument("--seed", type=int, help="data seed of a new run (a different seed: other "
                                             "cuts and order of the same files)")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes building examples (the rows are the same for any number)")
    ap.add_argument("--venv", default=None)
    ap.add_argument("--bench-dir", default=None)
    a = ap.parse_args(argv)
    try:
        m = make(a.recipe, a.out, int(a.tokens), seed=a.seed, venv=a.venv,
                 bench_dir=a.bench_dir, workers=a.workers)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = sum((a.out / s["file"]).stat().st_size for s in m["shards"])
    print(f"{m['rows']:,} rows, {m['tokens']:,} tokens ({m['loss_tokens']:,} loss tokens) in "
          f"{len(m['shards'])} shards, {size / 1e6:.1f} MB: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
