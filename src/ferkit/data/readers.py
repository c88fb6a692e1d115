"""One reader per public dataset layout (see ``../shared/data/README.md`` for the layouts).

=============  ==============================================================  =================
name           layout                                                          splits
=============  ==============================================================  =================
fer2013        ``fer2013.csv`` (emotion,pixels,Usage) or                        Training,
               ``train|test/<class>/<Usage>_<id>.jpg``                          PublicTest,
                                                                               PrivateTest
ferplus        ``FER2013{Train,Valid,Test}/label.csv`` + PNGs (vote counts)     Train, Valid, Test
ckplus         ``<class>/S<subj>_<seq>_<frame>.png``                            k subject folds
jaffe          ``<subj>.<CODE><n>.<id>.tiff``                                   k subject folds
rafdb          ``basic/EmoLabel/list_patition_label.txt`` +                     train, test
               ``basic/Image/aligned/*_aligned.jpg``
kdef           ``KDEF/<session>/<AF01AFS>.JPG``                                 k subject folds
imagefolder    ``[<split>/]<class>/*.png``                                      folders or folds
=============  ==============================================================  =================
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from .. import labels as L
from ..errors import DatasetError, FerkitError
from ..io import folder_files, is_hidden_name, is_image_file
from .base import Reader, Record, list_images
from .folds import fold_splits, subject_folds

# ---------------------------------------------------------------------------------------
# FER2013
# ---------------------------------------------------------------------------------------
FER2013_USAGES = ("Training", "PublicTest", "PrivateTest")
_STD_ALIASES = {"train": "Training", "val": "PublicTest", "valid": "PublicTest", "test": "PrivateTest"}


class _FER2013(Reader):
    """What both FER2013 forms share: splits (the ``Usage`` values), aliases and classes."""

    name = "fer2013"
    splits = FER2013_USAGES
    aliases = _STD_ALIASES
    train_split, val_split, test_split = "Training", "PublicTest", "PrivateTest"
    classes = L.CANONICAL


class FER2013Folders(_FER2013):
    """FER2013 image-folder release: ``train/<class>/Training_<id>.jpg``,
    ``test/<class>/{PublicTest,PrivateTest}_<id>.jpg``. The split is the file-name prefix.

    ``clean_from``: a FER+ folder. When this copy's Training images are degraded (blurred; see
    :mod:`ferkit.data.restore`), each Training face is replaced by its clean twin among FER+'s
    ``FER2013Train`` PNGs (which hold only FER2013 Training rows), keeping the FER2013 label.
    Faces without an accepted twin are dropped and listed in ``skipped``.
    """

    description = "FER2013 (image folders), 48x48 gray, 7 classes"
    layout = "train|test/<class>/<Usage>_<id>.jpg"

    def __init__(self, root, *, skip_bad: bool = False, clean_from: str | os.PathLike | None = None) -> None:
        super().__init__(root, skip_bad=skip_bad)
        for sub in ("train", "test"):
            if not (self.root / sub).is_dir():
                raise DatasetError(f"{self.root}: expected folders train/ and test/ with one folder per class "
                                   f"(FER2013 image-folder layout); {sub}/ is missing")
        self.clean_from = Path(clean_from).expanduser() if clean_from else None
        if self.clean_from is not None and not (self.clean_from / "FER2013Train").is_dir():
            raise DatasetError(f"{self.clean_from}: --clean-from wants a FER+ folder holding FER2013Train/")
        self.notes: list[str] = []

    def options(self):
        return {**super().options(), "clean_from": str(self.clean_from.resolve()) if self.clean_from else None}

    def records(self, split):
        recs, skipped = self._listed(split)
        if self.clean_from is None or split != "Training":
            return recs, skipped
        return self._restored(recs, skipped)

    def _restored(self, recs: list[Record], skipped: list[tuple[str, str]]):
        """Training records pointing at the clean FER+ twins (see the class docstring)."""
        import hashlib
        import json

        import torch

        from ..io import read_image
        from . import cache as _cache
        from .restore import match_degraded

        clean_dir = self.clean_from / "FER2013Train"  # type: ignore[operator]
        clean_files = [p for p in list_images(clean_dir) if p.suffix.lower() == ".png"]
        if not clean_files:
            raise DatasetError(f"{clean_dir}: no PNG images")
        key = hashlib.sha256((self.fingerprint(recs) + self.fingerprint([Record(str(p), 0) for p in clean_files])
                              + "|match-v1").encode()).hexdigest()[:32]
        mpath = _cache.cache_dir() / "matches" / f"fer2013-clean-{key}.json"
        table = None
        if mpath.exists():
            try:
                table = json.loads(mpath.read_text())
            except (OSError, ValueError):
                table = None
        if table is None:
            plain = FER2013Folders(self.root, skip_bad=self.skip_bad)
            deg = plain.load("Training")
            clean = torch.from_numpy(np.stack([read_image(p, name=str(p)) for p in clean_files])).unsqueeze(1)
            res = match_degraded(deg.images, clean)
            table = {"sigma": res.sigma, "max_rmse": res.max_rmse,
                     "twins": {src: ([str(clean_files[j]), float(r)] if j >= 0 else [None, float(r)])
                               for src, j, r in zip(deg.sources, res.index.tolist(), res.rmse.tolist())}}
            try:
                mpath.parent.mkdir(parents=True, exist_ok=True)
                mpath.write_text(json.dumps(table))
            except OSError:
                pass
        out, dropped = [], 0
        for r in recs:
            twin, rmse = table["twins"].get(r.source, [None, float("nan")])
            if twin is None:
                skipped.append((r.source, f"no clean twin in {clean_dir} (best RMSE {rmse:.1f} > {table['max_rmse']})"))
                dropped += 1
            else:
                out.append(Record(twin, r.label))
        self.notes = [f"fer2013 Training: this copy is blurred (Gaussian sigma {table['sigma']:.1f} px estimated); "
                      f"took the clean twins of {len(out)} of {len(recs)} faces from {clean_dir}, keeping FER2013 "
                      f"labels; the {dropped} without an accepted twin are left out (`ferkit data` with the same "
                      f"--clean-from lists them)"]
        return out, skipped

    def _listed(self, split):
        folder = self.root / ("train" if split == "Training" else "test")
        seen: dict[str, Path] = {}  # a face's name -> its first file
        recs: list[Record] = []
        skipped: list[tuple[str, str]] = []
        # FER2013 faces in a folder beside train/ and test/ (a val/ of PublicTest faces): said, not left out in
        # silence (other files there, plots or samples, are no faces of the dataset: left alone)
        for other in sorted(p for p in self.root.iterdir() if p.is_dir() and not is_hidden_name(p.name)
                            and p.name.lower() not in ("train", "test")):
            n = sum(1 for p in other.rglob("*_*") if p.name.split("_", 1)[0] in FER2013_USAGES and is_image_file(p)
                    and not is_hidden_name(p.name))
            if n:
                self._fail_once(skipped, str(other), f"{n} FER2013 image(s) in {other.name}/, beside train/ and test/: "
                                                     f"FER2013's image-folder form reads those two only (Training_ "
                                                     f"images go in train/, PublicTest_ and PrivateTest_ ones in "
                                                     f"test/)", split)
        for cdir in sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden_name(p.name)):
            try:
                idx = self.classes.index(L.canonical(cdir.name))
            except (FerkitError, ValueError):  # (an expression FER2013 has not, e.g. contempt: index() raised)
                self._fail_once(skipped, str(cdir), f"unknown class folder {cdir.name!r} (expected one of: "
                                                    f"{', '.join(self.classes)})", split)
                continue
            for p in list_images(cdir):
                usage = p.name.split("_", 1)[0]
                if usage not in FER2013_USAGES:
                    self._fail_once(skipped, str(p), "file name does not start with Training_, PublicTest_ or "
                                                     "PrivateTest_", split)
                    continue
                home = "train" if usage == "Training" else "test"
                if home != folder.name:  # in the other top folder: said (it was left out of both in silence)
                    self._fail_once(skipped, str(p), f"a {usage} image in {folder.name}/: move it to {home}/",
                                    split)
                    continue
                if usage == split:
                    # one face filed under two classes (a copy, a relabelling left half done): the same name and the
                    # same bytes (names alone collide: the Kaggle folders hold two pairs of different faces so named)
                    twin = seen.get(p.stem.lower())
                    if twin is not None and _same_bytes(twin, p):
                        self._fail(skipped, str(p), f"the same face ({p.stem}) is in {twin.parent.name}/ too: "
                                                    f"one face, two labels; remove one (--skip-bad reads the first)")
                        continue
                    seen.setdefault(p.stem.lower(), p)
                    recs.append(Record(str(p), idx))
        return recs, skipped


def _missing(path: Path, listed_in: str, names: dict[Path, dict[str, str]]) -> str:
    """Why a listed image is not read: missing, or there under another case (``train_00001_aligned.JPG``
    for ``.jpg``: a case-sensitive file system reads them as two names). ``names``: each folder's
    files by their lowercase name, filled as folders are met (one listing each)."""
    folder = path.parent
    if folder not in names:
        try:
            names[folder] = {p.name.lower(): p.name for p in folder.iterdir()} if folder.is_dir() else {}
        except OSError:
            names[folder] = {}
    twin = names[folder].get(path.name.lower())
    if twin is not None and twin != path.name:
        return f"image listed in {listed_in} is missing: {twin} is there, its case differs (rename it {path.name})"
    return f"image listed in {listed_in} is missing"


def _holds_jpeg(folder: Path) -> bool:
    """Whether ``folder`` holds a .jpg file (the first found ends the look)."""
    try:
        return any(p.suffix.lower() == ".jpg" for p in folder.iterdir())
    except OSError:
        return False


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()
    except OSError:  # (unreadable: its decoding reports it)
        return False


class FER2013CSV(_FER2013):
    """FER2013 as the original ``fer2013.csv``: ``emotion,pixels,Usage`` rows, 48x48 pixels each."""

    takes_file = True

    description = "FER2013 (fer2013.csv), 48x48 gray, 7 classes"
    layout = "fer2013.csv with columns emotion,pixels,Usage"

    def __init__(self, root, *, skip_bad: bool = False) -> None:
        super().__init__(root, skip_bad=skip_bad)
        self.csv = self.root if self.root.is_file() else self.root / "fer2013.csv"
        if not self.csv.is_file():
            raise DatasetError(f"{self.csv}: FER2013 label file not found")

    def fingerprint(self, records):
        st = self.csv.stat()
        return f"{self.csv.resolve()}|{st.st_size}|{st.st_mtime_ns}|{len(records)}"

    def records(self, split):
        recs: list[Record] = []
        skipped: list[tuple[str, str]] = []
        with open(self.csv, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: a BOM too, as Excel saves
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DatasetError(f"{self.csv}: empty file")
            cols = [h.strip().lower() for h in header]
            try:
                ie, ip, iu = cols.index("emotion"), cols.index("pixels"), cols.index("usage")
            except ValueError:
                raise DatasetError(f"{self.csv}: header must have columns emotion,pixels,Usage; got {header}") from None
            for line, row in enumerate(reader, start=2):
                if not row or not any(c.strip() for c in row):  # a blank line (one at the end, as editors save):
                    continue  # no row, as the FER+ and RAF-DB readers take it
                src = f"{self.csv}:line {line}"
                # a row in no split (too short to say, or an unknown Usage) stops any split's reading, but with
                # --skip-bad it is counted once (by the first split read), not as left out of every split
                if len(row) <= max(ie, ip, iu):
                    self._fail_once(skipped, src, f"expected 3 columns, got {len(row)}", split)
                    continue
                if row[iu].strip() != split:
                    if row[iu].strip() not in FER2013_USAGES:
                        self._fail_once(skipped, src, f"unknown Usage {row[iu]!r}", split)
                    continue
                try:
                    label = int(row[ie])
                    if not 0 <= label < 7:
                        raise ValueError
                except ValueError:
                    self._fail(skipped, src, f"emotion must be an integer 0..6, got {row[ie]!r}")
                    continue
                try:
                    px = np.array(row[ip].split(), dtype=np.int64)
                except ValueError:
                    self._fail(skipped, src, "pixels must be space-separated integers 0..255")
                    continue
                if px.size != 48 * 48:
                    self._fail(skipped, src, f"expected 2304 pixels (48x48), got {px.size}")
                    continue
                if px.min() < 0 or px.max() > 255:
                    self._fail(skipped, src, "pixel values must be in 0..255")
                    continue
                recs.append(Record(src, label, array=px.astype(np.uint8).reshape(48, 48)))
        return recs, skipped


def open_fer2013(root, **kw) -> Reader:
    """FER2013 from either public form: a ``fer2013.csv`` (or a folder holding one) or image folders."""
    p = Path(root).expanduser()
    if p.is_file() or (p / "fer2013.csv").is_file():
        if kw.pop("clean_from", None):
            raise FerkitError("--clean-from applies to the FER2013 image-folder form, not to fer2013.csv")
        return FER2013CSV(p, **kw)
    if (p / "train").is_dir() or (p / "test").is_dir():
        return FER2013Folders(p, **kw)
    if not p.exists():
        raise DatasetError(f"fer2013: data path {p} does not exist")
    raise DatasetError(f"{p}: not a FER2013 folder: expected fer2013.csv or train/ and test/ class folders")


# ---------------------------------------------------------------------------------------
# FER+
# ---------------------------------------------------------------------------------------
# canonical class order (8) and where each sits in label.csv's vote columns
_FERPLUS_CLASSES = L.CANONICAL_8
_FERPLUS_COL = [[L.canonical(c) for c in L.FERPLUS_COLUMNS[: L.FERPLUS_EMOTIONS]].index(c) for c in _FERPLUS_CLASSES]


def ferplus_label(votes: np.ndarray, vote: str = "majority") -> int | None:
    """The FER+ label from the 10 vote counts (``label.csv`` column order), or None to drop.

    ``majority``: the most-voted of the 10 columns (ties go to the earlier column); dropped when
    that is ``unknown`` or ``NF``. ``strict``: Microsoft's FERPlus "majority" mode: single votes
    are removed as outliers and the top emotion must hold more than half of the rest.
    Returns the index in the label.csv emotion columns (0=neutral ... 7=contempt).
    """
    v = np.asarray(votes, dtype=np.float64)
    if vote == "strict":
        v = np.where(v <= 1.0, 0.0, v)
        if v.sum() <= 0 or v.max() <= 0.5 * v.sum():
            return None
    elif vote != "majority":
        raise FerkitError(f"unknown FER+ vote rule {vote!r}; use 'majority' or 'strict'")
    i = int(np.argmax(v))
    return i if i < L.FERPLUS_EMOTIONS else None


class FERPlus(Reader):
    """FER+ relabelling of FER2013: ``FER2013{Train,Valid,Test}/label.csv`` vote counts + PNGs.

    Hard labels by vote (see :func:`ferplus_label`), 8 classes; ``Record.soft`` holds the vote
    distribution over the 8 emotions (for soft-target training)."""

    name = "ferplus"
    description = "FER+ (FER2013 relabelled by 10 annotators), 48x48 gray, 8 classes"
    layout = "FER2013{Train,Valid,Test}/label.csv + fer*.png"
    splits = ("Train", "Valid", "Test")
    aliases = {"train": "Train", "val": "Valid", "valid": "Valid", "test": "Test"}
    train_split, val_split, test_split = "Train", "Valid", "Test"
    classes = _FERPLUS_CLASSES

    def __init__(self, root, *, skip_bad: bool = False, vote: str = "majority") -> None:
        super().__init__(root, skip_bad=skip_bad)
        if vote not in ("majority", "strict"):
            raise FerkitError(f"unknown FER+ vote rule {vote!r}; use 'majority' or 'strict'")
        self.vote = vote
        if not (self.root / "FER2013Train").is_dir() and (self.root / "data" / "FER2013Train").is_dir():
            self.root = self.root / "data"  # Microsoft's FERPlus repository: its PNG folders are under data/

    def options(self):
        return {**super().options(), "vote": self.vote}

    def records(self, split):
        folder = self.root / f"FER2013{split}"
        label_file = folder / "label.csv"
        if not label_file.is_file():
            raise DatasetError(f"{label_file}: FER+ label file not found (expected FER2013Train/, FER2013Valid/, "
                               f"FER2013Test/ each with label.csv and the PNGs, as the FERPlus repository's "
                               f"generate_training_data.py writes them from fer2013new.csv and fer2013.csv)")
        recs: list[Record] = []
        skipped: list[tuple[str, str]] = []
        seen_names: dict[Path, dict[str, str]] = {}  # (for _missing's case hint)
        present = {p.name for p in folder.iterdir()}
        listed: dict[str, int] = {}  # a file's name -> the line that first lists it
        with open(label_file, newline="", encoding="utf-8-sig") as f:  # (a BOM too, as Excel saves)
            for line, row in enumerate(csv.reader(f), start=1):
                if not row or (line == 1 and not row[0].lower().endswith(".png") and "usage" in ",".join(row).lower()):
                    continue
                src = f"{label_file}:line {line}"
                if len(row) != 12:
                    self._fail(skipped, src, f"expected 12 columns (file, box, 10 vote counts), got {len(row)}")
                    continue
                try:
                    votes = np.array([float(x) for x in row[2:]])
                except ValueError:
                    self._fail(skipped, src, "vote counts must be numbers")
                    continue
                if not (np.isfinite(votes).all() and (votes >= 0).all() and votes.sum() > 0):
                    self._fail(skipped, src, "vote counts must be finite, not negative, and not all 0")
                    continue
                if row[0] not in present:
                    self._fail(skipped, str(folder / row[0]), _missing(folder / row[0], "label.csv", seen_names))
                    continue
                # one face listed twice (a pasted row, or votes counted again): read once, by its first valid
                # row (a row refused above does not hide a later good one)
                first = listed.setdefault(row[0], line)
                if first != line:
                    self._fail(skipped, src, f"{row[0]} is listed again (first on line {first}): remove one row "
                                             f"(--skip-bad reads the first)")
                    continue
                col = ferplus_label(votes, self.vote)
                if col is None:
                    continue  # majority unknown / not a face: dropped by protocol, not an error
                emo = votes[: L.FERPLUS_EMOTIONS]
                soft = tuple(float(emo[j] / emo.sum()) for j in _FERPLUS_COL)
                recs.append(Record(str(folder / row[0]), _FERPLUS_COL.index(col), soft=soft))
        return recs, skipped


# ---------------------------------------------------------------------------------------
# Subject-folded datasets (CK+, JAFFE, KDEF, flat image folders)
# ---------------------------------------------------------------------------------------
class FoldedReader(Reader):
    """A dataset with no official split: ``all``, or fold ``fold`` of ``folds`` subject-independent
    folds as ``test``, the next fold as ``val`` (model selection) and the rest as ``train``."""

    splits = ("all", "train", "val", "test", "trainval")
    aliases = {}
    train_split, val_split, test_split = "train", "val", "test"

    def __init__(self, root, *, skip_bad: bool = False, folds: int = 10, fold: int = 0, fold_seed: int = 0) -> None:
        super().__init__(root, skip_bad=skip_bad)
        self.folds, self.fold, self.fold_seed = folds, fold, fold_seed
        if not isinstance(folds, int) or folds < 3:
            raise FerkitError(f"--folds must be at least 3 (a test, a selection and a training fold), got {folds}")
        fold_splits(folds, fold)  # validates

    #: whether this dataset is read as subject folds (ferkit data lists them; crossval and probe use them)
    has_folds = True

    def options(self):
        return {**super().options(), "folds": self.folds, "fold": self.fold, "fold_seed": self.fold_seed}

    def all_records(self) -> tuple[list[Record], list[tuple[str, str]]]:
        raise NotImplementedError

    def fold_indices(self, records: list[Record]) -> list[np.ndarray]:
        return subject_folds([r.subject for r in records], self.folds, self.fold_seed, [r.label for r in records])

    def none_found(self, skipped: list[tuple[str, str]]) -> FerkitError:
        """The error for a folder that gave no image at all (not "no subjects for the folds")."""
        first = f"; {len(skipped)} file(s) skipped, the first {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        return FerkitError(f"{self.root}: no {self.name} image found{first} (is --data the {self.name} folder?)")

    def records(self, split):
        recs, skipped = self.all_records()
        if split == "all":
            return recs, skipped
        if not recs:
            return recs, skipped
        folds = self.fold_indices(recs)
        chosen = sorted(int(i) for f in fold_splits(self.folds, self.fold)[split] for i in folds[f])
        return [recs[i] for i in chosen], skipped

    def _class_folders(self, root: Path, mapping: dict[str, str] | None, skipped) -> list[tuple[Path, int]]:
        """``(folder, class index)`` for each class folder of ``root``; unknown names are errors, as
        are images beside the class folders (their class is unknown: they were left out unsaid)."""
        out = []
        dirs = sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden_name(p.name))

        def class_of(cdir: Path) -> int | None:
            try:
                name = mapping[cdir.name.lower()] if mapping is not None else L.canonical(cdir.name)
                return self.classes.index(name)
            except (KeyError, ValueError, FerkitError):
                return None

        found_idx = {d: class_of(d) for d in dirs}
        # the names the reader takes (for a folder of one's own, every expression's, not only the ones found
        # beside it: 'angry_faces' was told that angry is no class)
        names = mapping or type(self).classes
        if root == self.root and all(i is None for i in found_idx.values()):
            # no class folder at all in the dataset's folder: another dataset's (FER2013's train/test,
            # JAFFE's photos), said first, not "pass --skip-bad" for its first file (which then found no
            # image). (A split's subfolder of a folder of one's own may be empty: a split with no image)
            files = [p.name for p in sorted(root.iterdir()) if p.is_file() and not is_hidden_name(p.name)]
            found = [d.name + "/" for d in dirs[:4]] + files[:max(0, 4 - len(dirs))]
            raise DatasetError(f"{root}: no {self.name} class folder in it (it holds {', '.join(found) or 'nothing'}"
                               f"{', ...' if len(dirs) + len(files) > len(found) else ''}; expected "
                               f"{', '.join(names)}): is --data the {self.name} folder? "
                               f"({self.name}'s layout: {self.layout})")
        for p in sorted(p for p in root.iterdir() if p.is_file() and not is_hidden_name(p.name)
                        and is_image_file(p)):
            self._fail(skipped, str(p), f"an image beside the class folders of {root}: its class is unknown (put it "
                                        f"in its class's folder)")
        for cdir in dirs:
            idx = found_idx[cdir]
            if idx is None:
                self._fail(skipped, str(cdir), f"unknown class folder {cdir.name!r} (expected one of: "
                                               f"{', '.join(names)}"
                                               + ("; in any case, or a synonym, e.g. joy)" if mapping is None else ")"))
            else:
                out.append((cdir, idx))
        return out


class CKPlus(FoldedReader):
    """CK+48 crops: ``<class>/S<subject>_<sequence>_<frame>.png``, subject = ``S###``."""

    name = "ckplus"
    description = "CK+ (extended Cohn-Kanade) 48x48 crops, 7 classes incl. contempt, no neutral"
    layout = "<class>/S<subject>_<sequence>_<frame>.png"
    classes = L.ordered(L.CKPLUS_FOLDERS.values())
    _name_re = re.compile(r"^(S\d+)_\d+_\d+$")

    def all_records(self):
        recs, skipped = [], []
        seen: dict[str, Path] = {}  # a frame's name (unique in CK+) -> its first file
        for cdir, idx in self._class_folders(self.root, L.CKPLUS_FOLDERS, skipped):
            for p in list_images(cdir):
                m = self._name_re.match(p.stem)
                if not m:
                    self._fail(skipped, str(p), "file name is not S<subject>_<sequence>_<frame>")
                    continue
                first = seen.setdefault(p.stem, p)
                if first is not p:  # one frame filed twice (under two classes, or as .png and .jpg)
                    self._fail(skipped, str(p), f"the same frame ({p.stem}) is {first.relative_to(self.root)} too: "
                                                f"remove one (--skip-bad reads the first)")
                    continue
                recs.append(Record(str(p), idx, subject=m.group(1)))
        if not recs and not skipped:
            raise DatasetError(f"{self.root}: no CK+ images found (expected <class>/S###_###_########.png)")
        return recs, skipped


