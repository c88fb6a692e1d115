"""Face alignment: a similarity transform of the 5 landmarks onto a fixed template.

The template is where the five points sit, on average, in the FER2013 crops ferkit's models
are trained on (measured with ``benchmarks/align_template.py`` on FER2013 Training faces and
made left-right symmetric), so an aligned face from a photo looks like a training face:
eyes at 38% of the height, mouth corners at 78%, a little forehead and chin.

Coordinates are fractions of the output width and height; :func:`template` scales them to a
model's input size. :func:`regions` names the boxes that region-based models (PCNN) crop: the
two eyes, the two cheeks and the mouth, in the aligned frame. "left" means the image's left
(the subject's right), as for the landmarks.
"""

from __future__ import annotations

import cv2
import numpy as np

#: image-left eye, image-right eye, nose tip, image-left and image-right mouth corners
#: (fractions of width, height); from ``docs/align_template.json``
TEMPLATE = np.array([[0.3133, 0.3826], [0.6867, 0.3826], [0.5, 0.5956], [0.3463, 0.7792], [0.6537, 0.7792]])

REGION_NAMES = ("left_eye", "right_eye", "left_cheek", "right_cheek", "mouth")


def template(size: tuple[int, int]) -> np.ndarray:
    """The template in pixels of an output of ``(height, width)``."""
    h, w = size
    return TEMPLATE * [w, h]


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation; no reflection) that maps the
    points ``src`` onto ``dst`` best in the least-squares sense (Umeyama 1991)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    r = u @ np.diag(d) @ vt
    var = (s0 ** 2).sum() / len(src)
    scale = (sig * d).sum() / var if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * r
    m[:, 2] = md - scale * r @ ms
    return m


def align(img: np.ndarray, landmarks: np.ndarray, size: tuple[int, int],
          shrunk: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The face with ``landmarks`` (``[5, 2]``, image pixels) warped to ``size`` (height, width)
    so that its points land on the template. Returns (aligned image, 2x3 matrix image->aligned).
    Pixels outside the image repeat its border. Shrinking by more than 2x first blurs the image
    (area-averaged), so small outputs do not alias.

    ``shrunk``: a dict kept by the caller for the faces of one image: each blurred copy of ``img``
    is made once and reused by the other faces of the same size class (the same pixels; several
    faces of a 640x480 frame otherwise resize the whole frame once each)."""
    h, w = size
    m = similarity(landmarks, template(size))
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    src, pre = img, 1.0
    if scale < 0.5:  # downscale first (area filter), then warp at the nearer scale
        pre = 1.0 / (2 ** int(np.floor(np.log2(1 / scale))))
        src = None if shrunk is None else shrunk.get(pre)
        if src is None:
            src = cv2.resize(img, (max(1, round(img.shape[1] * pre)), max(1, round(img.shape[0] * pre))),
                             interpolation=cv2.INTER_AREA)
            if shrunk is not None:
                shrunk[pre] = src
        m2 = similarity(np.asarray(landmarks) * pre, template(size))
    else:
        m2 = m
    out = cv2.warpAffine(src, m2, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, m


def is_whole_image(box: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether ``box`` ``[x1, y1, x2, y2]`` is the whole of an image of ``shape`` (``--detector none``:
    the image is the face crop, resized as the datasets' images are, not cut out)."""
    return bool(np.array_equal(np.asarray(box, np.float64), [0.0, 0.0, float(shape[1]), float(shape[0])]))


def crop_box(img: np.ndarray, box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The box ``[x1, y1, x2, y2]`` (may reach outside the image: border repeated) resized to ``size``."""
    h, w = size
    x1, y1, x2, y2 = (float(v) for v in box)
    sx, sy = w / max(x2 - x1, 1e-6), h / max(y2 - y1, 1e-6)
    m = np.array([[sx, 0, -x1 * sx], [0, sy, -y1 * sy]])
    interp = cv2.INTER_AREA if sx < 1 and sy < 1 else cv2.INTER_LINEAR
    if interp == cv2.INTER_AREA:
        xi1, yi1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
        xi2, yi2 = min(img.shape[1], int(np.ceil(x2))), min(img.shape[0], int(np.ceil(y2)))
        if xi2 - xi1 == round(x2 - x1) and yi2 - yi1 == round(y2 - y1) and xi1 == x1 and yi1 == y1:
            return cv2.resize(img[yi1:yi2, xi1:xi2], (w, h), interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def transform_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to ``[N, 2]`` points."""
    pts = np.asarray(pts, np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def regions(size: tuple[int, int]) -> dict[str, list[int]]:
    """Named boxes ``[x, y, w, h]`` (pixels of an aligned face of ``size`` = (height, width)):
    left_eye, right_eye, left_cheek, right_cheek, mouth. Derived from the template: eye boxes
    are centred on the eyes, 0.8 x 0.6 eye distances; cheeks sit under the eyes beside the
    nose, 0.7 x 0.7; the mouth box spans the corners plus 0.3 eye distances each side and
    0.7 eye distances high. Clipped to the frame."""
    h, w = size
    t = template(size)
    d = float(t[1, 0] - t[0, 0])
    boxes = {
        "left_eye": (t[0, 0], t[0, 1], 0.8 * d, 0.6 * d),
        "right_eye": (t[1, 0], t[1, 1], 0.8 * d, 0.6 * d),
        "left_cheek": (t[0, 0] - 0.05 * d, (t[0, 1] + t[3, 1]) / 2 + 0.1 * d, 0.7 * d, 0.7 * d),
        "right_cheek": (t[1, 0] + 0.05 * d, (t[1, 1] + t[4, 1]) / 2 + 0.1 * d, 0.7 * d, 0.7 * d),
        "mouth": ((t[3, 0] + t[4, 0]) / 2, (t[3, 1] + t[4, 1]) / 2, t[4, 0] - t[3, 0] + 0.6 * d, 0.7 * d),
    }
    out = {}
    for k, (cx, cy, bw, bh) in boxes.items():
        x1, y1 = max(0, int(round(cx - bw / 2))), max(0, int(round(cy - bh / 2)))
        x2, y2 = min(w, int(round(cx + bw / 2))), min(h, int(round(cy + bh / 2)))
        out[k] = [x1, y1, x2 - x1, y2 - y1]
    return out
