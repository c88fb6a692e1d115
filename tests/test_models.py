"""The architecture registry and mini-Xception as Li et al. 2022 describe it."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

from ferkit.errors import ModelError
from ferkit.models import count_params, create, get_spec, list_models
from ferkit.models.mini_xception import XceptionModule


def test_registry():
    assert "mini_xception" in [s.name for s in list_models()]
    spec = get_spec("mini_xception")
    assert spec.input_size == (1, 48, 48) and spec.mean == (0.5,) and spec.std == (0.25,)
    with pytest.raises(ModelError, match="unknown architecture 'resnet999'"):
        create("resnet999")
    with pytest.raises(ModelError, match="unknown model option 'depth'; its options: width=1, dropout=0.0"):
        create("mini_xception", depth=3)
    with pytest.raises(ModelError, match="width='abc' wants a whole number"):  # --model-arg width=abc
        create("mini_xception", width="abc")


@pytest.mark.parametrize("arch", ["mini_xception", "di_fernet", "pcnn", "zhu_cnn", "vgg_fer", "lite_cnn", "lite_plain"])
def test_every_architecture_refuses_a_width_or_dropout_out_of_range(arch):
    # refused before any layer is built: no torch traceback ("negative dimension") or warning on the way
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for bad in (0, -1):
            with pytest.raises(ModelError, match=f"{arch}: model option width must be at least 1, got {bad}"):
                create(arch, width=bad)
        for bad in (-1.0, 1.0, float("nan")):
            with pytest.raises(ModelError, match=f"{arch}: model option dropout must be in \\[0, 1\\), got {bad}"):
                create(arch, dropout=bad)


@pytest.mark.parametrize("width,params", [(1, 56_951), (2, 202_087)])
def test_mini_xception_shape_and_size(width, params):
    m = create("mini_xception", num_classes=7, width=width).eval()
    assert count_params(m) == params  # width 1 is the original 57K-parameter network
    assert m(torch.randn(3, 1, 48, 48)).shape == (3, 7)
    assert create("mini_xception", num_classes=8)(torch.randn(1, 1, 48, 48)).shape == (1, 8)
    assert m.ferkit_arch == "mini_xception" and m.ferkit_kwargs["width"] == width


def test_mini_xception_structure():
    m = create("mini_xception")
    # no fully connected layer; four residual modules of depthwise separable convolutions
    assert not any(isinstance(x, nn.Linear) for x in m.modules())
    mods = [x for x in m.modules() if isinstance(x, XceptionModule)]
    assert len(mods) == 4
    depthwise = [c for c in m.modules() if isinstance(c, nn.Conv2d) and c.groups == c.in_channels > 1]
    assert len(depthwise) == 8
    # every convolution except the classifier is followed by batch norm (depthwise+pointwise = one separable conv)
    seq = [x for x in m.modules() if isinstance(x, (nn.Conv2d, nn.BatchNorm2d))]
    for i, layer in enumerate(seq):
        if isinstance(layer, nn.Conv2d) and layer is not m.head and not (layer.groups > 1):
            assert isinstance(seq[i + 1], nn.BatchNorm2d), f"conv {i} lacks BN"
    # the classifier starts near zero: the first loss is close to ln(7)
    torch.manual_seed(0)
    logits = create("mini_xception").train()(torch.randn(16, 1, 48, 48))
    loss = nn.functional.cross_entropy(logits, torch.randint(0, 7, (16,)))
    assert abs(loss.item() - torch.log(torch.tensor(7.0)).item()) < 0.15


def test_residual_module_downsamples():
    mod = XceptionModule(8, 16)
    assert mod(torch.randn(2, 8, 44, 44)).shape == (2, 16, 22, 22)


# ---------------------------------------------------------------------------------------
# DI-FERNet, PCNN, Zhu et al.'s CNN
# ---------------------------------------------------------------------------------------
NEW = ["di_fernet", "pcnn", "zhu_cnn", "lite_cnn", "lite_plain"]


def _logits(out):
    return out["logits"] if isinstance(out, dict) else out


def _blobs(n_per_class: int = 4, seed: int = 0):
    """Normalised 48x48 'faces' of 7 learnable classes (conftest.face_like) and their labels."""
    import numpy as np
    from conftest import face_like

    rng = np.random.default_rng(seed)
    y = torch.arange(7).repeat_interleave(n_per_class)
    x = torch.from_numpy(np.stack([face_like(int(c), rng) for c in y])).float().unsqueeze(1)
    return (x / 255 - 0.5) / 0.25, y


@pytest.mark.parametrize("name", NEW)
def test_new_architectures_are_registered_with_their_input(name):
    spec = get_spec(name)
    assert spec.input_size == (1, 48, 48) and spec.mean == (0.5,) and spec.std == (0.25,)
    assert spec.paper and spec.summary and name in [s.name for s in list_models()]
    m = create(name)
    assert m.ferkit_arch == name and (m.__doc__ or type(m).__module__)
    assert len(__import__(type(m).__module__, fromlist=["x"]).__doc__) > 800  # the paper's description + choices


@pytest.mark.parametrize("name,lo,hi", [("di_fernet", 300_000, 800_000), ("pcnn", 400_000, 1_000_000),
                                        ("zhu_cnn", 2_000_000, 3_500_000), ("lite_cnn", 20_000, 60_000),
                                        ("lite_plain", 40_000, 80_000)])
def test_new_architectures_shapes_and_sizes(name, lo, hi):
    m = create(name).eval()
    assert lo < count_params(m) < hi
    for n in (1, 4):
        out = m(torch.randn(n, 1, 48, 48))
        assert isinstance(out, torch.Tensor) and out.shape == (n, 7)  # eval: plain logits
    assert create(name, num_classes=8).eval()(torch.randn(1, 1, 48, 48)).shape == (1, 8)
    assert _logits(m.train()(torch.randn(4, 1, 48, 48))).shape == (4, 7)
    assert count_params(create(name, width=1)) < count_params(create(name, width=2))
    # the classifier starts near zero: the first loss is close to ln(7)
    torch.manual_seed(0)
    logits = _logits(create(name).train()(torch.randn(16, 1, 48, 48)))
    loss = nn.functional.cross_entropy(logits, torch.randint(0, 7, (16,)))
    assert abs(loss.item() - torch.log(torch.tensor(7.0)).item()) < 0.15


@pytest.mark.parametrize("name", NEW)
def test_new_architectures_are_deterministic_with_a_seed(name):
    x = torch.randn(2, 1, 48, 48)
    torch.manual_seed(3)
    a = create(name).eval()
    torch.manual_seed(3)
    b = create(name).eval()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(a(x), b(x))
    torch.manual_seed(4)
    c = create(name)
    assert not all(torch.equal(sa[k], c.state_dict()[k]) for k in sa if sa[k].is_floating_point())


@pytest.mark.parametrize("name", NEW)
def test_a_few_optimisation_steps_reduce_the_loss(name):
    """On learnable blobs the training loss falls fast (measured in training mode: after a dozen
    steps the BN running statistics still lag behind, so eval-mode losses of BN networks would not)."""
    x, y = _blobs()
    torch.manual_seed(0)
    m = create(name).train()
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    losses = []
    for _ in range(13):
        out = m(x)
        loss = nn.functional.cross_entropy(_logits(out), y)
        losses.append(loss.item())
        if isinstance(out, dict):
            loss = loss + sum(m.aux_loss(out, x, y).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[0] == pytest.approx(torch.log(torch.tensor(7.0)).item(), abs=0.15)
    # the students (lite_cnn 36K parameters, lite_plain 56K; a tenth of the others' compute) fall more
    # slowly at this learning rate
    assert losses[-1] < {"lite_cnn": 0.65, "lite_plain": 0.75}.get(name, 0.5) * losses[0], losses


def test_di_fernet_structure():
    from ferkit.models.di_fernet import DIModule

    m = create("di_fernet")
    mods = [x for x in m.modules() if isinstance(x, DIModule)]
    assert len(mods) == 6
    dilated = [c for c in m.modules() if isinstance(c, nn.Conv2d) and c.dilation[0] > 1]
    assert sorted({c.dilation[0] for c in dilated}) == [2, 3]
    assert all(c.groups == c.in_channels for c in dilated)  # dilated convs are depthwise
    depthwise = [c for c in m.modules() if isinstance(c, nn.Conv2d) and c.groups == c.in_channels > 1]
    assert len(depthwise) == 3 * 6  # two side by side + one in the separable conv, per module
    assert mods[0](torch.randn(2, 32, 24, 24)).shape == (2, 64, 24, 24)
    assert mods[2](torch.randn(2, 64, 24, 24)).shape == (2, 128, 12, 12)  # strided module halves the map


def test_zhu_cnn_structure_and_deconvolution():
    m = create("zhu_cnn")
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [5, 5, 3, 3] and all(c.bias is not None for c in convs)
    assert not any(isinstance(c, nn.BatchNorm2d) for c in m.modules())
    assert len([p for p in m.modules() if isinstance(p, nn.MaxPool2d)]) == 3
    assert len([fc for fc in m.modules() if isinstance(fc, nn.Linear)]) == 2
    # deconvnet projection of a conv4 map runs through the pooling switches back to the pixels
    from ferkit.explain.deconv import project

    proj = project(m.eval(), torch.randn(1, 1, 48, 48), "features.9", maps=[0, 5])
    assert proj.images.shape == (2, 1, 48, 48) and proj.images.abs().sum() > 0


def test_pcnn_crops_the_named_regions_of_the_aligned_face():
    from ferkit.faces.align import REGION_NAMES, regions

    m = create("pcnn").eval()
    assert m.boxes == regions((48, 48)) and list(m.local_nets) == list(REGION_NAMES)  # five local networks
    seen = {}
    hooks = [m.local_nets[r].register_forward_pre_hook(lambda mod, args, r=r: seen.__setitem__(r, args[0]))
             for r in REGION_NAMES]
    x = torch.randn(2, 1, 48, 48)
    m(x)
    for h in hooks:
        h.remove()
    for r, (bx, by, bw, bh) in regions((48, 48)).items():
        assert torch.equal(seen[r], x[:, :, by:by + bh, bx:bx + bw]), r
    # a change inside the mouth box reaches the mouth network only
    x2 = x.clone()
    bx, by, bw, bh = m.boxes["mouth"]
    x2[:, :, by + bh // 2, bx + bw // 2] += 5
    with torch.no_grad():
        for r in REGION_NAMES:
            same = torch.equal(m.local_nets[r](m.crop(x, r)), m.local_nets[r](m.crop(x2, r)))
            assert same == (r != "mouth"), r


def test_pcnn_outputs_aux_losses_and_registration():
    from ferkit.models.layers import affine_warp, identity_grid

    m = create("pcnn", recon_weight=0.5)
    x, y = _blobs(1)
    assert isinstance(m.eval()(x), torch.Tensor)
    out = m.train()(x)
    assert set(out) == {"logits", "local_logits", "recon"} and out["recon"].shape == x.shape
    terms = m.aux_loss(out, x, y)
    assert set(terms) == {"local_ce", "recon_mse"}
    local_ce = nn.functional.cross_entropy(out["local_logits"], y).item()
    assert terms["local_ce"].item() == pytest.approx(8 / 12 * local_ce)
    assert set(create("pcnn").train()(x)) == {"logits", "local_logits", "recon"}  # the decoder is on by default
    assert set(create("pcnn", recon_weight=0).train()(x)) == {"logits", "local_logits"}  # the authors' loss
    assert not any(k.startswith("decoder.") for k in create("pcnn", recon_weight=0).state_dict())
    assert not any(k.startswith("loc.") for k in create("pcnn", stn=False).state_dict())
    # the spatial transformer starts as the identity, and its sampler is affine_grid + grid_sample
    f = torch.randn(3, 4, 12, 12)
    eye = torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(3, 2, 3)
    assert torch.allclose(affine_warp(f, eye, identity_grid(12, 12)), f, atol=1e-5)
    th = eye + 0.1 * torch.randn(3, 2, 3)
    ref = nn.functional.grid_sample(f, nn.functional.affine_grid(th, f.shape, align_corners=False),
                                    align_corners=False)
    assert torch.allclose(affine_warp(f, th, identity_grid(12, 12)), ref, atol=1e-5)
    theta = m.loc(torch.randn(2, 128, 12, 12))
    assert torch.allclose(theta, torch.tensor([1.0, 0, 0, 0, 1, 0]).expand(2, 6))


def _train_cfg(data, out, **kw):
    from ferkit.engine.train import TrainConfig

    base = dict(model="pcnn", dataset="imagefolder", data=str(data), out=str(out), epochs=2, batch_size=16, lr=3e-3,
                warmup_epochs=0.5, augment={"flip": 0.0, "shift": 0.0, "rotate": 0.0, "scale": 0.0,
                                            "brightness": 0.0, "contrast": 0.0, "erase": 0.0},
                seed=0, threads=2, command="test")
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from conftest import make_imagefolder

    return make_imagefolder(tmp_path_factory.mktemp("ds"), with_splits=True, per_class=8)


def test_trainer_adds_the_models_aux_loss(tiny_folder, tmp_path, monkeypatch):
    """The logged training loss holds aux_weight x the model's terms, only during --aux-epochs."""
    import json

    from ferkit.engine.train import train
    from ferkit.models.pcnn import PCNN

    monkeypatch.setattr(PCNN, "aux_loss", lambda self, out, x, t: {"const": out["logits"].sum() * 0 + 5.0})
    card = train(_train_cfg(tiny_folder, tmp_path / "r", aux_weight=2.0, aux_epochs=1), progress=False,
                 log=lambda s: None)
    log = json.loads((tmp_path / "r" / "log.json").read_text())
    assert log[0]["train_const"] == pytest.approx(5.0) and 10.0 < log[0]["train_loss"] < 10.0 + 2.5
    assert "train_const" not in log[1] and log[1]["train_loss"] < 2.5  # phase 2: classification alone
    assert card["metrics"]["test"]["n"] == 28  # evaluation gets plain logits