class JAFFE(FoldedReader):
    """JAFFE: ``<subject>.<CODE><n>.<id>.tiff`` full frames (palette TIFFs converted to gray)."""

    name = "jaffe"
    full_photos = True
    description = "JAFFE, 256x256 gray full frames, 10 subjects, 7 classes (needs face cropping)"
    layout = "<subject>.<CODE><n>.<id>.tiff"
    classes = L.CANONICAL
    _name_re = re.compile(r"^([A-Z]{2})\.([A-Z]{2})\d*\.\d+$")

    def all_records(self):
        recs, skipped = [], []
        files = list_images(self.root)
        if not files:
            raise DatasetError(f"{self.root}: no JAFFE images found (expected <subject>.<CODE><n>.<id>.tiff)")
        seen: dict[str, Path] = {}  # photo number -> its first file
        for p in files:
            m = self._name_re.match(p.stem.upper())  # (any case, as KDEF's: ka.an1.1.tiff is KA.AN1.1)
            if not m or m.group(2) not in L.JAFFE_CODES:
                self._fail(skipped, str(p), "file name is not <subject>.<AN|DI|FE|HA|NE|SA|SU><n>.<id>.tiff")
                continue
            photo = p.stem.upper().rsplit(".", 1)[-1]  # (the last number: each of JAFFE's 213 photos has its own)
            first = seen.setdefault(photo, p)
            if first is not p:  # a copy (.tif beside .tiff), or one photo under two expression codes
                self._fail(skipped, str(p), f"photo number {photo} is {first.name} too: remove one (--skip-bad reads "
                                            f"the first)")
                continue
            recs.append(Record(str(p), self.classes.index(L.JAFFE_CODES[m.group(2)]), subject=m.group(1)))
        return recs, skipped


