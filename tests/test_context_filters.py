"""What must never reach a prompt: ignored, secret, binary, huge and out-of-root files.

Each excluded file carries a marker string; the assertions are on the assembled prompt text.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lsp_server.config import ContextConfig
from lsp_server.context import WorkspaceIndex
from lsp_server.prompt.assemble import fixed_tokens
from lsp_server.prompt import Budget, assemble, get_template
from tests.fake_tokenizer import CharTokenizer

SECRETS = ["SECRET_ENV", "SECRET_CRED", "SECRET_PEM", "SECRET_IGNORED", "SECRET_NESTED",
           "SECRET_BIG", "SECRET_BINARY", "SECRET_OUTSIDE", "SECRET_NODE", "SECRET_VENV",
           "SECRET_EXTRA", "SECRET_LOOP_DIR", "SECRET_TOKEN"]

APP = """import credentials, keys, big, blob, linked, token_holder, latin, helper
from generated import out
from lib import local_tmp, local_keep
from node_modules_shim import x
from custom_venv.lib import mod
from drafts import draft
from ext import far

def main():
    return helper.run()
"""


def make_workspace(tmp: Path) -> tuple[Path, Path]:
    root, outside = tmp / "ws", tmp / "outside"
    (outside / "pkg").mkdir(parents=True)
    (outside / "linked_target.py").write_text("SECRET_OUTSIDE = 1\n")
    (outside / "pkg" / "far.py").write_text("SECRET_OUTSIDE_DIR = 1\n")
    files = {
        "app.py": APP,
        "helper.py": "ALLOWED_HELPER = 1\ndef run():\n    return ALLOWED_HELPER\n",
        ".env": "TOKEN=SECRET_ENV\n",
        ".env.production": "TOKEN=SECRET_ENV\n",
        "credentials.py": "KEY = 'SECRET_CRED'\n",
        "keys.py": "PEM = '''-----BEGIN RSA PRIVATE KEY-----\nSECRET_PEM\n'''\n",
        "token_holder.py": "T = 'ghp_" + "a" * 36 + "'  # SECRET_TOKEN\n",
        "server.pem": "SECRET_PEM\n", "deploy.key": "SECRET_PEM\n", "id_rsa": "SECRET_PEM\n",
        ".npmrc": "//registry/:_authToken=SECRET_CRED\n", ".pypirc": "password=SECRET_CRED\n",
        ".gitignore": "generated/\n*.log\n",
        "generated/out.py": "SECRET_IGNORED = 1\n",
        "debug.log": "SECRET_IGNORED\n",
        "lib/__init__.py": "",
        "lib/.gitignore": "local_*.py\n!local_keep.py\n",
        "lib/local_tmp.py": "SECRET_NESTED = 1\n",
        "lib/local_keep.py": "ALLOWED_KEEP = 1\n",
        "big.py": "# SECRET_BIG\n" + "x = 1\n" * 2000,
        "node_modules/x/index.js": "SECRET_NODE\n",
        "node_modules_shim/x.py": "ALLOWED_SHIM = 1\n",
        ".venv/lib/site.py": "SECRET_VENV\n",
        "custom_venv/pyvenv.cfg": "home = /usr\n",
        "custom_venv/lib/mod.py": "SECRET_VENV = 1\n",
        "drafts/draft.py": "SECRET_EXTRA = 1\n",
    }
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (root / "blob.py").write_bytes(b"SECRET_BINARY = 1\n\x00\x01\x02")
    (root / "latin.py").write_bytes(b"NAME = 'caf\xe9'  # ALLOWED_LATIN\n")
    (root / "linked.py").symlink_to(outside / "linked_target.py")
    (root / "ext").symlink_to(outside / "pkg")
    (root / "loop").symlink_to(root)  # a directory loop
    os.mkfifo(root / "pipe.py")  # opening a FIFO would block the scan
    return root, outside


def config() -> ContextConfig:
    return ContextConfig(watch=False, max_file_bytes=4096, ignore="drafts/, *.bak")


def assembled_text(idx: WorkspaceIndex, path: Path, template: str = "codegemma") -> str:
    tok = CharTokenizer()
    text = path.read_text()
    budget = Budget(total=20_000, context_share=0.5)
    allowance = budget.context_allowance(fixed_tokens(get_template(template), tok))
    sel = idx.select_context(path, text, "", tok, allowance)
    assert sel.status == "ok"
    prompt = assemble(get_template(template), tok, prefix=text, suffix="", budget=budget,
                      path=str(path.relative_to(idx.roots[0].root)), context=sel.files)
    assert prompt.context_files == [f.path for f in sel.files]
    return tok.render(prompt.tokens)


def test_index_holds_only_allowed_files(tmp_path: Path) -> None:
    root, _ = make_workspace(tmp_path)
    idx = WorkspaceIndex([root], config())
    idx.build()
    indexed = set(idx.roots[0].stats)
    assert indexed == {"app.py", "helper.py", ".gitignore", "lib/__init__.py", "lib/.gitignore",
                       "lib/local_keep.py", "node_modules_shim/x.py", "latin.py"}
    skipped = idx.stats().skipped
    for reason in ("name", "gitignore", "size", "symlink out of root", "ignored directory",
                   "virtualenv", "binary, secret or unreadable", "directory loop"):
        assert skipped.get(reason), (reason, skipped)


@pytest.mark.parametrize("template", ["codegemma", "starcoder", "plain"])
def test_no_secret_reaches_the_prompt(tmp_path: Path, template: str) -> None:
    root, _ = make_workspace(tmp_path)
    idx = WorkspaceIndex([root], config())
    idx.build()
    text = assembled_text(idx, root / "app.py", template)
    for marker in ("ALLOWED_HELPER", "ALLOWED_KEEP", "ALLOWED_SHIM", "ALLOWED_LATIN"):
        assert marker in text, marker
    for marker in SECRETS:
        assert marker not in text, marker
    assert "caf\ufffd" in text  # invalid UTF-8 is replaced, the file is still used


def test_secret_opened_in_the_editor_stays_out_of_other_prompts(tmp_path: Path) -> None:
    root, _ = make_workspace(tmp_path)
    idx = WorkspaceIndex([root], config())
    idx.build()
    # The editor opens the secret-named and the gitignored file; buffers must not index them.
    idx.update_buffer(root / "credentials.py", "KEY = 'SECRET_CRED'\n")
    idx.update_buffer(root / "generated" / "out.py", "SECRET_IGNORED = 2\n")
    idx.update_buffer(root / "helper.py", "import keys\nALLOWED_HELPER = 2\n")
    text = assembled_text(idx, root / "app.py")
    assert "ALLOWED_HELPER = 2" in text  # the buffer won over the disk
    for marker in SECRETS:
        assert marker not in text, marker
    # A buffer whose text turns into a secret is withheld too.
    idx.update_buffer(root / "helper.py", "-----BEGIN OPENSSH PRIVATE KEY-----\nSECRET_PEM\n")
    text = assembled_text(idx, root / "app.py")
    assert "SECRET_PEM" not in text and "ALLOWED_HELPER" not in text


def test_gitignored_current_file_still_gets_its_imports(tmp_path: Path) -> None:
    root, _ = make_workspace(tmp_path)
    (root / "generated" / "use.py").write_text("import helper\n")
    idx = WorkspaceIndex([root], config())
    idx.build()
    sel = idx.select_context(root / "generated" / "use.py", "import helper\n", "",
                             CharTokenizer(), 5000)
    assert [f.path for f in sel.files] == ["helper.py"]
    assert "generated/use.py" not in idx.roots[0].graph.tree.files


def test_root_that_is_a_symlink(tmp_path: Path) -> None:
    root, _ = make_workspace(tmp_path)
    link = tmp_path / "ws_link"
    link.symlink_to(root)
    idx = WorkspaceIndex([link], config())
    idx.build()
    for path in (link / "app.py", root / "app.py"):  # the editor may report either path
        sel = idx.select_context(path, APP, "", CharTokenizer(), 5000)
        assert "helper.py" in [f.path for f in sel.files]
        assert not any("SECRET" in f.text for f in sel.files)


def test_file_deleted_between_scan_and_read(tmp_path: Path) -> None:
    root, _ = make_workspace(tmp_path)
    idx = WorkspaceIndex([root], config())
    idx.build()
    (root / "helper.py").unlink()  # no watcher: the index still lists it
    sel = idx.select_context(root / "app.py", APP, "", CharTokenizer(), 5000)
    assert sel.status == "ok"
    rows = {r.path: r.form for r in sel.rows}
    assert rows["helper.py"] == "skipped: unreadable or excluded"


def test_permission_denied_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, where chmod cannot deny; make the OS calls fail the way they would.
    root, _ = make_workspace(tmp_path)
    (root / "private").mkdir()
    (root / "private" / "p.py").write_text("SECRET_PRIVATE = 1\n")
    real_scandir, real_open = os.scandir, open

    def scandir(path: object = ".") -> object:
        if str(path).endswith("private"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[arg-type]

    def guarded_open(file: object, *a: object, **k: object) -> object:
        if str(file).endswith("helper.py"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr("builtins.open", guarded_open)
    idx = WorkspaceIndex([root], config())
    idx.build()
    assert "private/p.py" not in idx.roots[0].stats
    assert "helper.py" not in idx.roots[0].stats
    assert idx.select_context(root / "app.py", APP, "", CharTokenizer(), 5000).status == "ok"


def test_deep_nesting_and_unparseable_files(tmp_path: Path) -> None:
    root = tmp_path / "deep"
    d = root
    for i in range(300):
        d = d / f"d{i}"
    d.mkdir(parents=True)
    (d / "leaf.py").write_text("x = 1\n")
    (root / "broken.py").write_text("def (:\n  import\x0c ((((\n" * 50)
    (root / "a.py").write_text("import broken\n")
    idx = WorkspaceIndex([root], ContextConfig(watch=False))
    idx.build()  # no recursion error, no crash
    assert "a.py" in idx.roots[0].stats and "broken.py" in idx.roots[0].stats
    assert idx.stats().skipped.get("too deep") == 1
    sel = idx.select_context(root / "a.py", "import broken\n", "", CharTokenizer(), 5000)
    assert [f.path for f in sel.files] == ["broken.py"]


def test_outside_the_workspace_and_disabled(tmp_path: Path) -> None:
    root, outside = make_workspace(tmp_path)
    idx = WorkspaceIndex([root], config())
    idx.build()
    sel = idx.select_context(outside / "linked_target.py", "", "", CharTokenizer(), 5000)
    assert sel.status == "outside workspace" and sel.files == []
    off = WorkspaceIndex([root], ContextConfig(enabled=False))
    assert off.select_context(root / "app.py", APP, "", CharTokenizer(), 5000).status == "disabled"
