"""Feature maps to action units over a dataset split (Zhu et al. 2019), and the report.

:func:`analyse` runs a model over the face crops of a dataset split, and for every image and
every feature map of one layer records the map's maximal response, where it lies in the image
(:mod:`ferkit.explain.deconv`), and how much the map contributes to the true class's score
(gradient x activation, summed over the map). :mod:`ferkit.explain.au` turns the locations into
distances to the action units and assigns each map to the AU it most consistently sits on.

Per expression class, numbers per AU, over the AU's detector maps:

* **activation** ``z[c, a]`` (*specific*): every map's maximal response is standardised over the
  whole split (``(v - mean) / std`` per map); per image, the mean over the AU's detector maps
  minus the mean over all maps of the layer; then averaged over the images of class ``c``. > 0
  when the AU's detectors fire more, relative to the rest of the layer, on this expression than
  on average. The subtraction matters: some expressions raise every map's response (happy and
  surprise faces have teeth and wide-open eyes, high contrast; sad faces lower all of them),
  which would otherwise look like every AU's "usage". The raw mean (``z_raw``) is reported too;
* **evidence** ``e[c, a]``: the mean gradient x activation of the detector maps for the class
  score of the image's own (true) class, relative to the mean magnitude of one map's (so 1.0 =
  as much as an average map contributes): > 0 when the detectors push the network towards ``c``.

**Check against FACS** (:data:`ferkit.explain.au.FACS`): for each expression and each AU its
prototype has, "above average" means ``z[c, a] > 2 SE`` (SE: the standard error of the per-image
mean z over the expression's images), "below average" ``z[c, a] < -2 SE``. The network *agrees*
when the AU's detectors fire above average on that expression and it is one of the two
expressions they fire most for; *partly* when above average but other expressions drive them
more; *no difference* when neither above nor below; *disagrees* when below average; *untested*
when no map is a detector of that AU. Neutral has no AUs: the network agrees when no AU's
detectors fire above average on neutral faces. AUs whose detectors fire most (and above average)
for an expression whose prototype does not include them are listed as *unexpected*.

:func:`write_report` writes ``report.md``, ``report.json`` and the figures into a folder.
Pictures hold no dataset image: deconvolution projections averaged over many images, heat
maps and drawings of the AU points only.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..api import ExpressionModel
from ..data.base import FaceDataset
from ..data.transforms import normalize, to_float
from ..errors import FerkitError
from ..io import staged_files
from . import au as AU
from .deconv import _device, cells_to_pixels, peak_cells, project, projection_peaks, receptive_field_centres
from .layers import Capture, LayerInfo, default_layer, get_layer, list_layers, patched_relus


@dataclass
class AUAnalysis:
    """Everything :func:`analyse` measured (arrays over ``N`` images and ``K`` maps)."""

    model: str
    dataset: str
    split: str
    classes: tuple[str, ...]
    layer: LayerInfo
    locate: str
    size: tuple[int, int]
    labels: np.ndarray  #: [N] true class (model's order)
    preds: np.ndarray  #: [N]
    vmax: np.ndarray  #: [N, K] maximal response
    peaks: np.ndarray  #: [N, K, 2] its location (x, y) in input pixels
    attrib: np.ndarray  #: [N, K] gradient x activation for the true class
    assignment: AU.Assignment
    usage: np.ndarray  #: [C, A] specific activation z (NaN where the AU has no detector)
    usage_se: np.ndarray  #: [C, A] its standard error over the class's images
    usage_raw: np.ndarray  #: [C, A] raw activation z
    layer_z: np.ndarray  #: [C] mean z over all maps (what the specific z subtracts)
    evidence: np.ndarray  #: [C, A]
    facs: list[dict]
    unexpected: list[dict]
    projections: dict[str, list[dict]] = field(default_factory=dict)  #: AU -> [{map, n, mean, mean_abs}]
    seconds: float = 0.0
    n_total: int = 0  #: images in the split before --limit

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def accuracy(self) -> float:
        return float((self.preds == self.labels).mean()) if self.n else 0.0


def _usage(vmax: np.ndarray, attrib: np.ndarray, labels: np.ndarray, asg: AU.Assignment, n_classes: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(specific z, its standard error, raw z, evidence), each ``[C, A]``; NaN where an AU has
    no detector or a class no image. Raw z: the detectors' standardised maximal response; specific
    z: the same minus the mean over *all* maps on that image (some expressions, happy and
    surprise, raise every map's response: teeth and open eyes are high-contrast)."""
    mu, sd = vmax.mean(0), vmax.std(0)
    z = (vmax - mu) / np.where(sd > 0, sd, 1.0)
    base = z.mean(1)
    A = len(AU.AU_NAMES)
    spec = np.full((n_classes, A), np.nan)
    se = np.full((n_classes, A), np.nan)
    raw = np.full((n_classes, A), np.nan)
    evid = np.full((n_classes, A), np.nan)
    for a in range(A):
        ks = asg.detectors(a)
        if len(ks) == 0:
            continue
        for c in range(n_classes):
            sel = labels == c
            if not sel.any():
                continue
            per_image = z[sel][:, ks].mean(1)
            raw[c, a] = per_image.mean()
            d = per_image - base[sel]
            spec[c, a] = d.mean()
            se[c, a] = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.inf
            scale = np.abs(attrib[sel]).mean()
            evid[c, a] = attrib[sel][:, ks].mean() / scale if scale > 0 else 0.0
    return spec, se, raw, evid