class KDEF(FoldedReader):
    """KDEF: ``KDEF/<session>/<AF01AFS>.JPG``; subject = gender+id (``F01``), expression =
    characters 5-6, angle = the rest (``FL HL S HR FR``). ``angles`` keeps only some views."""

    name = "kdef"
    full_photos = True
    description = "KDEF, 70 subjects x 7 expressions x 5 angles x 2 sessions, colour"
    layout = "KDEF/<session>/<AF01AFS>.JPG"
    classes = L.CANONICAL
    _name_re = re.compile(r"^([AB])([FM]\d\d)([A-Z]{2})(FL|HL|S|HR|FR)$", re.IGNORECASE)

    VIEWS = ("FL", "HL", "S", "HR", "FR")  #: full left, half left, straight, half right, full right

    def __init__(self, root, *, angles: tuple[str, ...] | None = None, **kw) -> None:
        super().__init__(root, **kw)
        self.angles = tuple(a.strip().upper() for a in angles if a.strip()) if angles else None
        bad = [a for a in self.angles or () if a not in self.VIEWS]
        if bad:
            raise DatasetError(f"kdef: unknown view(s) {', '.join(bad)} in --angles; KDEF's views: "
                               f"{', '.join(self.VIEWS)}")

    def options(self):
        return {**super().options(), "angles": self.angles}

    def all_records(self):
        base = self.root / "KDEF" if (self.root / "KDEF").is_dir() else self.root
        recs, skipped = [], []
        for p in sorted(p for p in base.iterdir() if p.is_file() and not is_hidden_name(p.name) and is_image_file(p)):
            self._fail(skipped, str(p), "an image beside the session folders (KDEF/<session>/<AF01AFS>.JPG): not read "
                                        "(put it in its session's folder)")
        seen: dict[str, Path] = {}  # a photo's code (its name in capitals) -> its first file
        for sdir in sorted(p for p in base.iterdir() if p.is_dir() and not is_hidden_name(p.name)):
            for p in list_images(sdir):
                m = self._name_re.match(p.stem)
                if not m or m.group(3).upper() not in L.KDEF_CODES:
                    self._fail(skipped, str(p), "file name is not <A|B><F|M><id><AF|AN|DI|HA|NE|SA|SU><angle>")
                    continue
                own = (m.group(1) + m.group(2)).upper()
                if re.fullmatch(r"[AB][FM]\d\d", sdir.name, re.IGNORECASE) and sdir.name.upper() != own:
                    # (it made a subject of its own, or joined another person's images)
                    self._fail(skipped, str(p), f"a photo of session {own} in the folder {sdir.name}/: move it to "
                                                f"{own}/")
                    continue
                code = p.stem.upper()
                if code in seen:  # AF01HAS.JPG and af01has.jpg (or .jpeg): one photo, read once
                    self._fail(skipped, str(p), f"the photo {code} again ({seen[code].name} first): remove one "
                                                f"(--skip-bad reads the first)")
                    continue
                seen[code] = p
                if self.angles and m.group(4).upper() not in self.angles:
                    continue
                recs.append(Record(str(p), self.classes.index(L.KDEF_CODES[m.group(3).upper()]),
                                   subject=m.group(2).upper()))
        if not recs and not skipped:
            raise DatasetError(f"{base}: no KDEF images found (expected KDEF/<session>/<AF01AFS>.JPG)"
                               if not self.angles else f"{base}: no KDEF images of the views {','.join(self.angles)}")
        return recs, skipped


