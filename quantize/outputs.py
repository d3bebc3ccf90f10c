"""Output files that appear whole or not at all.

Every file is written under a temporary name in the destination directory and renamed into place
only when complete, so an error (or Ctrl-C) never leaves a partial GGUF behind under the name the
user asked for. Free space is checked before writing starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import QuantizeError

# Headroom over the estimated size: metadata, alignment padding, filesystem overhead.
SPACE_MARGIN = 1.02
SPACE_SLACK_BYTES = 16 << 20


def disk_free(directory: Path) -> int:
    """Bytes available to this user in ``directory`` (a seam for tests)."""
    return shutil.disk_usage(directory).free


def check_output_path(path: Path, *, force: bool) -> Path:
    """Validate ``path`` as a destination: refuse an existing file unless ``force``."""
    path = path.expanduser()
    if path.is_dir():
        raise QuantizeError(f"output path is a directory: {path}",
                            "pass a file name such as model-Q4_K_M.gguf")
    if path.exists() and not force:
        raise QuantizeError(f"output file already exists: {path}",
                            "choose another --out or pass --force to replace it")
    if not path.parent.is_dir():
        raise QuantizeError(f"output directory does not exist: {path.parent}",
                            "create it first or choose another --out")
    if not os.access(path.parent, os.W_OK):
        raise QuantizeError(f"output directory is not writable: {path.parent}",
                            "choose another --out")
    return path


def check_free_space(directory: Path, needed_bytes: int, what: str) -> None:
    """Refuse to start a write of about ``needed_bytes`` that cannot fit."""
    need = int(needed_bytes * SPACE_MARGIN) + SPACE_SLACK_BYTES
    free = disk_free(directory)
    if free < need:
        raise QuantizeError(
            f"not enough disk space in {directory} for {what}: needs about "
            f"{need / 2**20:.0f} MiB, {free / 2**20:.0f} MiB free",
            "free some space or write to another directory with --out")


def temp_path_for(path: Path) -> Path:
    """A fresh, unused name beside ``path`` (same filesystem, so the final rename is atomic)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    return Path(name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to ``path``, on any error delete it."""
    tmp = temp_path_for(path)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
