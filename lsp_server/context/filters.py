"""What may never enter the index: ignored, secret, binary, oversized and out-of-root files.

Everything the index holds can end up in a prompt, so these rules are the privacy boundary of
repository context. Built-in rules cannot be switched off; ``.gitignore`` files (at every level,
with git's "last match wins" and negation semantics, via pathspec) and the user's extra globs
add to them.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pathspec

log = logging.getLogger("codefill.context")

# Directories never descended into: VCS data, dependency trees, virtualenvs, caches, build output.
IGNORED_DIRS: frozenset[str] = frozenset({
    ".git", ".hg", ".svn", ".jj", "node_modules", "bower_components", "__pycache__",
    ".venv", "venv", ".env", ".tox", ".nox", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", ".hypothesis", ".ipynb_checkpoints", ".eggs", "site-packages",
    "build", "dist", "out", "target", ".gradle", ".idea", ".vs", ".vscode", ".next", ".nuxt",
    ".svelte-kit", ".parcel-cache", ".turbo", ".cache", "coverage", "htmlcov", ".terraform",
    "vendor", "Pods", "DerivedData", "cmake-build-debug", "cmake-build-release", "bazel-out",
})

# Secrets: matched against the file name (case-insensitive); never indexed, never read.
SECRET_NAME_GLOBS: tuple[str, ...] = (
    ".env", ".env.*", "*.env", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks",
    "*.keystore", "*.ppk", "*.asc", "*.gpg", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
    "*credential*", "*secret*", ".npmrc", ".pypirc", ".netrc", "_netrc", ".git-credentials",
    ".htpasswd", ".pgpass", ".dockercfg", "*.tfvars", "*.tfstate", "*.tfstate.*",
    "*.kdbx", "*.ovpn", "known_hosts", "authorized_keys", "service-account*.json",
)
_SECRET_RE = re.compile("|".join(fnmatch.translate(g) for g in SECRET_NAME_GLOBS), re.IGNORECASE)

Rule = tuple[tuple[str, ...], re.Pattern[str]]
"""(literals, regex): the regex runs only when one of its literals occurs (none: always) — a
plain substring search is ~100x faster on big files."""

_KEY_HEADER = r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
_TOKEN_FORMATS: tuple[Rule, ...] = (
    (("AKIA",), re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    (("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    (("sk-",), re.compile(r"\bsk-[A-Za-z0-9]{32,}\b")),
)

# Content that marks a file as a secret whatever its name (checked when the text is read).
_SECRET_CONTENT: tuple[Rule, ...] = (
    (("PRIVATE KEY-----",), re.compile(_KEY_HEADER)),
    *_TOKEN_FORMATS,
)

# Extensions of files that are binary (or generated blobs) without reading them.
BINARY_EXTENSIONS: frozenset[str] = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".tiff", ".psd", ".svgz",
    ".pdf", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar", ".jar", ".war",
    ".whl", ".egg", ".so", ".dylib", ".dll", ".exe", ".o", ".a", ".lib", ".obj", ".class",
    ".pyc", ".pyo", ".pyd", ".wasm", ".bin", ".dat", ".db", ".sqlite", ".sqlite3", ".gguf",
    ".safetensors", ".pt", ".pth", ".onnx", ".npy", ".npz", ".pkl", ".pickle", ".h5", ".parquet",
    ".mp3", ".mp4", ".wav", ".ogg", ".flac", ".mov", ".avi", ".mkv", ".woff", ".woff2", ".ttf",
    ".otf", ".eot", ".min.js", ".map", ".lock",
})

_SNIFF_BYTES = 8192


def is_secret_name(name: str) -> bool:
    """Whether a file name looks like a secret (keys, credentials, dotenv files)."""
    return _SECRET_RE.match(name) is not None


def has_secret_content(text: str) -> bool:
    """Whether text carries a private key or a well-known token format."""
    return any(any(lit in text for lit in literals) and rx.search(text) is not None
               for literals, rx in _SECRET_CONTENT)


# Secret values inside ordinary text, masked before any text reaches a prompt: a whole
# private-key block (it spans lines), and on single lines the token formats above, a few more,
# and a quoted value assigned to a credential-like name (group "value" is what is masked;
# without the group, the whole match).
_KEY_BLOCK: Rule = (("PRIVATE KEY-----",), re.compile(
    _KEY_HEADER + r".*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z)", re.S))
_LINE_SECRETS: tuple[Rule, ...] = (
    *_TOKEN_FORMATS,
    (("xox",), re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    (("AIza",), re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ((), re.compile(r"(?i)(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
                    r"private[_-]?key|auth)[\w-]*[\"']?\s*[:=]\s*[\"'](?P<value>[^\"'\s]{8,})[\"']")),
)
_KEY_DOCUMENT = re.compile(r"\s*" + _KEY_HEADER)
SECRET_MASK = "<redacted>"
"""What a masked secret value reads as in a prompt."""


def _mask(text: str, rules: tuple[Rule, ...]) -> str:
    spans: list[tuple[int, int]] = []
    for literals, rx in rules:
        if literals and not any(lit in text for lit in literals):
            continue
        for m in rx.finditer(text):
            spans.append(m.span("value") if "value" in rx.groupindex else m.span())
    if not spans:
        return text
    out, at = [], 0
    for start, end in sorted(spans):
        if end <= at:
            continue
        out += [text[at:max(start, at)], SECRET_MASK]
        at = end
    return "".join(out) + text[at:]


_MASKED_LINES: dict[str, str] = {}
_MASKED_LINES_MAX = 200_000


def _mask_line(line: str) -> str:
    """One line masked by the single-line rules, remembered: between keystrokes only the
    cursor's line changes, so masking a whole document costs a dictionary lookup per line."""
    masked = _MASKED_LINES.get(line)
    if masked is None:
        if len(_MASKED_LINES) >= _MASKED_LINES_MAX:
            _MASKED_LINES.clear()
        masked = _MASKED_LINES[line] = _mask(line, _LINE_SECRETS)
    return masked


