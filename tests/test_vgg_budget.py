"""vgg_fer, `train --time-budget` / `--nondeterministic`, and the GPU-session helpers in tools/gpu/."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import make_imagefolder

from ferkit import labels as L
from ferkit.cli import _train_config, build_parser, main
from ferkit.engine.train import TrainConfig, fit_time_budget, init_from
from ferkit.models import count_params, create, get_spec

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str):
    """tools/gpu/<name>.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"ferkit_tools_gpu_{name}", ROOT / "tools" / "gpu" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------------------
# vgg_fer
# ---------------------------------------------------------------------------------------


def test_vgg_fer_default_size_shapes_and_registry():
    m = create("vgg_fer", num_classes=7).eval()
    assert count_params(m) == 4_718_407
    assert m.ferkit_arch == "vgg_fer" and m.ferkit_kwargs.get("width", 64) == 64
    assert get_spec("vgg_fer").input_size == (1, 48, 48)
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert m(x).shape == (2, 7)
        assert m.features(x).shape == (2, 8 * 64, 3, 3)


@pytest.mark.parametrize("width,classes", [(4, 7), (8, 8)])
def test_vgg_fer_width_features_and_other_input_sizes(width, classes):
    torch.manual_seed(0)
    m = create("vgg_fer", num_classes=classes, width=width).eval()
    assert m.ferkit_kwargs["width"] == width
    assert count_params(m) < count_params(create("vgg_fer", num_classes=classes, width=2 * width))
    with torch.no_grad():
        x = torch.randn(3, 1, 48, 48)
        assert m(x).shape == (3, classes)
        assert m.features(x).shape == (3, 8 * width, 3, 3)
        # another input size: the 4x4 map (64 -> 32 -> 16 -> 8 -> 4) is pooled to the head's 3x3 grid
        y = torch.randn(2, 1, 64, 64)
        assert m.features(y).shape == (2, 8 * width, 4, 4)
        out = m(y)
        assert out.shape == (2, classes) and torch.isfinite(out).all()
    # the head is sized for the flattened 3x3 map
    assert m.head.in_features == 8 * width * 9 and m.head.out_features == classes


def test_vgg_fer_eval_is_deterministic_and_dropout_is_optional():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 48, 48)
    m = create("vgg_fer", width=4, dropout=0.5)
    with torch.no_grad():
        assert torch.equal(m.eval()(x), m(x))  # eval: dropout off, the same answer each time
        assert not torch.equal(m.train()(x), m(x))  # training: a new dropout mask each call
        m0 = create("vgg_fer", width=4, dropout=0.0)
        assert isinstance(m0.dropout, torch.nn.Identity)
        assert torch.equal(m0.train()(x), m0(x))  # no dropout: training mode answers the same twice


@pytest.mark.parametrize("width", [0, -3])
def test_vgg_fer_width_below_one_is_refused(width):
    # the builder's ValueError becomes a ModelError (the CLI prints one line, no traceback)
    from ferkit.errors import ModelError

    with pytest.raises(ModelError, match="width must be at least 1"):
        create("vgg_fer", width=width)


def test_init_from_fer2013_vgg_into_ckplus_classes_keeps_shared_rows(tmp_path):
    """FER2013's 7 classes -> CK+'s 7 (no neutral, contempt instead): the trunk is copied, the
    head keeps the six shared classes' rows (moved to CK+'s order), contempt stays fresh."""
    from ferkit import weights

    torch.manual_seed(1)
    src = create("vgg_fer", num_classes=7, width=4).eval()
    card = {"architecture": "vgg_fer", "arch_kwargs": {"width": 4}, "classes": list(L.FER2013_IDS),
            "input_size": [1, 48, 48], "mean": [0.5], "std": [0.25]}
    weights.save(src, tmp_path / "fer.safetensors", card)
    ck_classes = list(L.ordered(L.CKPLUS_FOLDERS.values()))
    assert ck_classes[-1] == "contempt" and "neutral" not in ck_classes and len(ck_classes) == 7

    torch.manual_seed(2)
    dst = create("vgg_fer", num_classes=len(ck_classes), width=4)
    fresh_w, fresh_b = dst.head.weight.detach().clone(), dst.head.bias.detach().clone()
    lines: list[str] = []
    info = init_from(dst, str(tmp_path / "fer.safetensors"), ck_classes, lines.append)
    sd, ss = dst.state_dict(), src.state_dict()
    assert info["copied"] == info["of"] == len(sd) and info["not_copied"] == []
    assert info["classes_fresh"] == ["contempt"] and info["architecture"] == "vgg_fer"
    assert all(torch.equal(sd[k], ss[k]) for k in sd if not k.startswith("head."))
    for i, c in enumerate(ck_classes):
        if c == "contempt":
            assert torch.equal(sd["head.weight"][i], fresh_w[i]) and sd["head.bias"][i] == fresh_b[i]
        else:
            j = card["classes"].index(c)
            assert torch.equal(sd["head.weight"][i], ss["head.weight"][j])
            assert sd["head.bias"][i] == ss["head.bias"][j]
    assert "fresh for contempt" in lines[0]
    # another width: the message names the option that differs and how to match it
    from ferkit.errors import FerkitError

    with pytest.raises(FerkitError, match="vgg_fer with width=4, this model has width=2.*pass --model-arg width=4"):
        init_from(create("vgg_fer", width=2), str(tmp_path / "fer.safetensors"), ck_classes, lambda s: None)


