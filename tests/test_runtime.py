"""ONNX export and the onnxruntime backend: same answers as PyTorch, a self-describing file, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
from conftest import EXAMPLE, make_fer2013
from PIL import Image

import ferkit
from ferkit import weights
from ferkit.api import ExpressionModel
from ferkit.cli import main
from ferkit.labels import CANONICAL
from ferkit.models import create, list_models
from ferkit.runtime import (
    OnnxExpressionModel,
    card_path,
    default_threads,
    export_onnx,
    load_onnx_model,
    onnx_cache_dir,
    read_card,
)
from ferkit.runtime.export import INPUT_NAME

# boxes (x0, y0, x1, y1) around the astronaut's face in examples/astronaut.jpg
FACE_BOXES = [(175, 50, 295, 170), (180, 60, 285, 175), (170, 40, 300, 180), (185, 65, 280, 170)]


def _faces() -> list[np.ndarray]:
    rgb = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    faces = [rgb[y0:y1, x0:x1] for x0, y0, x1, y1 in FACE_BOXES]
    return faces + [f[:, ::-1].copy() for f in faces]


def _images(input_size, n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, *input_size), dtype=np.uint8))


def _random_model(spec) -> ExpressionModel:
    """An architecture with random weights *and* random BN statistics, so that its outputs are far
    from uniform (fresh init gives near-zero logits, where any export looks right)."""
    torch.manual_seed(0)
    net = create(spec.name)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        head = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
        head.weight.normal_(0, 0.3)
    card = {"name": f"{spec.name}-random", "architecture": spec.name, "arch_kwargs": {},
            "classes": list(ferkit.CANONICAL), "input_size": list(spec.input_size), "mean": list(spec.mean),
            "std": list(spec.std)}
    return ExpressionModel(net, card)


@pytest.fixture(scope="module")
def default_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "fer.onnx"
    card = export_onnx("default", path)
    return path, card


# ---------------------------------------------------------------------------------------
# the same numbers as PyTorch
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", list_models(), ids=lambda s: s.name)
def test_every_architecture_exports_and_matches_torch(spec, tmp_path):
    model = _random_model(spec)
    card = export_onnx(model, tmp_path / "m.onnx")
    om = OnnxExpressionModel(tmp_path / "m.onnx")
    assert card["onnx"]["max_abs_diff_vs_torch"] <= 1e-4
    for n in (1, 3, 17):
        x = _images(spec.input_size, n, seed=n)
        want = model.predict_tensor(x)
        got = om.predict_tensor(x)
        assert got.shape == (n, 7) and got.dtype == torch.float32
        assert (got - want).abs().max().item() <= 1e-4
        assert want.max(1).values.min() > 0.2  # the random network is not trivially uniform
        assert torch.equal(got.argmax(1), want.argmax(1))


def test_shipped_default_matches_torch(default_onnx):
    path, card = default_onnx
    torch_model = ferkit.load_model("default", backend="torch")
    om = OnnxExpressionModel(path)
    for n in (1, 2, 64):
        x = _images(torch_model.input_size, n, seed=10 + n)
        assert (om.predict_tensor(x) - torch_model.predict_tensor(x)).abs().max().item() <= 1e-4
    # [0, 1] floats are accepted as by ExpressionModel, and TTA gives the same as in PyTorch
    x = _images(torch_model.input_size, 4, seed=3)
    assert torch.allclose(om.predict_tensor(x.float() / 255), torch_model.predict_tensor(x), atol=1e-4)
    # other float types (bfloat16 has no numpy twin) and numpy input; the caller's array is left as it was
    want = om.predict_tensor(x)
    for f in (x.numpy().astype(np.float64) / 255, x.numpy().astype(np.float32) / 255):  # float32: shared memory
        kept = f.copy()
        assert torch.allclose(om.predict_tensor(f), want, atol=1e-5) and np.array_equal(f, kept)
    ft = x.float() / 255
    assert torch.allclose(om.predict_tensor(ft), want, atol=1e-5) and torch.equal(ft, x.float() / 255)
    # a tensor that requires grad, and a transposed (not C-ordered) view
    assert torch.allclose(om.predict_tensor((x.float() / 255).requires_grad_()), want, atol=1e-5)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)
    assert not xt.is_contiguous() and torch.equal(om.predict_tensor(xt), want)
    assert torch.allclose(om.predict_tensor(x.to(torch.bfloat16) / 255), om.predict_tensor(x), atol=0.05)
    assert torch.equal(om.predict_tensor(x.numpy()), om.predict_tensor(x))
    for tta in ("flip", "tencrop"):
        assert torch.allclose(om.predict_tensor(x, tta=tta), torch_model.predict_tensor(x, tta=tta), atol=1e-4)
        assert torch.allclose(om.predict_tensor(x, tta=tta, batch_size=3), om.predict_tensor(x, tta=tta), atol=1e-6)
    # batches split into chunks give the same rows in the same order; no faces, no rows
    assert torch.allclose(om.predict_tensor(x, batch_size=3), torch_model.predict_tensor(x), atol=1e-4)
    assert om.predict_tensor(x[:0]).shape == (0, len(card["classes"]))
    assert card["onnx"]["max_abs_diff_vs_torch"] <= 1e-4


def test_the_file_alone_runs_on_onnxruntime_as_documented(default_onnx):
    """A user with only onnxruntime: feed raw 0..255 floats, read 'probabilities'."""
    path, card = default_onnx
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == "image" and inp.type == "tensor(float)" and inp.shape[1:] == [1, 48, 48]
    assert [o.name for o in sess.get_outputs()] == ["probabilities", "logits"]
    x = _images((1, 48, 48), 5, seed=7)
    probs, logits = sess.run(None, {"image": x.numpy().astype(np.float32)})
    want = ferkit.load_model("default", backend="torch").predict_tensor(x).numpy()
    assert np.abs(probs - want).max() <= 1e-4
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.abs(torch.softmax(torch.from_numpy(logits), 1).numpy() - probs).max() <= 1e-5


def test_the_cards_face_recipe_gives_predicts_answer_from_a_photo(default_onnx):
    """The card said only "resize/align the face to 48x48 first": a user warping the landmarks by hand
    onto another template got other probabilities. Its onnx.face now gives the template and the warp,
    and following it (ferkit's own align, as the card names it) gives predict's answer."""
    import cv2

    from ferkit.faces import align, template
    from ferkit.io import read_image

    path, card = default_onnx
    face = card["onnx"]["face"]
    assert np.allclose(face["template_xy"], template((48, 48)), atol=1e-4)
    assert "similarity" in face["warp"] and "least-squares" in face["warp"] and "RGB2GRAY" in face["color"]
    rgb = read_image(EXAMPLE, mode="RGB")
    rec = ferkit.Recognizer(ferkit.load_model("default", backend="torch"))
    r = rec.analyze(rgb)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    crop = align(gray, np.array(r.faces[0].landmarks), (48, 48))[0]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs = sess.run(["probabilities"], {"image": crop[None, None].astype(np.float32)})[0][0]
    assert np.abs(probs - [r.faces[0].probabilities[c] for c in card["classes"]]).max() <= 1e-4


def test_card_is_inside_and_beside_the_file(default_onnx):
    path, card = default_onnx
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    inside = json.loads(meta["ferkit_card"])
    beside = json.loads(card_path(path).read_text())
    assert card_path(path).name == "fer.onnx.json"
    assert inside == beside == card == read_card(path)
    shipped = json.loads(weights.resolve("default").with_suffix(".json").read_text())
    for k in ("architecture", "arch_kwargs", "classes", "input_size", "mean", "std", "sha256", "metrics"):
        assert card[k] == shipped[k]
    o = card["onnx"]
    assert o["opset"] == 17 and o["dynamic_batch"] and o["quantization"] is None
    assert o["input"] == {**o["input"], "name": "image", "dtype": "float32", "shape": ["N", 1, 48, 48],
                          "range": [0, 255], "color": "gray"}
    assert [x["name"] for x in o["outputs"]] == ["probabilities", "logits"]
    assert 0 <= o["max_abs_diff_vs_torch"] <= 1e-4
    # the card beside is only a convenience: the file alone is enough
    card_path(path).rename(path.with_name("moved.json"))
    try:
        assert OnnxExpressionModel(path).classes == ferkit.CANONICAL
    finally:
        path.with_name("moved.json").rename(card_path(path))


def test_opset_and_fixed_batch(tmp_path):
    card = export_onnx("default", tmp_path / "o13.onnx", opset=13, dynamic_batch=False)
    assert onnx.load(str(tmp_path / "o13.onnx")).opset_import[0].version == 13
    assert card["onnx"]["input"]["shape"][0] == 1
    om = OnnxExpressionModel(tmp_path / "o13.onnx")
    x = _images((1, 48, 48), 1)
    assert (om.predict_tensor(x) - ferkit.load_model("default", backend="torch").predict_tensor(x)).abs().max() < 1e-4


# ---------------------------------------------------------------------------------------
# load_model(backend=...), the cache, the Recognizer
# ---------------------------------------------------------------------------------------
def test_load_model_backends_and_cache():
    t = ferkit.load_model("default", backend="torch")
    assert type(t) is ExpressionModel and t.net is not None
    o = ferkit.load_model("default", backend="onnx")
    assert isinstance(o, OnnxExpressionModel) and isinstance(o, ExpressionModel) and o.net is None
    assert not o.int8 and o.threads == default_threads()
    assert isinstance(ferkit.load_model("default"), OnnxExpressionModel)  # auto: onnx on the CPU
    files = sorted(onnx_cache_dir().glob("*.onnx"))
    assert len(files) == 1 and files[0].name.startswith(weights.sha256(weights.resolve("default")))
    mtime = files[0].stat().st_mtime_ns
    assert ferkit.load_model("default", backend="onnx").classes == t.classes
    assert files[0].stat().st_mtime_ns == mtime  # read from the cache, not exported again
    files[0].write_bytes(b"not onnx")  # a damaged entry is exported again
    assert ferkit.load_model("default", backend="onnx").predict_proba(_faces()[:1]).shape == (1, 7)
    assert o.name == t.name and o.input_size == t.input_size and o.card["sha256"] == t.card["sha256"]


def test_one_face_of_a_small_network_runs_on_a_one_thread_session_with_the_same_answer():
    from ferkit.runtime.onnx_model import SINGLE_THREAD_MAX_PARAMS, single_thread_suits

    name = "mini_xception-fer2013"  # 202,087 parameters: one face is faster on one thread
    two, one = ferkit.load_model(name, backend="onnx", threads=2), ferkit.load_model(name, backend="onnx", threads=1)
    assert two.session.get_session_options().intra_op_num_threads == 2
    assert two.session1 is not two.session and two.session1.get_session_options().intra_op_num_threads == 1
    assert one.session1 is one.session  # nothing to add with one thread
    x = _images((1, 48, 48), 5)
    batch = two.predict_tensor(x)  # five faces: the two-thread session
    singles = torch.cat([two.predict_tensor(x[i:i + 1]) for i in range(5)])  # one at a time: the one-thread session
    assert (batch - singles).abs().max() < 1e-6 and (singles - one.predict_tensor(x)).abs().max() < 1e-6
    # the default (vgg_fer, 4.7M parameters) runs one face on all its threads, where it is faster
    big = ferkit.load_model("default", backend="onnx", threads=2)
    assert big.card["params"] > SINGLE_THREAD_MAX_PARAMS and big.session1 is big.session
    assert not single_thread_suits({}) and not single_thread_suits({"params": "many"})
    assert single_thread_suits({"params": 35_879}) and not single_thread_suits({"params": 4_718_407})


def test_cache_keeps_each_card_of_the_same_weights(tmp_path):
    """The same weights published under another name (a run, then its shipped copy) are another
    cache entry: the ONNX model carries the card it was loaded under, not the first one's."""
    net = create("mini_xception").eval()
    card = {"architecture": "mini_xception", "arch_kwargs": {}, "classes": list(CANONICAL),
            "input_size": [1, 48, 48], "mean": [0.5], "std": [0.25]}
    weights.save(net, tmp_path / "run.safetensors", {**card, "name": "runs/x"})
    (tmp_path / "shipped.safetensors").write_bytes((tmp_path / "run.safetensors").read_bytes())
    shipped = {**json.loads((tmp_path / "run.json").read_text()), "name": "mini_xception-fer2013-x"}
    (tmp_path / "shipped.json").write_text(json.dumps(shipped))
    first = ferkit.load_model(str(tmp_path / "run.safetensors"), backend="onnx")
    second = ferkit.load_model(str(tmp_path / "shipped.safetensors"), backend="onnx")
    assert (first.name, second.name) == ("runs/x", "mini_xception-fer2013-x")
    assert np.array_equal(first.predict_proba(_faces()), second.predict_proba(_faces()))


def test_auto_falls_back_to_torch_without_onnx(tmp_path, monkeypatch):
    """Where the onnx package is missing, backend='auto' warns and uses PyTorch; 'onnx' is an error."""
    torch.manual_seed(1)
    card = {"architecture": "mini_xception", "arch_kwargs": {}, "classes": list(ferkit.CANONICAL),
            "input_size": [1, 48, 48], "mean": [0.5], "std": [0.25]}
    weights.save(create("mini_xception"), tmp_path / "m.safetensors", card)
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    with pytest.warns(UserWarning, match="onnx backend unavailable .* using PyTorch"):
        m = ferkit.load_model(str(tmp_path / "m.safetensors"))
    assert type(m) is ExpressionModel
    with pytest.raises(ferkit.ModelError, match="needs the 'onnx' package"):
        ferkit.load_model(str(tmp_path / "m.safetensors"), backend="onnx")


def test_load_model_onnx_file_and_errors(default_onnx):
    path, _ = default_onnx
    assert isinstance(ferkit.load_model(str(path)), OnnxExpressionModel)
    assert isinstance(load_onnx_model(str(path)), OnnxExpressionModel)
    with pytest.raises(ferkit.FerkitError, match="holds no PyTorch network"):
        ferkit.load_model(str(path), backend="torch")
    with pytest.raises(ferkit.FerkitError, match="unknown backend 'tflite'"):
        ferkit.load_model("default", backend="tflite")
    with pytest.raises(ferkit.ModelError, match="no model 'nope'"):
        ferkit.load_model("nope", backend="onnx")
    with pytest.raises(ferkit.ModelError, match="not an int8 model"):
        ferkit.load_model(str(path), backend="onnx-int8")
    with pytest.raises(ferkit.ModelError, match="no such ONNX file"):
        ferkit.load_model(str(path.with_name("missing.onnx")))
    # a file name that is not UTF-8 (onnxruntime takes no such str): read as bytes, the same answers
    odd = Path(os.fsdecode(os.path.join(os.fsencode(path.parent), b"f\xe9r.onnx")))
    shutil.copy(path, odd)
    x = [np.random.default_rng(i).integers(0, 256, (48, 48), dtype=np.uint8) for i in range(3)]
    a, b = ferkit.load_model(str(path)), ferkit.load_model(str(odd))
    assert b.classes == a.classes and np.array_equal(a.predict_proba(x), b.predict_proba(x))


def test_recognizer_onnx_gives_torch_labels_on_the_example_photo():
    rt = ferkit.Recognizer(backend="torch")
    ro = ferkit.Recognizer(backend="onnx")
    assert isinstance(ro.model, OnnxExpressionModel) and type(rt.model) is ExpressionModel
    a, b = rt.predict(str(EXAMPLE)), ro.predict(str(EXAMPLE))
    assert len(a.faces) == len(b.faces) >= 1
    assert [f.label for f in a.faces] == [f.label for f in b.faces] == ["happy"]
    for fa, fb in zip(a.faces, b.faces):
        assert max(abs(fa.probabilities[c] - fb.probabilities[c]) for c in fa.probabilities) <= 1e-4
    ri = ferkit.Recognizer(backend="onnx-int8")
    assert [f.label for f in ri.predict(str(EXAMPLE)).faces] == ["happy"]


# ---------------------------------------------------------------------------------------
# int8
# ---------------------------------------------------------------------------------------
def _assert_int8_close_to_torch(q, mean: float, most: float) -> None:
    """An int8 model of the default against the default in PyTorch: the same label on the example
    crops (probabilities within 0.05), and on random images a mean / largest difference under these."""
    t = ferkit.load_model("default", backend="torch")
    faces = _faces()
    pt, pq = t.predict_proba(faces), q.predict_proba(faces)
    assert np.abs(pt - pq).max() < 0.05 and (pq.argmax(1) == pt.argmax(1)).all()
    x = _images((1, 48, 48), 64, seed=5)
    d = (t.predict_tensor(x) - q.predict_tensor(x)).abs()
    assert d.mean() < mean and d.max() < most


def test_int8_export_is_close(tmp_path, capsys):
    out = tmp_path / "fer-int8.onnx"
    assert main(["export", "--model", "default", "--format", "onnx", "--out", str(out), "--int8", "dynamic"]) == 0
    assert "int8 dynamic" in capsys.readouterr().out
    # calibration options without what they need are refused, not silently ignored
    for extra in (["--int8", "--calibration-split", "PublicTest"], ["--calibration-split", "PublicTest"],
                  ["--data", "somewhere"]):
        assert main(["export", "--model", "default", "--out", str(tmp_path / "x.onnx"), *extra]) == 1
        assert "--int8" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
    q = OnnxExpressionModel(out)
    assert q.int8 and q.card["onnx"]["quantization"]["mode"] == "dynamic"
    # int8 weights: a quarter of the float32 export (measured 4.7 MB against 18.9 MB for vgg_fer)
    export_onnx("default", tmp_path / "f32.onnx")
    assert out.stat().st_size < 0.3 * (tmp_path / "f32.onnx").stat().st_size
    # measured (vgg_fer-fer2013, before its statistics were re-estimated): 0.002 on the crops; 0.005 and 0.079 on
    # random images
    _assert_int8_close_to_torch(q, mean=0.03, most=0.25)
    # the same weights as backend="onnx-int8": the static model the shipped ranges give (below)
    q8 = ferkit.load_model("default", backend="onnx-int8")
    assert q8.card["onnx"]["quantization"]["mode"] == "static"
    assert q8.backend == "onnx-int8"  # (it said "onnx", where the server's /healthz said onnx-int8)
    from ferkit.cli import _runtime

    # what evaluate's table and --json name as the runtime (it said "torch" once .backend read onnx-int8)
    assert _runtime(q8) == "onnxruntime int8 (static)" and _runtime(ferkit.load_model("default")) == "onnxruntime"
    assert _runtime(ferkit.load_model("default", backend="torch")) == "torch"
    assert ferkit.load_model("mini_xception-fer2013", backend="onnx-int8").card["onnx"]["quantization"]["mode"] \
        == "dynamic"  # no shipped ranges for it


def test_static_int8_from_shipped_ranges(tmp_path, capsys, monkeypatch):
    """The default ships its activation ranges (calibrated on 512 PublicTest faces, no images shipped):
    --backend onnx-int8 and `ferkit export --int8` build the static QDQ model from them offline, the
    same model `ferkit export --int8 --dataset ...` makes from the images (measured: identical outputs;
    PrivateTest 71.11% against 71.16% in float32, docs/benchmarks_classifier.md)."""
    ranges = weights.int8_ranges(weights.resolve("default"))
    assert ranges is not None and ranges["calibration"]["split"] == "PublicTest" and ranges["calibration"]["images"] == 512
    assert ranges["weights_sha256"] == weights.sha256(weights.resolve("default"))
    assert weights.int8_ranges(weights.resolve("mini_xception-fer2013")) is None
    q = ferkit.load_model("default", backend="onnx-int8")
    quant = q.card["onnx"]["quantization"]
    assert q.int8 and quant["mode"] == "static" and quant["calibration"]["ranges_from"]["split"] == "PublicTest"
    _assert_int8_close_to_torch(q, mean=0.02, most=0.2)
    faces = _faces()
    pq = q.predict_proba(faces)
    # the softmax stays float: probabilities sum to 1 and are not in steps of 1/255
    assert np.abs(pq.sum(1) - 1).max() < 1e-5
    assert np.abs(pq * 255 - np.round(pq * 255)).max() > 0.01
    # the command line: --int8 (auto) uses the ranges, --int8 static without them is refused
    out = tmp_path / "s.onnx"
    assert main(["export", "--model", "default", "--out", str(out), "--int8"]) == 0
    assert "static int8 from the shipped ranges" in capsys.readouterr().out
    assert np.abs(OnnxExpressionModel(out).predict_proba(faces) - pq).max() < 1e-6
    assert main(["export", "--model", "mini_xception-fer2013", "--out", str(tmp_path / "m.onnx"), "--int8",
                 "static"]) == 1
    assert "ships no int8 ranges for mini_xception-fer2013" in capsys.readouterr().err
    # --int8 (auto) without ranges: dynamic int8, said (it was printed only as "int8 dynamic")
    assert main(["export", "--model", "mini_xception-fer2013", "--out", str(tmp_path / "m.onnx"), "--int8"]) == 0
    cap = capsys.readouterr()
    assert "int8 dynamic" in cap.out and "int8 against float32 torch: expected to differ" in cap.out
    assert "ships no int8 ranges for mini_xception-fer2013: dynamic int8 (weights only" in cap.err
    assert main(["export", "--model", "default", "--out", str(tmp_path / "d.onnx"), "--int8", "dynamic",
                 "--dataset", "fer2013", "--data", "."]) == 1
    assert "not with --int8 dynamic" in capsys.readouterr().err
    # ranges that do not fit the graph (another exporter's tensor names): a clear error, and the
    # cached backend falls back to dynamic int8 with a warning
    bad = {**ranges, "cache": {**ranges["cache"], "data": {k + "_x": v for k, v in ranges["cache"]["data"].items()}}}
    with pytest.raises(ferkit.FerkitError, match="int8 ranges do not fit this export"):
        export_onnx("default", tmp_path / "bad.onnx", int8="static", int8_ranges=bad)
    monkeypatch.setattr(weights, "int8_ranges", lambda path: bad)
    with pytest.warns(UserWarning, match="using dynamic int8 instead"):
        fallback = ferkit.load_model("default", backend="onnx-int8")
    assert fallback.card["onnx"]["quantization"]["mode"] == "dynamic"


def test_static_int8_with_calibration_images(tmp_path):
    rng = np.random.default_rng(0)
    calib = np.stack([np.asarray(Image.fromarray(f).convert("L").resize((48, 48))) for f in _faces()])[:, None]
    calib = np.concatenate([calib, rng.integers(0, 256, (8, 1, 48, 48), dtype=np.uint8)])
    card = export_onnx("default", tmp_path / "s.onnx", int8="static", calibration=calib)
    assert card["onnx"]["quantization"]["mode"] == "static"
    q = OnnxExpressionModel(tmp_path / "s.onnx")
    assert q.predict(_faces())[0].label == "happy"
    with pytest.raises(ferkit.FerkitError, match="needs calibration images"):
        export_onnx("default", tmp_path / "t.onnx", int8="static")
    # a prime count (--calibration-images 67): onnxruntime's calibrator fails on a short last
    # batch; two batches of 34, the first image seen twice, and the card says so
    odd = rng.integers(0, 256, (67, 1, 48, 48), dtype=np.uint8)
    assert export_onnx("fast", tmp_path / "o.onnx", int8="static", calibration=odd)["onnx"]["quantization"][
        "calibration"] == {"method": "percentile", "images": 67, "repeated": 1}


def _graph(*nodes, inits=()):
    from onnx import TensorProto, helper

    return helper.make_graph(list(nodes), "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, None)],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(inits))


def test_float_front_is_the_normalisation_and_the_first_conv():
    from onnx import helper, numpy_helper

    from ferkit.runtime.export import _float_parts, float_front

    w = numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")
    k = numpy_helper.from_array(np.ones(1, np.float32), "k")
    n = helper.make_node
    # Cast, Div and Sub from the image, a constant node beside them (not on the image's path), then Conv
    g = _graph(n("Cast", ["image"], ["c"], to=1, name="cast"), n("Constant", [], ["z"], name="const",
               value=numpy_helper.from_array(np.zeros(1, np.float32))), n("Div", ["c", "k"], ["d"], name="div"),
               n("Sub", ["d", "z"], ["s"], name="sub"), n("Conv", ["s", "w"], ["c1"], name="conv1"),
               n("Relu", ["c1"], ["r"], name="relu"), n("Conv", ["r", "w"], ["y"], name="conv2"), inits=[w, k])
    assert float_front(g) == ["cast", "div", "sub", "conv1"]
    # the card's words follow what was kept
    assert _float_parts(g, float_front(g)) == "the input normalisation, the first convolution and the final softmax"
    assert _float_parts(g, ["cast", "div"]) == "the input normalisation and the final softmax"
    assert _float_parts(g, []) == "the final softmax"
    # no normalisation: the first convolution alone; something else first: nothing
    assert float_front(_graph(n("Conv", ["image", "w"], ["y"], name="conv1"), inits=[w])) == ["conv1"]
    assert float_front(_graph(n("Transpose", ["image"], ["t"], name="t", perm=[0, 1, 3, 2]),
                              n("Conv", ["t", "w"], ["y"], name="conv1"), inits=[w])) == []
    # PCNN's layout: the normalisation, then region slices before any convolution; an unnamed node
    # ends the chain (its empty name in nodes_to_exclude would exclude every unnamed node)
    sl = [numpy_helper.from_array(np.array([v], np.int64), k) for k, v in (("s0", 0), ("s1", 24), ("ax", 2))]
    assert float_front(_graph(n("Mul", ["image", "k"], ["m"], name="mul"), n("Sub", ["m", "k"], ["s"], name="sub"),
                              n("Slice", ["s", "s0", "s1", "ax"], ["r"], name="slice"),
                              n("Conv", ["r", "w"], ["y"], name="conv1"), inits=[w, k, *sl])) == ["mul", "sub"]
    assert float_front(_graph(n("Mul", ["image", "k"], ["m"], name="mul"), n("Sub", ["m", "k"], ["s"]),
                              n("Conv", ["s", "w"], ["y"], name="conv1"), inits=[w, k])) == ["mul"]


def test_static_int8_keeps_the_front_in_float32():
    """Static int8 leaves the normalisation (Mul, Sub) and the first convolution in float32: no
    quantise/dequantise pair on the image, the first Conv reads the normalised floats with its float
    weights, and every later Conv reads dequantised int8 (its activations and weights)."""
    from ferkit.runtime.onnx_model import cached_onnx

    g = onnx.load(str(cached_onnx("lite_plain-fer2013", int8=True))).graph
    producer = {o: nd for nd in g.node for o in nd.output}
    inits = {i.name for i in g.initializer}
    assert [nd.op_type for nd in g.node if INPUT_NAME in nd.input] == ["Mul"]
    convs = [nd for nd in g.node if nd.op_type == "Conv"]
    assert len(convs) == 4
    assert producer[convs[0].input[0]].op_type == "Sub" and convs[0].input[1] in inits
    for c in convs[1:]:
        assert [producer[i].op_type for i in c.input[:2]] == ["DequantizeLinear", "DequantizeLinear"]
    quant = ferkit.load_model("lite_plain-fer2013", backend="onnx-int8").card["onnx"]["quantization"]
    assert quant["mode"] == "static" and quant["activations"] == (
        "int8 (the input normalisation, the first convolution and the final softmax in float32)")
    assert quant["float32_nodes"] == ["/Softmax", "/Mul", "/Sub", convs[0].name]


@pytest.mark.parametrize("n, size, repeated", [(1, 1, 0), (64, 64, 0), (67, 34, 1), (509, 64, 3), (512, 64, 0),
                                               (500, 63, 4)])
def test_calibration_batches_are_equal_and_hold_every_image(n, size, repeated):
    from ferkit.runtime.export import INPUT_NAME, _Calibration

    images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
    reader = _Calibration(images)
    batches = list(iter(lambda: reader.get_next(), None))
    assert {len(b[INPUT_NAME]) for b in batches} == {size} and reader.repeated == repeated
    seen = np.concatenate([b[INPUT_NAME] for b in batches]).ravel()
    assert sorted(set(seen)) == list(range(n)) and len(seen) == n + repeated


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------
def test_export_cli(tmp_path, capsys):
    out = tmp_path / "fer.onnx"
    assert main(["export", "--model", "default", "--format", "onnx", "--out", str(out), "--opset", "17"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "float32 [N, 1, 48, 48]" in text and "max |onnx - torch|" in text
    assert f"and {out}.json (the model card" in text  # (where the card is: beside the file, by its path)
    assert out.exists() and card_path(out).exists() and "replacing" not in text
    # the same file again: replaced, and said so
    assert main(["export", "--model", "fast", "--out", str(out)]) == 0
    assert "replacing the earlier file" in capsys.readouterr().out
    # a folder gets <name>.onnx (replaced, and said so, the second time)
    assert main(["export", "--out", str(tmp_path)]) == 0
    assert (tmp_path / f"{weights.ALIASES['default']}.onnx").exists() and "replacing" not in capsys.readouterr().out
    assert main(["export", "--out", str(tmp_path)]) == 0
    assert "replacing the earlier file" in capsys.readouterr().out


def test_export_cli_calibrates_static_int8_on_a_dataset_split(tmp_path, capsys):
    data = make_fer2013(tmp_path, {"Training": 1, "PublicTest": 4, "PrivateTest": 4})[0]  # 28 faces a test split
    out = tmp_path / "s.onnx"
    assert main(["export", "--model", "fast", "--out", str(out), "--int8", "static", "--dataset", "fer2013",
                 "--data", str(data), "--calibration-split", "PublicTest", "--calibration-images", "20"]) == 0
    captured = capsys.readouterr()
    assert "calibrating on 20 images of fer2013 PublicTest" in captured.out and "int8 static" in captured.out
    assert "test split" not in captured.err
    card = json.loads(card_path(out).read_text())
    assert card["onnx"]["quantization"]["mode"] == "static" and card["onnx"]["quantization"]["calibration"][
        "images"] == 20
    # which images calibrated it, recorded as the shipped ranges record theirs
    assert card["onnx"]["quantization"]["calibration"]["source"] == {
        "dataset": "fer2013", "data": str(data), "split": "PublicTest", "images": 20, "of": 28, "pick": "random, seed 0"}
    assert read_card(out)["onnx"]["quantization"]["calibration"]["source"]["split"] == "PublicTest"  # inside too
    q = ferkit.load_model(str(out))
    assert q.int8 and q.predict_tensor(torch.zeros(2, 1, 48, 48, dtype=torch.uint8)).shape == (2, 7)
    # more images asked than the split holds: all of them; the test split: a warning that says why not
    assert main(["export", "--model", "fast", "--out", str(tmp_path / "t.onnx"), "--int8", "static", "--dataset",
                 "fer2013", "--data", str(data), "--calibration-split", "PrivateTest"]) == 0
    captured = capsys.readouterr()
    assert "calibrating on 28 images of fer2013 PrivateTest" in captured.out
    assert "PrivateTest is fer2013's test split" in captured.err


def test_export_int8_at_an_old_opset_and_into_a_new_folder(tmp_path, capsys):
    # --int8 (auto) with shipped ranges at an opset static int8 cannot use: dynamic, with a warning
    # (it was an error); the card gives the file's own opset, which the quantiser raised to 11
    out = tmp_path / "d7.onnx"
    assert main(["export", "--model", "default", "--out", str(out), "--int8", "--opset", "7"]) == 0
    got = capsys.readouterr()
    assert "static int8 needs opset 13 or later" in got.err and "dynamic int8 instead" in got.err
    assert "opset 11, raised from 7 by the quantiser, int8 dynamic" in got.out
    card = read_card(out)
    assert card["onnx"]["quantization"]["mode"] == "dynamic"
    assert card["onnx"]["opset"] == onnx.load(str(out)).opset_import[0].version == 11
    assert card["onnx"]["opset_requested"] == 7
    # "exports/": a folder, made, holding <name>.onnx (it was "must end in .onnx" unless it existed)
    assert main(["export", "--model", "fast", "--out", str(tmp_path / "exports") + "/"]) == 0
    assert (tmp_path / "exports" / f"{weights.resolve('fast').stem}.onnx").is_file()
    # a card whose name is a path (cards are written by whatever trained them): the file stays in the folder
    shutil.copy(weights.SHIPPED_DIR / "lite_cnn-fer2013.safetensors", tmp_path / "m.safetensors")
    card = json.loads((weights.SHIPPED_DIR / "lite_cnn-fer2013.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**card, "name": "../../evil"}))
    assert main(["export", "--model", str(tmp_path / "m.safetensors"), "--out", str(tmp_path / "ex") + "/"]) == 0
    assert [p.name for p in (tmp_path / "ex").iterdir() if p.suffix == ".onnx"] == ["_.._evil.onnx"]
    assert not (tmp_path.parent / "evil.onnx").exists()


def test_export_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: ferkit export" in out and "examples:" in out and "--int8" in out and "probabilities" in out


@pytest.mark.parametrize("argv,msg", [
    (["export", "--model", "nope", "--format", "onnx", "--out", "{tmp}/x.onnx"], "no model 'nope'"),
    (["export", "--model", "default", "--out", "{tmp}/a_file/x.onnx"], "a_file is a file, not a folder"),
    (["export", "--model", "default", "--out", ""], "--out is empty"),
    (["export", "--model", "default", "--out", "{tmp}/x.pb"], "must end in .onnx"),
    (["export", "--model", "default", "--out", "{tmp}/x.onnx", "--opset", "3"], "opset 3 is not supported"),
    (["export", "--model", "default", "--out", "{tmp}/x.onnx", "--dataset", "fer2013", "--data", "."], "add --int8"),
    (["export", "--model", "default", "--out", "{tmp}/x.onnx", "--int8", "static", "--opset", "11"],
     "static int8 needs opset 13 or later"),
    (["predict", str(EXAMPLE), "--backend", "onnx", "--model", "nope"], "no model 'nope'"),
])
def test_export_errors_are_one_clear_line(argv, msg, tmp_path, capsys):
    (tmp_path / "a_file").write_text("a file, not a folder")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("ferkit: error: ") and msg in err and "Traceback" not in err


def test_cli_errors_in_a_real_process(tmp_path):
    (tmp_path / "a_file").write_text("x")
    r = subprocess.run([sys.executable, "-m", "ferkit.cli", "export", "--model", "default", "--format", "tflite",
                        "--out", str(tmp_path / "a_file" / "x.onnx")], capture_output=True, text=True)
    # a format ferkit does not write: a usage error (exit 2, as any invalid choice), named by its verb
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("ferkit export: error: argument --format: invalid choice: 'tflite'")
    r = subprocess.run([sys.executable, "-m", "ferkit.cli", "export", "--model", "default",
                        "--out", str(tmp_path / "a_file" / "x.onnx")], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "cannot write" in r.stderr


def test_predict_and_evaluate_take_a_backend(tmp_path, capsys):
    outs = {}
    for b in ("torch", "onnx", "onnx-int8"):
        assert main(["predict", str(EXAMPLE), "--backend", b, "--json", str(tmp_path / f"{b}.json"),
                     "--quiet"]) == 0
        outs[b] = json.loads((tmp_path / f"{b}.json").read_text())
    labels = {b: [f["label"] for f in r["faces"]] for b, r in outs.items()}
    assert labels["torch"] == labels["onnx"] == labels["onnx-int8"] == ["happy"]
    folders, _, _ = make_fer2013(tmp_path)
    res = {}
    for b in ("torch", "onnx"):
        js = tmp_path / f"ev-{b}.json"
        assert main(["evaluate", "--model", "default", "--dataset", "fer2013", "--data", str(folders),
                     "--split", "PrivateTest", "--backend", b, "--json", str(js)]) == 0
        res[b] = json.loads(js.read_text())
    assert res["torch"]["confusion_matrix"] == res["onnx"]["confusion_matrix"]
    assert res["torch"]["loss"] == pytest.approx(res["onnx"]["loss"], abs=1e-4)


def test_an_opset_too_old_is_one_line_not_the_exporters_graph(tmp_path, capfd):
    from ferkit.cli import main

    assert main(["export", "--model", "pcnn-fer2013", "--opset", "13", "--out", str(tmp_path / "p.onnx")]) == 1
    out, err = capfd.readouterr()
    assert "Torch IR graph" not in out and out.count("\n") < 3  # (it printed ~430 lines of graph)
    assert "torch.onnx.export failed" in err and "version 16" in err
    assert not (tmp_path / "p.onnx").exists()


def test_int8_ranges_tool_refuses_bad_counts_and_test_data(tmp_path):
    """tools/int8_ranges.py rewrites shipped ranges: a negative --images (numpy slicing would take all
    but N) or a split holding the test fold is refused before anything is written, in one line."""
    from conftest import ROOT, SHARED

    tool = [sys.executable, str(ROOT / "tools" / "int8_ranges.py"), "--model", "default"]
    shipped = ROOT / "src" / "ferkit" / "weights" / "int8" / f"{weights.resolve('default').stem}.json"
    before = shipped.read_bytes()
    r = subprocess.run(tool + ["--dataset", "jaffe", "--data", str(tmp_path), "--split", "val", "--images", "-200"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--images must be at least 1" in r.stderr
    r = subprocess.run(tool + ["--dataset", "nope", "--data", str(tmp_path), "--split", "val"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown dataset 'nope'" in r.stderr and "Traceback" not in r.stderr
    if (SHARED / "jaffe").is_dir():
        r = subprocess.run(tool + ["--dataset", "jaffe", "--data", str(SHARED / "jaffe"), "--split", "all",
                                   "--images", "5"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "holds its test split" in r.stderr
    assert shipped.read_bytes() == before


def test_an_unwritable_cache_exports_for_the_run_only(tmp_path, monkeypatch):
    # $FERKIT_CACHE naming a file (or a read-only home): the onnx backend still works, said once
    import ferkit.runtime.onnx_model as om

    (tmp_path / "a_file").write_text("not a folder")
    monkeypatch.setenv("FERKIT_CACHE", str(tmp_path / "a_file"))
    monkeypatch.setattr(om, "_FALLBACK", None)
    monkeypatch.setattr(om, "_MEMO", {})
    with pytest.warns(ferkit.FerkitWarning, match="cannot be written .*kept for this run only .*FERKIT_CACHE") as said:
        path = om.cached_onnx("lite_cnn-fer2013")
    assert said[0].filename == __file__  # the caller's line, not ferkit's (it named onnx_model.py)
    assert path.is_file() and tmp_path not in path.parents
    import warnings

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = ferkit.load_model("lite_cnn-fer2013", backend="onnx")  # the same folder again, without a second warning
    assert m.predict(np.full((48, 48), 128, np.uint8))[0].label in m.classes and not w
    # a cache filled beforehand and read-only now (a container image's): its files are used, no export
    filled = tmp_path / "filled"
    monkeypatch.setenv("FERKIT_CACHE", str(filled))
    monkeypatch.setattr(om, "_FALLBACK", None)
    made = om.cached_onnx("lite_cnn-fer2013")
    monkeypatch.setattr(om, "_MEMO", {})
    monkeypatch.setattr(om, "export_onnx", lambda *a, **k: pytest.fail("exported again"))
    real_probe = om.tempfile.TemporaryFile
    monkeypatch.setattr(om.tempfile, "TemporaryFile", lambda *a, **k: (_ for _ in ()).throw(OSError(30, "read-only")))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert om.cached_onnx("lite_cnn-fer2013") == made
    assert not w
    monkeypatch.setattr(om.tempfile, "TemporaryFile", real_probe)
