"""Pulled models: downloads from the Hugging Face hub into codefill's cache, and their store.

``pull`` goes through ``huggingface_hub``: its URL layout, token lookup (``HF_TOKEN`` or
``hf auth login``), ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``, file metadata (size, sha256, commit)
and its HTTP getter (Range requests, retries that resume within a download). What it adds:

- **resume across runs**: the bytes arrive in ``FILE.partial`` next to the target, kept when the
  download is interrupted or cancelled, and continued by the next pull of the same file
  (``hf_hub_download`` restarts from zero in a new process);
- **free disk space** checked before a byte is written, against the bytes still to come;
- **sha256** of the finished file checked against the hub's before the file is used: a mismatch
  deletes the partial file;
- **atomic placement**: the checked file is renamed into place, then a stamp ``FILE.ok``
  (sha256, size, mtime) written; a file without a matching stamp is never used;
- one pull of a file at a time (a lock file), so the CLI and an editor cannot interleave.

Layout: ``$XDG_CACHE_HOME/codefill/hub/OWNER/REPO/FILE``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ModelError
from .registry import HubFile, ModelRef
from .paths import cache_dir

OnProgress = Callable[[int, int], None]
"""Called with (bytes done, bytes total) as the file arrives."""

#: Kept free beyond the file itself, so a pull never fills the disk to the last byte.
DISK_MARGIN_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PullCancelled(ModelError):
    """The user cancelled a pull; the partial file stays for the next one."""


def store_dir() -> Path:
    """Where pulled models live."""
    return cache_dir() / "hub"


def store_path(hub: HubFile) -> Path:
    return store_dir().joinpath(*hub.repo.split("/"), *hub.file.split("/"))


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".ok")


def _partial_path(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


@dataclass(frozen=True)
class Pulled:
    """A pulled, checked file and what its stamp records."""

    hub: HubFile
    path: Path
    sha256: str
    size_bytes: int


def _read_stamp(target: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads(_stamp_path(target).read_text(encoding="utf-8"))
        st = target.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict):
        return None
    if stamp.get("size") != st.st_size or stamp.get("mtime_ns") != st.st_mtime_ns:
        return None  # the file changed after it was checked
    return stamp


def pulled(hub: HubFile) -> Pulled | None:
    """The checked local copy of ``hub``, or None when it was not pulled (or is damaged)."""
    target = store_path(hub)
    stamp = _read_stamp(target)
    if stamp is None:
        return None
    return Pulled(hub, target, str(stamp.get("sha256", "")), int(stamp["size"]))


def pulled_files() -> list[Pulled]:
    """Every pulled file in the store (registry ones and ``hf://`` ones)."""
    root = store_dir()
    found: list[Pulled] = []
    if not root.is_dir():
        return found
    for stamp in sorted(root.rglob("*.gguf.ok")):
        target = stamp.with_name(stamp.name[:-len(".ok")])
        rel = target.relative_to(root).parts
        if len(rel) < 3:
            continue
        p = pulled(HubFile(repo="/".join(rel[:2]), file="/".join(rel[2:])))
        if p is not None:
            found.append(p)
    return found


def _lock(target: Path, label: str) -> Any:
    """The lock of one file's pull; a second pull (or rm) of it meanwhile is refused at once."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(target.with_name(target.name + ".lock")))
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        raise ModelError(f"{label} is being pulled by another process",
                         "wait for it to finish (or stop it) and try again") from None
    return lock


def _unlock(lock: Any) -> None:
    lock.release()
    Path(lock.lock_file).unlink(missing_ok=True)


def remove(hub: HubFile) -> list[Path]:
    """Delete the pulled file, its stamp and any partial download; the paths removed."""
    target = store_path(hub)
    if not target.parent.is_dir():
        return []
    lock = _lock(target, hub.reference)
    gone = []
    try:
        for p in (target, _stamp_path(target), _partial_path(target),
                  _partial_path(target).with_suffix(".meta")):
            if p.is_file():
                p.unlink()
                gone.append(p)
    finally:
        _unlock(lock)
    # Empty OWNER/REPO folders go too; the store itself stays.
    for d in (target.parent, target.parent.parent):
        try:
            if d != store_dir() and d.is_dir():
                d.rmdir()
        except OSError:
            break
    return gone


def _human(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _progress_class(on_progress: OnProgress | None, cancelled: threading.Event | None,
                    show: bool) -> type:
    """A tqdm class for ``http_get``: draws the bar when ``show``, reports to ``on_progress``,
    and stops the download between chunks when ``cancelled`` is set."""
    from tqdm import tqdm

    class Bar(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = not show
            self._done = int(kwargs.get("initial") or 0)
            self._total = int(kwargs.get("total") or 0)
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            if cancelled is not None and cancelled.is_set():
                raise PullCancelled("the pull was cancelled",
                                    "pull it again to resume where it stopped")
            self._done += int(n or 0)
            if on_progress is not None:
                on_progress(self._done, self._total)
            return super().update(n)

    return Bar


def file_sha256(path: Path, cancelled: threading.Event | None = None) -> str:
    """The file's sha256, read a MiB at a time (``cancelled`` stops a pull's check)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            if cancelled is not None and cancelled.is_set():
                raise PullCancelled("the pull was cancelled while its file was being checked",
                                    "pull it again: the download is complete and is only "
                                    "checked again")
            h.update(block)
    return h.hexdigest()


