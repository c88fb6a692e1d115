"""`ferkit crossval`: k subject-independent folds, one training run each, pooled and summarised;
`--init` fine-tuning from ferkit weights."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from conftest import make_ckplus, make_fer2013, make_jaffe

from ferkit.cli import main
from ferkit.data import open_dataset
from ferkit.engine.crossval import crossval, fold_dir
from ferkit.engine.train import TrainConfig, init_from
from ferkit.errors import FerkitError
from ferkit.models import create

NO_AUG = {"flip": 0.0, "shift": 0.05, "rotate": 5.0, "scale": 0.05, "brightness": 0.1, "contrast": 0.1, "erase": 0.0}


def _cfg(data, out, **kw):
    base = dict(model="mini_xception", dataset="ckplus", data=str(data), out=str(out), epochs=2, batch_size=16,
                lr=3e-3, warmup_epochs=0.5, augment=NO_AUG, seed=0, threads=2, command="test")
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return make_ckplus(tmp_path_factory.mktemp("ck"), subjects=12)


@pytest.fixture(scope="module")
def cv3(ck, tmp_path_factory):
    """A finished 3-fold cross-validation on the CK+ fixture."""
    out = tmp_path_factory.mktemp("runs") / "cv"
    lines = []
    summary = crossval(_cfg(ck, out), folds=3, progress=False, log=lines.append)
    return out, summary, lines


def test_files_written(cv3):
    out, summary, lines = cv3
    for f in ("crossval.json", "crossval_confusion.png", "crossval_folds.png"):
        assert (out / f).stat().st_size > 0, f
    for i in range(3):
        for f in ("model.safetensors", "metrics.json", "log.json", "last.ckpt"):
            assert (fold_dir(out, i) / f).exists(), (i, f)
    assert json.loads((out / "crossval.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["complete"] and summary["folds_done"] == [0, 1, 2] and summary["folds"] == 3
    assert any(ln.startswith("[round 2 of 3, test fold 1] epoch   2/2") for ln in lines)
    assert lines[-1].startswith("3 of 3 folds: accuracy ")
    # each figure is named for what it is: the fold mean's macro-F1 stood after the pooled accuracy, read as pooled
    a, f1, p = summary["accuracy"], summary["macro_f1"], summary["pooled"]
    assert (f"accuracy {a['mean']:.4f} +- {a['std']:.4f}, macro-F1 {f1['mean']:.4f} (means +- std over folds); "
            f"pooled: accuracy {p['accuracy']:.4f}, macro-F1 {p['macro_f1']:.4f}; ") in lines[-1]


def test_folds_are_subject_disjoint_and_cover_the_dataset(cv3, ck):
    out, summary, _ = cv3
    tests = [set(r["test_subjects"]) for r in summary["per_fold"]]
    assert summary["subject_disjoint"] and all(not (a & b) for i, a in enumerate(tests) for b in tests[i + 1:])
    assert set().union(*tests) == {f"S{s + 10:03d}" for s in range(12)}
    n_all = open_dataset("ckplus", ck).summary("all")["n"]
    assert sum(r["n_test"] for r in summary["per_fold"]) == n_all == summary["pooled"]["n"]
    for r in summary["per_fold"]:  # what each round actually trained, selected and tested on
        reader = open_dataset("ckplus", ck, folds=3, fold=r["fold"])
        subj = {s: {rec.subject for rec in reader.records(s)[0]} for s in ("train", "val", "test")}
        assert subj["test"] == set(r["test_subjects"]) and subj["val"] == set(r["val_subjects"])
        assert r["val_fold"] == (r["fold"] + 1) % 3
        assert not (subj["train"] & subj["test"]) and not (subj["train"] & subj["val"])
        assert r["n_train"] + r["n_val"] + r["n_test"] == n_all


def test_numbers_are_consistent(cv3):
    out, summary, _ = cv3
    accs = [r["accuracy"] for r in summary["per_fold"]]
    assert summary["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert summary["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert summary["macro_f1"]["mean"] == pytest.approx(np.mean([r["macro_f1"] for r in summary["per_fold"]]))
    cms = []
    for r in summary["per_fold"]:
        test = json.loads((fold_dir(out, r["fold"]) / "metrics.json").read_text())["test"]
        assert test["accuracy"] == r["accuracy"] and test["n"] == r["n_test"]
        cms.append(np.asarray(test["confusion_matrix"]))
    pooled = summary["pooled"]
    assert np.array_equal(np.sum(cms, axis=0), pooled["confusion_matrix"])
    assert pooled["accuracy"] == pytest.approx(sum(a * r["n_test"] for a, r in zip(accs, summary["per_fold"]))
                                               / pooled["n"])
    assert pooled["classes"][-1] == "contempt" and set(pooled["per_class"]) == set(pooled["classes"])
    assert all(0 <= a <= 1 for a in accs) and summary["accuracy"]["min"] == min(accs)


def test_resume_keeps_finished_folds_and_continues_an_interrupted_one(ck, tmp_path, cv3):
    out = tmp_path / "cv"
    crossval(_cfg(ck, out), folds=3, only=[0], progress=False, log=lambda s: None)
    s0 = json.loads((out / "crossval.json").read_text())
    assert not s0["complete"] and s0["folds_done"] == [0] and s0["accuracy"]["std"] is None  # one fold: no std
    mtime = (fold_dir(out, 0) / "model.safetensors").stat().st_mtime_ns

    def stop_in_fold_1(line):
        if line.startswith("[round 2 of 3, test fold 1] epoch   1/2"):
            raise KeyboardInterrupt  # Ctrl+C at fold 1's first epoch line: that epoch's checkpoint is written

    with pytest.raises(KeyboardInterrupt):
        crossval(_cfg(ck, out), folds=3, resume=True, progress=False, log=stop_in_fold_1)
    assert torch.load(fold_dir(out, 1) / "last.ckpt", weights_only=True)["epoch"] == 1
    with pytest.raises(FerkitError, match="already holds a cross-validation"):
        crossval(_cfg(ck, out), folds=3, progress=False, log=lambda s: None)
    # a training run's folder is no cross-validation, with --resume or not (its model sat beside the rounds,
    # and `evaluate --model` read that as the cross-validation's)
    trained = tmp_path / "trained"
    trained.mkdir()
    for name in ("model.safetensors", "last.ckpt"):
        (trained / name).write_bytes(b"x")
        for resume in (False, True):
            with pytest.raises(FerkitError, match=f"holds a training run \\({name}\\), not a cross-validation"):
                crossval(_cfg(ck, trained), folds=3, resume=resume, progress=False, log=lambda s: None)
        (trained / name).unlink()
    assert sorted(p.name for p in trained.iterdir()) == []  # nothing written
    # another experiment's folder (a model or dataset of its own) is not carried on under this command
    with pytest.raises(FerkitError, match="holds a cross-validation of another model: model 'mini_xception' "
                                          "\\(asked: 'zhu_cnn'\\)"):
        crossval(_cfg(ck, out, model="zhu_cnn"), folds=3, resume=True, progress=False, log=lambda s: None)
    lines = []
    summary = crossval(_cfg(ck, out, epochs=2, lr=1.0, command="test --resume"), folds=3, resume=True, progress=False,
                       log=lines.append)
    # the summary keeps the first command and the resume, as a run's card does (it kept only the resume);
    # the interrupted round joins the resume to its own command once, the round begun by it has the joined one
    assert summary["command"] == "test  # resumed by: test --resume"
    cards = [json.loads((fold_dir(out, i) / "model.json").read_text())["training"]["command"] for i in range(3)]
    assert cards == ["test", "test  # resumed by: test --resume", "test  # resumed by: test --resume"]
    assert any("ignoring differing: lr (1.0; the run's: " in ln for ln in lines)  # the saved settings win, named
    assert any("fold 0: finished earlier" in ln for ln in lines)
    assert any(ln.startswith("[round 2 of 3, test fold 1] resumed") and "epoch 2" in ln for ln in lines)
    assert (fold_dir(out, 0) / "model.safetensors").stat().st_mtime_ns == mtime
    assert summary["complete"]
    # a model the command did not name itself (the CLI's default) resumes the folder's own
    said = []
    crossval(_cfg(ck, out, model="zhu_cnn"), folds=3, only=[0], resume=True, progress=False, log=said.append,
             asked=("dataset",))
    assert any("ignoring differing: model ('zhu_cnn'; the run's: 'mini_xception')" in ln for ln in said), said
    # same seed, same folds: the interrupted and resumed cross-validation equals the uninterrupted one
    ref = cv3[1]
    assert [r["accuracy"] for r in summary["per_fold"]] == [r["accuracy"] for r in ref["per_fold"]]
    assert summary["pooled"]["confusion_matrix"] == ref["pooled"]["confusion_matrix"]
    # resumed with another --epochs once rounds have finished: refused (the folds would mix two recipes
    # under one count in the summary); the folder is untouched
    before = (out / "crossval.json").read_bytes()
    with pytest.raises(FerkitError, match="rounds 0, 1, 2 finished with 2 epochs; resuming with --epochs 4 would"):
        crossval(_cfg(ck, out, epochs=4), folds=3, resume=True, progress=False, log=lambda s: None)
    assert (out / "crossval.json").read_bytes() == before


def test_crossval_cli_and_its_errors(ck, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["crossval", "--model", "zhu_cnn", "--dataset", "ckplus", "--data", str(ck), "--folds", "4",
                 "--only", "2", "--epochs", "1", "--warmup", "0", "--batch-size", "16", "--aug", "none", "--out",
                 str(out), "--no-progress", "--threads", "2"]) == 0
    assert "(one fold: no std)" in capsys.readouterr().out
    s = json.loads((out / "crossval.json").read_text())
    assert s["folds"] == 4 and s["folds_done"] == [2] and s["model"] == "zhu_cnn"
    assert s["config"]["command"].startswith("ferkit ") and s["command"] == s["config"]["command"]
    card = json.loads((fold_dir(out, 2) / "model.json").read_text())
    assert card["dataset"]["options"]["fold"] == 2 and card["name"] == "cli-fold02"
    assert "subject_independent" not in card["dataset"]  # (CK+ names its subjects: no such caveat)
    # resumed without --epochs (or --model): the cross-validation's own 1 stays (the default 100 was refused as
    # "another --epochs"); named, another count is still refused
    capsys.readouterr()
    again = ["crossval", "--dataset", "ckplus", "--data", str(ck), "--folds", "4", "--only", "2", "--warmup", "0",
             "--batch-size", "16", "--aug", "none", "--out", str(out), "--no-progress", "--threads", "2", "--resume"]
    assert main(again) == 0
    said = capsys.readouterr()
    assert "fold 2: finished earlier" in said.out and "ignoring differing" not in said.out
    # a resume that trains nothing leaves the summary's command as it was (it added "# resumed by: ..."), and
    # --folds left out is the cross-validation's own count, unsaid (it said "folds (10; the run's: 4)")
    assert json.loads((out / "crossval.json").read_text())["command"] == s["command"]
    no_k = [x for x in again if x not in ("--folds", "4")]
    assert main(no_k) == 0
    said = capsys.readouterr()
    assert "ignoring differing" not in said.out and json.loads((out / "crossval.json").read_text())["folds"] == 4
    assert main([*again, "--model-arg", "width=2"]) == 1
    assert "holds a cross-validation of another model_kwargs" in capsys.readouterr().err
    assert main([*again, "--epochs", "3"]) == 1
    assert "resuming with --epochs 3 would train the others to another count" in capsys.readouterr().err
    # so is another --early-stop or --recalibrate-bn (the finished rounds keep theirs; the summary said one recipe)
    assert main([*again, "--recalibrate-bn"]) == 1
    assert ("round 2 finished with --recalibrate-bn False (asked: True): the rounds left would follow another "
            "recipe") in capsys.readouterr().err
    capsys.readouterr()
    for argv, msg in [(["--fold", "1"], "--fold picks one round"), (["--test-split", "all"], "sets the splits"),
                      (["--only", "x"], "--only wants fold numbers"), (["--folds", "4", "--only", "7"], "out of range"),
                      (["--folds", "13"], "cannot make 13 subject-independent folds"),
                      (["--folds", "2"], "--folds must be at least 3"), (["--folds", "0"], "--folds must be at least 3"),
                      (["--lr", "-1"], "--lr must be more than 0"),
                      (["--limit", "0"], "--limit must be"), (["--label-smoothing", "1.5"], "--label-smoothing"),
                      (["--epochs", "0"], "--epochs must be"),
                      # checked when the first round sets up: the summary written before it is removed
                      (["--model", "nope"], "unknown architecture 'nope'"),
                      (["--model-arg", "width=abc"], "width"), (["--init", "nope"], "nope"),
                      (["--teacher", "nope"], "nope")]:
        assert main(["crossval", "--dataset", "ckplus", "--data", str(ck), "--out", str(tmp_path / "e"), *argv]) == 1
        err = capsys.readouterr().err
        assert err.startswith("ferkit: error: ") and msg in err and "Traceback" not in err, (argv, err)
        assert not (tmp_path / "e").exists()  # refused before anything is written
    # options that do nothing in this run are said to do nothing (the run goes on)
    assert main(["crossval", "--dataset", "ckplus", "--data", str(ck), "--out", str(tmp_path / "w"), "--epochs", "1",
                 "--only", "0", "--limit", "40", "--kd-weight", "0.3", "--momentum", "0.5", "--warmup", "0",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "--kd-weight does nothing here: no --teacher" in err and "--momentum does nothing here" in err
    folders, _, _ = make_fer2013(tmp_path)
    assert main(["crossval", "--dataset", "fer2013", "--data", str(folders), "--out", str(tmp_path / "f")]) == 1
    assert "fer2013 has official splits" in capsys.readouterr().err
    # a remark on the settings waits for the dataset: refused, the command hears only why
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert main(["crossval", "--dataset", "fer2013", "--data", str(folders), "--out", str(tmp_path / "f"),
                     "--epochs", "1"]) == 1
    assert "fer2013 has official splits" in capsys.readouterr().err
    assert not [str(w.message) for w in said if "--warmup" in str(w.message)]
    # held back and never said, the remark is still said by a later run in this process (it was marked said)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert main(["crossval", "--dataset", "ckplus", "--data", str(ck), "--out", str(tmp_path / "g"),
                     "--epochs", "1", "--only", "0", "--limit", "40", "--no-progress"]) == 0
    assert [str(w.message) for w in said if "--warmup 2 covers all 1 epoch" in str(w.message)]
    with pytest.raises(SystemExit) as e:
        main(["crossval", "--help"])
    assert e.value.code == 0
    assert "usage: ferkit crossval" in capsys.readouterr().out


def test_jaffe_leave_one_subject_out_through_the_face_pipeline(tmp_path):
    """5 subjects, 5 folds: each test fold is one person; images go through the detector (the
    fixture's synthetic frames hold no face, so each is counted as no_face and used whole)."""
    root = make_jaffe(tmp_path)
    out = tmp_path / "cv"
    with pytest.warns(UserWarning, match="no face found"):
        s = crossval(_cfg(root, out, dataset="jaffe", epochs=1, detect="mtcnn"), folds=5, only=[0], progress=False,
                     log=lambda line: None)
    r = s["per_fold"][0]
    assert len(r["test_subjects"]) == 1 and len(r["val_subjects"]) == 1 and r["n_test"] == 7
    assert r["no_face"] == 7 and s["detect"] == "mtcnn"
    assert all(len(f) == 1 for f in s["subjects_per_fold"])
    metrics = json.loads((fold_dir(out, 0) / "metrics.json").read_text())
    assert metrics["test"]["detector"] == "mtcnn"


def test_init_copies_matching_layers_and_remaps_classifier_rows_by_class(tmp_path):
    """Fine-tuning the shipped FER2013 model on CK+'s classes: the trunk is copied, the classifier
    keeps its rows for the six shared classes, contempt (which FER2013 lacks) starts fresh."""
    from ferkit import weights

    src, card = weights.load("mini_xception-fer2013")
    ck_classes = open_dataset("ckplus", make_ckplus(tmp_path, subjects=2)).classes
    assert ck_classes[-1] == "contempt" and "neutral" not in ck_classes
    torch.manual_seed(0)
    m = create("mini_xception", num_classes=7, **card["arch_kwargs"])
    fresh_head = m.head.weight.detach().clone()
    lines = []
    info = init_from(m, "mini_xception-fer2013", ck_classes, lines.append)
    sd, ss = m.state_dict(), src.state_dict()
    assert info["copied"] == info["of"] == len(sd) and info["classes_fresh"] == ["contempt"]
    assert all(torch.equal(sd[k], ss[k]) for k in sd if not k.startswith("head."))
    for i, c in enumerate(ck_classes):
        if c == "contempt":
            assert torch.equal(sd["head.weight"][i], fresh_head[i])
        else:
            j = card["classes"].index(c)
            assert torch.equal(sd["head.weight"][i], ss["head.weight"][j]) and sd["head.bias"][i] == ss["head.bias"][j]
    assert "fresh for contempt" in lines[0]
    # another architecture: nothing matches by name and shape
    with pytest.raises(FerkitError, match="no tensor matches"):
        init_from(create("zhu_cnn"), "mini_xception-fer2013", ck_classes, lambda s: None)
    # the same architecture at another width: the message names the option to pass
    with pytest.raises(FerkitError, match="width=2, this model has width=1.*pass --model-arg width=2"):
        init_from(create("mini_xception", num_classes=7), "mini_xception-fer2013", ck_classes, lambda s: None)
    # the default (vgg_fer-fer2013) into a mini_xception: nothing matches either, and the message says so
    with pytest.raises(FerkitError, match="weights of architecture vgg_fer"):
        init_from(create("mini_xception", width=2), "default", ck_classes, lambda s: None)


def test_train_with_init_starts_from_the_weights(ck, tmp_path):
    from ferkit.engine.train import train

    lines = []
    card = train(_cfg(ck, tmp_path / "ft", epochs=1, lr=1e-4, model_kwargs={"width": 2}, init="mini_xception-fer2013",
                      dataset_options={"folds": 3, "fold": 0}), progress=False, log=lines.append)
    assert any(ln.startswith("init from mini_xception-fer2013: ") for ln in lines)
    assert card["training"]["config"]["init"] == "mini_xception-fer2013"
    from ferkit import weights as _w  # the weights started from, by content (a run folder named may change)

    assert card["training"]["init_sha256"] == _w.sha256(_w.resolve("mini_xception-fer2013"))
    # one epoch at lr 1e-4 leaves the network near the weights it started from, far from a fresh one
    from safetensors.torch import load_file

    from ferkit import weights
    from ferkit.models import create

    start = load_file(str(weights.resolve("mini_xception-fer2013")))
    tuned = load_file(str(tmp_path / "ft" / "model.safetensors"))
    fresh = create("mini_xception", width=2).state_dict()
    convs = [k for k in tuned if k.endswith("weight") and tuned[k].ndim == 4 and not k.startswith("head")]
    # (the head's rows follow the classes: CK+ has contempt where FER2013 has neutral)
    assert len(convs) >= 8

    def dist(a):
        return max(float((tuned[k].float() - a[k].float()).norm() / a[k].float().norm()) for k in convs)

    assert dist(start) < 0.01 < 0.5 < dist(fresh)


def test_crossval_eval_repeats_the_rounds_averages_seeds_and_flips(ck, tmp_path, cv3, capsys):
    """`ferkit crossval-eval`: one folder gives back its own numbers; two folders of the same folds
    are averaged round by round (checked against the mean of the two models' probabilities); --tta flip
    evaluates each round's model on the mirrored faces too; the selection fold is scored alike."""
    from ferkit.api import load_model
    from ferkit.engine.crossval import evaluate_crossval
    from ferkit.engine.evaluate import evaluate

    out, summary, _ = cv3
    again = evaluate_crossval([out], log=lambda s: None)
    for a, b in zip(again["per_fold"], summary["per_fold"]):
        assert (a["fold"], a["accuracy"], a["val_accuracy"], a["n_test"]) == (b["fold"], b["accuracy"],
                                                                             b["val_accuracy"], b["n_test"])
    assert again["accuracy"] == summary["accuracy"] and again["tta"] == "none"

    other = tmp_path / "cv-s1"
    crossval(_cfg(ck, other, seed=1), folds=3, progress=False, log=lambda s: None)
    assert main(["crossval-eval", str(out), str(other), "--tta", "flip", "--out", str(tmp_path / "ens")]) == 0
    printed = capsys.readouterr().out
    ens = json.loads((tmp_path / "ens" / "crossval.json").read_text())
    assert ens["tta"] == "flip" and ens["runs"] == [str(out), str(other)] and ens["command"].startswith("ferkit ")
    assert (tmp_path / "ens" / "crossval_folds.png").stat().st_size > 0 and "selection folds" in printed
    for r in ens["per_fold"]:
        i = r["fold"]
        reader = open_dataset("ckplus", ck, folds=3, fold=i)
        test, val = (reader.load(s, size=48, mode="L") for s in ("test", "val"))
        a, b = (load_model(str(fold_dir(d, i)), backend="torch") for d in (out, other))
        probs = (a.predict_tensor(test.images, tta="flip") + b.predict_tensor(test.images, tta="flip")) / 2
        y = torch.as_tensor([a.classes.index(test.classes[int(k)]) for k in test.labels])
        assert r["accuracy"] == pytest.approx(int((probs.argmax(1) == y).sum()) / len(y), abs=1e-12)
        both = load_model(f"{fold_dir(out, i)}+{fold_dir(other, i)}", backend="torch")
        assert r["val_accuracy"] == pytest.approx(evaluate(both, val, tta="flip")["accuracy"], abs=1e-12)
    assert ens["accuracy"]["mean"] == pytest.approx(np.mean([r["accuracy"] for r in ens["per_fold"]]))


def test_crossval_eval_refuses_other_protocols_and_missing_runs(tmp_path, cv3, capsys):
    from ferkit.engine.crossval import evaluate_crossval

    out, summary, _ = cv3
    with pytest.raises(FerkitError, match="nothing: no such folder"):
        evaluate_crossval([out, tmp_path / "nothing"], log=lambda s: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FerkitError, match="no crossval.json"):
        evaluate_crossval([out, tmp_path / "empty"], log=lambda s: None)
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "crossval.json").write_text(json.dumps({**summary, "fold_seed": 7}))
    with pytest.raises(FerkitError, match="not the same protocol .*fold_seed"):
        evaluate_crossval([out, moved], log=lambda s: None)
    assert main(["crossval-eval", str(tmp_path / "nothing")]) == 1
    # --out one of the folders read would overwrite its crossval.json: refused, the file unchanged
    before = (out / "crossval.json").read_bytes()
    with pytest.raises(FerkitError, match="overwritten"):
        evaluate_crossval([out], out=out, log=lambda s: None)
    assert (out / "crossval.json").read_bytes() == before
    # rounds finished in one folder only are named, not dropped in silence
    part = tmp_path / "part"
    part.mkdir()
    (part / "crossval.json").write_text(json.dumps({**summary, "folds_done": summary["folds_done"][:1]}))
    said = []
    with pytest.raises(FerkitError):  # part/ holds no round models: what matters is the message before
        evaluate_crossval([out, part], log=said.append)
    assert said and said[0].startswith(f"rounds {', '.join(map(str, summary['folds_done'][1:]))} are not finished")
    # --out another cross-validation: refused before any work (its crossval.json, which --resume reads
    # back as the run's settings, was replaced); a rerun's own re-evaluation is replaced
    import shutil

    other = tmp_path / "other"
    shutil.copytree(out, other)
    before = (other / "crossval.json").read_bytes()
    assert main(["crossval-eval", str(out), "--out", str(other)]) == 1
    assert (other / "crossval.json").read_bytes() == before
    assert main(["crossval-eval", str(out), "--out", str(tmp_path / "ev")]) == 0
    assert main(["crossval-eval", str(out), "--out", str(tmp_path / "ev"), "--no-progress"]) == 0  # (as other verbs)
    assert main(["probe", "--models", "x", "--dataset", "ckplus", "--data", ".", "--out", str(other)]) == 1
    assert capsys.readouterr().err.count("already holds a cross-validation (`ferkit crossval`)") == 2
    # a re-evaluation or a probe folder given as input: said so (not "round 0's model is missing")
    with pytest.raises(FerkitError, match="a re-evaluation's summary, without the rounds' models"):
        evaluate_crossval([tmp_path / "ev"], log=lambda s: None)
    # malformed summaries: one clear error, not a traceback
    for bad in ({**summary, "config": None}, {**summary, "folds": "x"}, {**summary, "folds_done": 3}):
        (part / "crossval.json").write_text(json.dumps(bad))
        with pytest.raises(FerkitError, match="is not a ferkit crossval summary"):
            evaluate_crossval([part], log=lambda s: None)


