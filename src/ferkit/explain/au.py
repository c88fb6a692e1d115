"""Facial action units (FACS) in the aligned face frame, and the map-to-AU distance of Zhu et al.

**Where each AU acts.** ferkit aligns every face so that its 5 landmarks sit on
:data:`ferkit.faces.align.TEMPLATE` (measured on FER2013 crops; in a 48x48 crop: eyes at
(15.0, 18.4) and (33.0, 18.4), nose tip (24.0, 28.6), mouth corners (16.6, 37.4) and
(31.4, 37.4)). Each AU gets a point (two, mirrored, where the AU is bilateral) placed relative
to one of these anchors, in units of the inter-ocular distance ``d`` (17.9 px at 48x48):
``dx`` points *outward* from the face's midline (mirrored for the two sides), ``dy`` down.
The points are where the AU's visible change (FACS manual: the moved skin, bulge or furrow)
is centred, not where the muscle lies:

====  ======================  ==============  ======  ======  ===========================================
AU    name                    anchor          dx      dy      where (48x48 px, image-left point)
====  ======================  ==============  ======  ======  ===========================================
1     inner brow raiser       eye             -0.25   -0.42   inner end of the brow (19.5, 10.8)
2     outer brow raiser       eye             +0.30   -0.38   outer end of the brow (9.7, 11.6)
4     brow lowerer            between eyes     0      -0.30   glabella, brows drawn together (24.0, 13.0)
5     upper lid raiser        eye              0      -0.12   upper eyelid (15.0, 16.2)
6     cheek raiser            eye             +0.10   +0.40   cheek under the eye (13.2, 25.5)
7     lid tightener           eye              0      +0.12   lower eyelid (15.0, 20.5)
9     nose wrinkler           between eyes     0      +0.30   nose bridge (24.0, 23.7)
10    upper lip raiser        mouth corner    -0.20   -0.28   upper lip beside the philtrum (20.2, 32.4)
12    lip corner puller       mouth corner    +0.08   -0.10   lip corner, pulled up and out (15.2, 35.6)
15    lip corner depressor    mouth corner    +0.02   +0.18   below the lip corner (16.3, 40.6)
16    lower lip depressor     mouth corner    -0.25   +0.22   lower lip, off centre (21.1, 41.3)
17    chin raiser             mouth centre     0      +0.50   chin boss (24.0, 46.4)
20    lip stretcher           mouth corner    +0.25   +0.02   beside the lip corner (12.1, 37.8)
23    lip tightener           mouth corner    -0.22   +0.04   red of the lips, half way in (20.6, 38.1)
25    lips part               mouth centre     0       0      between the lips (24.0, 37.4)
26    jaw drop                mouth centre     0      +0.30   lower lip / jaw, mouth opened (24.0, 42.8)
====  ======================  ==============  ======  ======  ===========================================

Several mouth AUs lie within a few pixels of each other (AU10/12/15/16/20/23/25/26 in a
15x15 px patch at 48x48), and AU1/AU4 and AU5/AU7 are 4-5 px apart: location alone separates
them only roughly, which the report says where it matters.

**The distance function.** For feature map ``k`` and image ``n``, ``p[n, k]`` is where the
map's maximal response lies in the image (see :mod:`ferkit.explain.deconv`: the receptive-
field centre of the peak cell, ``rf``, or the peak of the map's deconvolution projection,
``deconv``). Its distance to AU ``a`` is the Euclidean distance from ``p`` to the nearer of the
AU's points, in inter-ocular distances::

    D[n, k, a] = min_{q in points(a)} || p[n, k] - q || / d

Zhu et al.'s abstract describes a score that *grows* as the response gets closer to an AU
("the greater the distance, the more sensitive the feature map is to the facial feature unit"),
i.e. a closeness; :func:`closeness` gives ``exp(-D^2 / 2 s^2)`` (``s = radius``) for that, and
every decision below uses ``D`` itself.

**From distances to detectors.** Per image, a map's peak *sits on* AU ``a`` when ``a`` is the
nearest AU and ``D <= radius`` (default 0.5 d = 9 px at 48x48; farther peaks sit on no AU). Over
a dataset split, for each map: ``hits[k, a]`` is the fraction of the images where the map fires
(maximum > 0) in which its peak sits on ``a``. The map is assigned to the AU it most often sits
on; its *consistency* is that fraction, and its *lift* the ratio to chance: the fraction of the
places where a map with no preference puts its peak that sit on that AU. With ``--locate rf`` a peak
lies near a cell's receptive-field centre, so those places are the peaks of maps of random noise
located the same way (:func:`ferkit.explain.analysis.null_peaks`): against the frame's pixels, such
maps scored a lift of about 1.5 on a 6x6 layer and 2.5 on a 3x3 one; with ``--locate deconv`` they
are the frame's pixels. A map is a *detector* of its AU when its consistency is at
least ``min_consistency`` (default 1/3: on that AU in at least a third of the images).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..faces.align import TEMPLATE

#: AU number -> (name, anchor, dx outward, dy down, bilateral); offsets in inter-ocular distances
AUS: dict[int, tuple[str, str, float, float, bool]] = {
    1: ("inner brow raiser", "eye", -0.25, -0.42, True),
    2: ("outer brow raiser", "eye", 0.30, -0.38, True),
    4: ("brow lowerer", "eyes_mid", 0.0, -0.30, False),
    5: ("upper lid raiser", "eye", 0.0, -0.12, True),
    6: ("cheek raiser", "eye", 0.10, 0.40, True),
    7: ("lid tightener", "eye", 0.0, 0.12, True),
    9: ("nose wrinkler", "eyes_mid", 0.0, 0.30, False),
    10: ("upper lip raiser", "mouth", -0.20, -0.28, True),
    12: ("lip corner puller", "mouth", 0.08, -0.10, True),
    15: ("lip corner depressor", "mouth", 0.02, 0.18, True),
    16: ("lower lip depressor", "mouth", -0.25, 0.22, True),
    17: ("chin raiser", "mouth_mid", 0.0, 0.50, False),
    20: ("lip stretcher", "mouth", 0.25, 0.02, True),
    23: ("lip tightener", "mouth", -0.22, 0.04, True),
    25: ("lips part", "mouth_mid", 0.0, 0.0, False),
    26: ("jaw drop", "mouth_mid", 0.0, 0.30, False),
}

AU_NAMES: tuple[str, ...] = tuple(f"AU{n}" for n in AUS)

#: the prototypical AUs of each basic expression (EMFACS / Ekman & Friesen; as in the issue)
FACS: dict[str, tuple[int, ...]] = {
    "happy": (6, 12),
    "surprise": (1, 2, 5, 26),
    "sad": (1, 4, 15),
    "angry": (4, 5, 7, 23),
    "fear": (1, 2, 4, 5, 7, 20, 26),
    "disgust": (9, 15, 16),
    "neutral": (),
    "contempt": (12, 14),
}

DEFAULT_RADIUS = 0.5
DEFAULT_MIN_CONSISTENCY = 1 / 3


def interocular(size: tuple[int, int]) -> float:
    """Inter-ocular distance ``d`` in pixels of an aligned face of ``size`` = (height, width)."""
    h, w = size
    return float(np.hypot((TEMPLATE[1, 0] - TEMPLATE[0, 0]) * w, (TEMPLATE[1, 1] - TEMPLATE[0, 1]) * h))


def au_points(size: tuple[int, int] = (48, 48)) -> dict[str, np.ndarray]:
    """``{"AU1": [[x, y], [x, y]], "AU4": [[x, y]], ...}``: each AU's point(s) in pixels of an
    aligned face of ``size`` = (height, width) (image-left point first where bilateral)."""
    h, w = size
    t = TEMPLATE * [w, h]
    d = interocular(size)
    mid_x = (t[0, 0] + t[1, 0]) / 2
    anchors = {"eye": (t[0], t[1]), "mouth": (t[3], t[4]), "eyes_mid": ((t[0] + t[1]) / 2,),
               "mouth_mid": ((t[3] + t[4]) / 2,), "nose": (t[2],)}
    out = {}
    for n, (_, anchor, dx, dy, bilateral) in AUS.items():
        pts = []
        for a in anchors[anchor][: 2 if bilateral else 1]:
            side = -1.0 if a[0] < mid_x else 1.0 if a[0] > mid_x else 0.0
            pts.append([a[0] + side * dx * d, a[1] + dy * d])
        out[f"AU{n}"] = np.array(pts)
    return out


def au_table(size: tuple[int, int] = (48, 48)) -> list[dict]:
    """The AU table as rows (number, name, points in pixels of ``size``), for reports."""
    pts = au_points(size)
    return [{"au": f"AU{n}", "name": v[0], "anchor": v[1], "dx": v[2], "dy": v[3], "bilateral": v[4],
             "points": np.round(pts[f"AU{n}"], 2).tolist()} for n, v in AUS.items()]


def distances(peaks: np.ndarray, size: tuple[int, int] = (48, 48)) -> np.ndarray:
    """``D[..., a]``: distance of each peak ``[..., 2]`` (x, y pixels) to AU ``a`` (the nearer of
    its points), in inter-ocular distances; AUs in :data:`AU_NAMES` order."""
    peaks = np.asarray(peaks, np.float64)
    d = interocular(size)
    pts = au_points(size)
    out = np.empty(peaks.shape[:-1] + (len(AU_NAMES),))
    for i, name in enumerate(AU_NAMES):
        q = pts[name]  # [P, 2]
        diff = peaks[..., None, :] - q  # [..., P, 2]
        out[..., i] = np.sqrt((diff ** 2).sum(-1)).min(-1) / d
    return out


def closeness(dist: np.ndarray, radius: float = DEFAULT_RADIUS) -> np.ndarray:
    """A score that grows as a response gets closer to an AU: ``exp(-D^2 / (2 radius^2))``."""
    return np.exp(-np.asarray(dist) ** 2 / (2 * radius ** 2))


def nearest(dist: np.ndarray, radius: float = DEFAULT_RADIUS) -> np.ndarray:
    """Index of the AU each peak sits on (``D[..., a]`` from :func:`distances`); ``len(AU_NAMES)``
    (= "none") where even the nearest AU is farther than ``radius``."""
    idx = dist.argmin(-1)
    near = np.take_along_axis(dist, idx[..., None], -1)[..., 0]
    return np.where(near <= radius, idx, len(AU_NAMES))


def chance(size: tuple[int, int] = (48, 48), radius: float = DEFAULT_RADIUS,
           places: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For a peak at a uniformly random one of ``places`` (``[P, 2]`` x, y pixels: where a peak can
    be; None: every pixel of the frame): the probability that it sits on each AU (``[A + 1]``, last =
    none) and its mean distance to each AU (``[A]``)."""
    if places is None:
        h, w = size
        yy, xx = np.mgrid[:h, :w]
        pts = np.stack([xx.ravel(), yy.ravel()], -1).astype(np.float64)
    else:
        pts = np.asarray(places, np.float64).reshape(-1, 2)
    dist = distances(pts, size)
    idx = nearest(dist, radius)
    return np.bincount(idx, minlength=len(AU_NAMES) + 1) / len(idx), dist.mean(0)


