"""`ferkit probe`: a logistic regression on frozen features, cross-validated over subject folds;
per-person centering."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import make_ckplus

import ferkit
from ferkit import weights
from ferkit.cli import main
from ferkit.engine.probe import center_by, fit_logistic, pooled_features, probe_crossval, probe_folds
from ferkit.errors import FerkitError
from ferkit.models import create


def test_center_by_subtracts_each_groups_mean():
    x = np.array([[1.0, 2.0], [3.0, 6.0], [10.0, 10.0], [20.0, 30.0], [30.0, 20.0]])
    out = center_by(x, ["a", "a", "b", "b", "b"])
    assert out.tolist() == [[-1.0, -2.0], [1.0, 2.0], [-10.0, -10.0], [0.0, 10.0], [10.0, 0.0]]
    assert x[0].tolist() == [1.0, 2.0]  # the input is not changed


def test_fit_logistic_separates_and_regularises():
    x = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    y = np.array([0, 0, 1, 1])
    w, b = fit_logistic(x, y, 2, lam=1e-4)
    assert ((x @ w + b).argmax(1) == y).all()
    w_strong, _ = fit_logistic(x, y, 2, lam=10.0)
    assert np.abs(w_strong).sum() < np.abs(w).sum() / 5  # a strong L2 shrinks the weights
    assert np.array_equal(fit_logistic(x, y, 2, lam=1e-2)[0], fit_logistic(x, y, 2, lam=1e-2)[0])  # deterministic


def _people(n_people=6, per_class=3, k=3, offset=8.0, seed=0):
    """Features = a small class signal + a large per-person offset (who the person is)."""
    rng = np.random.default_rng(seed)
    feats, labels, people = [], [], []
    for p in range(n_people):
        ident = rng.normal(0, offset, 4)
        for c in range(k):
            for _ in range(per_class):
                signal = np.eye(4)[c] * 1.0
                feats.append(ident + signal + rng.normal(0, 0.05, 4))
                labels.append(c)
                people.append(f"P{p}")
    return np.array(feats), np.array(labels), np.array(people)


def test_centering_removes_who_the_person_is():
    x, y, people = _people()
    fold_of = np.array([int(p[1:]) for p in people])  # one person per fold: leave one subject out
    plain = probe_folds(x, y, fold_of, 6, 3)
    centred = probe_folds(center_by(x, people), y, fold_of, 6, 3)
    assert [r["accuracy"] for r in centred] == [1.0] * 6
    assert np.mean([r["accuracy"] for r in plain]) < 0.9
    for r in centred:
        assert r["n_test"] == 9 and r["n_val"] == 9 and r["n_train"] == 36
        assert np.asarray(r["confusion_matrix"]).sum() == 9 and np.trace(r["confusion_matrix"]) == 9
        assert r["val_fold"] == (r["fold"] + 1) % 6 and r["lam"] in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def test_probe_folds_refuses_empty_folds():
    x, y, people = _people(n_people=3)
    with pytest.raises(FerkitError, match="round"):
        probe_folds(x, y, np.array([0] * len(y)), 3, 3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("probe")
    torch.manual_seed(0)
    card = {"architecture": "mini_xception", "arch_kwargs": {}, "classes": list(ferkit.CANONICAL),
            "input_size": [1, 48, 48], "mean": [0.5], "std": [0.25], "name": "tiny"}
    weights.save(create("mini_xception").eval(), tmp / "tiny.safetensors", card)
    return tmp / "tiny.safetensors", make_ckplus(tmp, subjects=9)


def test_pooled_features_shape_and_flip(tiny):
    model = ferkit.load_model(str(tiny[0]), backend="torch")
    img = torch.randint(0, 256, (3, 1, 48, 48), dtype=torch.uint8)
    f = pooled_features(model, img)
    assert f.shape == (3, model.net.features(torch.zeros(1, 1, 48, 48)).shape[1]) and f.dtype == np.float64
    ff = pooled_features(model, img, "flip")
    assert np.allclose(ff, (f + pooled_features(model, img.flip(-1))) / 2, atol=1e-6)
    # a symmetric image has the same features as its mirror
    sym = torch.cat([img[..., :24], img[..., :24].flip(-1)], -1)
    assert np.allclose(pooled_features(model, sym, "flip"), pooled_features(model, sym), atol=1e-5)
    # tencrop: the mean over the ten views of tta_views, computed one view at a time
    from ferkit.data.transforms import normalize, to_float, tta_views

    views = tta_views(normalize(to_float(img), model.mean, model.std), "tencrop")
    with torch.no_grad():
        by_view = np.mean([model.net.features(v).mean((2, 3)).double().numpy() for v in views], 0)
    ft = pooled_features(model, img, "tencrop")
    assert ft.shape == f.shape and np.allclose(ft, by_view, atol=1e-6) and not np.allclose(ft, ff, atol=1e-3)
    with pytest.raises(FerkitError, match="none, flip or tencrop"):
        pooled_features(model, img, "rotate")


def test_probe_crossval_end_to_end(tiny, tmp_path):
    path, data = tiny
    lines = []
    s = probe_crossval([str(path)], "ckplus", str(data), folds=3, center="subject", out=tmp_path / "p",
                       command="test", log=lines.append)
    assert json.loads((tmp_path / "p" / "crossval.json").read_text()) == json.loads(json.dumps(s))
    assert (tmp_path / "p" / "crossval_folds.png").stat().st_size > 0
    n = sum(1 for _ in data.rglob("*.png"))
    assert sum(r["n_test"] for r in s["per_fold"]) == n == s["pooled"]["n"]
    assert all(r["n_train"] + r["n_val"] + r["n_test"] == n for r in s["per_fold"])
    tests = [set(r["test_subjects"]) for r in s["per_fold"]]
    assert s["subject_disjoint"] and len(set().union(*tests)) == 9
    # the face_like fixture images carry their class: a probe on random features still finds it,
    # well above chance (1/7; 0.33 measured)
    assert s["accuracy"]["mean"] == pytest.approx(np.mean([r["accuracy"] for r in s["per_fold"]]))
    assert s["accuracy"]["mean"] > 0.25 and s["accuracy"]["min"] > 1 / 7
    assert s["model"] == "probe" and s["config"]["center"] == "subject" and "transductive" in s["protocol"]
    again = probe_crossval([str(path)], "ckplus", str(data), folds=3, center="subject", log=lambda m: None)
    assert [r["accuracy"] for r in again["per_fold"]] == [r["accuracy"] for r in s["per_fold"]]
    assert lines[-1].startswith("3 of 3 folds: accuracy ")


def test_probe_cli_and_bad_input(tiny, tmp_path, capsys):
    path, data = tiny
    assert main(["probe", "--models", str(path), "--dataset", "ckplus", "--data", str(data), "--folds", "3",
                 "--l2", "1e-2,1", "--out", str(tmp_path / "c"), "--threads", "1"]) == 0
    s = json.loads((tmp_path / "c" / "crossval.json").read_text())
    assert s["config"]["lams"] == [1e-2, 1.0] and all(r["lam"] in (1e-2, 1.0) for r in s["per_fold"])
    assert s["command"].startswith("ferkit probe --models")
    # an ensemble is probed as its members side by side: the same network twice = the same features twice
    assert main(["probe", "--models", f"{path}+{path}", "--dataset", "ckplus", "--data", str(data), "--folds", "3",
                 "--l2", "1e-2,1", "--out", str(tmp_path / "e"), "--threads", "1"]) == 0
    assert "features of tiny, tiny" in capsys.readouterr().out
    # --tta flip: the probe reads each face's and its mirror's features averaged (another fit, recorded)
    assert main(["probe", "--models", str(path), "--dataset", "ckplus", "--data", str(data), "--folds", "3",
                 "--l2", "1e-2,1", "--tta", "flip", "--out", str(tmp_path / "f"), "--threads", "1"]) == 0
    f = json.loads((tmp_path / "f" / "crossval.json").read_text())
    assert f["tta"] == "flip" and s.get("tta", "none") == "none" and "--tta flip" in f["command"]
    assert [r["val_loss"] for r in f["per_fold"]] != [r["val_loss"] for r in s["per_fold"]]  # other features
    bad = [["--l2", "x"], ["--folds", "2"], ["--models", "pcnn-fer2013"], ["--dataset", "fer2013"],
           ["--models", str(tmp_path / "missing.safetensors")]]
    for extra in bad:
        args = ["probe", "--models", str(path), "--dataset", "ckplus", "--data", str(data), "--folds", "3"]
        for i in range(0, len(extra), 2):
            if extra[i] in args:
                args[args.index(extra[i]) + 1] = extra[i + 1]
            else:
                args += extra[i:i + 2]
        assert main(args) == 1, extra
        err = capsys.readouterr().err
        assert err.startswith("ferkit: error:") and "Traceback" not in err, (extra, err)


def test_an_image_folder_names_no_subjects(tiny, tmp_path):
    # its folds are of single images: --center subject (each image centred on itself) is refused,
    # and the protocol no longer claims subject independence
    from conftest import make_imagefolder

    path, _ = tiny
    flat = make_imagefolder(tmp_path / "flat", with_splits=False, per_class=6)
    with pytest.raises(FerkitError, match="--center subject: imagefolder .* names no subjects"):
        probe_crossval([str(path)], "imagefolder", str(flat), folds=3, center="subject", log=lambda m: None)
    lines = []
    s = probe_crossval([str(path)], "imagefolder", str(flat), folds=3, center="none", log=lines.append)
    assert "NOT subject-independent" in s["protocol"] and "3-fold subject-independent" not in s["protocol"]
    assert any(ln.startswith("warning: imagefolder names no subjects") for ln in lines)


def test_probe_skips_a_bad_image_when_asked(tiny, tmp_path, capsys):
    path, data = tiny
    copy = tmp_path / "ck"
    shutil.copytree(data, copy)
    folder = sorted(p for p in copy.iterdir() if p.is_dir())[0]
    (folder / "S010_001_00000099.png").write_bytes(b"not a png")
    args = ["probe", "--models", str(path), "--dataset", "ckplus", "--data", str(copy), "--folds", "3",
            "--l2", "1e-2,1", "--threads", "1"]
    assert main(args) == 1 and "pass --skip-bad" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="left out 1 item"):  # the option it names exists
        assert main(args + ["--skip-bad", "--out", str(tmp_path / "p")]) == 0
    s = json.loads((tmp_path / "p" / "crossval.json").read_text())
    assert s["pooled"]["n"] == sum(1 for _ in data.rglob("*.png"))  # every good image, the bad one left out
