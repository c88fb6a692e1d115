"""`ferkit predict` (centre-crop classification until the face pipeline lands)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import EXAMPLE
from PIL import Image

import ferkit
from ferkit import weights
from ferkit.cli import main
from ferkit.models import create
from ferkit.predict import center_square


@pytest.fixture()
def model_path(tmp_path):
    torch.manual_seed(0)
    card = {"architecture": "mini_xception", "arch_kwargs": {}, "classes": list(ferkit.CANONICAL),
            "input_size": [1, 48, 48], "mean": [0.5], "std": [0.25]}
    weights.save(create("mini_xception").eval(), tmp_path / "m.safetensors", card)
    return str(tmp_path / "m.safetensors")


def test_center_square():
    a = np.arange(6 * 10).reshape(6, 10)
    assert center_square(a).shape == (6, 6) and center_square(a)[0, 0] == 2


def test_predict_one_image_json_and_annotation(model_path, tmp_path, capsys):
    js = tmp_path / "r.json"
    ann = tmp_path / "ann"
    assert main(["predict", str(EXAMPLE), "--model", model_path, "--json", str(js), "--out", str(ann)]) == 0
    res = json.loads(js.read_text())
    assert res["source"] == str(EXAMPLE) and (res["width"], res["height"]) == (512, 512)
    face = res["faces"][0]
    # the Haar cascade finds the astronaut's face (eyes around y=100, mouth around y=145 in the photo)
    assert face["crop"] == "face" and face["label"] in ferkit.CANONICAL
    x, y, w, h = face["box"]
    assert 160 <= x <= 200 and 40 <= y <= 90 and 70 <= w <= 130 and y < 100 and y + h > 145
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert face["label"] in capsys.readouterr().out
    with Image.open(tmp_path / "ann" / "astronaut_ferkit.png") as im:
        assert im.size == (512, 512)


@pytest.mark.parametrize("crop,box", [("center", [0, 0, 512, 512]), ("none", [0, 0, 512, 512])])
def test_other_crops(model_path, tmp_path, crop, box):
    js = tmp_path / "r.json"
    assert main(["predict", str(EXAMPLE), "--model", model_path, "--crop", crop, "--json", str(js)]) == 0
    face = json.loads(js.read_text())["faces"][0]
    assert face["box"] == box and face["crop"] == crop


def test_folder_with_junk_carries_on_and_reports(model_path, tmp_path, capsys):
    d = tmp_path / "mixed"
    d.mkdir()
    Image.fromarray(np.full((60, 80), 128, np.uint8)).save(d / "ok1.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(d / "ok2.jpg")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (d / "empty.png").write_bytes(b"")
    (d / "notes.txt").write_text("hi")
    out_csv = tmp_path / "r.csv"
    code = main(["predict", str(d), str(tmp_path / "missing.jpg"), "--model", model_path, "--csv", str(out_csv)])
    assert code == 1
    captured = capsys.readouterr()
    assert "ok1.png" in captured.out and "ok2.jpg" in captured.out
    for bad in ("broken.jpg", "empty.png", "notes.txt", "missing.jpg"):
        assert bad in captured.err
    assert "4 source(s) failed" in captured.err and "Traceback" not in captured.err
    assert f"{d / 'empty.png'}: empty file (0 bytes)" in captured.err
    with open(out_csv) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["source"].rsplit("/", 1)[-1] for r in rows] == ["ok1.png", "ok2.jpg"]
    assert rows[0]["w"] == "60" and rows[0]["x"] == "10"  # no face in a flat image: the centre square of 80x60
