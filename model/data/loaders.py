"""Where a recipe's training files come from: a source tree, or the licensed corpus.

``tree``: the directory in ``TrainConfig.corpus``, read through the daemon's filters
(:func:`model.data.corpus.read_corpus`).

``licensed``: the standard library plus the allow-listed packages of a virtualenv
(:func:`model.data.sources.build_corpus`). A run pins its files: the first invocation writes
``corpus.json.gz`` (every file's path, source and content hash) into the run's directory, and a
resumed run trains on exactly those files, so its deterministic data position still means the
same rows. A corpus that differs is refused unless the caller allows the change.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..train_state import say
from .corpus import Corpus, read_corpus

if TYPE_CHECKING:
    from ..recipes import TrainConfig

ROOT = Path(__file__).resolve().parent.parent.parent
MANIFEST = "corpus.json.gz"
"""The run's corpus: every file's path, source and content hash (written at the start)."""


@dataclass
class Loaded:
    corpus: Corpus
    meta: dict[str, Any] = field(default_factory=dict)
    """Goes into every checkpoint; ``corpus`` there is the licensed corpus's fingerprint."""


def tree(cfg: "TrainConfig") -> Loaded:
    corpus = read_corpus(cfg.corpus, max_files=cfg.max_files)
    if not corpus.files:
        raise ValueError(f"no source files under {cfg.corpus}")
    return Loaded(corpus)


def licensed(cfg: "TrainConfig", *, allow_change: bool = False) -> Loaded:
    from .sources import build_corpus

    t = time.perf_counter()
    venv = cfg.venv or str(ROOT / ".venv")
    bench = cfg.bench_dir or str(ROOT.parent / "shared" / "benchmarks")
    sc = build_corpus(venv, bench_dir=bench)
    manifest_path = Path(cfg.out_dir) / MANIFEST
    if manifest_path.is_file():  # a run in progress: train on exactly its files
        with gzip.open(manifest_path, "rt") as fh:
            manifest = json.load(fh)
        bad = sc.restrict(manifest)
        if bad and not allow_change:
            raise ValueError(f"{len(bad)} files of the run's corpus are missing or changed here "
                             f"(e.g. {bad[:3]}): the venv's packages differ from the run's; "
                             "reinstall them or pass --allow-corpus-change")
    fingerprint = sc.fingerprint()  # of the files trained on (after any restriction)
    if manifest_path.is_file():
        if bad or fingerprint != manifest["fingerprint"]:
            say(f"corpus changed ({len(bad)} files): continuing on {fingerprint}", stamp=True)
            with gzip.open(manifest_path, "wt") as fh:
                json.dump(sc.manifest(), fh)
    else:
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(manifest_path, "wt") as fh:
            json.dump(sc.manifest(), fh)
    say(f"corpus: {len(sc.corpus.files):,} files, {sc.corpus.n_chars:,} characters, "
        f"fingerprint {fingerprint} ({time.perf_counter() - t:.0f} s)", stamp=True)
    return Loaded(sc.corpus, {"corpus": fingerprint})


def load(kind: str, cfg: "TrainConfig", *, allow_change: bool = False) -> Loaded:
    """The files of a run whose recipe reads data of ``kind`` (``tree`` or ``licensed``)."""
    if kind == "tree":
        return tree(cfg)
    if kind == "licensed":
        return licensed(cfg, allow_change=allow_change)
    raise ValueError(f"unknown data source {kind!r}: use tree or licensed")
