"""Explain the faces of one photo: ``ferkit explain IMAGE --method deconv|gradcam|guided``.

Each face goes through the face pipeline (:class:`ferkit.Recognizer`: detect, align to the
template at the model's input size; ``detector="none"`` for images that are face crops), then:

* ``deconv``: the ``maps`` feature maps of ``layer`` with the strongest maximum on this face, each
  projected back to pixels (:mod:`ferkit.explain.deconv`): ``<stem>_face<i>_deconv.png`` (the face
  and the projections, the peak of each marked) and ``<stem>_deconv.json`` (per face and map: the
  activation, its cell, the projection's peak and the nearest action unit);
* ``gradcam``: Grad-CAM of the predicted (or ``target``) class: ``<stem>_face<i>_gradcam.png``
  (face, heat map, overlay) and ``<stem>_gradcam.png`` (the maps drawn back onto the photo, a colour
  key in a corner clear of the faces);
* ``guided``: guided backpropagation and guided Grad-CAM: ``<stem>_face<i>_guided.png`` and
  ``<stem>_guided.png``; both saliency methods also write ``<stem>_<method>.json``.
"""

from __future__ import annotations

import json
import os
import warnings
from functools import partial
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Callable

import cv2
import numpy as np
import torch

from ..api import ExpressionModel, load_model
from ..data.transforms import normalize, to_float
from ..errors import FerkitError, FerkitWarning
from ..faces import is_whole_image, similarity, template
from ..io import read_image, staged_files
from . import au as AU
from . import render
from .deconv import activations, project, projection_peaks, receptive_field_centres, top_maps
from .layers import LayerInfo, default_layer, get_layer, list_layers
from .saliency import gradcam, guided_backprop

METHODS = ("deconv", "gradcam", "guided")


def face_crops(rec: Any, rgb: np.ndarray, dets: list) -> tuple[np.ndarray, np.ndarray]:
    """The aligned crops of ``dets``, made by :meth:`ferkit.Recognizer.crops` (what ``predict``
    classifies), and the 2x3 matrices photo -> crop (``[N, 2, 3]``), so that explanations can be
    drawn back."""
    h, w = rec.size
    mats = []
    for d in dets:
        if d.landmarks is not None:
            m = similarity(d.landmarks, template((h, w)))  # (the matrix align() warps by)
        else:
            x1, y1, x2, y2 = (float(v) for v in d.box)
            sx, sy = w / max(x2 - x1, 1e-6), h / max(y2 - y1, 1e-6)
            if is_whole_image(d.box, rgb.shape):
                # the whole image, resized (Recognizer.crops): pixel centres matched, so that the
                # picture drawn back covers the image to its edges (it fell 5 px short on 512 px)
                m = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])
            else:
                m = np.array([[sx, 0, -x1 * sx], [0, sy, -y1 * sy]])
        mats.append(m)
    return rec.crops(rgb, dets), np.stack(mats)


def torch_model(model: str | ExpressionModel = "default", device: str = "cpu") -> ExpressionModel:
    """The model with its PyTorch network (explanations need gradients: an ONNX-backed model
    is loaded again on the PyTorch backend)."""
    if isinstance(model, ExpressionModel) and isinstance(getattr(model, "net", None), torch.nn.Module):
        return model
    name = model if not isinstance(model, ExpressionModel) else model.card.get("name", "default")
    if isinstance(model, ExpressionModel) and getattr(model, "backend", None) != "ensemble":  # (said below)
        # reloaded by its card's name only where that names the very weights it runs (its ONNX file in the
        # cache is named by their sha256): a file of the caller's whose card kept a shipped name was explained
        # with the shipped weights, another network's answers, in silence
        from .. import weights as _weights

        src = getattr(model, "path", None)
        try:
            same = bool(src) and Path(src).name.split("-")[0] == _weights.sha256(_weights.resolve(name))
        except (FerkitError, OSError):
            same = False
        if not same:
            raise FerkitError(f"{name}: the model given runs on {getattr(model, 'backend', 'onnx')}, and explanations "
                              f"need its PyTorch network: load it with ferkit.load_model(<its weights>, "
                              f"backend='torch')")
    try:
        m = load_model(name, device=device, backend="torch")  # type: ignore[call-arg]
    except TypeError:  # a load_model without backends: always PyTorch
        m = load_model(name, device=device)
    if getattr(m, "backend", None) == "ensemble":
        raise FerkitError(f"{name}: an ensemble has no single network to explain; explain one member at a time")
    if not isinstance(getattr(m, "net", None), torch.nn.Module):
        raise FerkitError(f"{name}: explanations need the model's PyTorch weights (.safetensors), not an ONNX file")
    return m


