"""An expression classifier running on onnxruntime, with the interface of :class:`ferkit.ExpressionModel`.

    model = OnnxExpressionModel("model.onnx")              # a file from `ferkit export`
    model = load_onnx_model("default")                     # shipped weights, exported on first use
    model = load_onnx_model("default", int8=True)          # int8: static (shipped ranges) or dynamic
    probs = model.predict_tensor(uint8_images_NCHW)        # torch.Tensor [N, K]
    model.predict("face.jpg")[0].label                     # as ExpressionModel

Weights (shipped names, ``.safetensors`` files, run folders) are exported once into the cache,
``$FERKIT_CACHE/onnx/`` (default ``~/.cache/ferkit/onnx/``), under the weights' SHA-256, so
nothing is shipped or downloaded: the first load exports (about a second), later ones read the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import weights as _weights
from ..api import ExpressionModel
from ..data.transforms import tta_views
from ..errors import FerkitWarning, ModelError
from .export import CARD_KEY, DEFAULT_OPSET, FORMAT_VERSION, INPUT_NAME, OUTPUT_NAMES, card_path, export_onnx


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``; else what :mod:`platform` knows). Speeds, and
    int8 results, differ between processors: measurements name the one they ran on."""
    import platform

    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else (platform.processor() or platform.machine())


