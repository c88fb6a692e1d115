"""One family of errors: everything a user can cause ends up as a :class:`FerkitError`.

The CLI catches ``FerkitError`` and prints its message (no traceback) with a non-zero exit.
"""

from __future__ import annotations


class FerkitError(Exception):
    """Base class of every error ferkit raises on purpose (bad input, missing files, ...)."""


class ImageDecodeError(FerkitError):
    """An image file (or buffer) could not be decoded: corrupt, empty, not an image, too big."""


class DatasetError(FerkitError):
    """A dataset folder or label file is missing or malformed. The message names the file."""


class ModelError(FerkitError):
    """Unknown architecture, missing/invalid weights or model card."""
