"""Weights + model card format, loading without pickles, and the Python API."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ferkit
from ferkit import weights
from ferkit.errors import FerkitError, ModelError
from ferkit.models import create

CARD = {"architecture": "mini_xception", "arch_kwargs": {"width": 1}, "classes": list(ferkit.CANONICAL),
        "input_size": [1, 48, 48], "mean": [0.5], "std": [0.25], "name": "tiny"}


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    net = create("mini_xception").eval()
    weights.save(net, tmp_path / "tiny.safetensors", CARD)
    return tmp_path / "tiny.safetensors", net


def test_roundtrip_and_card(saved):
    path, net = saved
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["sha256"] == weights.sha256(path) and card["weights_file"] == "tiny.safetensors"
    net2, card2 = weights.load(path)
    x = torch.randn(2, 1, 48, 48)
    assert torch.allclose(net(x), net2(x)) and card2["classes"] == CARD["classes"]


def test_weights_get_the_usual_permissions_not_the_owners_alone(tmp_path):
    """safetensors writes 0600: a run's weights beside its 0644 card could not be loaded by another
    user (checked with umask 022 and 027)."""
    import os
    import stat

    net = create("mini_xception").eval()
    old = os.umask(0o022)
    try:
        weights.save(net, tmp_path / "a.safetensors", CARD)
        os.umask(0o027)
        weights.save(net, tmp_path / "b.safetensors", CARD)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.safetensors").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.safetensors").stat().st_mode) == 0o640


def test_weights_are_saved_where_permissions_cannot_be_set(tmp_path, monkeypatch):
    """On FAT or some network mounts chmod fails: the weights and their card are written all the same (the
    save failed after the weights, without its card)."""
    import os

    net = create("mini_xception").eval()

    def refuse(*a, **kw):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refuse)
    weights.save(net, tmp_path / "fat.safetensors", CARD)
    assert weights.load(tmp_path / "fat.safetensors")[1]["classes"] == CARD["classes"]


def test_refuses_pickles_and_broken_files(tmp_path, saved):
    pt = tmp_path / "model.pt"
    torch.save({"a": 1}, pt)
    with pytest.raises(ModelError, match="never pickles"):
        weights.load(pt)
    for empty in ("", "  "):  # not the current folder
        with pytest.raises(ModelError, match=r"no model named \(an empty name\)"):
            weights.load(empty)
    path, _ = saved
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        weights.load(path)
    path.with_suffix(".json").write_text(json.dumps({**CARD, "arch_kwargs": {"width": 2}}))
    with pytest.raises(ModelError, match="do not match architecture") as e:  # width 2: every conv is wider
        weights.load(path)
    assert "wrong shape: " in str(e.value) and "(the network: (" in str(e.value) and "more" in str(e.value)
    path.with_suffix(".json").write_text(json.dumps({**CARD, "architecture": "lite_cnn"}))
    with pytest.raises(ModelError, match=r"do not match architecture lite_cnn .*: \d+ missing: .*\d+ unexpected: "):
        weights.load(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="model card .* is missing"):
        weights.load(path)
    with pytest.raises(ModelError, match="no model 'nope'"):
        weights.load("nope")
    with pytest.raises(ModelError, match="lacks"):
        weights.save(create("mini_xception"), tmp_path / "x.safetensors", {"architecture": "mini_xception"})


def test_predict_api_accepts_every_face_form(saved, tmp_path):
    path, _ = saved
    m = ferkit.load_model(str(path))
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    rgb = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "f.png")
    preds = m.predict([gray, rgb, Image.fromarray(rgb), str(tmp_path / "f.png"), (tmp_path / "f.png").read_bytes()])
    assert len(preds) == 5
    for p in preds:
        assert list(p.probabilities) == list(ferkit.CANONICAL)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.label == max(p.probabilities, key=p.probabilities.get) and p.score == p.probabilities[p.label]
        assert p.confidence == p.score  # (the name a FaceResult gives the label's probability)
        assert p.to_dict()["confidence"] == p.to_dict()["score"] == p.score  # in its dict too
    assert len(m.predict(gray)) == 1 and len(m.predict(rgb)) == 1  # one face -> a list of one
    assert m.predict_proba(np.stack([gray] * 5)).shape == (5, 7)  # N x H x W batch
    assert m.predict_proba(np.stack([gray] * 3)[..., None]).shape == (3, 7)  # N x H x W x 1
    with pytest.raises(FerkitError, match="ambiguous"):  # 3 x H x W: an RGB image channel-first, or 3 faces?
        m.predict_proba(np.stack([gray] * 3))
    # the same face as a path and as an array gives the same answer
    assert preds[0].probabilities == pytest.approx(preds[3].probabilities)
    assert m.predict_proba([gray], tta="flip").shape == (1, 7)
    # torch tensors in PyTorch's layout: [N, C, H, W] uint8 or [0, 1] floats, [C, H, W], [H, W]
    t = torch.from_numpy(np.stack([gray, gray]))[:, None]
    assert np.allclose(m.predict_proba(t), m.predict_proba([gray, gray]), atol=1e-6)
    assert np.allclose(m.predict_proba(t.float() / 255), m.predict_proba([gray, gray]), atol=1e-6)
    assert np.allclose(m.predict_proba(torch.from_numpy(rgb).permute(2, 0, 1)), m.predict_proba(rgb), atol=1e-6)
    assert np.allclose(m.predict_proba(torch.from_numpy(gray)), m.predict_proba(gray), atol=1e-6)
    with pytest.raises(FerkitError, match=r"tensor of shape \[5\]"):
        m.predict(torch.zeros(5))
    for bad in (5, None, {"a": 1}, [1.5]):  # not images: a clear error, not a TypeError
        with pytest.raises(FerkitError):
            m.predict(bad)
    assert m.predict([]) == []  # no faces: no predictions (as predict_tensor of an empty batch)
    with pytest.raises(FerkitError):
        m.predict(str(tmp_path / "missing.png"))


def test_publish_copies_a_run_under_its_shipped_name(saved, tmp_path):
    path, net = saved
    run = tmp_path / "run"
    run.mkdir()
    card = {**CARD, "dataset": {"name": "fer2013"}}
    weights.save(net, run / "model.safetensors", card)
    dest = weights.publish(run, tmp_path)
    assert dest.name == "mini_xception-fer2013.safetensors"
    out = json.loads(dest.with_suffix(".json").read_text())
    assert out["weights_file"] == dest.name and out["sha256"] == weights.sha256(dest)
    assert weights.load(dest)[1]["name"] == "mini_xception-fer2013"
    assert weights.publish(run, tmp_path, variant="s1").name == "mini_xception-fer2013-s1.safetensors"
    with pytest.raises(ModelError, match="letters and digits"):
        weights.publish(run, tmp_path, variant="../x")
    (run / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(ModelError, match="do not match the card"):
        weights.publish(run, tmp_path)


def test_publish_a_crossval_round_carries_the_protocol_number(saved, tmp_path):
    from dataclasses import asdict

    from ferkit.engine.train import TrainConfig

    path, net = saved
    run = tmp_path / "run"
    run.mkdir()
    recipe = asdict(TrainConfig(dataset="ckplus", data="ck", init="default", epochs=40))
    del recipe["kd_weight"]  # a setting the round's ferkit predates: its default applies
    round_cfg = {**recipe, "out": str(run), "dataset_options": {"folds": 10, "fold": 3}, "command": "ferkit train"}
    card = {**CARD, "dataset": {"name": "ckplus"}, "training": {"command": "ferkit train", "config": round_cfg}}
    weights.save(net, run / "model.safetensors", card)
    summary = {"config": {**asdict(TrainConfig(dataset="ckplus", data="ck", init="default", epochs=40)),
                          "out": "runs/cv", "dataset_options": {"folds": 10}},
               "folds": 10, "folds_done": list(range(10)), "protocol": "10-fold", "command": "ferkit crossval ...",
               "accuracy": {"mean": 0.9623, "std": 0.0383}, "macro_f1": {"mean": 0.95}}
    cv = tmp_path / "cv.json"
    cv.write_text(json.dumps(summary))
    dest = weights.publish(run, tmp_path, crossval=cv)
    got = json.loads(dest.with_suffix(".json").read_text())["crossval"]
    assert (got["accuracy_mean"], got["accuracy_std"], got["this_round"], got["folds"]) == (0.9623, 0.0383, 3, 10)
    cv.write_text(json.dumps({**summary, "config": {**summary["config"], "init": "other"}}))
    with pytest.raises(ModelError, match="settings differ: init"):
        weights.publish(run, tmp_path, crossval=cv)
    cv.write_text(json.dumps({**summary, "folds_done": [0, 1, 2]}))
    with pytest.raises(ModelError, match="fold 3 is not among"):
        weights.publish(run, tmp_path, crossval=cv)


def test_ensemble_averages_members_matching_classes_by_name(saved, tmp_path):
    path, net = saved
    torch.manual_seed(1)
    other = create("mini_xception").eval()
    weights.save(other, tmp_path / "other.safetensors", CARD)
    # the first model again, with its classes stored in reverse order (head rows reversed to match)
    rev = create("mini_xception").eval()
    state = net.state_dict()
    rev.load_state_dict({k: (v.flip(0) if k.startswith("head.") else v) for k, v in state.items()})
    weights.save(rev, tmp_path / "rev.safetensors", {**CARD, "classes": CARD["classes"][::-1]})
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 255, (5, 48, 48), dtype=np.uint8)
    a = ferkit.load_model(str(path), backend="torch").predict_proba(faces)
    b = ferkit.load_model(str(tmp_path / "other.safetensors"), backend="torch").predict_proba(faces)
    ens = ferkit.load_model(f"{path}+{tmp_path / 'other.safetensors'}", backend="torch")
    assert ens.classes == tuple(CARD["classes"]) and ens.card["architecture"] == "ensemble"
    assert ens.card["params"] == 2 * sum(p.numel() for p in net.parameters())
    assert np.allclose(ens.predict_proba(faces), (a + b) / 2, atol=1e-6)
    assert not np.allclose(a, b, atol=1e-3)  # the test would prove nothing with equal members
    same = ferkit.load_model(f"{path}+{tmp_path / 'rev.safetensors'}", backend="torch")
    assert np.allclose(same.predict_proba(faces), a, atol=1e-6)  # columns matched by class name
    assert same.predict(faces[0])[0].label == ferkit.load_model(str(path)).predict(faces[0])[0].label
    assert ferkit.load_model(f"{path}+{path}").predict_proba(faces, tta="flip").shape == (5, 7)  # onnx members


def test_ensemble_refuses_mismatched_members(saved, tmp_path):
    path, net = saved
    weights.save(create("mini_xception", num_classes=6).eval(), tmp_path / "six.safetensors",
                 {**CARD, "classes": CARD["classes"][:6]})
    with pytest.raises(FerkitError, match="differ in classes") as e:
        ferkit.load_model(f"{path}+{tmp_path / 'six.safetensors'}", backend="torch")
    assert f"{tmp_path / 'six.safetensors'} (" in str(e.value)  # the member as named, even if its card's name repeats
    with pytest.raises(FerkitError, match="empty member"):
        ferkit.load_model(f"{path}+", backend="torch")
    with pytest.raises(ModelError, match="no model 'nope'"):
        ferkit.load_model(f"{path}+nope", backend="torch")
    from ferkit.explain.image import torch_model
    from ferkit.runtime import ExportError, export_onnx

    with pytest.raises(ExportError, match="one member at a time"):
        export_onnx(f"{path}+{path}", tmp_path / "e.onnx")
    with pytest.raises(FerkitError, match="one member at a time"):
        torch_model(f"{path}+{path}")
    odd = tmp_path / "a+b.safetensors"  # a file whose name holds a '+' is one model
    weights.save(net, odd, CARD)
    assert ferkit.load_model(str(odd), backend="torch").card["architecture"] == "mini_xception"


def test_cards_with_unusable_values_are_refused(saved, tmp_path):
    path, _ = saved
    base = json.loads(path.with_suffix(".json").read_text())
    bad = {"std": [0], "mean": "abc", "input_size": [1, 0, 48], "classes": ["a", "a", "b"]}
    says = {"std": "std must be more than 0", "mean": "mean must be 1 finite number", "classes": "distinct names",
            "input_size": r"input_size must be \[C, H, W\]", "input_size3": "does not run on its card's input_size"}
    for key, value in {**bad, "input_size3": None}.items():
        card = dict(base)
        if key == "input_size3":  # three channels on a one-channel network: the network cannot run
            card.update(input_size=[3, 48, 48], mean=[0.5] * 3, std=[0.25] * 3)
        else:
            card[key] = value
        p = tmp_path / f"{key}.safetensors"
        p.write_bytes(path.read_bytes())
        p.with_suffix(".json").write_text(json.dumps(card))
        with pytest.raises(ModelError, match=says[key]):
            ferkit.load_model(str(p), backend="torch")
    # arch_kwargs: null is none; a list is refused in a line (it was a TypeError traceback)
    for value, ok in ((None, True), ([1], False), ("width=2", False)):
        p = tmp_path / "kw.safetensors"
        p.write_bytes(path.read_bytes())
        p.with_suffix(".json").write_text(json.dumps({**base, "arch_kwargs": value, "architecture": "mini_xception"}))
        if ok:
            assert ferkit.load_model(str(p), backend="torch").card["arch_kwargs"] is None
        else:
            with pytest.raises(ModelError, match="arch_kwargs must be an object"):
                ferkit.load_model(str(p), backend="torch")


def test_a_card_alone_or_another_file_is_named_for_what_it_is(saved, tmp_path):
    path, _ = saved
    card = tmp_path / "other" / "alone.json"
    card.parent.mkdir()
    card.write_text(path.with_suffix(".json").read_text())
    with pytest.raises(ModelError, match=r"a model card without its weights \(alone.safetensors is not beside it\)"):
        ferkit.load_model(str(card))
    results = tmp_path / "other" / "eval.json"
    results.write_text(json.dumps({"accuracy": 0.7}))
    with pytest.raises(ModelError, match="not a model card"):
        ferkit.load_model(str(results))
    notes = tmp_path / "other" / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(ModelError, match="not a model file"):
        ferkit.load_model(str(notes))
    onnx = tmp_path / "other" / "m.onnx"
    onnx.write_bytes(b"x")
    assert weights.resolve(onnx) == onnx  # an export passes: its callers load it (or say why not)


def test_devices_that_do_not_exist_are_errors(saved):
    path, _ = saved
    for dev in ("banana", "cuda", "cuda:7"):
        with pytest.raises(FerkitError, match="device|CUDA"):
            ferkit.load_model(str(path), device=dev)
    assert ferkit.load_model(str(path), device="cpu").predict_proba(np.zeros((48, 48), np.uint8)).shape == (1, 7)


def test_odd_arrays_and_pil_images_are_clear_errors(saved, tmp_path):
    path, _ = saved
    m = ferkit.load_model(str(path))
    for bad, what in ((np.full((48, 48), np.nan, np.float32), "NaN"), (np.array([["a", "b"], ["c", "d"]]), "dtype"),
                      (np.zeros((48, 48, 2), np.uint8), "channels"), (Image.new("L", (0, 0)), "no pixels")):
        with pytest.raises(FerkitError, match=what):
            m.predict(bad)
    noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[:len(data) // 2])
    with pytest.raises(FerkitError, match="cannot decode"):
        m.predict(Image.open(tmp_path / "trunc.jpg"))  # opened lazily: decoded in predict
    with pytest.raises(FerkitError, match="TTA"):
        m.predict(np.zeros((48, 48), np.uint8), tta="banana")


def test_recognizer_arguments_are_checked_at_once():
    from ferkit import Recognizer

    for kw, says in (({"tta": "banana"}, "unknown tta 'banana'"), ({"max_faces": 1.5}, "max_faces .* got 1.5"),
                     ({"thresholds": "abc"}, "thresholds must be three probabilities"),
                     ({"max_side": 0}, "max_side must be .* got 0"),
                     ({"detector": "haar", "min_face_size": -5}, "min_face_size must be >= 1.* got -5")):
        with pytest.raises(FerkitError, match=says):
            Recognizer("default", **kw)


def test_predict_tensor_batch_size_and_empty_batches_agree_across_backends(saved):
    path, _ = saved
    faces = torch.randint(0, 256, (5, 1, 48, 48), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    probs = []
    for backend in ("torch", "onnx"):
        m = ferkit.load_model(str(path), backend=backend)
        assert m.backend == backend  # (a torch model had no .backend)
        assert m.predict_tensor(torch.zeros(0, 1, 48, 48, dtype=torch.uint8)).shape == (0, 7)
        with pytest.raises(FerkitError, match="batch_size"):
            m.predict_tensor(torch.zeros(2, 1, 48, 48, dtype=torch.uint8), batch_size=0)
        whole = m.predict_tensor(faces)
        assert torch.allclose(m.predict_tensor(faces, batch_size=1), whole, atol=1e-5)  # one at a time: the same
        assert torch.allclose(m.predict_tensor(faces, batch_size=2), whole, atol=1e-5)  # a last batch of 1 too
        assert torch.allclose(whole.sum(1), torch.ones(5), atol=1e-5)
        probs.append(whole)
        # floats are 0..1: 0..255 floats, normalised ones, NaN and a face without its batch axis are
        # refused alike by both backends, not scaled into confident nonsense
        assert torch.allclose(m.predict_tensor(faces.float() / 255), whole, atol=1e-5)
        assert m.predict_tensor(faces.float() / 255 * 1.2 - 0.1).shape == (5, 7)  # a bicubic resize's overshoot
        for bad, says in ((faces.float(), "float pixel values from 0 to 255"),
                          (faces.float() / 127.5 - 1, "undo any normalisation"),
                          (torch.full((1, 1, 48, 48), float("nan")), "NaN"),
                          (faces[0], r"images are \(1, 48, 48\), the model wants \(N, 1, 48, 48\)")):
            with pytest.raises(FerkitError, match=says):
                m.predict_tensor(bad)
    assert torch.allclose(probs[0], probs[1], atol=1e-4)  # torch and onnxruntime agree
    assert (probs[0] - probs[0].mean(0)).abs().max() > 2e-3  # on faces the network tells apart (not all 1/7)


def test_type_checkers_see_the_lazily_loaded_names_and_the_overloads():
    """py.typed: the names `ferkit` and `ferkit.explain` load when first named were Any to mypy (no
    TYPE_CHECKING imports); Recognizer.predict had one signature (Result | Results for a photo's
    array too) and Results[i] was untyped. Each lazy name is now imported for type checkers from
    the module it loads from, and the overloads say what each kind of source gives."""
    import ast
    import inspect
    import typing

    import ferkit.explain as fe
    from ferkit.pipeline import Recognizer
    from ferkit.results import Results

    for pkg in (ferkit, fe):
        tree = ast.parse(inspect.getsource(pkg))
        seen = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
                for imp in node.body:
                    assert isinstance(imp, ast.ImportFrom) and imp.level == 1
                    seen.update({a.name: imp.module for a in imp.names})
        assert seen == pkg._LAZY, pkg.__name__  # every lazy name, from the module it is loaded from
        assert set(seen) <= set(pkg.__all__)
    shown = [typing.get_type_hints(f)["return"] for f in typing.get_overloads(Recognizer.predict)]
    assert shown[:3] == [ferkit.Result, ferkit.Results, ferkit.Results] and len(shown) == 4  # array, webcam, list
    assert [typing.get_type_hints(f)["return"] for f in typing.get_overloads(Results.__getitem__)] == [
        ferkit.Result, Results]
    # (at run time the last definition answers, as before)
    assert Results([1, 2, 3])[0] == 1
    assert isinstance(Results([], source="x")[:], Results) and Results([], source="x")[:].source == "x"
    assert "PathLike" in str(inspect.signature(ferkit.load_model).parameters["name"].annotation)


def test_a_predictions_repr_names_its_probability_confidence():
    """It printed `score=0.93`, the name a face's result gives the detector's score."""
    p = ferkit.Prediction("happy", 0.93, {"happy": 0.93, "sad": 0.07})
    assert repr(p) == "Prediction(label='happy', confidence=0.9300, probabilities={'happy': 0.9300, 'sad': 0.0700})"
    assert p.confidence == p.score == 0.93


def test_no_faces_give_no_predictions_on_every_backend():
    """predict_proba([]) raised 'no faces given' (predict_tensor of an empty batch gave [0, K]): a list a
    filter emptied is no error."""
    for backend in ("torch", "onnx"):
        m = ferkit.load_model("lite_cnn-fer2013", backend=backend)
        p = m.predict_proba([])
        assert p.shape == (0, len(m.classes)) and p.dtype == np.float32 and m.predict([]) == []
        assert tuple(m.preprocess([]).shape) == (0, *m.input_size)


def test_ferkit_leaves_the_users_matplotlib_backend_and_figures_alone(tmp_path):
    # matplotlib.use("Agg") ran when a model was loaded (and on drawing a plot): a notebook's or a GUI's
    # plots stopped showing; ferkit draws its figures off screen without pyplot
    import subprocess
    import sys

    code = f"""
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
import ferkit
from ferkit.engine.plots import plot_confusion
from ferkit.results import Result, FaceResult, plot_timeline
ferkit.load_model("fast")
plot_confusion([[3, 1], [0, 2]], ["a", "b"], r"{tmp_path / 'cm.png'}")
faces = [FaceResult([0, 0, 4, 4], 0.9, "happy", {{"happy": 0.8, "sad": 0.2}}, track_id=1)]
plot_timeline([Result("v", 8, 8, faces, frame=i, time=i / 10) for i in range(3)], ("happy", "sad"),
              r"{tmp_path / 'tl.png'}")
print(matplotlib.get_backend(), plt.get_fignums())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "svg []"
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "tl.png").read_bytes()[:4] == b"\x89PNG"