# ---------------------------------------------------------------------------------------
# fit_time_budget
# ---------------------------------------------------------------------------------------


def _base_info(cfg: TrainConfig) -> dict:
    from dataclasses import asdict

    return {"dataset": {"name": cfg.dataset}, "training": {"command": "test", "config": asdict(cfg)}}


def test_fit_time_budget_lowers_epochs_and_records_them(tmp_path):
    cfg = TrainConfig(epochs=100, time_budget=10.0, out=str(tmp_path))
    base = _base_info(cfg)
    lines: list[str] = []
    new, info = fit_time_budget(cfg, base, epoch=1, last=2.0, elapsed=2.0, out=tmp_path, log=lines.append)
    assert new.epochs == 5  # 1 done + 8 s left // 2 s an epoch
    assert cfg.epochs == 100  # the caller's config is not changed in place
    assert new.time_budget == 10.0 and new.lr == cfg.lr and new.out == cfg.out
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 5
    assert info["training"]["config"]["epochs"] == 5 and info["training"]["command"] == "test"
    assert info["dataset"] == base["dataset"]
    assert base["training"]["config"]["epochs"] == 100  # a new dict, the old one untouched
    assert len(lines) == 1 and "time budget 10s" in lines[0] and "5 epochs" in lines[0] and "was 100" in lines[0]


@pytest.mark.parametrize("epoch,last,elapsed", [(1, 2.0, 10.0), (1, 2.0, 50.0), (3, 5.0, 12.0), (2, 0.0, 99.0)])
def test_fit_time_budget_never_below_the_current_epoch(tmp_path, epoch, last, elapsed):
    cfg = TrainConfig(epochs=100, time_budget=10.0)
    new, info = fit_time_budget(cfg, _base_info(cfg), epoch, last, elapsed, tmp_path, lambda s: None)
    assert new.epochs == epoch  # the budget is spent: stop after this epoch
    assert info["training"]["config"]["epochs"] == epoch
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == epoch


@pytest.mark.parametrize("budget,last", [(1e9, 2.0), (200.0, 1.0), (10.0, 0.0)])
def test_fit_time_budget_never_above_the_asked_epochs(tmp_path, budget, last):
    cfg = TrainConfig(epochs=100, time_budget=budget)
    base = _base_info(cfg)
    lines: list[str] = []
    new, info = fit_time_budget(cfg, base, 1, last, last, tmp_path, lines.append)
    assert new is cfg and info is base and new.epochs == 100
    assert lines == [] and not (tmp_path / "config.json").exists()


def test_fit_time_budget_exact_fit_and_later_epochs(tmp_path):
    cfg = TrainConfig(epochs=50, time_budget=30.0)
    # epoch 2 of a run at 3 s an epoch, 6 s spent: 24 s left = 8 more epochs
    new, _ = fit_time_budget(cfg, _base_info(cfg), 2, 3.0, 6.0, tmp_path, lambda s: None)
    assert new.epochs == 10
    # a later warm-up epoch ran faster (the first ones carry start-up work): the count rises again,
    # up to the asked --epochs and no further
    newer, _ = fit_time_budget(new, _base_info(new), 3, 1.0, 7.0, tmp_path, lambda s: None, asked=50)
    assert newer.epochs == 26  # 3 done + 23 s left // 1 s
    capped, _ = fit_time_budget(new, _base_info(new), 3, 0.1, 7.0, tmp_path, lambda s: None, asked=50)
    assert capped.epochs == 50
    # without ``asked`` the current count is the ceiling
    same, _ = fit_time_budget(new, _base_info(new), 3, 1.0, 7.0, tmp_path, lambda s: None)
    assert same.epochs == 10


