"""Names that become folder names (models, runs): one strict pattern, checked wherever a name comes from
(config, manifest, CLI), so that no name can lead a path out of the run folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
RULE = "letters, digits and . _ + - only, starting with a letter or digit (it names a folder)"


def is_safe_name(name: object) -> bool:
    """True for a plain folder name: no separators, no leading dot (so never '.' or '..'), at most 128 characters."""
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None


def inside(root: str | Path, path: str | Path) -> Path:
    """``path``, after checking that it stays inside ``root`` (lexically: ``..`` cannot lead out; a symlink
    the user made inside the run folder, to another disk, is theirs to make). Every path the package
    builds from a name passes here before anything is read from or written to it."""
    from mechrare.errors import RunFolderError

    base = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([base, full]) != base:
        raise RunFolderError(f"{path}: leads outside the run folder {root}; names must be {RULE}")
    return Path(path)
