"""One family of errors: everything a user can cause ends up as a :class:`FerkitError`.

The CLI catches ``FerkitError`` and prints its message (no traceback) with a non-zero exit.
"""

from __future__ import annotations

import numbers
from typing import Optional, Tuple


class FerkitError(Exception):
    """Base class of every error ferkit raises on purpose (bad input, missing files, ...)."""


class ImageDecodeError(FerkitError):
    """An image file (or buffer) could not be decoded: corrupt, empty, not an image, too big."""


class ImageTooLargeError(ImageDecodeError):
    """An image over ferkit's pixel limit (``io.MAX_PIXELS``) or Pillow's decompression-bomb guard:
    an input too large rather than a damaged one (the HTTP API answers 413 for it, 400 otherwise)."""


class CameraError(ImageDecodeError):
    """No camera at the index asked for (none connected, or not this user's to open); an
    :class:`ImageDecodeError` too, as it was before it had its own name."""


class DatasetError(FerkitError):
    """A dataset folder or label file is missing or malformed. The message names the file."""


class ModelError(FerkitError):
    """Unknown architecture, missing/invalid weights or model card."""


class FerkitWarning(UserWarning):
    """Every warning ferkit gives (a caveat of a reading, a fallback taken, an option that does
    nothing here): ``warnings.filterwarnings("ignore", category=ferkit.FerkitWarning)`` silences
    ferkit's alone. A ``UserWarning``, as they were before they had their own class."""


SEED_MAX = 2 ** 32 - 1  #: the largest random seed numpy and torch take


def check_whole(name: str, value, lo: int = 1, hi: Optional[int] = None, none: str = "") -> None:
    """``value`` is a whole number (an ``int`` or numpy integer, not a bool, not 1.5, not "2") of
    ``lo`` or more, and ``hi`` or less when given; else a :class:`FerkitError` that names it.
    ``none``: words added when None is allowed too, e.g. ``" (or None: all)"``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo or \
            (hi is not None and value > hi):
        span = f">= {lo}" if hi is None else f"from {lo} to {hi}"
        raise FerkitError(f"{name} must be a whole number {span}{none}, got {value!r}")


def _ordinal(n: int) -> str:
    """2 -> "2nd", 3 -> "3rd", 4 -> "4th", 11 -> "11th", 22 -> "22nd"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class Failure(tuple):
    """An input that could not be read, as batch jobs list it: ``(source, error)`` (a pair, so that
    ``for source, why in results.failed`` reads it), the source a file's path as in the results'
    ``source``; a video's lost frames also carry ``frames``, the first and last frame index of the
    run, so that the entry sits beside the frames that were read, and ``step``: every how many
    frames of the run were lost (a video read every N-th frame loses only those). ``at``: for a
    folder's file, how many of the job's results came before it (where it sits in the JSON and
    CSV, as ``ferkit predict`` lists a folder); None: after the results."""

    def __new__(cls, source: str, error: str, frames: Optional[Tuple[int, int]] = None,
                step: int = 1, at: Optional[int] = None) -> "Failure":
        self = super().__new__(cls, (source, error))
        self.frames = None if frames is None else (int(frames[0]), int(frames[1]))
        self.step = max(1, int(step))
        self.at = None if at is None else max(0, int(at))
        return self

    def __getnewargs__(self):  # copy and pickle keep the frames and the place
        return (self[0], self[1], self.frames, self.step, self.at)

    @property
    def lost(self) -> int:
        """How many frames the run lost (0 for a whole source)."""
        return 0 if self.frames is None else (self.frames[1] - self.frames[0]) // self.step + 1

    @property
    def source(self) -> str:
        return self[0]

    @property
    def error(self) -> str:
        return self[1]

    def __repr__(self) -> str:
        frames = "" if self.frames is None else f", frames={self.frames}"
        return f"Failure({self[0]!r}, {self[1]!r}{frames}{'' if self.step == 1 else f', step={self.step}'})"

    @classmethod
    def of(cls, item) -> "Failure":
        """A Failure of a ``(source, error)`` pair (or a Failure, kept)."""
        return item if isinstance(item, Failure) else cls(item[0], item[1])

    @property
    def span(self) -> str:
        """The lost frames in words: ``frames 21-39 (19 frames)``, ``frame 3``; "" for a whole source."""
        if self.frames is None:
            return ""
        a, b = self.frames
        if a == b:
            return f"frame {a}"
        return f"frames {a}-{b} ({'' if self.step == 1 else f'every {_ordinal(self.step)}: '}{self.lost} frames)"

    @property
    def where(self) -> str:
        """The source as a person reads it: ``clip.avi frames 21-39 (19 frames)``, ``clip.avi frame 3``,
        or the path."""
        return f"{self.source} {self.span}" if self.frames is not None else self.source