@dataclass
class Assignment:
    """Which AU each of ``K`` feature maps detects (see the module docstring)."""

    hits: np.ndarray  #: [K, A + 1] fraction of firing images whose peak sits on each AU (last: none)
    mean_dist: np.ndarray  #: [K, A] mean distance (inter-ocular units) over firing images
    n_active: np.ndarray  #: [K] images in which the map fires (maximum > 0)
    au: np.ndarray  #: [K] index of the assigned AU (into AU_NAMES); -1 when the map never fires
    consistency: np.ndarray  #: [K] hits[k, au[k]]
    lift: np.ndarray  #: [K] consistency / chance of that AU
    detector: np.ndarray  #: [K] bool: consistency >= min_consistency
    chance: np.ndarray  #: [A + 1]
    chance_dist: np.ndarray  #: [A]
    radius: float
    min_consistency: float
    chance_places: int = 0  #: how many places stand for chance (the ``places`` given); 0: every pixel of the frame

    def detectors(self, a: int) -> np.ndarray:
        """Detector maps of AU index ``a``, most consistent first."""
        k = np.flatnonzero(self.detector & (self.au == a))
        return k[np.argsort(-self.consistency[k], kind="stable")]

    def to_dict(self) -> dict:
        maps = []
        for k in range(len(self.au)):
            a = int(self.au[k])
            maps.append({"map": k, "au": AU_NAMES[a] if a >= 0 else None,
                         "consistency": round(float(self.consistency[k]), 4), "lift": round(float(self.lift[k]), 3),
                         "mean_distance": round(float(self.mean_dist[k, a]), 4) if a >= 0 else None,
                         "detector": bool(self.detector[k]), "n_active": int(self.n_active[k]),
                         "none": round(float(self.hits[k, -1]), 4)})
        return {"radius": self.radius, "min_consistency": self.min_consistency, "maps": maps,
                "chance": {n: round(float(p), 4) for n, p in zip(AU_NAMES + ("none",), self.chance)},
                "chance_over": f"the peaks of {self.chance_places} maps of random noise" if self.chance_places
                else "the frame's pixels",
                "chance_mean_distance": {n: round(float(p), 4) for n, p in zip(AU_NAMES, self.chance_dist)},
                "detectors": {n: [int(k) for k in self.detectors(i)] for i, n in enumerate(AU_NAMES)}}


