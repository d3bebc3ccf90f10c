"""The registry of recommended FIM code models (``registry.json`` beside this module).

A model reference is one of:

- a registry name, optionally with a quantization: ``qwen2.5-coder-1.5b``,
  ``qwen2.5-coder-1.5b:Q4_K_M`` (case-insensitive);
- a file on the Hugging Face hub: ``hf://OWNER/REPO/FILE.gguf``.

Anything else that ``engine.model`` holds is a path (:func:`is_hub_reference` decides). The data
file is validated when it is loaded: a broken entry is a packaging bug and fails loudly, naming
the entry and the key.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Mapping

from ..errors import ModelError

HF_SCHEME = "hf://"
REGISTRY_FILE = "registry.json"
SCHEMA = 1

_QUANT = re.compile(r"^[A-Z0-9_]+$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class HubFile:
    """One GGUF file on the hub."""

    repo: str
    file: str
    size_bytes: int = 0
    """The size the registry lists (0 when unknown); a pull uses the hub's exact size."""
    quant: str = ""

    @property
    def reference(self) -> str:
        return f"{HF_SCHEME}{self.repo}/{self.file}"


@dataclass(frozen=True)
class RegistryModel:
    """A recommended model and its files per quantization."""

    name: str
    title: str
    family: str
    parameters: int
    license: str
    license_url: str
    gated: bool
    context_length: int
    template: str
    audience: str
    default_quant: str
    notes: str
    files: Mapping[str, HubFile]

    def file(self, quant: str = "") -> HubFile:
        """The file for ``quant`` (default: :attr:`default_quant`); unknown ones are refused."""
        q = (quant or self.default_quant).upper()
        try:
            return self.files[q]
        except KeyError:
            raise ModelError(f"{self.name} has no quantization {quant!r}",
                             f"use one of: {', '.join(self.files)}") from None


@dataclass(frozen=True)
class ModelRef:
    """What a reference names: a hub file, and the registry entry when it came from one."""

    text: str
    hub: HubFile
    model: RegistryModel | None = None

    @property
    def label(self) -> str:
        """The name a user types to get this file again."""
        if self.model is None:
            return self.hub.reference
        q = self.hub.quant
        return self.model.name if q == self.model.default_quant else f"{self.model.name}:{q}"


class RegistryFormatError(ValueError):
    """registry.json does not match its schema (a packaging bug, not a user error)."""