# ---------------------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------------------

TRAIN = ["train", "--dataset", "imagefolder", "--data", "x", "--out", "y"]


@pytest.mark.parametrize("value", ["-1", "-0.5", "0", "inf", "nan", "abc", ""])
def test_time_budget_must_be_seconds_above_zero(value, capsys):
    with pytest.raises(SystemExit) as e:
        main([*TRAIN, "--time-budget", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "seconds above 0" in err and "--time-budget" in err


@pytest.mark.parametrize("value", ["0", "-5", "inf", "nan"])
def test_serve_timeout_uses_the_same_check(value, capsys):
    """serve --timeout is refused by the same argparse type, before anything binds or loads."""
    with pytest.raises(SystemExit) as e:
        main(["serve", "--timeout", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "seconds above 0" in err and "--timeout" in err


def test_time_budget_minus_inf_is_a_usage_error(capsys):
    # argparse reads "-inf" as an option, not a value: still a usage error, with argparse's message
    with pytest.raises(SystemExit) as e:
        main([*TRAIN, "--time-budget", "-inf"])
    assert e.value.code == 2 and "--time-budget" in capsys.readouterr().err


def test_train_config_time_budget_and_nondeterministic_from_the_command_line():
    p = build_parser()
    cfg = _train_config(p.parse_args(TRAIN))
    assert cfg.time_budget is None and cfg.deterministic is True
    assert TrainConfig().deterministic is True and TrainConfig().time_budget is None
    cfg = _train_config(p.parse_args([*TRAIN, "--time-budget", "90.5", "--nondeterministic"]))
    assert cfg.time_budget == 90.5 and isinstance(cfg.time_budget, float) and cfg.deterministic is False
    cfg = _train_config(p.parse_args([*TRAIN, "--time-budget", "1e-3"]))
    assert math.isclose(cfg.time_budget, 1e-3) and cfg.deterministic is True
    # crossval takes every train option (tools/gpu/run.py passes both)
    cv = ["crossval", "--dataset", "ckplus", "--data", "x", "--out", "y", "--time-budget", "13", "--nondeterministic"]
    cfg = _train_config(p.parse_args(cv))
    assert cfg.time_budget == 13.0 and cfg.deterministic is False


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory):
    """`ferkit train --time-budget` with a budget spent by the first epoch (what it prints, its folder)."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("budget")
    data = make_imagefolder(tmp, with_splits=True, per_class=2)
    out = tmp / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["train", "--model", "vgg_fer", "--model-arg", "width=4", "--dataset", "imagefolder", "--data",
                   str(data), "--out", str(out), "--epochs", "20", "--batch-size", "7", "--warmup", "1", "--aug",
                   "none", "--time-budget", "0.001", "--threads", "2", "--no-progress", "--seed", "0"])
    return rc, out, printed.getvalue()


def test_train_with_a_tiny_time_budget_stops_early_and_finishes(budget_run):
    rc, out, printed = budget_run
    assert rc == 0
    assert (out / "model.safetensors").exists() and (out / "model.json").exists()
    cfg = json.loads((out / "config.json").read_text())
    epochs = cfg["epochs"]
    assert 1 <= epochs < 20 and cfg["time_budget"] == 0.001 and cfg["deterministic"] is True
    log = json.loads((out / "log.json").read_text())
    assert [r["epoch"] for r in log] == list(range(1, epochs + 1))
    card = json.loads((out / "model.json").read_text())
    assert card["architecture"] == "vgg_fer" and card["arch_kwargs"]["width"] == 4
    assert card["epochs_run"] == epochs and card["training"]["config"]["time_budget"] == 0.001
    assert "time budget 0.001s" in printed and "(was 20)" in printed


def test_the_final_card_records_the_fitted_epoch_count(budget_run):
    _, out, _ = budget_run
    epochs = json.loads((out / "config.json").read_text())["epochs"]
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["config"]["epochs"] == epochs


# ---------------------------------------------------------------------------------------
# tools/gpu
# ---------------------------------------------------------------------------------------


def _fake_pack(root: Path, n: int = 11, cols: int = 4, seed: int = 0):
    """A pack in pack.py's format: lossless WebP mosaic of 48x48 tiles, manifest, ferplus/ and ckplus48/."""
    rng = np.random.default_rng(seed)
    tiles = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    rows = -(-n // cols)
    mosaic = np.zeros((rows * cols, 48, 48), np.uint8)
    mosaic[:n] = tiles
    mosaic = mosaic.reshape(rows, cols, 48, 48).transpose(0, 2, 1, 3).reshape(rows * 48, cols * 48)
    ok, buf = cv2.imencode(".webp", mosaic, [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert ok
    root.mkdir(parents=True)
    (root / "images.webp").write_bytes(buf.tobytes())
    files = [[f"ferplus/FER2013Train/fer{i:07d}.png", i] for i in range(3)]
    files += [[f"fer2013/train/{L.FER2013_IDS[i % 7]}/Training_{i:05d}.png", i] for i in range(3, n)]
    files += [["fer2013/test/happy/PublicTest_00000.png", 5]]  # a face used twice: one pool row
    (root / "manifest.json").write_text(json.dumps({"count": n, "cols": cols, "files": files}))
    (root / "ferplus" / "FER2013Train").mkdir(parents=True)
    label_csv = 'fer0000000.png,"(0, 0, 48, 48)",10,0,0,0,0,0,0,0,0,0\n'
    (root / "ferplus" / "FER2013Train" / "label.csv").write_text(label_csv)
    (root / "ckplus48" / "happy").mkdir(parents=True)
    (root / "ckplus48" / "happy" / "S010_001_00000020.png").write_bytes(b"not really a png")
    return tiles, files


def test_unpack_rebuilds_every_image_pixel_for_pixel(tmp_path):
    unpack = _tool("unpack")
    tiles, files = _fake_pack(tmp_path / "pack")
    dst = tmp_path / "data"
    assert unpack.main([str(tmp_path / "pack"), str(dst)]) == 0
    for rel, row in files:
        got = cv2.imread(str(dst / rel), cv2.IMREAD_GRAYSCALE)
        assert got is not None and got.shape == (48, 48), rel
        assert np.array_equal(got, tiles[row]), rel
    written = sorted(str(p.relative_to(dst)) for p in dst.rglob("*.png") if not p.is_relative_to(dst / "ckplus48"))
    assert written == sorted(rel for rel, _ in files)
    assert (dst / "ferplus" / "FER2013Train" / "label.csv").read_text().startswith("fer0000000.png,")
    assert (dst / "ckplus48" / "happy" / "S010_001_00000020.png").read_bytes() == b"not really a png"


def test_run_py_imports_without_side_effects_and_half_copy(tmp_path, monkeypatch):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    run = _tool("run")
    assert set(tmp_path.iterdir()) == before and run.LOGFILE == []  # nothing started, nothing written
    assert callable(run.main) and callable(run.half_copy)

    g = torch.Generator().manual_seed(0)
    src = tmp_path / "model.safetensors"
    state = {"w": torch.randn(5, 3, generator=g), "steps": torch.arange(4, dtype=torch.int64) * 10**12,
             "flag": torch.tensor([True, False])}
    save_file(state, str(src))
    dst = tmp_path / "half.safetensors"
    assert run.half_copy(src, dst) is True
    got = load_file(str(dst))
    assert set(got) == set(state)
    assert got["w"].dtype == torch.float16 and torch.equal(got["w"], state["w"].half())
    assert got["steps"].dtype == torch.int64 and torch.equal(got["steps"], state["steps"])
    assert got["flag"].dtype == torch.bool and torch.equal(got["flag"], state["flag"])
    with safe_open(str(dst), "pt") as f:
        assert f.metadata() == {"source": "model.safetensors", "dtype": "float16"}
    assert load_file(str(src))["w"].dtype == torch.float32  # the source is left as it was

    missing = tmp_path / "nope.safetensors"
    assert run.half_copy(missing, tmp_path / "out.safetensors") is False
    assert not (tmp_path / "out.safetensors").exists()


def test_halve_rewrites_weights_as_float16_and_keeps_the_card_true(tmp_path):
    """weights.halve: float tensors become float16 (half the bytes), integer ones stay; the card's
    sha256 follows the new file and says float16; loading gives float32 parameters within float16's
    rounding of the originals, and the same predictions on a batch."""
    from ferkit import weights
    from ferkit.api import ExpressionModel

    torch.manual_seed(0)
    m = create("vgg_fer", width=4).eval()
    spec = get_spec("vgg_fer")
    card = {"name": "t", "architecture": "vgg_fer", "arch_kwargs": {"width": 4}, "classes": list(L.CANONICAL),
            "input_size": list(spec.input_size), "mean": list(spec.mean), "std": list(spec.std)}
    weights.save(m, tmp_path / "t.safetensors", card)
    before = (tmp_path / "t.safetensors").stat().st_size
    weights.halve(tmp_path / "t.safetensors")
    new_card = json.loads((tmp_path / "t.json").read_text())
    assert new_card["weights_dtype"] == "float16"
    assert new_card["sha256"] == weights.sha256(tmp_path / "t.safetensors")
    assert (tmp_path / "t.safetensors").stat().st_size < 0.6 * before
    from safetensors.torch import load_file

    st = load_file(str(tmp_path / "t.safetensors"))
    assert st["stages.0.0.weight"].dtype == torch.float16
    assert st["stages.0.1.num_batches_tracked"].dtype == torch.int64
    net, _ = weights.load(tmp_path / "t.safetensors")
    for (k, a), b in zip(m.state_dict().items(), net.state_dict().values()):
        assert b.dtype == a.dtype, k
        if a.is_floating_point():
            assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), k
    x = torch.rand(16, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(m(x).argmax(1), net(x).argmax(1))
    assert isinstance(ExpressionModel(net, new_card), ExpressionModel)


def test_gpu_tools_refuse_bad_arguments_without_harm(tmp_path, capsys):
    """pack.py never deletes a folder that is not an earlier pack (--out . would have wiped a
    checkout), and checks --data first; unpack.py and run.py say what is missing, no traceback."""
    pack, unpack, run = _tool("pack"), _tool("unpack"), _tool("run")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.txt").write_text("precious")
    with pytest.raises(SystemExit) as e:
        pack.main(["--data", str(tmp_path / "nowhere"), "--out", str(victim)])
    assert e.value.code == 2 and "missing" in capsys.readouterr().err
    data = tmp_path / "data"
    for d in ("ferplus/FER2013Train", "ferplus/FER2013Valid", "fer2013", "ckplus48"):
        (data / d).mkdir(parents=True)
    for d in ("FER2013Train", "FER2013Valid"):
        (data / "ferplus" / d / "label.csv").write_text("")
    with pytest.raises(SystemExit) as e:
        pack.main(["--data", str(data), "--out", str(victim)])
    assert e.value.code == 2 and "not an earlier pack" in capsys.readouterr().err
    assert (victim / "thesis.txt").read_text() == "precious"
    with pytest.raises(SystemExit) as e:
        unpack.main([str(victim), str(tmp_path / "dst")])
    assert e.value.code == 2 and "not a pack" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        unpack.main([])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        run.main(["--out", str(tmp_path / "o"), "--pack", str(victim), "--data", str(tmp_path / "nodata"),
                  "--runs", str(tmp_path / "runs")])
    assert e.value.code == 2 and "no pack there" in capsys.readouterr().err


def test_time_budget_survives_resume(budget_run, tmp_path):
    """The checkpoint holds the fitted count (a resume with the same budget keeps it), and a resume
    with another budget refits the count from the time used before training on (it used to go on to
    the command's --epochs)."""
    import contextlib
    import io
    import shutil

    _, out, _ = budget_run
    fitted = json.loads((out / "config.json").read_text())["epochs"]
    assert torch.load(out / "last.ckpt", weights_only=False)["config"]["epochs"] == fitted
    data = json.loads((out / "config.json").read_text())["data"]
    args = ["train", "--model", "vgg_fer", "--model-arg", "width=4", "--dataset", "imagefolder", "--data", str(data),
            "--batch-size", "7", "--warmup", "1", "--aug", "none", "--threads", "2", "--no-progress", "--seed", "0",
            "--resume"]
    run = tmp_path / "more"
    shutil.copytree(out, run)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(args + ["--out", str(run), "--epochs", str(fitted + 2), "--time-budget", "1e6"])
    assert rc == 0, printed.getvalue()
    assert "ignoring differing" not in printed.getvalue()  # the folder it is in now is its out
    assert json.loads((run / "model.json").read_text())["training"]["config"]["out"] == str(run)
    log = json.loads((run / "log.json").read_text())
    assert [r["epoch"] for r in log] == list(range(1, fitted + 3))  # the new budget allows the asked count
    # a budget already spent: no more epochs, the run just finishes
    run2 = tmp_path / "spent"
    shutil.copytree(out, run2)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(args + ["--out", str(run2), "--epochs", "20", "--time-budget", "0.002"])
    assert rc == 0
    assert f"so {fitted} epoch" in printed.getvalue()
    assert [r["epoch"] for r in json.loads((run2 / "log.json").read_text())] == list(range(1, fitted + 1))
    assert json.loads((run2 / "config.json").read_text())["epochs"] == fitted
