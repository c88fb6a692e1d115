"""Export a classifier to ONNX: one self-contained file that needs nothing but onnxruntime.

The graph takes the **raw image**: input ``image``, float32 ``[N, C, H, W]`` with pixel values
in [0, 255] (C = 1 for gray models, 3 for RGB; N is dynamic), and does the card's normalisation
``(x / 255 - mean) / std`` itself. It has two outputs: ``probabilities`` (softmax, ``[N, K]``,
columns in the card's ``classes`` order) and ``logits`` (``[N, K]``).

The model card travels with the graph: inside it (``metadata_props["ferkit_card"]``, JSON) and
beside it (``<file>.onnx.json``). It is the weights' card plus an ``onnx`` section that
documents the input and outputs, the opset, the quantisation if any, and the largest absolute
difference of the probabilities from PyTorch's, measured at export on random images.

Exporting uses PyTorch's TorchScript exporter (``torch.onnx.export(..., dynamo=False)``), which
needs the ``onnx`` package but not ``onnxscript``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..errors import FerkitError, ModelError
from ..io import give_usual_mode

DEFAULT_OPSET = 17
FORMAT_VERSION = 3  #: bump when the exported graph's interface or recipe changes (invalidates the cache)
INPUT_NAME = "image"
OUTPUT_NAMES = ("probabilities", "logits")
CARD_KEY = "ferkit_card"  #: metadata_props key holding the model card (JSON)
MAX_EXPORT_DIFF = 1e-3  #: an fp32 export whose probabilities differ more from PyTorch's is refused
INT8_MODES = ("dynamic", "static")


class ExportError(ModelError):
    """The network could not be exported to ONNX (or the export does not reproduce PyTorch)."""


class RangesMisfit(ExportError):
    """Shipped int8 activation ranges that an export cannot take (its opset is too old for static
    int8, or its graph has other tensor names): dynamic int8 is the fallback."""


#: static int8 is per-channel QDQ, whose DequantizeLinear ``axis`` came with opset 13
STATIC_MIN_OPSET = 13


class _Exported(nn.Module):
    """The network with the card's preprocessing in front and softmax behind."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        # (x / 255 - m) / s  ==  x * (1 / (255 s)) - m / s: one Mul and one Sub in the graph
        self.register_buffer("scale", 1.0 / (255.0 * s))
        self.register_buffer("shift", m / s)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(image * self.scale - self.shift).float()
        return torch.softmax(logits, dim=1), logits


def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("exporting to ONNX needs the 'onnx' package: pip install onnx") from None
    return onnx


def _as_model(model_or_name: Any):
    from ..api import ExpressionModel, load_model

    if isinstance(model_or_name, (str, os.PathLike)):
        if str(model_or_name).endswith(".onnx"):
            raise ExportError(f"{model_or_name}: already an ONNX file; export a shipped name, .safetensors file "
                              f"or run folder")
        model_or_name = load_model(str(model_or_name), backend="torch")
    if isinstance(model_or_name, ExpressionModel):
        if getattr(model_or_name, "backend", None) == "ensemble":
            raise ExportError(f"{model_or_name.name}: an ensemble exports one member at a time")
        if getattr(model_or_name, "net", None) is None:
            raise ExportError(f"{model_or_name.name}: already an ONNX model; export the PyTorch weights instead")
        return model_or_name
    raise ExportError(f"cannot export a {type(model_or_name).__name__}: give a model name, weights path or "
                      f"ferkit.ExpressionModel")


def _random_images(input_size: tuple[int, int, int], n: int, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    return (g.random((n, *input_size)) * 255.0).astype(np.float32)


def _session(model_bytes: bytes, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])