def facs_check(usage: np.ndarray, se: np.ndarray, evidence: np.ndarray, classes: tuple[str, ...],
               present: np.ndarray, raw: np.ndarray | None = None) -> tuple[list[dict], list[dict]]:
    """The FACS table (see the module docstring) and the unexpected (class, AU) pairs, from the
    specific activation ``usage`` and its standard error ``se`` (``raw`` z is only reported).
    ``present[c]``: whether class ``c`` has images in the split."""
    raw = usage if raw is None else raw
    rows, unexpected = [], []
    idx = {n: i for i, n in enumerate(AU.AU_NAMES)}
    above = np.nan_to_num(usage - 2 * se, nan=-np.inf) > 0  # significantly above the AU's average
    below = np.nan_to_num(usage + 2 * se, nan=np.inf) < 0
    for c, cls in enumerate(classes):
        if not present[c] or cls not in AU.FACS:
            continue
        expected = [f"AU{n}" for n in AU.FACS[cls]]
        if not expected:
            tested = [a for a in range(len(AU.AU_NAMES)) if not np.isnan(usage[c, a])]
            up = [(AU.AU_NAMES[a], float(usage[c, a])) for a in tested if above[c, a]]
            rows.append({"class": cls, "au": None, "verdict": ("agrees" if not up else "disagrees") if tested
                         else "untested", "above_average": [[n, round(z, 3)] for n, z in up],
                         "max_z": _r(max((float(usage[c, a]) for a in tested), default=float("nan")))})
            continue
        for name in expected:
            if name not in idx:  # AU14 (contempt) has no location in the table
                rows.append({"class": cls, "au": name, "verdict": "untested", "why": "no location for this AU"})
                continue
            a = idx[name]
            col = usage[:, a]
            if np.isnan(col[c]):
                rows.append({"class": cls, "au": name, "verdict": "untested", "why": "no detector map"})
                continue
            valid = [i for i in range(len(classes)) if present[i] and not np.isnan(col[i])]
            rank = 1 + sum(1 for i in valid if col[i] > col[c])
            verdict = ("agrees" if rank <= 2 else "partly") if above[c, a] else "disagrees" if below[c, a] \
                else "no difference"
            rows.append({"class": cls, "au": name, "z": round(float(col[c]), 3), "se": round(float(se[c, a]), 3),
                         "z_raw": round(float(raw[c, a]), 3),
                         "rank": rank, "of": len(valid), "evidence": round(float(evidence[c, a]), 3),
                         "verdict": verdict,
                         "top_class": classes[int(np.nanargmax(np.where(present, col, np.nan)))]})
    for a, name in enumerate(AU.AU_NAMES):
        col = np.where(present, usage[:, a], np.nan)
        if np.all(np.isnan(col)):
            continue
        c = int(np.nanargmax(col))
        cls = classes[c]
        if cls in AU.FACS and int(name[2:]) not in AU.FACS[cls] and above[c, a]:
            unexpected.append({"au": name, "class": cls, "z": round(float(col[c]), 3),
                               "expected_in": [k for k, v in AU.FACS.items() if int(name[2:]) in v]})
    return rows, unexpected