def assign(peaks: np.ndarray, active: np.ndarray, size: tuple[int, int] = (48, 48),
           radius: float = DEFAULT_RADIUS, min_consistency: float = DEFAULT_MIN_CONSISTENCY,
           places: np.ndarray | None = None) -> Assignment:
    """Assign each map to an AU from its peaks ``[N, K, 2]`` (x, y pixels) over ``N`` images and
    where it fires, ``active`` ``[N, K]`` (bool). ``places``: where a map with no preference puts its
    peak (``[..., 2]`` x, y pixels: with ``--locate rf``, :func:`ferkit.explain.analysis.null_peaks`),
    for chance; None: anywhere in the frame."""
    peaks = np.asarray(peaks, np.float64)
    active = np.asarray(active, bool)
    n, k = active.shape
    A = len(AU_NAMES)
    dist = distances(peaks, size)  # [N, K, A]
    idx = nearest(dist, radius)  # [N, K]
    n_active = active.sum(0)
    hits = np.zeros((k, A + 1))
    for a in range(A + 1):
        hits[:, a] = ((idx == a) & active).sum(0)
    denom = np.maximum(n_active, 1)[:, None]
    hits = hits / denom
    mean_dist = (dist * active[..., None]).sum(0) / denom
    au = np.where(n_active > 0, hits[:, :A].argmax(1), -1)
    cons = np.where(au >= 0, hits[np.arange(k), np.maximum(au, 0)], 0.0)
    p0, d0 = chance(size, radius, places)
    lift = np.where(au >= 0, cons / np.maximum(p0[np.maximum(au, 0)], 1e-9), 0.0)
    det = (au >= 0) & (cons >= min_consistency)
    n_places = 0 if places is None else int(np.asarray(places).size // 2)
    return Assignment(hits, mean_dist, n_active, au, cons, lift, det, p0, d0, radius, min_consistency, n_places)