def _torch_probs(wrapper: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return wrapper(torch.from_numpy(x))[0].numpy()


def _max_diff(wrapper: nn.Module, model_bytes: bytes, input_size, batches=(1, 8)) -> float:
    sess = _session(model_bytes)
    diff = 0.0
    for i, n in enumerate(batches):
        x = _random_images(input_size, n, seed=i)
        got = sess.run([OUTPUT_NAMES[0]], {INPUT_NAME: x})[0]
        diff = max(diff, float(np.abs(got - _torch_probs(wrapper, x)).max()))
    return diff


class _Calibration:
    """onnxruntime's CalibrationDataReader over a uint8/float array of images, in batches of one
    size (up to 64): onnxruntime's percentile calibrator stacks the batches' outputs and fails on a
    shorter last one, so the last batch is filled up with the first images (``repeated`` of them,
    fewer than the number of batches: 509 images make 8 batches of 64, 3 images seen twice)."""

    def __init__(self, images: np.ndarray) -> None:
        n = len(images)
        k = -(-n // 64)  # batches
        size = -(-n // k)
        self.repeated = k * size - n
        images = np.concatenate([images, images[:self.repeated]])
        self.batches = iter([images[i:i + size] for i in range(0, k * size, size)])

    def get_next(self):
        b = next(self.batches, None)
        return None if b is None else {INPUT_NAME: b}


def _misfit(ranges: dict, why: str) -> ExportError:
    """Shipped int8 ranges that this export's graph does not take (another exporter's tensor names)."""
    return RangesMisfit(f"the int8 ranges do not fit this export ({why}; ranges made with torch "
                       f"{ranges.get('torch', '?')}, onnxruntime {ranges.get('onnxruntime', '?')}): calibrate again "
                       f"with images")


#: element-wise nodes of the input normalisation that :func:`float_front` keeps in float32
PREPROCESSING_OPS = ("Cast", "Mul", "Sub", "Div", "Add")


def _float_parts(graph, front: list[str]) -> str:
    """What static int8 left in float32, in words, for the card: "the input normalisation, the
    first convolution and the final softmax" (the parts :func:`float_front` found)."""
    ops = {n.name: n.op_type for n in graph.node}
    parts = (["the input normalisation"] if any(ops.get(f) in PREPROCESSING_OPS for f in front) else []) + \
        (["the first convolution"] if any(ops.get(f) == "Conv" for f in front) else []) + ["the final softmax"]
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def float_front(graph) -> list[str]:
    """Names of the nodes that static int8 leaves in float32 at the graph's start: the input
    normalisation (the element-wise chain from the image) and the first convolution it feeds.

    Why: quantised, the normalisation costs a quantise/dequantise pair per step, and the first
    convolution (one gray channel in, for ferkit's FER2013 models) is a poor int8 kernel, slower
    than float32 with its quantised input. Kept in float32 (its output quantised for the next
    layer), a 48x48 gray face through ``lite_plain-fer2013`` took 69 -> 57 us at batch 1 and 46 ->
    33 us a face at batch 64 (onnxruntime 1.32, Intel Xeon, 2 cores); the default's timings did not
    change. Measured on gray inputs only; RGB models get the same rule. The shipped activation
    ranges still fit: they were measured on the float32 graph, tensor by tensor.

    The chain stops at the first other node (e.g. PCNN's region ``Slice``: then no convolution is
    kept) and before a node without a name, which ``nodes_to_exclude`` could not single out (an
    empty name there would exclude every unnamed node)."""
    live = {i.name for i in graph.input} - {i.name for i in graph.initializer}
    names = []
    for n in graph.node:  # topological order
        if not live.intersection(n.input):
            continue
        if not n.name:
            break
        if n.op_type in PREPROCESSING_OPS:
            names.append(n.name)
            live.update(n.output)
            continue
        if n.op_type == "Conv":
            names.append(n.name)
        break
    return names


def _quantize(model_bytes: bytes, mode: str, calibration: np.ndarray | None,
              ranges: dict | None = None) -> tuple[bytes, dict]:
    """int8 quantisation with onnxruntime: ``dynamic`` (weights int8 offline, activations
    quantised at run time; needs no data) or ``static`` (QDQ, per-channel weights, activation
    ranges calibrated (percentile) on ``calibration`` images, or given as ``ranges``: the
    calibration of an earlier export, ``info["ranges"]`` of one made from images, which is how
    ferkit ships static int8 without shipping images; see :func:`ferkit.weights.int8_ranges`).
    Static int8 keeps the input normalisation, the first convolution (:func:`float_front`) and the
    final softmax in float32."""
    onnx = _require_onnx()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if mode not in INT8_MODES:
        raise ExportError(f"unknown int8 mode {mode!r}; choose from: {', '.join(INT8_MODES)}")
    with tempfile.TemporaryDirectory(prefix="ferkit-int8-") as td:
        src, pre, out = Path(td) / "fp32.onnx", Path(td) / "pre.onnx", Path(td) / "int8.onnx"
        src.write_bytes(model_bytes)
        quant_pre_process(str(src), str(pre))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if mode == "dynamic":
                quantize_dynamic(str(pre), str(out), weight_type=QuantType.QUInt8, per_channel=False)
                info = {"mode": "dynamic", "weights": "uint8 per tensor", "activations": "uint8, ranges at run time",
                        "tool": "onnxruntime.quantization.quantize_dynamic"}
            else:
                import inspect

                if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
                    raise ExportError(f"static int8 needs onnxruntime >= 1.24 (calibration caches); this is "
                                      f"{__import__('onnxruntime').__version__}")
                cache = Path(td) / "ranges.json"
                reader = None
                if ranges is not None:
                    g = onnx.load(str(pre)).graph
                    names = ({t for n in g.node for t in (*n.input, *n.output)} | {i.name for i in g.input}
                             | {o.name for o in g.output})
                    missing = sorted(set(ranges["cache"].get("data", {})) - names)
                    if missing or not ranges["cache"].get("data"):
                        raise _misfit(ranges, f"{len(missing)} of their tensors are not in its graph, e.g. "
                                              f"{missing[:2]}")
                    cache.write_text(json.dumps(ranges["cache"]))
                elif calibration is None or len(calibration) == 0:
                    raise ExportError("static int8 quantisation needs calibration images (e.g. a validation split)")
                else:
                    calib = np.ascontiguousarray(calibration, dtype=np.float32)
                    if calibration.dtype != np.uint8 and calib.max() <= 1.0:
                        calib = calib * 255.0
                    reader = _Calibration(calib)
                try:
                    with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its progress
                        # the softmax stays float: quantised, its probabilities come in steps of 1/255
                        # and do not sum to 1 (the logits before it are int8-computed all the same)
                        g = onnx.load(str(pre)).graph
                        softmax = [n.name for n in g.node if n.op_type == "Softmax" and n.name]
                        front = float_front(g)
                        quantize_static(str(pre), str(out), reader, quant_format=QuantFormat.QDQ,
                                        per_channel=True, activation_type=QuantType.QInt8,
                                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Percentile,
                                        calibration_cache_path=str(cache), nodes_to_exclude=softmax + front)
                except (KeyError, ValueError, RuntimeError) as e:
                    if ranges is None:
                        raise
                    raise _misfit(ranges, f"{type(e).__name__}: {e}") from None
                info = {"mode": "static", "format": "QDQ", "weights": "int8 per channel",
                        "activations": f"int8 ({_float_parts(g, front)} in float32)",
                        "float32_nodes": softmax + front,
                        "calibration": ({"method": "percentile", "images": int(len(calibration)),
                                         **({"repeated": reader.repeated} if reader.repeated else {})}
                                        if ranges is None
                                        else {"method": "percentile", "ranges_from": ranges.get("calibration")}),
                        "tool": "onnxruntime.quantization.quantize_static"}
                if ranges is None:
                    info["ranges"] = json.loads(cache.read_text())
        q = onnx.load(str(out))
    return q.SerializeToString(), info



@contextlib.contextmanager
def _quiet_stdout():
    """File descriptor 1 to /dev/null for the block (what C++ code prints there too)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # no real stdout: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)

def face_recipe(size: tuple[int, int], gray: bool) -> dict:
    """How ferkit makes a network's input from a photo, for a card: what an exported file's user must
    repeat to get ferkit's answers (``ferkit.faces.align`` and ``Recognizer.crops`` do it)."""
    from ..faces.align import template

    h, w = size
    return {
        "landmarks": "5 points, as MTCNN gives them: image-left eye, image-right eye, nose tip, image-left and "
                     "image-right mouth corners",
        "template_xy": np.round(template((h, w)), 4).tolist(),
        "warp": "the similarity (rotation, uniform scale s, shift; no reflection) taking the 5 landmarks onto "
                "template_xy in the least-squares sense (Umeyama 1991), applied with cv2.warpAffine, bilinear, "
                "border replicated; when s < 0.5 the photo is first shrunk by p = 2**-floor(log2(1/s)) to "
                "round(W*p) x round(H*p) with cv2.INTER_AREA, and the similarity taken from the landmarks times p, "
                "so that the face does not alias",
        "color": ("gray: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) of the photo, before the warp" if gray else
                  "RGB, as decoded"),
        "crop_given": f"an image that is already a face crop (--detector none) is " +
                      ("made gray by Pillow (convert('L')) and " if gray else "") +
                      f"resized to {w}x{h} with Pillow's bilinear filter (antialiased)",
        "code": "ferkit.faces.align.align(image, landmarks, (h, w)) does the warp; ferkit.Recognizer.crops the rest",
    }


def export_onnx(model_or_name: Any, path: str | os.PathLike, *, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = True, int8: bool | str = False, calibration: np.ndarray | None = None,
                int8_ranges: dict | None = None, write_card: bool = True,
                calibration_source: dict | None = None) -> dict:
    """Export a classifier (shipped name, ``.safetensors`` file, run folder or
    :class:`~ferkit.ExpressionModel`) to ``path`` (``.onnx``; a folder gets ``<name>.onnx``).

    The graph: input ``image`` float32 ``[N, C, H, W]``, raw pixels in [0, 255]; outputs
    ``probabilities`` (softmax) and ``logits``, ``[N, K]`` in ``card["classes"]`` order.
    ``dynamic_batch=False`` fixes N to 1. ``int8``: ``True``/``"dynamic"`` or ``"static"``
    (then ``calibration``: images ``[M, C, H, W]``, uint8 or [0, 255] floats, or
    ``int8_ranges``: shipped activation ranges, :func:`ferkit.weights.int8_ranges`) quantises the
    graph with onnxruntime (``calibration_source``: where the images came from, e.g. ``{"dataset",
    "split", "images", "pick"}``, recorded in the card). Writes the card into the graph's metadata and, unless
    ``write_card=False``, beside it as ``<path>.json``. Returns the card (with its ``onnx`` section).
    """
    onnx = _require_onnx()
    import onnxruntime as ort

    from .. import __version__

    model = _as_model(model_or_name)
    mode = ("dynamic" if int8 is True else int8) if int8 else None
    if mode is not None and mode not in INT8_MODES:
        raise ExportError(f"unknown int8 mode {mode!r}; choose from: {', '.join(INT8_MODES)}")
    folder = str(path).endswith(("/", os.sep))  # "exports/": a folder, made if need be
    path = Path(path).expanduser()
    if folder and not path.exists():
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FerkitError(f"cannot make the folder {path}: {e.strerror or e}") from None
    if path.is_dir():  # named after the model, as a file name (a card's name is whatever trained it)
        stem = re.sub(r"[/\\\x00-\x1f\x7f]+", "_", str(model.name)).lstrip(".") or "model"
        path = path / f"{stem}{'-int8' if mode else ''}.onnx"
    if path.suffix != ".onnx":
        raise FerkitError(f"{path}: the output file must end in .onnx (or name a folder, ending in /)")
    if not 7 <= int(opset) <= 20:
        raise ExportError(f"opset {opset} is not supported: use 7 to 20 (default {DEFAULT_OPSET})")
    if mode == "static" and int(opset) < STATIC_MIN_OPSET:
        err = RangesMisfit if int8_ranges is not None else ExportError
        raise err(f"static int8 needs opset {STATIC_MIN_OPSET} or later (per-channel QDQ), not {opset}")
    _check_writable(path)

    c, h, w = model.input_size
    wrapper = _Exported(copy.deepcopy(model.net).float().cpu().eval(), model.mean, model.std).eval()
    buf = io.BytesIO()
    dyn = {INPUT_NAME: {0: "N"}, **{o: {0: "N"} for o in OUTPUT_NAMES}} if dynamic_batch else None
    try:
        # (on an unsupported operator the exporter prints its whole graph, hundreds of lines, on
        # stdout before raising: the one-line error below says what matters)
        with warnings.catch_warnings(), _quiet_stdout():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (torch.rand(2 if dynamic_batch else 1, c, h, w) * 255,), buf, dynamo=False,
                              opset_version=int(opset), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                              dynamic_axes=dyn, do_constant_folding=True)
    except Exception as e:  # the exporter raises many kinds; all mean the same to a user
        raise ExportError(f"{model.name}: torch.onnx.export failed: {type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
    model_bytes = buf.getvalue()
    try:
        onnx.checker.check_model(onnx.load_from_string(model_bytes))
    except Exception as e:
        raise ExportError(f"{model.name}: the exported graph is not valid ONNX: {e}") from e
    batches = (1, 8) if dynamic_batch else (1,)
    fp32_diff = _max_diff(wrapper, model_bytes, model.input_size, batches)
    if not fp32_diff <= MAX_EXPORT_DIFF:
        raise ExportError(f"{model.name}: ONNX probabilities differ from PyTorch's by {fp32_diff:.2e} "
                          f"(> {MAX_EXPORT_DIFF:g}); not writing {path}")
    quant, ranges_made = None, None
    if mode:
        model_bytes, quant = _quantize(model_bytes, mode, calibration, int8_ranges if mode == "static" else None)
        ranges_made = quant.pop("ranges", None)
        if calibration_source and calibration is not None and isinstance(quant.get("calibration"), dict):
            quant["calibration"]["source"] = dict(calibration_source)
        try:
            quant["max_abs_diff_vs_fp32_torch"] = _max_diff(wrapper, model_bytes, model.input_size, batches)
        except Exception as e:  # onnxruntime cannot run the quantised graph
            raise ExportError(f"{model.name}: onnxruntime cannot run the int8 graph ({type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}); not writing "
                              f"{path}") from None
        quant["note"] = ("max_abs_diff measured on random images; the card's `metrics` are the float32 model's: "
                         f"measure this file's with `ferkit evaluate --model {Path(path).name} ...` (the file itself: "
                         "`--model M --backend onnx-int8` runs the shipped ranges of M's weights where ferkit has "
                         "them, else dynamic int8; on FER2013: the default's in docs/benchmarks_classifier.md, "
                         "lite_plain-fer2013's in docs/results/fer2013-lite_plain-fer2013-int8-*.json)")

    card = {k: v for k, v in model.card.items() if k != "onnx"}
    n = "N" if dynamic_batch else 1
    # the file's own opset: onnxruntime's quantiser raises an older one (to 11 for dynamic int8)
    made = next((o.version for o in onnx.load_from_string(model_bytes).opset_import if o.domain in ("", "ai.onnx")),
                int(opset))
    card["onnx"] = {
        "format_version": FORMAT_VERSION,
        "file": path.name,
        "opset": int(made),
        **({"opset_requested": int(opset)} if int(made) != int(opset) else {}),
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": [n, c, h, w],
                  "layout": "NCHW", "color": "gray" if c == 1 else "RGB", "range": [0, 255],
                  "preprocessing": f"inside the graph: (image / 255 - mean) / std with mean {list(model.mean)}, "
                                   f"std {list(model.std)}; align the face to {h}x{w} first (see 'face')"},
        "face": face_recipe((h, w), gray=c == 1),
        "outputs": [{"name": OUTPUT_NAMES[0], "dtype": "float32", "shape": [n, len(model.classes)],
                     "meaning": "softmax probabilities, columns in 'classes' order"},
                    {"name": OUTPUT_NAMES[1], "dtype": "float32", "shape": [n, len(model.classes)],
                     "meaning": "logits (before softmax)"}],
        "dynamic_batch": bool(dynamic_batch),
        "max_abs_diff_vs_torch": fp32_diff,
        "diff_measured_on": f"random images in [0, 255], batch {' and '.join(map(str, batches))}, probabilities",
        "quantization": quant,
        "exporter": "torch.onnx.export (TorchScript exporter, dynamo=False), constant folding",
        "versions": {"ferkit": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": ort.__version__},
    }
    if quant:
        card["onnx"]["max_abs_diff_vs_torch"] = quant["max_abs_diff_vs_fp32_torch"]
        card["onnx"]["max_abs_diff_fp32_export"] = fp32_diff

    proto = onnx.load_from_string(model_bytes)
    del proto.metadata_props[:]
    for k, v in ((CARD_KEY, json.dumps(card)), ("ferkit_version", __version__),
                 ("classes", ",".join(model.classes))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.doc_string = (f"ferkit {model.name}: input '{INPUT_NAME}' float32 [N,{c},{h},{w}] raw pixels 0..255 "
                        f"({'gray' if c == 1 else 'RGB'}, normalisation inside); outputs 'probabilities' (softmax) "
                        f"and 'logits' [N,{len(model.classes)}], classes {','.join(model.classes)}")
    _write_atomic(path, proto.SerializeToString())
    if write_card:
        _write_atomic(card_path(path), (json.dumps(card, indent=2) + "\n").encode())
    if quant and ranges_made is not None:  # the calibration, reusable without the images (int8_ranges)
        card["onnx"]["quantization"]["ranges"] = {"cache": ranges_made, "torch": torch.__version__,
                                                  "onnxruntime": ort.__version__}
    return card


def card_path(onnx_path: str | os.PathLike) -> Path:
    """Where the card beside an ONNX file lives: ``model.onnx`` -> ``model.onnx.json``."""
    p = Path(onnx_path)
    return p.with_name(p.name + ".json")


def read_card(onnx_path: str | os.PathLike) -> dict:
    """The model card of an ONNX file: from its metadata, else from the ``.onnx.json`` beside it."""
    onnx = _require_onnx()
    p = Path(onnx_path)
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as e:
        raise ModelError(f"{p}: not a readable ONNX file ({e})") from None
    meta = {m.key: m.value for m in proto.metadata_props}
    if CARD_KEY in meta:
        return json.loads(meta[CARD_KEY])
    if card_path(p).exists():
        return json.loads(card_path(p).read_text())
    raise ModelError(f"{p}: no ferkit model card inside the file nor beside it ({card_path(p).name})")


def _check_writable(path: Path) -> None:
    """Refuse, before any work, a path that cannot be written (its missing folders are made)."""
    for up in path.parents:
        if up.exists():
            if not up.is_dir():
                raise FerkitError(f"cannot write {path}: {up} is a file, not a folder")
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=True):
            pass
    except OSError as e:
        raise FerkitError(f"cannot write {path}: {e.strerror or e}") from None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            give_usual_mode(tmp)  # mkstemp makes 0600
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise FerkitError(f"cannot write {path}: {e.strerror or e}") from None
