"""Readers on the real datasets in ../shared/data (skipped when it is absent, e.g. on a user's clone)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED, requires_shared

from ferkit.data import open_dataset, subject_folds

pytestmark = requires_shared


def test_fer2013_folder_counts():
    r = open_dataset("fer2013", SHARED / "fer2013")
    s = {u: r.summary(u) for u in ("Training", "PublicTest", "PrivateTest")}
    assert [s[u]["n"] for u in s] == [28709, 3589, 3589]
    train = s["Training"]["per_class"]
    assert train == {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "sad": 4830, "surprise": 3171,
                     "neutral": 4965}
    test = {c: s["PublicTest"]["per_class"][c] + s["PrivateTest"]["per_class"][c] for c in train}
    assert test == {"angry": 958, "disgust": 111, "fear": 1024, "happy": 1774, "sad": 1247, "surprise": 831,
                    "neutral": 1233}


def test_ferplus_majority_counts():
    r = open_dataset("ferplus", SHARED / "ferplus")
    assert [r.summary(s)["n"] for s in ("Train", "Valid", "Test")] == [28385, 3555, 3545]
    assert r.summary("Test")["per_class"] == {"angry": 321, "disgust": 20, "fear": 97, "happy": 928, "sad": 446,
                                              "surprise": 447, "neutral": 1258, "contempt": 28}
    strict = open_dataset("ferplus", SHARED / "ferplus", vote="strict")
    assert strict.summary("Test")["n"] == 3137


def test_ckplus_ten_folds_are_subject_disjoint():
    r = open_dataset("ckplus", SHARED / "ckplus48", folds=10)
    recs, skipped = r.all_records()
    assert len(recs) == 981 and not skipped and len({x.subject for x in recs}) == 118
    folds = subject_folds([x.subject for x in recs], 10)
    assert sorted(i for f in folds for i in f) == list(range(981))
    subj = [{recs[i].subject for i in f} for f in folds]
    assert all(not (subj[a] & subj[b]) for a in range(10) for b in range(a + 1, 10))
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 12  # balanced
    for fold in (0, 7):
        rf = open_dataset("ckplus", SHARED / "ckplus48", folds=10, fold=fold)
        parts = {s: set(rf.load(s).subjects) for s in ("train", "val", "test")}
        assert not (parts["train"] & parts["test"]) and not (parts["val"] & parts["test"])


def test_jaffe_reads_palette_tiffs():
    r = open_dataset("jaffe", SHARED / "jaffe")
    ds = r.load("all", size=64)
    assert len(ds) == 213 and len(set(ds.subjects)) == 10
    assert sum(s == "KA" for s in ds.subjects) == 23
    ka = ds.images[[i for i, s in enumerate(ds.subjects) if s == "KA"]].float()
    assert ka.std() > 20  # a real gray image, not a palette index map


def test_blurred_training_split_is_detected_and_restored():
    """On these machines FER2013's Training JPEGs are blurred: detect it, and recover clean twins from FER+
    Train, which holds Training faces only."""
    from ferkit.data.restore import shift_warnings, split_stats

    plain = open_dataset("fer2013", SHARED / "fer2013")
    stats = [split_stats(plain.load(s).images, s) for s in ("Training", "PublicTest")]
    if not shift_warnings(stats):
        pytest.skip("this copy of FER2013 Training is not degraded")
    fixed = open_dataset("fer2013", SHARED / "fer2013", clean_from=SHARED / "ferplus")
    recs, skipped = fixed.records("Training")
    assert len(recs) >= 28000 and len(recs) + len(skipped) == 28709
    assert all(Path(x.source).parent.name == "FER2013Train" for x in recs)
    with pytest.warns(UserWarning, match=f"left out {len(skipped)} item.*no clean twin"):  # said, cached or not
        ds = fixed.load("Training")
    # the note on the recovery counts the same faces, in the same words
    assert fixed.notes[0].endswith(f"; the {len(skipped)} without an accepted twin are left out (`ferkit data` "
                                   "with the same --clean-from lists them)")
    assert f"took the clean twins of {len(recs)} of 28709 faces" in fixed.notes[0]
    assert shift_warnings([split_stats(ds.images, "Training"), stats[1]]) == []
    # labels are FER2013's: class counts stay within the dropped rows of the original counts
    orig = plain.summary("Training")["per_class"]
    assert all(0 <= orig[c] - n <= len(skipped) for c, n in ds.class_counts().items())
