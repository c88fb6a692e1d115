"""What the face pipeline returns: per face, per image or frame, per batch; and how they are drawn.

JSON of one image (``Result.to_dict()``)::

    {"source": ..., "width": W, "height": H,
     "faces": [{"box": [x, y, w, h], "landmarks": [[x, y] x 5], "score": s, "label": "happy",
                "probabilities": {"angry": p, ...}}]}

Video frames add ``frame`` and ``time`` (seconds) and each face a ``track_id``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, SupportsIndex, overload

import cv2
import numpy as np

from .errors import Failure, FerkitWarning
from .io import escaped, write_image_file

# one colour per canonical class (RGB), so a label reads the same in every picture
CLASS_COLOURS = {
    "angry": (230, 57, 70), "disgust": (106, 153, 78), "fear": (157, 78, 221), "happy": (255, 190, 11),
    "sad": (58, 134, 255), "surprise": (251, 86, 7), "neutral": (160, 160, 160), "contempt": (131, 56, 236),
}


@dataclass
class FaceResult:
    """One face: where it is and what it shows."""

    box: list[int]  #: x, y, width, height in image pixels
    score: float  #: detection score in [0, 1]
    label: str
    probabilities: dict[str, float]
    landmarks: list[list[float]] | None = None  #: [[x, y] x 5] or None
    track_id: int | None = None  #: video / webcam: the same person keeps the same id
    landmarks_estimated: bool = False  #: True when the detector gave no landmarks (Haar): placed from the box
    #: video / webcam: the weight of the track's past in ``probabilities`` (``smooth``, --smooth); 0: this
    #: frame's own
    smoothed: float = 0.0

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"box": list(self.box),
                             "landmarks": None if self.landmarks is None else [list(p) for p in self.landmarks],
                             "score": round(self.score, 6), "label": self.label,
                             "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()}}
        if self.landmarks_estimated:
            d["landmarks_estimated"] = True
        if self.track_id is not None:
            d["track_id"] = self.track_id
        if self.smoothed:
            d["smoothed"] = self.smoothed
        return d


@dataclass
class Result:
    """The faces of one image or video frame. ``image`` keeps the RGB pixels for drawing."""

    source: str
    width: int
    height: int
    faces: list[FaceResult] = field(default_factory=list)
    frame: int | None = None
    time: float | None = None
    #: (not compared: results compare by what was found; an array has no single truth value, so == raised)
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    classes: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)  #: caveats of the reading (JSON and CSV say them)
    #: the image file's absolute path when read from one: where :meth:`plot` reads it again (a folder's
    #: pixels are not kept), also after the working folder changed
    path: str | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.faces)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"source": self.source, "width": self.width, "height": self.height}
        if self.frame is not None:
            d["frame"] = self.frame
            d["time"] = round(float(self.time or 0.0), 4)
        d["faces"] = [f.to_dict() for f in self.faces]
        if self.warnings:  # (only when there are any: the usual entry keeps its form)
            d["warnings"] = list(self.warnings)
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def _classes(self) -> tuple[str, ...]:
        """The model's classes: as kept, else the first face's (a Result made by hand)."""
        return tuple(self.classes) or (tuple(self.faces[0].probabilities) if self.faces else ())

    def to_records(self, empty_row: bool = False) -> list[dict[str, Any]]:
        """One flat row per face (the CSV rows), every row with the CSV's columns in its order
        (:func:`csv_columns`; None where a row has no value): source, frame, time, face (1, 2, ... in
        the order of ``faces``), track_id, x, y, w, h, score, label, confidence, one column per class,
        ``error`` (None: only a failure's row has one) and ``warnings`` (the caveats of the reading,
        joined by "; "; None without any). ``empty_row``: an image or frame without faces still gives
        one row (face fields empty), so that no input goes unlisted. ``pandas.DataFrame(rows)`` and
        ``csv.DictWriter(f, fieldnames=rows[0])`` take them as they are."""
        said = "; ".join(self.warnings) or None
        blank = dict.fromkeys(csv_columns(self._classes()))
        if not self.faces and empty_row:
            return [{**blank, "source": self.source, "frame": self.frame, "time": self.time, "warnings": said}]
        rows = []
        for i, f in enumerate(self.faces, 1):  # face 1, 2, ... as the console and `ferkit explain` count
            x, y, w, h = f.box
            row: dict[str, Any] = {**blank, "source": self.source, "frame": self.frame, "time": self.time, "face": i,
                                   "track_id": f.track_id, "x": x, "y": y, "w": w, "h": h,
                                   "score": round(f.score, 6), "label": f.label, "confidence": round(f.confidence, 6)}
            row.update({c: round(p, 6) for c, p in f.probabilities.items()})
            row["warnings"] = said
            rows.append(row)
        return rows

    def to_csv(self, path_or_file) -> None:
        """Write :meth:`to_records` (``empty_row``: an image without faces is one row) as ``ferkit
        predict --csv`` writes it, to a path or an open text file."""
        write_csv(self.to_records(empty_row=True), path_or_file, self._classes())

    def plot(self, bars: bool = True, landmarks: bool = True) -> np.ndarray:
        """A copy of the image with each face's box, label, landmarks and probability bars (RGB)."""
        from .errors import FerkitError
        from .io import is_image_file

        image = self.image
        file = self.path or self.source
        if image is None and self.frame is None and file and not Path(file).is_file() and is_image_file(file):
            raise FerkitError(f"{file}: the file is gone since it was analysed (its pixels were not kept: "
                              f"predict(..., keep_images=True) keeps them)")
        if image is None and self.frame is None and file and Path(file).is_file():
            # an image of a folder is not kept in memory (keep_images=False): read it again to draw
            from .io import read_image

            image = read_image(file, mode="RGB", name=self.source, notes=[])  # (its caveats were said at analysis)
            if image.shape[:2] != (self.height, self.width):
                raise FerkitError(f"{self.source}: the file changed since it was analysed "
                                  f"({image.shape[1]}x{image.shape[0]}, was {self.width}x{self.height})")
        if image is None:
            raise FerkitError("this result keeps no image to draw on (its pixels were not kept: "
                              "predict(..., keep_images=True) keeps a video's frames)")
        return draw(image, self.faces, bars=bars, landmarks=landmarks)

    def _repr_png_(self) -> bytes | None:
        """Jupyter shows a result as its annotated image (long side at most 1024 px), where it can be
        drawn (None: a video frame whose pixels were not kept; the text repr then)."""
        from .errors import FerkitError

        try:
            img = self.plot()
        except FerkitError:
            return None
        big = max(img.shape[:2])
        if big > 1024:
            s = 1024 / big
            img = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                             interpolation=cv2.INTER_AREA)
        ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        return png.tobytes() if ok else None

    def summary(self) -> str:
        """One line: the source (and frame), its size and each face's label and confidence."""
        where = self.source + (f" frame {self.frame}" if self.frame is not None else "")
        faces = ", ".join(f"{f.label} {f.confidence:.2f}" for f in self.faces)
        n = len(self.faces)
        return f"{where} ({self.width}x{self.height}): {n} face{'' if n == 1 else 's'}" + (f": {faces}" if n else "")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the annotated image (format from the extension; PNG if none). An existing folder
        gets ``<source name>_ferkit.png`` inside it, as does a path ending in a slash (the folder made):
        results of sources with one name (``a/face.jpg``, ``b/face.jpg``) would overwrite each other
        there; :meth:`Results.save` names them apart."""
        from .errors import FerkitError
        from .io import check_out_folder

        if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
            raise FerkitError(f"save wants a file or folder path, got {path!r}")
        p = Path(path)
        check_out_folder("save", p.parent)  # a file where a folder must be: said, not an OSError
        if str(path).endswith(("/", os.sep)):  # "out/": a folder, even before it exists
            check_out_folder("save", p)
            p.mkdir(parents=True, exist_ok=True)
        if p.is_dir():
            stem = Path(self.source).stem if self.source else ""
            frame = f"_frame{self.frame:06d}" if self.frame is not None else ""
            p = p / f"{stem or 'image'}{frame}_ferkit.png"
        elif not p.suffix:
            p = p.with_suffix(".png")
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            ok = write_image_file(p, cv2.cvtColor(self.plot(), cv2.COLOR_RGB2BGR))
        except (cv2.error, OSError):
            ok = False
        if not ok:
            raise FerkitError(f"{p}: could not write the annotated image (unknown extension or unwritable folder)")
        return p


class Results(list[Result]):
    """Results of a folder or a video: a list of :class:`Result` plus what could not be read."""

    def __init__(self, items=(), failed: list[tuple[str, str]] | list[Failure] | None = None, source: str = "",
                 fps: float | None = None, ignored: list[tuple[str, str]] | None = None,
                 classes: Sequence[str] = ()) -> None:
        super().__init__(items)
        #: the model's classes (the recognizer's), for the CSV's columns where no result holds them (all failed)
        self.classes: tuple[str, ...] = tuple(classes)
        #: a :class:`~ferkit.errors.Failure` (source, reason, frames) per unreadable input or run of lost frames
        self.failed: list[Failure] = [Failure.of(f) for f in failed or []]
        #: (file, reason) of each file of a folder left out because it is no image by its name (a
        #: notes.txt, a video): listed, but not failures
        self.ignored: list[tuple[str, str]] = list(ignored or [])
        self.source = source
        self.fps = fps

    def __repr__(self) -> str:
        """A summary, not the whole list (a folder's would flood a notebook): counts, source, and the
        first results one line each (``list(results)`` shows them all)."""
        head = (f"Results({len(self)} result{'' if len(self) == 1 else 's'}, {len(self.failed)} failed, "
                f"{len(self.ignored)} ignored, source={self.source!r}" + (f", fps={self.fps:g}" if self.fps else "")
                + ")")
        shown = [f"  {r.summary() if isinstance(r, Result) else repr(r)}"
                 for r in itertools.islice(list.__iter__(self), 5)]
        more = [f"  ... {len(self) - 5} more"] if len(self) > 5 else []
        fails = [f"  failed: {f.source}: {f.error}" for f in self.failed[:3]]
        fails += [f"  ... {len(self.failed) - 3} more failed"] if len(self.failed) > 3 else []
        return "\n".join([head, *shown, *more, *fails])

    @overload
    def __getitem__(self, i: SupportsIndex) -> Result: ...

    @overload
    def __getitem__(self, i: slice) -> Results: ...

    def __getitem__(self, i):
        """One :class:`Result`, or for a slice a :class:`Results` (``results[:10].save(...)`` works):
        it keeps the job's source, fps and ignored files, and the failures placed among the slice's
        results (a failed file where it was met, a video's lost-frame run before its next frame or
        after its last one): slices that page through a job list each failure once. A stepped slice
        keeps every failed file, and the runs inside the frames it spans."""
        got = super().__getitem__(i)
        if not isinstance(i, slice):
            return got
        start, stop, step = i.indices(len(self))
        n = len(self)
        if step != 1:
            # a stepped slice: each video's runs inside the frames it spans (a folder's results hold several
            # videos; a run named after no result's source, a webcam's, goes by the one video's frames)
            spans: dict[str, tuple[int, int]] = {}
            for r in got:
                if r.frame is not None:
                    lo, hi = spans.get(r.source, (r.frame, r.frame))
                    spans[r.source] = (min(lo, r.frame), max(hi, r.frame))
            sole = next(iter(spans.values())) if len(spans) == 1 else None
            named = {r.source for r in self}

            def inside(f: Failure) -> bool:
                lo_hi = spans.get(f.source, sole if f.source not in named else None)
                return lo_hi is not None and f.frames[1] >= lo_hi[0] and f.frames[0] <= lo_hi[1]

            failed = [f for f in self.failed if f.frames is None or inside(f)]
        else:
            # each failure belongs to the one slice holding its place (the last one for a failure after every
            # result): slices that page through the results list each failure once. A folder's file that
            # failed where it was met: at k, before result k (every slice repeated them all); a video's
            # lost-frame run: where merge_by_frame puts it (one in a gap between slices, or after the last
            # frame, was in none)
            def held(k: float) -> bool:
                return start <= k < stop or (k == n and stop >= n > 0) or n == 0

            index = self._frame_index()
            failed = [f for f in self.failed if (f.at is None and f.frames is None)
                      or held(self._run_place(f, index) if f.frames is not None else min(f.at, n))]
        # a folder's failures keep their place among the results kept (one place only for a plain slice)
        failed = [f if f.at is None else Failure(f.source, f.error, f.frames, f.step,
                                                  min(max(f.at - start, 0), len(got)) if step == 1 else None)
                  for f in failed]
        return Results(got, failed=failed, source=self.source, fps=self.fps, ignored=self.ignored,
                       classes=self.classes)

    def _frame_index(self) -> tuple[dict[str, tuple[list[int], list[int]]], set[str]]:
        """Each source's frames in order with their indices among the results, and the sources of the
        results: worked out once for a slice's runs (per run, a slice of a long video took seconds)."""
        by: dict[str, tuple[list[int], list[int]]] = {}
        for k, r in enumerate(self):
            if r.frame is not None:
                fr, ks = by.setdefault(r.source, ([], []))
                fr.append(r.frame)
                ks.append(k)
        return by, {r.source for r in self}

    def _run_place(self, f: Failure, index: tuple[dict[str, tuple[list[int], list[int]]], set[str]]) -> float:
        """Where a video's lost-frame run sits among the results: at its video's first result of a later
        frame; after its video's last result when none is later; at ``at`` (else the end) for a video
        none of whose frames is here. A run named after no result's source (a webcam's) belongs to the
        frames when they come from one video. ``index``: :meth:`_frame_index`."""
        import bisect

        by, sources = index
        own = by.get(f.source)
        if own is None and len(by) == 1 and f.source not in sources:
            own = next(iter(by.values()))
        if own is None:
            return len(self) if f.at is None else min(f.at, len(self))
        frames, ks = own
        if frames == sorted(frames):
            j = bisect.bisect_right(frames, f.frames[0])
        else:  # (frames not in order, as a hand-made list may be: the first later one)
            j = next((i for i, fr in enumerate(frames) if fr > f.frames[0]), len(frames))
        return ks[j] if j < len(ks) else ks[-1] + 0.5  # (+0.5: with its video's last result)

    def save(self, folder: str | os.PathLike) -> list[Path]:
        """Every result's annotated image into ``folder`` (made if need be), each named as
        :meth:`Result.save` names it in a folder (``<source name>_ferkit.png``; a video's frames
        ``<name>_frame<N>_ferkit.png``). A folder's results mirror its subfolders, as ``ferkit
        predict --out`` does (``photos/a/face.jpg`` -> ``folder/a/face_ferkit.png``); a name two
        results would still share (``face.jpg`` and ``face.png``, or two arrays) gets a number
        appended: none overwrites another, as ``r.save(folder)`` on each would. Returns the paths
        written, in order."""
        from .errors import FerkitError
        from .io import check_out_folder

        if not isinstance(folder, (str, os.PathLike)) or not str(folder).strip():
            raise FerkitError(f"save wants a folder path, got {folder!r}")
        from .io import is_image_file, is_video_file

        trailing = str(folder).endswith(("/", os.sep))  # ("out.png/": a folder, said so)
        if (is_video_file(folder) or is_image_file(folder)) and not Path(folder).exists() and not trailing:
            # (a folder named clip.mp4 filled with PNGs, where a video was asked for)
            raise FerkitError(f"{folder}: save writes a folder of annotated pictures, one per result, not "
                              f"{'a video' if is_video_file(folder) else 'one image'}: give a folder"
                              + (" (an annotated video: `ferkit predict VIDEO --out FOLDER`)"
                                 if is_video_file(folder) else "; one result's picture: results[i].save(path)"))
        where = Path(folder)
        check_out_folder("save", where)
        where.mkdir(parents=True, exist_ok=True)
        used: set[Path] = set()
        written = []
        photos = any(r.frame is None for r in self)
        bare = [r for r in self if r.frame is not None and r.image is None]
        if photos and bare:  # a folder's videos: their frames' pixels were not kept (photos are read again)
            import warnings

            warnings.warn(f"{len(bare)} video frame(s) not saved: their pixels were not kept (predict(..., "
                          f"keep_images=True) keeps them; `ferkit predict --out` writes annotated videos)",
                          FerkitWarning, stacklevel=2)
        for r in self:
            if photos and r.frame is not None and r.image is None:
                continue
            stem = (Path(r.source).stem if r.source else "") or "image"
            stem += f"_frame{r.frame:06d}" if r.frame is not None else ""
            sub = self._subfolder(r)
            name, n = sub / stem, 2
            while name in used:
                name, n = sub / f"{stem}_{n}", n + 1
            used.add(name)
            written.append(r.save(where / name.parent / f"{name.name}_ferkit.png"))
        return written

    def _subfolder(self, r: Result) -> Path:
        """Where ``r`` sits inside the folder these results read (``a/b`` for ``photos/a/b/x.jpg``
        of ``photos``), by the paths' names; ``.`` for anything else (a video's frames, arrays)."""
        if not self.source or not r.source or r.frame is not None:
            return Path()
        try:
            return Path(r.source).relative_to(self.source).parent
        except ValueError:
            return Path()

    def to_dict(self) -> list[dict[str, Any]]:
        """Each result's dict, then one ``{"source", "error", "faces": []}`` per failure (nothing
        read is left out of the file, and nothing that could not be read either)."""
        return [entry_dict(e) for e in self.in_order()]

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def _classes(self) -> tuple[str, ...]:
        """The model's classes, as its results keep them, else as given (() where neither: all failed)."""
        return next((c for r in self if (c := r._classes())), ()) or tuple(getattr(self, "classes", ()))

    def to_records(self, empty_row: bool = False) -> list[dict[str, Any]]:
        """The rows of every result, each with the CSV's columns (:meth:`Result.to_records`); with
        ``empty_row`` (no input unlisted) also one row per failure, its reason in the ``error``
        column. ``pandas.DataFrame(rs.to_records(empty_row=True))`` is the ``--csv`` file's table."""
        if not empty_row:
            return [row for r in self for row in r.to_records()]
        blank = dict.fromkeys(csv_columns(self._classes()))
        return [{**blank, **row} for e in self.in_order() for row in entry_records(e)]

    def to_csv(self, path_or_file) -> None:
        """Write the ``ferkit predict --csv`` file of these results and failures (``to_records(
        empty_row=True)``) to a path or an open text file."""
        write_csv(self.to_records(empty_row=True), path_or_file, self._classes())

    def in_order(self) -> list[Result | Failure]:
        """The results and the failures as met (as ``ferkit predict`` lists them): a video's lost
        frames where they were in the video (by frame index), a folder's unreadable files where
        they were in the folder (their ``at``), other failures after the results."""
        return merge_by_frame(list(self), self.failed)


def merge_by_frame(results: list[Result], failed: list[Failure]) -> list[Result | Failure]:
    """``results`` (in order) with each failure that names frames put before the first result of
    a later frame, and each that names its place (``at``: the results before it) there; other
    failures go last."""
    failed = [Failure.of(f) for f in failed]  # pairs appended by hand too
    # a video's runs go among that video's frames (a folder's results hold several videos' frames, and
    # photos): by source, each in frame order; those of a video whose frames come from none of the
    # results (a source of its own name: a webcam's runs named after it) are matched on frames alone
    sources = {r.source for r in results if r.frame is not None}
    runs: dict[str | None, list[Failure]] = {}
    elsewhere: list[Failure] = []  # runs of a video none of whose frames is here, among several videos
    for f in sorted((f for f in failed if f.frames is not None), key=lambda f: f.frames[0]):
        if f.source in sources:
            runs.setdefault(f.source, []).append(f)
        elif len(sources) <= 1:  # one video (or a webcam's runs named otherwise): by frame index
            runs.setdefault(None, []).append(f)
        else:
            elsewhere.append(f)
    # those where their video was met (``at``), else after the results
    placed = sorted([f for f in failed if f.frames is None and f.at is not None]
                    + [f for f in elsewhere if f.at is not None], key=lambda f: f.at)
    unplaced = [f for f in elsewhere if f.at is None]
    out: list[Result | Failure] = []
    j = 0
    loose = runs.pop(None, [])
    for i, r in enumerate(results):
        while j < len(placed) and placed[j].at <= i:
            out.append(placed[j])
            j += 1
        if r.frame is not None:
            own = runs.get(r.source, [])
            while own and own[0].frames[0] < r.frame:
                out.append(own.pop(0))
            while loose and loose[0].frames[0] < r.frame:
                out.append(loose.pop(0))
        out.append(r)
        nxt = results[i + 1].source if i + 1 < len(results) else None
        if r.frame is not None and nxt != r.source:  # the video's last result: the rest of its runs after it
            out += runs.pop(r.source, [])
    rest = [f for fs in runs.values() for f in fs]
    return out + loose + rest + placed[j:] + unplaced + [f for f in failed if f.frames is None and f.at is None]


def failure_dict(f: Failure) -> dict[str, Any]:
    """A source that could not be read, as an entry of ``predict --json`` (beside the results);
    a video's lost frames add ``"frames": [first, last]`` (and ``"every": N`` when only every N-th
    frame of the run was to be read)."""
    d: dict[str, Any] = {"source": f.source}
    if f.frames is not None:
        d["frames"] = list(f.frames)
        if f.step > 1:
            d["every"] = f.step
    d.update({"error": f.error, "faces": []})
    return d


def failure_record(f: Failure) -> dict[str, Any]:
    """A source that could not be read, as a ``predict --csv`` row (``source`` and ``error``); a
    video's lost frames put the run's first frame in ``frame`` and the run in the message."""
    if f.frames is None:
        return {"source": f.source, "error": f.error}
    return {"source": f.source, "frame": f.frames[0], "error": f"{f.span}: {f.error}"}


def entry_dict(e: Result | Failure) -> dict[str, Any]:
    """A result's or a failure's entry of a ``--json`` list."""
    return e.to_dict() if isinstance(e, Result) else failure_dict(e)


def entry_records(e: Result | Failure) -> list[dict[str, Any]]:
    """A result's or a failure's ``--csv`` rows (a result without faces still one row)."""
    return e.to_records(empty_row=True) if isinstance(e, Result) else [failure_record(e)]


def csv_columns(classes: tuple[str, ...] | list[str]) -> list[str]:
    """The ``--csv`` file's columns, in order: every :meth:`Result.to_records` row has them."""
    return ["source", "frame", "time", "face", "track_id", "x", "y", "w", "h", "score", "label", "confidence",
            *classes, "error", "warnings"]


def write_csv(rows: list[dict[str, Any]], path_or_file, classes: tuple[str, ...] | list[str]) -> None:
    """Write :meth:`Result.to_records` rows (columns fixed, so an empty batch still has a header);
    ``error`` is empty but on the rows of sources that could not be read, and the last column,
    ``warnings``, but on those of images read with a caveat (the messages, joined by "; ")."""
    cols = csv_columns(classes)
    # (a file name that is not UTF-8 is written with its escapes, as in the JSON: "bad\\udcffname.jpg")
    fh = (open(path_or_file, "w", newline="", encoding="utf-8", errors="backslashreplace")
          if isinstance(path_or_file, (str, os.PathLike)) else path_or_file)
    try:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    finally:
        if fh is not path_or_file:
            fh.close()


# ---------------------------------------------------------------------------------------
# drawing
# ---------------------------------------------------------------------------------------
def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, fg, bg) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    th = max(1, int(round(scale * 2)))
    (tw, tht), base = cv2.getTextSize(text, font, scale, th)
    x, y = org
    x = int(min(max(0, x), max(0, img.shape[1] - tw - 4)))
    y = int(min(max(tht + 4, y), img.shape[0] - 2))
    cv2.rectangle(img, (x, y - tht - 4), (x + tw + 4, y + base - 1), bg, -1)
    cv2.putText(img, text, (x + 2, y - 2), font, scale, fg, th, cv2.LINE_AA)


