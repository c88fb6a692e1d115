"""The Python API for classifying face crops: ``load_model(name).predict(faces)``."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from . import weights as _weights
from .data.transforms import normalize, to_float, tta_views
from .errors import FerkitError, FerkitWarning, check_whole
from .io import FLOAT_SLACK, is_file_object, read_image, resize


@dataclass
class Prediction:
    """The expression of one face: the top ``label``, its ``score`` (that class' probability; also
    as ``confidence``, the name a :class:`~ferkit.results.FaceResult` gives it, whose ``score`` is
    the detector's), and every class' probability."""

    label: str
    score: float
    probabilities: dict[str, float]

    @property
    def confidence(self) -> float:
        return self.score

    def __repr__(self) -> str:  # (named as README and a face's result name it: `score` read as the detector's)
        probs = ", ".join(f"{c!r}: {p:.4f}" for c, p in self.probabilities.items())
        return f"Prediction(label={self.label!r}, confidence={self.score:.4f}, probabilities={{{probs}}})"

    def to_dict(self) -> dict[str, Any]:
        """``label``, ``confidence`` (its probability, as a face's CSV row names it), ``score`` (the
        same number, under its first name) and ``probabilities``."""
        return {"label": self.label, "confidence": self.score, "score": self.score, "probabilities": self.probabilities}


class ExpressionModel:
    """A trained expression classifier plus its model card (classes, input size, normalisation).

    ``faces`` may be one face or a list of faces; each face is a path, bytes, a numpy array
    (HxW gray, HxWx3 RGB) or a PIL image, already cropped to the face. Crops are converted to
    the card's colour mode and resized to its input size.
    """

    backend = "torch"  #: what runs it: torch, onnx, onnx-int8 (the ``--backend`` names) or ensemble

    def __init__(self, net: nn.Module, card: dict, device: str | torch.device = "cpu") -> None:
        self.net = net.eval().to(device)
        self.card = card
        self.device = torch.device(device)
        self.classes: tuple[str, ...] = tuple(card["classes"])
        self.input_size: tuple[int, int, int] = tuple(card["input_size"])  # type: ignore[assignment]
        self.mean, self.std = tuple(card["mean"]), tuple(card["std"])

    @property
    def name(self) -> str:
        return str(self.card.get("name", self.card["architecture"]))

    def __repr__(self) -> str:
        return f"ExpressionModel({self.name!r}, classes={list(self.classes)}, input={self.input_size})"

    # -- preprocessing -------------------------------------------------------------------
    def _one(self, face: Any) -> np.ndarray:
        c, h, w = self.input_size
        return resize(read_image(face, mode="L" if c == 1 else "RGB"), (h, w)).reshape(h, w, c)

    def preprocess(self, faces: Any) -> torch.Tensor:
        """Faces -> uint8 tensor ``[N, C, H, W]`` at the model's input size."""
        batch = _as_list(faces, tuple(self.input_size[1:]))
        if not batch:  # (an empty list, as a filter that kept no face leaves it: no faces, no error)
            c, h, w = self.input_size
            return torch.zeros((0, c, h, w), dtype=torch.uint8)
        arr = np.stack([self._one(f) for f in batch])
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

    # -- inference -----------------------------------------------------------------------
    @torch.inference_mode()
    def predict_tensor(self, images: torch.Tensor | np.ndarray, tta: str | None = None,
                       batch_size: int = 256) -> torch.Tensor:
        """Probabilities ``[N, K]`` for uint8 (or [0,1] float) images ``[N, C, H, W]`` (other
        values refused: :func:`check_pixels`)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise FerkitError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        images = check_pixels(images, self.input_size)  # a numpy batch too, as the onnx backend takes it
        if images.shape[0] == 0:
            return torch.zeros((0, len(self.classes)), dtype=torch.float32)
        out = []
        for i in range(0, images.shape[0], batch_size):
            x = to_float(images[i:i + batch_size].to(self.device))
            probs = 0
            views = tta_views(x, tta)
            for v in views:
                probs = probs + F.softmax(self.net(normalize(v, self.mean, self.std)).float(), dim=1)
            out.append((probs / len(views)).cpu())
        return torch.cat(out)

    def release_memory(self) -> None:
        """Hand back memory the runtime keeps after a large batch (onnxruntime's arenas; torch frees to
        the C heap, which :meth:`ferkit.Recognizer.release_memory` trims)."""

    def predict_proba(self, faces: Any, tta: str | None = None) -> np.ndarray:
        """Class probabilities ``[N, K]`` (columns in ``self.classes`` order)."""
        return self.predict_tensor(self.preprocess(faces), tta=tta).numpy()

    def predict(self, faces: Any, tta: str | None = None) -> list[Prediction]:
        """One :class:`Prediction` per face (always a list, also for a single face).

        ``faces``: one face crop or several: a file path, encoded bytes, a PIL image, a numpy
        image (H, W) or (H, W, C) (RGB, uint8 0-255 or float 0-1), a torch tensor (C, H, W) or
        (N, C, H, W), a numpy batch (N, H, W, C) or (N, H, W), or a list of any of these. A numpy
        (3, H, W) or (4, H, W) is 3 or 4 gray faces when (H, W) is the model's input size, else
        refused as ambiguous (an image channel-first, or 3 or 4 gray faces?): give such faces as
        (N, H, W, 1) or a list."""
        return [self.to_prediction(p) for p in self.predict_proba(faces, tta=tta)]

    def to_prediction(self, probs: Sequence[float]) -> Prediction:
        i = int(np.argmax(probs))
        return Prediction(self.classes[i], float(probs[i]), {c: float(p) for c, p in zip(self.classes, probs)})


def check_pixels(images, input_size: Sequence[int] | None = None) -> torch.Tensor:
    """A batch for ``predict_tensor`` (torch tensor or numpy array) as a tensor: uint8 0-255 or
    floats 0-1. Refused: other integer types (scaled as 0-1 they would read as noise), floats
    outside 0..1 (0..255 floats, or normalised ones: scaled again they would give confident
    nonsense), NaN or infinite values, and with ``input_size`` (C, H, W) any other shape than
    ``[N, C, H, W]``."""
    if isinstance(images, np.ndarray):
        images = np.ascontiguousarray(images)  # a flipped view (negative strides) torch cannot wrap
    t = torch.as_tensor(images).detach()  # a tensor that requires grad: its values (numpy cannot take it)
    if t.dtype != torch.uint8 and not t.dtype.is_floating_point:
        raise FerkitError(f"images of dtype {str(t.dtype).replace('torch.', '')}: give uint8 (0-255) or floats (0-1)")
    if input_size is not None and (t.ndim != 4 or tuple(t.shape[1:]) != tuple(input_size)):
        raise FerkitError(f"images are {tuple(t.shape)}, the model wants (N, {', '.join(map(str, input_size))})"
                          f" (N, C, H, W)")
    if t.dtype.is_floating_point and t.numel():
        if not bool(torch.isfinite(t).all()):
            raise FerkitError("the images hold NaN or infinite values")
        lo, hi = (float(v) for v in torch.aminmax(t.float()))
        if lo < -FLOAT_SLACK or hi > 1 + FLOAT_SLACK:
            raise FerkitError(f"float pixel values from {lo:g} to {hi:g}: give floats in 0..1 or uint8 (0..255); "
                              f"undo any normalisation first (the model applies its own)")
    return t


def _as_list(faces: Any, hw: tuple[int, int] | None = None) -> list:
    """The faces one by one. ``hw``: the model's input size, which settles a numpy (3|4, H, W):
    gray faces when (H, W) is the model's (what :meth:`Recognizer.crops` gives), else refused."""
    if isinstance(faces, torch.Tensor):  # PyTorch's layout: [N, C, H, W], [C, H, W] or [H, W]
        t = faces.detach().cpu()
        if t.ndim == 4:
            return list(t.permute(0, 2, 3, 1).numpy())
        if t.ndim == 3 and t.shape[0] in (1, 3):
            return [t.permute(1, 2, 0).numpy()]
        if t.ndim == 2:
            return [t.numpy()]
        raise FerkitError(f"cannot read faces from a tensor of shape {list(t.shape)}: "
                          f"expected [N, C, H, W], [C, H, W] (C = 1 or 3) or [H, W]")
    if isinstance(faces, (list, tuple)):
        return list(faces)
    if isinstance(faces, np.ndarray) and faces.ndim == 4:
        return list(faces)  # a batch: N x H x W x C
    if isinstance(faces, np.ndarray) and faces.ndim == 3 and faces.shape[-1] not in (1, 2, 3, 4):
        if faces.shape[0] in (3, 4) and tuple(faces.shape[1:]) != hw:  # C x H x W, or 3 or 4 gray faces? no guess
            raise FerkitError(f"an array of shape {list(faces.shape)} is ambiguous: one image in channel-first "
                              f"order, or {faces.shape[0]} gray faces? Give an image as (H, W) or (H, W, C), gray "
                              f"faces as (N, H, W, 1) or a list, or a torch tensor (channel-first)")
        if faces.shape[-1] < 12 and tuple(faces.shape[1:]) != hw:  # (48, 48, 5) read as 48 faces 5 px wide
            raise FerkitError(f"an array of shape {list(faces.shape)}: an image of {faces.shape[-1]} channels "
                              f"(1, 3 or 4 are read), or {faces.shape[0]} gray faces {faces.shape[-1]} pixels wide? "
                              f"Give an image as (H, W) or (H, W, C) with C = 1, 3 or 4, gray faces as (N, H, W, 1)")
        return list(faces)  # a batch of gray faces: N x H x W (N = 1: the one face either way)
    if isinstance(faces, (bytearray, memoryview)):
        return [bytes(faces)]
    if isinstance(faces, (str, os.PathLike, bytes, np.ndarray, Image.Image)) or is_file_object(faces):
        return [faces]  # (a file object: one image's bytes, read by read_image)
    if isinstance(faces, Iterable) and not isinstance(faces, (dict, set, frozenset, io.IOBase)):
        return list(faces)
    raise FerkitError(f"cannot read faces from a {type(faces).__name__}")


class EnsembleModel(ExpressionModel):
    """Several classifiers as one: the mean of their probabilities (``load_model("a+b+c")``).

    The members must share the input size and normalisation (all shipped FER2013 weights do) and
    hold the same classes; their columns are matched by class *name*, so their orders may differ.
    Same methods as :class:`ExpressionModel`; there is no ``net`` (explain one member at a time).
    """

    backend = "ensemble"

    def __init__(self, members: Sequence[ExpressionModel], given: Sequence[str] | None = None) -> None:
        """``given``: the names the members were loaded by (files, folders), for the messages."""
        if len(members) < 2:
            raise FerkitError("an ensemble needs at least two models")
        said = [m.name if g is None or str(g) == m.name else f"{g} ({m.name})"
                for m, g in zip(members, list(given or []) + [None] * len(members))]
        first = members[0]
        for m, who in zip(members[1:], said[1:]):
            if m.input_size != first.input_size:
                raise FerkitError(f"ensemble members differ in input size: {said[0]} {list(first.input_size)}, "
                                  f"{who} {list(m.input_size)}")
            if sorted(m.classes) != sorted(first.classes):
                raise FerkitError(f"ensemble members differ in classes: {said[0]} ({', '.join(first.classes)}), "
                                  f"{who} ({', '.join(m.classes)})")
        self.members = list(members)
        self.cols = [torch.tensor([m.classes.index(c) for c in first.classes]) for m in self.members]
        card = {"name": "+".join(m.name for m in members), "architecture": "ensemble",
                "classes": list(first.classes), "input_size": list(first.input_size), "mean": list(first.mean),
                "std": list(first.std), "members": [m.card for m in members],
                "params": sum(_params(m) for m in members)}
        self.card, self.net, self.device = card, None, first.device
        self.classes, self.input_size = first.classes, first.input_size
        self.mean, self.std = first.mean, first.std

    def predict_tensor(self, images: torch.Tensor | np.ndarray, tta: str | None = None,
                       batch_size: int = 256) -> torch.Tensor:
        probs = sum(m.predict_tensor(images, tta=tta, batch_size=batch_size)[:, c]
                    for m, c in zip(self.members, self.cols))
        return probs / len(self.members)

    def release_memory(self) -> None:
        from .runtime.memory import release

        release(*self.members)


def _params(m: ExpressionModel) -> int:
    if m.card.get("params"):
        return int(m.card["params"])
    return sum(p.numel() for p in m.net.parameters()) if m.net is not None else 0


def ensemble_names(name: str | os.PathLike) -> list[str] | None:
    """The member names of an ensemble name ``"a+b+c"`` (or of an alias for one, such as
    ``"mx3-fer2013"``); None when ``name`` is one model (a file whose name holds a ``+`` is one model)."""
    s = _weights.ALIASES.get(str(name), str(name))
    if "+" not in s or os.path.exists(os.path.expanduser(s)):
        return None
    parts = [p.strip() for p in s.split("+")]
    if any(not p for p in parts):
        raise FerkitError(f"ensemble {s!r}: an empty member name (write a+b+c)")
    return parts


BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
MAX_THREADS = 1024  #: more is a typo, not a machine: onnxruntime would try to start them all


def check_threads(threads) -> None:
    """``threads`` is None (the default) or a whole number from 1 to :data:`MAX_THREADS`."""
    if threads is not None:
        check_whole("threads", threads, 1, MAX_THREADS, " (or None: the default)")


def load_model(name: str | os.PathLike = "default", device: str = "cpu", backend: str = "auto",
               threads: int | None = None) -> ExpressionModel:
    """Load shipped weights by name (``"default"``, ``"mini_xception-fer2013"``), or a
    ``.safetensors`` file / run folder with its JSON model card, or an ``.onnx`` file from
    ``ferkit export``.

    ``backend``: ``torch`` (PyTorch), ``onnx`` (onnxruntime; weights are exported to ONNX once,
    into ``$FERKIT_CACHE/onnx``), ``onnx-int8`` (the same, quantised to int8) or ``auto``
    (default): ``onnx`` on the CPU, where it is several times faster (docs/benchmarks_classifier.md),
    else ``torch``; an ``.onnx`` file always runs on onnxruntime. ``threads``: onnxruntime threads
    (default :func:`ferkit.runtime.default_threads`). All give the same interface; onnx's probabilities
    are PyTorch's within 1e-4 (measured: 1e-6), int8's within a few hundredths.

    ``"a+b+c"`` names an ensemble: an :class:`EnsembleModel` averaging the probabilities of the
    models ``a``, ``b`` and ``c``, each loaded as above."""
    if backend not in BACKENDS:
        raise FerkitError(f"unknown backend {backend!r}; choose from: {', '.join(BACKENDS)}")
    check_threads(threads)
    from .engine.train import resolve_device

    device = resolve_device(device)
    parts = ensemble_names(name)
    if parts is not None:
        return EnsembleModel([load_model(p, device=device, backend=backend, threads=threads) for p in parts], parts)
    is_onnx = str(name).endswith(".onnx")
    if backend == "torch" and is_onnx:
        raise FerkitError(f"{name}: an ONNX file holds no PyTorch network, and this needs one (backend 'torch', "
                          f"explain, probe, au-analysis, training): give a shipped name, a .safetensors file or a "
                          f"run folder (ONNX files run in predict, evaluate and serve)")
    if backend == "auto":
        backend = "onnx" if is_onnx or torch.device(device).type == "cpu" else "torch"
        if backend == "onnx" and not is_onnx:
            from .runtime import ExportError, load_onnx_model

            try:
                return load_onnx_model(name, device=device, threads=threads)
            except (ImportError, ExportError) as e:  # no onnx(runtime) here, or a net that does not export
                import warnings

                from .io import caller_level

                warnings.warn(f"onnx backend unavailable ({e}); using PyTorch", FerkitWarning, stacklevel=caller_level())
                backend = "torch"
    if backend in ("onnx", "onnx-int8"):
        from .runtime import load_onnx_model

        return load_onnx_model(name, device=device, threads=threads, int8=backend == "onnx-int8")
    net, card = _weights.load(name)
    return ExpressionModel(net, card, device=device)