def _hub_error(ref: ModelRef, exc: Exception, endpoint: str) -> ModelError:
    """One line for what the hub (or the network) said."""
    from huggingface_hub import errors as e

    repo = ref.hub.repo
    page = f"{endpoint}/{repo}"
    if isinstance(exc, e.OfflineModeIsEnabled):
        return _offline_error(ref)
    if isinstance(exc, e.GatedRepoError):
        return ModelError(f"{repo} is gated: its license must be accepted before download",
                          f"accept it at {page} while logged in, then run `hf auth login` "
                          "(or set HF_TOKEN) and pull again")
    if isinstance(exc, e.RepositoryNotFoundError):
        return ModelError(f"{repo} was not found on {endpoint} (or it is private)",
                          "check the name; for a private repo log in with `hf auth login` "
                          "or set HF_TOKEN")
    if isinstance(exc, (e.EntryNotFoundError, e.RevisionNotFoundError)):
        return ModelError(f"{ref.hub.file} was not found in {repo}",
                          f"see the files at {page}")
    if isinstance(exc, e.HfHubHTTPError):
        return ModelError(f"the hub refused {ref.hub.reference}: {str(exc).splitlines()[0]}",
                          "try again later")
    return ModelError(f"cannot reach {endpoint} to pull {ref.label}: "
                      f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                      "check the network connection (or HF_ENDPOINT)")


def _offline_error(ref: ModelRef) -> ModelError:
    return ModelError(f"HF_HUB_OFFLINE is set, so {ref.label} cannot be downloaded",
                      "unset HF_HUB_OFFLINE to pull, or set engine.model to a .gguf file you "
                      "have")


def _check_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed + DISK_MARGIN_BYTES:
        raise ModelError(f"not enough disk space: the download needs {_human(needed)} more in "
                         f"{directory}, which has {_human(free)} free",
                         "free some space, or set XDG_CACHE_HOME to a disk with room")


