"""What of the document being edited may reach a model.

A secret document — a file name the index's secret rules match (``.env*``, keys, certificates,
credential files), or a document that is a private key whatever its name — is not completed at
all: no prompt is built, nothing reaches a local or remote engine, and the empty answer says
why. ``completion.secret_files_allowed`` opts file-name patterns back in. In every other text
(prefix, suffix, repository context) secret values — token formats, private-key blocks, quoted
credentials — are masked before the prompt is built (:func:`~lsp_server.context.filters.
mask_secrets`), so they are never sent and never appear in a logged prompt.
"""

from __future__ import annotations

import fnmatch
from pathlib import PurePath

from ..config import Config
from ..context.filters import is_key_document, is_secret_name, mask_secrets

__all__ = ["mask_secrets", "refusal"]


def _allowed(name: str, patterns: str) -> bool:
    globs = [g.strip() for g in patterns.split(",") if g.strip()]
    return any(fnmatch.fnmatch(name.lower(), g.lower()) for g in globs)


def refusal(path: str, text: str, config: Config) -> str | None:
    """Why the document at ``path`` holding ``text`` must not reach a model, or None."""
    name = PurePath(path).name if path else ""
    if name and is_secret_name(name) \
            and not _allowed(name, config.completion.secret_files_allowed):
        return (f"{name} looks like a secret file (keys, credentials, .env): codefill does not "
                "complete in it (completion.secret_files_allowed opts a name pattern back in)")
    if is_key_document(text):
        return "the document is a private key: codefill does not complete in it"
    return None
