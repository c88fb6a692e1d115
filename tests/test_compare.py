"""ferkit compare: two evaluations' predictions compared image by image (paired bootstrap, McNemar)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from conftest import make_fer2013

from ferkit.cli import main
from ferkit.engine.compare import compare, mcnemar_exact, paired_bootstrap
from ferkit.errors import FerkitError


def write(path, rows, classes=("a", "b")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "label", "predicted", "correct", *classes])
        for src, label, pred in rows:
            w.writerow([src, label, pred, int(label == pred), *([0.5] * len(classes))])
    return path


def test_mcnemar_and_the_bootstrap_by_hand():
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024) == mcnemar_exact(10, 0)
    # 2 of 12 discordant pairs one way: 2 * P(X <= 2), X ~ Binomial(12, 1/2)
    assert mcnemar_exact(2, 10) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    same = np.array([1, 0, 1, 1, 0])
    assert paired_bootstrap(same, same) == (0.0, 0.0)
    lo, hi = paired_bootstrap(np.zeros(200, int), np.r_[np.ones(100, int), np.zeros(100, int)], resamples=2000)
    assert lo < 0.5 < hi and 0.4 < lo and hi < 0.6  # around the difference, 0.5


def test_compare_counts_the_images_each_gets_right(tmp_path):
    rows_a = [(f"x{i}.png", "a", "a" if i < 60 else "b") for i in range(100)]  # 60 right
    rows_b = [(f"x{i}.png", "a", "a" if 10 <= i < 80 else "b") for i in range(100)] + [("extra.png", "a", "a")]
    r = compare(write(tmp_path / "a.csv", rows_a), write(tmp_path / "b.csv", rows_b), resamples=1000)
    assert r["n"] == 100 and r["only_in_a"] == 0 and r["only_in_b"] == 1
    assert (r["accuracy_a"], r["accuracy_b"]) == (0.6, 0.7) and r["difference"] == pytest.approx(0.1)
    assert (r["a_right_b_wrong"], r["a_wrong_b_right"]) == (10, 20)  # x0-9; x60-79
    assert r["mcnemar_p"] == pytest.approx(2 * sum(math.comb(30, k) for k in range(11)) / 2 ** 30)
    assert r["ci95"][0] < 0.1 < r["ci95"][1] and r["agree_on_label"] == 70
    # what it refuses, in words
    write(tmp_path / "other.csv", [(f"x{i}.png", "b", "b") for i in range(3)])
    with pytest.raises(FerkitError, match="3 image\\(s\\) have other labels in the two files, e.g. 'x0.png'"):
        compare(tmp_path / "a.csv", tmp_path / "other.csv")
    write(tmp_path / "none.csv", [("y.png", "a", "a")])
    with pytest.raises(FerkitError, match="hold no image in common"):
        compare(tmp_path / "a.csv", tmp_path / "none.csv")
    (tmp_path / "bad.csv").write_text("path,label\nx0.png,a\n")
    with pytest.raises(FerkitError, match="not a predictions file .*no source, predicted, correct columns"):
        compare(tmp_path / "bad.csv", tmp_path / "a.csv")
    with pytest.raises(FerkitError, match="no such file .*--predictions nothing.csv"):
        compare(tmp_path / "nothing.csv", tmp_path / "a.csv")


def test_evaluate_predictions_then_compare_on_the_command_line(tmp_path, capsys):
    folders, _, _ = make_fer2013(tmp_path, {"Training": 1, "PublicTest": 1, "PrivateTest": 6})
    ev = ["evaluate", "--dataset", "fer2013", "--data", str(folders), "--no-progress"]
    assert main([*ev, "--model", "lite_cnn-fer2013", "--predictions", str(tmp_path / "a.csv")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'a.csv'} (42 images)" in out
    acc = float(next(ln.split()[1] for ln in out.splitlines() if ln.startswith("accuracy")))
    with open(tmp_path / "a.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 42 and sum(int(r["correct"]) for r in rows) / 42 == pytest.approx(acc, abs=1e-4)
    assert rows[0]["source"].startswith("test/")  # named from the dataset's folder
    assert all(r["predicted"] == max(("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
                                     key=lambda c: float(r[c])) for r in rows)
    assert main([*ev, "--model", "mini_xception-fer2013", "--predictions", str(tmp_path / "b.csv")]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--json", str(tmp_path / "c.json")]) == 0
    said = capsys.readouterr().out
    assert "on the 42 images both hold" in said and "McNemar's exact test: p = " in said
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["n"] == 42 and saved["accuracy_a"] == pytest.approx(acc, abs=1e-4)
    assert saved["command"].startswith("ferkit compare ")
    # the output must not overwrite what it compares
    assert main(["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--json", str(tmp_path / "a.csv")]) == 1
    assert "one of the files compared" in capsys.readouterr().err