def _require(entry: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in entry:
        raise RegistryFormatError(f"{where}: missing key {key!r}")
    value = entry[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RegistryFormatError(f"{where}: {key!r} is {value!r}, expected {kind}")
    return value


_MODEL_KEYS = {"name", "title", "family", "parameters", "license", "license_url", "gated",
               "context_length", "template", "for", "default_quant", "notes", "files"}
_FILE_KEYS = {"repo", "file", "size_bytes"}


def _parse_file(quant: str, entry: Any, where: str) -> HubFile:
    if not isinstance(entry, dict):
        raise RegistryFormatError(f"{where}: expected an object, got {entry!r}")
    unknown = set(entry) - _FILE_KEYS
    if unknown:
        raise RegistryFormatError(f"{where}: unknown keys {sorted(unknown)}")
    repo = _require(entry, "repo", str, where)
    file = _require(entry, "file", str, where)
    size = _require(entry, "size_bytes", int, where)
    if not _QUANT.match(quant):
        raise RegistryFormatError(f"{where}: quantization {quant!r} is not like Q4_K_M")
    if not _REPO.match(repo):
        raise RegistryFormatError(f"{where}: repo {repo!r} is not OWNER/NAME")
    if not file.endswith(".gguf") or file.startswith("/") or ".." in file.split("/"):
        raise RegistryFormatError(f"{where}: file {file!r} is not a relative .gguf path")
    if size < 0:
        raise RegistryFormatError(f"{where}: size_bytes {size} is negative")
    return HubFile(repo=repo, file=file, size_bytes=size, quant=quant)


def _parse_model(entry: Any, index: int, templates: set[str]) -> RegistryModel:
    where = f"{REGISTRY_FILE} model #{index}"
    if not isinstance(entry, dict):
        raise RegistryFormatError(f"{where}: expected an object, got {entry!r}")
    where = f"{REGISTRY_FILE} model {entry.get('name', index)!r}"
    unknown = set(entry) - _MODEL_KEYS
    if unknown:
        raise RegistryFormatError(f"{where}: unknown keys {sorted(unknown)}")
    name = _require(entry, "name", str, where)
    if not re.match(r"^[a-z0-9][a-z0-9.\-]*$", name):
        raise RegistryFormatError(f"{where}: name {name!r} must be lower-case letters, digits, "
                                  "'.' and '-'")
    template = _require(entry, "template", str, where)
    if template not in templates:
        raise RegistryFormatError(f"{where}: template {template!r} is not one of {sorted(templates)}")
    raw_files = _require(entry, "files", dict, where)
    if not raw_files:
        raise RegistryFormatError(f"{where}: 'files' is empty")
    files = {q: _parse_file(q, f, f"{where} file {q}") for q, f in raw_files.items()}
    default_quant = _require(entry, "default_quant", str, where)
    if default_quant not in files:
        raise RegistryFormatError(f"{where}: default_quant {default_quant!r} is not in files "
                                  f"{sorted(files)}")
    parameters = _require(entry, "parameters", int, where)
    context = _require(entry, "context_length", int, where)
    if parameters <= 0 or context <= 0:
        raise RegistryFormatError(f"{where}: parameters and context_length must be positive")
    return RegistryModel(
        name=name, title=_require(entry, "title", str, where),
        family=_require(entry, "family", str, where), parameters=parameters,
        license=_require(entry, "license", str, where),
        license_url=_require(entry, "license_url", str, where),
        gated=_require(entry, "gated", bool, where), context_length=context, template=template,
        audience=_require(entry, "for", str, where), default_quant=default_quant,
        notes=_require(entry, "notes", str, where), files=files)


def parse_registry(data: Any) -> dict[str, RegistryModel]:
    """Validate the registry's JSON value; name → model, in the file's order."""
    from ..prompt.templates import TEMPLATES

    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise RegistryFormatError(f"{REGISTRY_FILE}: expected an object with \"schema\": {SCHEMA}")
    unknown = set(data) - {"schema", "models"}
    if unknown:
        raise RegistryFormatError(f"{REGISTRY_FILE}: unknown keys {sorted(unknown)}")
    entries = data.get("models")
    if not isinstance(entries, list) or not entries:
        raise RegistryFormatError(f"{REGISTRY_FILE}: 'models' must be a non-empty list")
    models: dict[str, RegistryModel] = {}
    for i, entry in enumerate(entries):
        m = _parse_model(entry, i, set(TEMPLATES))
        if m.name in models:
            raise RegistryFormatError(f"{REGISTRY_FILE}: model {m.name!r} is listed twice")
        models[m.name] = m
    return models


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, RegistryModel]:
    """The packaged registry, validated once per process."""
    text = resources.files(__package__).joinpath(REGISTRY_FILE).read_text(encoding="utf-8")
    return parse_registry(json.loads(text))


def is_hub_reference(value: str) -> bool:
    """Whether ``engine.model``'s value names a hub model rather than a file path.

    ``hf://…`` always does; so does a bare word without a path separator or ``.gguf`` ending
    (``qwen2.5-coder-1.5b``, ``codegemma-2b:Q8_0``). Everything else is a path.
    """
    v = value.strip()
    if not v:
        return False
    if v.startswith(HF_SCHEME):
        return True
    return not ("/" in v or "\\" in v or v.startswith(("~", ".")) or v.lower().endswith(".gguf"))


def parse_reference(text: str) -> ModelRef:
    """Resolve a registry name (``NAME[:QUANT]``) or ``hf://OWNER/REPO/FILE.gguf``."""
    t = text.strip()
    if t.startswith(HF_SCHEME):
        parts = t[len(HF_SCHEME):].split("/")
        if (len(parts) < 3 or not all(parts) or not parts[-1].lower().endswith(".gguf")
                or ".." in parts):
            raise ModelError(f"{text!r} is not a hub file reference",
                             "write hf://OWNER/REPO/FILE.gguf")
        repo, file = "/".join(parts[:2]), "/".join(parts[2:])
        # A hub file that is also a registry file keeps its registry entry (license, template).
        for m in registry().values():
            for f in m.files.values():
                if f.repo == repo and f.file == file:
                    return ModelRef(t, f, m)
        return ModelRef(t, HubFile(repo=repo, file=file))
    name, _, quant = t.partition(":")
    model = registry().get(name.lower())
    if model is None:
        raise ModelError(f"unknown model {text!r}: not a file path and not in the registry",
                         f"use one of: {', '.join(registry())} (codefill models --available), "
                         "hf://OWNER/REPO/FILE.gguf, or a path to a .gguf file")
    return ModelRef(t, model.file(quant), model)
