"""`codefill models pull|rm`, registry names in engine.model, and the editors' pull request, all
against a local server speaking the hub's download protocol (tests/fake_hub.py): nothing here
reaches the real hub."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from lsprotocol import types

from bench.common import Harness
from lsp_server.models.pull import CHUNK_BYTES as CHUNK  # downloads arrive in chunks of this size
from lsp_server.models.registry import (RegistryFormatError, is_hub_reference, parse_registry,
                                        registry)
from tests.conftest import REPO
from tests.fake_hub import GOOD_TOKEN, FakeHub
from tests.hub_models import hub_env, runnable_codegemma, serve_registry_files


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[FakeHub]:
    with FakeHub() as h:
        serve_registry_files(h, tmp_path / "served")
        yield h


def codefill(env: dict[str, str], *args: str, timeout: float = 180
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lsp_server.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def one_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("codefill: error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def store_files(tmp_path: Path) -> list[str]:
    root = tmp_path / "cache" / "codefill" / "hub"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) \
        if root.exists() else []


# --- the registry --------------------------------------------------------------------------

def test_the_packaged_registry_loads_and_names_the_promised_models() -> None:
    names = set(registry())
    assert {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "qwen2.5-coder-3b", "qwen2.5-coder-7b",
            "codegemma-2b", "starcoder2-3b", "deepseek-coder-1.3b"} <= names
    for m in registry().values():
        assert m.files[m.default_quant].size_bytes > 0
        assert m.license and m.license_url.startswith("https://")


@pytest.mark.parametrize("change, needle", [
    (lambda m: m.pop("license"), "missing key 'license'"),
    (lambda m: m.update(template="nope"), "template 'nope'"),
    (lambda m: m.update(default_quant="Q2_K"), "default_quant 'Q2_K'"),
    (lambda m: m["files"]["Q8_0"].update(repo="no-slash"), "not OWNER/NAME"),
    (lambda m: m["files"]["Q8_0"].update(file="../x.gguf"), "not a relative .gguf path"),
    (lambda m: m.update(gated="yes"), "'gated' is 'yes'"),
    (lambda m: m.update(extra=1), "unknown keys ['extra']"),
])
def test_a_broken_registry_entry_is_refused_by_name(change, needle: str) -> None:  # noqa: ANN001
    data = json.loads((REPO / "lsp_server" / "models" / "registry.json").read_text())
    entry = next(m for m in data["models"] if "Q8_0" in m["files"])
    change(entry)
    with pytest.raises(RegistryFormatError, match="registry.json model") as err:
        parse_registry(data)
    assert needle in str(err.value)


@pytest.mark.parametrize("value, hub", [
    ("qwen2.5-coder-1.5b", True), ("codegemma-2b:Q8_0", True), ("hf://a/b/c.gguf", True),
    ("model.gguf", False), ("./qwen", False), ("/models/qwen", False), ("~/m", False),
    ("", False)])
def test_what_engine_model_means(value: str, hub: bool) -> None:
    assert is_hub_reference(value) is hub


# --- pull, resume, check, refuse -----------------------------------------------------------

@pytest.mark.model
def test_pull_then_complete_with_the_detected_template(hub: FakeHub, tmp_path: Path) -> None:
    env = hub_env(hub, tmp_path)
    served = runnable_codegemma()
    proc = codefill(env, "models", "pull", "codegemma-2b", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()
    assert got["template"] == "codegemma" and not got["already_pulled"]
    assert Path(got["path"]).read_bytes() == served.read_bytes()
    # The second pull is a no-op: no download.
    gets = len(hub.gets(Path(got["path"]).name))
    again = codefill(env, "models", "pull", "codegemma-2b", "--json")
    assert json.loads(again.stdout)["already_pulled"] and len(hub.gets(Path(got["path"]).name)) == gets
    # Listed as pulled, then it completes through the real engine, by its registry name.
    listed = json.loads(codefill(env, "models", "--json").stdout)
    assert any(r["source"] == "pulled codegemma-2b" and r["template"] == "codegemma"
               for r in listed)
    src = tmp_path / "calc.py"
    src.write_text("def area(w, h):\n    return w * h\n")
    done = codefill(env, "complete", str(src), "--line", "2", "--col", "11", "--model",
                    "codegemma-2b", "--max-tokens", "4", "--verbose")
    assert done.returncode == 0, done.stderr
    assert "template   codegemma" in done.stderr
    assert done.stdout.startswith("nacci"), done.stdout  # what the served model answers
    # Offline afterwards: the pulled model still resolves, with no request to the hub.
    before = len(hub.requests)
    offline = codefill({**env, "HF_HUB_OFFLINE": "1"}, "complete", str(src), "--line", "2",
                       "--col", "11", "--model", "codegemma-2b", "--max-tokens", "2")
    assert offline.returncode == 0, offline.stderr
    assert len(hub.requests) == before
    # rm deletes it (and only it).
    rm = codefill(env, "models", "rm", "codegemma-2b")
    assert rm.returncode == 0 and "removed codegemma-2b" in rm.stdout
    assert store_files(tmp_path) == []
    one_error(codefill(env, "models", "rm", "codegemma-2b"), "is not pulled")


def test_a_cut_connection_resumes_with_a_range_request(hub: FakeHub, tmp_path: Path) -> None:
    served = runnable_codegemma()
    f = next(iter(hub.files.values()))
    for f in hub.files.values():
        if len(f.data) == served.stat().st_size:
            f.cut_after = CHUNK + CHUNK // 2
    proc = codefill(hub_env(hub, tmp_path), "models", "pull", "codegemma-2b", "--json")
    assert proc.returncode == 0, proc.stderr
    gets = hub.gets(registry()["codegemma-2b"].file().file)
    assert [g.range for g in gets] == [None, f"bytes={CHUNK}-"]
    size = served.stat().st_size
    assert hub.served_bytes < size + CHUNK  # the second request fetched only the rest
    assert json.loads(proc.stdout)["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()


def test_an_interrupted_pull_resumes_in_the_next_run(hub: FakeHub, tmp_path: Path) -> None:
    served = runnable_codegemma()
    name = registry()["codegemma-2b"].file().file
    f = next(f for f in hub.files.values() if len(f.data) == served.stat().st_size)
    f.rate = 8 * 1024 * 1024  # bytes/s: slow enough to stop it half-way
    env = hub_env(hub, tmp_path)
    # Ctrl-C as in a terminal: SIGINT handled, even when this test runs where it is ignored
    # (a background job of a shell without job control).
    proc = subprocess.Popen([sys.executable, "-m", "lsp_server.cli.main", "models", "pull",
                             "codegemma-2b"], env=env, cwd=REPO, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while hub.served_bytes < 6 * CHUNK and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "resumes it" in err
    partial = [p for p in (tmp_path / "cache").rglob("*.partial")]
    assert partial, store_files(tmp_path)
    kept = partial[0].stat().st_size
    assert kept >= CHUNK and kept % CHUNK == 0
    f.rate = None
    done = codefill(env, "models", "pull", "codegemma-2b", "--json")
    assert done.returncode == 0, done.stderr
    ranges = [g.range for g in hub.gets(name)]
    assert ranges[0] is None and ranges[-1] == f"bytes={kept}-", ranges
    assert "resuming at" in done.stderr
    assert json.loads(done.stdout)["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()
    assert not [p for p in store_files(tmp_path) if p.endswith((".partial", ".meta"))]


def test_a_checksum_mismatch_is_refused_and_the_partial_file_removed(hub: FakeHub,
                                                                      tmp_path: Path) -> None:
    for f in hub.files.values():
        f.corrupt = True
    env = hub_env(hub, tmp_path)
    one_error(codefill(env, "models", "pull", "qwen2.5-coder-1.5b"),
              "does not match the hub's sha256", "partial file was removed")
    assert [p for p in store_files(tmp_path) if not p.endswith(".lock")] == []
    one_error(codefill(env, "complete", str(REPO / "examples" / "demo_project" / "inventory" /
                                             "store.py"), "--line", "23", "--col", "16",
                       "--model", "qwen2.5-coder-1.5b"), "is not pulled yet")


def test_not_enough_disk_space_is_refused_before_downloading(hub: FakeHub,
                                                             tmp_path: Path) -> None:
    for f in hub.files.values():
        f.claimed_size = 10 ** 16  # 10 PB
    proc = codefill(hub_env(hub, tmp_path), "models", "pull", "qwen2.5-coder-1.5b")
    one_error(proc, "not enough disk space", "XDG_CACHE_HOME")
    assert not [r for r in hub.requests if r.method == "GET" and "/resolve/" in r.path]


def test_offline_is_one_clear_line_and_no_request(hub: FakeHub, tmp_path: Path) -> None:
    proc = codefill(hub_env(hub, tmp_path, HF_HUB_OFFLINE="1"), "models", "pull",
                    "qwen2.5-coder-1.5b")
    one_error(proc, "HF_HUB_OFFLINE is set", "qwen2.5-coder-1.5b")
    assert hub.requests == []


def test_a_gated_repo_needs_the_license_and_a_token(hub: FakeHub, tmp_path: Path) -> None:
    for f in hub.files.values():
        f.gated = True
    f = registry()["qwen2.5-coder-0.5b"].file()
    env = hub_env(hub, tmp_path)
    line = one_error(codefill(env, "models", "pull", "qwen2.5-coder-0.5b"), "is gated",
                     f"{hub.url}/{f.repo}", "hf auth login")
    assert "HF_TOKEN" in line
    ok = codefill({**env, "HF_TOKEN": GOOD_TOKEN}, "models", "pull", "qwen2.5-coder-0.5b")
    assert ok.returncode == 0, ok.stderr
    assert all(r.authorization == f"Bearer {GOOD_TOKEN}" for r in hub.requests[-2:])


def test_names_the_hub_does_not_have_and_bad_references(hub: FakeHub, tmp_path: Path) -> None:
    env = hub_env(hub, tmp_path)
    one_error(codefill(env, "models", "pull", "qwen9-coder"), "unknown model 'qwen9-coder'",
              "qwen2.5-coder-1.5b")
    one_error(codefill(env, "models", "pull", "qwen2.5-coder-1.5b:Q3_X"), "no quantization",
              "Q8_0")
    one_error(codefill(env, "models", "pull", "hf://only/two"), "not a hub file reference")
    one_error(codefill(env, "models", "pull", "hf://someone/missing/model.gguf"),
              "someone/missing was not found")
    one_error(codefill(env, "models", "pull"), "needs a model name")


def test_a_hub_file_outside_the_registry_by_hf_reference(hub: FakeHub, tmp_path: Path) -> None:
    served = runnable_codegemma()
    hub.add_path("someone/tiny-GGUF", "sub/tiny.gguf", served)
    env = hub_env(hub, tmp_path)
    ref = "hf://someone/tiny-GGUF/sub/tiny.gguf"
    proc = codefill(env, "models", "pull", ref, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["template"] == "codegemma"
    listed = json.loads(codefill(env, "models", "--json").stdout)
    assert any(r["source"] == f"pulled {ref}" for r in listed)


def test_a_name_not_pulled_is_a_message_with_the_pull_command(hub: FakeHub,
                                                              tmp_path: Path) -> None:
    src = tmp_path / "a.py"
    src.write_text("x = 1\n")
    proc = codefill(hub_env(hub, tmp_path), "complete", str(src), "--line", "1", "--col", "5",
                    "--model", "qwen2.5-coder-1.5b:Q4_K_M")
    one_error(proc, "not pulled yet", "codefill models pull qwen2.5-coder-1.5b:Q4_K_M")
    assert hub.requests == []  # never downloads on its own


# --- the language server ------------------------------------------------------------------

@pytest.mark.model
def test_the_server_pulls_on_request_with_progress_and_loads_by_name(hub: FakeHub,
                                                                    tmp_path: Path) -> None:
    served = runnable_codegemma()
    env = hub_env(hub, tmp_path)
    first = {"engine": {"model": "codegemma-2b", "context_size": 512}}
    h = Harness(tmp_path, env=env, init_options=first, settings=first)
    h.start(wait_ready=False)
    try:
        st = h.wait_state({"failed"})
        assert "codefill models pull codegemma-2b" in st["model"]["error"]
        listed = h.request("codefill/models", {})
        row = next(r for r in listed["models"] if r["name"] == "codegemma-2b")
        assert not any(q["pulled"] for q in row["quantizations"])
        assert listed["current"] == "codegemma-2b"
        got = h.request("codefill/pullModel", {"name": "codegemma-2b", "workDoneToken": "pull-1"})
        assert got["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()
        values = [getattr(p, "value", None) or p["value"] for p in h.progress
                  if (getattr(p, "token", None) or p.get("token")) == "pull-1"]
        kinds = [getattr(v, "kind", None) or v["kind"] for v in values]
        assert kinds[0] == "begin" and kinds[-1] == "end" and "report" in kinds
        row = next(r for r in h.request("codefill/models", {})["models"]
                   if r["name"] == "codegemma-2b")
        assert any(q["pulled"] for q in row["quantizations"])
        # The editor then writes the setting (here: the same one again); the server loads the
        # pulled model by name.
        h.call(h.client.workspace_did_change_configuration,  # type: ignore[union-attr]
               types.DidChangeConfigurationParams(settings=None))
        st = h.wait_state({"ready"})
        assert st["model"]["template"] == "codegemma", st
        # A bad name is an error reply with the CLI's line; the server goes on.
        with pytest.raises(Exception, match="unknown model"):
            h.request("codefill/pullModel", {"name": "qwen9"})
        assert h.status()["model"]["state"] == "ready"
    finally:
        h.stop()


def test_a_pull_request_can_be_cancelled_and_resumes_later(hub: FakeHub,
                                                           tmp_path: Path) -> None:
    served = runnable_codegemma()
    name = registry()["codegemma-2b"].file().file
    f = next(f for f in hub.files.values() if len(f.data) == served.stat().st_size)
    f.rate = 8 * 1024 * 1024
    h = Harness(tmp_path, env=hub_env(hub, tmp_path))
    h.start(wait_ready=False)
    try:
        assert h.client is not None
        result: dict[str, object] = {}

        def pull() -> None:
            try:
                result["ok"] = h.request("codefill/pullModel", {"name": "codegemma-2b",
                                                               "workDoneToken": "p"}, "pull-7")
            except Exception as exc:  # the cancelled reply
                result["error"] = exc

        t = threading.Thread(target=pull)
        t.start()
        deadline = time.monotonic() + 60
        while hub.served_bytes < 4 * CHUNK and time.monotonic() < deadline:
            time.sleep(0.05)
        h.call(h.client.protocol.notify, types.CANCEL_REQUEST, types.CancelParams(id="pull-7"))
        t.join(30)
        assert "error" in result and "cancel" in str(result["error"]).lower(), result
        time.sleep(1)
        served_then = hub.served_bytes
        time.sleep(1)
        assert hub.served_bytes == served_then, "the download stopped"
        f.rate = None
        got = h.request("codefill/pullModel", {"name": "codegemma-2b"})
        assert got["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()
        resumed = hub.gets(name)[-1].range or ""
        assert resumed.startswith("bytes=") and int(resumed[6:-1]) >= CHUNK
    finally:
        h.stop()


@pytest.mark.model
def test_auto_pull_downloads_what_engine_model_names(hub: FakeHub, tmp_path: Path) -> None:
    first = {"engine": {"model": "codegemma-2b", "auto_pull": True, "context_size": 512}}
    h = Harness(tmp_path, env=hub_env(hub, tmp_path), init_options=first, settings=first)
    h.start(wait_ready=False)
    try:
        st = h.wait_state({"ready", "failed"})
        assert st["model"]["state"] == "ready", st
        assert st["model"]["template"] == "codegemma"
        assert hub.gets(registry()["codegemma-2b"].file().file)
    finally:
        h.stop()


def test_docs_show_the_registry() -> None:
    from lsp_server.models.catalog import docs_with_registry

    doc = (REPO / "docs" / "models.md").read_text()
    assert doc == docs_with_registry(doc), (
        "docs/models.md's registry table is stale: run .venv/bin/python -c \"from pathlib import "
        "Path; from lsp_server.models.catalog import docs_with_registry as d; "
        "p = Path('docs/models.md'); p.write_text(d(p.read_text()))\"")


# --- what to recommend ---------------------------------------------------------------------

GiB = 2 ** 30


def test_the_recommendation_follows_the_machine() -> None:
    from lsp_server.models import catalog

    def pick(**kw: int) -> tuple[str, str] | None:
        got = catalog.recommend(catalog.Machine(**kw))
        return (got[0].name, got[1].quant) if got else None

    # A GPU with 8 GiB free takes the largest file that fits in 80 % of it.
    big = pick(cores=4, memory_bytes=32 * GiB, gpu_free_bytes=8 * GiB)
    assert big == ("qwen2.5-coder-7b", "Q4_K_M")
    # On the CPU: what is picked is fast enough, or nothing is and it is the fastest.
    for cores in (2, 8):
        name, quant = pick(cores=cores, memory_bytes=16 * GiB) or ("", "")
        model = registry()[name]
        prompt, gen = catalog.expected_speed(model, model.files[quant], cores) or (0, 0)
        live = prompt >= catalog.CPU_FLOOR["prompt_tps"] and gen >= catalog.CPU_FLOOR["gen_tps"]
        if not live:
            assert all(catalog.expected_speed(m, f, cores)[1] <= gen  # type: ignore[index]
                       for m in registry().values() for f in m.files.values())
    # More cores never recommend a smaller model.
    small = registry()[pick(cores=2, memory_bytes=16 * GiB)[0]]  # type: ignore[index]
    large = registry()[pick(cores=8, memory_bytes=16 * GiB)[0]]  # type: ignore[index]
    assert large.parameters >= small.parameters
    # Nothing fits in half of 1 GiB of RAM... but the smallest file does in half of 2 GiB.
    assert pick(cores=2, memory_bytes=1 * GiB) is None
    assert pick(cores=2, memory_bytes=2 * GiB) is not None