def test_pcnn_trains_with_its_two_phase_loss_and_reconstruction(tiny_folder, tmp_path):
    import json

    from ferkit.engine.train import train

    lines = []
    train(_train_cfg(tiny_folder, tmp_path / "r", epochs=4, model_kwargs={"recon_weight": 1.0}), progress=False,
          log=lines.append)
    log = json.loads((tmp_path / "r" / "log.json").read_text())
    assert all("train_local_ce" in r and "train_recon_mse" in r for r in log)
    assert log[-1]["train_recon_mse"] < 0.7 * log[0]["train_recon_mse"]  # the face is being reconstructed
    assert log[-1]["train_local_ce"] < log[0]["train_local_ce"]
    assert all(r["train_loss"] > r["train_local_ce"] + r["train_recon_mse"] for r in log)  # + the main CE
    assert any("(local_ce " in ln and "(recon_mse " in ln for ln in lines)


def test_lite_cnn_is_an_order_of_magnitude_cheaper_than_the_default():
    """The fast student: its size and FLOPs (the budget of benchmarks/floor.py) at widths 16 and 8."""
    from torch.utils.flop_counter import FlopCounterMode

    def flops(m):
        with FlopCounterMode(display=False) as fc:
            m.eval()(torch.zeros(1, 1, 48, 48))
        return fc.get_total_flops()

    lite, lite8, mx = create("lite_cnn"), create("lite_cnn", width=8), create("mini_xception", width=2)
    assert (count_params(lite), count_params(lite8)) == (35_879, 10_135)
    assert flops(lite) == 4_835_584 and flops(lite8) == 1_385_600
    assert flops(mx) > 8 * flops(lite)
    with pytest.raises(Exception, match="width"):
        create("lite_cnn", width=0)


