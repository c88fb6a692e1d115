"""`ferkit average` (engine/soup.py): the weighted mean of networks' weights, written as a run folder."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn as nn
from conftest import make_imagefolder
from safetensors.torch import load_file

from ferkit import weights
from ferkit.api import load_model
from ferkit.cli import main
from ferkit.engine import soup
from ferkit.errors import FerkitError
from ferkit.models import create, get_spec

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def _run(tmp_path, name, seed, arch="lite_plain", init=None, classes=CLASSES):
    torch.manual_seed(seed)
    net = create(arch, num_classes=len(classes))
    with torch.no_grad():  # batch-norm statistics that differ between the members, as trained ones would
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.num_batches_tracked.fill_(seed + 10)
    spec = get_spec(arch)
    card = {"name": name, "architecture": arch, "arch_kwargs": {}, "classes": list(classes),
            "input_size": list(spec.input_size), "mean": list(spec.mean), "std": list(spec.std),
            "dataset": {"name": "imagefolder", "val_split": "val", "test_split": "test"},
            "training": {"command": f"ferkit train --seed {seed}", "git_commit": "c" * 40, "device": "cpu",
                         "config": {"seed": seed, "init": init, "ema": None, "select": "accuracy"}}}
    out = tmp_path / name
    weights.save(net, out / "model.safetensors", card)
    return out


def test_the_average_is_the_weighted_mean_of_every_float_tensor(tmp_path):
    a = _run(tmp_path, "a", 0, init="base")
    b = _run(tmp_path, "b", 1, init="base")
    sa, sb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert main(["average", "--models", f"{a},{b}", "--weights", "1,3", "--out", str(tmp_path / "s")]) == 0
    got = load_file(str(tmp_path / "s" / "model.safetensors"))
    assert set(got) == set(sa)
    moved = 0
    for k, t in got.items():
        if t.is_floating_point():
            assert torch.allclose(t, 0.25 * sa[k] + 0.75 * sb[k], atol=1e-6), k
            moved += not torch.equal(t, sa[k])
        else:  # batch norm's batch counts: the first member's
            assert torch.equal(t, sa[k]), k
    assert moved > 10
    # weights 1,0: the first network again, and it predicts as that network does
    assert main(["average", "--models", f"{a},{b}", "--weights", "1,0", "--out", str(tmp_path / "one")]) == 0
    x = torch.randint(0, 256, (5, 1, 48, 48), dtype=torch.uint8)
    assert torch.allclose(load_model(str(tmp_path / "one"), backend="torch").predict_tensor(x),
                          load_model(str(a), backend="torch").predict_tensor(x), atol=1e-6)


def test_the_card_names_the_members_and_their_weights(tmp_path, capsys):
    a = _run(tmp_path, "a", 0, init="base")
    b = _run(tmp_path, "b", 1, init="base")
    c = _run(tmp_path, "c", 2, init="base")
    out = tmp_path / "soup"
    assert main(["average", "--models", f"{a},{b},{c}", "--out", str(out)]) == 0
    assert "averaged" in capsys.readouterr().out
    card = json.loads((out / "model.json").read_text())
    assert card["name"] == "soup" and card["architecture"] == "lite_plain" and card["classes"] == CLASSES
    assert card["metrics"] == {} and "not measured yet" in card["notes"]
    t = card["training"]
    assert t["command"].startswith("ferkit average --models") and t["config"]["averaged"] is True
    assert t["config"]["init"] == "base"  # the members' shared start
    assert [m["model"] for m in t["averaged_from"]] == [str(a), str(b), str(c)]
    assert [m["weight"] for m in t["averaged_from"]] == pytest.approx([1 / 3] * 3)
    assert [m["command"] for m in t["averaged_from"]] == [f"ferkit train --seed {s}" for s in range(3)]
    assert card["sha256"] == weights.sha256(out / "model.safetensors")
    load_model(str(out), backend="torch")  # a run folder like any other


def test_networks_that_share_no_start_are_averaged_with_a_warning(tmp_path):
    a, b = _run(tmp_path, "a", 0), _run(tmp_path, "b", 1)
    with pytest.warns(UserWarning, match="show no shared start"):
        soup.average([str(a), str(b)], [0.5, 0.5])
    # one fine-tuned from the other (its --init names it): no warning
    ft = _run(tmp_path, "ft", 2, init="a")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        soup.average([str(a), str(ft)], [0.5, 0.5])


@pytest.mark.parametrize("args, said", [
    (["--models", "A"], "two or more models"),
    (["--models", "A,B", "--weights", "1"], "1 number(s) for 2 model(s)"),
    (["--models", "A,B", "--weights", "1,x"], "one number per model"),
    (["--models", "A,B", "--weights", "0,0"], "not all 0"),
    (["--models", "A,B", "--weights", "2,-1"], "0 or more"),
    (["--models", "A,B", "--dataset", "fer2013"], "--dataset and --data go together"),
    (["--models", "A,B", "--bn-split", "Training"], "--bn-split needs --dataset"),
    (["--models", "A,B", "--bn-tta", "flip"], "--bn-tta needs --dataset"),
    (["--models", "A,B", "--bn-images", "9"], "--bn-images needs --dataset"),
    (["--models", "A,OUT"], "is one of the --models"),
])
def test_bad_requests_are_refused_with_a_message(tmp_path, capsys, args, said):
    a, b = _run(tmp_path, "A", 0, init="base"), _run(tmp_path, "B", 1, init="base")
    names = {"A": str(a), "B": str(b), "OUT": str(tmp_path / "o")}
    args = [",".join(names.get(x, x) for x in v.split(",")) if i and args[i - 1] == "--models" else v
            for i, v in enumerate(args)]
    assert main(["average", *args, "--out", str(tmp_path / "o")]) != 0
    assert said in capsys.readouterr().err
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_members_that_differ_are_refused_and_an_existing_average_is_kept(tmp_path, capsys):
    a = _run(tmp_path, "a", 0, init="base")
    other = _run(tmp_path, "x", 1, arch="lite_cnn", init="base")
    fewer = _run(tmp_path, "f", 2, init="base", classes=CLASSES[:6])
    for bad, what in ((other, "architecture"), (fewer, "classes")):
        assert main(["average", "--models", f"{a},{bad}", "--out", str(tmp_path / "o")]) != 0
        assert f"its {what}" in capsys.readouterr().err
    b = _run(tmp_path, "b", 1, init="base")
    assert main(["average", "--models", f"{a},{b}", "--out", str(tmp_path / "o")]) == 0
    before = (tmp_path / "o" / "model.json").read_text()
    assert main(["average", "--models", f"{a},{b}", "--weights", "1,2", "--out", str(tmp_path / "o")]) != 0
    assert "--force replaces it" in capsys.readouterr().err
    assert (tmp_path / "o" / "model.json").read_text() == before
    assert main(["average", "--models", f"{a},{b}", "--weights", "1,2", "--out", str(tmp_path / "o"), "--force"]) == 0
    assert (tmp_path / "o" / "model.json").read_text() != before


def test_recompute_bn_gives_the_statistics_of_the_data():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5), nn.Conv2d(3, 2, 1),
                        nn.BatchNorm2d(2, momentum=0.3))
    images = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8)
    prepare = lambda x: x.float() / 255  # noqa: E731
    assert soup.recompute_bn(net, images, prepare, batch_size=4) == 2
    with torch.no_grad():
        h = net[0](prepare(images))
    assert torch.allclose(net[1].running_mean, h.mean(dim=(0, 2, 3)), atol=1e-5)
    # the variance: the mean over the batches of each batch's unbiased variance
    want = torch.stack([h[i:i + 4].transpose(0, 1).reshape(3, -1).var(dim=1) for i in (0, 4, 8)]).mean(0)
    assert torch.allclose(net[1].running_var, want, atol=1e-5)
    assert net[5].momentum == 0.3 and not net.training  # put back as it was, in eval mode
    assert soup.recompute_bn(nn.Sequential(nn.Linear(2, 2)), images, prepare) == 0


def test_bn_statistics_reestimated_on_a_dataset(tmp_path, capsys):
    folder = make_imagefolder(tmp_path / "data")
    a = _run(tmp_path, "a", 0, init="base")
    b = _run(tmp_path, "b", 1, init="base")
    out = tmp_path / "bn"
    assert main(["average", "--models", f"{a},{b}", "--out", str(out), "--dataset", "imagefolder", "--data",
                 str(folder), "--bn-images", "20", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "re-estimated on 20 images of imagefolder train" in said
    bn = json.loads((out / "model.json").read_text())["training"]["bn_recomputed"]
    assert {k: bn[k] for k in ("dataset", "split", "images")} == {"dataset": "imagefolder", "split": "train",
                                                                  "images": 20} and bn["layers"] > 2
    plain = tmp_path / "plain"
    assert main(["average", "--models", f"{a},{b}", "--out", str(plain)]) == 0
    got, avg = load_file(str(out / "model.safetensors")), load_file(str(plain / "model.safetensors"))
    means = [k for k in got if k.endswith("running_mean")]
    assert means and all(not torch.allclose(got[k], avg[k]) for k in means)
    assert all(torch.equal(got[k], avg[k]) for k in got if k.endswith(".weight"))  # only the statistics changed


def test_parse_weights():
    assert soup.parse_weights(None, 4) == [0.25] * 4
    assert soup.parse_weights("2,6", 2) == [0.25, 0.75]
    with pytest.raises(FerkitError):
        soup.parse_weights("nan,1", 2)


def test_an_evaluation_keeps_how_the_averaged_networks_were_trained(tmp_path):
    from ferkit.engine.evaluate import trained_members

    a, b = _run(tmp_path, "a", 0, init="base"), _run(tmp_path, "b", 1, init="base")
    out = tmp_path / "s"
    assert main(["average", "--models", f"{a},{b}", "--weights", "1,3", "--out", str(out)]) == 0
    got = trained_members(str(out), load_model(str(out), backend="torch"))[str(out)]
    assert got["command"].startswith("ferkit average") and got["config"]["init"] == "base"
    assert got["averaged_from"] == [{"model": str(a), "weight": 0.25, "command": "ferkit train --seed 0",
                                     "git_commit": "c" * 40},
                                    {"model": str(b), "weight": 0.75, "command": "ferkit train --seed 1",
                                     "git_commit": "c" * 40}]


def test_recalibrate_changes_only_the_batch_norm_statistics(tmp_path, capsys):
    from ferkit.engine.evaluate import trained_members

    folder = make_imagefolder(tmp_path / "data")
    a = _run(tmp_path, "a", 0, init="base")
    out = tmp_path / "a-bn"
    assert main(["recalibrate", "--model", str(a), "--dataset", "imagefolder", "--data", str(folder),
                 "--bn-images", "20", "--out", str(out), "--no-progress"]) == 0
    assert "re-estimated on 20 images of imagefolder train" in capsys.readouterr().out
    before, after = load_file(str(a / "model.safetensors")), load_file(str(out / "model.safetensors"))
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(not torch.allclose(before[k], after[k]) for k in stats)
    # the rest as it was (batch counts aside: the re-estimation counts its own batches)
    assert all(torch.equal(before[k], after[k]) for k in before if k not in stats and "num_batches" not in k)
    card, old = json.loads((out / "model.json").read_text()), json.loads((a / "model.json").read_text())
    assert card["name"] == "a-bn" and card["metrics"] == {} and card["classes"] == old["classes"]
    assert card["sha256"] == weights.sha256(out / "model.safetensors") != old["sha256"]
    t = card["training"]
    assert t["command"].startswith("ferkit recalibrate --model") and t["config"] == old["training"]["config"]
    assert t["recalibrated_from"]["command"] == "ferkit train --seed 0" and t["recalibrated_from"]["sha256"] == old["sha256"]
    assert t["bn_recomputed"]["images"] == 20 and t["bn_recomputed"]["split"] == "train"
    # an evaluation's JSON keeps both steps: how the network was trained, and the re-estimation
    got = trained_members(str(out), load_model(str(out), backend="torch"))[str(out)]
    assert got["recalibrated_from"]["command"] == "ferkit train --seed 0" and got["bn_recomputed"]["images"] == 20
    # the same again: the same statistics (a fixed draw of images)
    again = tmp_path / "again"
    assert main(["recalibrate", "--model", str(a), "--dataset", "imagefolder", "--data", str(folder),
                 "--bn-images", "20", "--out", str(again), "--no-progress"]) == 0
    assert load_file(str(again / "model.safetensors")).keys() == after.keys()
    twice = load_file(str(again / "model.safetensors"))  # (float sums in another order: not always bit for bit)
    assert [k for k, v in after.items() if not torch.allclose(v.float(), twice[k].float(), rtol=1e-4, atol=1e-4)] == []


def test_recalibrate_refuses_bad_requests(tmp_path, capsys):
    folder = make_imagefolder(tmp_path / "data")
    a = _run(tmp_path, "a", 0, init="base")
    base = ["recalibrate", "--dataset", "imagefolder", "--data", str(folder), "--no-progress"]
    assert main([*base, "--model", str(a), "--out", str(a)]) == 1
    assert "is --model's folder" in capsys.readouterr().err
    assert (a / "model.json").exists()
    assert main([*base, "--model", str(a), "--out", str(folder / "x")]) == 1  # inside the dataset
    capsys.readouterr()
    assert main([*base, "--model", str(a), "--out", str(tmp_path / "t"), "--bn-split", "test"]) == 1
    assert "test split; its faces would shape the network" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
    with pytest.raises(SystemExit) as e:  # the images are required
        main(["recalibrate", "--model", str(a), "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "--dataset" in capsys.readouterr().err


def test_one_view_each_gives_image_i_its_view_i_mod_n():
    from ferkit.data.transforms import tta_views

    x = torch.rand(23, 1, 12, 12)
    assert soup.one_view_each(x, "none") is x and soup.one_view_each(x, None) is x
    for tta, n in (("flip", 2), ("tencrop", 10)):
        got, views = soup.one_view_each(x, tta), tta_views(x, tta)
        assert len(views) == n and got.shape == x.shape
        for i in range(len(x)):
            assert torch.equal(got[i], views[i % n][i])
    assert not torch.equal(soup.one_view_each(x, "tencrop")[0], x[0])  # a corner crop, not the face as it is


def test_recalibrate_with_test_time_views_records_them(tmp_path, capsys):
    folder = make_imagefolder(tmp_path / "data")
    a = _run(tmp_path, "a", 0, init="base")
    outs = {}
    for tta in ("none", "tencrop"):
        outs[tta] = tmp_path / tta
        assert main(["recalibrate", "--model", str(a), "--dataset", "imagefolder", "--data", str(folder),
                     "--bn-images", "20", "--bn-tta", tta, "--out", str(outs[tta]), "--no-progress"]) == 0
    assert "(their tencrop views, one an image)" in capsys.readouterr().out
    bn = {t: json.loads((o / "model.json").read_text())["training"]["bn_recomputed"] for t, o in outs.items()}
    assert bn["tencrop"]["tta"] == "tencrop" and "tta" not in bn["none"]
    plain, crops = (load_file(str(o / "model.safetensors")) for o in outs.values())
    assert not torch.allclose(plain["body.0.1.running_mean"], crops["body.0.1.running_mean"])


def test_recalibrate_on_full_photos_finds_the_faces_first(tmp_path, capsys):
    from conftest import make_jaffe

    data = make_jaffe(tmp_path)
    a = _run(tmp_path, "a", 0, init="base")
    out = tmp_path / "bn"
    with pytest.warns(UserWarning, match="no face found"):  # (drawn blobs, not faces: the user is told)
        assert main(["recalibrate", "--model", str(a), "--dataset", "jaffe", "--data", str(data), "--detect", "haar",
                     "--bn-split", "all", "--out", str(out), "--no-progress"]) == 0
    bn = json.loads((out / "model.json").read_text())["training"]["bn_recomputed"]
    assert bn["detect"] == "haar" and bn["min_face"] == 20 and bn["split"] == "all" and bn["images"] > 10
    plain = tmp_path / "plain"
    assert main(["recalibrate", "--model", str(a), "--dataset", "jaffe", "--data", str(data), "--bn-split", "all",
                 "--out", str(plain), "--no-progress"]) == 0
    assert "detect" not in json.loads((plain / "model.json").read_text())["training"]["bn_recomputed"]


def test_recalibrate_measure_fills_the_card_as_a_trained_run_has_it(tmp_path, capsys):
    from ferkit.data import open_dataset
    from ferkit.engine.evaluate import evaluate

    folder = make_imagefolder(tmp_path / "data")
    a = _run(tmp_path, "a", 0, init="base")
    out = tmp_path / "m"
    assert main(["recalibrate", "--model", str(a), "--dataset", "imagefolder", "--data", str(folder),
                 "--measure", "--out", str(out), "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "val: accuracy" in said and "test: accuracy" in said
    card = json.loads((out / "model.json").read_text())
    assert set(card["metrics"]) == {"val", "test"} and "not measured yet" not in card["notes"]
    reader = open_dataset("imagefolder", str(folder))
    model = load_model(str(out), backend="torch")
    for split in ("val", "test"):
        res = evaluate(model, reader.load(split, size=(48, 48), mode="L", progress=False))
        assert card["metrics"][split]["n"] == res["n"]
        assert card["metrics"][split]["accuracy"] == pytest.approx(res["accuracy"])
    # the card's splits belong to the dataset the network was trained on
    other = tmp_path / "fer"
    card_a = json.loads((a / "model.json").read_text())
    card_a["dataset"]["name"] = "fer2013"
    (a / "model.json").write_text(json.dumps(card_a))
    assert main(["recalibrate", "--model", str(a), "--dataset", "imagefolder", "--data", str(folder),
                 "--measure", "--out", str(other), "--no-progress"]) == 1
    assert "was trained on fer2013, not imagefolder" in capsys.readouterr().err
    assert not other.exists()


def test_a_recalibrated_network_ships_as_its_differences_from_the_base(tmp_path, capsys, monkeypatch):
    """weights.publish(..., base=NAME): only the tensors that differ from the shipped base's are
    written; loading puts them together, exactly as the run folder was, and refuses a changed base."""
    from ferkit.errors import ModelError

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(weights, "SHIPPED_DIR", shipped)
    folder = make_imagefolder(tmp_path / "data")
    a = _run(tmp_path, "a", 0, init="base")
    weights.halve(weights.publish(a, shipped))  # lite_plain-imagefolder, float16 as the big shipped files are
    assert main(["recalibrate", "--model", "lite_plain-imagefolder", "--dataset", "imagefolder", "--data",
                 str(folder), "--bn-images", "20", "--measure", "--out", str(tmp_path / "bn"), "--no-progress"]) == 0
    dest = weights.publish(tmp_path / "bn", shipped, variant="bn", base="lite_plain-imagefolder")
    assert dest == shipped / "lite_plain-imagefolder-bn.safetensors"
    delta, full = load_file(str(dest)), load_file(str(shipped / "lite_plain-imagefolder.safetensors"))
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in create("lite_plain").modules())
    assert n_bn and sorted(delta) == sorted(k for k in full if k.endswith(("running_mean", "running_var",
                                                                            "num_batches_tracked")))
    assert dest.stat().st_size < (shipped / "lite_plain-imagefolder.safetensors").stat().st_size / 10
    card = json.loads(dest.with_suffix(".json").read_text())
    assert card["base"] == {"name": "lite_plain-imagefolder", "tensors": len(delta), "of": len(full),
                            "sha256": weights.sha256(shipped / "lite_plain-imagefolder.safetensors")}
    assert card["sha256"] == weights.sha256(dest) and card["metrics"] == json.loads(
        (tmp_path / "bn" / "model.json").read_text())["metrics"] and "weights_dtype" not in card
    # the published name loads the same network as the run folder, bit for bit
    net, _ = weights.load("lite_plain-imagefolder-bn")
    run, _ = weights.load(tmp_path / "bn")
    assert all(torch.equal(v, run.state_dict()[k]) for k, v in net.state_dict().items())
    assert main(["models"]) == 0
    assert ("lite_plain-imagefolder with its batch-norm statistics re-estimated (ferkit recalibrate): this file "
            f"holds the {len(delta)} tensors that differ") in capsys.readouterr().out
    # fine-tuning starts from the network as loaded (--init): the base with the differences laid over it
    from ferkit.engine.train import init_from

    start = create("lite_plain")
    init_from(start, "lite_plain-imagefolder-bn", CLASSES, log=lambda _: None)
    assert all(torch.equal(v, run.state_dict()[k]) for k, v in start.state_dict().items())
    # re-estimated again from the published file: published over the same base
    assert main(["recalibrate", "--model", "lite_plain-imagefolder-bn", "--dataset", "imagefolder", "--data",
                 str(folder), "--bn-images", "12", "--out", str(tmp_path / "bn2"), "--no-progress"]) == 0
    again = weights.publish(tmp_path / "bn2", shipped, variant="bn2", base="lite_plain-imagefolder")
    assert json.loads(again.with_suffix(".json").read_text())["base"]["name"] == "lite_plain-imagefolder"
    # refused: a network not made from the base by recalibrate, and a base that changed since
    with pytest.raises(ModelError, match="not made from lite_plain-imagefolder by `ferkit recalibrate`"):
        weights.publish(a, shipped, variant="x", base="lite_plain-imagefolder")
    with pytest.raises(ModelError, match="not a shipped name"):
        weights.publish(tmp_path / "bn", shipped, variant="y", base="nope-imagefolder")
    from ferkit.runtime.onnx_model import cache_key

    key = cache_key(dest, card)
    load_model("lite_plain-imagefolder-bn", backend="onnx")  # exported into the cache
    weights.halve(weights.publish(_run(tmp_path, "b", 1), shipped))  # another network under the base's name
    with pytest.raises(ModelError, match="no longer the ones it was made from"):
        weights.load("lite_plain-imagefolder-bn")
    # nor is the graph exported from the old base served from the cache: a new key, whose export refuses
    assert cache_key(dest, card) != key
    with pytest.raises(ModelError, match="no longer the ones it was made from"):
        load_model("lite_plain-imagefolder-bn", backend="onnx")
    assert main(["predict", str(folder / "test" / "happy" / "0.png"), "--model", "lite_plain-imagefolder-bn"]) == 1
    assert "no longer the ones it was made from" in capsys.readouterr().err
