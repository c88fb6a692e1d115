"""The command line as a user meets it: help, listings, clear errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLE, make_fer2013

from ferkit.cli import build_parser, main

VERBS = ["models", "cache", "data", "train", "evaluate", "predict", "export", "serve", "explain", "au-analysis", "crossval",
         "crossval-eval", "probe", "average", "recalibrate", "compare"]


def test_every_registered_verb_is_tested():
    """A new verb must join VERBS (and so get its --help checked)."""
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    assert set(sub.choices) == set(VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_help_for_every_verb(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: ferkit {verb}" in out and len(out) > 300


def test_crossval_help_shows_only_what_crossval_takes(capsys):
    def help_of(verb):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        return capsys.readouterr().out

    cv, train = help_of("crossval"), help_of("train")
    for opt in ("--fold ", "--train-split", "--val-split", "--test-split", "--val-fraction", "--vote", "--clean-from"):
        assert opt not in cv and opt in train, opt
    assert "ckplus | jaffe | kdef | imagefolder (" in cv and "fer2013 | ferplus | ckplus" in train
    assert "--fold-seed" in cv and "--folds K" in cv and "--only" in cv and "--epochs" in cv


def test_top_level_help_lists_verbs(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(v in out for v in VERBS) and "examples:" in out


def test_models_lists_architectures(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "mini_xception" in out and "56,951 params" in out
    # a shipped file's options as command-line words, not a Python dict
    assert "mini_xception width=2 " in out and "lite_plain head=flat widths=16,24,64,192 " in out and "{'" not in out
    # a CK+ network's classes are not the usual seven (contempt for neutral), and each file's size is given
    line = next(x for x in out.splitlines() if x.strip().startswith("mini_xception-ckplus "))
    assert "7 classes (with contempt, no neutral)" in line and " 0.8 MB " in line
    assert "8 classes (with contempt)" in next(x for x in out.splitlines() if x.strip().startswith("vgg_fer-ferplus "))
    assert "-s1: a second run with another seed" in out  # what the names' endings mean
    # a file of differences (-bn) is counted with its base: what loading it reads
    assert " 9.5 MB " in next(x for x in out.splitlines() if x.strip().startswith("vgg_fer-fer2013-bn "))


def test_data_prints_counts(tmp_path, capsys):
    folders, _, _ = make_fer2013(tmp_path)
    assert main(["data", "--dataset", "fer2013", "--data", str(folders), "--check"]) == 0
    out = capsys.readouterr().out
    assert "Training" in out and "PrivateTest" in out and "sharpness" in out
    assert "no train/test shift" in out


def test_data_split_all_counts_a_folder_too_small_for_folds(tmp_path, capsys):
    # 8 images, each its own subject: too few for 10 folds, which the error says; --split all, its
    # advice, counts them (it failed the same way)
    from PIL import Image

    for c in ("happy", "sad"):
        (tmp_path / c).mkdir()
        for i in range(4):
            Image.new("L", (48, 48), 40 * i).save(tmp_path / c / f"{i}.png")
    assert main(["data", "--dataset", "imagefolder", "--data", str(tmp_path)]) == 1
    assert "or --split all to read every image without folds" in capsys.readouterr().err
    assert main(["data", "--dataset", "imagefolder", "--data", str(tmp_path), "--split", "all", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["splits"]["all"]["n"] == 8 and "folds" not in got
    # a file left out of the listing (notes.txt) is in no fold: counted in 'all' only, not in each split
    (tmp_path / "happy" / "notes.txt").write_text("x")
    for check in ([], ["--check"]):
        assert main(["data", "--dataset", "imagefolder", "--data", str(tmp_path), "--skip-bad", "--folds", "3",
                     "--json", *check]) == 0
        got = json.loads(capsys.readouterr().out)
        assert {k: r["skipped"] for k, r in got["splits"].items()} == {
            "all": 1, "train": 0, "val": 0, "test": 0, "trainval": 0}, check
        assert got["skipped_listing"] == 1 and [x["source"] for x in got["left_out"]] == [
            str(tmp_path / "happy" / "notes.txt")]


@pytest.mark.parametrize("argv,msg", [
    (["data", "--dataset", "fer2013", "--data", "/nonexistent/fer"], "does not exist"),
    (["data", "--dataset", "affectnet", "--data", "."], "unknown dataset 'affectnet'"),
    (["evaluate", "--model", "no_such_model", "--dataset", "fer2013", "--data", "."], "no model 'no_such_model'"),
    (["evaluate", "--model", "/nonexistent/m.safetensors", "--dataset", "fer2013", "--data", "."],
     "/nonexistent/m.safetensors: no such file (its folder /nonexistent does not exist either)"),
    (["evaluate", "--model", "vgg_fer", "--dataset", "fer2013", "--data", "."],
     "vgg_fer is an architecture: its shipped weights are vgg_fer-ckplus, vgg_fer-fer2013, vgg_fer-fer2013-bn, vgg_fer-ferplus"),
    (["predict", str(EXAMPLE), "--model", str(EXAMPLE)], "an image or video, not a model"),
    (["train", "--model", "vgg99", "--dataset", "fer2013", "--data", "/nonexistent", "--out", "/tmp/x"],
     "unknown architecture 'vgg99'"),
    (["train", "--dataset", "fer2013", "--data", "/nonexistent", "--out", "/tmp/x"], "does not exist"),
    (["predict", "--webcam", "-1", "--headless"], "camera index"),  # OpenCV segfaults on -1: refused first
    (["predict", str(EXAMPLE), "--max-frames", "0"], "--max-frames must be at least 1"),
    (["predict", str(EXAMPLE), "--device", "banana"], "unknown device 'banana'"),
    (["evaluate", "--model", "default", "--device", "cuda:3", "--dataset", "fer2013", "--data", "."], "CUDA"),
    (["evaluate", "--dataset", "ckplus", "--data", str(EXAMPLE)], "is a file, not the dataset's folder"),
    (["serve", "--max-upload-mb", "inf"], "--max-upload-mb must be a finite number of megabytes above 0, got inf"),
    (["predict", str(EXAMPLE), "--min-face", "0"], "--min-face must be 12 pixels or more with MTCNN"),
    (["predict", str(EXAMPLE), "--detector", "haar", "--min-face", "0"], "--min-face must be 1 pixel or more"),
    (["predict", str(EXAMPLE), "--max-faces", "-1"], "--max-faces must be 1 or more, got -1"),
    # evaluate says it as predict does, for every value MTCNN refuses (it said "at least 1 pixel" for -2, then 12 for 5)
    (["evaluate", "--dataset", "fer2013", "--data", ".", "--detect", "mtcnn", "--min-face", "-2"],
     "--min-face must be 12 pixels or more with MTCNN (its smallest window), got -2"),
    (["evaluate", "--dataset", "fer2013", "--data", ".", "--detect", "haar", "--min-face", "0"],
     "--min-face must be at least 1 pixel, got 0"),
    (["train", "--dataset", "imagefolder", "--data", str(EXAMPLE.parent), "--out", str(EXAMPLE.parent / "run")],
     "inside the --data folder"),
    (["crossval", "--dataset", "imagefolder", "--data", str(EXAMPLE.parent), "--out", str(EXAMPLE.parent / "cv")],
     "inside the --data folder"),
    (["evaluate", "--dataset", "fer2013", "--data", ".", "--json", ""], "--json: an empty path; name a file"),
    (["train", "--dataset", "imagefolder", "--data", "/nonexistent", "--out", "/tmp/x", "--name", "../a"],
     "--name '../a': a model's name names files"),
    # an empty --data or --out (a script's unset variable) would be the current folder: refused
    (["train", "--dataset", "imagefolder", "--data", "", "--out", "/tmp/x"], "--data is empty"),
    (["crossval", "--dataset", "jaffe", "--data", ".", "--out", " "], "--out is empty"),
    (["predict", str(EXAMPLE), "--model", ""], "--model is empty (an unset variable in a script?): give it a value "
                                               "(or leave the option out)"),
    (["evaluate", "--dataset", "fer2013", "--data", ".", "--plot", " "], "--plot: an empty path; name a file"),
    (["evaluate", "--dataset", "fer2013", "--data", ".", "--plot", "newplot/"],
     "--plot newplot/: is a folder; name a file (e.g. newplot/confusion.png)"),
    (["evaluate", "--dataset", "fer2013", "--data", ".", "--json", "/tmp"], "--json /tmp: is a folder; name a file"),
    (["evaluate", "--dataset", "fer2013", "--data", ".", "--plot", "/tmp/confusion.txt"],
     "--plot /tmp/confusion.txt: name an image file"),
    (["explain", str(EXAMPLE), "--out", str(EXAMPLE)], f"--out {EXAMPLE}: is a file; name a folder"),
    (["probe", "--models", "default", "--dataset", "ckplus", "--data", ".", "--out", str(EXAMPLE / "x")],
     f"--out {EXAMPLE / 'x'}: {EXAMPLE} is a file, not a folder"),
])
def test_errors_are_one_clear_line(argv, msg, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("ferkit: error: ") and msg in err and "Traceback" not in err


def test_bad_option_value_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--tta", "sideways", "--dataset", "x", "--data", "y"])
    assert e.value.code == 2
    capsys.readouterr()
    # in one line (not the verb's whole usage above it), naming the option
    for argv in (["train", "--batch-size", "0"], ["train", "--threads", "0"], ["evaluate", "--bogus"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and "usage:" not in err, err
        assert err.startswith(f"ferkit {argv[0]}: error: ") and "--help` lists the options" in err
    # an option the verb does not take, its other arguments all there: named by the verb, whose help
    # lists its options (not `ferkit --help`'s verbs)
    for argv in (["models", "--bar"], ["predict", "x.jpg", "--foo", "--quiet"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        bad = [x for x in argv if x in ("--bar", "--foo")][0]
        assert e.value.code == 2 and err == (f"ferkit {argv[0]}: error: unrecognized arguments: {bad} "
                                             f"(`ferkit {argv[0]} --help` lists the options)\n")
    # one given before the verb is ferkit's to name
    with pytest.raises(SystemExit) as e:
        main(["--foo", "models"])
    assert capsys.readouterr().err == ("ferkit: error: unrecognized arguments: --foo "
                                       "(`ferkit --help` lists the options)\n")
    # `ferkit` alone: its usage and verbs, exit 2
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ferkit") and "predict" in err and "serve" in err


def test_console_script_runs_without_traceback(tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    r = subprocess.run([sys.executable, "-m", "ferkit.cli", "predict", str(junk), "--model", "no_such"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "no model 'no_such'" in r.stderr


@pytest.mark.parametrize("text", ["not a video", "hello"])  # "hello": OpenCV warned "can't be used to capture"
def test_broken_video_is_one_line_without_ffmpeg_noise(tmp_path, text):
    fake = tmp_path / "clip.mp4"
    fake.write_text(text)
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    r = subprocess.run([sys.executable, "-m", "ferkit.cli", "predict", str(fake)], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    # FFmpeg's own error, said in ferkit's line (an MP4 without its index: a cut recording is the usual cause)
    assert r.stderr == (f"ferkit: error: {fake}: not a video OpenCV can open (corrupt, or an unsupported format; "
                        f"FFmpeg: 'moov atom not found', no MP4 index in it: not an MP4, or a recording cut off "
                        f"before it was finished (the index is written last))\n")


def test_parser_builds():
    assert build_parser().prog == "ferkit"
    assert EXAMPLE.exists()


def test_unwritable_outputs_and_broken_summaries_are_clear_errors(tmp_path, capsys):
    assert main(["predict", str(EXAMPLE), "--json", str(tmp_path)]) == 1  # a folder where a file goes
    err = capsys.readouterr().err
    assert err.startswith("ferkit: error: --json") and "is a folder" in err and "Traceback" not in err
    assert main(["predict", str(EXAMPLE), "--out", str(EXAMPLE)]) == 1  # a file where a folder goes
    assert "name a folder" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", "fer2013", "--data", ".", "--json", str(tmp_path)]) == 1  # before any work
    assert "is a folder" in capsys.readouterr().err
    if Path("/proc/self").is_dir():  # a folder no one (root included) can create files in: found before any work
        assert main(["evaluate", "--dataset", "fer2013", "--data", ".", "--json", "/proc/ferkit.json"]) == 1
        assert "--json /proc/ferkit.json: not writable" in capsys.readouterr().err
    (tmp_path / "f").write_text("a file")  # the safety net for the rest (OSError -> one line): explain's --out
    assert main(["explain", str(EXAMPLE), "--out", str(tmp_path / "f" / "sub")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ferkit: error:") and "Traceback" not in err
    for text in ("garbage", "{}"):
        (tmp_path / "crossval.json").write_text(text)
        assert main(["crossval-eval", str(tmp_path)]) == 1
        assert "is not a ferkit crossval summary" in capsys.readouterr().err
    # a summary whose round folders are gone; an --out that is a file: before any work
    summary = {"folds": 2, "folds_done": [0, 1], "config": {}}
    (tmp_path / "crossval.json").write_text(json.dumps(summary))
    assert main(["crossval-eval", str(tmp_path), "--out", str(EXAMPLE)]) == 1
    assert f"--out {EXAMPLE}: is a file; name a folder" in capsys.readouterr().err
    # a label file that is not text
    (tmp_path / "fer2013.csv").write_bytes(bytes(range(128, 256)) * 4)
    assert main(["data", "--dataset", "fer2013", "--data", str(tmp_path / "fer2013.csv")]) == 1
    err = capsys.readouterr().err
    assert "a label file of this fer2013 copy is not text" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["train", "--model", "lite_cnn", "--dataset", "fer2013", "--data", "."],
                                  ["crossval", "--model", "lite_cnn", "--dataset", "ckplus", "--data", "."],
                                  ["au-analysis", "--dataset", "ckplus", "--data", "."],
                                  ["probe", "--models", "default", "--dataset", "ckplus", "--data", "."],
                                  ["crossval-eval", "."]])
def test_every_out_folder_is_checked_before_any_work(argv, tmp_path, capsys):
    assert main([*argv, "--out", str(EXAMPLE)]) == 1  # a file where the folder goes
    assert f"--out {EXAMPLE}: is a file; name a folder" in capsys.readouterr().err
    if Path("/proc/self").is_dir():  # a folder no one (root included) can make
        assert main([*argv, "--out", "/proc/ferkit-run"]) == 1
        err = capsys.readouterr().err
        assert "--out /proc/ferkit-run: cannot write in /proc" in err and "Traceback" not in err
        assert main([*argv, "--out", "/proc/self"]) == 1  # a folder that exists and takes no files
        assert "cannot write in /proc/self" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "new" / "run")]) == 1  # fails on its data, not on --out ...
    assert "--out" not in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # ... and the check leaves nothing behind


@pytest.mark.parametrize("argv", [["crossval-eval", ".", "--threads", "-1"], ["crossval-eval", ".", "--batch-size", "0"],
                                  ["evaluate", "--dataset", "x", "--data", "y", "--batch-size", "-1"]])
def test_counts_below_one_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "must be 1 or more" in capsys.readouterr().err


def test_data_and_probe_on_an_image_folder_with_split_folders(tmp_path, capsys):
    from conftest import make_imagefolder

    root = make_imagefolder(tmp_path, with_splits=True)
    assert main(["data", "--dataset", "imagefolder", "--data", str(root)]) == 0  # its splits, no folds
    out = capsys.readouterr().out
    assert "train" in out and "unknown class folder" not in out
    assert "subjects" not in out  # none are known (each image was counted as one)
    flat = make_imagefolder(tmp_path / "flat", with_splits=False)
    assert main(["data", "--dataset", "imagefolder", "--data", str(flat), "--folds", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["folds"]) == 3
    assert main(["data", "--dataset", "imagefolder", "--data", str(flat), "--folds", "3"]) == 0
    assert "NOT subject-independent" in capsys.readouterr().out  # no subjects known: each image is one
    # --check: a file that does not decode leaves the table and its fold alike
    (flat / "happy" / "0.png").write_bytes(b"not a png")
    assert main(["data", "--dataset", "imagefolder", "--data", str(flat), "--folds", "3", "--check", "--skip-bad",
                 "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert sum(f["n"] for f in rep["folds"]) == rep["splits"]["all"]["n"] == 7 * 8 - 1
    assert main(["probe", "--models", "default", "--dataset", "imagefolder", "--data", str(root)]) == 1
    assert "official splits" in capsys.readouterr().err
    assert main(["data", "--dataset", "ckplus", "--data", str(flat), "--folds", "0"]) == 1
    assert "--folds must be at least 3 (a test, a selection and a training fold)" in capsys.readouterr().err
    assert main(["data", "--dataset", "ckplus", "--data", str(flat), "--folds", "2"]) == 1  # no training fold left
    assert "--folds must be at least 3" in capsys.readouterr().err


def test_full_photo_datasets_without_detect_get_a_warning(tmp_path, capsys):
    # JAFFE and KDEF are whole head-and-shoulders frames: read without --detect, the number means little
    (tmp_path / "jaffe").mkdir()
    for argv in (["evaluate", "--model", "fast"], ["train", "--out", str(tmp_path / "r")]):
        assert main([*argv, "--dataset", "jaffe", "--data", str(tmp_path / "jaffe")]) == 1  # empty: no images
        err = capsys.readouterr().err
        assert "warning: jaffe holds full photos" in err and "--detect mtcnn" in err
    assert main(["evaluate", "--model", "fast", "--dataset", "jaffe", "--data", str(tmp_path), "--detect", "mtcnn"]) == 1
    assert "full photos" not in capsys.readouterr().err
    assert main(["evaluate", "--model", "fast", "--dataset", "ckplus", "--data", str(tmp_path)]) == 1
    assert "full photos" not in capsys.readouterr().err


def test_warnings_reach_the_user_once_each_but_resource_warnings_do_not(monkeypatch, recwarn):
    import warnings

    from ferkit import cli

    def noisy(a):
        for _ in range(2):
            warnings.warn("a thing the user should know", UserWarning)
            # what Starlette's form parser leaves behind when an upload is cut short
            warnings.warn("Unclosed file <tempfile.SpooledTemporaryFile>", ResourceWarning)
        return 0

    monkeypatch.setattr(cli, "cmd_models", noisy)
    assert cli.main(["models"]) == 0
    assert [(w.category, str(w.message)) for w in recwarn] == [(UserWarning, "a thing the user should know")]


def test_python_m_ferkit_is_the_ferkit_command():
    from ferkit import __version__

    r = subprocess.run([sys.executable, "-m", "ferkit", "--version"], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout.strip()) == (0, f"ferkit {__version__}")
    r = subprocess.run([sys.executable, "-m", "ferkit", "predict", "no-such.jpg"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "no-such.jpg" in r.stderr and "Traceback" not in r.stderr


def test_every_train_option_reaches_its_training_setting(capsys):
    # each option of `ferkit train` set to a value other than its default: a swapped or dropped
    # field in the command line -> TrainConfig mapping fails here
    from ferkit.cli import _train_config

    argv = ["train", "--model", "pcnn", "--model-arg", "width=3", "--dataset", "kdef", "--data", "D", "--out", "O",
            "--name", "N", "--skip-bad", "--vote", "strict", "--folds", "5", "--fold", "2", "--fold-seed", "7",
            "--angles", "S,HL", "--train-split", "tr", "--val-split", "va", "--test-split", "te",
            "--val-fraction", "0.2", "--epochs", "9", "--batch-size", "33", "--optimizer", "sgd", "--lr", "0.03",
            "--weight-decay", "0.004", "--momentum", "0.8", "--schedule", "plateau", "--warmup", "1.5",
            "--label-smoothing", "0.05", "--class-weights", "balanced", "--soft-targets", "--early-stop", "4",
            "--nondeterministic", "--time-budget", "120", "--select", "accuracy-loss", "--init", "default",
            "--aux-weight", "0.3", "--aux-epochs", "2", "--teacher", "fast", "--kd-weight", "0.7",
            "--kd-temperature", "3", "--teacher-tta", "tencrop", "--aug", "none", "--flip", "0.25", "--shift", "0.05",
            "--rotate", "7", "--scale", "0.1", "--brightness", "0.2", "--contrast", "0.15", "--erase", "0.4",
            "--detect", "haar", "--min-face", "30", "--seed", "11", "--device", "cpu", "--no-amp", "--threads", "1",
            "--limit", "50"]
    a = build_parser().parse_args(argv)
    a.argv = argv
    c = _train_config(a)
    assert (c.model, c.model_kwargs, c.dataset, c.data, c.out, c.name) == ("pcnn", {"width": 3}, "kdef", "D", "O", "N")
    assert c.dataset_options == {"skip_bad": True, "vote": "strict", "folds": 5, "fold": 2, "fold_seed": 7,
                                 "angles": ("S", "HL")}
    assert (c.train_split, c.val_split, c.test_split, c.val_fraction) == ("tr", "va", "te", 0.2)
    assert (c.epochs, c.batch_size, c.optimizer, c.lr, c.weight_decay, c.momentum) == (9, 33, "sgd", 0.03, 0.004, 0.8)
    assert (c.schedule, c.warmup_epochs, c.label_smoothing, c.class_weights, c.soft_targets) == (
        "plateau", 1.5, 0.05, "balanced", True)
    assert (c.early_stop, c.deterministic, c.time_budget, c.select, c.init) == (4, False, 120.0, "accuracy-loss",
                                                                                "default")
    assert (c.aux_weight, c.aux_epochs, c.teacher, c.kd_weight, c.kd_temperature, c.teacher_tta) == (
        0.3, 2, "fast", 0.7, 3.0, "tencrop")
    assert c.augment == {"flip": 0.25, "shift": 0.05, "rotate": 7.0, "scale": 0.1, "brightness": 0.2,
                         "contrast": 0.15, "erase": 0.4}
    assert (c.detect, c.min_face, c.seed, c.device, c.amp, c.threads, c.limit) == ("haar", 30, 11, "cpu", False, 1, 50)
    assert c.command == "ferkit " + " ".join(argv)
    # --aug none alone: every augmentation off
    b = build_parser().parse_args(["train", "--dataset", "fer2013", "--data", "D", "--out", "O", "--aug", "none"])
    b.argv = []
    assert set(_train_config(b).augment.values()) == {0.0}


def test_predict_help_names_the_image_extensions_folders_are_searched_for(capsys):
    from ferkit.io import IMAGE_EXTENSIONS

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert " ".join(sorted(IMAGE_EXTENSIONS, key=lambda e: ".jpg .jpeg .png .bmp .tif .tiff .webp .gif .pgm .ppm"
                                                     .split().index(e))) in text
    assert "subfolders" in text and "130" in text


def test_help_gives_the_default_of_every_option(capsys):
    """argparse prints nothing after an option without help text, not even its default: those get
    their default, which decides how long a run takes (--epochs, --batch-size)."""
    import re

    for verb, want in (("crossval", {"--epochs": "100", "--batch-size": "128", "--seed": "0"}),
                       ("train", {"--epochs": "100", "--optimizer": "adamw"}),
                       ("evaluate", {"--batch-size": "256"})):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for flag, default in want.items():
            assert re.search(rf"{flag} [A-Z_{{}},a-z]+ default: {default}\b", text), (verb, flag)


def test_a_flat_folder_says_its_test_split_is_one_fold_and_how_to_read_all(tmp_path, capsys):
    import shutil

    for c in ("happy", "sad"):
        (tmp_path / "flat" / c).mkdir(parents=True)
        for i in range(3):
            shutil.copy(EXAMPLE, tmp_path / "flat" / c / f"{i}.jpg")
    base = ["evaluate", "--model", "fast", "--dataset", "imagefolder", "--data", str(tmp_path / "flat")]
    assert main(base + ["--folds", "3"]) == 0
    assert "note: imagefolder's test split is fold 0 of 3 (2 images): --split all evaluates every image" in \
        capsys.readouterr().out
    assert main(base + ["--split", "all"]) == 0
    out = capsys.readouterr().out
    assert "note:" not in out and "(n=6," in out
    # a layout with split folders has its own test split: no note
    for sp in ("train", "test"):
        (tmp_path / "split" / sp / "happy").mkdir(parents=True)
        shutil.copy(EXAMPLE, tmp_path / "split" / sp / "happy" / "a.jpg")
    assert main(base[:-1] + [str(tmp_path / "split")]) == 0
    assert "note:" not in capsys.readouterr().out
    assert main(base) == 1  # 6 photos, one subject each: not 10 folds; the message says what to do
    assert ("cannot make 10 subject-independent folds from 6 subjects: pass --folds 6 or fewer (3 at least), or "
            "--split all") in capsys.readouterr().err


def test_data_on_a_folder_of_another_dataset_says_it_is_not_one(tmp_path, capsys):
    from PIL import Image

    d = tmp_path / "notck"
    d.mkdir()
    for i in range(3):
        Image.new("L", (48, 48), 100).save(d / f"KA.AN{i}.tiff")
    # no class folder at all: said at once, with or without --skip-bad (it first said "pass --skip-bad", which
    # then found no image)
    for extra in ([], ["--skip-bad"]):
        assert main(["data", "--dataset", "ckplus", "--data", str(d), *extra]) == 1
        err = capsys.readouterr().err
        assert (f"{d}: no ckplus class folder in it (it holds KA.AN0.tiff, KA.AN1.tiff, KA.AN2.tiff; expected anger, "
                f"contempt, ") in err
        assert "is --data the ckplus folder? (ckplus's layout: <class>/S<subject>_" in err and "--skip-bad" not in err
    (d / "train").mkdir()  # (FER2013's layout)
    assert main(["data", "--dataset", "ckplus", "--data", str(d)]) == 1
    assert "it holds train/, KA.AN0.tiff, KA.AN1.tiff, KA.AN2.tiff;" in capsys.readouterr().err
    # one class folder among them: the rest are what --skip-bad is for
    (d / "happy").mkdir()
    Image.new("L", (48, 48), 100).save(d / "happy" / "S005_001_00000011.png")
    assert main(["data", "--dataset", "ckplus", "--data", str(d)]) == 1
    assert "an image beside the class folders" in capsys.readouterr().err


def test_help_and_usage_errors_start_without_torch():
    """`ferkit --help`, a verb's --help and a usage error answer without loading torch, OpenCV,
    matplotlib (about 2 s) or numpy (0.1 s); the package's names load them when first used."""
    code = ("import sys, contextlib, io\n"
            "from ferkit.cli import main\n"
            "for argv in (['--help'], ['predict', '--help'], ['explain', '--help'], ['train', '--help'],\n"
            "             ['predict', 'x.jpg', '--foo'], ['cache']):\n"
            "    if argv == ['cache']:\n"
            "        helped = 'numpy' in sys.modules  # (help and usage errors: not even numpy)\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "        try:\n"
            "            main(argv)\n"
            "        except SystemExit:\n"
            "            pass\n"
            "heavy = sorted(m for m in ('torch', 'cv2', 'matplotlib', 'onnxruntime') if m in sys.modules)\n"
            "heavy += ['numpy'] * helped\n"
            "import ferkit, ferkit.explain\n"
            "assert ferkit.weights.ALIASES['default'] and 'torch' not in sys.modules  # (a submodule by attribute)\n"
            "assert ferkit.explain.deconv.__name__ == 'ferkit.explain.deconv'\n"
            "assert not hasattr(ferkit, 'nope') and not hasattr(ferkit, 'data.cache') and not hasattr(ferkit, 'py.typed')\n"
            "names = ferkit.Recognizer.__name__, ferkit.load_model.__name__, ferkit.explain.gradcam.__name__\n"
            "print(heavy, names, 'torch' in sys.modules, sorted(set(ferkit.__all__) - set(dir(ferkit))))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[] ('Recognizer', 'load_model', 'gradcam') True []"


def test_detect_and_detector_name_the_same_option_in_every_verb():
    from ferkit.cli import build_parser

    p = build_parser()
    for verb, dest, extra in (("predict", "detector", ["x.jpg"]), ("explain", "detector", ["x.jpg"]),
                              ("serve", "detector", []), ("evaluate", "detect", ["--dataset", "jaffe", "--data", "d"]),
                              ("train", "detect", ["--dataset", "jaffe", "--data", "d", "--out", "o"])):
        for flag in ("--detect", "--detector"):
            assert getattr(p.parse_args([verb, *extra, flag, "haar"]), dest) == "haar", (verb, flag)
    assert p.parse_args(["predict", "x.jpg", "--detect-every", "3"]).detect_every == 3  # (not taken for --detect)
    # an abbreviation of the one option with two spellings is not ambiguous (but is beside --detect-every)
    assert p.parse_args(["serve", "--det", "haar"]).detector == "haar"
    assert p.parse_args(["evaluate", "--dataset", "jaffe", "--data", "d", "--det", "haar"]).detect == "haar"
    with pytest.raises(SystemExit):
        p.parse_args(["predict", "x.jpg", "--det", "haar"])


def test_cache_lists_and_clears_only_its_own_files(tmp_path, monkeypatch, capsys):
    root = tmp_path / "c"
    (root / "datasets").mkdir(parents=True)
    (root / "onnx").mkdir()
    (root / "datasets" / "k1.safetensors").write_bytes(b"x" * 3000)
    (root / "datasets" / "k1.json").write_bytes(b"{}")
    (root / "onnx" / "m.onnx").write_bytes(b"y" * 500)
    (root / "notes.txt").write_text("the user's, beside ferkit's folders")  # $FERKIT_CACHE may be a shared folder
    (root / "datasets" / "sub").mkdir()  # not ferkit's: left alone
    (root / "datasets" / "link").symlink_to(root / "notes.txt")
    monkeypatch.setenv("FERKIT_CACHE", str(root))
    assert main(["cache", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    parts = {p["name"]: (p["files"], p["bytes"]) for p in d["parts"]}
    assert d["cache"] == str(root) and parts == {"datasets": (2, 3002), "onnx": (1, 500), "matches": (0, 0)}
    assert d["bytes"] == 3502 and d["cleared"] is False
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ferkit's cache: {root}") and "  total          3 files       0.0 MB" in out
    assert main(["cache", "--clear"]) == 0
    assert "removed 3 file(s), 0.0 MB" in capsys.readouterr().out
    assert sorted(p.name for p in (root / "datasets").iterdir()) == ["link", "sub"]
    assert not any((root / "onnx").iterdir()) and (root / "notes.txt").exists()
    assert main(["cache", "--json"]) == 0 and json.loads(capsys.readouterr().out)["bytes"] == 0


def test_model_args_read_lists_as_ferkit_models_shows_them():
    # `ferkit models` shows lite_plain's widths=16,24,64,192: that spelling reads as the list
    from ferkit.cli import _kv

    assert _kv(["widths=16,24,64,192", "head=flat", "w=[1, 2]", "lr=.5", "a=1,b"]) == {
        "widths": [16, 24, 64, 192], "head": "flat", "w": [1, 2], "lr": 0.5, "a": "1,b"}


def test_int8_help_gives_the_current_defaults_accuracy_change(capsys):
    """--backend's help states what static int8 costs *the default*, read from its card and its shipped
    ranges' report: a number written into the help went stale when the default changed (0.14 points
    was the previous default's)."""
    from ferkit import weights

    name = weights.ALIASES["default"]
    card = json.loads((weights.SHIPPED_DIR / f"{name}.json").read_text())
    q = json.loads((weights.INT8_DIR / f"{name}.json").read_text())["int8_metrics"]["splits"]["PrivateTest"]
    want = f"{100 * (card['metrics']['PrivateTest']['accuracy'] - q['accuracy']):.2f} points less accurate"
    for verb in ("predict", "export"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert want in out and "0.14 points" not in out, verb
    assert want == "0.06 points less accurate"  # vgg_fer-fer2013-bn: 71.16% -> 71.11% (README)


def test_help_paragraphs_are_wrapped_to_the_terminal(monkeypatch, capsys):
    """`ferkit predict --help` and `ferkit serve --help` began with one line of 600+ characters; the
    examples' indented lines keep their layout."""
    monkeypatch.setenv("COLUMNS", "100")
    for verb in ("predict", "serve", "train", "explain"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        text = capsys.readouterr().out
        long = [ln for ln in text.splitlines() if len(ln) > 100 and not ln.startswith(" ")]
        assert not long, (verb, long[:1])
        assert "examples:" in text
