"""The canonical expression label space and every dataset's mapping onto it (one place).

ferkit names expressions ``angry disgust fear happy sad surprise neutral`` (this order, which
is also FER2013's id order 0..6) plus ``contempt`` for the datasets that have it (FER+, CK+).
A dataset's classes are the canonical names it uses, in canonical order; labels are indices
into that tuple.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import FerkitError

CANONICAL: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CANONICAL_8: tuple[str, ...] = CANONICAL + ("contempt",)

# Every spelling found in the public layouts -> canonical name.
ALIASES: dict[str, str] = {
    "anger": "angry", "angry": "angry", "an": "angry",
    "disgust": "disgust", "disgusted": "disgust", "di": "disgust",
    "fear": "fear", "afraid": "fear", "fearful": "fear", "fe": "fear", "af": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "ha": "happy",
    "sad": "sad", "sadness": "sad", "sa": "sad",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise",
    "neutral": "neutral", "ne": "neutral",
    "contempt": "contempt",
}

# FER2013 (csv `emotion` column and the image-folder class names).
FER2013_IDS: tuple[str, ...] = CANONICAL  # 0=angry 1=disgust 2=fear 3=happy 4=sad 5=surprise 6=neutral
# FER+ label.csv vote columns, in file order (after `file` and the box).
FERPLUS_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)
FERPLUS_EMOTIONS: int = 8  # the first 8 columns are emotions; `unknown` and `NF` (not a face) are not
# CK+48 folder names.
CKPLUS_FOLDERS: dict[str, str] = {
    "anger": "angry", "contempt": "contempt", "disgust": "disgust", "fear": "fear",
    "happy": "happy", "sadness": "sad", "surprise": "surprise",
}
# JAFFE two-letter codes in `KA.AN1.39.tiff`.
JAFFE_CODES: dict[str, str] = {
    "AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral", "SA": "sad", "SU": "surprise",
}
# RAF-DB basic `list_patition_label.txt` ids.
RAFDB_IDS: dict[int, str] = {
    1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "angry", 7: "neutral",
}
# KDEF file-name characters 5-6 (1-based), e.g. AF01AFS -> "AF".
KDEF_CODES: dict[str, str] = {
    "AF": "fear", "AN": "angry", "DI": "disgust", "HA": "happy", "NE": "neutral", "SA": "sad", "SU": "surprise",
}


def canonical(name: str) -> str:
    """Map any known spelling (``"Happiness"``, ``"sadness"``, ``"AF"``) to the canonical name."""
    key = name.strip().lower()
    if key not in ALIASES:
        raise FerkitError(
            f"unknown expression label {name!r}; known labels: {', '.join(CANONICAL_8)}"
        )
    return ALIASES[key]


def ordered(names: Iterable[str]) -> tuple[str, ...]:
    """Canonical names in canonical order (the order a dataset's class indices follow)."""
    wanted = {canonical(n) for n in names}
    return tuple(n for n in CANONICAL_8 if n in wanted)