def mask_secrets(text: str) -> str:
    """``text`` with every secret value (:data:`_KEY_BLOCK`, :data:`_LINE_SECRETS`) replaced
    by ``SECRET_MASK``."""
    text = _mask(text, (_KEY_BLOCK,))
    return "\n".join(_mask_line(line) for line in text.split("\n"))


def is_key_document(text: str) -> bool:
    """Whether a document is a private key, whatever its name (its first line opens one)."""
    return _KEY_DOCUMENT.match(text) is not None


def is_binary_name(name: str) -> bool:
    lower = name.lower()
    return any(lower.endswith(ext) for ext in BINARY_EXTENSIONS)


def looks_binary(data: bytes) -> bool:
    """NUL bytes in the first 8 KiB: the rule git and grep use."""
    return b"\0" in data[:_SNIFF_BYTES]


def decode_text(data: bytes) -> str:
    """Source text from bytes; invalid UTF-8 becomes U+FFFD rather than failing the file."""
    return data.decode("utf-8", errors="replace")


@dataclass
class IgnoreRules:
    """The ``.gitignore`` files of one root, each applying to paths below its directory."""

    specs: dict[str, pathspec.GitIgnoreSpec] = field(default_factory=dict)
    """Directory (root-relative, "" for the root) → its compiled .gitignore."""
    extra: pathspec.GitIgnoreSpec | None = None
    """User globs from the config, anchored at the root."""

    def load_dir(self, root: str, rel_dir: str) -> None:
        """(Re)read ``rel_dir/.gitignore`` (and ``.git/info/exclude`` for the root)."""
        lines: list[str] = []
        names = [".gitignore"] + ([os.path.join(".git", "info", "exclude")] if rel_dir == "" else [])
        for name in names:
            path = os.path.join(root, rel_dir, name)
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    lines += fh.read().splitlines()
            except OSError:
                continue
        if lines:
            self.specs[rel_dir] = pathspec.GitIgnoreSpec.from_lines(lines)
        else:
            self.specs.pop(rel_dir, None)

    def ignored(self, rel: str, is_dir: bool) -> bool:
        """Whether ``rel`` is ignored by the rules of its ancestors; the deepest match wins.

        Callers walk top-down and stop at ignored directories, so an ignored parent (which git
        never lets a child re-include) is handled by never reaching its children.
        """
        probe = rel + "/" if is_dir else rel
        if self.extra is not None and self.extra.check_file(probe).include:
            return True
        verdict: bool | None = None
        parts = rel.split("/")
        for depth in range(len(parts)):
            base = "/".join(parts[:depth])
            spec = self.specs.get(base)
            if spec is None:
                continue
            sub = probe[len(base) + 1:] if base else probe
            res = spec.check_file(sub).include
            if res is not None:
                verdict = res
        return bool(verdict)


def compile_extra(globs: str) -> pathspec.GitIgnoreSpec | None:
    """The config's comma- or newline-separated extra ignore globs (gitignore syntax)."""
    lines = [g.strip() for g in re.split(r"[,\n]", globs) if g.strip()]
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


def ignored_dir_name(name: str) -> bool:
    return name in IGNORED_DIRS or name.endswith(".egg-info")


def path_has_ignored_dir(rel: str) -> bool:
    """Whether any directory component of ``rel`` is a built-in ignored directory."""
    return any(ignored_dir_name(p) for p in PurePosixPath(rel).parts[:-1])
