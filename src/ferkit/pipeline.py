"""The face pipeline: any picture or stream in, every face's expression out.

    from ferkit import Recognizer
    rec = Recognizer()                          # default model, MTCNN detector
    r = rec.predict("photo.jpg")                # Result: r.faces[0].label, r.to_json(), r.save("out.png")
    rs = rec.predict("folder/")                 # Results (a list), rs.failed lists unreadable images
    rs = rec.predict("clip.mp4", every=2)       # Results, one per processed frame, faces tracked
    for r in rec.stream(0): ...                 # webcam 0, frame by frame

Each image goes: decode (RGB) -> detect (boxes, scores, 5 landmarks) -> align each face to
the model's input size (similarity transform onto the template of :mod:`ferkit.faces.align`)
-> classify all faces of the image in one batch -> :class:`~ferkit.results.Result`.

Streams (video files, cameras) add a tracker (stable ids across frames), optional smoothing of
the probabilities over time (an exponential moving average per track) and a fast path: with
MTCNN, a full detection runs every ``detect_every`` processed frames and the frames between
re-locate the known faces with O-Net alone.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import cv2
import numpy as np
import torch
from PIL import Image

from .api import ExpressionModel, check_threads, load_model
from .errors import Failure, FerkitError, FerkitWarning, check_whole
from .faces import Detection, Detector, align, create_detector, crop_box, is_whole_image
from .io import (TS_NOT_VIDEO, VideoReader, caller_level, file_object_name, folder_files, frame_failures,
                 is_file_object, is_image_file, is_video_file, read_image, resize)
from .results import FaceResult, Result, Results


# ---------------------------------------------------------------------------------------
# tracking
# ---------------------------------------------------------------------------------------
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` ``[N, 4]`` with every box of ``b`` ``[M, 4]`` (x1, y1, x2, y2)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class _Track:
    id: int
    box: np.ndarray
    age: int = 0  #: processed frames since last seen
    probs: np.ndarray | None = None
    vel: np.ndarray | None = None  #: the box centre's motion (x, y) per processed frame (None: seen once)

    def predicted(self) -> np.ndarray:
        """Where the box should be now: its last box, moved on at its centre's velocity for the
        frames since it was seen (at most 5: a face that stopped is not sent far away); the size
        stays (a size change carried forward could turn the box inside out)."""
        if self.vel is None:
            return self.box
        dx, dy = self.vel * min(self.age + 1, 5)
        return self.box + np.array([dx, dy, dx, dy])


class Tracker:
    """Keeps faces' identities across frames: greedy matching by IoU (at least ``iou``), then,
    for faces that moved further, by centre distance (under ``dist`` box sizes, similar size),
    each against the box a track is predicted at (moved on at its velocity). Tracks seen most
    recently are matched first by IoU (a face seen in the last frame keeps its id against a stale
    track that happens to overlap more: two faces that cross do not swap); by distance, the nearest
    first. A track unseen for
    ``max_age`` processed frames ends; ids count up from 1 and are never reused. ``smooth`` in
    [0, 1) is the weight of the past in each track's probability average (0: off)."""

    def __init__(self, iou: float = 0.3, dist: float = 0.6, max_age: int = 15, smooth: float = 0.0) -> None:
        if not 0 <= smooth < 1:
            raise FerkitError(f"smoothing must be in [0, 1), got {smooth}")
        self.iou, self.dist, self.max_age, self.smooth = iou, dist, max_age, smooth
        self.tracks: list[_Track] = []
        self.next_id = 1

    def update(self, boxes: np.ndarray) -> list[int]:
        """Track ids for this frame's boxes ``[N, 4]`` (x1, y1, x2, y2)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids = [-1] * len(boxes)
        free_t = set(range(len(self.tracks)))
        free_d = set(range(len(boxes)))
        if self.tracks and len(boxes):
            tb = np.stack([t.predicted() for t in self.tracks])
            ages = [t.age for t in self.tracks]
            m = iou_matrix(tb, boxes)
            for ti, di in sorted(np.argwhere(m >= self.iou).tolist(), key=lambda p: (ages[p[0]], -m[p[0], p[1]])):
                if ti in free_t and di in free_d:
                    ids[di] = self.tracks[ti].id
                    free_t.discard(ti)
                    free_d.discard(di)
            # faces that jumped (fast motion, skipped frames): nearest centre, similar size
            pairs = []
            for ti in free_t:
                t = tb[ti]
                ts = max(t[2] - t[0], t[3] - t[1])
                for di in free_d:
                    b = boxes[di]
                    bs = max(b[2] - b[0], b[3] - b[1])
                    d = np.hypot((t[0] + t[2] - b[0] - b[2]) / 2, (t[1] + t[3] - b[1] - b[3]) / 2) / max(ts, 1e-9)
                    if d < self.dist and 0.5 < bs / max(ts, 1e-9) < 2:
                        pairs.append((d, ages[ti], ti, di))  # nearest first (the age breaks ties only)
            for _, _, ti, di in sorted(pairs):
                if ti in free_t and di in free_d:
                    ids[di] = self.tracks[ti].id
                    free_t.discard(ti)
                    free_d.discard(di)
        by_id = {t.id: t for t in self.tracks}
        for di, tid in enumerate(ids):
            if tid >= 0:
                t = by_id[tid]
                b = boxes[di]
                step = ((b[:2] + b[2:]) - (t.box[:2] + t.box[2:])) / 2 / (t.age + 1)  # the centre, per frame
                t.vel = step if t.vel is None else 0.5 * t.vel + 0.5 * step
                t.box, t.age = boxes[di], 0
        for ti in free_t:
            self.tracks[ti].age += 1
        for di in sorted(free_d):
            t = _Track(self.next_id, boxes[di])
            self.next_id += 1
            self.tracks.append(t)
            ids[di] = t.id
        self.tracks = [t for t in self.tracks if t.age <= self.max_age]
        return ids

    def smooth_probs(self, track_id: int, probs: np.ndarray) -> np.ndarray:
        """The track's running average of ``probs`` (``probs`` itself when smoothing is off)."""
        t = next((t for t in self.tracks if t.id == track_id), None)
        if t is None or self.smooth <= 0:
            return probs
        t.probs = probs if t.probs is None else self.smooth * t.probs + (1 - self.smooth) * probs
        return t.probs

    def boxes(self, max_age: int = 0) -> np.ndarray:
        """Boxes of the tracks seen within the last ``max_age`` processed frames."""
        b = [t.box for t in self.tracks if t.age <= max_age]
        return np.stack(b) if b else np.zeros((0, 4))