def default_threads() -> int:
    """onnxruntime threads per session: ``$FERKIT_THREADS`` if set, else the cores, at most 4 (as the
    MTCNN detector). On our 2-core machine 2 threads nearly double the throughput of a batch of 64
    faces over 1 thread (docs/benchmarks_classifier.md); a single face of a small network is run on a
    second, one-thread session, where it is faster (:data:`SINGLE_THREAD_MAX_PARAMS`). The threads do not spin while idle, so they leave the cores to the
    rest of the pipeline."""
    env = os.environ.get("FERKIT_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ModelError(f"FERKIT_THREADS must be a number, got {env!r}") from None
    return max(1, min(4, os.cpu_count() or 1))


def _options(threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads > 1:  # threads that spin while waiting steal the CPU from the rest of the pipeline
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


#: A single face runs on a one-thread session when the network has fewer parameters than this (the
#: card's ``params``), else on the ``threads`` session. Batch 1 on 2 cores, onnxruntime, 1 thread vs 2
#: (ms, 2026-12-04): lite_cnn 0.08 vs 0.14, mini_xception 0.48 vs 0.69, di_fernet 0.98 vs 1.14,
#: pcnn 1.17 vs 1.13, zhu_cnn 1.51 vs 1.05, vgg_fer 10.6 vs 6.2: the two cross near 0.6M parameters.
SINGLE_THREAD_MAX_PARAMS = 600_000


def single_thread_suits(card: dict) -> bool:
    """Whether one face of this model runs faster on one onnxruntime thread (small networks; a card
    without ``params`` counts as large, which never runs slower than the batch session)."""
    params = card.get("params")
    return isinstance(params, int) and 0 < params < SINGLE_THREAD_MAX_PARAMS


class OnnxExpressionModel(ExpressionModel):
    """A classifier exported by :func:`ferkit.runtime.export_onnx`, run by onnxruntime.

    ``source``: an ``.onnx`` path or the file's bytes. ``card``: the model card when the file has
    none inside or beside it. ``threads``: onnxruntime intra-op threads (default
    :func:`default_threads`) for batches; one image of a small network runs on a one-thread session
    (:data:`SINGLE_THREAD_MAX_PARAMS`). ``device``: ``cpu``,
    or ``cuda`` where onnxruntime has CUDA.
    Same methods as :class:`~ferkit.ExpressionModel` (``predict``, ``predict_proba``,
    ``predict_tensor``, ``preprocess``); there is no ``net``.
    """

    backend = "onnx"

    def __init__(self, source: str | os.PathLike | bytes, card: dict | None = None, threads: int | None = None,
                 device: str | torch.device = "cpu") -> None:
        import onnxruntime as ort

        self.path = None if isinstance(source, (bytes, bytearray)) else Path(source)
        if self.path is not None and not self.path.is_file():
            raise ModelError(f"{self.path}: no such ONNX file")
        dev = torch.device(device)
        providers = ["CPUExecutionProvider"]
        if dev.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelError("this onnxruntime has no CUDA support: use backend 'torch' for --device cuda")
            providers.insert(0, "CUDAExecutionProvider")
        elif dev.type != "cpu":
            raise ModelError(f"the onnx backend runs on cpu or cuda, not {device!r}")
        from ..api import check_threads

        check_threads(threads)
        self.threads = int(threads) if threads else default_threads()
        src: bytes | str = bytes(source) if self.path is None else str(self.path)
        if isinstance(src, str) and not src.isascii():
            try:
                src.encode("utf-8")
            except UnicodeEncodeError:  # a name that is not UTF-8: onnxruntime takes no such str, so its bytes
                try:
                    src = self.path.read_bytes()  # type: ignore[union-attr]
                except OSError as e:
                    raise ModelError(f"{self.path}: cannot read it ({e.strerror or e})") from None
        try:
            self.session = ort.InferenceSession(src, sess_options=_options(self.threads), providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            name = "the ONNX bytes" if self.path is None else str(self.path)
            raise ModelError(f"{name}: onnxruntime cannot load it ({str(e).strip().splitlines()[0][:300]})") from None
        if card is None:
            meta = self.session.get_modelmeta().custom_metadata_map
            if CARD_KEY in meta:
                card = json.loads(meta[CARD_KEY])
            elif self.path is not None and card_path(self.path).exists():
                card = json.loads(card_path(self.path).read_text())
            else:
                raise ModelError(f"{self.path or 'ONNX model'}: no ferkit model card inside the file nor beside it")
        missing = [k for k in ("classes", "input_size", "mean", "std") if k not in card]
        if missing:
            raise ModelError(f"{self.path or 'ONNX model'}: model card lacks {missing}")
        from ..weights import check_card

        check_card(card, self.path or "ONNX model")
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if INPUT_NAME not in inputs or OUTPUT_NAMES[0] not in outputs:
            raise ModelError(f"{self.path or 'ONNX model'}: not a ferkit export (wants input {INPUT_NAME!r} and "
                             f"output {OUTPUT_NAMES[0]!r}; has {list(inputs)} -> {outputs})")
        self.net = None
        self.card = card
        self.device = dev
        # one face (the live path, a single upload) of a small network runs faster on one thread than on
        # several, which synchronise at every node; a large one is faster on several (see SINGLE_THREAD_MAX_PARAMS)
        self.session1 = self.session
        if self.threads > 1 and dev.type == "cpu" and single_thread_suits(card):
            self.session1 = ort.InferenceSession(src, sess_options=_options(1), providers=providers)
        self.classes = tuple(card["classes"])
        self.input_size = tuple(card["input_size"])  # type: ignore[assignment]
        self.mean, self.std = tuple(card["mean"]), tuple(card["std"])
        self.int8 = bool((card.get("onnx") or {}).get("quantization"))  # session.run is thread-safe: no lock
        self.backend = "onnx-int8" if self.int8 else "onnx"  # (the --backend names, as /healthz says it)

    def __repr__(self) -> str:
        kind = "int8" if self.int8 else "fp32"
        return (f"OnnxExpressionModel({self.name!r}, {kind}, classes={list(self.classes)}, input={self.input_size}, "
                f"threads={self.threads})")

    def release_memory(self) -> None:
        """Hand back what onnxruntime's arenas grew to for a large batch (see :mod:`ferkit.runtime.memory`)."""
        from .memory import shrink_arena

        shape = self.session.get_inputs()[0].shape  # [N, C, H, W], N named
        one = np.zeros([1] + [d if isinstance(d, int) else 1 for d in shape[1:]], np.float32)
        for sess in {id(s): s for s in (self.session, self.session1)}.values():
            shrink_arena(sess, {INPUT_NAME: one})

    def run(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for float32 images ``[N, C, H, W]`` in [0, 255] (the graph's own input); a
        single image of a small network runs on a one-thread session, the rest on ``threads``."""
        sess = self.session1 if len(images) == 1 else self.session
        return sess.run([OUTPUT_NAMES[0]], {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})[0]

    def predict_tensor(self, images: torch.Tensor | np.ndarray, tta: str | None = None,
                       batch_size: int = 256) -> torch.Tensor:
        """Probabilities ``[N, K]`` (a CPU torch tensor) for uint8 (or [0,1] float) images ``[N, C, H, W]``."""
        from ..api import check_pixels

        if not isinstance(batch_size, int) or batch_size < 1:
            raise ModelError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        x = check_pixels(images, self.input_size)
        if x.shape[0] == 0:
            return torch.zeros((0, len(self.classes)), dtype=torch.float32)
        # in numpy from here (the same float32 values as torch's .float() * 255; a few microseconds less a call,
        # which matters for one face of a small network, ~60 us in all). Floats go through torch (numpy has no
        # bfloat16); the result is a new C-ordered array: the caller's is untouched, run() copies no chunk again.
        a = np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32) if x.dtype == torch.uint8 else \
            np.ascontiguousarray(x.cpu().float().numpy() * np.float32(255))
        if not tta or tta == "none":  # the live path: one call per batch_size images, no further copies
            if len(a) <= batch_size:
                return torch.from_numpy(self.run(a))
            return torch.from_numpy(np.concatenate([self.run(a[i:i + batch_size])
                                                    for i in range(0, len(a), batch_size)]))
        out = []
        for i in range(0, len(a), batch_size):
            views = tta_views(torch.from_numpy(a[i:i + batch_size]), tta)
            probs = sum(self.run(v.contiguous().numpy()) for v in views)
            out.append(np.asarray(probs / len(views), dtype=np.float32))
        return torch.from_numpy(out[0] if len(out) == 1 else np.concatenate(out))


# ---------------------------------------------------------------------------------------
# exported on first use, kept in the cache
# ---------------------------------------------------------------------------------------
_MEMO: dict[str, bytes] = {}  # this process' exports by cache key (a new $FERKIT_CACHE is filled from here)
_MEMO_LOCK = threading.Lock()


def onnx_cache_dir() -> Path:
    """Where exported models are kept: ``<cache>/onnx``, or, where that cannot be written (a
    read-only home, a ``$FERKIT_CACHE`` that names no writable folder), a temporary folder of this
    process (said once, removed at exit): the onnx backend works, it only exports again next time."""
    from ..data.cache import cache_dir

    d = cache_dir() / "onnx"
    global _FALLBACK
    if _FALLBACK is not None and _FALLBACK[0] == d:
        return _FALLBACK[1]
    try:
        d.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=d).close()
        return d
    except OSError as e:
        import atexit
        import shutil

        tmp = Path(tempfile.mkdtemp(prefix="ferkit-onnx-"))
        atexit.register(shutil.rmtree, tmp, True)
        _FALLBACK = (d, tmp)
        from ..io import caller_level

        warnings.warn(f"the cache folder {d} cannot be written ({e.strerror or e}): exported models are kept for "
                      f"this run only (set FERKIT_CACHE to a writable folder to keep them)", FerkitWarning,
                      stacklevel=caller_level())  # (the caller's line, not ferkit's)
        return tmp


_FALLBACK: tuple[Path, Path] | None = None  #: (the unwritable cache folder, the temporary one used instead)


def cache_key(weights_path: str | os.PathLike, card: dict, opset: int = DEFAULT_OPSET, int8: str | None = None) -> str:
    """``<sha256 of the weights>-<8 hex of the rest>[-int8]``: the whole card (its classes, input
    size and normalisation are baked into the graph, and the card itself travels inside the file:
    the same weights shipped under another name, or with other metrics, are another entry), the
    opset and ferkit's export format. A file of differences (a ``-bn`` network) adds its base's
    hash as the base file is now: a base that changed gets a new entry (whose export then refuses
    it, as loading does), not the graph made from the old one."""
    wsha = _weights.sha256(weights_path)
    base = _weights.base_file(card)
    extra = json.dumps({"card": card, "opset": int(opset), "format": FORMAT_VERSION, "int8": int8,
                        **({"base_now": _weights.sha256(base)} if base is not None and base.is_file() else {})},
                       sort_keys=True)
    return f"{wsha}-{hashlib.sha256(extra.encode()).hexdigest()[:8]}" + (f"-int8{int8}" if int8 else "")


def cached_onnx(name_or_path: str | os.PathLike = "default", *, int8: bool | str = False,
                opset: int = DEFAULT_OPSET) -> Path:
    """The ONNX file of shipped weights / a weights file / a run folder, exported into the cache on
    first use. ``int8=True``: static int8 where ferkit ships activation ranges for these weights
    (:func:`ferkit.weights.int8_ranges`: calibrated on a selection split, no images needed here),
    else dynamic; ``"dynamic"`` forces dynamic. Static quantisation of other weights needs
    calibration images: :func:`export_onnx` (``int8='static', calibration=images``)."""
    mode = ("dynamic" if int8 is True else int8) if int8 else None
    if mode not in (None, "dynamic"):
        raise ModelError("cached int8 models use the shipped static ranges or dynamic quantisation; for static "
                         "quantisation with your own images call "
                         "ferkit.runtime.export_onnx(..., int8='static', calibration=images)")
    wpath = _weights.resolve(name_or_path)
    ranges = _weights.int8_ranges(wpath) if int8 is True else None
    if ranges is not None:  # its own cache entry per set of ranges
        mode = "static" + hashlib.sha256(json.dumps(ranges, sort_keys=True).encode()).hexdigest()[:8]
    cpath = wpath.with_suffix(".json")
    if not cpath.exists():
        raise ModelError(f"{wpath}: model card {cpath.name} is missing next to the weights")
    try:
        card = json.loads(cpath.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{cpath}: model card is not valid JSON ({e})") from None
    key = cache_key(wpath, card, opset, mode)
    from ..data.cache import cache_dir

    path = cache_dir() / "onnx" / f"{key}.onnx"  # made already (a read-only cache filled beforehand too)
    if path.is_file() and path.stat().st_size > 0:
        return path
    path = onnx_cache_dir() / f"{key}.onnx"  # where a new one can be written
    if path.is_file() and path.stat().st_size > 0:
        return path
    with _MEMO_LOCK:
        if path.is_file() and path.stat().st_size > 0:  # another thread made it meanwhile
            return path
        if key in _MEMO:
            from .export import _write_atomic

            _write_atomic(path, _MEMO[key])
            return path
        failed = None
        if ranges is not None:
            from .export import ExportError

            try:
                export_onnx(str(name_or_path), path, opset=opset, int8="static", int8_ranges=ranges, write_card=False)
            except ExportError as e:  # ranges made by another torch/onnxruntime: the dynamic int8 still works
                failed = e
        else:
            export_onnx(str(name_or_path), path, opset=opset, int8=mode or False, write_card=False)
        if failed is None:
            _MEMO[key] = path.read_bytes()
    if failed is not None:
        warnings.warn(f"{wpath.name}: {failed}; using dynamic int8 instead", FerkitWarning, stacklevel=2)
        return cached_onnx(name_or_path, int8="dynamic", opset=opset)
    return path


def load_onnx_model(name_or_path: str | os.PathLike = "default", *, int8: bool | str = False,
                    threads: int | None = None, device: str = "cpu") -> OnnxExpressionModel:
    """An :class:`OnnxExpressionModel` from an ``.onnx`` file, or from weights (shipped name,
    ``.safetensors``, run folder) exported on first use into the cache (see :func:`cached_onnx`)."""
    p = Path(str(name_or_path)).expanduser()
    if p.suffix == ".onnx":
        if not p.is_file():
            raise ModelError(f"{p}: no such ONNX file")
        model = OnnxExpressionModel(p, threads=threads, device=device)
        if int8 and not model.int8:
            raise ModelError(f"{p}: not an int8 model; make one with `ferkit export --int8`")
        return model
    path = cached_onnx(name_or_path, int8=int8)
    try:
        return OnnxExpressionModel(path, threads=threads, device=device)
    except ModelError:
        if torch.device(device).type != "cpu":
            raise
        path.unlink(missing_ok=True)  # a damaged cache entry: export again
        return OnnxExpressionModel(cached_onnx(name_or_path, int8=int8), threads=threads, device=device)