def test_crossval_eval_goes_on_past_a_broken_round_and_says_so(tmp_path, cv3, capsys):
    import shutil

    out, summary, _ = cv3
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    first, rest = summary["folds_done"][0], summary["folds_done"][1:]
    weights = fold_dir(broken, first) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # cut short
    assert main(["crossval-eval", str(broken), "--out", str(tmp_path / "again")]) == 1
    cap = capsys.readouterr()
    assert f"fold {first}: not evaluated:" in cap.out and "1 round(s) not evaluated: round" in cap.err
    again = json.loads((tmp_path / "again" / "crossval.json").read_text())
    assert again["folds_done"] == rest and [f["fold"] for f in again["failed_rounds"]] == [first]
    assert "Traceback" not in cap.err


def test_the_protocol_names_a_selection_rule_other_than_the_default(tmp_path):
    from ferkit.engine.crossval import summarize_folds

    subjects = [["S1"], ["S2"], ["S3"]]
    plain = summarize_folds(_cfg(tmp_path, tmp_path / "a"), 3, [], subjects, 0.0)["protocol"]
    tie = summarize_folds(_cfg(tmp_path, tmp_path / "b", select="accuracy-loss"), 3, [], subjects, 0.0)["protocol"]
    assert "selects the best epoch on fold i+1, trains" in plain and "ties broken by the lowest loss" in tie


