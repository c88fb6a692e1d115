"""Where ferkit keeps what it makes again when needed (no torch here: `ferkit cache` reads it)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$FERKIT_CACHE`` if set, else ``~/.cache/ferkit``."""
    env = os.environ.get("FERKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ferkit"
