"""`ferkit train` and `ferkit evaluate` end to end on a tiny generated dataset."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_imagefolder
from safetensors.torch import load_file

import ferkit
from ferkit.cli import main
from ferkit.engine.train import TrainConfig, lr_factor, stratified_holdout, train
from ferkit.errors import FerkitError, ModelError


def _cfg(data, out, **kw):
    base = dict(model="mini_xception", dataset="imagefolder", data=str(data), out=str(out), epochs=3, batch_size=8,
                lr=3e-3, warmup_epochs=0.5, augment={"flip": 0.0, "shift": 0.05, "rotate": 5.0, "scale": 0.05,
                                                     "brightness": 0.1, "contrast": 0.1, "erase": 0.0},
                seed=0, threads=2, command="test")
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("ds"), with_splits=True, per_class=24)


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    lines = []
    card = train(_cfg(folder, out), progress=False, log=lines.append)
    return out, card, lines


def test_run_folder_contents_and_card(trained):
    out, card, lines = trained
    for f in ("config.json", "log.csv", "log.json", "curves.png", "last.ckpt", "best.safetensors", "best.json",
              "model.safetensors", "model.json", "metrics.json", "confusion_test.png"):
        assert (out / f).exists(), f
    assert card["architecture"] == "mini_xception" and card["classes"][:3] == ["angry", "disgust", "fear"]
    assert card["input_size"] == [1, 48, 48] and card["mean"] == [0.5] and card["std"] == [0.25]
    assert card["training"]["command"] == "test"
    # the commit of the checkout ferkit runs from (None only outside a git checkout, e.g. an installed wheel)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(ferkit.__file__).parent, capture_output=True,
                          text=True).stdout.strip() or None
    assert card["training"]["git_commit"] == head and (head is None or re.fullmatch("[0-9a-f]{40}", head))
    assert card["dataset"]["val_split"] == "val" and card["dataset"]["test_split"] == "test"
    # a <split>/<class> layout has its own splits: no folds recorded (evaluate would warn of a false leak)
    assert not {"folds", "fold", "fold_seed"} & set(card["dataset"].get("options") or {})
    log = json.loads((out / "log.json").read_text())
    assert [r["epoch"] for r in log] == [1, 2, 3]
    best = max(log, key=lambda r: r["val_acc"])
    assert card["best_epoch"] == best["epoch"]
    assert card["metrics"]["val"]["accuracy"] == pytest.approx(best["val_acc"])
    # the blobs are learnable: far above chance (1/7) after three short epochs
    assert card["metrics"]["test"]["accuracy"] > 0.8
    assert any("*best" in ln for ln in lines)


def test_evaluate_never_writes_over_its_inputs(trained, folder, tmp_path, capsys, monkeypatch):
    """--json and --plot may not name the --data file, a file inside the --data folder, the model's
    weights or card, or the same file as each other (refused before any work: the files stay);
    an output written over an earlier file says so."""
    out, _, _ = trained
    card = (out / "model.json").read_text()
    base = ["evaluate", "--model", str(out), "--dataset", "imagefolder", "--data", str(folder), "--split", "test"]
    for extra, msg in ((["--json", str(folder / "r.json")], "inside the --data folder"),
                       (["--plot", str(folder / "test" / "happy" / "c.png")], "inside the --data folder"),
                       (["--json", str(out / "model.json")], "is a file of --model"),
                       (["--json", str(out / "best.json")], "is a file of --model"),
                       # the run's training record too (--predictions log.csv replaced the training log)
                       (["--predictions", str(out / "log.csv")], "(its weights, card or training record)"),
                       (["--json", str(out / "config.json")], "(its weights, card or training record)"),
                       (["--json", str(tmp_path / "s.png"), "--plot", str(tmp_path / "s.png")], "the same file as")):
        assert main(base + extra) == 1, extra
        assert msg in capsys.readouterr().err, extra
    # an ensemble's member, a link to the weights (its card beside the link), a path with ~ left to ferkit
    link = tmp_path / "link.safetensors"
    link.symlink_to(out / "model.safetensors")
    shutil.copy(out / "model.json", tmp_path / "link.json")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    shutil.copytree(out, home / "run")
    for m, js in ((f"{out}+{link}", out / "model.json"), (str(link), tmp_path / "link.json"),
                  ("~/run", home / "run" / "model.json")):
        assert main(["evaluate", "--model", m, "--dataset", "imagefolder", "--data", str(folder), "--split", "test",
                     "--json", str(js)]) == 1, m
        assert "is a file of --model" in capsys.readouterr().err, m
    assert (tmp_path / "link.json").read_text() == card == (home / "run" / "model.json").read_text()
    assert (out / "model.json").read_text() == card and not (folder / "r.json").exists()
    assert not (tmp_path / "s.png").exists()
    csv_file = tmp_path / "fer.csv"
    csv_file.write_text("emotion,pixels,Usage\n")
    assert main(["evaluate", "--model", str(out), "--dataset", "fer2013", "--data", str(csv_file), "--json",
                 str(csv_file)]) == 1
    assert "is the --data file" in capsys.readouterr().err and csv_file.read_text() == "emotion,pixels,Usage\n"
    js = tmp_path / "again.json"
    for i in range(2):
        assert main(base + ["--json", str(js)]) == 0
        said = capsys.readouterr().out
        assert (f"wrote {js} (replacing the earlier file)" in said) == (i == 1)
        assert (f"wrote {tmp_path / 'again_confusion.png'} (replacing the earlier file)" in said) == (i == 1)


def test_evaluate_cli_matches_card(trained, folder, tmp_path, capsys, monkeypatch):
    out, card, _ = trained
    js = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(out), "--dataset", "imagefolder", "--data", str(folder), "--split", "test",
                 "--json", str(js)]) == 0
    res = json.loads(js.read_text())
    assert set(res) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "n"}
    assert res["n"] == 7 * 12 and sum(map(sum, res["confusion_matrix"])) == res["n"]
    assert res["accuracy"] == pytest.approx(card["metrics"]["test"]["accuracy"])
    assert (tmp_path / "r_confusion.png").exists()
    # the run folder is git-ignored: the JSON keeps how it was trained, for whoever reads the number later
    assert res["members_trained"] == {str(out): {"command": "test", "git_commit": card["training"]["git_commit"],
                                                 "device": "cpu",
                                                 "config": {"seed": 0, "init": None, "teacher": None,
                                                            "select": card["training"]["config"]["select"],
                                                            "ema": None, "cpu_amp": False}}}
    printed = capsys.readouterr().out
    assert "macro F1" in printed and "surprise" in printed
    # test-time augmentation: the accuracy of the mean of each face's and its mirror's probabilities
    assert main(["evaluate", "--model", str(out / "model.safetensors"), "--dataset", "imagefolder", "--data",
                 str(folder), "--split", "test", "--tta", "flip", "--json", str(js)]) == 0
    flip = json.loads(js.read_text())
    from ferkit import load_model
    from ferkit.data import open_dataset

    ds = open_dataset("imagefolder", folder).load("test", mode="L")
    model = load_model(str(out), backend="torch")
    assert model.classes == ds.classes
    p = (model.predict_tensor(ds.images) + model.predict_tensor(ds.images.flip(-1))) / 2
    assert flip["n"] == len(ds) == 84
    assert flip["accuracy"] == pytest.approx(float((p.argmax(1) == ds.labels).float().mean()))
    confusion = np.zeros((7, 7), int)
    np.add.at(confusion, (ds.labels.numpy(), p.argmax(1).numpy()), 1)
    assert flip["confusion_matrix"] == confusion.tolist()
    # --json -: the metrics alone on standard output (for a pipe), the table on standard error, no plot
    capsys.readouterr()
    monkey = tmp_path / "pipe"
    monkey.mkdir()
    monkeypatch.chdir(monkey)
    assert main(["evaluate", "--model", str(out), "--dataset", "imagefolder", "--data", str(folder), "--split", "test",
                 "--json", "-"]) == 0
    got = capsys.readouterr()
    assert json.loads(got.out)["confusion_matrix"] == res["confusion_matrix"]
    assert "macro F1" in got.err and list(monkey.iterdir()) == []
    # the plot beside --json is checked before the evaluation (it failed after it), and a --json
    # that is no regular file gets none ("/dev/null" wrote /dev/null_confusion.png)
    (monkey / "x_confusion.png").mkdir()
    assert main(["evaluate", "--model", str(out), "--dataset", "imagefolder", "--data", str(folder), "--split", "test",
                 "--json", "x.json"]) == 1
    got = capsys.readouterr()
    assert "x_confusion.png: is a folder" in got.err and "macro F1" not in got.out + got.err
    assert main(["evaluate", "--model", str(out), "--dataset", "imagefolder", "--data", str(folder), "--split", "test",
                 "--json", os.devnull]) == 0
    assert not Path(os.devnull + "_confusion.png").exists()


def test_same_seed_same_weights(folder, tmp_path, trained):
    out, _, _ = trained
    train(_cfg(folder, tmp_path / "again"), progress=False, log=lambda s: None)
    a, b = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "again" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_interruption_gives_the_same_model(folder, tmp_path, trained):
    out, _, _ = trained

    def stop_at_epoch_2(line):
        if line.startswith("epoch   2/3"):
            raise KeyboardInterrupt  # Ctrl+C as epoch 2's line appears: its checkpoint is written already

    run = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(folder, run), progress=False, log=stop_at_epoch_2)
    assert torch.load(run / "last.ckpt", weights_only=True)["epoch"] == 2
    assert [r["epoch"] for r in json.loads((run / "log.json").read_text())] == [1, 2]
    with pytest.raises(FerkitError, match="already holds a run"):
        train(_cfg(folder, run), progress=False, log=lambda s: None)
    lines = []
    train(_cfg(folder, run), resume=True, progress=False, log=lines.append)
    assert any("resumed" in ln and "epoch 3" in ln for ln in lines)
    a = torch.load(out / "last.ckpt", weights_only=True)["model"]
    b = torch.load(run / "last.ckpt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in json.loads((run / "log.json").read_text())] == [1, 2, 3]


@pytest.fixture
def pythons_sigint():
    """Python's own SIGINT handler for the test, whatever the test run's (pytest started as a background job of
    a script, `nohup make test &`, inherits SIGINT ignored, and Python then installs no handler of its own)."""
    import signal

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_is_held_only_over_pythons_own_handler(pythons_sigint):
    """Where SIGINT is ignored (a script's background job) or handled by a host, the block leaves it be:
    it raised KeyboardInterrupt in a process that ignored the signal."""
    import importlib
    import signal

    T = importlib.import_module("ferkit.engine.train")
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with T.interrupt_deferred():
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)
    with pytest.raises(KeyboardInterrupt):  # over Python's own: held, then raised once the block ends
        with T.interrupt_deferred():
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_while_an_epochs_files_are_written_is_held_until_they_are(folder, tmp_path, monkeypatch,
                                                                          pythons_sigint):
    """SIGINT in the middle of writing an epoch's files (here: between its checkpoint and its log) is
    raised once they are all written, so the epoch is not lost. It came a second after the epoch's line,
    behind the plot, and a Ctrl+C there lost the epoch."""
    import importlib
    import signal

    T = importlib.import_module("ferkit.engine.train")  # (ferkit.engine.train is also the function's name)

    write_log = T._write_log

    def interrupted_meanwhile(out, history):
        if len(history) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        write_log(out, history)

    monkeypatch.setattr(T, "_write_log", interrupted_meanwhile)
    run, lines = tmp_path / "run", []
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(folder, run), progress=False, log=lines.append)
    assert torch.load(run / "last.ckpt", weights_only=True)["epoch"] == 1
    assert [r["epoch"] for r in json.loads((run / "log.json").read_text())] == [1]
    assert not (run / "last.ckpt.tmp").exists() and not any(ln.startswith("epoch   1/") for ln in lines)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resume_takes_a_moved_dataset_and_a_new_lr_only_when_given(folder, tmp_path):
    import shutil

    run, moved = tmp_path / "run", tmp_path / "moved"
    train(_cfg(folder, run, epochs=1), progress=False, log=lambda s: None)
    shutil.copytree(folder, moved)
    lines = []
    # the same command with another --data and --lr: both taken (named on the command line)
    train(_cfg(moved, run, epochs=2, lr=1e-3), resume=True, progress=False, log=lines.append,
          given=["data", "lr"])
    assert any(ln.startswith("resuming with the new data") and "lr 0.001 (was 0.003)" in ln for ln in lines)
    # another architecture named on the command line: another experiment's folder, refused (it trained the
    # run's own, saying only "ignoring differing: model"); not named (the CLI's default), the run's own resumes
    with pytest.raises(FerkitError, match=r"holds a run of another model: model 'mini_xception' \(asked: 'lite_cnn'\)"):
        train(_cfg(moved, run, epochs=2, model="lite_cnn"), resume=True, progress=False, log=lambda s: None,
              given=["data", "model"])
    # a new --epochs changes the schedule: said, not silent
    assert any(ln.startswith("resuming with --epochs 2 (was 1): the learning-rate schedule is fitted to 2") for ln in lines)
    saved = torch.load(run / "last.ckpt", weights_only=True)["config"]
    assert saved["data"] == str(moved) and saved["lr"] == 1e-3 and saved["epochs"] == 2
    # not named (a command that leaves --lr at its default): the run's own lr stays
    lines = []
    train(_cfg(moved, run, epochs=3, lr=5e-2), resume=True, progress=False, log=lines.append, given=["data"])
    assert any("ignoring differing: lr" in ln for ln in lines)
    assert torch.load(run / "last.ckpt", weights_only=True)["config"]["lr"] == 1e-3
    # the card keeps the command that started the run, then the resume (not the resume alone)
    train(_cfg(moved, run, epochs=4, command="ferkit train ... --epochs 4 --resume"), resume=True, progress=False,
          log=lambda s: None)
    config = json.loads((run / "config.json").read_text())
    assert config["command"] == "test  # resumed by: ferkit train ... --epochs 4 --resume"


def test_a_broken_checkpoint_or_seed_is_a_clear_error(folder, tmp_path, trained):
    import shutil

    out, _, _ = trained
    run = tmp_path / "run"
    shutil.copytree(out, run)
    good = (run / "last.ckpt").read_bytes()
    (run / "last.ckpt").write_bytes(good[:100])  # cut short
    with pytest.raises(FerkitError, match=r"last.ckpt: not a readable training checkpoint .*remove it and the "
                                          r"finished run's model.safetensors and model.json beside it to train again "
                                          r"from the start \(without --resume\)$") as err:
        train(_cfg(folder, run), resume=True, progress=False, log=lambda s: None)
    assert "If you are seeing" not in str(err.value)  # (torch's paragraph, cut mid-sentence, is not copied)
    (run / "last.ckpt").write_bytes(b"junk")
    with pytest.raises(FerkitError, match="not a readable training checkpoint"):
        train(_cfg(folder, run), resume=True, progress=False, log=lambda s: None)
    torch.save({"epoch": 1}, run / "last.ckpt")  # a torch file, not a run's checkpoint
    with pytest.raises(FerkitError, match=r"not a ferkit training checkpoint \(no config, model"):
        train(_cfg(folder, run), resume=True, progress=False, log=lambda s: None)
    state = torch.load(out / "last.ckpt", weights_only=True)
    torch.save({**state, "config": [1, 2]}, run / "last.ckpt")
    with pytest.raises(FerkitError, match="its config is a list"):
        train(_cfg(folder, run), resume=True, progress=False, log=lambda s: None)
    with pytest.raises(ModelError, match="no model 'nope'"):  # an unknown teacher: said before the folder is made
        train(_cfg(folder, tmp_path / "t", teacher="nope"), progress=False, log=lambda s: None)
    assert not (tmp_path / "t").exists()
    for seed in (-1, 2 ** 32, True):
        with pytest.raises(FerkitError, match="--seed must be a whole number from 0 to 4294967295"):
            train(_cfg(folder, tmp_path / "s", seed=seed), progress=False, log=lambda s: None)
    assert not (tmp_path / "s").exists()
    for argv in (["train", "--model", "lite_cnn", "--dataset", "imagefolder", "--data", str(folder), "--out",
                  str(tmp_path / "c"), "--seed", "-1"],
                 ["data", "--dataset", "imagefolder", "--data", str(folder), "--fold-seed", "99999999999999999999"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2


def test_a_nan_loss_says_what_to_do(folder, tmp_path):
    with pytest.raises(FerkitError, match=r"lower --lr \(no epoch had finished: run again with a lower --lr\)"):
        train(_cfg(folder, tmp_path / "nan", epochs=1, lr=1e12, warmup_epochs=0), progress=False,
              log=lambda s: None)


def test_a_rate_beyond_float32_and_a_bad_temperature_are_clear_errors(folder, tmp_path):
    with pytest.raises(FerkitError, match=r"the update overflowed at epoch 1, step 0: lower --lr"):
        train(_cfg(folder, tmp_path / "big", epochs=1, lr=1e38, warmup_epochs=0), progress=False,
              log=lambda s: None)
    for bad in (float("nan"), float("inf"), 0.0):
        with pytest.raises(FerkitError, match=f"--kd-temperature must be more than 0, got {bad:g}"):
            train(_cfg(folder, tmp_path / "t", teacher="fast", kd_temperature=bad), progress=False,
                  log=lambda s: None)
    assert not (tmp_path / "t").exists()


def test_odd_batches_on_two_threads_train(folder, tmp_path):
    # channels_last on CPU made torch corrupt memory here (batch 3, 2 threads: a segfault in
    # opt.step); ferkit trains in the default memory format on CPU
    card = train(_cfg(folder, tmp_path / "odd", epochs=1, batch_size=3, limit=21, warmup_epochs=0),
                 progress=False, log=lambda s: None)
    assert card["epochs_run"] == 1 and card["training"]["config"]["batch_size"] == 3


def test_no_val_split_holds_out_part_of_train_and_plateau_schedule(tmp_path):
    flat = make_imagefolder(tmp_path, with_splits=False, per_class=10)
    card = train(_cfg(flat, tmp_path / "run", epochs=2, schedule="plateau", class_weights="balanced",
                      dataset_options={"folds": 5, "fold": 0}), progress=False, log=lambda s: None)
    assert card["dataset"]["val_split"] == "val" and card["dataset"]["n_val"] == 14  # the next fold
    import shutil

    no_val = make_imagefolder(tmp_path / "nv", with_splits=True, per_class=4)
    shutil.rmtree(no_val / "val")  # train/ and test/ only: val_fraction of train is held out
    for bad in (0, -0.5, 1.0, 1.5):
        with pytest.raises(FerkitError, match="--val-fraction must be between 0 and 1"):
            train(_cfg(no_val, tmp_path / f"vf{bad}", epochs=1, val_fraction=bad), progress=False, log=lambda s: None)
    tr, ho = stratified_holdout(torch.tensor([0] * 10 + [1] * 20), 0.1, 0)
    assert len(ho) == 3 and len(set(tr) & set(ho)) == 0 and len(tr) + len(ho) == 30
    assert sorted(int(i >= 10) for i in ho) == [0, 1, 1]  # a tenth of each class (indices 10.. are class 1)
    card = train(_cfg(no_val, tmp_path / "vf", epochs=1, val_fraction=0.25), progress=False, log=lambda s: None)
    assert card["dataset"]["n_val"] == 7 and card["dataset"]["n_train"] == 7 * 3  # one of each class's four


def test_plateau_schedule_lowers_the_rate_when_validation_stalls(folder, tmp_path):
    train(_cfg(folder, tmp_path / "pl", epochs=6, schedule="plateau", plateau_patience=0, plateau_factor=0.5),
          progress=False, log=lambda s: None)
    log = json.loads((tmp_path / "pl" / "log.json").read_text())
    best, drops = -1.0, 0
    for prev, cur in zip(log, log[1:]):  # each epoch's rate: halved after an epoch that did not improve
        better = prev["val_acc"] > best * (1 + 1e-4)
        best = max(best, prev["val_acc"])
        assert cur["lr"] == pytest.approx(prev["lr"] * (1 if better else 0.5)), (prev, cur)
        drops += not better
    assert log[0]["lr"] == pytest.approx(3e-3) and drops >= 1


def test_soft_targets_on_a_ferplus_layout(tmp_path):
    """FER+ vote distributions as training targets: 8 classes, contempt included."""
    import csv as _csv

    import numpy as np
    from conftest import face_like, save_gray

    rng = np.random.default_rng(0)
    root = tmp_path / "ferplus"
    cols = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
    canon = ["neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt"]
    for split, k in (("Train", 6), ("Valid", 2), ("Test", 2)):
        d = root / f"FER2013{split}"
        d.mkdir(parents=True)
        with open(d / "label.csv", "w", newline="") as f:
            w = _csv.writer(f)
            for j, _ in enumerate(cols):
                for i in range(k):
                    name = f"fer{split}{j}{i}.png"
                    votes = [0] * 10
                    votes[j], votes[(j + 1) % 8] = 7, 3
                    save_gray(d / name, face_like(["angry", "disgust", "fear", "happy", "sad", "surprise",
                                                   "neutral", "contempt"].index(canon[j]) % 7, rng))
                    w.writerow([name, "(0, 0, 48, 48)", *votes])
    card = train(_cfg(root, tmp_path / "run", dataset="ferplus", epochs=1, soft_targets=True), progress=False,
                 log=lambda s: None)
    assert card["classes"][-1] == "contempt" and len(card["classes"]) == 8
    assert card["dataset"]["n_train"] == 48 and card["training"]["config"]["soft_targets"] is True
    # the same run on the majority labels (one-hot): the same images and seed, another loss
    train(_cfg(root, tmp_path / "hard", dataset="ferplus", epochs=1), progress=False, log=lambda s: None)
    soft, hard = (json.loads((tmp_path / r / "log.json").read_text())[0]["train_loss"] for r in ("run", "hard"))
    assert abs(soft - hard) > 0.05  # 30% of each face's votes on its neighbour class: a higher floor on the loss


def test_lr_schedule_shape():
    cfg = TrainConfig(epochs=10, warmup_epochs=1, lr=1.0, min_lr_ratio=0.01)
    f = [lr_factor(cfg, s, 10) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[-1] == pytest.approx(0.01, abs=1e-3)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))


def test_bad_training_requests(folder, tmp_path):
    with pytest.raises(FerkitError, match="--soft-targets"):
        train(_cfg(folder, tmp_path / "a", soft_targets=True), progress=False, log=lambda s: None)
    with pytest.raises(FerkitError, match="validation split must differ from the test split"):
        train(_cfg(folder, tmp_path / "b", val_split="test"), progress=False, log=lambda s: None)


def test_trainer_warns_when_training_images_are_blurred(tmp_path):
    from PIL import Image, ImageFilter

    from ferkit.engine.train import load_splits

    root = make_imagefolder(tmp_path, with_splits=True, per_class=6)
    for p in (root / "train").rglob("*.png"):
        Image.open(p).filter(ImageFilter.GaussianBlur(3)).save(p)
    lines = []
    load_splits(_cfg(root, tmp_path / "run"), (48, 48), "L", lines.append)
    warns = [ln for ln in lines if ln.startswith("WARNING")]
    assert warns and warns[0].startswith("WARNING: training images are blurrier")
    assert all(w.startswith("WARNING: training ") for w in warns)
    clean = make_imagefolder(tmp_path / "c", with_splits=True, per_class=6)
    lines = []
    load_splits(_cfg(clean, tmp_path / "run2"), (48, 48), "L", lines.append)
    assert not [ln for ln in lines if ln.startswith("WARNING")]


def test_git_state_names_the_changed_files(tmp_path):
    """The card records the commit and, for a dirty checkout, exactly which tracked files differ."""
    import shutil
    import subprocess

    from ferkit.engine.train import git_state

    if shutil.which("git") is None:
        pytest.skip("no git")
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "src").mkdir()
    for f in ("a.txt", "src/b.py"):
        (tmp_path / f).write_text("x\n")
    run("add", ".")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = git_state(tmp_path)
    assert len(clean["git_commit"]) == 40 and clean["git_dirty"] is False and "git_dirty_files" not in clean
    (tmp_path / "a.txt").write_text("y\n")  # unstaged: porcelain line " M a.txt"
    (tmp_path / "src" / "b.py").write_text("y\n")
    run("add", "src/b.py")  # staged: "M  src/b.py"
    (tmp_path / "new.txt").write_text("untracked\n")  # untracked files do not count
    dirty = git_state(tmp_path)
    assert dirty["git_dirty"] is True and sorted(dirty["git_dirty_files"]) == ["a.txt", "src/b.py"]
    # ferkit installed into an untracked virtual environment inside someone's project: not its commit
    (tmp_path / ".venv" / "ferkit").mkdir(parents=True)
    (tmp_path / ".venv" / "ferkit" / "train.py").write_text("x\n")
    assert git_state(tmp_path / ".venv" / "ferkit") == {"git_commit": None, "git_dirty": None}
    assert git_state(tmp_path / "src")["git_commit"] == clean["git_commit"]  # (a tracked folder of it: its)


def test_distillation_follows_the_teacher(folder, tmp_path):
    """A teacher that calls every face 'happy' (whatever the image) pulls a student trained with
    --kd-weight 1 to 'happy' on faces whose labels (learnable, see the test above) say otherwise."""
    from ferkit import weights
    from ferkit.api import load_model
    from ferkit.models import create

    teacher = create("mini_xception").eval()
    with torch.no_grad():
        teacher.head.weight.zero_()
        teacher.head.bias.copy_(torch.tensor([0.0, 0, 0, 6, 0, 0, 0]))
    card = {"architecture": "mini_xception", "arch_kwargs": {}, "classes": ["angry", "disgust", "fear", "happy",
            "sad", "surprise", "neutral"], "input_size": [1, 48, 48], "mean": [0.5], "std": [0.25]}
    weights.save(teacher, tmp_path / "teacher.safetensors", card)
    lines = []
    out = tmp_path / "kd"
    cfg = _cfg(folder, out, teacher=str(tmp_path / "teacher.safetensors"), kd_weight=1.0, kd_temperature=1.0)
    got = train(cfg, progress=False, log=lines.append)
    probs = np.load(out / "teacher_probs.npy")
    classes = json.loads((out / "teacher.json").read_text())["classes"]  # the folder's 7, canonical order
    assert classes == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert probs.shape == (7 * 24, len(classes)) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == classes.index("happy")).all() and probs[:, classes.index("happy")].min() > 0.98
    assert any("teacher" in ln and "agrees with the labels on 14.29%" in ln for ln in lines)  # 1 class of 7
    assert got["training"]["config"]["teacher"] == str(tmp_path / "teacher.safetensors")
    log = json.loads((out / "log.json").read_text())
    assert all("train_kd" in r for r in log) and log[-1]["train_kd"] < log[0]["train_kd"]
    student = load_model(str(out), backend="torch")
    from ferkit.data import open_dataset

    test = open_dataset("imagefolder", str(folder)).load("test", size=(48, 48), mode="L")
    pred = student.predict_tensor(test.images).argmax(1)
    assert (pred == student.classes.index("happy")).float().mean() > 0.9  # the teacher's answer, not the labels'
    # a teacher lacking one of the dataset's classes is refused before any training
    six = create("mini_xception", num_classes=6).eval()
    weights.save(six, tmp_path / "six.safetensors", {**card, "classes": card["classes"][:6]})
    with pytest.raises(FerkitError, match="no class neutral"):
        train(_cfg(folder, tmp_path / "kd6", teacher=str(tmp_path / "six.safetensors")), progress=False,
              log=lambda s: None)
    with pytest.raises(FerkitError, match="kd-weight"):
        train(_cfg(folder, tmp_path / "kd7", teacher=str(tmp_path / "six.safetensors"), kd_weight=1.5),
              progress=False, log=lambda s: None)
    assert not (tmp_path / "kd7").exists()  # refused before the run folder is made
    for bad, msg in (({"schedule": "step"}, "unknown schedule"), ({"class_weights": "inverse"}, "class weighting"),
                     ({"select": "loss"}, "unknown selection rule")):
        with pytest.raises(FerkitError, match=msg):
            train(_cfg(folder, tmp_path / "kd8", **bad), progress=False, log=lambda s: None)
        assert not (tmp_path / "kd8").exists()
    # numbers out of range: one clear line naming the option (not torch's ValueError), no folder left
    for bad, msg in (({"lr": -1.0}, r"--lr must be more than 0 \(the peak learning rate\), got -1"),
                     ({"lr": float("nan")}, "--lr must be more than 0"),
                     ({"epochs": 0}, "--epochs must be a whole number of 1 or more, got 0"),
                     ({"limit": 0}, "--limit must be"), ({"early_stop": -1}, "--early-stop must be"),
                     ({"label_smoothing": 1.5}, r"--label-smoothing must be in \[0, 1\), got 1.5"),
                     ({"weight_decay": -1.0}, "--weight-decay must be at least 0"),
                     ({"augment": {"flip": 2.0}}, r"--flip must be in \[0, 1\] \(a probability\), got 2"),
                     ({"augment": {"erase": 1.5}}, "--erase must be in"), ({"augment": {"rotate": 400}}, "--rotate")):
        with pytest.raises(FerkitError, match=msg):
            train(_cfg(folder, tmp_path / "kd9", **bad), progress=False, log=lambda s: None)
        assert not (tmp_path / "kd9").exists()


def test_selection_rules_break_ties_by_validation_loss(folder, tmp_path, trained):
    from ferkit.engine.train import better_epoch

    assert better_epoch("accuracy", 0.9, 0.5, 0.8, 0.1) and not better_epoch("accuracy", 1.0, 0.1, 1.0, 0.3)
    assert better_epoch("accuracy-loss", 1.0, 0.1, 1.0, 0.3) and not better_epoch("accuracy-loss", 1.0, 0.3, 1.0, 0.1)
    assert not better_epoch("accuracy-loss", 0.9, 0.01, 1.0, 0.3)  # accuracy first
    with pytest.raises(FerkitError, match="unknown selection rule"):
        train(_cfg(folder, tmp_path / "bad", select="loss"), progress=False, log=lambda s: None)
    # the default keeps the first epoch with the best accuracy
    run, card, _ = trained
    log = json.loads((run / "log.json").read_text())
    best = max(r["val_acc"] for r in log)
    assert card["best_epoch"] == next(r["epoch"] for r in log if r["val_acc"] == best)
    # accuracy-loss: among the epochs with the best accuracy, the lowest loss; the card says which rule chose
    card2 = train(_cfg(folder, tmp_path / "al", epochs=4, select="accuracy-loss"), progress=False, log=lambda s: None)
    log2 = json.loads((tmp_path / "al" / "log.json").read_text())
    best2 = max(r["val_acc"] for r in log2)
    want = min((r for r in log2 if r["val_acc"] == best2), key=lambda r: r["val_loss"])["epoch"]
    assert card2["best_epoch"] == want and card2["training"]["config"]["select"] == "accuracy-loss"
    assert want != next(r["epoch"] for r in log2 if r["val_acc"] == best2)  # a tie, broken by the loss (here 2 < 3)
    assert card2["metrics"]["val"]["loss"] == pytest.approx(min(r["val_loss"] for r in log2 if r["val_acc"] == best2),
                                                            abs=1e-5)


def test_evaluation_json_keeps_the_training_of_unshipped_members_only(trained):
    from ferkit.api import load_model
    from ferkit.engine.evaluate import trained_members

    out, card, _ = trained
    spec = f"mini_xception-fer2013+{out}"
    got = trained_members(spec, load_model(spec, backend="torch"))
    assert list(got) == [str(out)]  # the shipped member's card travels with ferkit already
    assert got[str(out)]["command"] == "test" and got[str(out)]["config"]["seed"] == 0
    assert trained_members("default", load_model("default", backend="torch")) == {}


def test_teacher_probabilities_average_the_views_asked_for(folder, tmp_path):
    from ferkit.api import load_model
    from ferkit.data import open_dataset
    from ferkit.engine.train import teacher_probs

    ds = open_dataset("imagefolder", str(folder)).load("train", size=(48, 48), mode="L")
    fast = load_model("fast", backend="torch")
    got = {}
    for tta in ("flip", "tencrop"):
        cfg = _cfg(folder, tmp_path, teacher="fast", teacher_tta=tta)
        got[tta] = teacher_probs(cfg, ds, tmp_path, torch.device("cpu"), log=lambda s: None).numpy()
        want = fast.predict_tensor(ds.images, tta=tta).numpy()[:, [fast.classes.index(c) for c in ds.classes]]
        assert np.allclose(got[tta], want / want.sum(1, keepdims=True), atol=1e-6)
        assert json.loads((tmp_path / "teacher.json").read_text())["tta"] == tta  # a cache for flip is not reused
    assert np.abs(got["flip"] - got["tencrop"]).max() > 1e-3
    # other images of the same count (another fold, --limit with another seed): not the cached answers
    calls = []
    first = teacher_probs(cfg, ds, tmp_path, torch.device("cpu"), log=calls.append)  # cached: no log line
    assert calls == [] and np.array_equal(first.numpy(), got["tencrop"])
    shifted = ds.subset(range(len(ds)))
    shifted.images = shifted.images.roll(6, dims=-2)  # tencrop is mirror-invariant: moved, not mirrored
    other = teacher_probs(cfg, shifted, tmp_path, torch.device("cpu"), log=calls.append).numpy()
    assert len(calls) == 1 and "probabilities of" in calls[0]
    assert np.abs(other - got["tencrop"]).max() > 1e-4
    meta = json.loads((tmp_path / "teacher.json").read_text())
    from ferkit import weights

    assert len(meta["images_sha256"]) == 64 and meta["teacher_sha256"] == [weights.sha256(weights.resolve("fast"))]
    with pytest.raises(FerkitError, match="teacher_tta"):
        train(_cfg(folder, tmp_path / "bad", teacher="fast", teacher_tta="rotate"), progress=False, log=lambda s: None)


def test_early_stop_with_sgd_and_a_constant_rate(folder, tmp_path):
    # SGD (Nesterov momentum) at a constant rate after warm-up; training stops once the validation
    # accuracy has not improved for --early-stop epochs
    lines = []
    card = train(_cfg(folder, tmp_path / "es", epochs=12, optimizer="sgd", momentum=0.9, lr=0.05, warmup_epochs=1,
                      schedule="constant", early_stop=2), progress=False, log=lines.append)
    log = json.loads((tmp_path / "es" / "log.json").read_text())
    best, stale, stop = 0.0, 0, None
    for r in log:  # where the rule says it stops
        best, stale = (r["val_acc"], 0) if r["val_acc"] > best else (best, stale + 1)
        if stale >= 2:
            stop = r["epoch"]
            break
    assert stop is not None and stop < 12 and [r["epoch"] for r in log] == list(range(1, stop + 1))
    assert any(ln.startswith("early stop: no better val accuracy for 2 epochs") for ln in lines)
    assert card["best_epoch"] == max(log, key=lambda r: r["val_acc"])["epoch"]
    assert len({r["lr"] for r in log[1:]}) == 1 and log[1]["lr"] == pytest.approx(0.05)  # constant after warm-up
    ckpt = torch.load(tmp_path / "es" / "last.ckpt", weights_only=False)
    group = ckpt["optimizer"]["param_groups"][0]
    assert group["momentum"] == 0.9 and group["nesterov"] is True
    # interrupted while finishing (after the stop), then resumed: it only finishes (it trained on)
    import sys

    T = sys.modules["ferkit.engine.train"]

    (tmp_path / "es" / "model.safetensors").unlink()
    lines = []
    card2 = train(_cfg(folder, tmp_path / "es", epochs=12, optimizer="sgd", momentum=0.9, lr=0.05, warmup_epochs=1,
                       schedule="constant", early_stop=2), resume=True, progress=False, log=lines.append)
    assert [r["epoch"] for r in json.loads((tmp_path / "es" / "log.json").read_text())] == list(range(1, stop + 1))
    assert any(ln.startswith(f"the run had stopped early at epoch {stop}") for ln in lines)
    assert card2["best_epoch"] == card["best_epoch"] and T.RESUMED not in card2["training"]["command"]
    # a run without --early-stop, resumed with it where its last epochs brought nothing better: the new
    # option ends it, and it says so (it said the run "had stopped early", which it had not)
    ck = torch.load(tmp_path / "es" / "last.ckpt", weights_only=False)
    ck["config"]["early_stop"] = None
    torch.save(ck, tmp_path / "es" / "last.ckpt")
    (tmp_path / "es" / "model.safetensors").unlink()
    lines = []
    train(_cfg(folder, tmp_path / "es", epochs=12, optimizer="sgd", momentum=0.9, lr=0.05, warmup_epochs=1,
               schedule="constant", early_stop=2), resume=True, progress=False, log=lines.append)
    assert not any("had stopped early" in ln for ln in lines)
    assert any(ln.startswith(f"--early-stop 2: the run's last 2 epochs (to epoch {stop}) brought no better") for ln in lines)


def test_a_time_budget_run_resumed_keeps_its_fitted_epochs_and_time(folder, tmp_path, monkeypatch):
    # --epochs 20 --time-budget: fitted after epoch 1 to what the budget allows; interrupted, then
    # resumed by the same command: the fitted count stands (the command's 20 replaced it) and the
    # time already spent counts (it was forgotten: the budget was spent again)
    import sys
    import types

    T = sys.modules["ferkit.engine.train"]
    clock = {"t": 1000.0}

    def tick():  # every call a second later: an epoch "takes" a fixed number of calls
        clock["t"] += 1.0
        return clock["t"]

    monkeypatch.setattr(T, "time", types.SimpleNamespace(time=tick))  # the trainer's clock only
    cfg = _cfg(folder, tmp_path / "tb", epochs=20, time_budget=40.0, warmup_epochs=0.5)

    def stop_at_epoch_3(line):
        if line.startswith("epoch   3/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False, log=stop_at_epoch_3)
    fitted = json.loads((tmp_path / "tb" / "config.json").read_text())["epochs"]
    assert 3 < fitted < 20
    lines = []
    card = train(cfg, resume=True, progress=False, log=lines.append)
    log = json.loads((tmp_path / "tb" / "log.json").read_text())
    assert [r["epoch"] for r in log] == list(range(1, fitted + 1))
    assert card["training"]["config"]["epochs"] == fitted
    assert not any(ln.startswith("time budget") for ln in lines)  # not refitted on resuming
    # the cosine schedule is the fitted run's, without a jump at the resumed epoch
    assert log[2]["lr"] < log[1]["lr"] and log[-1]["lr"] < 0.1 * cfg.lr
    # resumed with a new budget and the same --epochs 20: the count is the budget's to refit (and said
    # there), not "resuming with --epochs 20 (was N)", which the user did not change
    import dataclasses

    lines = []
    train(dataclasses.replace(cfg, time_budget=1000.0), resume=True, progress=False, log=lines.append)
    assert not any(ln.startswith("resuming with --epochs") for ln in lines), lines


def test_a_new_lr_on_resume_applies_to_the_plateau_schedule(folder, tmp_path):
    run = tmp_path / "pl"
    train(_cfg(folder, run, epochs=1, schedule="plateau"), progress=False, log=lambda s: None)
    train(_cfg(folder, run, epochs=2, schedule="plateau", lr=1e-5), resume=True, progress=False, log=lambda s: None,
          given=["lr"])
    assert json.loads((run / "log.json").read_text())[1]["lr"] == pytest.approx(1e-5)  # it stayed at 3e-3


def test_a_teacher_without_a_class_of_the_data_leaves_no_run_folder(folder, tmp_path):
    from ferkit import weights
    from ferkit.models import create

    card = {"architecture": "mini_xception", "arch_kwargs": {}, "classes": ["angry", "happy", "sad", "surprise",
            "neutral", "disgust"], "input_size": [1, 48, 48], "mean": [0.5], "std": [0.25]}
    weights.save(create("mini_xception", num_classes=6).eval(), tmp_path / "six.safetensors", card)
    with pytest.raises(FerkitError, match="it has no class fear"):
        train(_cfg(folder, tmp_path / "kd6", teacher=str(tmp_path / "six.safetensors")), progress=False,
              log=lambda s: None)
    assert not (tmp_path / "kd6").exists()


def test_ema_update_is_a_moving_average_of_parameters_and_statistics():
    from ferkit.engine.train import ema_update

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    avg = __import__("copy").deepcopy(net)
    before = {k: v.clone() for k, v in avg.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net.train()(torch.randn(8, 3))  # moves the running statistics and the batch counter
    ema_update(avg, net, 0.9, step=1000)  # late in a run: the decay asked for
    now, new = avg.state_dict(), net.state_dict()
    for k in ("0.weight", "0.bias", "1.weight", "1.running_mean", "1.running_var"):
        assert torch.allclose(now[k], 0.9 * before[k] + 0.1 * new[k], atol=1e-6), k
        assert not torch.allclose(now[k], new[k])
    assert int(now["1.num_batches_tracked"]) == 1  # counters are copied, not averaged
    fresh = __import__("copy").deepcopy(avg)
    ema_update(fresh, net, 0.999, step=0)  # first step: d = 1/10, the average moves most of the way
    assert torch.allclose(fresh.state_dict()["0.bias"], 0.1 * now["0.bias"] + 0.9 * new["0.bias"], atol=1e-6)
    from ferkit.engine.train import ema_decay

    assert ema_decay(0.999, 0) == pytest.approx(0.1) and ema_decay(0.999, 890) == pytest.approx(0.99)
    assert ema_decay(0.999, 8990) == pytest.approx(0.999) and ema_decay(0.999, 10**6) == 0.999


def test_ema_run_selects_and_saves_the_average_and_resumes_it(folder, tmp_path):
    lines = []
    run = tmp_path / "ema"
    # accuracy-loss: the tiny set reaches 100% at epoch 2, and the last epoch's lower loss makes it the best
    card = train(_cfg(folder, run, ema=0.9, select="accuracy-loss"), progress=False, log=lines.append)
    hist = json.loads((run / "log.json").read_text())
    assert all("val_acc_raw" in r and 0 <= r["val_acc_raw"] <= 1 for r in hist)
    assert any("raw weights: val acc" in ln for ln in lines)
    ck = torch.load(run / "last.ckpt", weights_only=True)
    assert ck["ema"].keys() == ck["model"].keys()
    assert any(not torch.equal(ck["ema"][k], ck["model"][k]) for k in ck["model"] if ck["model"][k].is_floating_point())
    assert card["best_epoch"] == 3 and hist[-1]["val_acc"] == 1.0
    assert card["metrics"][card["dataset"]["val_split"]]["loss"] == pytest.approx(hist[-1]["val_loss"], rel=1e-4)
    saved = load_file(str(run / "model.safetensors"))  # the saved model is the average, not the raw weights
    assert all(torch.equal(saved[k], ck["ema"][k]) for k in saved)

    def stop_at_epoch_2(line):
        if line.startswith("epoch   2/3"):
            raise KeyboardInterrupt

    again = tmp_path / "ema-resumed"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(folder, again, ema=0.9, select="accuracy-loss"), progress=False, log=stop_at_epoch_2)
    train(_cfg(folder, again, ema=0.9, select="accuracy-loss"), resume=True, progress=False, log=lambda s: None)
    ck2 = torch.load(again / "last.ckpt", weights_only=True)
    assert all(torch.equal(ck["ema"][k], ck2["ema"][k]) for k in ck["ema"])


def test_a_bad_ema_decay_is_a_clear_error(folder, tmp_path):
    for bad in (0.0, 1.0, 1.5, float("nan")):
        with pytest.raises(FerkitError, match="--ema must be in \\(0, 1\\)"):
            train(_cfg(folder, tmp_path / "e", ema=bad), progress=False, log=lambda s: None)
    assert not (tmp_path / "e").exists()


def test_a_warm_up_as_long_as_the_run_is_warned_about():
    from ferkit.engine.train import check_settings

    import sys

    sys.modules["ferkit.engine.train"]._WARNED_WARMUP.clear()  # (ferkit.engine.train is also the function)
    with pytest.warns(UserWarning, match=r"--warmup 2 covers all 2 epoch\(s\): the learning rate rises the whole run, "
                                         r"reaches --lr 0.002 only at its last step"):
        check_settings(TrainConfig(dataset="fer2013", data="x", out="o", epochs=2))
    assert lr_factor(TrainConfig(epochs=2, warmup_epochs=2), 19, 10) == 1.0  # (its last step)
    # the rate does reach its peak in the last step of a warm-up shorter than the run
    assert lr_factor(TrainConfig(epochs=3, warmup_epochs=2), 19, 10) == 1.0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_settings(TrainConfig(dataset="fer2013", data="x", out="o", epochs=3))  # shorter: nothing said
        check_settings(TrainConfig(dataset="fer2013", data="x", out="o", epochs=2, time_budget=60))  # refitted
        check_settings(TrainConfig(dataset="fer2013", data="x", out="o", epochs=2))  # said once (crossval's rounds)
    # an unknown architecture is the one thing said (the remark came first, about a run that cannot start)
    sys.modules["ferkit.engine.train"]._WARNED_WARMUP.clear()
    import tempfile

    never = Path(tempfile.mkdtemp()) / "never"
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with pytest.raises(FerkitError, match="nonet"):
            train(TrainConfig(model="nonet", dataset="fer2013", data="x", out=str(never), epochs=2),
                  progress=False, log=lambda s: None)
    assert not [w for w in said if "covers all" in str(w.message)] and not never.exists()


def test_evaluate_limit_draws_a_subset_and_says_so(trained, folder, tmp_path, capsys):
    out, _, _ = trained
    base = ["evaluate", "--model", str(out), "--dataset", "imagefolder", "--data", str(folder), "--split", "test"]
    assert main(base + ["--json", str(tmp_path / "all.json")]) == 0
    n_all = json.loads((tmp_path / "all.json").read_text())["n"]
    capsys.readouterr()
    for name in ("a", "b"):
        assert main(base + ["--limit", "10", "--json", str(tmp_path / f"{name}.json")]) == 0
    said = capsys.readouterr().out
    assert f"note: --limit 10: 10 of the split's {n_all} images, drawn at random (seed 0)" in said
    assert f"; --limit: 10 of {n_all} images)" in said
    a, b = (json.loads((tmp_path / f"{x}.json").read_text()) for x in "ab")
    assert a["n"] == 10 and a["limit"] == {"n": 10, "of": n_all, "seed": 0} and a == {**b, "command": a["command"]}
    assert main(base + ["--limit", str(n_all + 5), "--json", str(tmp_path / "c.json")]) == 0  # more than there are
    assert "limit" not in json.loads((tmp_path / "c.json").read_text()) and "--limit" not in capsys.readouterr().out


def test_cpu_amp_trains_in_bfloat16_reproducibly_and_warns_without_native_support(folder, tmp_path, monkeypatch):
    """--cpu-amp: bfloat16 autocast on the CPU. Its weights differ from the float32 run's (the flag
    takes effect), the same seed gives the same weights, and a CPU without native bfloat16 is warned of."""
    import importlib

    tr = importlib.import_module("ferkit.engine.train")  # (ferkit.engine.train is also the function's name)
    kw = dict(epochs=1, test_split="none")
    train(_cfg(folder, tmp_path / "fp32", **kw), progress=False, log=lambda s: None)
    lines = []
    monkeypatch.setattr(tr, "cpu_has_bf16", lambda: False)
    card = train(_cfg(folder, tmp_path / "bf16", cpu_amp=True, **kw), progress=False, log=lines.append)
    assert card["training"]["config"]["cpu_amp"] is True
    assert any("without native bfloat16" in ln for ln in lines)
    monkeypatch.setattr(tr, "cpu_has_bf16", lambda: True)
    lines = []
    train(_cfg(folder, tmp_path / "bf16-again", cpu_amp=True, **kw), progress=False, log=lines.append)
    assert not any("bfloat16" in ln for ln in lines)
    a, b, c = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("fp32", "bf16", "bf16-again"))
    assert all(torch.equal(b[k], c[k]) for k in b)
    assert not all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.isfinite(b[k]).all() for k in b)


def test_cpu_has_bf16_reads_the_cpu_flags(tmp_path):
    from ferkit.engine.train import cpu_has_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n\nprocessor\t: 1\n"
                    "flags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert cpu_has_bf16(str(info)) is False
    info.write_text("flags\t\t: fpu avx512f amx_tile amx_bf16 amx_int8\n")
    assert cpu_has_bf16(str(info)) is True
    info.write_text("flags\t\t: fpu avx512f avx512_bf16\n")
    assert cpu_has_bf16(str(info)) is True
    assert cpu_has_bf16(str(tmp_path / "absent")) is None


def test_recalibrate_bn_keeps_the_statistics_only_when_validation_rises(folder, tmp_path):
    out = tmp_path / "bn"
    lines = []
    card = train(_cfg(folder, out, epochs=2, recalibrate_bn=True), progress=False, log=lines.append)
    bn = card["training"]["bn_recomputed"]
    assert bn["split"] == "train" and bn["layers"] > 2 and bn["images"] == 7 * 24
    assert any("batch-norm statistics re-estimated" in ln for ln in lines)
    # the card's validation number is the one of the statistics kept
    assert card["metrics"]["val"]["accuracy"] == pytest.approx(bn["val_after"] if bn["kept"] else bn["val_before"])
    assert bn["kept"] == (bn["val_after"] > bn["val_before"])
    final, best = load_file(str(out / "model.safetensors")), load_file(str(out / "best.safetensors"))
    stats = [k for k in final if k.endswith("running_mean")]
    same = all(torch.equal(final[k], best[k]) for k in stats)
    assert same != bn["kept"]  # re-estimated statistics differ from the trained ones, and only they are kept
    assert all(torch.equal(final[k], best[k]) for k in final if k.endswith(".weight"))
    # and the evaluation of the file on val gives the card's number
    from ferkit.api import load_model
    from ferkit.data import open_dataset
    from ferkit.engine.evaluate import evaluate

    from ferkit.engine.evaluate import trained_members

    ds = open_dataset("imagefolder", str(folder)).load("val", size=(48, 48), mode="L", progress=False)
    model = load_model(str(out), backend="torch")
    assert evaluate(model, ds)["accuracy"] == pytest.approx(card["metrics"]["val"]["accuracy"])
    assert trained_members(str(out), model)[str(out)]["bn_recomputed"] == bn  # an evaluation's JSON says so too


def test_a_one_class_dataset_is_refused_before_training_and_an_empty_class_is_warned(tmp_path):
    """One class trained to its end and then failed at its card (and every resume failed the same);
    an empty class folder became a class the model never learned, without a word."""
    import shutil

    from conftest import make_imagefolder

    one = make_imagefolder(tmp_path / "one", per_class=6)
    for d in (one / "train").iterdir():
        if d.name != "happy":
            shutil.rmtree(d)
    t0 = time.time()
    with pytest.raises(FerkitError, match=r"holds images of 1 class only \(happy\): an expression classifier needs two"):
        train(_cfg(one, tmp_path / "r1", epochs=50), progress=False, log=lambda s: None)
    assert time.time() - t0 < 60 and not (tmp_path / "r1" / "last.ckpt").exists()

    some = make_imagefolder(tmp_path / "some", per_class=6)
    for name in ("fear", "disgust"):
        for f in (some / "train" / name).iterdir():
            f.unlink()
    lines = []
    card = train(_cfg(some, tmp_path / "r2", epochs=1), progress=False, log=lines.append)
    warned = [ln for ln in lines if ln.startswith("WARNING: no training image of")]
    assert len(warned) == 1 and "disgust, fear" in warned[0] and "them" in warned[0], lines
    assert {"disgust", "fear"} <= set(card["classes"])


def test_a_new_run_does_not_overwrite_a_model_or_a_cross_validation_another_verb_wrote(trained, tmp_path):
    """`ferkit train --out` into the folder of `ferkit average` / `recalibrate` (a model, no checkpoint)
    replaced that model without a word (those verbs refuse the reverse)."""
    out, _, _ = trained
    soup = tmp_path / "soup"
    soup.mkdir()
    for f in ("model.safetensors", "model.json"):
        shutil.copy(out / f, soup / f)
    before = (soup / "model.safetensors").read_bytes()
    for resume in (False, True):
        with pytest.raises(FerkitError, match=r"holds a model already \(model.safetensors\), which a new run would"):
            train(_cfg(out.parent, soup), resume=resume, progress=False, log=lambda s: None)
    assert (soup / "model.safetensors").read_bytes() == before and sorted(p.name for p in soup.iterdir()) == [
        "model.json", "model.safetensors"]
    cv = tmp_path / "cv"
    cv.mkdir()
    (cv / "crossval.json").write_text("{}")
    with pytest.raises(FerkitError, match="holds a cross-validation already"):
        train(_cfg(out.parent, cv), progress=False, log=lambda s: None)
    # an interrupted run whose checkpoint is gone: its best weights, config and log were replaced in silence
    half = tmp_path / "half"
    half.mkdir()
    for f in ("best.safetensors", "best.json", "config.json"):
        shutil.copy(out / f, half / f)
    for resume in (False, True):
        with pytest.raises(FerkitError, match=r"holds an earlier run's best weights \(its checkpoint, last.ckpt, is "
                                              r"gone: it cannot be resumed\) already \(best.safetensors\)"):
            train(_cfg(out.parent, half), resume=resume, progress=False, log=lambda s: None)
    # and loaded as a model, it is said to be unfinished (it was taken for a finished one in silence)
    import ferkit

    with pytest.warns(ferkit.FerkitWarning, match=r"half: an unfinished run \(no model.safetensors\): its best weights "
                                                  r"so far are used \(best.safetensors, epoch \d+ of \d+ planned\)"):
        assert ferkit.load_model(str(half)).classes


def test_resuming_on_data_of_other_classes_says_so(folder, tmp_path):
    """It said "last.ckpt: does not fit the run it belongs to (RuntimeError: ... state_dict ...)"."""
    run, fewer = tmp_path / "run", tmp_path / "fewer"
    train(_cfg(folder, run, epochs=1), progress=False, log=lambda s: None)
    shutil.copytree(folder, fewer)
    for split in ("train", "val", "test"):
        shutil.rmtree(fewer / split / "fear")
    with pytest.raises(FerkitError, match=r"the run was trained on the classes angry, disgust, fear, .* and .*fewer "
                                          r"holds angry, disgust, happy, .*: resume it with the data it was trained on"):
        train(_cfg(fewer, run, epochs=2), resume=True, progress=False, log=lambda s: None, given=["data"])


def test_a_finished_run_resumed_keeps_its_epochs_and_is_left_as_it_is(folder, tmp_path, capsys):
    """`ferkit train ... --resume` without --epochs took a finished 2-epoch run on to 100 epochs (the
    option's default); a smaller --epochs than trained was taken (the config then said 2 of 3 epochs);
    a finished run resumed as it was re-evaluated and rewrote its card. And a --model left to its
    default was said as 'ignoring differing: model'."""
    run = tmp_path / "run"
    base = ["train", "--model", "lite_cnn", "--dataset", "imagefolder", "--data", str(folder), "--out", str(run),
            "--batch-size", "8", "--warmup", "0", "--threads", "2", "--no-progress"]
    assert main([*base, "--epochs", "2"]) == 0
    capsys.readouterr()
    model = (run / "model.safetensors").read_bytes(), (run / "model.json").read_text()
    config = (run / "config.json").read_text()
    # the same command without --epochs (and without --model): the run keeps its 2, is finished, nothing changes
    again = [a for a in base if a not in ("--model", "lite_cnn")]
    assert main([*again, "--resume"]) == 0
    err = capsys.readouterr()
    said = err.out + err.err
    assert f"{run} is finished: 2 epochs trained" in said and "nothing to do" in said
    assert "epoch   3/" not in said and "ignoring differing: model" not in said
    # options left out are no difference to say (it listed "batch_size (128; the run's: 8)", a default not typed);
    # a typed one is; another network (--model-arg) named on the command line is refused, as another --model is
    bare = [a for a in again if a not in ("--batch-size", "8", "--warmup", "0")]
    assert main([*bare, "--resume"]) == 0
    said = "".join(capsys.readouterr())
    assert "ignoring differing" not in said and "nothing to do" in said
    assert main([*bare, "--batch-size", "16", "--resume"]) == 0
    assert "ignoring differing: batch_size (16; the run's: 8)" in "".join(capsys.readouterr())
    assert main([*base, "--model-arg", "width=2", "--resume"]) == 1
    assert "holds a run of another network (--model-arg): model_kwargs {} (asked: {'width': 2})" in \
        capsys.readouterr().err
    assert ((run / "model.safetensors").read_bytes(), (run / "model.json").read_text()) == model
    assert (run / "config.json").read_text() == config
    # fewer epochs than trained: refused, nothing written
    assert main([*base, "--epochs", "1", "--resume"]) == 1
    assert "has trained 2 epochs already: --epochs 1 is fewer" in capsys.readouterr().err
    assert (run / "config.json").read_text() == config
    # the same in an abbreviation the parser takes (--epoch): given, not left to its default
    assert main([*base, "--epoch", "1", "--resume"]) == 1
    assert "has trained 2 epochs already: --epochs 1 is fewer" in capsys.readouterr().err
    # --recalibrate-bn newly asked of a finished run: its finish runs again (it is not "nothing to do")
    assert main([*base, "--resume", "--recalibrate-bn"]) == 0
    said = capsys.readouterr()
    assert "nothing to do" not in said.out + said.err and "batch-norm statistics re-estimated" in said.out + said.err
    # more: trained on (to 3, not 100)
    assert main([*base, "--epochs", "3", "--resume"]) == 0
    assert len((run / "log.csv").read_text().splitlines()) == 1 + 3
    assert json.loads((run / "config.json").read_text())["epochs"] == 3


def test_an_early_stopped_run_resumed_says_what_would_train_it_on(folder, tmp_path, capsys):
    """A run that stopped early, resumed with a larger --epochs, said 'resuming with --epochs 20 ... fitted
    to 20 epochs' and then 'nothing to do (a larger --epochs trains it on)', which it does not."""
    run = tmp_path / "run"
    base = ["train", "--model", "lite_cnn", "--dataset", "imagefolder", "--data", str(folder), "--out", str(run),
            "--batch-size", "8", "--warmup", "0", "--threads", "2", "--no-progress", "--lr", "1e-9",
            "--early-stop", "1"]
    assert main([*base, "--epochs", "6"]) == 0
    done = len((run / "log.csv").read_text().splitlines()) - 1
    assert done < 6  # (stopped early: a rate of 1e-9 learns nothing)
    capsys.readouterr()
    assert main([*base, "--epochs", "20", "--resume"]) == 0
    said = capsys.readouterr().out
    assert f"is finished: it stopped early at epoch {done} (no better val accuracy for 1 epoch, --early-stop 1)" in said
    assert "a larger --early-stop, or 0, trains it on" in said and "resuming with --epochs" not in said
    assert len((run / "log.csv").read_text().splitlines()) - 1 == done


def test_evaluate_says_when_the_split_held_the_models_training_images(trained, folder, tmp_path, capsys,
                                                                      monkeypatch):
    """`--split all` (or the training split) of the dataset a model was trained on gave a leaked number
    without a word (a fold's was warned about); the confusion plot's title did not say n, --limit or
    the TTA its number was of."""
    import argparse

    import ferkit.engine.plots as plots
    from ferkit.cli import _detect_of_card

    out, _, _ = trained
    titles = []
    real = plots.plot_confusion
    monkeypatch.setattr(plots, "plot_confusion", lambda cm, cl, path, title="": (titles.append(title),
                                                                                 real(cm, cl, path, title=title)))
    base = ["evaluate", "--model", str(out), "--dataset", "imagefolder", "--data", str(folder), "--json",
            str(tmp_path / "r.json")]
    said = {}
    for split in ("train", "val", "test"):
        assert main(base + ["--split", split]) == 0
        said[split] = capsys.readouterr()
    for split in ("train",):  # (and 'all' where a dataset has it: CK+, JAFFE)
        assert (f"warning: split '{split}' holds the images this model was trained on ('train', its card): the "
                f"number overstates it; evaluate on its test split, 'test'") in said[split].err
    assert "note: the model was selected on 'val' (its best epoch; its card): a validation figure" in said["val"].out
    assert "overstates" not in said["val"].err + said["test"].err and "selected on" not in said["test"].out
    # another folder of the same layout is another dataset: nothing said
    import shutil

    other = tmp_path / "other"
    shutil.copytree(folder, other)
    assert main(["evaluate", "--model", str(out), "--dataset", "imagefolder", "--data", str(other), "--split",
                 "train"]) == 0
    assert "overstates" not in capsys.readouterr().err
    assert main(base + ["--split", "test", "--limit", "10", "--tta", "flip"]) == 0
    assert titles[2].startswith(f"{out.name} on ") and "test (n=84): accuracy" in titles[2]
    assert " test (n=10 of 84 (--limit), tta flip): accuracy " in titles[-1]
    # a run trained on detected faces (JAFFE, KDEF: --detect mtcnn) is evaluated so unless --detect is named
    card = {"dataset": {"name": "jaffe"}, "training": {"config": {"detect": "mtcnn"}}}
    for dataset in ("jaffe", "kdef"):  # its own, or another of full photos
        a = argparse.Namespace(detect="none", dataset=dataset, argv=["evaluate", "--dataset", dataset])
        _detect_of_card(a, card)
        assert a.detect == "mtcnn" and "evaluating with --detect mtcnn: the model was trained on faces found" in \
            capsys.readouterr().out
    a = argparse.Namespace(detect="none", dataset="fer2013", argv=[])  # face crops: MTCNN is not run on them
    _detect_of_card(a, card)
    assert a.detect == "none"
    for named in (["--detect", "none"], ["--detector=none"]):
        a = argparse.Namespace(detect="none", dataset="jaffe", argv=["evaluate", *named])
        _detect_of_card(a, card)
        assert a.detect == "none"
    a = argparse.Namespace(detect="none", dataset="jaffe", given_flags={"--det", "--detect", "--detector"})
    _detect_of_card(a, card)  # (an abbreviation: main records every spelling of the option it named)
    assert a.detect == "none"
    a = argparse.Namespace(detect="none", dataset="jaffe", argv=[])
    _detect_of_card(a, {"training": {"config": {"detect": "none"}}})
    assert a.detect == "none" and capsys.readouterr().out == ""
    # the split's own name decides ('train' of FER2013 is its 'Training'), and trainval holds the training images
    from ferkit.cli import _warn_trained_split

    fer = {"dataset": {"name": "fer2013", "train_split": "Training", "val_split": "PublicTest",
                       "test_split": "PrivateTest"}}
    _warn_trained_split(argparse.Namespace(dataset="fer2013"), fer, "Training")
    assert "holds the images this model was trained on ('Training'" in capsys.readouterr().err
    ck = {"dataset": {"name": "ckplus", "train_split": "train", "val_split": "val", "test_split": "test"}}
    _warn_trained_split(argparse.Namespace(dataset="ckplus"), ck, "trainval")
    assert "split 'trainval' holds the images this model was trained on" in capsys.readouterr().err


def test_evaluate_warns_when_a_folds_members_moved_since_training(tmp_path, capsys):
    """One photo added to a flat folder dealt its folds anew: evaluate scored a 'test' fold holding the model's
    training images without a word. The card keeps a digest of its test split's members; evaluate compares."""
    import shutil

    data = make_imagefolder(tmp_path / "flat", with_splits=False, per_class=6)
    out = tmp_path / "run"
    assert main(["train", "--model", "lite_cnn", "--dataset", "imagefolder", "--data", str(data), "--folds", "3",
                 "--fold", "0", "--epochs", "1", "--warmup", "0", "--batch-size", "8", "--threads", "2",
                 "--no-progress", "--out", str(out)]) == 0
    card = json.loads((out / "model.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{16}", card["dataset"]["test_digest"])
    capsys.readouterr()
    ev = ["evaluate", "--model", str(out), "--dataset", "imagefolder", "--data", str(data), "--no-progress"]
    assert main(ev) == 0
    assert "holds other images" not in capsys.readouterr().err
    moved = tmp_path / "moved"  # the same dataset elsewhere (its names relative to its folder): no warning
    shutil.copytree(data, moved)
    assert main([*ev[:6], str(moved), "--no-progress"]) == 0
    assert "holds other images" not in capsys.readouterr().err
    first = sorted((data / "happy").iterdir())[0]
    shutil.copy(first, data / "happy" / "zz_new.png")
    assert main(ev) == 0
    assert "warning: split 'test' holds other images than when this model was trained" in capsys.readouterr().err
    # trained with --limit: tested on a subset, evaluated on all of the split: said as that, not as a change
    small = tmp_path / "small"
    assert main(["train", "--model", "lite_cnn", "--dataset", "imagefolder", "--data", str(moved), "--folds", "3",
                 "--fold", "0", "--epochs", "1", "--warmup", "0", "--batch-size", "8", "--threads", "2", "--limit", "4",
                 "--no-progress", "--out", str(small)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(small), "--dataset", "imagefolder", "--data", str(moved),
                 "--no-progress"]) == 0
    said = capsys.readouterr()
    assert "holds other images" not in said.err
    assert "trained with --limit 4, so its card's test number is of 4 of this split's images" in said.out


def test_training_says_when_val_or_test_images_are_copies_of_training_ones(tmp_path):
    """The same photo copied into train/ and test/ (another path, the same pixels) was never told."""
    import shutil

    data = make_imagefolder(tmp_path / "d", with_splits=True, per_class=4)
    for i, p in enumerate(sorted((data / "train" / "happy").iterdir())[:3]):
        shutil.copy(p, data / "test" / "happy" / f"copy{i}.png")
    lines: list[str] = []
    train(_cfg(data, tmp_path / "run", epochs=1, model="lite_cnn"), progress=False, log=lines.append)
    said = [ln for ln in lines if "same pixels" in ln]
    assert len(said) == 1 and said[0].startswith("WARNING: 3 of the test split 'test'") and "overstates" in said[0]


def test_a_resume_under_other_code_is_said_and_the_card_lists_each_stretch(folder, tmp_path, monkeypatch):
    """A run trained for 3 epochs at one commit and resumed at another gave no word, and its card named one
    commit (the last segment's, or the best epoch's): a run spanning two code versions looked like one."""
    import sys

    tr = sys.modules["ferkit.engine.train"]  # (ferkit.engine.train is also the function)
    run = tmp_path / "run"
    monkeypatch.setattr(tr, "git_state", lambda start=None: {"git_commit": "a" * 40, "git_dirty": False})
    train(_cfg(folder, run, epochs=1), progress=False, log=lambda s: None)
    lines = []
    train(_cfg(folder, run, epochs=2), resume=True, progress=False, log=lines.append)  # the same code: unsaid
    assert not any("other code" in ln for ln in lines)
    assert "segments" not in json.loads((run / "model.json").read_text())["training"]
    monkeypatch.setattr(tr, "git_state", lambda start=None: {"git_commit": "b" * 40, "git_dirty": True,
                                                             "git_dirty_files": ["src/ferkit/cli.py"]})
    lines = []
    train(_cfg(folder, run, epochs=3), resume=True, progress=False, log=lines.append)
    said = [ln for ln in lines if "resuming under other code" in ln]
    assert said == ["warning: resuming under other code: epochs 1-2 ran at commit aaaaaaa, the epochs from 3 run at "
                    "commit bbbbbbb with src/ferkit/cli.py changed (the card lists both: training.segments)"]
    t = json.loads((run / "model.json").read_text())["training"]
    assert [(s["from_epoch"], s["git_commit"][:1], s.get("git_dirty_files")) for s in t["segments"]] == \
        [(1, "a", None), (3, "b", ["src/ferkit/cli.py"])]
    assert t["git_commit"] == "b" * 40
    # a checkpoint from before runs kept their code: its stretch is listed as unknown, not as this resume's code
    ckpt = torch.load(run / "last.ckpt", weights_only=True)
    del ckpt["segments"]
    torch.save(ckpt, run / "last.ckpt")
    lines = []
    train(_cfg(folder, run, epochs=4), resume=True, progress=False, log=lines.append)
    assert not any("other code" in ln for ln in lines)
    t = json.loads((run / "model.json").read_text())["training"]
    assert [(s["from_epoch"], s["git_commit"]) for s in t["segments"]] == [(1, None), (4, "b" * 40)]


def test_a_resume_keeps_what_the_command_left_out_but_this_machines_device_and_threads():
    """A resume keeps the run's own settings where the command leaves them out, said nowhere, but for the
    device and the threads, which are the machine's: a run started with --device cuda and resumed on a CPU
    machine without --device kept cuda and failed."""
    from ferkit.cli import _left_default, build_parser

    args = ["train", "--model", "lite_cnn", "--dataset", "imagefolder", "--data", "d", "--out", "o", "--lr", "0.01",
            "--fold", "2"]
    a = build_parser().parse_args(args)
    a.argv = args
    keep = set(_left_default(a))
    assert {"batch_size", "epochs", "warmup_epochs", "augment", "model_kwargs"} <= keep
    assert not keep & {"model", "dataset", "lr", "dataset_options", "device", "threads", "out", "command"}


def test_the_default_fold_options_typed_on_a_resume_are_the_runs_own(tmp_path):
    """A run started without --folds/--fold saves neither; resumed with --folds 10 --fold 0 (the defaults
    typed), it was refused as 'another folds and fold: folds None (asked: 10)'."""
    data = make_imagefolder(tmp_path / "flat", with_splits=False, per_class=6)
    base = ["train", "--model", "lite_cnn", "--dataset", "imagefolder", "--data", str(data), "--epochs", "1",
            "--warmup", "0", "--batch-size", "8", "--threads", "2", "--no-progress", "--out", str(tmp_path / "r"),
            "--folds", "3"]
    assert main(base) == 0
    assert main([*base, "--fold", "0", "--fold-seed", "0", "--epochs", "2", "--resume"]) == 0
    assert main([*base, "--fold", "1", "--epochs", "2", "--resume"]) == 1  # another round: refused



def test_training_on_folds_of_single_images_says_they_are_not_subject_independent(tmp_path, capsys):
    """A flat image folder names no people: its folds are of single images, and `ferkit train` on one said
    nothing (`ferkit data` and crossval did), its card recording only "folds 3, fold 0"."""
    data = make_imagefolder(tmp_path / "flat", with_splits=False, per_class=6)
    assert main(["train", "--model", "lite_cnn", "--dataset", "imagefolder", "--data", str(data), "--folds", "3",
                 "--epochs", "1", "--warmup", "0", "--batch-size", "8", "--threads", "2", "--no-progress",
                 "--out", str(tmp_path / "r")]) == 0
    assert "folds are of single images, NOT subject-independent" in capsys.readouterr().out
    assert json.loads((tmp_path / "r" / "model.json").read_text())["dataset"]["subject_independent"] is False


def test_a_resume_names_the_dataset_options_it_ignores():
    """Resuming with --clean-from added said only 'ignoring differing: dataset_options' (the option that
    changes the training images, unnamed); each is named by its flag, with both values."""
    from ferkit.engine.train import TrainConfig, differences

    given = TrainConfig(model="lite_cnn", dataset="fer2013", data="d", dataset_options={"clean_from": "../ferplus"})
    saved = TrainConfig(model="lite_cnn", dataset="fer2013", data="d", dataset_options={})
    assert differences({"dataset_options"}, given, saved) == "--clean-from ('../ferplus'; the run's: None)"
    assert differences({"dataset_options", "lr"}, dataclasses.replace(given, lr=0.5), saved).endswith(
        "lr (0.5; the run's: 0.002)")