def test_evaluate_a_fold_run_on_its_own_round(ck, cv3, capsys):
    """A round's run is evaluated on its round's test fold (from its card), not on fold 0's, whose
    subjects it trained on; asking for another round is warned about."""
    out, summary, _ = cv3
    run = str(fold_dir(out, 1))
    args = ["evaluate", "--model", run, "--dataset", "ckplus", "--data", str(ck)]
    assert main(args) == 0
    cap = capsys.readouterr()
    assert "evaluating on round 1 of 3 folds (fold seed 0), the round the model was trained on" in cap.out
    acc = float(next(ln.split()[1] for ln in cap.out.splitlines() if ln.startswith("accuracy")))
    assert acc == pytest.approx(summary["per_fold"][1]["accuracy"], abs=1e-4)  # the number crossval measured
    assert main([*args, "--fold", "0"]) == 0
    cap = capsys.readouterr()
    assert "was trained with --fold 1" in cap.err
    # not said to be its own round, nor its images moved (another round's test fold holds others by design)
    assert "evaluating on round 0 of 3 folds (fold seed 0) (--folds, --fold-seed from its card" in cap.out
    assert "the round the model was trained on" not in cap.out and "holds other images" not in cap.err
    assert main([*args, "--fold", "7"]) == 1  # (refused before a word on the round)
    cap = capsys.readouterr()
    assert "--fold must be in 0..2 (--folds 3), got 7" in cap.err and "evaluating on round" not in cap.out
    # the cross-validation's own folder: its rounds named, and crossval-eval (it said only "no model.safetensors")
    assert main(["evaluate", "--model", str(out), "--dataset", "ckplus", "--data", str(ck)]) == 1
    err = capsys.readouterr().err
    assert "a cross-validation folder, with a model per round" in err and "(fold00, fold01, fold02)" in err
    assert f"ferkit crossval-eval {out}" in err
    # the dataset's other names are the same dataset: its round, not fold 0 (which it trained on)
    assert main(["evaluate", "--model", run, "--dataset", "CK+", "--data", str(ck)]) == 0
    assert "evaluating on round 1 of 3 folds" in capsys.readouterr().out
    # round 0's run says its round too (it said nothing: the header's "test" was fold 0 of a count unsaid)
    assert main(["evaluate", "--model", str(fold_dir(out, 0)), "--dataset", "ckplus", "--data", str(ck)]) == 0
    assert "evaluating on round 0 of 3 folds" in capsys.readouterr().out


