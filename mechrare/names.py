"""Names that become folder names (models, runs): one strict pattern, checked wherever a name comes from
(config, manifest, CLI), so that no name can lead a path out of the run folder."""

from __future__ import annotations

import re

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
RULE = "letters, digits and . _ + - only, starting with a letter or digit (it names a folder)"


def is_safe_name(name: object) -> bool:
    """True for a plain folder name: no separators, no leading dot (so never '.' or '..'), at most 128 characters."""
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None