def draw(image: np.ndarray, faces: list[FaceResult], bars: bool = True, landmarks: bool = True,
         fps: float | None = None) -> np.ndarray:
    """Annotate a copy of an RGB image: box in the label's colour, "label 0.93" (and the track
    id), the five landmarks, and a bar per class beside the box."""
    img = np.ascontiguousarray(image.copy() if image.ndim == 3 else np.repeat(image[:, :, None], 3, 2))
    H, W = img.shape[:2]
    unit = max(H, W) / 640
    lw = max(1, int(round(2 * unit)))
    scale = max(0.35, 0.5 * unit)
    taken = [(x, y, x + w, y + h) for x, y, w, h in (f.box for f in faces)]  # (what a panel should not cover)
    for f in faces:
        x, y, w, h = f.box
        col = CLASS_COLOURS.get(f.label, (255, 200, 0))
        cv2.rectangle(img, (x, y), (x + w, y + h), col, lw, cv2.LINE_AA)
        if landmarks and f.landmarks is not None and not f.landmarks_estimated:
            for px, py in f.landmarks:
                cv2.circle(img, (int(round(px)), int(round(py))), max(1, lw), (0, 255, 0), -1, cv2.LINE_AA)
        tid = f"#{f.track_id} " if f.track_id is not None else ""
        _text(img, f"{tid}{f.label} {f.confidence:.2f}", (x, y - lw), scale, (0, 0, 0), col)
        if bars:
            taken.append(_bars(img, f, lw * 2, unit, [t for t in taken if t != (x, y, x + w, y + h)]))
    if fps is not None:
        _text(img, f"{fps:.1f} FPS", (4, int(24 * unit) + 4), scale, (255, 255, 255), (0, 0, 0))
    return img