def test_a_dataset_has_one_name_in_configs_cards_and_summaries():
    from ferkit.data.readers import dataset_key
    from ferkit.engine.train import TrainConfig

    assert [dataset_key(n) for n in ("CK+", "ck", "ckplus48", "CKPlus", "FER-2013", "fer", "RAF-DB", "jaffe")] == \
        ["ckplus"] * 4 + ["fer2013"] * 2 + ["rafdb", "jaffe"]
    assert TrainConfig(dataset="ck").dataset == "ckplus"
    assert TrainConfig.from_dict({"dataset": "CK+", "data": "x"}).dataset == "ckplus"  # an older run's config


def test_a_fold_run_records_its_folds_and_refuses_overlapping_splits(ck, tmp_path, capsys):
    from ferkit.engine.train import train
    from ferkit.errors import FerkitError

    # the reader's defaults (10 folds, fold 0, seed 0) are in the card, not only what was given
    card = train(_cfg(ck, tmp_path / "r", epochs=1, limit=40), progress=False, log=lambda *_: None)
    assert {k: card["dataset"]["options"][k] for k in ("folds", "fold", "fold_seed")} == \
        {"folds": 10, "fold": 0, "fold_seed": 0}
    # so evaluating it on another fold seed (other subjects in its test fold) is warned about
    assert main(["evaluate", "--model", str(tmp_path / "r"), "--dataset", "ckplus", "--data", str(ck),
                 "--fold-seed", "1"]) == 0
    assert "was trained with --fold-seed 0" in capsys.readouterr().err
    # a training split that holds the validation or test images is refused
    for split in ("all", "trainval"):
        with pytest.raises(FerkitError, match="holds .* image.* of the .* split"):
            train(_cfg(ck, tmp_path / f"o-{split}", epochs=1, train_split=split), progress=False,
                  log=lambda *_: None)


@pytest.mark.parametrize("kind,summary", [
    ("probe's summary", {"config": {"model": "probe"}, "per_fold": [{"fold": 0, "accuracy": 0.9}], "pooled": {}}),
    ("re-evaluation", {"runs": ["a"], "tta": "flip", "per_fold": [{"fold": 0}], "pooled": {}}),
    ("file ferkit cannot read", None)])
def test_crossval_resume_does_not_take_over_another_summary(ck, tmp_path, kind, summary):
    """--resume into a probe's or a crossval-eval's folder: refused before anything is written
    (it used to read the probe's summary as its settings and rewrite it empty)."""
    out = tmp_path / "other"
    out.mkdir()
    text = "{not json" if summary is None else json.dumps(summary)
    (out / "crossval.json").write_text(text)
    with pytest.raises(FerkitError, match=kind):
        crossval(_cfg(ck, out), folds=3, only=[0], resume=True, log=lambda s: None)
    assert (out / "crossval.json").read_text() == text and sorted(p.name for p in out.iterdir()) == ["crossval.json"]
