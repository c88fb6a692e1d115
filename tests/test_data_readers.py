"""Dataset readers on generated fixtures in each public layout, and their failure modes."""

from __future__ import annotations

import csv
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from conftest import (
    FERPLUS_ROWS,
    face_like,
    make_ckplus,
    make_fer2013,
    make_ferplus,
    make_imagefolder,
    make_jaffe,
    make_kdef,
    make_rafdb,
    save_gray,
)
from PIL import Image

from ferkit import labels as L
from ferkit.data import cache as data_cache
from ferkit.data import ferplus_label, open_dataset
from ferkit.errors import DatasetError, FerkitError


# ---------------------------------------------------------------------------- FER2013
def test_fer2013_csv_and_folders_give_the_same_splits(tmp_path):
    folders, csv_path, truth = make_fer2013(tmp_path)
    a = open_dataset("fer2013", folders)
    b = open_dataset("fer2013", csv_path.parent)  # a folder holding fer2013.csv
    assert type(a).__name__ == "FER2013Folders" and type(b).__name__ == "FER2013CSV"
    for usage, items in truth.items():
        da, db = a.load(usage), b.load(usage)
        assert len(da) == len(db) == len(items)
        assert da.class_counts() == db.class_counts() == {c: len(items) // 7 for c in L.CANONICAL}

        def key(ds):  # order-free: (label, pixels) pairs
            return sorted((int(y), x.numpy().tobytes()) for x, y in zip(ds.images, ds.labels))

        assert key(da) == key(db) == sorted((lab, px.tobytes()) for lab, px in items)
        assert da.images.dtype == torch.uint8 and da.images.shape[1:] == (1, 48, 48)
    # the same file saved with a byte-order mark (as Excel does) reads the same
    bom = tmp_path / "bom" / "fer2013.csv"
    bom.parent.mkdir()
    bom.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    usage = next(iter(truth))
    assert torch.equal(open_dataset("fer2013", bom).load(usage).images, b.load(usage).images)


def test_fer2013_split_aliases_and_unknown_split(tmp_path):
    folders, _, _ = make_fer2013(tmp_path)
    r = open_dataset("fer2013", folders)
    assert r.resolve_split("test") == "PrivateTest" and r.resolve_split("val") == "PublicTest"
    with pytest.raises(FerkitError, match="unknown split 'dev'"):
        r.load("dev")


def test_fer2013_csv_wrong_pixel_count_names_the_line(tmp_path):
    _, csv_path, _ = make_fer2013(tmp_path)
    with open(csv_path) as fh:
        rows = list(csv.reader(fh))
    rows[3][1] = " ".join(["1"] * 2000)
    rows[5][1] = "12 oops 7"
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    usage3, usage5 = rows[3][2], rows[5][2]
    with pytest.raises(DatasetError, match=r"fer2013.csv:line 4: expected 2304 pixels \(48x48\), got 2000"):
        for u in ("Training", "PublicTest", "PrivateTest"):
            open_dataset("fer2013", csv_path).load(u)
    r = open_dataset("fer2013", csv_path, skip_bad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total = sum(len(r.load(u)) for u in ("Training", "PublicTest", "PrivateTest"))
    assert total == 7 * 8 - 2
    skipped = {u: r.summary(u)["skipped"] for u in ("Training", "PublicTest", "PrivateTest")}
    # each bad row is counted once, in its own split
    assert skipped[usage3] >= 1 and skipped[usage5] >= 1 and sum(skipped.values()) == 2
    # blank lines (one at the end, as editors save) are no rows: read, not refused as "expected 3 columns, got 0"
    _, good, _ = make_fer2013(tmp_path / "blank")
    good.write_text(good.read_text() + "\n\n")
    assert sum(len(open_dataset("fer2013", good).load(u)) for u in ("Training", "PublicTest", "PrivateTest")) == 56


def test_clean_from_needs_the_folder_form_and_a_ferplus_folder(tmp_path):
    folders, csv_path, _ = make_fer2013(tmp_path)
    with pytest.raises(FerkitError, match="--clean-from applies to the FER2013 image-folder form"):
        open_dataset("fer2013", csv_path, clean_from=tmp_path)
    with pytest.raises(DatasetError, match="wants a FER\\+ folder holding FER2013Train"):
        open_dataset("fer2013", folders, clean_from=tmp_path)


def test_fer2013_csv_bad_header_and_missing_file(tmp_path):
    bad = tmp_path / "fer2013.csv"
    bad.write_text("label,image\n1,2\n")
    with pytest.raises(DatasetError, match="header must have columns emotion,pixels,Usage"):
        open_dataset("fer2013", bad).load("Training")
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset("fer2013", tmp_path / "nope")


def test_fer2013_unknown_class_folder_and_corrupt_image(tmp_path):
    folders, _, _ = make_fer2013(tmp_path)
    save_gray(folders / "train" / "happyy" / "Training_1.png", face_like(0, np.random.default_rng(0)))
    with pytest.raises(DatasetError, match=r"happyy.*unknown class folder 'happyy'"):
        open_dataset("fer2013", folders).load("Training")
    # corrupt and empty images name the file; --skip-bad counts them
    (folders / "train" / "happyy" / "Training_1.png").unlink()
    (folders / "train" / "happyy").rmdir()
    (folders / "train" / "sad" / "Training_99998.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folders / "train" / "sad" / "Training_99999.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"Training_9999[89]\.(jpg|png): (corrupt|empty|not an image)"):
        open_dataset("fer2013", folders).load("Training")
    with pytest.warns(UserWarning, match="left out 2 item"):
        ds = open_dataset("fer2013", folders, skip_bad=True).load("Training")
    assert len(ds) == 28 and len(ds.skipped) == 2
    assert {s.rsplit("/", 1)[-1] for s, _ in ds.skipped} == {"Training_99998.jpg", "Training_99999.png"}
    # the second load comes from the cache: the same warning, the same list (nothing hidden)
    with pytest.warns(UserWarning, match=r"left out 2 item.*`ferkit data \.\.\. --check` lists them all"):
        again = open_dataset("fer2013", folders, skip_bad=True).load("Training")
    assert again.skipped == ds.skipped


def test_data_check_lists_every_item_left_out(tmp_path, capsys):
    from ferkit.cli import main

    folders, _, _ = make_fer2013(tmp_path)
    (folders / "train" / "sad" / "Training_99999.png").write_bytes(b"")  # fails when decoded
    (folders / "train" / "sad" / "notes.png").write_bytes(b"x")  # fails when listed (its name)
    assert main(["data", "--dataset", "fer2013", "--data", str(folders), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "left out: 1 item(s) (listed; --check also decodes every image):" in out and "notes.png: file name" in out
    assert main(["data", "--dataset", "fer2013", "--data", str(folders), "--skip-bad", "--check"]) == 0
    cap = capsys.readouterr()
    assert "left out: 2 item(s) (listed or decoded):" in cap.out and "Training_99999.png: empty file" in cap.out
    assert "warning" not in cap.err  # listed once, not warned about per split
    assert main(["data", "--dataset", "fer2013", "--data", str(folders), "--skip-bad", "--check", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert sorted(e["source"].rsplit("/", 1)[-1] for e in rep["left_out"]) == ["Training_99999.png", "notes.png"]
    # the table counts what decoded: both left out, the empty sad image not among the faces
    listed = open_dataset("fer2013", folders, skip_bad=True).summary("Training")
    t = rep["splits"]["Training"]
    assert t["skipped"] == 2 and listed["skipped"] == 1
    assert t["n"] == listed["n"] - 1 and t["per_class"]["sad"] == listed["per_class"]["sad"] - 1
    # an image name that is a broken link is counted and reported too (it vanished from the listing)
    (folders / "train" / "sad" / "notes.png").unlink()
    (folders / "train" / "sad" / "Training_99999.png").unlink()
    (folders / "train" / "sad" / "Training_99997.png").symlink_to(tmp_path / "gone.png")
    assert main(["data", "--dataset", "fer2013", "--data", str(folders), "--check"]) == 1
    assert "Training_99997.png: a broken or looping link" in capsys.readouterr().err
    assert main(["data", "--dataset", "fer2013", "--data", str(folders), "--skip-bad", "--check", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert {e["source"].rsplit("/", 1)[-1]: e["reason"] for e in rep["left_out"]}["Training_99997.png"] \
        == "a broken or looping link"


def test_dataset_cache_is_used_and_invalidated(tmp_path, monkeypatch):
    folders, _, _ = make_fer2013(tmp_path)
    r = open_dataset("fer2013", folders)
    first = r.load("PublicTest")
    assert list((data_cache.cache_dir() / "datasets").glob("*.safetensors"))
    import ferkit.data.base as base

    def boom(*a, **k):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(base, "read_image", boom)
    again = open_dataset("fer2013", folders).load("PublicTest")
    assert torch.equal(first.images, again.images) and again.sources == first.sources
    # changing a file invalidates the entry
    monkeypatch.undo()
    victim = next((folders / "test").rglob("PublicTest_*.png"))
    save_gray(victim, np.zeros((48, 48), np.uint8))
    fresh = open_dataset("fer2013", folders).load("PublicTest")
    assert int(fresh.images[fresh.sources.index(str(victim))].sum()) == 0


# ---------------------------------------------------------------------------- FER+
def test_ferplus_vote_rules():
    assert ferplus_label(np.array([4, 0, 0, 1, 3, 2, 0, 0, 0, 0])) == 0  # neutral
    assert ferplus_label(np.array([4, 0, 0, 1, 3, 2, 0, 0, 0, 0]), "strict") is None  # 4 of 9 is no majority
    assert ferplus_label(np.array([0, 0, 0, 0, 0, 0, 0, 0, 3, 7])) is None  # not a face
    assert ferplus_label(np.array([2, 0, 0, 0, 0, 0, 0, 0, 8, 0])) is None  # unknown
    assert ferplus_label(np.array([1, 0, 6, 0, 0, 0, 0, 0, 3, 0]), "strict") == 2  # single vote removed
    with pytest.raises(FerkitError):
        ferplus_label(np.zeros(10), "plurality")


def test_ferplus_reader_labels_and_soft_targets(tmp_path):
    root = make_ferplus(tmp_path)
    r = open_dataset("ferplus", root)
    assert r.classes == L.CANONICAL_8
    tr = r.load("train")
    assert [r.classes[i] for i in tr.labels] == ["neutral", "happy", "surprise", "contempt"]
    assert tr.soft is not None and torch.allclose(tr.soft.sum(1), torch.ones(4))
    # soft targets are reordered to the canonical class order
    happy_row = tr.soft[1]
    assert happy_row[L.CANONICAL_8.index("happy")] == 1.0
    surprise = tr.soft[2]  # votes: neutral 1, surprise 6 (unknown 3 is not an emotion)
    assert surprise[L.CANONICAL_8.index("surprise")] == pytest.approx(6 / 7)
    assert surprise[L.CANONICAL_8.index("neutral")] == pytest.approx(1 / 7)
    te = r.load("Test")
    assert [r.classes[i] for i in te.labels] == ["angry", "fear"]  # the fear/NF tie goes to fear
    strict = open_dataset("ferplus", root, vote="strict")
    assert strict.summary("Train")["n"] == 3 and strict.summary("Test")["n"] == 1


def test_ferplus_missing_label_file_and_missing_image(tmp_path):
    root = make_ferplus(tmp_path)
    (root / "FER2013Valid" / "label.csv").unlink()
    with pytest.raises(DatasetError, match=r"FER2013Valid/label.csv: FER\+ label file not found"):
        open_dataset("ferplus", root).load("Valid")
    (root / "FER2013Train" / FERPLUS_ROWS["Train"][1][0]).unlink()
    with pytest.raises(DatasetError, match="fer0000001.png: image listed in label.csv is missing"):
        open_dataset("ferplus", root).load("Train")
    assert open_dataset("ferplus", root, skip_bad=True).summary("Train") == {
        "n": 3, "per_class": {**{c: 0 for c in L.CANONICAL_8}, "neutral": 1, "surprise": 1, "contempt": 1},
        "subjects": 0, "skipped": 1}


@pytest.mark.parametrize("votes", [[0] * 10, [-3, 0, 0, 0, 0, 0, 0, 0, 0, 0], ["nan", 5, 0, 0, 0, 0, 0, 0, 0, 0],
                                   [1, "inf", 0, 0, 0, 0, 0, 0, 0, 0]])
def test_ferplus_rows_with_impossible_votes_are_refused(tmp_path, votes):
    # they were read as neutral (all-zero votes: a NaN soft target, then "loss became nan")
    root = make_ferplus(tmp_path)
    label = root / "FER2013Test" / "label.csv"
    extra = FERPLUS_ROWS["Train"][0][0]
    (root / "FER2013Test" / extra).write_bytes((root / "FER2013Train" / extra).read_bytes())
    with open(label, "a", newline="") as f:
        csv.writer(f).writerow([extra, "(0, 0, 48, 48)", *votes])
    n = len(FERPLUS_ROWS["Test"]) + 1
    with pytest.raises(DatasetError, match=f"label.csv:line {n}: vote counts must be finite, not negative"):
        open_dataset("ferplus", root).load("Test")
    with pytest.warns(UserWarning, match="left out 1 item"):
        ds = open_dataset("ferplus", root, skip_bad=True).load("Test")
    assert ds.skipped and np.isfinite(ds.soft.numpy()).all()


# ---------------------------------------------------------------------------- CK+, JAFFE, KDEF, RAF-DB
def test_ckplus_subject_independent_folds(tmp_path):
    root = make_ckplus(tmp_path, subjects=12)
    r = open_dataset("ckplus", root, folds=4, fold=1)
    assert r.classes == ("angry", "disgust", "fear", "happy", "sad", "surprise", "contempt")
    parts = {s: r.load(s) for s in ("train", "val", "test", "all")}
    subj = {s: set(d.subjects) for s, d in parts.items()}
    assert not (subj["train"] & subj["val"]) and not (subj["train"] & subj["test"]) and not (subj["val"] & subj["test"])
    assert subj["train"] | subj["val"] | subj["test"] == subj["all"] and len(subj["all"]) == 12
    assert len(parts["train"]) + len(parts["val"]) + len(parts["test"]) == len(parts["all"])
    # labels follow the folder names (sadness -> sad, anger -> angry)
    for src, y in zip(parts["all"].sources, parts["all"].labels):
        assert L.CKPLUS_FOLDERS[src.split("/")[-2]] == r.classes[y]
    with pytest.raises(FerkitError, match="--fold must be in 0..3"):
        open_dataset("ckplus", root, folds=4, fold=4)
    # --fold-seed deals the subjects to the folds: the same seed the same folds, another seed others
    def test_subjects(seed):
        return [set(open_dataset("ckplus", root, folds=4, fold=i, fold_seed=seed).load("test").subjects)
                for i in range(4)]

    seed0 = test_subjects(0)
    assert seed0[1] == subj["test"] and seed0 == test_subjects(0)
    assert set().union(*seed0) == subj["all"] and sum(map(len, seed0)) == 12  # each subject in one fold
    assert test_subjects(1) != seed0 and set().union(*test_subjects(1)) == subj["all"]


def test_ckplus_bad_file_name(tmp_path):
    root = make_ckplus(tmp_path)
    save_gray(root / "happy" / "frame_001.png", np.zeros((48, 48), np.uint8))
    with pytest.raises(DatasetError, match="frame_001.png: file name is not S<subject>_<sequence>_<frame>"):
        open_dataset("ckplus", root).load("all")


def test_jaffe_palette_tiffs_and_subjects(tmp_path):
    root = make_jaffe(tmp_path)
    r = open_dataset("jaffe", root, folds=5, fold=0)
    ds = r.load("all", size=64)
    assert len(ds) == 35 and set(ds.subjects) == {"KA", "KL", "KM", "KR", "MK"}
    ka = [i for i, s in enumerate(ds.subjects) if s == "KA"]
    with Image.open(ds.sources[ka[0]]) as im:
        assert im.mode == "P"
    # palette files decode to the same gray levels they were made from
    rng = np.random.default_rng(3)
    expected = face_like(L.CANONICAL.index("angry"), rng, size=64)
    got = ds.images[ds.sources.index(str(root / "KA.AN1.1.tiff")), 0].numpy()
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 2
    assert set(r.load("test").subjects).isdisjoint(r.load("train").subjects)


def test_kdef_layout_subjects_and_angles(tmp_path):
    root = make_kdef(tmp_path)
    r = open_dataset("kdef", root, folds=4)
    assert r.summary("all")["n"] == 2 * 4 * 7 * 3
    assert r.summary("all")["subjects"] == 4
    assert open_dataset("kdef", root, folds=4, angles=("S",)).summary("all")["n"] == 2 * 4 * 7
    # --angles "S, hl": spaces and case do not matter; an unknown view is named
    assert open_dataset("kdef", root, folds=4, angles=("S", " hl")).angles == ("S", "HL")
    with pytest.raises(DatasetError, match="unknown view.* XX in --angles; KDEF's views: FL, HL, S, HR, FR"):
        open_dataset("kdef", root, folds=4, angles=("S", "XX"))
    ds = r.load("all")
    assert ds.class_counts()["fear"] == 24  # AF = afraid -> fear


def test_rafdb_layout(tmp_path):
    root = make_rafdb(tmp_path)
    r = open_dataset("rafdb", root)
    tr, te = r.load("train"), r.load("test")
    assert len(tr) == 14 and len(te) == 7
    # a file there under another case is named (it was "missing"); a label file renamed to the right spelling too
    aligned = root / "basic" / "Image" / "aligned"
    (aligned / "test_00001_aligned.jpg").rename(aligned / "test_00001_aligned.JPG")
    with pytest.raises(DatasetError, match="test_00001_aligned.JPG is there, its case differs"):
        open_dataset("rafdb", root).load("test")
    (aligned / "test_00001_aligned.JPG").rename(aligned / "test_00001_aligned.jpg")
    labels = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    labels.rename(labels.with_name("list_partition_label.txt"))
    with pytest.raises(DatasetError, match="list_partition_label.txt is there: RAF-DB's own name is "
                                           "list_patition_label.txt, misspelt"):
        open_dataset("rafdb", root)
    labels.with_name("list_partition_label.txt").rename(labels)
    # label ids: 1=surprise ... 7=neutral
    assert [r.classes[i] for i in te.labels] == ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
    with pytest.raises(DatasetError, match="list_patition_label.txt: RAF-DB label file not found"):
        open_dataset("rafdb", tmp_path)


def test_rafdb_label_file_faults_are_said_where_they_belong(tmp_path):
    root = make_rafdb(tmp_path)
    labels = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    rows = labels.read_text()
    # a byte-order mark does not hide the first row
    labels.write_text("\ufeff" + rows, encoding="utf-8")
    r = open_dataset("rafdb", root)
    assert len(r.load("train")) == 14 and r.load("train").class_counts()["surprise"] == 2
    # a row in no split is an error (not dropped); a bad label is its own split's fault only
    labels.write_text(rows + "val_00001.jpg 3\ntrain_00020.jpg 9\n")
    with pytest.raises(DatasetError, match="'val_00001.jpg' is in no split"):
        open_dataset("rafdb", root).load("train")
    assert len(open_dataset("rafdb", root).load("test")) == 7  # neither row is the test split's
    r = open_dataset("rafdb", root, skip_bad=True)
    with pytest.warns(UserWarning, match="rafdb train: left out 2 item"):
        tr = r.load("train")
    te = r.load("test")
    assert len(tr) == 14 and len(tr.skipped) == 2 and len(te) == 7 and not te.skipped
    assert any("label 1..7" in why for _, why in tr.skipped)
    # RAF-DB compound's list (its 1-7 are compound classes: read as basic's, "happily surprised" became surprise,
    # silently, once --skip-bad dropped 8-11): refused, even with --skip-bad
    labels.write_text("".join(f"train_{i:04d}.jpg {i}\n" for i in range(1, 12)))
    with pytest.raises(DatasetError, match="RAF-DB compound's list \\(line 8 has label 8\\), whose 11 classes"):
        open_dataset("rafdb", root, skip_bad=True).load("train")
    # an empty label file
    labels.write_text("\n")
    with pytest.raises(DatasetError, match="lists no images"):
        open_dataset("rafdb", root).load("test")


def test_images_beside_the_class_or_session_folders_are_said(tmp_path):
    import shutil

    kdef = make_kdef(tmp_path / "k")
    loose = kdef / "KDEF" / "AF03ANS.JPG"
    shutil.copy(next((kdef / "KDEF" / "AF01").glob("*.JPG")), loose)
    with pytest.raises(DatasetError, match="AF03ANS.JPG: an image beside the session folders"):
        open_dataset("kdef", kdef, folds=3).load("train")
    recs, skipped = open_dataset("kdef", kdef, folds=3, skip_bad=True).all_records()
    assert len(recs) == 2 * 4 * 7 * 3 and [str(loose)] == [p for p, _ in skipped]
    for with_splits, where in ((False, ""), (True, "train")):
        root = make_imagefolder(tmp_path / f"f{with_splits}", with_splits=with_splits)
        shutil.copy(root / where / "happy" / "0.png", root / where / "stray.png")
        (root / where / "notes.txt").write_text("not an image: ignored")
        r = open_dataset("imagefolder", root, folds=3)
        with pytest.raises(DatasetError, match="stray.png: an image beside the class folders"):
            r.load("train")


def test_imagefolder_with_and_without_split_folders(tmp_path):
    root = make_imagefolder(tmp_path, with_splits=True)
    r = open_dataset("imagefolder", root)
    assert set(r.splits) == {"train", "val", "test"} and r.val_split == "val"
    assert len(r.load("train")) == 7 * 8
    flat = make_imagefolder(tmp_path / "flat", with_splits=False, per_class=10)
    rf = open_dataset("imagefolder", flat, folds=5)
    assert rf.summary("all")["n"] == 70 and rf.summary("test")["n"] == 14
    (flat / "notes.txt").parent.mkdir(exist_ok=True)
    (flat / "happy" / "readme.txt").write_text("hello")
    with pytest.raises(DatasetError, match="readme.txt: not an image file"):
        open_dataset("imagefolder", flat).load("all")
    (flat / "happy" / "readme.txt").unlink()
    (flat / "happy" / "gone.png").symlink_to(tmp_path / "nowhere.png")  # reported, not silently dropped
    with pytest.raises(DatasetError, match="gone.png: a broken or looping link"):
        open_dataset("imagefolder", flat).load("all")
    (flat / "happy" / "gone.png").unlink()
    assert r.classes == rf.classes == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    # split folders named in another case or the long way are found too (Training/, Valid/, Test/)
    for a, b in (("train", "Training"), ("val", "Valid"), ("test", "TEST")):
        (root / a).rename(root / b)
    r2 = open_dataset("imagefolder", root)
    assert (r2.train_split, r2.val_split, r2.test_split) == ("Training", "Valid", "TEST")
    assert len(r2.load("Training")) == 7 * 8


def test_imagefolder_classes_are_its_folders_nested_images_count_and_odd_folders_are_named(tmp_path):
    from conftest import face_like, save_gray

    rng = np.random.default_rng(0)
    root = tmp_path / "two"
    for name, sub in (("sad", ""), ("Happiness", ""), ("happy", "session 2")):
        for i in range(3):
            save_gray(root / name / sub / f"{i}.png", face_like(3, rng))
    r = open_dataset("imagefolder", root, folds=3)
    assert r.classes == ("happy", "sad")  # the expressions that have a folder, canonical order
    ds = r.load("all")
    assert len(ds) == 9 and sorted(ds.labels.tolist()) == [0] * 6 + [1] * 3  # happy/session 2/*.png read too
    (root / "misc").mkdir()
    save_gray(root / "misc" / "x.png", face_like(0, rng))
    odd = open_dataset("imagefolder", root, folds=3)
    assert not odd.splits or "misc" not in odd.splits  # still class folders, not a split layout
    # the names a folder of one's own takes: every expression's (it listed happy, sad: those found beside it)
    with pytest.raises(DatasetError, match=r"unknown class folder 'misc' \(expected one of: angry, disgust, fear, "
                                           r"happy, sad, surprise, neutral, contempt; in any case, or a synonym"):
        odd.load("all")
    with pytest.warns(UserWarning, match="left out 1 item.*unknown class folder 'misc'"):
        assert len(open_dataset("imagefolder", root, folds=3, skip_bad=True).load("all")) == 9
    empty = tmp_path / "empty"
    (empty / "happy").mkdir(parents=True)
    (empty / "sad").mkdir()
    with pytest.raises(DatasetError, match="no images in its class folders"):
        open_dataset("imagefolder", empty, folds=3).load("all")


def test_unknown_dataset_and_option():
    with pytest.raises(FerkitError, match="unknown dataset 'affectnet'"):
        open_dataset("affectnet", ".")
    with pytest.raises(FerkitError, match="does not take option"):
        open_dataset("rafdb", ".", folds=3)


def test_data_check_counts_the_subjects_that_decoded(tmp_path, capsys):
    from ferkit.cli import main

    root = make_ckplus(tmp_path)
    for f in root.rglob("S010_*.png"):  # every image of one subject unreadable
        f.write_bytes(b"")
    assert main(["data", "--dataset", "ckplus", "--data", str(root), "--skip-bad", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    listed, listed_folds = rep["splits"]["all"], rep["folds"]
    assert main(["data", "--dataset", "ckplus", "--data", str(root), "--skip-bad", "--check", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    decoded, folds = rep["splits"]["all"], rep["folds"]
    assert listed["subjects"] == 12 and decoded["subjects"] == 11  # it counted the listing's 12
    assert decoded["n"] == listed["n"] - decoded["skipped"]
    # the folds alike: S010's fold (dealt from the listing, as crossval deals it) counts none of its
    # images and lists it apart, not among the subjects that give the fold images
    k = next(i for i, f in enumerate(listed_folds) if "S010" in f["subjects"])
    assert folds[k]["subjects_unreadable"] == ["S010"] and "S010" not in folds[k]["subjects"]
    assert folds[k]["subjects"] == [x for x in listed_folds[k]["subjects"] if x != "S010"]
    assert folds[k]["n"] == listed_folds[k]["n"] - decoded["skipped"]
    assert sum(f["n"] for f in folds) == decoded["n"]
    assert sorted(x for f in folds for x in f["subjects"]) == sorted({x for f in listed_folds for x in f["subjects"]}
                                                                     - {"S010"})
    assert all("subjects_unreadable" not in f for i, f in enumerate(folds) if i != k)
    assert main(["data", "--dataset", "ckplus", "--data", str(root), "--skip-bad", "--check"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith(f"fold {k}:"))
    assert line.endswith("; without an image that decodes: S010") and line.count("S010") == 1


def test_imagefolder_without_any_expression_folder_says_how_to_lay_it_out(tmp_path):
    """One folder that is no expression name and holds images: neither class folders nor split
    folders of them; one message says so (it was taken for a split and its images for strays)."""
    d = tmp_path / "mine" / "pikachu"
    d.mkdir(parents=True)
    Image.new("L", (48, 48), 128).save(d / "a.png")
    with pytest.raises(FerkitError, match=r"mine: no expression class folders: pikachu is no expression name "
                                          r"\(angry, .*lay it out as mine/happy/\*\.jpg or mine/train/happy/\*\.jpg"):
        open_dataset("imagefolder", tmp_path / "mine")


def test_fer2013_folders_a_class_it_has_not_a_misplaced_file_and_a_name_that_is_not_utf8(tmp_path):
    """Found by a walk through real users' copies: a contempt/ folder raised ValueError (tuple.index), even
    with --skip-bad; a PublicTest_ file in train/ was left out of both splits without a word; a file name
    that is not UTF-8 (os.listdir gives it with surrogates) raised UnicodeEncodeError in the cache key."""
    import os
    import shutil

    folders, _, _ = make_fer2013(tmp_path)
    save_gray(folders / "train" / "contempt" / "Training_1.png", face_like(0, np.random.default_rng(0)))
    with pytest.raises(DatasetError, match=r"unknown class folder 'contempt' \(expected one of: angry"):
        open_dataset("fer2013", folders).load("Training")
    with pytest.warns(UserWarning, match="left out 1 item"):
        assert len(open_dataset("fer2013", folders, skip_bad=True).load("Training")) == 28
    shutil.rmtree(folders / "train" / "contempt")
    stray = next((folders / "test" / "happy").glob("PublicTest_*.png"))
    stray.rename(folders / "train" / "happy" / stray.name)
    with pytest.raises(DatasetError, match=rf"{stray.name}: a PublicTest image in train/: move it to test/"):
        open_dataset("fer2013", folders).load("Training")
    r = open_dataset("fer2013", folders, skip_bad=True)
    assert r.summary("Training")["skipped"] == 1 and r.summary("PublicTest")["skipped"] == 0
    (folders / "train" / "happy" / stray.name).rename(stray)
    odd = os.fsdecode(os.fsencode(str(folders / "train" / "sad")) + b"/Training_h\xe9.png")
    shutil.copy(next((folders / "train" / "sad").glob("*.png")), odd)
    ds = open_dataset("fer2013", folders).load("Training")
    assert len(ds) == 29


def test_os_litter_is_not_a_class_nor_an_image_and_ferplus_reads_a_bom_and_microsofts_layout(tmp_path):
    """__MACOSX/ (a zip made on a Mac) stopped CK+ and image folders as an unknown class; Thumbs.db in a
    class folder stopped an image folder as "not an image file"; FER+'s label.csv saved by Excel (a BOM)
    named its first image with the BOM in front; the FERPlus repository keeps its folders under data/."""
    import shutil

    ck = make_ckplus(tmp_path / "ck", subjects=10)
    (ck / "__MACOSX" / "happy").mkdir(parents=True)
    (ck / "__MACOSX" / "happy" / "._S001_001_00000001.png").write_bytes(b"\x00\x05\x16\x07")
    n = open_dataset("ckplus", ck).summary("all")["n"]
    shutil.rmtree(ck / "__MACOSX")
    assert n == open_dataset("ckplus", ck).summary("all")["n"]
    folder = make_imagefolder(tmp_path / "if", per_class=4)
    (folder / "train" / "happy" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "__MACOSX").mkdir()
    r = open_dataset("imagefolder", folder)
    assert r.splits == ("test", "train", "val") and r.summary("train")["n"] == 28
    fp = make_ferplus(tmp_path / "fp")
    lbl = fp / "FER2013Train" / "label.csv"
    lbl.write_bytes(b"\xef\xbb\xbf" + lbl.read_bytes())
    assert open_dataset("ferplus", fp).summary("Train")["n"] == 4
    repo = tmp_path / "FERPlus"
    shutil.copytree(fp, repo / "data")
    (repo / "fer2013new.csv").write_text("Usage,Image name,neutral\n")
    assert open_dataset("ferplus", repo).summary("Train")["n"] == 4


def test_jaffe_in_lower_case_rafdb_listing_aligned_names_and_an_archive_as_data(tmp_path):
    """ka.an1.1.tiff was refused (KDEF took any case); a RAF-DB list naming train_00001_aligned.jpg was
    looked up as ..._aligned_aligned.jpg; a .zip given as --data was "not text" or "a file"."""
    import zipfile

    (tmp_path / "j").mkdir()
    jaffe = make_jaffe(tmp_path / "j")
    first = jaffe / "KA.AN1.1.tiff"
    first.rename(jaffe / "ka.an1.1.tiff")
    ds = open_dataset("jaffe", jaffe, folds=5).load("all", size=48)
    assert len(ds) == 35 and ds.subjects[ds.sources.index(str(jaffe / "ka.an1.1.tiff"))] == "KA"
    (tmp_path / "r").mkdir()
    raf = make_rafdb(tmp_path / "r")
    lbl = next(raf.rglob("list_patition_label.txt"))
    lbl.write_text(lbl.read_text().replace(".jpg ", "_aligned.jpg "))
    assert len(open_dataset("rafdb", raf).load("test")) == 7
    z = tmp_path / "fer2013.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("fer2013.csv", "emotion,pixels,Usage\n")
    for name in ("fer2013", "ckplus"):
        with pytest.raises(DatasetError, match=r"fer2013.zip is an archive: unpack it and give its folder"):
            open_dataset(name, z)


def test_an_item_in_no_split_is_counted_once_and_still_stops_each_split_without_skip_bad(tmp_path):
    """A CSV row of an unknown Usage, or a misnamed file in test/ (read for both test splits), showed as
    'skipped 1' in every split, though one item was left out."""
    folders, csv_path, _ = make_fer2013(tmp_path)
    with open(csv_path, "a", newline="") as f:
        f.write("3," + " ".join(["0"] * 2304) + ",privatetest\n")
    bad = folders / "test" / "happy" / "im0.png"
    save_gray(bad, face_like(3, np.random.default_rng(0)))
    for root, item in ((csv_path, "unknown Usage 'privatetest'"), (folders, "file name does not start with")):
        r = open_dataset("fer2013", root, skip_bad=True)
        counts = [r.summary(sp)["skipped"] for sp in ("Training", "PublicTest", "PrivateTest")]
        assert sum(counts) == 1, (root, counts)
        assert r.summary("PrivateTest")["skipped"] == counts[2]  # (a split read again counts it as before)
        # read alone, a test split reports it (counting by the training split left it out there in silence)
        assert open_dataset("fer2013", root, skip_bad=True).summary("PrivateTest")["skipped"] == 1
        with pytest.raises(DatasetError, match=item):
            open_dataset("fer2013", root).load("PrivateTest")


def test_an_empty_split_is_said_to_be_empty_not_unreadable(tmp_path):
    """With no PrivateTest_ file in test/, evaluate said "no readable images", as if they failed to decode."""
    folders, _, _ = make_fer2013(tmp_path)
    for p in folders.glob("test/*/PrivateTest_*"):
        p.unlink()
    with pytest.raises(DatasetError, match=r"fer2013 PrivateTest: no images of this split under .*`ferkit data "
                                           r"--dataset fer2013 --data .*` shows what is there; expected layout"):
        open_dataset("fer2013", folders).load("PrivateTest")
    for p in folders.glob("test/*/PublicTest_*"):
        p.write_bytes(b"")
    with pytest.raises(DatasetError, match=r"PublicTest: none of its 14 image\(s\) could be read"):
        open_dataset("fer2013", folders, skip_bad=True).load("PublicTest")


def test_one_fer2013_face_in_two_class_folders_is_said(tmp_path):
    """The same PrivateTest_X file in happy/ and sad/ was counted twice, under both labels, in silence."""
    import shutil

    folders, _, _ = make_fer2013(tmp_path)
    src = next((folders / "test" / "happy").glob("PrivateTest_*.png"))
    shutil.copy(src, folders / "test" / "sad" / src.name)
    with pytest.raises(DatasetError, match=rf"sad/{src.name}: the same face \({src.stem}\) is in happy/ too"):
        open_dataset("fer2013", folders).load("PrivateTest")
    with pytest.warns(UserWarning, match="left out 1 item"):
        ds = open_dataset("fer2013", folders, skip_bad=True).load("PrivateTest")
    assert len(ds) == 14 and ds.labels[ds.sources.index(str(src))] == L.CANONICAL.index("happy")
    # the same name on two different faces (the real Kaggle folders hold two such pairs): both read
    other = next(p for p in (folders / "test" / "sad").glob("PrivateTest_*.png") if p.name != src.name)
    shutil.copy(other, folders / "test" / "sad" / src.name)
    assert len(open_dataset("fer2013", folders).load("PrivateTest")) == 15


def test_a_ferplus_or_rafdb_row_listed_twice_is_said(tmp_path):
    """A FER+ label.csv or RAF-DB list with one image's row twice (a pasted line, or the image under two
    labels) counted that face twice, in silence; now the second row is reported and the first kept."""
    fp = make_ferplus(tmp_path / "fp")
    label = fp / "FER2013Train" / "label.csv"
    rows = label.read_text().splitlines()
    # fer0000001.png again, as fear: a second label for the same face
    label.write_text("\n".join(rows + ["fer0000001.png,\"(0, 0, 48, 48)\",0,0,0,0,0,0,9,0,1,0"]) + "\n")
    with pytest.raises(DatasetError, match=r"label.csv:line 7: fer0000001.png is listed again \(first on line 2\)"):
        open_dataset("ferplus", fp).load("Train")
    with pytest.warns(UserWarning, match="left out 1 item"):
        tr = open_dataset("ferplus", fp, skip_bad=True).load("Train")
    assert [L.CANONICAL_8[i] for i in tr.labels] == ["neutral", "happy", "surprise", "contempt"]
    # a row refused (its votes unreadable) does not make a later good row for its face a duplicate
    shutil.copy(fp / "FER2013Train" / "fer0000000.png", fp / "FER2013Train" / "fer0000009.png")
    with open(label, "a") as f:
        f.write('fer0000009.png,"(0, 0, 48, 48)",x,0,0,0,0,0,0,0,0,0\n'
                'fer0000009.png,"(0, 0, 48, 48)",0,9,0,0,0,0,0,0,1,0\n')
    with pytest.warns(UserWarning, match="left out 2 item"):  # the pasted row and the unreadable one
        tr = open_dataset("ferplus", fp, skip_bad=True).load("Train")
    assert [L.CANONICAL_8[i] for i in tr.labels] == ["neutral", "happy", "surprise", "contempt", "happy"]
    raf = make_rafdb(tmp_path / "r")
    labels = raf / "basic" / "EmoLabel" / "list_patition_label.txt"
    # the same test image twice, once by its aligned file's own name (one image: one row)
    labels.write_text(labels.read_text() + "test_00003_aligned.jpg 1\n")
    with pytest.raises(DatasetError, match=r"line 22: test_00003_aligned.jpg is listed again \(first on line 17\)"):
        open_dataset("rafdb", raf).load("test")
    assert len(open_dataset("rafdb", raf).load("train")) == 14  # (not the training split's fault)
    with pytest.warns(UserWarning, match="left out 1 item"):
        te = open_dataset("rafdb", raf, skip_bad=True).load("test")
    assert len(te) == 7 and L.CANONICAL[te.labels[2]] == "disgust"  # the first row's label is kept


def test_one_ck_frame_or_jaffe_photo_filed_twice_is_said(tmp_path):
    """The same CK+ frame in happy/ and sadness/ counted twice (217 for 216); JAFFE's KA.AN1.1.tiff beside
    KA.AN1.1.tif or KA.SA1.1.tiff (one photo number) counted twice too, in silence."""
    import shutil

    ck = make_ckplus(tmp_path / "ck", subjects=10)
    n = open_dataset("ckplus", ck).summary("all")["n"]
    src = next((ck / "happy").glob("*.png"))
    other = ck / "sadness"  # (after happy/ in the order read: the copy there is the one reported)
    shutil.copy(src, other / src.name)
    with pytest.raises(DatasetError, match=rf"{other.name}/{src.name}: the same frame \({src.stem}\) is happy/"):
        open_dataset("ckplus", ck).summary("all")
    kept = open_dataset("ckplus", ck, skip_bad=True).summary("all")
    assert kept["n"] == n and kept["skipped"] == 1
    (tmp_path / "j").mkdir()
    jaffe = make_jaffe(tmp_path / "j")
    shutil.copy(jaffe / "KA.AN1.1.tiff", jaffe / "KA.SA1.1.tiff")
    with pytest.raises(DatasetError, match=r"KA.SA1.1.tiff: photo number 1 is KA.AN1.1.tiff too"):
        open_dataset("jaffe", jaffe, folds=5).summary("all")
    assert open_dataset("jaffe", jaffe, folds=5, skip_bad=True).summary("all")["n"] == 35


def test_an_empty_split_of_a_folder_of_ones_own_is_a_split_with_no_image(tmp_path):
    """The 'no class folder: is --data the ... folder?' refusal is for the dataset's own folder (another
    dataset's given); a split subfolder with no class folder yet (an empty val/) stays a split of 0."""
    from ferkit.data import open_dataset

    root = tmp_path / "mine"
    for d in ("train/happy", "train/sad", "test/happy"):
        (root / d).mkdir(parents=True)
        Image.new("L", (48, 48), 90).save(root / d / "a.png")
    (root / "val").mkdir()
    r = open_dataset("imagefolder", root)
    assert len(r.load("train", size=(48, 48)).labels) == 2 and len(r.load("test", size=(48, 48)).labels) == 1
    from ferkit.cli import main

    assert main(["data", "--dataset", "imagefolder", "--data", str(root)]) == 0  # (it said "val: no ... class folder")


def test_split_folders_in_another_case_or_a_longer_form_are_found_by_their_usual_names(tmp_path, capsys):
    """Train/, Validation/, Testing/ were found by default but --split test and --split validation were
    refused; with no test folder, evaluate asked for --split 'all' or 'test', neither of them there."""
    from ferkit.cli import main
    from ferkit.data import open_dataset

    root = tmp_path / "caps"
    for split in ("Train", "Validation", "Testing"):
        for c in ("happy", "sad"):
            (root / split / c).mkdir(parents=True)
            Image.new("L", (48, 48), 60 if c == "happy" else 160).save(root / split / c / "a.png")
    r = open_dataset("imagefolder", root)
    assert [r.resolve_split(s) for s in ("test", "TEST", "validation", "val", "train", "Testing")] == [
        "Testing", "Testing", "Validation", "Validation", "Train", "Testing"]
    with pytest.raises(FerkitError, match="unknown split 'holdout'"):
        r.resolve_split("holdout")
    notest = tmp_path / "notest"
    for split in ("train", "val"):
        for c in ("happy", "sad"):
            (notest / split / c).mkdir(parents=True)
            Image.new("L", (48, 48), 60 if c == "happy" else 160).save(notest / split / c / "a.png")
    assert main(["evaluate", "--model", "lite_cnn-fer2013", "--dataset", "imagefolder", "--data", str(notest)]) == 1
    assert "has no standard test split here: pass --split, one of: train, val" in capsys.readouterr().err


def test_a_flat_folders_folds_hold_every_class():
    """Each photo its own subject: 5 a class in 5 folds left a test fold without happy or neutral (a
    subject deal balances sizes only). Such folds are now dealt class by class."""
    from ferkit.data.folds import subject_folds

    labels = [c for c in range(4) for _ in range(5)]
    subjects = [f"img{i}.png" for i in range(len(labels))]
    for seed in range(4):
        folds = subject_folds(subjects, 5, seed, labels)
        assert sorted(int(i) for f in folds for i in f) == list(range(20))  # each image once
        assert all(sorted(labels[i] for i in f) == [0, 1, 2, 3] for f in folds)  # one of each class in each
    assert [f.tolist() for f in subject_folds(subjects, 5, 0, labels)] != \
        [f.tolist() for f in subject_folds(subjects, 5, 1, labels)]  # (the seed still deals)
    uneven = [0] * 7 + [1] * 3
    sizes = [len(f) for f in subject_folds([str(i) for i in range(10)], 3, 0, uneven)]
    assert sorted(sizes) == [3, 3, 4]
    # persons with several images: dealt by person, as before (labels do not split a person)
    people = ["a", "a", "b", "b", "c", "c"]
    assert sorted(len(f) for f in subject_folds(people, 3, 0, [0, 1, 0, 1, 0, 1])) == [2, 2, 2]


def test_rafdb_unpacked_one_level_too_deep_is_said_at_once(tmp_path):
    """basic/Image/aligned/aligned/*.jpg: 'the first image is missing, pass --skip-bad', which then skipped
    every one and training found no image."""
    root = make_rafdb(tmp_path)
    aligned = root / "basic" / "Image" / "aligned"
    (aligned / "aligned").mkdir()
    for p in list(aligned.glob("*.jpg")):
        p.rename(aligned / "aligned" / p.name)
    for skip in (False, True):
        with pytest.raises(DatasetError, match=r"aligned: no aligned image in it, for the train images .*lists "
                                               r"\(it holds the folder aligned/: unpacked one level too deep"):
            open_dataset("rafdb", root, skip_bad=skip).load("train", size=(48, 48))
    # one image missing among others: as before, that image (--skip-bad reads the rest)
    for p in (aligned / "aligned").glob("*.jpg"):
        p.rename(aligned / p.name)
    next(iter(sorted(aligned.glob("train_*.jpg")))).unlink()
    with pytest.raises(DatasetError, match="image listed in list_patition_label.txt is missing"):
        open_dataset("rafdb", root).load("train", size=(48, 48))


def test_kdef_photos_in_another_sessions_folder_or_twice_are_said(tmp_path):
    """KDEF/AF01/BF09SAS.JPG made a subject of its own (11 for 10); AF01HAS.JPG with af01has.jpg beside it was
    read twice (happy 22 for 20)."""
    import shutil

    root = make_kdef(tmp_path)
    kdef = root / "KDEF"
    shutil.copy(kdef / "AF01" / "AF01HAS.JPG", kdef / "AF01" / "af01has.jpeg")
    shutil.copy(kdef / "AF01" / "AF01SAS.JPG", kdef / "AF01" / "BF09SAS.JPG")
    with pytest.raises(DatasetError, match=r"BF09SAS.JPG: a photo of session BF09 in the folder AF01/: move it to "
                                           r"BF09/"):
        open_dataset("kdef", root, folds=4).load("all", size=(48, 48))
    with pytest.warns(UserWarning, match="left out 2 item"):
        ds = open_dataset("kdef", root, folds=4, skip_bad=True).load("all", size=(48, 48))
    assert len(ds) == 2 * 4 * 7 * 3 and len(set(ds.subjects)) == 4
    (kdef / "AF01" / "BF09SAS.JPG").unlink()
    with pytest.raises(DatasetError, match=r"af01has.jpeg: the photo AF01HAS again \(AF01HAS.JPG first\)"):
        open_dataset("kdef", root, folds=4).load("all", size=(48, 48))


def test_fer2013_images_in_a_folder_beside_train_and_test_are_said(tmp_path):
    """A val/ folder of PublicTest faces beside train/ and test/ was left out of every split in silence."""
    import shutil

    folders, _, _ = make_fer2013(tmp_path)
    first = next((folders / "test").rglob("PublicTest_*"))
    (folders / "val" / first.parent.name).mkdir(parents=True)
    shutil.move(str(first), folders / "val" / first.parent.name / first.name)
    with pytest.raises(DatasetError, match=r"1 FER2013 image\(s\) in val/, beside train/ and test/"):
        open_dataset("fer2013", folders).load("PublicTest")
    r = open_dataset("fer2013", folders, skip_bad=True)
    with pytest.warns(UserWarning, match="left out 1 item"):
        r.load("Training")  # (counted once, by the split read first)
    assert len(r.load("PublicTest").skipped) == 0
    # other files beside them (plots, samples of another naming) are no faces of the dataset: left alone
    shutil.move(str(folders / "val"), tmp_path / "moved")
    (folders / "plots").mkdir()
    Image.new("L", (8, 8)).save(folders / "plots" / "confusion.png")
    assert len(open_dataset("fer2013", folders).load("PublicTest")) > 0


def test_rafdb_compound_is_told_by_its_labels_or_its_own_folder_not_one_above(tmp_path):
    """A basic list under a folder named compound/ higher up was refused as compound's."""
    root = make_rafdb(tmp_path / "compound" / "data")
    assert len(open_dataset("rafdb", root).load("test")) == 7


def test_fold_options_for_a_folder_of_splits_are_said_to_do_nothing(tmp_path, capsys):
    """An image folder of train/, val/ and test/ takes --folds and --fold and ignored them, without a word."""
    from ferkit.cli import main

    data = make_imagefolder(tmp_path / "split", with_splits=True, per_class=4)
    assert main(["data", "--dataset", "imagefolder", "--data", str(data), "--folds", "3", "--fold", "1"]) == 0
    err = capsys.readouterr().err
    assert "--folds does nothing here: imagefolder here has its own splits (test, train, val), not folds" in err
    assert "--fold does nothing here" in err
    assert main(["train", "--model", "lite_cnn", "--dataset", "imagefolder", "--data", str(data), "--fold", "1",
                 "--epochs", "1", "--warmup", "0", "--batch-size", "8", "--threads", "2", "--no-progress",
                 "--out", str(tmp_path / "r")]) == 0
    assert "warning: --fold do(es) nothing here: imagefolder here has its own splits" in capsys.readouterr().out
