"""One family of errors: everything a user can cause ends up as a :class:`FerkitError`.

The CLI catches ``FerkitError`` and prints its message (no traceback) with a non-zero exit.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple


class FerkitError(Exception):
    """Base class of every error ferkit raises on purpose (bad input, missing files, ...)."""


class ImageDecodeError(FerkitError):
    """An image file (or buffer) could not be decoded: corrupt, empty, not an image, too big."""


class DatasetError(FerkitError):
    """A dataset folder or label file is missing or malformed. The message names the file."""


class ModelError(FerkitError):
    """Unknown architecture, missing/invalid weights or model card."""


class Failure(NamedTuple):
    """An input that could not be read, as batch jobs list it: the ``source`` (a file's path, as
    in the results' ``source``), why, and for a video's lost frames the first and last frame
    index of the run (``frames``), so that the entry sits beside the frames that were read."""

    source: str
    error: str
    frames: Optional[Tuple[int, int]] = None

    @property
    def span(self) -> str:
        """The lost frames in words: ``frames 21-39 (19 frames)``, ``frame 3``; "" for a whole source."""
        if self.frames is None:
            return ""
        a, b = self.frames
        return f"frame {a}" if a == b else f"frames {a}-{b} ({b - a + 1} frames)"

    @property
    def where(self) -> str:
        """The source as a person reads it: ``clip.avi frames 21-39 (19 frames)``, ``clip.avi frame 3``,
        or the path."""
        return f"{self.source} {self.span}" if self.frames is not None else self.source
