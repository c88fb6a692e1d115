"""What every dataset reader shares: records, the in-memory dataset, decoding with caching.

A reader lists :class:`Record` s for a split (cheap: file names and labels) and
:meth:`Reader.load` decodes them once into a :class:`FaceDataset` of uint8 tensors, cached on
disk (see :mod:`ferkit.data.cache`) so that later runs start in a fraction of a second.

Datasets of full photos (JAFFE, KDEF) can be loaded through a face detector: ``load(...,
crop=fn, crop_key="mtcnn:min20")`` decodes each image as RGB and keeps ``fn(rgb)``'s aligned
face instead of the whole picture (see :func:`ferkit.engine.evaluate.face_cropper`). Images
where no face is found keep the whole picture, resized, and are listed in ``FaceDataset.no_face``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import DatasetError, FerkitError, FerkitWarning
from ..io import read_image, resize
from . import cache as _cache

#: ``crop(rgb)`` -> ``(face, found)``: ``rgb`` is a ``H x W x 3`` uint8 image; ``face`` the aligned
#: face, uint8 ``h x w`` or ``h x w x 3`` at the size being loaded (ignored when ``found`` is False)
CropFn = Callable[[np.ndarray], "tuple[np.ndarray | None, bool]"]


@dataclass(frozen=True)
class Record:
    """One labelled image of a dataset split, before decoding."""

    source: str  #: file path, or ``file.csv:line N`` for images stored inside a CSV
    label: int  #: index into the reader's ``classes``
    subject: str | None = None  #: person id where the dataset has one (CK+, JAFFE, KDEF)
    soft: tuple[float, ...] | None = None  #: vote distribution over ``classes`` (FER+)
    array: np.ndarray | None = field(default=None, compare=False, repr=False)  #: pre-decoded pixels


@dataclass
class FaceDataset:
    """A decoded dataset split held in memory: ``images`` is uint8 ``[N, C, H, W]``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    sources: list[str]
    subjects: list[str | None]
    soft: torch.Tensor | None = None
    name: str = ""
    split: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: sources in which the face detector found no face (loaded with ``crop``): the whole image was used
    no_face: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor, split: str | None = None) -> FaceDataset:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        il = idx.tolist()
        nf = set(self.no_face)
        return FaceDataset(
            images=self.images[idx],
            labels=self.labels[idx],
            classes=self.classes,
            sources=[self.sources[i] for i in il],
            subjects=[self.subjects[i] for i in il],
            soft=None if self.soft is None else self.soft[idx],
            name=self.name,
            split=split or self.split,
            skipped=list(self.skipped),
            no_face=[self.sources[i] for i in il if self.sources[i] in nf],
        )

    def class_counts(self) -> dict[str, int]:
        counts = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, counts))

    @property
    def image_size(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]



def _say_left_out(ds: FaceDataset) -> None:
    """The warnings of a loaded split: items left out (unreadable, or not listed right) and images
    in which no face was found, each with an example; the lists are ``ds.skipped`` and
    ``ds.no_face``, and ``ferkit data --check`` prints the left-out ones."""
    if ds.skipped:
        warnings.warn(f"{ds.name} {ds.split}: left out {len(ds.skipped)} item(s), e.g. {ds.skipped[0][0]}: "
                      f"{ds.skipped[0][1]}" + (" (`ferkit data ... --check` lists them all)" if len(ds.skipped) > 1
                                               else ""), FerkitWarning, stacklevel=4)
    if ds.no_face:
        warnings.warn(f"{ds.name} {ds.split}: no face found in {len(ds.no_face)} of {len(ds)} image(s), the whole "
                      f"image is used for those, e.g. {ds.no_face[0]}", FerkitWarning, stacklevel=4)

