"""The `codefill` command end to end, as a subprocess: completions and every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.gguf_factory import write_family_gguf, write_vocab_gguf

DEMO = REPO / "examples" / "demo_project" / "inventory" / "store.py"


def codefill(*args: str, env: dict[str, str] | None = None, timeout: float = 180
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lsp_server.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=REPO)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("codefill: error: ")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert " — " in errors[0], "the message names a fix"
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.mark.model
def test_complete_demo_is_deterministic() -> None:
    # A generous time budget: a loaded CI machine must not cut the suggestion short.
    args = ("complete", str(DEMO), "--line", "23", "--col", "16", "--max-tokens", "12",
            "--time-budget-ms", "120000")
    first = codefill(*args, "--verbose")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip(), "a suggestion was printed"
    for key in ("template   plain", "prompt     ", "kv cache", "prompt eval", "first token"):
        assert key in first.stderr
    second = codefill(*args)
    assert second.stdout == first.stdout
    assert second.stderr == ""  # no llama.cpp log noise without --debug


@pytest.mark.model
def test_complete_single_line_stops_at_line_end(tmp_path: Path) -> None:
    src = tmp_path / "calc.py"
    src.write_text("def area(w, h):\n    return w * h\n\nprint(area(2, 3))  # prints\n")
    proc = codefill("complete", str(src), "--line", "4", "--col", "11", "--max-tokens", "24")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1  # one line of text plus the final newline


@pytest.mark.model
def test_complete_never_writes_the_file(tmp_path: Path) -> None:
    src = tmp_path / "a.py"
    src.write_text("import os\nprint(os.")
    before = src.stat().st_mtime_ns, src.read_bytes()
    assert codefill("complete", str(src), "--line", "2", "--col", "10",
                    "--max-tokens", "3").returncode == 0
    assert (src.stat().st_mtime_ns, src.read_bytes()) == before


@pytest.mark.model
def test_models_lists_the_embedded_model() -> None:
    proc = codefill("models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    emb = rows[0]
    assert emb["source"] == "embedded default"
    assert emb["architecture"] == "gemma3" and emb["fim"] is False
    assert emb["quantization"] == "Q4_K_M" and emb["context_length"] == 32768
    table = codefill("models")
    assert "Gemma 3 270m" in table.stdout and "no" in table.stdout


def test_models_describes_one_gguf(tmp_path: Path) -> None:
    path = write_family_gguf(tmp_path, "qwen2.5-coder", context_length=32768)
    proc = codefill("models", "--model", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert row["family"] == "Qwen2.5-Coder" and row["fim"] is True
    assert row["fim_orders"] == ["psm"] and row["architecture"] == "qwen2"
    assert "Qwen2.5-Coder" in codefill("models", "--model", str(path)).stdout


def test_models_lists_the_models_dir_and_skips_broken_files(tmp_path: Path) -> None:
    models = tmp_path / "data" / "codefill" / "models"
    models.mkdir(parents=True)
    write_family_gguf(models, "starcoder")
    (models / "broken.gguf").write_bytes(b"not a model")
    proc = codefill("models", "--json", env={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert proc.returncode == 0, proc.stderr
    assert [r["template"] for r in json.loads(proc.stdout)][1:] == ["starcoder"]
    assert "skipped" in proc.stderr and "broken.gguf" in proc.stderr


@pytest.mark.model
def test_doctor() -> None:
    proc = codefill("doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("python", "llama.cpp", "cpu features", "threads", "cache dir", "model",
                 "generation", "recommended"):
        assert f"✓ {name}" in proc.stdout or f"! {name}" in proc.stdout, proc.stdout
    # The recommendation names a registry model, its speed here, and the pull command.
    line = next(ln for ln in proc.stdout.splitlines() if "recommended  " in ln)
    assert "prompt tok/s" in line and "generated tok/s" in line, line
    assert "codefill models pull " in proc.stdout


def test_doctor_reports_a_bad_model(tmp_path: Path) -> None:
    bad = tmp_path / "m.gguf"
    bad.write_text("hello")
    proc = codefill("doctor", "--model", str(bad), "--skip-load")
    assert proc.returncode == 1
    assert "✗ model" in proc.stdout and "not a GGUF" in proc.stdout and "fix:" in proc.stdout


# --- bad input: one line naming the problem and the fix, exit 2, no traceback -------------

def test_missing_file() -> None:
    assert_one_line_error(codefill("complete", "nope.py", "--line", "1", "--col", "1"),
                          "file not found: nope.py")


def test_directory_as_file(tmp_path: Path) -> None:
    assert_one_line_error(codefill("complete", str(tmp_path), "--line", "1", "--col", "1"),
                          "is a directory")


def test_unreadable_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files regardless of permissions")
    f = tmp_path / "x.py"
    f.write_text("x = 1\n")
    f.chmod(0)
    assert_one_line_error(codefill("complete", str(f), "--line", "1", "--col", "1"),
                          "cannot read")


def test_binary_file(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_bytes(b"\x7fELF\0\0\0binary")
    assert_one_line_error(codefill("complete", str(f), "--line", "1", "--col", "1"), "binary")


@pytest.mark.parametrize(("line", "col", "needle"), [
    ("30", "1", "line 30 is outside"), ("0", "1", "line 0 is outside"),
    ("2", "99", "column 99 is outside line 2"), ("1", "0", "column 0 is outside")])
def test_position_outside_the_file(tmp_path: Path, line: str, col: str, needle: str) -> None:
    f = tmp_path / "x.py"
    f.write_text("a = 1\nb = 2\n")
    assert_one_line_error(codefill("complete", str(f), "--line", line, "--col", col), needle)


def test_missing_model(tmp_path: Path) -> None:
    assert_one_line_error(codefill("complete", str(DEMO), "--line", "1", "--col", "1",
                                   "--model", str(tmp_path / "missing.gguf")),
                          "model file not found")


def test_non_gguf_model(tmp_path: Path) -> None:
    m = tmp_path / "model.gguf"
    m.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert_one_line_error(codefill("complete", str(DEMO), "--line", "1", "--col", "1",
                                   "--model", str(m)), "not a GGUF model file")


def test_truncated_model(tmp_path: Path) -> None:
    full = write_family_gguf(tmp_path, "codegemma").read_bytes()
    m = tmp_path / "cut.gguf"
    m.write_bytes(full[: len(full) // 2])
    assert_one_line_error(codefill("complete", str(DEMO), "--line", "1", "--col", "1",
                                   "--model", str(m)), "truncated")


def test_unknown_architecture(tmp_path: Path) -> None:
    m = write_vocab_gguf(tmp_path / "m.gguf", ["<s>"], arch="frobnicator")
    assert_one_line_error(codefill("complete", str(DEMO), "--line", "1", "--col", "1",
                                   "--model", str(m)), "unknown model architecture 'frobnicator'")


def test_gguf_that_llama_cpp_cannot_load(tmp_path: Path) -> None:
    # Valid header, known architecture, but no weights: llama.cpp refuses it at load time.
    m = write_family_gguf(tmp_path, "codegemma")
    assert_one_line_error(codefill("complete", str(DEMO), "--line", "1", "--col", "1",
                                   "--model", str(m)), "cannot load model")


def test_unknown_template() -> None:
    assert_one_line_error(codefill("complete", str(DEMO), "--line", "1", "--col", "1",
                                   "--template", "codegema"),
                          "unknown FIM template 'codegema'", "codegemma")


def test_template_that_does_not_fit_the_model() -> None:
    assert_one_line_error(codefill("complete", str(DEMO), "--line", "1", "--col", "1",
                                   "--template", "starcoder"), "does not fit this model")


def test_debug_shows_the_traceback() -> None:
    proc = codefill("complete", "nope.py", "--line", "1", "--col", "1", "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_invalid_setting_is_reported_and_replaced(tmp_path: Path) -> None:
    proc = codefill("complete", "nope.py", "--line", "1", "--col", "1", "--threads", "-3")
    assert "warning: setting 'engine.threads' must be ≥ 0, got -3; using the default 0" \
        in proc.stderr
