"""The index follows the disk through a real watchdog observer: create, edit, rename, delete."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from lsp_server.config import ContextConfig
from lsp_server.context import IndexProgress, WorkspaceIndex
from tests.fake_tokenizer import CharTokenizer

BOUND_S = 5.0  # generous for a loaded CI machine; the debounce is 50 ms


def wait_until(cond: Callable[[], bool], timeout: float = BOUND_S) -> float:
    """Seconds until ``cond`` held; fails the test after ``timeout``."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - t0


@pytest.fixture()
def ws(tmp_path: Path) -> Iterator[tuple[Path, WorkspaceIndex, list[IndexProgress]]]:
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "app.py").write_text("import helper\nimport fresh\n")
    (root / "helper.py").write_text("H = 1\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "mod.py").write_text("M = 1\n")
    events: list[IndexProgress] = []
    idx = WorkspaceIndex([root], ContextConfig(debounce_ms=50), on_progress=events.append)
    idx.start()
    assert idx.wait_ready(10)
    yield root, idx, events
    idx.stop()


def files(idx: WorkspaceIndex) -> set[str]:
    with idx._lock:  # the test reads what the watcher thread writes
        return set(idx.roots[0].stats)


def context_paths(idx: WorkspaceIndex, root: Path) -> list[str]:
    text = (root / "app.py").read_text()
    return [f.path for f in idx.select_context(root / "app.py", text, "", CharTokenizer(),
                                               9000).files]


def test_background_scan_reports_progress_and_watches(ws: tuple) -> None:
    root, idx, events = ws
    assert events[-1].phase == "ready" and events[-1].files == 4
    stats = idx.stats()
    assert stats.state == "ready" and stats.watching and stats.files == 4


def test_create_edit_rename_delete_are_seen(ws: tuple) -> None:
    root, idx, _ = ws
    assert context_paths(idx, root) == ["helper.py"]

    (root / "fresh.py").write_text("F = 1\n")  # created: app's unresolved import resolves
    wait_until(lambda: "fresh.py" in context_paths(idx, root))

    (root / "fresh.py").write_text("F = 2  # edited\n")
    sel = lambda: {f.path: f.text for f in idx.select_context(  # noqa: E731
        root / "app.py", (root / "app.py").read_text(), "", CharTokenizer(), 9000).files}
    wait_until(lambda: "edited" in sel().get("fresh.py", ""))

    (root / "fresh.py").rename(root / "renamed.py")
    wait_until(lambda: "renamed.py" in files(idx) and "fresh.py" not in files(idx))
    assert "fresh.py" not in context_paths(idx, root)

    (root / "renamed.py").unlink()
    wait_until(lambda: "renamed.py" not in files(idx))


def test_directory_moves_and_gitignore_edits(ws: tuple) -> None:
    root, idx, _ = ws
    (root / "pkg").rename(root / "pkg2")
    wait_until(lambda: "pkg2/mod.py" in files(idx) and "pkg/mod.py" not in files(idx))

    (root / "gen").mkdir()
    (root / "gen" / "out.py").write_text("G = 1\n")
    wait_until(lambda: "gen/out.py" in files(idx))
    (root / ".gitignore").write_text("gen/\n")
    wait_until(lambda: "gen/out.py" not in files(idx))
    (root / ".gitignore").write_text("")
    wait_until(lambda: "gen/out.py" in files(idx))

    shutil.rmtree(root / "pkg2")
    wait_until(lambda: not any(f.startswith("pkg2/") for f in files(idx)))


def test_secret_and_ignored_creations_stay_out(ws: tuple) -> None:
    root, idx, _ = ws
    (root / ".env").write_text("SECRET=1\n")
    (root / "node_modules" / "x").mkdir(parents=True)
    (root / "node_modules" / "x" / "index.js").write_text("x\n")
    (root / "marker.py").write_text("")  # written last: once seen, the others were handled
    wait_until(lambda: "marker.py" in files(idx))
    time.sleep(0.2)
    assert ".env" not in files(idx)
    assert not any(f.startswith("node_modules") for f in files(idx))


def test_changes_during_the_first_scan_are_not_lost(tmp_path: Path) -> None:
    root = tmp_path / "big"
    for i in range(300):
        (root / f"d{i % 10}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 10}" / f"m{i}.py").write_text(f"import d{(i + 1) % 10}.m{i + 1}\n")
    idx = WorkspaceIndex([root], ContextConfig(debounce_ms=20))
    idx.start()
    (root / "late.py").write_text("L = 1\n")  # likely while scanning
    try:
        assert idx.wait_ready(10)
        wait_until(lambda: "late.py" in files(idx))
    finally:
        idx.stop()


def test_selection_never_waits_for_the_first_scan(tmp_path: Path) -> None:
    root = tmp_path / "many"
    for i in range(3000):
        d = root / f"p{i // 100}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"m{i}.py").write_text(f"import p{(i + 7) // 100 % 30}.m{(i + 7) % 3000}\n"
                                    f"def f{i}():\n    return {i}\n")
    (root / "p0" / "__init__.py").write_text("")
    idx = WorkspaceIndex([root], ContextConfig(watch=False))
    idx.start()
    worst, statuses = 0.0, set()
    try:
        while not idx.ready:
            t0 = time.monotonic()
            sel = idx.select_context(root / "p0" / "m1.py", "import p0.m8\n", "",
                                     CharTokenizer(), 2000)
            worst = max(worst, time.monotonic() - t0)
            statuses.add(sel.status)
            time.sleep(0.005)
        assert idx.wait_ready(30)
    finally:
        idx.stop()
    assert "indexing" in statuses  # the scan was still running while we asked
    assert worst < 0.5, worst
    sel = idx.select_context(root / "p0" / "m1.py", "import p0.m8\n", "", CharTokenizer(), 2000)
    assert sel.status == "ok" and [f.path for f in sel.files][-1] == "p0/m8.py"
