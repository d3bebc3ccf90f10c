"""The VS Code extension (editors/vscode): settings manifest, lint, type check, unit tests,
.vsix package, and end-to-end tests in a real VS Code (code-server in headless Chromium): ghost
text, remote engine and crashes; cycling through ranked candidates; choosing a model that is
pulled from a local stand-in for the Hugging Face hub.

The npm dependencies and the e2e tools are installed by editors/vscode/scripts/setup-tests.sh
(.ci/run calls it); each test skips and names what is missing when they are not there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fake_hub import FakeHub
from tests.hub_models import hub_env, runnable_codegemma, serve_registry_files

EXT = REPO / "editors" / "vscode"
FIXTURE = REPO / "tests" / "editors" / "neovim" / "fixtures" / "fib.py"
ARTIFACTS = REPO / "test-artifacts"
CODE_SERVER = Path(os.environ.get("CODEFILL_CODE_SERVER_DIR",
                                  Path.home() / ".cache" / "codefill" / "code-server")) \
    / "node_modules" / ".bin" / "code-server"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

sys.path.insert(0, str(EXT / "scripts"))
import settings_manifest  # noqa: E402


def _npm_missing() -> str | None:
    if shutil.which("npm") is None or shutil.which("node") is None:
        return "node/npm not found"
    if not (EXT / "node_modules" / ".bin" / "tsc").exists():
        return ("editors/vscode/node_modules missing: run editors/vscode/scripts/setup-tests.sh "
                "(npm ci)")
    return None


needs_npm = pytest.mark.skipif(_npm_missing() is not None, reason=str(_npm_missing()))


def npm(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["npm", "--prefix", str(EXT), "run", *args], cwd=EXT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"npm run {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_settings_in_package_json_match_the_server_config() -> None:
    """Every server setting is contributed with the server's default, doc, type and bounds."""
    package = json.loads((EXT / "package.json").read_text())
    props = package["contributes"]["configuration"]["properties"]
    expected = settings_manifest.server_properties()
    server_keys = {k: v for k, v in props.items() if not k.startswith(settings_manifest.CLIENT_KEYS)}
    assert server_keys == expected, ("package.json is stale: run "
                                     "`python editors/vscode/scripts/settings_manifest.py --write`")
    assert props["codefill.engine.model"]["default"] == ""
    assert props["codefill.completion.mode"]["enum"] == ["auto", "single", "multi"]
    assert set(k for k in props if k.startswith(settings_manifest.CLIENT_KEYS)) == {
        "codefill.server.command", "codefill.server.pythonPath", "codefill.server.maxRestarts",
        "codefill.streaming"}


def test_server_sections_in_logic_ts_match_the_server_config() -> None:
    """The extension sends exactly the server's top-level sections (codefill.remote.* too)."""
    import dataclasses
    import re

    from lsp_server.config import Config

    source = (EXT / "src" / "logic.ts").read_text()
    m = re.search(r"export const SERVER_SECTIONS = \[([^\]]*)\]", source)
    assert m, "SERVER_SECTIONS not found in src/logic.ts"
    sections = re.findall(r'"([^"]+)"', m.group(1))
    assert sorted(sections) == sorted(f.name for f in dataclasses.fields(Config))


def test_commands_are_contributed() -> None:
    package = json.loads((EXT / "package.json").read_text())
    commands = {c["command"] for c in package["contributes"]["commands"]}
    assert commands == {"codefill.toggle", "codefill.acceptNextWord", "codefill.acceptNextLine",
                        "codefill.showStatus", "codefill.showLog", "codefill.restartServer",
                        "codefill.chooseModel"}
    source = (EXT / "src" / "extension.ts").read_text()
    bound = {k["command"] for k in package["contributes"]["keybindings"]}
    assert {"codefill.showNext", "codefill.showPrevious"} <= bound
    for command in commands | bound | {"codefill.didAccept"}:
        assert f'"{command}"' in source, f"{command} is not registered"


@needs_npm
@pytest.mark.timeout(1260)  # two npm runs of up to 600 s each
def test_typecheck_and_lint() -> None:
    npm("typecheck")
    npm("lint")


@needs_npm
@pytest.mark.timeout(660)  # npm's own timeout is 600 s
def test_unit_tests() -> None:
    proc = npm("test")
    assert "# fail 0" in proc.stdout and "# pass " in proc.stdout, proc.stdout