def analyse(model: ExpressionModel, ds: FaceDataset, layer: str | None = None, *, locate: str = "rf",
            batch_size: int = 128, progress: bool = True, radius: float = AU.DEFAULT_RADIUS,
            min_consistency: float = AU.DEFAULT_MIN_CONSISTENCY, maps_per_au: int = 3, top_images: int = 24,
            n_total: int | None = None) -> AUAnalysis:
    """Map feature maps of ``layer`` (default: see :func:`~ferkit.explain.layers.default_layer`)
    to action units over the face crops ``ds`` (aligned like the template, at the model's input
    size). ``locate``: ``rf`` or ``deconv`` (see :mod:`ferkit.explain.deconv`)."""
    from ..engine.evaluate import align_labels

    if locate not in ("rf", "deconv"):
        raise FerkitError(f"unknown peak location method {locate!r}; choose rf or deconv")
    if not 0 < radius:
        raise FerkitError(f"the AU radius must be positive, got {radius}")
    for what, v in (("batch_size", batch_size), ("maps_per_au", maps_per_au), ("top_images", top_images)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise FerkitError(f"{what} must be a whole number, at least 1; got {v!r}")
    from .image import torch_model

    t0 = time.time()
    model = torch_model(model)
    net = model.net
    layers = list_layers(net, model.input_size)
    li = get_layer(net, layers, layer) if layer else default_layer(layers, "au", model.input_size, len(model.classes))
    keep, y, _ = align_labels(ds, model.classes)
    if len(keep) == 0:
        raise FerkitError(f"{ds.name} {ds.split}: no image of a class the model knows ({', '.join(model.classes)})")
    c, h, w = model.input_size
    if tuple(ds.images.shape[1:]) != (c, h, w):
        raise FerkitError(f"images are {tuple(ds.images.shape[1:])}, the model wants {(c, h, w)}")
    images = ds.images[torch.from_numpy(keep)]
    centres = receptive_field_centres(net, li.name, model.input_size)
    N, K = len(keep), li.shape[0]
    vmax = np.zeros((N, K), np.float32)
    peaks = np.zeros((N, K, 2), np.float32)
    attrib = np.zeros((N, K), np.float32)
    preds = np.zeros(N, np.int64)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=N, desc=f"au-analysis {li.name}", unit="img")
    dev = _device(net)
    yt = torch.from_numpy(y).to(dev)
    was_training = net.training
    net.eval()
    try:
        for s in range(0, N, batch_size):
            x = normalize(to_float(images[s:s + batch_size].to(dev)), model.mean, model.std)
            with patched_relus(net, "plain"), torch.enable_grad():
                cap = Capture(net, li.name)
                logits = cap.run(x)
                assert logits is not None and cap.out is not None
                a = cap.out
                (g,) = torch.autograd.grad(logits.gather(1, yt[s:s + batch_size, None]).sum(), a)
            a_np = a.detach().float().cpu().numpy()
            attrib[s:s + len(x)] = (g * a).sum((2, 3)).detach().float().cpu().numpy()
            preds[s:s + len(x)] = logits.detach().argmax(1).cpu().numpy()
            v, cells = peak_cells(a_np)
            vmax[s:s + len(x)] = v
            if locate == "rf":
                peaks[s:s + len(x)] = cells_to_pixels(cells, centres)
            else:
                b = len(x)
                proj = project(net, x, li.name, np.tile(np.arange(K), b), np.repeat(np.arange(b), K))
                peaks[s:s + b] = projection_peaks(proj.images).reshape(b, K, 2)
            if bar is not None:
                bar.update(len(x))
    finally:
        net.train(was_training)
        if bar is not None:
            bar.close()
    size = (h, w)
    active = vmax > 0
    # chance: where a map with no preference puts its peak, located as the maps' are (with rf, a peak lies near
    # a cell's receptive-field centre: on a 3x3 layer near one of 9 places, not anywhere in the frame)
    places = null_peaks(centres) if locate == "rf" else None
    asg = AU.assign(peaks, active, size, radius, min_consistency, places=places)
    usage, se, raw, evid = _usage(vmax, attrib, y, asg, len(model.classes))
    zall = (vmax - vmax.mean(0)) / np.where(vmax.std(0) > 0, vmax.std(0), 1.0)
    layer_z = np.array([zall[y == c].mean() if (y == c).any() else np.nan for c in range(len(model.classes))])
    present = np.bincount(y, minlength=len(model.classes)) > 0
    rows, unexpected = facs_check(usage, se, evid, model.classes, present, raw)
    res = AUAnalysis(model.name, ds.name, ds.split, model.classes, li, locate, size, y, preds, vmax, peaks, attrib,
                     asg, usage, se, raw, layer_z, evid, rows, unexpected, n_total=n_total or len(ds))
    res.projections = _average_projections(model, images, res, maps_per_au, top_images)
    res.seconds = time.time() - t0
    return res


def _average_projections(model: ExpressionModel, images: torch.Tensor, res: AUAnalysis, maps_per_au: int,
                         top_images: int) -> dict[str, list[dict]]:
    """For each AU's most consistent detector maps: deconvolution projections of the map's
    strongest activations, over the ``top_images`` images where it fires most while sitting on
    the AU, each scaled to a largest magnitude of 1, then averaged (signed, and magnitude)."""
    asg = res.assignment
    dist = AU.distances(res.peaks, res.size)
    idx = AU.nearest(dist, asg.radius)
    targets: list[tuple[str, int, np.ndarray]] = []
    for a, name in enumerate(AU.AU_NAMES):
        for k in asg.detectors(a)[:maps_per_au]:
            on = np.flatnonzero((idx[:, k] == a) & (res.vmax[:, k] > 0))
            top = on[np.argsort(-res.vmax[on, k], kind="stable")][:top_images]
            if len(top):
                targets.append((name, int(k), top))
    out: dict[str, list[dict]] = {}
    if not targets:
        return out
    samples = np.concatenate([t[2] for t in targets])
    maps = np.concatenate([np.full(len(t[2]), t[1]) for t in targets])
    uniq, inv = np.unique(samples, return_inverse=True)
    x = normalize(to_float(images[torch.from_numpy(uniq)]), model.mean, model.std)
    proj = project(model.net, x, res.layer.name, maps, inv)
    p = proj.images.numpy().astype(np.float64)
    peaks = projection_peaks(proj.images)
    s = 0
    for name, k, top in targets:
        part = p[s:s + len(top)]
        pk = peaks[s:s + len(top)]
        s += len(top)
        scale = np.abs(part).reshape(len(part), -1).max(1)
        part = part / np.where(scale > 0, scale, 1.0)[:, None, None, None]
        out.setdefault(name, []).append({"map": k, "n": len(top), "mean": part.mean(0),
                                         "mean_abs": np.abs(part).mean(0), "peak_mean": pk.mean(0),
                                         "consistency": float(asg.consistency[k])})
    return out


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------
def _r(x: float, n: int = 3) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), n)