def pull(ref: ModelRef, *, on_progress: OnProgress | None = None,
         cancelled: threading.Event | None = None, show_progress: bool = False,
         say: Callable[[str], None] | None = None) -> Pulled:
    """Download ``ref``'s file (or finish an interrupted download), check it, and place it.

    Already pulled and unchanged on the hub's side as far as the stamp knows: returned at once,
    without a network request when offline.
    """
    from huggingface_hub import constants, errors as hf_errors
    from huggingface_hub.file_download import get_hf_file_metadata, hf_hub_url, http_get
    from huggingface_hub.utils import build_hf_headers

    hub = ref.hub
    have = pulled(hub)
    if have is not None:
        return have
    if constants.HF_HUB_OFFLINE:
        raise _offline_error(ref)
    endpoint = constants.ENDPOINT
    target = store_path(hub)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create {target.parent}: {exc.strerror or exc}",
                         "set XDG_CACHE_HOME to a writable directory") from None
    lock = _lock(target, ref.label)
    try:
        have = pulled(hub)  # pulled by the process that held the lock
        if have is not None:
            return have
        url = hf_hub_url(hub.repo, hub.file, revision="main", endpoint=endpoint)
        try:
            meta = get_hf_file_metadata(url)
        except (hf_errors.HfHubHTTPError, hf_errors.OfflineModeIsEnabled, OSError) as exc:
            raise _hub_error(ref, exc, endpoint) from None
        except Exception as exc:  # httpx2's connection and timeout errors
            raise _hub_error(ref, exc, endpoint) from None
        expected = (meta.etag or "").strip('"').lower()
        if not _SHA256.match(expected):
            raise ModelError(f"the hub gave no sha256 for {hub.reference} (etag {meta.etag!r}), "
                             "so the download could not be checked",
                             "pull a GGUF stored with Git LFS or Xet (every model repo's .gguf is)")
        size = int(meta.size or 0)
        partial = _partial_path(target)
        meta_file = partial.with_suffix(".meta")
        resume = partial.stat().st_size if partial.is_file() else 0
        if resume and (meta_file.is_file() and meta_file.read_text().strip() != expected
                       or size and resume > size):
            resume = 0  # a partial file of another version of the file
        if not resume:
            partial.unlink(missing_ok=True)
        _check_space(target.parent, max(size - resume, 0))
        meta_file.write_text(expected + "\n")
        if say:
            what = f"resuming at {_human(resume)} of" if resume else "downloading"
            say(f"{what} {hub.reference} ({_human(size)})")
        # http_get hands the body over in chunks of DOWNLOAD_CHUNK_SIZE (10 MiB): progress,
        # cancellation and the point a later pull resumes from move in those steps. 1 MiB keeps
        # them under a second on slow connections.
        constants.DOWNLOAD_CHUNK_SIZE = min(constants.DOWNLOAD_CHUNK_SIZE, CHUNK_BYTES)
        try:
            with open(partial, "ab") as f:
                http_get(meta.location, f, resume_size=resume, headers=build_hf_headers(),
                         expected_size=size or None, displayed_filename=Path(hub.file).name,
                         tqdm_class=_progress_class(on_progress, cancelled, show_progress))
        except ModelError:
            raise
        except (hf_errors.HfHubHTTPError, hf_errors.OfflineModeIsEnabled) as exc:
            raise _hub_error(ref, exc, endpoint) from None
        except OSError as exc:
            if exc.errno is not None:  # disk full, permission: not the network
                raise ModelError(f"cannot write {partial}: {exc.strerror or exc}",
                                 "free some space or set XDG_CACHE_HOME; pull again to "
                                 "resume") from None
            raise ModelError(f"the download of {ref.label} stopped: {exc}",
                             "pull again to resume where it stopped") from None
        except Exception as exc:  # the connection dropped more often than http_get retries
            raise ModelError(f"the download of {ref.label} stopped at "
                             f"{_human(partial.stat().st_size)}: {type(exc).__name__}: {exc}",
                             "pull again to resume where it stopped") from None
        if say:
            say(f"checking the sha256 of {partial.name}")
        got = file_sha256(partial, cancelled)
        if got != expected:
            partial.unlink(missing_ok=True)
            meta_file.unlink(missing_ok=True)
            raise ModelError(f"the download of {hub.reference} does not match the hub's sha256 "
                             f"(got {got[:12]}…, expected {expected[:12]}…); the partial file "
                             "was removed", "pull again")
        os.replace(partial, target)
        meta_file.unlink(missing_ok=True)
        st = target.stat()
        stamp = {"repo": hub.repo, "file": hub.file, "sha256": got, "size": st.st_size,
                 "mtime_ns": st.st_mtime_ns, "commit": meta.commit_hash or "",
                 "pulled_at": time.time()}
        tmp = _stamp_path(target).with_suffix(".tmp")
        tmp.write_text(json.dumps(stamp) + "\n", encoding="utf-8")
        os.replace(tmp, _stamp_path(target))
        return Pulled(hub, target, got, st.st_size)
    finally:
        _unlock(lock)