@pytest.fixture(scope="module")
def vsix() -> Path:
    if _npm_missing():
        pytest.skip(str(_npm_missing()))
    npm("package")
    path = EXT / "dist" / "codefill.vsix"
    assert path.exists()
    return path


@pytest.mark.timeout(660)  # the vsix fixture's npm run has 600 s
def test_vsix_contents(vsix: Path) -> None:
    with zipfile.ZipFile(vsix) as z:
        names = set(z.namelist())
        assert {"extension/package.json", "extension/dist/extension.js", "extension.vsixmanifest",
                "extension/readme.md"} <= names
        assert not any("node_modules" in n or n.endswith(".ts") for n in names), names
        manifest = json.loads(z.read("extension/package.json"))
        bundle = z.read("extension/dist/extension.js").decode()
    assert manifest["main"] == "./dist/extension.js"
    assert "codefill/partial" in bundle and "registerProposedFeatures" in bundle
    assert "codefill/pullModel" in bundle and "codefill/models" in bundle
    assert "codefill/didFocus" in bundle


def _e2e_missing() -> str | None:
    if missing := _npm_missing():
        return missing
    if not Path(CHROMIUM).exists():
        return "chromium not found (apt-get install chromium; see editors/vscode/scripts/setup-tests.sh)"
    if not CODE_SERVER.exists():
        return f"code-server not found at {CODE_SERVER} (editors/vscode/scripts/setup-tests.sh)"
    if not (EXT / "node_modules" / "playwright-core").exists():
        return "playwright-core missing in editors/vscode/node_modules (npm ci)"
    return None


