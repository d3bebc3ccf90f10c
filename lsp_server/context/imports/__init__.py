"""Per-language import extraction and resolution, registered by file extension."""

from __future__ import annotations

import posixpath

from . import cfamily, golang, javascript, jvm, python, rust
from .base import Extracted, ImportRef, Language

LANGUAGES: tuple[Language, ...] = (python.LANGUAGE, javascript.LANGUAGE, golang.LANGUAGE,
                                   rust.LANGUAGE, jvm.LANGUAGE, cfamily.LANGUAGE)

BY_EXTENSION: dict[str, Language] = {ext: lang for lang in LANGUAGES for ext in lang.extensions}


def language_of(path: str) -> Language | None:
    return BY_EXTENSION.get(posixpath.splitext(path)[1].lower())


__all__ = ["BY_EXTENSION", "Extracted", "ImportRef", "LANGUAGES", "Language", "language_of"]
