"""Per-language import extraction and resolution, registered by LSP languageId.

Which languageId a file has is :func:`lsp_server.languages.language_of`'s answer (the one
extension table); this registry only says which resolver reads which languages.
"""

from __future__ import annotations

import os

from ...languages import language_of as language_id_of
from . import cfamily, golang, javascript, jvm, python, rust
from .base import Extracted, ImportRef, Language

LANGUAGES: tuple[Language, ...] = (python.LANGUAGE, javascript.LANGUAGE, golang.LANGUAGE,
                                   rust.LANGUAGE, jvm.LANGUAGE, cfamily.LANGUAGE)

BY_LANGUAGE_ID: dict[str, Language] = {
    "python": python.LANGUAGE,
    **dict.fromkeys(("javascript", "javascriptreact", "typescript", "typescriptreact"),
                    javascript.LANGUAGE),
    "go": golang.LANGUAGE,
    "rust": rust.LANGUAGE,
    **dict.fromkeys(("java", "kotlin"), jvm.LANGUAGE),
    **dict.fromkeys(("c", "cpp", "objective-c", "objective-cpp"), cfamily.LANGUAGE),
}
"""LSP languageId → the resolver that reads its imports."""


def resolver_for(path: str | os.PathLike[str]) -> Language | None:
    """The import resolver for a file name, None when its language has none."""
    return BY_LANGUAGE_ID.get(language_id_of(path))

__all__ = ["BY_LANGUAGE_ID", "Extracted", "ImportRef", "LANGUAGES", "Language", "resolver_for"]