def _tensor(model: ExpressionModel, crops: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(crops[:, None] if crops.ndim == 3 else crops.transpose(0, 3, 1, 2).copy())
    return normalize(to_float(x), model.mean, model.std)


def resolve_layer(model: ExpressionModel, layer: str | None, purpose: str) -> tuple[LayerInfo, list[LayerInfo]]:
    layers = list_layers(model.net, model.input_size)
    li = get_layer(model.net, layers, layer) if layer else default_layer(layers, purpose, model.input_size,
                                                                         len(model.classes))
    return li, layers


#: a Grad-CAM peak whose next cell is within this fraction of it is said to be no single peak
PEAK_MARGIN = 0.1


def _nearest_au(xy: np.ndarray, size: tuple[int, int]) -> tuple[str | None, float]:
    d = AU.distances(np.asarray(xy)[None], size)[0]
    i = int(d.argmin())
    return (AU.AU_NAMES[i] if d[i] <= AU.DEFAULT_RADIUS else None), round(float(d[i]), 3)


def explain_image(source: Any, out: str | os.PathLike | None, *, model: str | ExpressionModel = "default",
                  method: str = "deconv", layer: str | None = None, maps: int | Sequence[int] = 8,
                  detector: str = "mtcnn", target: str | None = None, min_face_size: int | None = None,
                  max_faces: int | None = None,
                  device: str = "cpu") -> dict:
    """Explain every face of the image ``source`` with ``method``; writes into the folder ``out``
    and returns the JSON written (with ``files``: the paths written). ``source``: what
    :meth:`Recognizer.predict <ferkit.Recognizer.predict>` reads as one image (a path, encoded
    bytes, a PIL image, a numpy array); the files of one not read from a path are named after its
    type (``ndarray_deconv.png``). The files are written all or none: a failure leaves earlier
    files of their names as they were. ``maps`` (deconv): how many of the strongest feature maps to
    project, or a sequence of map numbers to project those (``--map``: e.g. the detector maps an
    ``au-analysis`` report names).

    ``out=None`` writes nothing and returns the pictures' arrays instead (a notebook's use): each
    face's ``map`` (Grad-CAM, or guided Grad-CAM's size; ``h x w`` floats in [0, 1] on the aligned
    face) or ``projections`` (deconv: one RGB uint8 picture per map, gray 0) and its ``crop`` (the
    aligned face the network saw), and for the saliency methods ``overlay``: the photo with each
    face's map drawn back onto it (RGB uint8, at most 1600 px on its long side, as the file)."""
    from ..io import check_out_folder
    from ..pipeline import Recognizer

    if method not in METHODS:
        raise FerkitError(f"unknown method {method!r}; choose from: {', '.join(METHODS)}")
    chosen = None  # maps named (a sequence), not the strongest ``maps``
    if isinstance(maps, (Sequence, np.ndarray)) and not isinstance(maps, (str, bytes)):
        named = list(maps)
        if (not named or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) for k in named)
                or any(k < 0 for k in named)):
            raise FerkitError(f"--map wants feature map numbers, 0 or more; got {named!r}")
        chosen = [int(k) for k in named]
    elif isinstance(maps, bool) or not isinstance(maps, (int, np.integer)) or maps < 1:
        raise FerkitError(f"--maps must be a whole number, at least 1; got {maps!r}")
    keep = out is None  # the arrays, not files
    if not keep and (not isinstance(out, (str, os.PathLike)) or not str(out).strip()):
        raise FerkitError(f"explain writes into a folder: give its path (or None for the arrays), got {out!r}")
    if not keep:
        check_out_folder("--out", out)
    if isinstance(source, (str, os.PathLike)):
        name = str(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        name, source = "bytes", bytes(source)
    else:
        name = type(source).__name__
    m = torch_model(model, device)
    li, _ = resolve_layer(m, layer, "au" if method == "deconv" else "gradcam")
    if chosen is not None:
        if method != "deconv":
            raise FerkitError("--map names feature maps to deconvolve: it is for --method deconv")
        bad = [k for k in chosen if k >= li.shape[0]]
        if bad:
            raise FerkitError(f"layer {li.name} has {li.shape[0]} maps, 0..{li.shape[0] - 1}: no map "
                              f"{', '.join(map(str, bad))}")
    tgt = None
    if target is not None:
        if target not in m.classes:
            raise FerkitError(f"unknown class {target!r}; this model's classes: {', '.join(m.classes)}")
        tgt = m.classes.index(target)
    rec = Recognizer(m, detector=detector, min_face_size=min_face_size, max_faces=max_faces)
    rgb = read_image(source, mode="RGB", name=name)
    dets = rec.detect(rgb)
    if not dets:
        h, w = rgb.shape[:2]
        if detector != "none" and min_face_size and min_face_size > min(h, w):
            raise FerkitError(f"{name}: no face found: the smallest face searched for (--min-face {min_face_size}) is "
                              f"larger than this {w}x{h} image")
        other = "mtcnn" if detector == "haar" else "haar"  # (the hint named the detector just used)
        raise FerkitError(f"{name}: no face found (try --detector {other}, or --detector none if the image is a face "
                          f"crop)")
    crops, mats = face_crops(rec, rgb, dets)
    # the AU locations are the alignment template's: the nearest AU is named right on a face aligned by its
    # own five landmarks; else the network's crop is framed otherwise, and the names are said to be rough
    aligned = all(d.landmarks is not None and not d.estimated for d in dets)
    if not aligned:
        how = ("the whole image is the face: right for a crop framed like FER2013's, not for a photo"
               if detector == "none" else f"{detector} gives no landmarks: the faces are aligned from their boxes")
        warnings.warn(f"{name}: the action units named are measured at the alignment template's places, and "
                      f"{how}; they are rough here (--detector mtcnn aligns each face by its landmarks)",
                      FerkitWarning, stacklevel=2)
    x = _tensor(m, crops)
    probs = m.predict_tensor(torch.from_numpy(crops[:, None] if crops.ndim == 3 else
                                              crops.transpose(0, 3, 1, 2).copy())).numpy()
    out = Path(out) if out is not None else Path()  # (with keep: names only, nothing written)
    if not keep:
        out.mkdir(parents=True, exist_ok=True)
    arrays: list[dict[str, Any]] = [{"crop": crops[i]} for i in range(len(dets))]
    stem = Path(name).stem
    size = tuple(m.input_size[1:])
    files: list[str] = []
    writes: list[tuple[Path, Callable[[Path], Any]]] = []  # (file, writer of its contents): written at the end
    faces = []
    for i, d in enumerate(dets):
        p = probs[i]
        faces.append({"face": i + 1, "box": d.xywh, "score": round(float(d.score), 5),
                      "landmarks": None if d.landmarks is None else np.round(d.landmarks, 2).tolist(),
                      "label": m.classes[int(p.argmax())],
                      "probabilities": {c: round(float(v), 5) for c, v in zip(m.classes, p)}})
    k_up = max(1, 144 // max(size))
    if method == "deconv":
        centres = receptive_field_centres(m.net, li.name, m.input_size)
        acts = activations(m.net, x, li.name)
        for i, f in enumerate(faces):
            if chosen is None:
                idx, vals = top_maps(acts[i], int(maps))
            else:  # the maps named, in their order: each one's strongest activation on this face
                idx = np.array(chosen)
                vals = acts[i].flatten(1).amax(1).numpy()[idx]
            proj = project(m.net, x, li.name, idx, np.full(len(idx), i))
            pk = projection_peaks(proj.images)
            rows, tiles, titles, marks = [], [render.to_rgb(crops[i])], [f"face {i + 1}: {f['label']}"], [None]
            for j, k in enumerate(idx):
                r, c = (int(v) for v in proj.positions[j])
                if not vals[j] > 0:  # a map that does not fire on this face: no cell, peak nor action unit (its
                    # "peak" was the corner of a flat projection, with an AU distance made of it)
                    rows.append({"map": int(k), "activation": round(float(vals[j]), 5), "cell": None,
                                 "rf_centre_xy": None, "peak_xy": None, "nearest_au": None, "au_distance": None})
                    tiles.append(render.projection_image(proj.images[j].numpy()))
                    titles.append(f"map {k}: 0 (silent)")
                    marks.append(None)
                    continue
                au, dist = _nearest_au(pk[j], size)
                rows.append({"map": int(k), "activation": round(float(vals[j]), 5), "cell": [r, c],
                             "rf_centre_xy": np.round(centres[r, c], 2).tolist(),
                             "peak_xy": np.round(pk[j], 2).tolist(), "nearest_au": au, "au_distance": dist})
                tiles.append(render.projection_image(proj.images[j].numpy()))
                titles.append(f"map {k}: {vals[j]:.2f}" + (f" ({au})" if au else ""))
                marks.append([tuple(pk[j])])
            f["maps"] = rows
            arrays[i]["projections"] = tiles[1:]
            path = out / f"{stem}_face{i + 1}_deconv.png"
            writes.append((path, partial(render.grid, tiles, titles, ncols=min(len(tiles), 5),
                                         title=f"{m.name} {li.name}: " + (f"top {len(idx)} maps" if chosen is None else
                                                                         f"map{'s' * (len(idx) > 1)} "
                                                                         f"{', '.join(map(str, idx))}")
                                         + ", deconvnet projections",
                                         marks=marks, bar=render.ColourBar("signed", ("-max", "0", "+max")),
                                         note="Each tile: the pixels that drive one feature map's strongest cell "
                                              "(deconvnet projection; gray 0, light and dark: the sign). 'map N: a "
                                              "(AUk)': the map, its activation, the action unit nearest the "
                                              "projection's peak (+).")))
            f["png"] = str(path)
            files.append(str(path))
    else:
        # the cells tile the face evenly, as Grad-CAM draws them (placed at their receptive fields'
        # centroids, which padding pulls inwards, a 6x6 map filled only the middle half of the face
        # and was flat around it)
        cam = gradcam(m.net, x, li.name, tgt)
        guided = guided_backprop(m.net, x, tgt)[0] if method == "guided" else None
        photo = rgb.copy()
        top = "max" if guided is None else "99.5th pct"  # (the top of each face's colour scale)
        for i, f in enumerate(faces):
            cm = cam.maps[i]
            f["explained"] = m.classes[int(cam.targets[i])]
            if float(cam.raw[i].max()) > 0:
                # the strongest cell's centre in the drawn map (its tile's centre; the upsampled map is
                # flat beyond the outer cells' centres: its first maximal pixel could lie on the border)
                r, c = np.unravel_index(int(cam.raw[i].argmax()), cam.raw[i].shape)
                ch, cw = cam.raw[i].shape
                px, py = np.round([(c + 0.5) * size[1] / cw - 0.5, (r + 0.5) * size[0] / ch - 0.5])
                au, dist = _nearest_au(np.array([px, py], float), size)
                peak = [int(px), int(py)]
                top2 = np.sort(cam.raw[i].ravel())[::-1][:2]
                # how far the strongest cell stands above the next (0: a tie): a peak within a few percent of
                # another cell moves with a re-encoding of the photo, and its AU with it
                margin = float(1 - top2[1] / top2[0]) if len(top2) > 1 else 1.0
            else:  # ReLU left nothing: no place on this face raises the class's score at this layer
                peak, au, dist, margin = None, None, None, None
            f.update({"cam_peak_xy": peak, "cam_peak_au": au, "cam_peak_au_distance": dist,
                      "cam_peak_margin": None if margin is None else round(margin, 4),
                      "cam_max": round(float(cam.raw[i].max()), 6), "cam_cells": np.round(cam.raw[i], 5).tolist()})
            crop = render.to_rgb(crops[i])
            scaled = ("blue 0, red its largest values (scaled to its 99.5th percentile, for this face alone)"
                      if guided is not None else "blue 0, red this face's largest value (each map scaled to its own "
                                                 "maximum)")
            unsure = margin is not None and margin < PEAK_MARGIN
            key = (f"Colours: {scaled}; Grad-CAM's largest cell {float(cam.raw[i].max()):.3g}. Its peak "
                   f"{tuple(peak)}" + (f", near {au}" if au else "")
                   + (f" (the next cell within {margin:.0%}: no single peak)." if unsure else ".")
                   if peak is not None else
                   f"Empty: nothing at {li.name} raises the score of '{f['explained']}' on this face (the map is 0 "
                   f"everywhere).")
            if guided is None:
                tiles = [crop, render.heat(cm), render.overlay(crop, cm)]
                titles = [f"face {i + 1}: {f['label']}", f"Grad-CAM '{f['explained']}'", "overlay"]
                shown = cm
                note = f"Grad-CAM at {li.name} ({'x'.join(map(str, li.shape[1:]))} cells). {key}"
            else:
                gg = guided[i] * cm[None]
                shown = render.magnitude(gg)
                tiles = [crop, render.projection_image(guided[i]), render.projection_image(gg),
                         render.overlay(crop, shown)]
                titles = [f"face {i + 1}: {f['label']}", "guided backprop", f"guided Grad-CAM '{f['explained']}'",
                          "overlay: its size"]
                note = (f"Guided backprop (gray 0): the input gradient through the ReLUs' positive paths; it looks "
                        f"much the same whichever class is asked (the face's edges), so it is no evidence for "
                        f"'{f['explained']}' by itself. Guided Grad-CAM, the class's view: it times Grad-CAM "
                        f"'{f['explained']}' at {li.name}; the overlay shows its size. {key}")
            arrays[i]["map"] = np.asarray(shown, np.float32)
            tiles = [render.upscale(t, k_up) for t in tiles]
            path = out / f"{stem}_face{i + 1}_{method}.png"
            writes.append((path, partial(render.grid, tiles, titles, ncols=len(tiles), title=f"{m.name} {li.name}",
                                         note=note, bar=render.ColourBar("heat", ("0", "", top)))))
            f["png"] = str(path)
            files.append(str(path))
            photo = render.paste_back(photo, shown, mats[i], label=str(i + 1) if len(faces) > 1 else None)
        big = max(photo.shape[:2])
        if big > 1600:
            s = 1600 / big
            photo = cv2.resize(photo, (max(1, round(photo.shape[1] * s)), max(1, round(photo.shape[0] * s))),
                               interpolation=cv2.INTER_AREA)
        # the colours' key in a corner clear of the faces (each face's map is scaled to its own top)
        s = max(photo.shape[:2]) / max(rgb.shape[:2])
        outlines = [[v * s for v in render.outline_box(mats[i], size)] for i in range(len(faces))]
        photo = render.corner_key(photo, render.ColourBar("heat", ("0", "", top)), "each face's own scale",
                                  avoid=outlines)
        path = out / f"{stem}_{method}.png"
        result_overlay = photo
        writes.append((path, partial(render.save_png, photo)))
        files.append(str(path))
    result = {"source": name, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "model": m.name,
              "method": method, "layer": li.name, "layer_shape": list(li.shape), "detector": detector,
              "aligned": aligned, "faces": faces}
    if keep:  # the arrays: no file
        for f, arr in zip(faces, arrays):
            f.pop("png", None)
            f.update(arr)
        if method != "deconv":
            result["overlay"] = result_overlay
        return result
    jpath = out / f"{stem}_{method}.json"
    text = json.dumps(result, indent=1) + "\n"
    writes.append((jpath, lambda p: p.write_text(text)))
    # all or nothing: each file is written under a temporary name, and all are moved onto their names
    # once every one was written (a failure, e.g. a name that is a folder, leaves earlier files as they were)
    with staged_files() as st:
        for path, write in writes:
            write(st.path(path))
    files.append(str(jpath))
    result["files"] = files
    return result


def format_layers(model: ExpressionModel) -> str:
    """The table ``ferkit explain --list-layers`` prints."""
    layers = list_layers(model.net, model.input_size)
    dl = default_layer(layers, "au", model.input_size, len(model.classes)).name
    gl = default_layer(layers, "gradcam", model.input_size, len(model.classes)).name
    lines = [f"layers of {model.name} ({model.card.get('architecture')}, input {'x'.join(map(str, model.input_size))})"
             f" with a feature-map output, in the order they are computed:",
             f"  {'name':<28} {'module':<16} {'maps x H x W':<14}"]
    for li in layers:
        note = f"= {li.alias_of}" if li.alias_of else ""
        if li.name == dl:
            note += "  <- default for deconv and au-analysis"
        if li.name == gl:
            note += "  <- default for gradcam / guided"
        lines.append(f"  {li.name:<28} {li.kind:<16} {'x'.join(map(str, li.shape)):<14} {note}".rstrip())
    return "\n".join(lines)
