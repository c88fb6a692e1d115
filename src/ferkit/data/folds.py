"""Subject-independent k-fold splits: no person appears in two folds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from ..errors import SEED_MAX, FerkitError, check_whole


def subject_folds(subjects: Sequence[str | None], k: int, seed: int = 0,
                  labels: Sequence[int] | None = None) -> list[np.ndarray]:
    """Indices of each of ``k`` folds, grouping samples by subject.

    Subjects are shuffled with ``seed`` and then dealt, largest first, to the fold that holds
    the fewest images so far, so folds are balanced in size. Deterministic for a given seed.
    Where every image is its own subject (a folder of one's own photos) and ``labels`` are given,
    each class is dealt round the folds in turn instead, so that each fold holds each class (5
    photos a class in 5 folds left a test fold without happy or neutral).
    """
    if any(s is None for s in subjects):
        raise FerkitError("subject-independent folds need a subject id for every image")
    check_whole("the fold seed", seed, 0, SEED_MAX)
    counts = Counter(subjects)
    if k < 2:
        raise FerkitError(f"need at least 2 folds, got {k}")
    if k > len(counts):
        n = len(counts)
        raise FerkitError(f"cannot make {k} subject-independent folds from {n} subjects: "
                          + (f"pass --folds {n} or fewer (3 at least), or " if n >= 3 else "pass ")
                          + "--split all to read every image without folds (ferkit data, evaluate)")
    rng = np.random.default_rng(seed)
    if labels is not None and len(labels) == len(subjects) and len(counts) == len(subjects):
        lab = np.asarray(labels)
        fold = np.empty(len(subjects), dtype=np.int64)
        at = 0  # the next fold to deal to, carried from class to class: sizes stay within one of each other
        for c in np.unique(lab):
            members = np.flatnonzero(lab == c)
            members = members[np.argsort([subjects[i] for i in members], kind="stable")]  # (an order by name)
            members = members[rng.permutation(len(members))]
            fold[members] = (at + np.arange(len(members))) % k
            at = (at + len(members)) % k
        return [np.flatnonzero(fold == f) for f in range(k)]
    names = sorted(counts)  # type: ignore[type-var]
    order = rng.permutation(len(names))
    shuffled = [names[i] for i in order]
    shuffled.sort(key=lambda s: -counts[s])  # stable: equal sizes keep the shuffled order
    load = [0] * k
    fold_of: dict[str, int] = {}
    for s in shuffled:
        f = min(range(k), key=lambda j: (load[j], j))
        fold_of[s] = f  # type: ignore[index]
        load[f] += counts[s]
    arr = np.array([fold_of[s] for s in subjects])  # type: ignore[index]
    return [np.flatnonzero(arr == f) for f in range(k)]


def fold_splits(n_folds: int, fold: int) -> dict[str, list[int]]:
    """Which folds form train / val / test for cross-validation round ``fold``.

    test = ``fold``; val = the next fold (for model selection, never the test fold);
    train = the rest.
    """
    if not 0 <= fold < n_folds:
        raise FerkitError(f"--fold must be in 0..{n_folds - 1}, got {fold}")
    val = (fold + 1) % n_folds
    return {"test": [fold], "val": [val], "train": [f for f in range(n_folds) if f not in (fold, val)],
            "trainval": [f for f in range(n_folds) if f != fold]}