def test_lite_plain_head_and_widths():
    gap, flat = create("lite_plain").eval(), create("lite_plain", head="flat").eval()
    # the flat head reads the 6x6 map cell by cell: 36x the linear layer's inputs, same convolutions
    assert count_params(flat) - count_params(gap) == 96 * 35 * 7
    wide = create("lite_plain", widths=[16, 16, 64, 128], head="flat").eval()
    assert [m.out_channels for m in wide.modules() if isinstance(m, nn.Conv2d)] == [16, 16, 64, 128]
    assert wide.head.in_features == 128 * 36
    x = torch.randn(3, 1, 48, 48)
    assert flat(x).shape == wide(x).shape == (3, 7)
    # the flat head sees where a feature is: moving the face changes its answer where GAP's would not
    f = flat.features(x)
    assert torch.allclose(flat.head(torch.flatten(f, 1)), flat(x))
    from ferkit.errors import ModelError
    with pytest.raises(ModelError, match="head must be 'gap' or 'flat'"):
        create("lite_plain", head="max")
    with pytest.raises(ModelError, match="widths must be four"):
        create("lite_plain", widths=[16, 32, 64])


def test_lite_plain_strided_has_no_pooling_and_a_quarter_of_the_work_per_strided_layer():
    maxp = create("lite_plain", widths=[16, 16, 64, 128], head="flat").eval()
    strd = create("lite_plain", widths=[16, 16, 64, 128], head="flat", pool="stride").eval()
    assert not any(isinstance(m, nn.MaxPool2d) for m in strd.modules())
    assert sum(isinstance(m, nn.MaxPool2d) for m in maxp.modules()) == 2
    assert count_params(strd) == count_params(maxp)  # the same layers, strided instead of pooled
    x = torch.randn(2, 1, 48, 48)
    assert strd.features(x).shape == maxp.features(x).shape == (2, 128, 6, 6)
    assert strd(x).shape == (2, 7)
    from torch.utils.flop_counter import FlopCounterMode

    def flops(net):
        with FlopCounterMode(display=False) as fc:
            net(x[:1])
        return fc.get_total_flops()

    # the 24 -> 12 and 12 -> 6 convolutions compute 4x fewer positions: 2 * 9 * (16*16*432 + 16*64*108) MACs fewer
    assert flops(maxp) - flops(strd) == 2 * 9 * (16 * 16 * 432 + 16 * 64 * 108)
    from ferkit.errors import ModelError
    with pytest.raises(ModelError, match="pool must be 'max' or 'stride'"):
        create("lite_plain", pool="avg")