# ---------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------
def source_kind(source: Any) -> str:
    """``image`` | ``folder`` | ``video`` | ``webcam`` for anything :meth:`Recognizer.predict` takes."""
    if isinstance(source, bool):
        raise FerkitError(f"cannot read a {type(source).__name__} as an image")
    if isinstance(source, int):
        return "webcam"
    if isinstance(source, (np.ndarray, Image.Image, bytes, bytearray, memoryview)) or is_file_object(source):
        return "image"
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            return "folder"
        if is_video_file(p):
            return "video"
        return "image"
    if _is_capture(source):  # (its frames: stream reads them, with tracking)
        raise FerkitError("a cv2.VideoCapture: read its frames with Recognizer.stream(capture) (predict reads "
                          "files, folders, webcam indexes and images)")
    raise FerkitError(f"cannot read faces from a {type(source).__name__}: give a path, folder, video, webcam index, "
                      f"an image file's bytes or file object, a numpy array or a PIL image")


# ---------------------------------------------------------------------------------------
# the recognizer
# ---------------------------------------------------------------------------------------
class Recognizer:
    """Detect, align and classify every face of a picture or stream.

    ``model``: a shipped name, weights file, run folder or an :class:`ExpressionModel`.
    ``detector``: ``mtcnn`` (default), ``haar``, ``none`` (inputs are face crops) or a
    :class:`~ferkit.faces.Detector`. ``min_face_size``, ``thresholds`` (MTCNN's three) and
    ``max_side`` (long side searched; bigger images are downscaled for detection only) tune it.
    ``backend`` (``auto`` | ``torch`` | ``onnx`` | ``onnx-int8``) picks the classifier's runtime, as
    in :func:`ferkit.load_model`; ``threads`` the CPU threads of its onnxruntime session and of
    MTCNN's (None: their defaults; a model or detector given ready-made keeps its own).
    ``max_faces`` keeps the best N faces per image.
    ``smooth`` and ``detect_every`` apply to streams:
    by default each face's probabilities are averaged over time with weight 0.5 on the past, and
    a full detection runs every 5th processed frame (new faces show up within 5 frames; a face
    the fast path loses triggers a full detection at once). ``detect_every=1`` detects every frame.

    One recognizer serves several threads at once (the results are those of one thread). It does
    not pickle (its onnxruntime sessions do not): for a process pool, build one in each process
    (``ProcessPoolExecutor(initializer=...)``); its results pickle.
    """

    def __copy__(self) -> Recognizer:  # (a shallow copy shares the model and the detector, as before __reduce__)
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __reduce__(self):  # (pickle's, and a process pool's: said in words, not onnxruntime's type name)
        raise TypeError("a ferkit Recognizer does not pickle (its onnxruntime sessions do not): build one in each "
                        "process, e.g. ProcessPoolExecutor(initializer=...); its results pickle")

    def __init__(self, model: str | os.PathLike | ExpressionModel = "default", detector: str | Detector = "mtcnn", *,
                 device: str = "cpu", min_face_size: int | None = None,
                 thresholds: tuple[float, float, float] | None = None, max_side: int | None = None,
                 max_faces: int | None = None, tta: str | None = None, smooth: float = 0.5,
                 detect_every: int = 5, backend: str = "auto", threads: int | None = None) -> None:
        check_threads(threads)
        if isinstance(model, ExpressionModel):
            idle = [f"{k}={v!r}" for k, v, default in (("backend", backend, "auto"), ("device", device, "cpu"))
                    if v != default]
            if idle:  # (they choose how a model is loaded: this one is loaded already)
                warnings.warn(f"{', '.join(idle)} ignored: the model given is loaded already (its backend: "
                              f"{getattr(model, 'backend', 'torch')}); pass them to load_model, or give the model's "
                              f"name instead", FerkitWarning, stacklevel=2)
            # (threads: still MTCNN's; the loaded model keeps its own, chosen by load_model)
            self.model = model
        else:
            self.model = load_model(model, device=device, backend=backend, threads=threads)
        self.detector = create_detector(detector, min_face_size=min_face_size, thresholds=thresholds,
                                        max_side=max_side, threads=threads)
        if max_faces is not None:
            check_whole("max_faces (--max-faces)", max_faces, none=" (or None, without --max-faces: all faces)")
        if tta not in (None, "none", "flip", "tencrop"):
            raise FerkitError(f"unknown tta {tta!r}; use None, 'flip' or 'tencrop'")
        check_whole("detect_every", detect_every)
        if isinstance(smooth, bool) or not isinstance(smooth, numbers.Real) or not 0 <= smooth < 1:
            raise FerkitError(f"smooth (--smooth) must be a number in [0, 1), got {smooth!r}")
        self.max_faces, self.tta, self.smooth, self.detect_every = max_faces, tta, smooth, detect_every
        c, h, w = self.model.input_size
        self.gray = c == 1
        self.size = (h, w)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.model.classes

    def __repr__(self) -> str:
        return f"Recognizer(model={self.model.name!r}, detector={self.detector!r})"

    def release_memory(self) -> bool:
        """Hand the memory kept after a large image back to the system: what onnxruntime's CPU arenas (the
        detector's, the classifier's) grew to, then the C heap's free memory (glibc's ``malloc_trim``; a
        GPU's memory, onnxruntime's or torch's cache, is kept).
        For long-running processes; the next large image grows them again (about 0.1 s after a
        2048x2048 photo of 900 faces, which left 1 GB held). Safe while other threads analyse. True
        where the heap was trimmed, False where there is no glibc (the arenas are shrunk anyway)."""
        from .runtime.memory import release, trim_heap

        release(self.detector, self.model)
        return trim_heap()

    # -- the steps -------------------------------------------------------------------------
    def detect(self, rgb: np.ndarray) -> list[Detection]:
        dets = self.detector.detect(rgb)
        return dets[: self.max_faces] if self.max_faces else dets

    def _keep(self, dets: list[Detection], tracker: Tracker) -> list[Detection]:
        """At most ``max_faces`` of a video frame's faces (all without a limit): those of faces
        already followed first, then by score, so that the faces kept stay the same while they
        are in view (the best scores alone switch between people from frame to frame)."""
        if not self.max_faces or len(dets) <= self.max_faces:
            return dets
        live = [t.predicted() for t in tracker.tracks]
        if live:
            followed = iou_matrix(np.stack([d.box for d in dets]), np.stack(live)).max(1) >= tracker.iou
        else:
            followed = np.zeros(len(dets), bool)
        pick = sorted(range(len(dets)), key=lambda i: (not followed[i], -dets[i].score))[: self.max_faces]
        return [dets[i] for i in sorted(pick)]  # (in the detector's order)

    def crops(self, rgb: np.ndarray, dets: list[Detection]) -> np.ndarray:
        """Aligned faces at the model's input size: uint8 ``[N, H, W]`` (gray) or ``[N, H, W, 3]``."""
        if len(dets) == 1 and dets[0].landmarks is None and is_whole_image(dets[0].box, rgb.shape):
            # a face crop (--detector none): made gray and resized as the datasets' images and
            # model.predict's are (Pillow), so that both agree
            face = np.asarray(Image.fromarray(rgb).convert("L")) if self.gray else rgb
            return np.stack([resize(face, self.size)])  # (a copy, as for the other crops)
        src = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if self.gray else rgb
        out, shrunk = [], {}
        for d in dets:
            if d.landmarks is not None:
                out.append(align(src, d.landmarks, self.size, shrunk)[0])
            else:
                out.append(crop_box(src, d.box, self.size))
        return np.stack(out) if out else np.zeros((0, *self.size) + (() if self.gray else (3,)), np.uint8)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Class probabilities ``[N, K]`` of aligned crops (one batch)."""
        if len(crops) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        x = torch.from_numpy(crops[:, None] if self.gray else crops.transpose(0, 3, 1, 2).copy())
        return self.model.predict_tensor(x, tta=self.tta).numpy()

    def _result(self, rgb: np.ndarray, dets: list[Detection], probs: np.ndarray, source: str,
                keep_image: bool = True, **extra) -> Result:
        faces = [self._face(d, p) for d, p in zip(dets, probs)]
        return Result(source, rgb.shape[1], rgb.shape[0], faces, image=rgb if keep_image else None,
                      classes=self.classes, **extra)

    def _face(self, d: Detection, p: np.ndarray, track_id: int | None = None, smoothed: float = 0.0) -> FaceResult:
        i = int(np.argmax(p))
        lm = None if d.landmarks is None else [[round(float(x), 2), round(float(y), 2)] for x, y in d.landmarks]
        return FaceResult(box=d.xywh, score=float(d.score), label=self.classes[i],
                          probabilities={c: float(v) for c, v in zip(self.classes, p)}, landmarks=lm,
                          track_id=track_id, landmarks_estimated=d.estimated, smoothed=float(smoothed))

    # -- one image ---------------------------------------------------------------------------
    def analyze(self, image: Any, source: str | None = None, keep_image: bool = True) -> Result:
        """Every face of one image (path, bytes, array RGB/gray, PIL image). What was read with a
        caveat (only the first frame of an animation, a JPEG without its end marker...) is a
        ``UserWarning`` and is kept in the result's ``warnings``. The pixels kept (``keep_image``)
        are a copy where the image was the caller's array: changing it later leaves the result's."""
        name = source or (str(image) if isinstance(image, (str, os.PathLike)) else _pil_file(image)
                          or type(image).__name__)
        notes: list[str] = []
        rgb = read_image(image, mode="RGB", name=name, notes=notes)
        if keep_image and isinstance(image, np.ndarray) and np.may_share_memory(rgb, image):
            rgb = rgb.copy()  # the caller's own array (a camera's reused buffer, drawn on later): kept as it was
        for n in notes:  # a caveat of the reading: warned (as before) and kept in the result's "warnings"
            warnings.warn(n, FerkitWarning, stacklevel=caller_level())
        dets = self.detect(rgb)
        path = os.path.abspath(image) if isinstance(image, (str, os.PathLike)) else None
        return self._result(rgb, dets, self.classify(self.crops(rgb, dets)), name, keep_image, warnings=notes,
                            path=path)

    # -- any source --------------------------------------------------------------------------
    @overload
    def predict(self, source: np.ndarray | Image.Image | bytes | bytearray | memoryview, *, every: int = 1,
                max_frames: int | None = None, keep_images: bool | None = None, progress: bool = False) -> Result: ...

    @overload
    def predict(self, source: int | VideoReader, *, every: int = 1, max_frames: int | None = None,
                keep_images: bool | None = None, progress: bool = False) -> Results: ...

    @overload
    def predict(self, source: list | tuple, *, every: int = 1, max_frames: int | None = None,
                keep_images: bool | None = None, progress: bool = False) -> Results: ...

    @overload
    def predict(self, source: str | os.PathLike, *, every: int = 1, max_frames: int | None = None,
                keep_images: bool | None = None, progress: bool = False) -> Result | Results: ...

    def predict(self, source: Any, *, every: int = 1, max_frames: int | None = None,
                keep_images: bool | None = None, progress: bool = False) -> Result | Results:
        """One :class:`Result` for an image; :class:`Results` for a list or tuple of images (paths,
        arrays, PIL images, bytes: one result each, in order; what cannot be read is in ``.failed``,
        as a folder's, with its place in the list), for a folder (its images, then its videos'
        frames, as ``ferkit predict`` reads it, ``every`` and ``max_frames`` for each video;
        a webcam runs until ``max_frames``, or until interrupted (Ctrl+C, a notebook's stop): its
        frames so far are returned;
        ``.failed`` lists the unreadable files and a video's lost frames, ``.ignored`` the files
        that are neither images nor videos by their name, hidden files and hidden folders), a video file,
        a webcam or a :class:`~ferkit.io.VideoReader` (one per processed frame; the reader is left
        open). One image's pixels are kept (``keep_images=False``: not); a folder's and a video's
        are not unless ``keep_images`` (a folder of large photos would fill the memory): a folder's
        :meth:`Result.plot` reads its file again; for a video's frames use :meth:`stream` to draw
        them as they come. (Type checkers: an array, a PIL image or bytes
        give a :class:`Result`, a webcam index a :class:`Results`; a path may be either: narrow it
        with ``isinstance``, or call :meth:`analyze` for one image.)"""
        if isinstance(source, (str, os.PathLike)) and not str(source).strip():
            raise FerkitError("an empty path (no file or folder named)")
        check_whole("every", every)
        if max_frames is not None:
            check_whole("max_frames", max_frames, none=" (None: no limit)")
        if isinstance(source, (list, tuple)):
            return self._predict_list(source, keep_images, progress)
        kind = "video" if isinstance(source, VideoReader) else source_kind(source)
        if kind == "image":
            return self.analyze(source, keep_image=keep_images is not False)
        keep = bool(keep_images)
        if kind == "folder":
            unreadable: list[Failure] = []
            files, ignored = folder_files(source, unreadable, hidden=True, videos=True)
            # what could not be listed comes first, as `ferkit predict` lists it; each file that cannot
            # be read where it was met (at: the results before it)
            failed = [Failure(f.source, f.error, at=0) for f in unreadable]
            failed += [] if files else [Failure(str(source), "folder holds no image or video files")]
            res = Results(failed=failed, source=str(source), ignored=ignored, classes=self.classes)
            # its videos after its photos, as `ferkit predict` reads a folder: each video's frames (their
            # source the video's path, their frame index), its lost frames among them
            videos = [f for f in files if is_video_file(f)]
            files = [f for f in files if not is_video_file(f)]
            it = files
            if progress:
                from tqdm.auto import tqdm

                it = tqdm(files, desc="predicting", unit="img")
            for f in it:
                try:
                    res.append(self.analyze(f, keep_image=keep))
                except FerkitError as e:
                    res.failed.append(Failure(str(f), _reason(e, str(f)), at=len(res)))
            for v in videos:
                try:
                    reader = VideoReader(v)
                except FerkitError as e:
                    if v.suffix.lower() == ".ts":  # (as `ferkit predict` says it: maybe TypeScript)
                        res.ignored.append((str(v), TS_NOT_VIDEO))
                    else:
                        res.failed.append(Failure(str(v), _reason(e, str(v)), at=len(res)))
                    continue
                start = len(res)
                try:
                    with reader:
                        res.extend(self._video_frames(reader, every, max_frames, keep, progress))
                except FerkitError as e:  # (no readable frame at all): the folder goes on, as ferkit predict's
                    res.failed.append(Failure(str(v), _reason(e, str(v)), at=start))
                    continue
                # its lost frames among its frames; a run of a video with no frame read, where the video was
                res.failed += [Failure(f.source, f.error, f.frames, f.step, start)
                               for f in frame_failures(reader.name, reader.errors, every)]
            return res
        given = isinstance(source, VideoReader)  # (the caller's: left open, as stream leaves it)
        reader = source if given else VideoReader(source)
        res = Results(source=reader.name, fps=reader.fps, classes=self.classes)
        with contextlib.nullcontext() if given else reader:
            try:
                for r in self._video_frames(reader, every, max_frames, keep, progress):
                    res.append(r)
            except KeyboardInterrupt:
                if not reader.is_camera:
                    raise
                # a camera runs until stopped (without max_frames): interrupted, its frames so far are the result
                import warnings

                warnings.warn(f"{reader.name}: interrupted after {len(res)} frame(s): those are returned",
                              FerkitWarning, stacklevel=2)
        res.failed = frame_failures(reader.name, reader.errors, every)
        return res

    def _video_frames(self, reader: VideoReader, every: int, max_frames: int | None, keep: bool,
                      progress: bool) -> Iterator[Result]:
        """A video's results as :meth:`predict` collects them: on a bar of its frames (``progress``),
        their pixels dropped unless ``keep``."""
        for r in _frames_bar(self.stream(reader, every=every, max_frames=max_frames), reader, every, max_frames,
                             progress):
            if not keep:
                r.image = None
            yield r

    def _predict_list(self, items: list | tuple, keep_images: bool | None, progress: bool) -> Results:
        """Each image of a list in turn. Pixels given in memory are kept (they are in memory already;
        ``keep_images=False``: not), a file's are not unless ``keep_images``, as a folder's. A folder or
        a video inside the list is a failure that says to give it on its own (its results would not
        be one per item)."""
        res = Results(source=f"{type(items).__name__} of {len(items)}", classes=self.classes)
        it: Any = items
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(items, desc="predicting", unit="img")
        for i, item in enumerate(it):
            name = (str(item) if isinstance(item, (str, os.PathLike))
                    else f"[{i}] {_pil_file(item) or type(item).__name__}")
            try:
                kind = source_kind(item)
                if kind != "image":
                    raise FerkitError(f"{name}: a {kind} inside a list: give it to predict on its own")
                path = isinstance(item, (str, os.PathLike))
                keep = bool(keep_images) if path else keep_images is not False
                res.append(self.analyze(item, source=None if path else name, keep_image=keep))
            except FerkitError as e:
                res.failed.append(Failure(name, _reason(e, name), at=len(res)))
        return res

    def stream(self, source: Any, *, every: int = 1, max_frames: int | None = None,
               fps: float | None = None, name: str | None = None) -> Iterator[Result]:
        """Results frame by frame for a video file, webcam index or :class:`~ferkit.io.VideoReader`,
        or frames the caller reads: a ``cv2.VideoCapture`` the caller opened (an IP camera's
        stream; BGR, as OpenCV reads; left open) or an iterable of images (arrays RGB or gray, PIL
        images, as :meth:`analyze` takes them). Every ``every``-th frame is processed; faces carry
        track ids; probabilities are smoothed per track when ``smooth`` > 0. ``fps`` gives an
        iterable's frames their times (frame / fps; without it their time is None) and overrides a
        capture's own; ``name`` is the results' ``source`` for those (default "frames", "VideoCapture").

        A file's frames that could not be read (unreadable, damaged) are skipped: a video named here says
        them in one :class:`~ferkit.FerkitWarning` at its end; a :class:`~ferkit.io.VideoReader` given lists
        them in its ``errors`` (:func:`ferkit.io.frame_failures` groups them in runs), as :meth:`predict`
        lists them in its results' ``failed``."""
        check_whole("every", every)
        if max_frames is not None:
            check_whole("max_frames", max_frames, none=" (None: no limit)")
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not 0 < fps < 1e6):
            raise FerkitError(f"fps must be a positive number of frames a second, got {fps!r}")
        if _FrameSource.takes(source):
            source = _FrameSource(source, fps, name)
        elif not isinstance(source, (VideoReader, str, os.PathLike, int)) or isinstance(source, bool):
            raise FerkitError(f"stream reads a video file, a webcam index, a VideoReader, a cv2.VideoCapture or an "
                              f"iterable of frames, not a {type(source).__name__} (for one image use analyze or "
                              f"predict)")
        elif fps is not None or name is not None:  # (a file's own rate and name: not overridden silently)
            raise FerkitError("fps and name are for a cv2.VideoCapture or frames you give; a video file, a webcam "
                              "index or a VideoReader has its own rate and name")
        if isinstance(source, (str, os.PathLike)):
            if os.path.isdir(source):
                raise FerkitError(f"{source}: a folder; stream reads a video file or a webcam (predict reads folders)")
            if is_image_file(source) and Path(source).suffix.lower() != ".gif":  # (an animated GIF streams)
                raise FerkitError(f"{source}: an image; stream reads a video file or a webcam (for one image use "
                                  f"predict or analyze)")
        reader = source if isinstance(source, (VideoReader, _FrameSource)) else VideoReader(source)
        # with every > 1 a face moves every-fold between processed frames: the distance gate
        # widens with it (until a track's velocity is known, after its second sighting)
        tracker = Tracker(smooth=self.smooth, max_age=max(3, 15 // every), dist=0.6 * min(every, 4))
        can_refine = hasattr(self.detector, "refine") and self.detect_every > 1
        n = 0
        try:
            for idx, t, rgb in reader:
                if idx % every:
                    continue
                prev = tracker.boxes()
                if can_refine and n % self.detect_every and len(prev):
                    dets = self.detector.refine(rgb, prev)  # type: ignore[attr-defined]
                    if len(dets) < len(prev):  # lost someone: look again properly
                        dets = self.detector.detect(rgb)
                    else:
                        _keep_sizes(dets, prev)
                    dets = self._keep(dets, tracker)
                else:
                    dets = self._keep(self.detector.detect(rgb), tracker)
                probs = self.classify(self.crops(rgb, dets))
                ids = tracker.update(np.stack([d.box for d in dets]) if dets else np.zeros((0, 4)))
                past = {t.id for t in tracker.tracks if t.probs is not None}  # (a new track: its own frame)
                faces = [self._face(d, tracker.smooth_probs(tid, p), tid, self.smooth if tid in past else 0.0)
                         for d, p, tid in zip(dets, probs, ids)]
                # in track order: a person keeps their place frame to frame (by detection score, the CSV's
                # `face 1` was one person in some frames and the other in the rest)
                faces.sort(key=lambda f: f.track_id)
                yield Result(reader.name, rgb.shape[1], rgb.shape[0], faces, frame=idx,
                             time=None if t is None else round(t, 4), image=rgb, classes=self.classes)
                n += 1
                if max_frames is not None and n >= max_frames:
                    break
            if reader is not source and isinstance(reader, VideoReader) and reader.errors:
                ended = [e for e in reader.errors if e[1].startswith(VideoReader.CAMERA_STOPPED)]
                if ended:  # (the stream's end, not a frame lost)
                    warnings.warn(f"{reader.name}: {ended[0][1]}", FerkitWarning, stacklevel=2)
                lost = frame_failures(reader.name, [e for e in reader.errors if e not in ended], every)
                if lost:
                    warnings.warn(f"{reader.name}: {sum(f.lost for f in lost)} frame(s) not analysed: "
                                  + "; ".join(f"{f.span}: {f.error}" for f in lost[:5])
                                  + (f"; and {len(lost) - 5} more runs" if len(lost) > 5 else ""),
                                  FerkitWarning, stacklevel=2)
        finally:
            if reader is not source:
                reader.close()


def _is_capture(source: Any) -> bool:
    """A ``cv2.VideoCapture`` (OpenCV's class: a stand-in put in its place, a test's, is no class)."""
    vc = getattr(cv2, "VideoCapture", None)
    return isinstance(vc, type) and isinstance(source, vc)


class _FrameSource:
    """Frames the caller reads, as :class:`~ferkit.io.VideoReader` yields them, ``(index, time,
    rgb)``: from a ``cv2.VideoCapture`` (BGR; its position's time from the first frame read, else
    index / fps; the capture stays open: it is the caller's) or an iterable of images
    (``read_image``'s inputs; time index / fps, None without fps). A frame that is the caller's
    array is copied (a reused buffer)."""

    def __init__(self, source: Any, fps: float | None, name: str | None) -> None:
        self.source, self.fps, self.fps_given = source, fps, fps is not None
        self.capture = _is_capture(source)
        self.name = name or ("VideoCapture" if self.capture else "frames")
        if self.capture and not source.isOpened():
            raise FerkitError(f"{self.name}: the cv2.VideoCapture is not open (it could not open its source, or "
                              f"was released)")
        if self.capture and fps is None:
            own = source.get(cv2.CAP_PROP_FPS)
            self.fps = own if 0 < own < 1000 else None

    @staticmethod
    def takes(source: Any) -> bool:
        """A capture, or an iterable that is no single image or name (a str, bytes, an array, a PIL
        image iterate too: each is one image or one file, not frames)."""
        if _is_capture(source):
            return True
        return (hasattr(source, "__iter__") and not is_file_object(source)  # (a file iterates by lines)
                and not isinstance(source, (str, bytes, bytearray, memoryview, np.ndarray, Image.Image, dict,
                                            VideoReader)))

    def __iter__(self) -> Iterator[tuple[int, float | None, np.ndarray]]:
        if self.capture:
            idx, first = 0, None
            while True:
                ok, bgr = self.source.read()
                if not ok or bgr is None:
                    return
                ms = self.source.get(cv2.CAP_PROP_POS_MSEC)
                if self.fps_given:  # (the caller's rate over the capture's own clock)
                    t = idx / self.fps
                else:
                    # from the first frame read, as a file's and a camera's: a capture moved on before (or a
                    # camera whose stamps count from the computer's start) gave frame 0 a time of minutes
                    if idx == 0 and math.isfinite(ms) and ms >= 0:
                        first = ms
                    if first is not None and (idx == 0 or ms > first):
                        t = (ms - first) / 1000
                    else:
                        t = 0.0 if idx == 0 else (idx / self.fps if self.fps else None)
                rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB if bgr.ndim == 2 else cv2.COLOR_BGR2RGB)
                yield idx, t, rgb
                idx += 1
        skipped = 0
        for idx, frame in enumerate(self.source):
            if frame is None or (isinstance(frame, np.ndarray) and frame.size == 0):
                # a camera read that failed: skipped, its number kept (the stream ended there, and an app's
                # tracks with it); said at the first, and the count at the end
                if not skipped:
                    warnings.warn(f"{self.name}: frame {idx} is {'None' if frame is None else 'empty'} (a camera "
                                  f"read that failed?): skipped, as any more such will be", FerkitWarning,
                                  stacklevel=3)
                skipped += 1
                continue
            rgb = read_image(frame, mode="RGB", name=f"{self.name}[{idx}]")
            if isinstance(frame, np.ndarray) and np.may_share_memory(rgb, frame):
                rgb = rgb.copy()
            yield idx, (idx / self.fps if self.fps else None), rgb
        if skipped > 1:
            warnings.warn(f"{self.name}: {skipped} frames skipped in all (None or empty)", FerkitWarning, stacklevel=3)

    def close(self) -> None:  # (the capture and the iterable are the caller's)
        pass


def _frames_bar(results: Iterator[Result], reader: VideoReader, every: int, max_frames: int | None,
                progress: bool) -> Iterator[Result]:
    """``results`` as they come, counted on a progress bar (``progress``) of the video's frames to be
    processed (as its header says; none for a camera)."""
    if not progress:
        yield from results
        return
    from tqdm.auto import tqdm

    total = -(-reader.frame_count // every) if reader.frame_count else None
    if total is not None and max_frames is not None:
        total = min(total, max_frames)
    with tqdm(total=total, desc=Path(reader.name).name, unit="frame") as bar:
        for r in results:
            bar.update(1)
            yield r


def _keep_sizes(dets: list[Detection], prev: np.ndarray) -> None:
    """Re-located faces keep the size of the box they were re-located from (that of the last full
    detection), about their new centre: O-Net's box from a squared box differs from the full
    pipeline's, and each re-location starting from the last one made a still face's box grow and
    shrink with the period of ``detect_every``. The landmarks, which align the face, are O-Net's."""
    if not len(dets) or not len(prev):
        return
    match = iou_matrix(np.stack([d.box for d in dets]), np.asarray(prev, np.float64)).argmax(1)
    for d, j in zip(dets, match):
        cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
        w, h = prev[j][2] - prev[j][0], prev[j][3] - prev[j][1]
        d.box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dtype=np.float64)


def _pil_file(image: Any) -> str:
    """The file a PIL image was opened from (``Image.open(path)``), or a file object reads
    (``open(path, "rb")``), or ''."""
    name = getattr(image, "filename", "") if isinstance(image, Image.Image) else (file_object_name(image) or "")
    return name if isinstance(name, str) else ""


def _reason(e: Exception, name: str) -> str:
    """An error's message without the leading ``name: `` (the name is listed beside it)."""
    msg = str(e)
    return msg[len(name) + 2:] if msg.startswith(name + ": ") else msg
