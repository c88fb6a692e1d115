"""Face detectors behind one interface: ``detector.detect(rgb) -> [Detection, ...]``.

* ``mtcnn`` (default): boxes, scores and 5 landmarks (see :mod:`ferkit.faces.mtcnn`);
* ``haar``: OpenCV's frontal-face Haar cascade, light and landmark-free; its landmarks are
  estimated from the box (where they sit on average, measured by
  ``benchmarks/align_template.py``) and flagged ``estimated``;
* ``none``: the whole image is the face (inputs that are already face crops).

Very large images are searched on a copy whose long side is at most ``max_side`` pixels and
the results mapped back, so a 50 MP photo costs no more than a 4 MP one.
"""

from __future__ import annotations

import math
import numbers
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import FerkitError
from .mtcnn import THRESHOLDS

#: where MTCNN's five landmarks sit inside a Haar-cascade box, as fractions of its width and height
#: (median over FER2013 Training faces, made left-right symmetric; ``benchmarks/align_template.py``)
HAAR_LANDMARKS = np.array([[0.3105, 0.3831], [0.6895, 0.3831], [0.5, 0.6059], [0.3419, 0.7969], [0.6581, 0.7969]])


@dataclass
class Detection:
    """One face: ``box`` as ``[x1, y1, x2, y2]`` floats in image pixels, ``score`` in [0, 1],
    ``landmarks`` ``[5, 2]`` (image-left eye, image-right eye, nose, image-left and image-right
    mouth corners) or None, and whether those landmarks were ``estimated`` from the box."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray | None = None
    estimated: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def xywh(self) -> list[int]:
        x1, y1, x2, y2 = self.box
        return [int(round(x1)), int(round(y1)), int(round(x2 - x1)), int(round(y2 - y1))]


class Detector:
    name = ""

    def __init__(self, max_side: int = 2048) -> None:
        if isinstance(max_side, bool) or not isinstance(max_side, numbers.Real) or not 32 <= max_side < 1e6:
            from ..errors import FerkitError

            raise FerkitError(f"max_side must be a number of pixels, 32 or more (below a million); got {max_side!r}")
        self.max_side = int(max_side)

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        raise NotImplementedError

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an ``HxWx3`` uint8 RGB image, best first."""
        h, w = rgb.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        if s >= 1.0:
            return self._detect(rgb)
        small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        dets = self._detect(small)
        for d in dets:
            d.box = d.box / s
            if d.landmarks is not None:
                d.landmarks = d.landmarks / s
        return dets

    def release_memory(self) -> None:
        """Hand back memory a runtime keeps after a large image (MTCNN's onnxruntime arenas); nothing here."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MTCNNDetector(Detector):
    name = "mtcnn"

    def __init__(self, min_face_size: int = 20, thresholds: tuple[float, float, float] = THRESHOLDS,
                 factor: float = 0.709, max_side: int = 2048, threads: int | None = None) -> None:
        from .mtcnn import MTCNN

        super().__init__(max_side)
        self.net = MTCNN(min_face_size, thresholds, factor, threads)

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        boxes, scores, lms = self.net.detect(rgb)
        return [Detection(b, float(s), lm) for b, s, lm in zip(boxes, scores, lms)]

    def refine(self, rgb: np.ndarray, boxes: np.ndarray) -> list[Detection]:
        """Re-locate known faces (e.g. last frame's) with O-Net alone: a video fast path."""
        b, s, lm = self.net.refine(rgb, boxes)
        return [Detection(bb, float(ss), ll) for bb, ss, ll in zip(b, s, lm)]

    def release_memory(self) -> None:
        self.net.release_memory()

    def __repr__(self) -> str:
        c = self.net.cfg
        return f"MTCNNDetector(min_face_size={c.min_face_size}, thresholds={c.thresholds}, factor={c.factor})"


class HaarDetector(Detector):
    name = "haar"

    def __init__(self, min_face_size: int = 20, scale_factor: float = 1.1, min_neighbors: int = 5,
                 max_side: int = 2048) -> None:
        super().__init__(max_side)
        if not min_face_size >= 1 or not scale_factor > 1 or not min_neighbors >= 0:
            raise FerkitError(f"Haar detector: min_face_size must be >= 1, scale_factor > 1 and min_neighbors >= 0; "
                              f"got {min_face_size}, {scale_factor}, {min_neighbors}")
        self._path = str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
        # one cascade per thread: OpenCV's CascadeClassifier keeps per-call state, and one shared by
        # threads (a Recognizer used from a thread pool, the HTTP server's workers) failed an assertion
        self._local = threading.local()
        self.cascade  # noqa: B018 - loaded now: a missing cascade is said at once
        self.min_face_size, self.scale_factor, self.min_neighbors = int(min_face_size), scale_factor, min_neighbors

    @property
    def cascade(self) -> cv2.CascadeClassifier:
        """This thread's cascade (loaded on its first use in the thread)."""
        c = getattr(self._local, "cascade", None)
        if c is None:
            c = cv2.CascadeClassifier(self._path)
            if c.empty():
                raise FerkitError("OpenCV's Haar face cascade is missing (opencv-python-headless<5 ships it)")
            self._local.cascade = c
        return c

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        faces, _, weights = self.cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_face_size, self.min_face_size), outputRejectLevels=True)
        out = []
        for (x, y, w, h), wt in zip(np.asarray(faces).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            box = np.array([x, y, x + w, y + h], dtype=np.float64)
            lm = HAAR_LANDMARKS * [w, h] + [x, y]
            # the cascade's stage weight is unbounded; squash it to (0, 1) so scores compare across detectors
            out.append(Detection(box, float(1 / (1 + np.exp(-float(wt)))), lm, estimated=True))
        out.sort(key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        return out


class WholeImage(Detector):
    """The input is already a face crop: one 'face', the whole image."""

    name = "none"

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        return [Detection(np.array([0.0, 0.0, w, h]), 1.0, None)]

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        return self._detect(rgb)


DETECTORS = {"mtcnn": MTCNNDetector, "haar": HaarDetector, "none": WholeImage}


def create_detector(name: str = "mtcnn", **options) -> Detector:
    """A detector by name: ``mtcnn`` (default), ``haar`` or ``none``. Options go to its class
    (e.g. ``min_face_size``); options a detector does not take are ignored."""
    import inspect

    if isinstance(name, Detector):
        return name
    if name not in DETECTORS:
        raise FerkitError(f"unknown detector {name!r}; choose from: {', '.join(DETECTORS)}")
    cls = DETECTORS[name]
    mfs = options.get("min_face_size")
    if mfs is not None and (isinstance(mfs, bool) or not isinstance(mfs, numbers.Real) or not math.isfinite(mfs)):
        raise FerkitError(f"min_face_size (--min-face) must be a number of pixels, got {mfs!r}")
    params = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in options.items() if k in params and v is not None})