def test_lite_plain_hidden_layer():
    torch.manual_seed(0)
    plain = create("lite_plain", widths=[16, 16, 64, 128], head="flat").eval()
    torch.manual_seed(0)
    mlp = create("lite_plain", widths=[16, 16, 64, 128], head="flat", hidden=256).eval()
    # the same convolutions; a 4608 -> 256 layer in front of a 256 -> 7 head instead of 4608 -> 7
    assert count_params(mlp) - count_params(plain) == (4608 * 256 + 256) + (256 * 7 + 7) - (4608 * 7 + 7)
    assert not hasattr(plain, "hidden")  # hidden=0 keeps the shipped weights' names
    assert set(plain.state_dict()) < set(mlp.state_dict())
    x = torch.randn(4, 1, 48, 48)
    f = torch.flatten(mlp.features(x), 1).detach()
    assert torch.allclose(mlp(x), mlp.head(torch.relu(mlp.hidden[0](f))), atol=1e-6)
    # He init: the hidden layer keeps the features' scale instead of shrinking it toward zero
    h = torch.relu(mlp.hidden[0](f)).detach()
    assert 0.3 < float(h.pow(2).mean() / f.pow(2).mean()) < 3
    # dropout, when asked for, sits before each linear layer: the features and the hidden units
    drop = create("lite_plain", head="flat", hidden=32, dropout=0.3)
    assert isinstance(drop.dropout, nn.Dropout) and isinstance(drop.hidden[2], nn.Dropout)
    assert [type(m) for m in drop.hidden] == [nn.Linear, nn.ReLU, nn.Dropout]
    assert isinstance(mlp.dropout, nn.Identity) and isinstance(mlp.hidden[2], nn.Identity)
    from ferkit.errors import ModelError
    for bad in (-1, 2.5, True):
        with pytest.raises(ModelError, match="hidden"):
            create("lite_plain", hidden=bad)