NULL_MAPS = 20000  #: maps of random noise whose peaks stand for chance (--locate rf)


def null_peaks(centres: np.ndarray, n: int = NULL_MAPS, seed: int = 0) -> np.ndarray:
    """The peaks ``[n, 2]`` (x, y pixels) of ``n`` maps of independent Gaussian noise on a layer whose
    cells' receptive-field centres are ``centres`` (``[h, w, 2]``), located as ``--locate rf`` locates
    a map's (its strongest cell, refined by a parabola, through the centres): where a map that prefers
    no place puts its peak. Fixed ``seed``: the same chance every run."""
    h, w = centres.shape[:2]
    noise = np.random.default_rng(seed).standard_normal((n, 1, h, w)).astype(np.float32)
    return cells_to_pixels(peak_cells(noise)[1][:, 0], centres)


SMALL_SAMPLE = 500  #: fewer images than this: the report's numbers are said to be shaky


def small_sample_note(n: int) -> str | None:
    """What to say of a report on ``n`` images, when they are few."""
    if n >= SMALL_SAMPLE:
        return None
    return (f"{n} images only: a map's consistency rests on a few peaks each, and many maps pass --min-consistency "
            f"by chance; read these numbers from {SMALL_SAMPLE} images or more")


def to_json(res: AUAnalysis, command: str | None = None) -> dict:
    A = AU.AU_NAMES
    asg = res.assignment
    per_class_n = np.bincount(res.labels, minlength=len(res.classes))
    few = small_sample_note(res.n)
    return {**({"note": few} if few else {}),
        "model": res.model, "dataset": res.dataset, "split": res.split, "n_images": res.n,
        "n_images_in_split": res.n_total, "accuracy": round(res.accuracy, 4),
        "per_class_n": dict(zip(res.classes, per_class_n.tolist())),
        "layer": {"name": res.layer.name, "kind": res.layer.kind, "shape": list(res.layer.shape)},
        "locate": res.locate, "input_size": list(res.size), "interocular_px": round(AU.interocular(res.size), 3),
        "au_table": AU.au_table(res.size), "facs_prototypes": {k: [f"AU{n}" for n in v] for k, v in AU.FACS.items()},
        "assignment": asg.to_dict(),
        "n_detectors": int(asg.detector.sum()), "n_maps": int(len(asg.au)),
        "detectors_per_au": {n: len(asg.detectors(i)) for i, n in enumerate(A)},
        "hits": np.round(asg.hits, 4).tolist(), "hits_columns": list(A) + ["none"],
        "usage_z": {cls: {n: _r(res.usage[c, a]) for a, n in enumerate(A)} for c, cls in enumerate(res.classes)},
        "usage_z_se": {cls: {n: _r(res.usage_se[c, a]) for a, n in enumerate(A)}
                       for c, cls in enumerate(res.classes)},
        "layer_z": {cls: _r(res.layer_z[c]) for c, cls in enumerate(res.classes)},
        "usage_z_raw": {cls: {n: _r(res.usage_raw[c, a]) for a, n in enumerate(A)}
                        for c, cls in enumerate(res.classes)},
        "evidence": {cls: {n: _r(res.evidence[c, a]) for a, n in enumerate(A)} for c, cls in enumerate(res.classes)},
        "facs_check": res.facs, "unexpected": res.unexpected,
        "projections": {n: [{"map": d["map"], "n_images": d["n"], "consistency": round(d["consistency"], 4),
                             "mean_peak_xy": np.round(d["peak_mean"], 2).tolist()} for d in v]
                        for n, v in res.projections.items()},
        "seconds": round(res.seconds, 1), "command": command,
    }


