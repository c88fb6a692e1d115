"""`ferkit evaluate --detect`: datasets of full photos go through detection + alignment first."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import EXAMPLE, SHARED, requires_shared
from PIL import Image

from ferkit import Recognizer, load_model
from ferkit.cli import main
from ferkit.data import cache as _cache
from ferkit.data import open_dataset
from ferkit.engine.evaluate import evaluate, face_cropper
from ferkit.errors import FerkitError
from ferkit.io import read_image

#: (file name, scale of the photo, its top-left corner in a 640x480 canvas); JAFFE layout, all happy
PLACED = [("KA.HA1.1.tiff", 0.5, (20, 30)), ("KA.HA2.2.tiff", 0.8, (200, 40)), ("KL.HA1.3.tiff", 0.35, (420, 260)),
          ("KL.HA2.4.tiff", 0.6, (60, 170))]
NO_FACE = "KM.NE1.5.tiff"


def _canvas(scale: float, xy: tuple[int, int]) -> np.ndarray:
    photo = Image.open(EXAMPLE).convert("RGB")
    small = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BILINEAR)
    canvas = Image.new("RGB", (640, 480), (90, 90, 90))
    canvas.paste(small, xy)
    return np.asarray(canvas)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A tiny JAFFE-layout dataset of full photos: the example photo placed at different places and
    scales in a larger canvas (saved RGB, so crops can be compared with the pipeline's exactly),
    and one flat gray image with no face in it."""
    root = tmp_path_factory.mktemp("photos") / "jaffe"
    root.mkdir()
    for name, scale, xy in PLACED:
        Image.fromarray(_canvas(scale, xy)).save(root / name)
    Image.new("L", (256, 256), 128).save(root / NO_FACE)
    return root


@pytest.fixture(scope="module")
def model():
    return load_model("default")


def _size(model):
    c, h, w = model.input_size
    return (h, w), "L" if c == 1 else "RGB"


def _entries() -> set[str]:
    d = _cache.cache_dir() / "datasets"
    return {p.stem for p in d.glob("*.safetensors")} if d.is_dir() else set()


def test_detected_crops_match_the_pipeline_and_no_face_is_counted(photos, model):
    size, mode = _size(model)
    reader = open_dataset("jaffe", photos)
    crop, key = face_cropper(model, "mtcnn", min_face=20)
    assert key.startswith("mtcnn:min20:")
    with pytest.warns(UserWarning, match=r"no face found in 1 of 5 image\(s\), the whole image is used"):
        ds = reader.load("all", size=size, mode=mode, crop=crop, crop_key=key)
    assert len(ds) == len(PLACED) + 1 and ds.image_size == tuple(model.input_size)
    rec = Recognizer(model, detector="mtcnn", min_face_size=20)
    for i, src in enumerate(ds.sources):
        rgb = read_image(src, mode="RGB")
        dets = rec.detect(rgb)
        got = ds.images[i].numpy()
        if os.path.basename(src) == NO_FACE:
            assert dets == []
            continue
        best = max(dets, key=lambda d: d.score)
        want = rec.crops(rgb, [best])[0]
        assert np.array_equal(got.reshape(want.shape), want), src
    assert ds.no_face == [str(photos / NO_FACE)]
    # the faceless image is kept: the whole image, resized (nothing is dropped silently)
    j = ds.sources.index(str(photos / NO_FACE))
    assert (ds.images[j] == 128).all()
    # subsets keep only their own faceless sources
    assert ds.subset([j]).no_face == ds.no_face and ds.subset([k for k in range(len(ds)) if k != j]).no_face == []


@pytest.mark.filterwarnings("ignore:.*no face found:UserWarning")
def test_detected_crops_are_cached_apart_and_keep_no_face(photos, model):
    size, mode = _size(model)
    reader = open_dataset("jaffe", photos)
    plain = reader.load("all", size=size, mode=mode)
    after_plain = _entries()
    crop, key = face_cropper(model, "mtcnn")
    det = reader.load("all", size=size, mode=mode, crop=crop, crop_key=key)
    after_det = _entries()
    assert len(after_det - after_plain) == 1  # a second entry, under its own key
    assert plain.no_face == [] and not np.array_equal(plain.images.numpy(), det.images.numpy())

    def must_not_run(rgb):
        raise AssertionError("the cached crops should be used")

    again = reader.load("all", size=size, mode=mode, crop=must_not_run, crop_key=key)
    assert np.array_equal(again.images.numpy(), det.images.numpy()) and again.no_face == det.no_face
    assert reader.load("all", size=size, mode=mode).no_face == []  # the whole-image entry is untouched
    haar, hkey = face_cropper(model, "haar")
    assert hkey != key
    reader.load("all", size=size, mode=mode, crop=haar, crop_key=hkey)
    assert len(_entries() - after_det) == 1