class RAFDB(Reader):
    """RAF-DB basic: ``basic/EmoLabel/list_patition_label.txt`` (``train_00001.jpg 5``) and
    ``basic/Image/aligned/train_00001_aligned.jpg``. Splits by the file-name prefix."""

    name = "rafdb"
    description = "RAF-DB basic (aligned 100x100 colour), 7 classes"
    layout = "basic/EmoLabel/list_patition_label.txt + basic/Image/aligned/*_aligned.jpg"
    splits = ("train", "test")
    aliases = {}
    train_split, val_split, test_split = "train", None, "test"
    classes = L.CANONICAL

    def __init__(self, root, *, skip_bad: bool = False) -> None:
        super().__init__(root, skip_bad=skip_bad)
        self.base = self.root / "basic" if (self.root / "basic").is_dir() else self.root
        self.label_file = self.base / "EmoLabel" / "list_patition_label.txt"
        if not self.label_file.is_file():
            # (the official name is misspelt, "patition": a file renamed to the right spelling is named)
            fixed = self.label_file.with_name("list_partition_label.txt")
            raise DatasetError(f"{self.label_file}: RAF-DB label file not found" + (
                f" ({fixed.name} is there: RAF-DB's own name is list_patition_label.txt, misspelt; rename it so)"
                if fixed.is_file() else ""))

    def records(self, split):
        recs, skipped = [], []
        seen_names: dict[Path, dict[str, str]] = {}  # (for _missing's case hint)
        img_dir = self.base / "Image" / "aligned"
        try:  # (a byte-order mark, as some editors save, is not part of the first name)
            lines = self.label_file.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DatasetError(f"{self.label_file}: cannot read the RAF-DB label file ({e})") from None
        if not any(t.strip() for t in lines):
            raise DatasetError(f"{self.label_file}: the RAF-DB label file lists no images")
        compound = [n for n, t in enumerate(lines, start=1) if len(t.split()) == 2 and t.split()[1] in
                    ("8", "9", "10", "11")]
        ids = {lines[n - 1].split()[1] for n in compound}
        rows = sum(1 for t in lines if t.strip())
        # (one stray 9 is a bad row of a basic list, --skip-bad's to skip; several of compound's ids, or many rows
        # of them, are its list)
        named = {self.root.name.lower(), self.base.name.lower()}  # (the dataset's own folders, not those above it)
        if len(ids) >= 2 or len(compound) >= max(2, rows // 10) or "compound" in named:
            # (RAF-DB's compound list: 11 classes, its 1-7 not basic's: read as basic, even with --skip-bad
            # skipping 8-11, its "happily surprised" would be surprise, silently)
            where = f" (line {compound[0]} has label {lines[compound[0] - 1].split()[1]})" if compound else ""
            raise DatasetError(f"{self.label_file}: RAF-DB compound's list{where}, whose 11 classes are not basic's 7: "
                               f"ferkit reads RAF-DB basic; give its basic/ folder")
        listed: dict[str, int] = {}  # an image's file name -> the line that first lists it
        for line, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            src = f"{self.label_file}:line {line}"
            parts = text.split()
            prefix = parts[0].lower().split("_", 1)[0]
            if prefix not in self.splits:
                # in no split: said once, with the training split (the one a run reads first)
                if split == self.train_split:
                    self._fail(skipped, src, f"{parts[0]!r} is in no split: RAF-DB names start with train_ or "
                                             f"test_")
                continue
            if prefix != split:  # another split's row (its faults are that split's)
                continue
            try:
                fname, lab = parts[0], int(parts[1])
                name = L.RAFDB_IDS[lab]
                if len(parts) != 2:
                    raise ValueError
            except (IndexError, ValueError, KeyError):
                self._fail(skipped, src, f"expected '<file> <label 1..7>', got {text!r}")
                continue
            stem = Path(fname).stem  # (a list naming the aligned file itself: not _aligned_aligned)
            path = img_dir / ((stem if stem.endswith("_aligned") else stem + "_aligned") + ".jpg")
            first = listed.setdefault(path.name, line)
            if first != line:  # one image listed twice (with one label or two): read once, by its first row
                self._fail(skipped, src, f"{fname} is listed again (first on line {first}): remove one row (--skip-bad "
                                         f"reads the first)")
                continue
            if not path.is_file():
                if not recs and not _holds_jpeg(img_dir):  # none there at all: the folder is what is wrong
                    sub = sorted(d.name for d in img_dir.iterdir() if d.is_dir()) if img_dir.is_dir() else []
                    raise DatasetError(f"{img_dir}: no aligned image in it, for the {split} images "
                                       f"list_patition_label.txt lists" + (
                                           f" (it holds the folder {sub[0]}/: unpacked one level too deep? move its "
                                           f"files up into {img_dir})" if sub else
                                           " (RAF-DB's aligned faces go in basic/Image/aligned/, as train_00001_aligned"
                                           ".jpg)"))
                self._fail(skipped, str(path), _missing(path, "list_patition_label.txt", seen_names))
                continue
            recs.append(Record(str(path), self.classes.index(name)))
        return recs, skipped


class ImageFolder(FoldedReader):
    """Any folder of expression images: ``<split>/<class>/*`` or ``<class>/*``. Class folders
    are expression names (``happy``, ``happiness``, ``sadness``...). With split folders they
    are the splits (``train``/``val``/``test``); otherwise images are split into subject-less
    folds (each image its own subject)."""

    name = "imagefolder"
    description = "generic image folders named by expression"
    layout = "[<split>/]<class>/*.jpg|png"
    classes = L.CANONICAL_8

    def __init__(self, root, **kw) -> None:
        super().__init__(root, **kw)
        subs = [p for p in self.root.iterdir() if p.is_dir() and not is_hidden_name(p.name)]
        if not subs:
            raise DatasetError(f"{self.root}: no class folders found")
        # class folders when any sub-folder is named by an expression (the others are reported as
        # unknown classes); split folders (train/val/test or any names) when none is
        self._is_class = any(self._known(p.name) for p in subs)
        # the classes are the expressions that have a folder (in any split), in canonical order: a
        # folder of happy/ and sad/ trains a 2-class model, not one with 6 classes never seen
        dirs = subs if self._is_class else [c for p in subs for c in p.iterdir() if c.is_dir()]
        found = [L.canonical(c.name) for c in dirs if not is_hidden_name(c.name) and self._known(c.name)]
        if found:
            self.classes = L.ordered(found)
        elif not self._is_class:  # neither class folders nor split folders of them: say so plainly
            names = sorted(p.name for p in subs)
            raise DatasetError(f"{self.root}: no expression class folders: {', '.join(names[:5])}"
                               f"{' ...' if len(names) > 5 else ''} {'is' if len(names) == 1 else 'are'} no "
                               f"expression name ({', '.join(L.CANONICAL_8)}; 'happiness', 'anger' and the like "
                               f"too), nor split folders holding such folders: lay it out as "
                               f"{self.root.name}/happy/*.jpg or {self.root.name}/train/happy/*.jpg")
        if not self._is_class:
            self.splits = tuple(sorted(p.name for p in subs))
            self.aliases = {a: b for a, b in (("val", "valid"), ("valid", "val"), ("validation", "val"))
                            if b in self.splits and a not in self.splits}
            # the usual names, in any case (Train/, Testing/, Valid/...)
            by_lower = {sp.lower(): sp for sp in self.splits}

            def pick(*names: str) -> str | None:
                return next((by_lower[n] for n in names if n in by_lower), None)

            self.train_split = pick("train", "training")
            self.val_split = pick("val", "valid", "validation", "dev")
            self.test_split = pick("test", "testing")

    @property
    def has_folds(self) -> bool:
        """Only the flat ``<class>/*`` layout is split into folds; ``<split>/<class>/*`` has its splits."""
        return self._is_class

    @staticmethod
    def _known(name: str) -> bool:
        try:
            L.canonical(name)
            return True
        except FerkitError:
            return False

    def all_records(self):
        recs, skipped = self._folder_records(self.root)
        if not recs:
            raise DatasetError(f"{self.root}: no images in its class folders")
        return recs, skipped

    def _folder_records(self, root: Path, per_image_subjects: bool = True):
        """Images of each class folder of ``root``, sub-folders included (``happy/session1/*.jpg``);
        hidden files and folders are left out. ``per_image_subjects``: each image its own subject
        (for the flat layout's folds); else none (the split layout: no persons are known)."""
        recs, skipped = [], []
        for cdir, idx in self._class_folders(root, None, skipped):
            bad: list = []  # a broken link, a pipe, a subfolder that cannot be listed: reported, not dropped
            images, others = folder_files(cdir, bad)
            recs += [Record(str(p), idx, subject=str(p) if per_image_subjects else None) for p in images]
            for path, why in [*others, *((f[0], f[1]) for f in bad)]:
                self._fail(skipped, path, why)
        return recs, skipped

    def records(self, split):
        if self._is_class:
            return super().records(split)
        return self._folder_records(self.root / split, per_image_subjects=False)


READERS: dict[str, type[Reader]] = {
    "fer2013": FER2013Folders, "ferplus": FERPlus, "ckplus": CKPlus, "jaffe": JAFFE,
    "rafdb": RAFDB, "kdef": KDEF, "imagefolder": ImageFolder,
}


#: names users write for a dataset, normalised (lower case, no - or _, + as "plus"), beside the keys
SHORT_NAMES = {"fer": "fer2013", "ck": "ckplus", "ckplus48": "ckplus", "raf": "rafdb", "folder": "imagefolder"}


def dataset_key(name: str) -> str:
    """The key of :data:`READERS` for a dataset name as written (``"CK+"``, ``"ck"``, ``"ckplus48"``
    -> ``"ckplus"``); a name that is none of them comes back normalised (``open_dataset`` refuses it)."""
    key = str(name).lower().replace("-", "").replace("_", "").replace("+", "plus")
    return SHORT_NAMES.get(key, key)


def open_dataset(name: str, root: str | os.PathLike, **options) -> Reader:
    """Open dataset ``name`` at ``root``. Options: ``skip_bad``; ``vote`` (ferplus);
    ``folds``, ``fold``, ``fold_seed`` (ckplus, jaffe, kdef, imagefolder); ``angles`` (kdef).
    ``clean_from`` (fer2013 image folders: FER+ folder with clean twins of degraded Training
    images). Options a reader does not take are ignored when None."""
    key = dataset_key(name)
    if key not in READERS:
        raise FerkitError(f"unknown dataset {name!r}; choose from: {', '.join(READERS)}")
    import inspect

    cls = READERS[key]
    accepted: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            accepted |= set(inspect.signature(klass.__init__).parameters)
    opts = {k: v for k, v in options.items() if v is not None}
    unknown = set(opts) - accepted
    if unknown:
        raise FerkitError(f"dataset {key} does not take option(s): {', '.join(sorted(unknown))}")
    if key == "fer2013":
        return open_fer2013(root, **opts)
    return cls(root, **opts)