def _fig_au_locations(res: AUAnalysis, path: Path) -> None:
    import matplotlib

    from .._figure import subplots
    from ..faces.align import TEMPLATE

    h, w = res.size
    fig, ax = subplots(figsize=(4.2, 4.4), dpi=100)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_facecolor("#eeeeee")
    t = TEMPLATE * [w, h]
    ax.scatter(t[:, 0], t[:, 1], s=60, c="#999999", marker="s", label="5 template landmarks")
    pts = AU.au_points(res.size)
    cmap = matplotlib.colormaps["tab20"]
    for i, (name, q) in enumerate(pts.items()):
        ax.scatter(q[:, 0], q[:, 1], s=18, color=cmap(i % 20))
        for x, y in q:
            ax.annotate(name[2:], (x, y), xytext=(2, 2), textcoords="offset points", fontsize=7)
    ax.set_title(f"AU points in the aligned {w}x{h} frame", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def _fig_heatmap(res: AUAnalysis, path: Path) -> None:
    from .._figure import subplots

    asg = res.assignment
    K = len(asg.au)
    order = np.lexsort((-asg.consistency, asg.au, ~asg.detector))  # detectors first, then by AU
    m = asg.hits[order].T  # [A+1, K]
    fig, ax = subplots(figsize=(min(16, 3 + K * 0.09), 4.6), dpi=90)
    top = max(0.5, float(asg.hits[:, :-1].max()))
    im = ax.imshow(m, aspect="auto", cmap="viridis", vmin=0, vmax=top, interpolation="nearest")
    ax.set_yticks(range(m.shape[0]), list(AU.AU_NAMES) + ["none"], fontsize=7)
    step = max(1, K // 32)
    ax.set_xticks(range(0, K, step), [str(k) for k in order[::step]], fontsize=6, rotation=90)
    det = asg.detector[order]
    for j in np.flatnonzero(det):
        ax.plot(j, asg.au[order][j], marker="o", ms=2.5, mec="red", mfc="none", mew=0.8)
    ax.set_xlabel(f"feature map of {res.layer.name} (detectors first, red circles; then the others; each sorted by "
                  f"assigned AU)", fontsize=8)
    ax.set_title(f"fraction of images whose peak sits on each AU (n = {res.n})", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    fig.tight_layout()
    fig.savefig(path)


def _fig_class_usage(res: AUAnalysis, path: Path) -> None:
    from matplotlib.patches import Rectangle

    from .._figure import subplots

    A = AU.AU_NAMES
    fig, axes = subplots(1, 2, figsize=(14, 4.2), dpi=100)
    for ax, data, title in ((axes[0], res.usage, "specific activation z of the AU's detectors"),
                            (axes[1], res.evidence, "evidence for the true class (per map, 1 = mean |map|)")):
        lim = np.nanmax(np.abs(data)) if np.isfinite(data).any() else 1.0
        im = ax.imshow(np.ma.masked_invalid(data), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(A)), [a[2:] for a in A], fontsize=7)
        ax.set_yticks(range(len(res.classes)), res.classes, fontsize=8)
        ax.set_xlabel("AU (empty: no detector map)", fontsize=8)
        ax.set_title(title, fontsize=9)
        for c, cls in enumerate(res.classes):
            for n in AU.FACS.get(cls, ()):
                if f"AU{n}" in A:
                    a = A.index(f"AU{n}")
                    ax.add_patch(Rectangle((a - 0.5, c - 0.5), 1, 1, fill=False, ec="black", lw=1.3))
            for a in range(len(A)):
                if np.isfinite(data[c, a]):  # white on the strongest cells (black there was unreadable)
                    strong = abs(data[c, a]) > 0.6 * lim
                    ax.text(a, c, f"{data[c, a]:.2f}", ha="center", va="center", fontsize=6.5,
                            color="white" if strong else "black", fontweight="bold" if strong else "normal")
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    fig.suptitle("per-expression AU usage (black boxes: the expression's FACS prototype)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def _fig_projections(res: AUAnalysis, path: Path) -> bool:
    from .._figure import subplots
    from .render import projection_image

    rows = [(n, v) for n, v in res.projections.items() if v]
    if not rows:
        return False
    ncols = max(len(v) for _, v in rows) * 2
    fig, axes = subplots(len(rows), ncols, figsize=(1.25 * ncols, 1.35 * len(rows) + 0.4), dpi=80,
                         squeeze=False)
    pts = AU.au_points(res.size)
    for r, (name, items) in enumerate(rows):
        for j in range(ncols):
            axes[r, j].axis("off")
        for i, d in enumerate(items):
            ax1, ax2 = axes[r, 2 * i], axes[r, 2 * i + 1]
            ax1.imshow(projection_image(d["mean"]), interpolation="bilinear")
            mag = d["mean_abs"].sum(0)
            ax2.imshow(mag / max(mag.max(), 1e-12), cmap="inferno", interpolation="bilinear")
            for ax in (ax1, ax2):
                ax.scatter(pts[name][:, 0], pts[name][:, 1], marker="+", s=30, c="#00ff66", linewidths=1)
            ax1.set_title(f"{name} map {d['map']}", fontsize=6.5)
            ax2.set_title(f"cons {d['consistency']:.2f}, n={d['n']}", fontsize=6.5)
    fig.suptitle("mean deconvolution projections of each AU's top detector maps (+ = AU point)\nsigned: gray 0, "
                 "light +, dark -  |  magnitude: black 0 to yellow, each map's own largest", fontsize=8)
    # the title's own 0.4 inch at the top, however many rows: the first row's titles stay clear of it
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / fig.get_figheight()))
    fig.savefig(path)
    return True


def _fig_peak_density(res: AUAnalysis, path: Path) -> None:
    from .._figure import subplots

    h, w = res.size
    act = res.vmax > 0
    p = res.peaks[act]
    hist, _, _ = np.histogram2d(p[:, 1], p[:, 0], bins=(h // 2, w // 2), range=((-0.5, h - 0.5), (-0.5, w - 0.5)))
    fig, ax = subplots(figsize=(4.2, 4.2), dpi=90)
    im = ax.imshow(np.log1p(hist), cmap="magma", extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    top = int(hist.max())
    ticks = [v for v in (0, 10, 100, 1000, 10000, 100000) if v <= top] + ([top] if top else [])
    bar.set_ticks(np.log1p(ticks), labels=[f"{v:,}" for v in ticks], fontsize=6)
    bar.set_label("peaks in the 2x2 px cell", fontsize=7)
    for name, q in AU.au_points(res.size).items():
        ax.scatter(q[:, 0], q[:, 1], s=10, c="#00ff66")
        for x, y in q[:1]:
            ax.annotate(name[2:], (x, y), xytext=(2, 2), textcoords="offset points", fontsize=6, color="white")
    ax.set_title(f"where the maps of {res.layer.name} peak\n(all maps x images, log count)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def _summary(res: AUAnalysis) -> list[str]:
    asg = res.assignment
    A = AU.AU_NAMES
    K = len(asg.au)
    lines = []
    det = [(A[a], len(asg.detectors(a))) for a in range(len(A)) if len(asg.detectors(a))]
    lines.append(f"{int(asg.detector.sum())} of the {K} maps of `{res.layer.name}` are detectors of one AU "
                 f"(their peak sits on it in at least {asg.min_consistency:.0%} of the images where they fire); "
                 f"AUs with detectors: " + (", ".join(f"{n} ({c})" for n, c in det) if det else "none") + ".")
    missing = [n for a, n in enumerate(A) if not len(asg.detectors(a))]
    if missing:
        lines.append(f"No detector for: {', '.join(missing)}.")
    tested = [r for r in res.facs if r["au"] and r["verdict"] != "untested"]
    by = {v: [r for r in tested if r["verdict"] == v] for v in ("agrees", "partly", "no difference", "disagrees")}
    unt = [r for r in res.facs if r["au"] and r["verdict"] == "untested"]
    lines.append(f"FACS check: of {len(tested)} (expression, AU) pairs that could be tested, {len(by['agrees'])} "
                 f"agree, {len(by['partly'])} partly, {len(by['no difference'])} show no difference, "
                 f"{len(by['disagrees'])} disagree; {len(unt)} untested (no detector map).")

    def fmt(r: dict, top: bool) -> str:
        s = f"{r['class']} {r['au']} (z {r['z']:+.2f} +- {r['se']:.2f}, rank {r['rank']}/{r['of']}"
        return s + (f", fire most for {r['top_class']})" if top and r["top_class"] != r["class"] else ")")
    if by["agrees"]:
        lines.append("Agreements: " + "; ".join(fmt(r, False) for r in by["agrees"]) + ".")
    if by["partly"]:
        lines.append("Partly: " + "; ".join(fmt(r, True) for r in by["partly"]) + ".")
    if by["no difference"]:
        lines.append("No difference: " + "; ".join(fmt(r, True) for r in by["no difference"]) + ".")
    if by["disagrees"]:
        lines.append("Disagreements: " + "; ".join(fmt(r, True) for r in by["disagrees"]) + ".")
    for r in res.facs:
        if r["au"] is None and r["verdict"] != "untested":
            if r["verdict"] == "agrees":
                lines.append(f"Neutral: no AU's detectors fire above average on neutral faces (largest z "
                             f"{r['max_z']:+.2f}): agrees.")
            else:
                lines.append("Neutral: detectors above average on neutral faces: " +
                             ", ".join(f"{n} (z {z:+.2f})" for n, z in r["above_average"]) + ": disagrees.")
    if res.unexpected:
        lines.append("Unexpected (an AU's detectors fire most for an expression whose prototype lacks it): " +
                     "; ".join(f"{u['au']} -> {u['class']} (z {u['z']:+.2f})" for u in res.unexpected) + ".")
    return lines


def write_report(res: AUAnalysis, out: str | os.PathLike, command: str | None = None,
                 dropped: dict[str, int] | None = None, skipped: list | None = None) -> list[Path]:
    """``report.md``, ``report.json`` and the PNGs into ``out``. Returns the files written.
    ``dropped``: images of the split left out before the analysis, per class the model does not know;
    ``skipped``: ``(source, reason)`` of the files that could not be read (``--skip-bad``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    data = to_json(res, command)
    if dropped:
        data["left_out_classes"] = dict(dropped)
    if skipped:
        data["skipped_files"] = [{"source": str(s), "reason": str(r)} for s, r in skipped]
    # all or none: written under temporary names, moved onto theirs once all were written (a failure
    # leaves an earlier report in --out as it was, not half of it replaced)
    with staged_files() as st:
        st.path(out / "report.json").write_text(json.dumps(data, indent=1) + "\n")
        files.append(out / "report.json")
        figs = {"au_locations.png": _fig_au_locations, "map_au_heatmap.png": _fig_heatmap,
                "class_au_usage.png": _fig_class_usage, "peak_density.png": _fig_peak_density}
        for name, fn in figs.items():
            fn(res, st.path(out / name))
            files.append(out / name)
        proj = st.path(out / "au_detectors.png")
        has_proj = _fig_projections(res, proj)
        if has_proj:
            files.append(out / "au_detectors.png")
        else:
            st.drop(proj)
        st.path(out / "report.md").write_text(_markdown(res, data, has_proj))
        files.insert(0, out / "report.md")
    if not has_proj and (out / "au_detectors.png").is_file():  # an earlier run's, not this report's
        (out / "au_detectors.png").unlink()
    return files


def _markdown(res: AUAnalysis, data: dict, has_proj: bool) -> str:
    asg = res.assignment
    A = AU.AU_NAMES
    L = []
    L.append(f"# What `{res.model}` learned: feature maps and facial action units\n")
    gone = data.get("left_out_classes") or {}
    usable = " of classes the model knows" if gone else ""
    lim = f" (a fixed random subset of the split's {res.n_total}{usable})" if res.n < res.n_total else ""
    if gone:
        lim += (f"; left out: {sum(gone.values())} image(s) of class(es) the model does not know ("
                + ", ".join(f"{k} {v}" for k, v in gone.items()) + ")")
    if data.get("skipped_files"):
        lim += (f"; {len(data['skipped_files'])} file(s) could not be read and were skipped (`--skip-bad`; "
                f"listed in report.json)")
    L.append(f"Model `{res.model}` on {res.dataset} {res.split}: {res.n} images{lim}, accuracy {res.accuracy:.2%}. "
             f"Layer `{res.layer.name}` ({res.layer.kind}, {res.layer.shape[0]} maps of "
             f"{res.layer.shape[1]}x{res.layer.shape[2]}). Peak location: "
             + ("receptive-field centre of the peak cell" if res.locate == "rf"
                else "peak of the deconvolution projection") +
             f". AU radius {asg.radius} inter-ocular distances ({asg.radius * AU.interocular(res.size):.1f} px), "
             f"detector threshold {asg.min_consistency:.0%}. {res.seconds:.0f} s.\n")
    if data.get("command"):
        L.append(f"    {data['command']}\n")
    if data.get("note"):
        L.append(f"**Note: {data['note']}.**\n")
    L.append("## Findings\n")
    L.extend(f"* {s}" for s in _summary(res))
    L.append("")
    L.append("## Action units in the aligned face\n")
    L.append("Each AU is placed relative to the 5-landmark alignment template (offsets in inter-ocular distances "
             "`d`; see `ferkit.explain.au` for the table and its reasoning). A map's peak *sits on* an AU when it "
             f"is the nearest AU and at most {asg.radius} d away.\n")
    L.append("![AU points](au_locations.png)\n")
    L.append("| AU | name | points (px) | chance |")
    L.append("| --- | --- | --- | ---: |")
    for i, row in enumerate(AU.au_table(res.size)):
        pts = " ".join(f"({x:.1f}, {y:.1f})" for x, y in row["points"])
        L.append(f"| {row['au']} | {row['name']} | {pts} | {asg.chance[i]:.3f} |")
    over = (f"the peaks of {asg.chance_places:,} maps of random noise on this layer, located as the maps' are,"
            if asg.chance_places else "the frame's pixels")
    L.append(f"\n*chance*: the fraction of {over} that sit on the AU (none: {asg.chance[-1]:.3f}); a map's *lift* is "
             f"its consistency over it.\n")
    L.append("## Feature maps and AUs\n")
    L.append("For every map, the fraction of the images (where it fires) in which its maximal response sits on each "
             "AU (the distance function of Zhu et al.; columns sorted by assigned AU):\n")
    L.append("![map x AU](map_au_heatmap.png)\n")
    L.append("![peak density](peak_density.png)\n")
    L.append("| AU | name | detector maps | best maps (consistency, lift, mean distance d) |")
    L.append("| --- | --- | ---: | --- |")
    for a, n in enumerate(A):
        ks = asg.detectors(a)
        if len(ks):
            best = ", ".join(f"{k} ({asg.consistency[k]:.2f}, x{asg.lift[k]:.1f}, {asg.mean_dist[k, a]:.2f})"
                             for k in ks[:5])
        else:
            cand = np.flatnonzero(asg.au == a)
            cand = cand[np.argsort(-asg.consistency[cand])][:2]
            best = ("none; closest: " + ", ".join(f"{k} ({asg.consistency[k]:.2f})" for k in cand)) if len(cand) \
                else "none"
        L.append(f"| {n} | {AU.AUS[int(n[2:])][0]} | {len(ks)} | {best} |")
    L.append(f"\nMaps that are no AU's detector (their peaks spread over several AUs): "
             f"{int((~asg.detector).sum())}; mean fraction of peaks on no AU: {asg.hits[:, -1].mean():.3f}.\n")
    if has_proj:
        L.append("### What the detectors respond to\n")
        L.append("Deconvolution projections (Zeiler & Fergus) of each AU's most consistent detector maps, from the "
                 "images where the map fires most while sitting on the AU, each scaled to a largest magnitude of 1 "
                 "and averaged (left: signed, gray = 0; right: magnitude). Averages over many faces, no single "
                 "face.\n")
        L.append("![AU detectors](au_detectors.png)\n")
    L.append("## Per-expression AU usage\n")
    L.append("Left: how much more than on average an AU's detector maps fire on each expression, relative to the "
             "whole layer (*specific z*: per-map standardised maximal response, mean over the AU's detectors minus "
             "the mean over all maps of the image, averaged over the expression's images). Right: how much they "
             "push the network towards the image's own expression (gradient x activation per map, 1 = an average "
             "map's magnitude). Black boxes: the FACS prototype.\n")
    L.append("Mean z over *all* maps per expression (what the specific z removes): " + ", ".join(
        f"{cls} {res.layer_z[c]:+.2f}" for c, cls in enumerate(res.classes) if np.isfinite(res.layer_z[c])) + ".\n")
    L.append("![class x AU](class_au_usage.png)\n")
    tested = [a for a in range(len(A)) if not np.all(np.isnan(res.usage[:, a]))]
    if tested:
        L.append("| expression | " + " | ".join(A[a] for a in tested) + " |")
        L.append("| --- | " + " | ".join("---:" for _ in tested) + " |")
        for c, cls in enumerate(res.classes):
            cells = []
            for a in tested:
                v = res.usage[c, a]
                s = f"{v:+.2f}" if np.isfinite(v) else ""
                if int(A[a][2:]) in AU.FACS.get(cls, ()):
                    s = f"**{s}**"
                cells.append(s)
            L.append(f"| {cls} | " + " | ".join(cells) + " |")
        L.append("\n(specific z; bold: AUs of the expression's FACS prototype)\n")
    L.append("## Check against FACS\n")
    L.append("Prototypes: " + "; ".join(f"{k} {'+'.join(str(n) for n in v) if v else 'none'}"
                                        for k, v in AU.FACS.items() if k in res.classes) + ".\n")
    L.append("*agrees*: the AU's detectors fire above their average on the expression (specific z more than 2 "
             "standard errors above 0) and it is one of the two expressions they fire most for; *partly*: above "
             "average, but others drive them more; *no difference*: within 2 standard errors of 0; *disagrees*: "
             "below average; *untested*: no map is a detector of the AU.\n")
    L.append("| expression | AU | specific z +- SE | raw z | rank | evidence | verdict |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for r in res.facs:
        if r["au"] is None:
            extra = ", ".join(f"{n} {z:+.2f}" for n, z in r.get("above_average", []))
            L.append(f"| {r['class']} | (none expected) | max {r.get('max_z')} | | | | {r['verdict']}"
                     f"{' (above average: ' + extra + ')' if extra else ''} |")
        elif r["verdict"] == "untested":
            L.append(f"| {r['class']} | {r['au']} | | | | | untested ({r.get('why', '')}) |")
        else:
            L.append(f"| {r['class']} | {r['au']} | {r['z']:+.2f} +- {r['se']:.2f} | {r['z_raw']:+.2f} | "
                     f"{r['rank']}/{r['of']} | "
                     f"{r['evidence']:+.2f} | "
                     f"{r['verdict']}{'' if r['verdict'] == 'agrees' else ' (most: ' + r['top_class'] + ')'} |")
    if res.unexpected:
        L.append("\nUnexpected: " + "; ".join(
            f"{u['au']}'s detectors fire most for {u['class']} (z {u['z']:+.2f}; FACS has {u['au']} in "
            f"{', '.join(u['expected_in']) or 'none of the prototypes above'})" for u in res.unexpected) + ".\n")
    L.append("## Caveats\n")
    L.append("* AU points are placed from 5 landmarks, not measured per face; FER2013 crops are only roughly aligned "
             "to the template, so a few pixels of scatter are expected.")
    L.append("* Several mouth AUs (10, 12, 15, 16, 20, 23, 25, 26) lie within a few pixels of each other, and so do "
             "AU1/AU4 and AU5/AU7: location separates them only roughly; a map assigned to one of them may respond "
             "to its neighbour's movement.")
    L.append("* A map that always peaks at the same place is a detector *at* that AU's location; whether it responds "
             "to the AU's movement is what the per-expression table tests.")
    L.append("* Usage and evidence are correlations over the split's true labels, not causal tests.\n")
    return "\n".join(L) + "\n"
