"""tests/conftest.py's CI rule on skips: with CI set, a skip whose reason is not accepted fails
the run and is named; an accepted one does not; without CI skips stay skips.

Each case runs pytest in a subprocess on a tiny test tree that uses a copy of tests/conftest.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ACCEPTED_SKIPS, REPO

ACCEPTED = next(iter(sorted(ACCEPTED_SKIPS)))

TESTS = f'''
import pytest


def test_passes():
    pass


def test_accepted_skip():
    pytest.skip({ACCEPTED!r})


@pytest.mark.xfail(reason="expected to fail")
def test_xfail():
    assert False
'''

NOT_ACCEPTED = '''
import pytest


def test_component_missing():
    pytest.skip("frobnicator not found")


@pytest.mark.skipif(True, reason="widget server not built")
def test_marked_skip():
    pass
'''

MODULE_SKIP = '''
import pytest

pytest.importorskip("no_such_module_for_codefill_tests")


def test_never_runs():
    pass
'''


def run(tmp: Path, ci: str | None, *files: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(REPO / "tests" / "conftest.py", tmp / "conftest.py")
    (tmp / "pytest.ini").write_text("[pytest]\n")  # not the repository's settings
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *files],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=300)


def write(tmp: Path, **files: str) -> None:
    for name, text in files.items():
        (tmp / f"{name}.py").write_text(text)


def test_in_ci_a_skip_not_accepted_fails_the_run_and_is_named(tmp_path: Path) -> None:
    write(tmp_path, test_ok=TESTS, test_missing=NOT_ACCEPTED, test_module=MODULE_SKIP)
    proc = run(tmp_path, "true", "test_ok.py", "test_missing.py", "test_module.py")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "CI: skips that fail the run" in out, out
    assert "SKIP NOT ACCEPTED test_missing.py::test_component_missing: frobnicator not found" in out
    assert "SKIP NOT ACCEPTED test_missing.py::test_marked_skip: widget server not built" in out
    assert "SKIP NOT ACCEPTED test_module.py: could not import" in out, out
    assert "SKIP NOT ACCEPTED test_ok.py::test_accepted_skip" not in out, out
    assert "CI is set and 3 skip(s) have a reason that is not accepted" in out, out


def test_in_ci_an_accepted_skip_passes(tmp_path: Path) -> None:
    write(tmp_path, test_ok=TESTS)
    proc = run(tmp_path, "true", "test_ok.py")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 passed, 1 skipped, 1 xfailed" in out, out
    assert ACCEPTED in out, out  # -rs lists it
    assert "SKIP NOT ACCEPTED" not in out, out


def test_outside_ci_skips_stay_skips(tmp_path: Path) -> None:
    write(tmp_path, test_ok=TESTS, test_missing=NOT_ACCEPTED, test_module=MODULE_SKIP)
    for ci in (None, "false"):
        proc = run(tmp_path, ci, "test_ok.py", "test_missing.py", "test_module.py")
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, (ci, out)
        assert "frobnicator not found" in out, out  # -rs lists the reason
        assert "SKIP NOT ACCEPTED" not in out, (ci, out)
