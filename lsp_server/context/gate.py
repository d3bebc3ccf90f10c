"""The read gate of a workspace root: which of its files may be read into a prompt.

Two sets of rules, shared by the daemon's index and by training's corpus reader (so nothing the
daemon would refuse to show a model is used to train one):

- path rules (:meth:`ReadGate.indexable`, and the :class:`~.scan.Scanner` that walks the root
  with the same rules): built-in ignored directories, ``.gitignore`` at every level, the user's
  ignore patterns, virtual environments, secret and binary file names;
- content rules (:meth:`ReadGate.read_disk`): the file resolves inside the root through every
  symlink on its way, the file opened is the one checked, it fits the size limit, it does not
  look binary and it holds no secret.
"""

from __future__ import annotations

import logging
import os
import posixpath

from ..config import ContextConfig
from .filters import (IgnoreRules, compile_extra, decode_text, has_secret_content,
                      ignored_dir_name, is_binary_name, is_secret_name, looks_binary)
from .scan import Scanner, ScanLimits, inside

log = logging.getLogger("codefill.context")


class ReadGate:
    """Path and content rules of one root, with the scanner that walks it under them."""

    def __init__(self, root: str, config: ContextConfig) -> None:
        self.root = os.path.abspath(root)
        self.real_root = os.path.realpath(self.root)
        self.config = config
        self.rules = IgnoreRules(extra=compile_extra(config.ignore))
        self.scanner = Scanner(self.root, self.rules,
                               ScanLimits(config.max_file_bytes, config.max_index_files))

    def contains(self, rel: str) -> bool:
        """Whether ``rel`` resolves, through every symlink on its way, inside the root."""
        try:
            real = os.path.realpath(os.path.join(self.root, rel))
        except OSError:
            return False
        return inside(real, self.real_root)

    def indexable(self, rel: str) -> bool:
        """Whether the path rules let ``rel`` into the index (content rules come on reading)."""
        if not rel or rel.startswith("../"):
            return False
        name = posixpath.basename(rel)
        if is_secret_name(name) or is_binary_name(name):
            return False
        parts = rel.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if ignored_dir_name(parts[i - 1]) or self.rules.ignored(d, True):
                return False
            if os.path.exists(os.path.join(self.root, d, "pyvenv.cfg")):
                return False
        return not self.rules.ignored(rel, False)

    def read_disk(self, rel: str) -> str | None:
        """A file's text if it is text, small enough and no secret; None otherwise."""
        path = os.path.join(self.root, rel)
        try:
            # Resolve every component, not only the file's own link: a directory on the way
            # may have been swapped for a symlink out of the root since the scan.
            real = os.path.realpath(path)
            if not inside(real, self.real_root):
                return None
            with open(real, "rb") as fh:
                # The file opened must be the one checked (no swap between check and open).
                st = os.fstat(fh.fileno())
                now = os.stat(os.path.realpath(path))
                if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
                    return None
                data = fh.read(self.config.max_file_bytes + 1)
        except OSError as exc:  # deleted since the scan, permission denied, …
            log.debug("context index: cannot read %s: %s", path, exc)
            return None
        if len(data) > self.config.max_file_bytes or looks_binary(data):
            return None
        text = decode_text(data)
        if has_secret_content(text):
            log.debug("context index: %s holds a secret; excluded", rel)
            return None
        return text