def test_evaluate_cli_detect(photos, tmp_path, capsys):
    js = tmp_path / "r.json"
    args = ["evaluate", "--model", "default", "--dataset", "jaffe", "--data", str(photos), "--split", "all"]
    with pytest.warns(UserWarning, match="no face found in 1 of 5"):
        assert main([*args, "--detect", "mtcnn", "--json", str(js)]) == 0
    res = json.loads(js.read_text())
    assert res["detector"] == "mtcnn" and res["min_face"] == 20 and res["n"] == len(PLACED) + 1
    assert res["no_face"] == 1 and res["no_face_files"] == [str(photos / NO_FACE)]
    # the smile is read in every detected face, wherever and however large the photo sits
    happy = res["classes"].index("happy")
    assert res["confusion_matrix"][happy][happy] == len(PLACED)
    out = capsys.readouterr().out
    assert "mtcnn detector; no face found in 1 of 5 images" in out and NO_FACE in out
    # without --detect: today's behaviour, and the JSON says so
    assert main([*args, "--json", str(js)]) == 0
    plain = json.loads(js.read_text())
    assert plain["detector"] == "none" and "no_face" not in plain
    assert plain["runtime"] in ("torch", "onnxruntime")  # what computed the numbers
    assert "no face found" not in capsys.readouterr().out
    with pytest.warns(UserWarning, match="no face found"):
        assert main([*args, "--detect", "haar", "--min-face", "40", "--json", str(js)]) == 0
    h = json.loads(js.read_text())
    assert h["detector"] == "haar" and h["min_face"] == 40 and h["no_face"] >= 1


def test_clear_errors(photos, model, capsys):
    with pytest.raises(FerkitError, match="unknown face detector"):
        face_cropper(model, "dlib")
    with pytest.raises(FerkitError, match="at least 1 pixel"):
        face_cropper(model, "mtcnn", min_face=0)
    # with MTCNN every value it refuses gets its one message (0 said "at least 1 pixel", then 5 said 12)
    assert main(["evaluate", "--dataset", "jaffe", "--data", str(photos), "--split", "all", "--detect", "mtcnn",
                 "--min-face", "0"]) == 1
    assert "--min-face must be 12 pixels or more with MTCNN (its smallest window), got 0" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", "jaffe", "--data", str(photos), "--split", "all", "--detect", "haar",
                 "--min-face", "0"]) == 1
    assert "--min-face must be at least 1 pixel" in capsys.readouterr().err
    # MTCNN's smallest window, said before any image (it was the first image's error)
    assert main(["evaluate", "--dataset", "jaffe", "--data", str(photos), "--split", "all", "--detect", "mtcnn",
                 "--min-face", "5"]) == 1
    assert capsys.readouterr().err == ("ferkit: error: --min-face must be 12 pixels or more with MTCNN (its smallest "
                                       "window), got 5\n")
    assert face_cropper(model, "haar", min_face=5)[1].startswith("haar:min5")  # Haar takes it
    reader = open_dataset("jaffe", photos)
    with pytest.raises(FerkitError, match="expected uint8 48x48"):
        reader.load("all", size=48, crop=lambda rgb: (np.zeros((10, 10), np.uint8), True), crop_key="bad")
    with pytest.raises(FerkitError, match="crop must be a function"):
        reader.load("all", size=48, crop="mtcnn", crop_key="bad")  # type: ignore[arg-type]
    # evaluate() itself reports the detector it is told about
    size, mode = _size(model)
    res = evaluate(model, reader.load("all", size=size, mode=mode), detector="none")
    assert res["detector"] == "none" and "no_face" not in res


@requires_shared
def test_jaffe_through_the_pipeline(tmp_path):
    """The default model (FER2013 only) on all 213 JAFFE photos: every face is found, and
    detection + alignment reads them better than resizing the whole 256x256 frame
    (measured: 0.5305 with --detect mtcnn, 0.4225 without)."""
    args = ["evaluate", "--model", "default", "--dataset", "jaffe", "--data", str(SHARED / "jaffe"), "--split", "all"]
    assert main([*args, "--detect", "mtcnn", "--json", str(tmp_path / "d.json")]) == 0
    assert main([*args, "--json", str(tmp_path / "p.json")]) == 0
    det, plain = (json.loads((tmp_path / f).read_text()) for f in ("d.json", "p.json"))
    assert det["n"] == plain["n"] == 213
    assert det["no_face"] == 0 and det["no_face_files"] == [] and det["detector"] == "mtcnn"
    assert 0 <= det["accuracy"] <= 1 and 0 <= det["macro_f1"] <= 1
    assert det["accuracy"] > plain["accuracy"] and det["macro_f1"] > plain["macro_f1"]