def _bars(img: np.ndarray, f: FaceResult, gap: int, unit: float,
          avoid: list[tuple[int, int, int, int]] = ()) -> tuple[int, int, int, int]:
    """A small horizontal bar chart of the class probabilities beside the face's box: right of it,
    else left, below, above or inside its lower right corner, the first place inside the image that
    covers none of ``avoid``
    (the other faces and the panels drawn already: faces side by side each keep their bars);
    where none is free, right of the box (left if no room). Returns the panel's rectangle."""
    H, W = img.shape[:2]
    n = len(f.probabilities)
    rowh = max(8, int(round(12 * unit)))
    namew = int(58 * max(unit, 0.6))
    barw = int(60 * max(unit, 0.6))
    total_w, total_h = namew + barw + 4, rowh * n
    x, y, w, h = f.box
    spots = [(x + w + gap, y), (x - total_w - gap, y), (x, y + h + gap), (x, y - total_h - gap),
             (x + w - total_w, y + h - total_h)]  # last: over its own face's lower corner, not another's bars

    def fits(px: int, py: int) -> bool:
        return px >= 0 and py >= 0 and px + total_w <= W and py + total_h <= H and not any(
            px < bx2 and bx1 < px + total_w and py < by2 and by1 < py + total_h for bx1, by1, bx2, by2 in avoid)

    free = next((sp for sp in spots if fits(*sp)), None)
    if free is not None:
        x0, y0 = free
    else:
        x0, y0 = spots[0]
        if x0 + total_w > W:
            x0 = max(0, x - total_w - 4)
        y0 = int(min(max(0, y0), max(0, H - total_h)))
    scale = max(0.3, 0.38 * unit)
    overlay = img.copy()
    cv2.rectangle(overlay, (x0, y0), (min(W - 1, x0 + total_w), min(H - 1, y0 + rowh * n)), (0, 0, 0), -1)
    cv2.addWeighted(overlay, 0.45, img, 0.55, 0, dst=img)
    for i, (c, p) in enumerate(f.probabilities.items()):
        yy = y0 + i * rowh
        cv2.putText(img, c[:8], (x0 + 2, yy + rowh - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
        bw = int(round(barw * float(p)))
        if bw > 0:
            cv2.rectangle(img, (x0 + namew, yy + 2), (x0 + namew + bw, yy + rowh - 2),
                          CLASS_COLOURS.get(c, (200, 200, 200)), -1)
    return (x0, y0, x0 + total_w, y0 + total_h)


def plot_timeline(results: list[Result], classes: tuple[str, ...] | list[str], path: str | os.PathLike,
                  title: str = "") -> Path:
    """Expression over time: for each track (the six seen longest; the title says how many more),
    the probability of every class against time (PNG), over the span of the frames processed. Each
    reading is a dot; a line joins readings of consecutive processed frames only (a face out of
    view, or not found, is a gap, not a line drawn through it)."""
    from ._figure import subplots

    tracks: dict[Any, list[tuple[float, dict[str, float]]]] = {}
    for r in results:
        for f in r.faces:
            tracks.setdefault(f.track_id, []).append((float(r.time or 0.0), f.probabilities))
    times = sorted({float(r.time or 0.0) for r in results})
    # the next processed frame's time after each one: readings further apart have a gap between them;
    # a run of lost frames (a damaged stretch of the video) is a gap too, not a line drawn through it
    lost = set()
    for f in getattr(results, "failed", []):
        if f.frames is None:
            continue  # (by the frames around the run, not its index over the rate: a variable-rate video's
        # stamps are not index / fps)
        before = [float(r.time or 0.0) for r in results if r.frame is not None and r.frame < f.frames[0]]
        after = [float(r.time or 0.0) for r in results if r.frame is not None and r.frame > f.frames[1]]
        if before and after:
            lost.add((max(before) + min(after)) / 2)
    marks = sorted(set(times) | lost)
    following = dict(zip(marks, marks[1:]))
    ranked = sorted(tracks, key=lambda k: (-len(tracks[k]), str(k)))
    # the six faces seen longest, drawn in the order of their ids (#1, #2...), as the summary lists them
    keys = sorted(ranked[:6], key=lambda k: (k is None, k if isinstance(k, int) else 0, str(k))) or [None]
    fig, axes = subplots(len(keys), 1, figsize=(10, 2.6 * len(keys)), sharex=True, squeeze=False)
    for ax, k in zip(axes[:, 0], keys):
        pts = tracks.get(k, [])
        if pts:
            t, rows = [], []
            for j, (tj, pj) in enumerate(pts):
                if j and following.get(pts[j - 1][0], tj) < tj:  # frames in between without this face
                    t.append(np.nan)
                    rows.append({})
                t.append(tj)
                rows.append(pj)
            for c in classes:
                ax.plot(t, [p.get(c, np.nan) if p else np.nan for p in rows], label=c, marker=".", ms=4,
                        color=np.array(CLASS_COLOURS.get(c, (0, 0, 0))) / 255, lw=1.5)
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
        ax.set_title(f"face #{k}" if k is not None else "no faces found", fontsize=10)
        ax.grid(alpha=0.3)
    if len(times) > 1:
        pad = (times[-1] - times[0]) * 0.01
        axes[-1, 0].set_xlim(times[0] - pad, times[-1] + pad)
    elif times:  # one frame: a second around it, not matplotlib's +-0.04 s
        axes[-1, 0].set_xlim(times[0] - 0.5, times[0] + 0.5)
    if len(ranked) > len(keys):
        more = len(ranked) - len(keys)
        title = (f"{title}: " if title else "") + (f"the {len(keys)} faces seen longest ({more} more in the "
                                                   f"CSV and JSON)")
    if tracks:  # (no faces: no lines to name)
        axes[0, 0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1, 0].set_xlabel("time (s)")
    if title:  # (a file name that is not UTF-8 shown with its escapes: matplotlib takes no surrogates)
        fig.suptitle(escaped(title))
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110, bbox_inches="tight")
    return p


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB image (for HTTP responses and tests)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return io.BytesIO(buf.tobytes()).getvalue()
