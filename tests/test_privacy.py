"""Secrets in the document being edited: secret documents are never completed, secret values in
any other text never reach a prompt (units here; the real server and a real remote engine in
tests/test_secret_documents.py)."""

from __future__ import annotations

import pytest

from lsp_server.completion.completer import Completer, Cursor, SecretDocument
from lsp_server.completion.privacy import refusal
from lsp_server.config import load_config
from lsp_server.context.filters import SECRET_MASK, SECRET_NAME_GLOBS, mask_secrets

KEY_BLOCK = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAA\n"
             "-----END OPENSSH PRIVATE KEY-----\n")
SECRETS = {
    "openai": "sk-" + "A1b2C3d4" * 5,
    "aws": "AKIA" + "ABCDEFGHIJKLMNOP",
    "github": "ghp_" + "x" * 36,
    "slack": "xoxb-1234567890-abcdefghij",
    "google": "AIza" + "B" * 35,
}


def example_name(glob: str) -> str:
    """A file name the glob matches (``*`` → a word)."""
    return glob.replace("*", "prod")


@pytest.mark.parametrize("glob", SECRET_NAME_GLOBS)
def test_every_secret_name_pattern_refuses_the_document(glob: str) -> None:
    config, _ = load_config({})
    why = refusal(f"/ws/conf/{example_name(glob)}", "A=1\n", config)
    assert why is not None and "secret" in why


def test_a_private_key_is_refused_whatever_its_name() -> None:
    config, _ = load_config({})
    assert refusal("/ws/notes.txt", "\n" + KEY_BLOCK, config) is not None
    assert refusal("/ws/app.py", "x = 1\n", config) is None


def test_name_patterns_can_be_opted_back_in() -> None:
    config, _ = load_config({"completion": {"secret_files_allowed": ".env.example, *.tfvars"}})
    assert refusal("/ws/.env.example", "A=1\n", config) is None
    assert refusal("/ws/prod.tfvars", "a = 1\n", config) is None
    assert refusal("/ws/.env", "A=1\n", config) is not None  # only the named patterns


@pytest.mark.parametrize("kind", list(SECRETS))
def test_token_formats_are_masked(kind: str) -> None:
    secret = SECRETS[kind]
    text = f"def f():\n    key = \"{secret}\"\n    return key\n"
    masked = mask_secrets(text)
    assert secret not in masked and SECRET_MASK in masked
    assert masked.startswith("def f():\n    key = ") and masked.endswith("\n    return key\n")


def test_private_key_blocks_and_quoted_credentials_are_masked() -> None:
    text = f"a = 1\n{KEY_BLOCK}password = 'correct-horse-battery'\nDB_TOKEN: \"abcdefgh1234\"\nb = 2\n"
    masked = mask_secrets(text)
    for secret in ("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAA", "correct-horse-battery",
                   "abcdefgh1234"):
        assert secret not in masked
    assert masked.startswith("a = 1\n") and masked.endswith("\nb = 2\n")
    assert mask_secrets("x = compute(token)\npassword = input()\n") == \
        "x = compute(token)\npassword = input()\n"  # names alone are not secrets


class _Backend:
    """Just enough backend to build requests (no model)."""

    def __init__(self) -> None:
        from lsp_server.settings import Settings

        self.settings = Settings()
        self.tokenizer = None

    def budget(self, n: int):  # noqa: ANN201
        from lsp_server.prompt.assemble import Budget

        return Budget.for_window(4096, n)

    def context_allowance(self, budget) -> int:  # noqa: ANN001
        return budget.context_allowance(0)


def test_the_request_carries_no_secret_and_secret_documents_build_none() -> None:
    from lsp_server.prompt.assemble import ContextFile

    completer = Completer(_Backend())  # type: ignore[arg-type]
    key = SECRETS["openai"]
    req = completer.request(
        Cursor(f"API = \"{key}\"\nx = ", f"\ny = \"{key}\"\n", "app.py", "/ws/app.py"),
        context=[ContextFile("conf.py", f"KEY = '{key}'\n")])
    assert key not in req.prefix + req.suffix + "".join(f.text for f in req.context)
    with pytest.raises(SecretDocument, match="secret file"):
        completer.request(Cursor("API_KEY=", "\n", ".env", "/ws/.env"))


def test_codefill_complete_says_why_and_loads_no_model(tmp_path) -> None:  # noqa: ANN001
    import subprocess
    import sys

    env_file = tmp_path / ".env"
    env_file.write_text(f"DEBUG=1\nOPENAI_API_KEY={SECRETS['openai']}\n")
    proc = subprocess.run([sys.executable, "-m", "lsp_server.cli.main", "complete", str(env_file),
                           "--line", "2", "--col", "16", "--verbose", "--model", "/nonexistent.gguf"],
                          capture_output=True, text=True, timeout=120)
    # The model path is never looked at: a secret document stops before anything is loaded.
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "\n"
    assert "no suggestion" in proc.stderr and ".env looks like a secret file" in proc.stderr
    assert SECRETS["openai"] not in proc.stderr