@pytest.mark.model
@pytest.mark.timeout(1560)  # the vsix fixture's npm run (600 s) and the e2e driver (900 s)
def test_e2e_ghost_text_in_code_server(vsix: Path, tmp_path: Path) -> None:
    """Real VS Code, real server, embedded model: where the user looks reaches the server
    (codefill/didFocus, counted in Show Status); type, see ghost text, Tab, check the file;
    a remote engine that fails and recovers (settings change, no restart); then crash the
    server until the client gives up."""
    if missing := _e2e_missing():
        pytest.skip(missing)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    shutil.copy(FIXTURE, workspace / "fib.py")
    original = (workspace / "fib.py").read_text()
    screenshot = ARTIFACTS / "vscode-ghost-text.png"
    env = {**os.environ, "CODE_SERVER": str(CODE_SERVER), "VSIX": str(vsix),
           "WORKSPACE": str(workspace), "SCREENSHOT": str(screenshot), "CHROMIUM": CHROMIUM,
           "SERVER_CMD": json.dumps([sys.executable, "-m", "lsp_server.cli.main", "serve"]),
           "GHOST_TIMEOUT_MS": "150000"}
    proc = subprocess.run(["node", str(EXT / "e2e" / "run.mjs")], cwd=EXT, env=env,
                          capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result from the e2e driver:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(lines[-1])
    assert result["ok"], f"{result.get('error')}\n{result.get('codeServerLog', '')}\n{proc.stderr}"
    ghost = result["ghost"]
    assert ghost and any(g.strip() for g in ghost), result
    text = result["fileText"]
    line4 = text.split("\n")[3]
    assert line4.startswith("    return fib") and len(line4) > len("    return fib"), line4
    # The accepted text is what the ghost text showed on the cursor line (VS Code splits it into
    # one span per syntax token: ["onacci(n", "-"] is one suggestion).
    assert result["ghostInline"].strip(), result
    assert line4.rstrip() == ("    return fib" + result["ghostInline"]).rstrip(), (line4, ghost)
    # Nothing else in the file changed.
    orig_lines = original.split("\n")
    new_lines = text.split("\n")
    assert new_lines[:3] == orig_lines[:3]
    assert new_lines[-6:] == orig_lines[-6:]
    assert screenshot.exists() and screenshot.stat().st_size > 10_000
    # codefill/didFocus: the editor active at start was told (the server counts its own focus at
    # didOpen too); the cursor resting on another line added exactly one; a move on the same line
    # none.
    assert result["focusAtStart"] >= 1, result
    assert result["focusAfterMove"] == result["focusAtStart"] + 1, result
    assert result["focusAfterMove"] >= 2, result
    assert result["focusAfterSameLine"] == result["focusAfterMove"], result
    # codefill.remote.url pointed at a closed port, without a restart: the status bar warns with
    # the reason; once a stand-in llama-server listens there, it is ready again.
    assert "remote engine failing: cannot reach the remote engine" in result["remoteWarning"], result
    assert "ready" in result["remoteRecovered"] and "remote engine llama-server" in result["remoteRecovered"], result
    assert result["remoteRequests"] >= 1
    # The server killed 4 times: 3 restarts, then the client gives up with a clear error, no
    # server process is left, and typing still works.
    assert result["killed"] == 4
    assert "not restarted again" in result["crashMessage"], result["crashMessage"]
    assert result["serversAfterGivingUp"] == 0
    assert "# still typing" in result["fileAfterCrash"].splitlines()
    print(f"ghost text after {result['ghostLatencyS']:.1f} s; timings {result['timings']}")


@pytest.mark.model
@pytest.mark.timeout(1260)  # the vsix fixture's npm run (600 s) and the e2e driver (600 s)
def test_e2e_cycle_ranked_candidates_in_code_server(vsix: Path, tmp_path: Path) -> None:
    """Real VS Code, real server, embedded model, codefill.completion.candidates = 4: type, see
    ghost text grow into the first candidate; Alt+] shows another candidate (the toolbar counts
    them), Alt+[ the first again; typing through the candidate shown keeps it; Tab accepts it and
    the file has it."""
    if missing := _e2e_missing():
        pytest.skip(missing)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    shutil.copy(FIXTURE, workspace / "fib.py")
    original = (workspace / "fib.py").read_text()
    screenshot = ARTIFACTS / "vscode-candidates.png"
    env = {**os.environ, "CODE_SERVER": str(CODE_SERVER), "VSIX": str(vsix),
           "WORKSPACE": str(workspace), "SCREENSHOT": str(screenshot), "CHROMIUM": CHROMIUM,
           "SERVER_CMD": json.dumps([sys.executable, "-m", "lsp_server.cli.main", "serve"]),
           "CANDIDATES": "4", "MAX_TOKENS": "16", "GHOST_TIMEOUT_MS": "150000"}
    proc = subprocess.run(["node", str(EXT / "e2e" / "candidates.mjs")], cwd=EXT, env=env,
                          capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result from the e2e driver:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(lines[-1])
    assert result["ok"], (f"{result.get('error')}\n{result.get('extensionLog', '')}\n"
                          f"{result.get('codeServerLog', '')}\n{proc.stderr}")
    first, second = result["first"], result["second"]
    assert first.strip() and second.strip() and first != second, result
    # Until the final answer the ghost text only grew towards the first candidate (the one that
    # streamed stays first), and it never went away in between (no hiding to query again).
    shown = [e["text"] for e in result["ghostLog"]]
    shown = shown[next(i for i, t in enumerate(shown) if t):]
    assert all(t for t in shown), result["ghostLog"]
    assert all(first.startswith(t) or t.startswith(first) for t in shown), (first, result["ghostLog"])
    assert result["countFinal"] == f"1/{result['countAfterNext'].split('/')[1]}", result
    # The toolbar counts the candidates: the second of at least two, then the first again.
    assert re.fullmatch(r"2/[2-4]", result["countAfterNext"]), result
    total = result["countAfterNext"].split("/")[1]
    assert result["countAfterPrevious"] == f"1/{total}", result
    assert result["countAccepted"] == f"2/{total}", result
    # Typing the first character of the second candidate kept it (where the server may have put
    # the first candidate first, the typed character fitting both), from the keystroke on.
    if typed := result["typed"]:
        rest = second[len(typed):]
        assert result["afterTyping"] == rest, result
        before, *after = result["typedLog"]  # the ghost text before the keystroke, then after
        assert before["text"] == second, result["typedLog"]
        assert all(rest.startswith(e["text"]) or e["text"].startswith(rest)
                   for e in after if e["text"]), (rest, result["typedLog"])
    # Tab accepted the candidate shown (the second), and nothing else changed.
    new_lines = result["fileText"].split("\n")
    assert new_lines[3].rstrip() == ("    return f" + second).rstrip(), (new_lines[3], result)
    orig_lines = original.split("\n")
    assert new_lines[:3] == orig_lines[:3] and new_lines[4:] == orig_lines[4:], result["fileText"]
    assert screenshot.exists() and screenshot.stat().st_size > 10_000
    print(f"candidates {first!r} then {second!r} ({result['countAfterNext']}); ghost text after "
          f"{result['ghostLatencyS']:.1f} s, then {result['ghostLog']}; typed {result['typed']!r}: "
          f"{result.get('typedLog')}; timings {result['timings']}")


@pytest.mark.model
@pytest.mark.timeout(1260)  # the vsix fixture's npm run (600 s) and the e2e driver (600 s)
def test_e2e_choose_model_pulls_with_progress_cancel_and_resume(vsix: Path, tmp_path: Path) -> None:
    """codefill: Choose Model in a real VS Code: pick codegemma-2b, cancel its pull in the
    progress notification, pick it again (the download resumes where it stopped), then the
    setting is in the user settings.json, the server loads the model and its ghost text shows."""
    if missing := _e2e_missing():
        pytest.skip(missing)
    from lsp_server.models.registry import registry

    workspace = tmp_path / "ws"
    workspace.mkdir()
    shutil.copy(FIXTURE, workspace / "fib.py")
    screenshot = ARTIFACTS / "vscode-choose-model.png"
    model = runnable_codegemma()
    hub_file = registry()["codegemma-2b"].file()
    cancel_after_mb = 4
    with FakeHub() as hub:
        serve_registry_files(hub, tmp_path / "served")
        # Slow enough to cancel half-way (about 10 s for the whole file), fast enough to finish.
        served = hub.add_path(hub_file.repo, hub_file.file, model, rate=4 * 1024 * 1024)
        env = {**hub_env(hub, tmp_path), "CODE_SERVER": str(CODE_SERVER), "VSIX": str(vsix),
               "WORKSPACE": str(workspace), "SCREENSHOT": str(screenshot), "CHROMIUM": CHROMIUM,
               "SERVER_CMD": json.dumps([sys.executable, "-m", "lsp_server.cli.main", "serve"]),
               "MODEL": "codegemma-2b", "TEMPLATE": "codegemma",
               "CANCEL_AFTER_MB": str(cancel_after_mb), "GHOST_TIMEOUT_MS": "150000"}
        proc = subprocess.run(["node", str(EXT / "e2e" / "choose-model.mjs")], cwd=EXT, env=env,
                              capture_output=True, text=True, timeout=600)
        gets = hub.gets(hub_file.file)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result from the e2e driver:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(lines[-1])
    assert result["ok"], f"{result.get('error')}\n{result.get('codeServerLog', '')}\n{proc.stderr}"
    # The picker: one row per registry model (not pulled yet), the embedded default current.
    before = result["pickerRowBefore"]
    assert before.startswith("codegemma-2b") and "gemma" in before and "pulled" not in before, before
    assert not any("codegemma-2b" in r and "current" in r for r in result["pickerRows"]), result
    # Cancelled from the notification: the partial file stays, stops growing, nothing is set.
    assert "pull cancelled; choosing it again resumes" in result["cancelMessage"], result
    # (the notification's "4 of 37 MB" is rounded to whole MB)
    assert result["partialStopped"] and result["partialBytes"] >= (cancel_after_mb - 0.5) * 10**6, \
        result
    assert result["partialBytes"] < len(served.data)
    assert result["ggufAfterCancel"] == 0 and result["settingAfterCancel"] is None, result
    # Picked again: one more GET that resumes where the partial file ends.
    assert len(gets) >= 2, [g.range for g in gets]
    assert gets[0].range is None and gets[-1].range == f"bytes={result['partialBytes']}-", \
        [g.range for g in gets]
    pulled = Path(result["ggufAfterPull"][0])
    assert pulled.name == hub_file.file
    assert hashlib.sha256(pulled.read_bytes()).hexdigest() == served.sha256
    assert f"codefill: using codegemma-2b ({pulled})" in result["doneMessage"], result
    assert result["settingAfterPull"] == "codegemma-2b"
    # The server loaded it by its registry name, and the picker says so.
    assert "model ready" in result["statusAfterPull"], result
    assert str(pulled) in result["statusAfterPull"] and "template codegemma" in result["statusAfterPull"]
    after = result["pickerRowAfter"]
    assert "current" in after and "pulled" in after, after
    # Its ghost text.
    assert any(g.strip() for g in result["ghost"]), result
    assert screenshot.exists() and screenshot.stat().st_size > 10_000
    print(f"cancelled at {result['partialBytes']} bytes; progress {result['progressBeforeCancel']} "
          f"then {result['progressAfterResume']}; ghost {result['ghost']} after "
          f"{result['ghostLatencyS']:.1f} s; timings {result['timings']}")