class Reader:
    """Base class of the dataset readers. Subclasses set the class attributes and implement
    :meth:`records`; :meth:`load` does decoding, resizing, skipping and caching for all."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    #: split names; ``aliases`` maps train/val/test (and others) onto them
    splits: tuple[str, ...] = ()
    aliases: dict[str, str] = {}
    train_split: str | None = None
    val_split: str | None = None  #: None: the trainer holds out part of ``train_split``
    test_split: str | None = None
    classes: tuple[str, ...] = ()
    takes_file = False  #: True when ``root`` may be a file (fer2013.csv)
    #: images are whole photos (head and shoulders, not face crops): train / evaluate with a face detector
    full_photos: ClassVar[bool] = False

    def __init__(self, root: str | os.PathLike, *, skip_bad: bool = False) -> None:
        self.root = Path(root).expanduser()
        self.skip_bad = skip_bad
        self._reported: dict[str, str] = {}  # items met by several splits -> the split that counts them
        if not self.root.exists():
            raise DatasetError(f"{self.name}: data path {self.root} does not exist")
        if self.root.is_file() and self.root.suffix.lower() in (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z",
                                                                 ".rar"):
            raise DatasetError(f"{self.name}: data path {self.root} is an archive: unpack it and give its folder")
        if not self.root.is_dir() and not self.takes_file:
            raise DatasetError(f"{self.name}: data path {self.root} is a file, not the dataset's folder")

    # -- to implement -------------------------------------------------------------------
    def records(self, split: str) -> tuple[list[Record], list[tuple[str, str]]]:
        """Records of ``split`` and the (source, reason) pairs skipped while listing."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------
    def resolve_split(self, split: str) -> str:
        s = self.aliases.get(split, split)
        if s not in self.splits and isinstance(split, str):
            # a folder's own split names in another case or a longer form (Train/, Validation/, Testing/):
            # 'train', 'val', 'test' find them, as the default splits do
            forms = {"train": ("train", "training"), "val": ("val", "valid", "validation", "dev"),
                     "test": ("test", "testing")}
            key = split.lower()
            group = next((g for g in forms.values() if key in g), (key,))
            found = [n for n in self.splits if n.lower() in group]
            if len(found) == 1:
                return found[0]
        if s not in self.splits:
            names = list(self.splits) + [f"{a} (= {b})" for a, b in self.aliases.items()]
            raise FerkitError(f"{self.name}: unknown split {split!r}; choose from: {', '.join(names)}")
        return s

    def options(self) -> dict:
        """Reader options that change which records a split holds (part of the cache key)."""
        return {"skip_bad": self.skip_bad}

    def _fail(self, skipped: list[tuple[str, str]], source: str, reason: str) -> None:
        """Report one bad item: raise (naming it), or record it when ``skip_bad`` is set."""
        if not self.skip_bad:
            raise DatasetError(f"{source}: {reason} (pass --skip-bad to skip and count such files)")
        skipped.append((source, reason))

    def _fail_once(self, skipped: list[tuple[str, str]], source: str, reason: str, split: str) -> None:
        """As :meth:`_fail` for an item met by several splits' reading (a file of test/, a row in no
        split): it stops each one, but with --skip-bad it is counted by one split only, whichever this
        reader reads first (not as left out of every split, nor of none when one split is read)."""
        first = self._reported.setdefault(source, split)
        if first == split or not self.skip_bad:
            self._fail(skipped, source, reason)

    def fingerprint(self, records: list[Record]) -> str:
        """A hash of what the records point at: paths, sizes and modification times."""
        h = hashlib.sha256()
        for r in records:
            # (surrogateescape: a file name that is not UTF-8, as os.listdir gives it, hashes as its bytes)
            h.update(f"{r.source}|{r.label}|{r.subject}|{r.soft}".encode("utf-8", "surrogateescape"))
            if r.array is None:
                try:
                    st = os.stat(r.source)
                    h.update(f"{st.st_size}|{st.st_mtime_ns}".encode())
                except OSError:
                    h.update(b"missing")
        return h.hexdigest()

    def load(
        self,
        split: str,
        size: int | tuple[int, int] = 48,
        mode: str = "L",
        *,
        cache: bool = True,
        progress: bool | None = None,
        crop: CropFn | None = None,
        crop_key: str | None = None,
    ) -> FaceDataset:
        """Decode ``split`` to a :class:`FaceDataset` of ``size`` images (``L`` or ``RGB``).

        ``crop`` (optional) finds the face in each image (decoded RGB) and returns it aligned at
        ``size``: ``crop(rgb) -> (face, found)``. Where ``found`` is False the whole image is
        resized instead and its source listed in ``FaceDataset.no_face``. ``crop_key`` names the
        cropping (detector and settings, e.g. ``"mtcnn:min20"``) in the cache key, so detected
        crops are cached apart from whole images; without it a cropped load is not cached."""
        split = self.resolve_split(split)
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if mode not in ("L", "RGB"):
            raise FerkitError(f"mode must be 'L' or 'RGB', not {mode!r}")
        if crop is not None and not callable(crop):
            raise FerkitError(f"crop must be a function rgb -> (face, found), got a {type(crop).__name__}")
        records, skipped = self._text_records(split)
        parts = {"reader": self.name, "root": str(self.root.resolve()), "split": split, "size": hw, "mode": mode,
                 "options": self.options(), "records": self.fingerprint(records), "classes": list(self.classes),
                 "format": 1}
        if crop is not None:
            parts["crop"] = crop_key
        key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]
        cache = cache and (crop is None or crop_key is not None)
        if cache:
            hit = _cache.load(key)
            if hit is not None:
                _say_left_out(hit)  # as when it was decoded: a cached split hides nothing
                return hit
        ds = self._decode(records, skipped, split, hw, mode, progress, crop)
        if cache:
            _cache.save(key, ds)
        return ds

    def _decode(self, records: list[Record], skipped: list[tuple[str, str]], split: str,
                hw: tuple[int, int], mode: str, progress: bool | None, crop: CropFn | None = None) -> FaceDataset:
        skipped = list(skipped)
        no_face: list[str] = []
        c = 1 if mode == "L" else 3
        images = np.empty((len(records), hw[0], hw[1], c), dtype=np.uint8)
        keep: list[Record] = []
        show = sys.stderr.isatty() if progress is None else progress
        what = "detecting faces in" if crop is not None else "decoding"
        for r in tqdm(records, desc=f"{what} {self.name} {split}", unit="img",
                      disable=not show or len(records) < (50 if crop is not None else 500), leave=False):
            try:
                arr = read_image(r.array if r.array is not None else r.source, mode="RGB" if crop is not None else mode,
                                 name=r.source)
            except FerkitError as e:  # noqa: PERF203
                msg = str(e)
                reason = msg[len(r.source) + 2:] if msg.startswith(r.source + ": ") else msg
                self._fail(skipped, r.source, reason)
                continue
            if crop is not None:
                arr = self._crop(crop, arr, r.source, hw, mode, no_face)
            images[len(keep)] = resize(arr, hw).reshape(hw[0], hw[1], c)
            keep.append(r)
        if not keep:  # none listed (an empty split: `ferkit data` shows its layout), or none that decoded
            raise DatasetError(f"{self.name} {split}: " + (
                f"no images of this split under {self.root} (`ferkit data --dataset {self.name} --data "
                f"{self.root}` shows what is there; expected layout: {self.layout})" if not records else
                f"none of its {len(records)} image(s) could be read, under {self.root}"))
        imgs = torch.from_numpy(images[: len(keep)]).permute(0, 3, 1, 2).contiguous()
        soft = None
        if keep[0].soft is not None:
            soft = torch.tensor([r.soft for r in keep], dtype=torch.float32)
        ds = FaceDataset(
            images=imgs,
            labels=torch.tensor([r.label for r in keep], dtype=torch.int64),
            classes=self.classes,
            sources=[r.source for r in keep],
            subjects=[r.subject for r in keep],
            soft=soft,
            name=self.name,
            split=split,
            skipped=skipped,
            no_face=no_face,
        )
        _say_left_out(ds)
        return ds

    @staticmethod
    def _crop(crop: CropFn, rgb: np.ndarray, source: str, hw: tuple[int, int], mode: str,
              no_face: list[str]) -> np.ndarray:
        """The face ``crop`` finds in ``rgb`` in ``mode``; the whole image (noted in ``no_face``) if none."""
        try:
            face, found = crop(rgb)
        except FerkitError as e:
            raise DatasetError(f"{source}: face detection failed: {e}") from None
        if not found:
            no_face.append(source)
            return read_image(rgb, mode=mode, name=source)
        face = np.asarray(face)
        if face.dtype != np.uint8 or face.shape[:2] != tuple(hw) or face.ndim not in (2, 3):
            raise FerkitError(f"{source}: the crop function returned a {face.dtype} array of shape {face.shape}; "
                              f"expected uint8 {hw[0]}x{hw[1]} (x3)")
        return read_image(face, mode=mode, name=source)

    def _text_records(self, split: str):
        """:meth:`records`, with a label file that is not text (a binary file named like one)
        reported as a :class:`DatasetError` instead of Python's decoding error."""
        try:
            return self.records(split)
        except UnicodeDecodeError as e:
            raise DatasetError(f"{self.root}: a label file of this {self.name} copy is not text ({e.reason} at "
                               f"byte {e.start}): is --data the right file or folder?") from None

    def summary(self, split: str, left_out: dict | None = None) -> dict:
        """Counts for a split without decoding: ``{"n", "per_class", "subjects", "skipped"}``;
        ``left_out`` (a dict), when given, gets each skipped item's source and reason."""
        recs, skipped = self._text_records(self.resolve_split(split))
        if left_out is not None:
            left_out.update(dict(skipped))
        counts = Counter(r.label for r in recs)
        subjects = {r.subject for r in recs if r.subject is not None}
        return {"n": len(recs), "per_class": {c: counts.get(i, 0) for i, c in enumerate(self.classes)},
                "subjects": len(subjects), "skipped": len(skipped)}


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted (hidden files ignored). An image name that is
    no regular file (a broken link, a pipe) is listed too: reading it fails, and it is reported
    like any unreadable image rather than silently missing from the counts."""
    from ..io import is_hidden_name, is_image_file

    return sorted(p for p in folder.iterdir() if not is_hidden_name(p.name) and is_image_file(p) and not p.is_dir())
