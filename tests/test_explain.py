"""Explanations: the deconvnet on tiny nets with known weights, the AU distance function and
map-to-AU assignment on constructed peaks, Grad-CAM on a constructed net, and the two commands
(`ferkit explain` on the bundled photo, `ferkit au-analysis` on generated and real data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import EXAMPLE, SHARED, make_fer2013, requires_shared
from PIL import Image

import ferkit
from ferkit.cli import main
from ferkit.errors import FerkitError
from ferkit.explain import au as AU
from ferkit.explain.analysis import facs_check
from ferkit.explain.deconv import cells_to_pixels, peak_cells, project, receptive_field_centres
from ferkit.explain.layers import default_layer, list_layers, patched_relus
from ferkit.explain.saliency import gradcam, guided_backprop, upsample


# ---------------------------------------------------------------------------------------
# the deconvnet
# ---------------------------------------------------------------------------------------
def _two_layer_net() -> nn.Module:
    """conv3 (1->2) - ReLU - maxpool2 - conv3 (2->3) - ReLU, positive known weights: the cell
    (i, j) of the last layer sees input rows 2i..2i+7 and columns 2j..2j+7."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 3, 3, bias=False),
                        nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.rand_like(net[0].weight) + 0.1)
        net[3].weight.copy_(torch.rand_like(net[3].weight) + 0.1)
    return net.eval()


def test_deconv_of_the_strongest_activation_stays_in_its_receptive_field():
    net = _two_layer_net()
    x = torch.rand(1, 1, 16, 16) * 0.1
    x[0, 0, 9:12, 5:8] += 3.0  # a bright patch: the strongest activations are around it
    proj = project(net, x, "4", [0, 1, 2])
    assert proj.images.shape == (3, 1, 16, 16)
    for t in range(3):
        i, j = proj.positions[t]
        inside = np.zeros((16, 16), bool)
        inside[2 * i:2 * i + 8, 2 * j:2 * j + 8] = True
        p = proj.images[t, 0].numpy()
        assert np.abs(p[inside]).max() > 0, "the projection reaches the pixels under the activation"
        assert np.all(p[~inside] == 0), "and nothing outside its receptive field"
        assert proj.activations[t] == pytest.approx(float(net(x)[0, proj.maps[t], i, j].detach()), rel=1e-5)
        # the bright patch produced the strongest activation: its receptive field covers the patch
        assert inside[9:12, 5:8].any()


def test_deconv_of_one_conv_is_the_transposed_filter_times_the_activation():
    conv = nn.Conv2d(1, 1, 3, bias=False)
    w = torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3) / 10
    with torch.no_grad():
        conv.weight.copy_(w)
    net = nn.Sequential(conv, nn.ReLU()).eval()
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4, 3] = 1.0  # the filter's largest tap (2, 2) makes cell (2, 1) the strongest
    proj = project(net, x, "1", [0])
    r, c = proj.positions[0]
    a = proj.activations[0]
    expected = torch.zeros(8, 8)
    expected[r:r + 3, c:c + 3] = a * w[0, 0]
    assert torch.allclose(proj.images[0, 0], expected, atol=1e-6)


def test_deconv_rectifies_the_backward_signal_at_relus_and_bn_residual_rules():
    # x -> 1x1 conv to 2 channels (+1, -1) -> ReLU -> 1x1 conv (1, -1) -> out
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU(), nn.Conv2d(2, 1, 1, bias=False)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        net[2].weight.copy_(torch.tensor([1.0, -1.0]).view(1, 2, 1, 1))
    x = torch.full((1, 1, 3, 3), 2.0)
    x[0, 0, 1, 1] = 5.0
    proj = project(net, x, "2", [0])
    # backward at the ReLU output: (1, -1) -> rectified (1, 0) -> through (+1, -1): 1, times the seed (5)
    assert proj.images[0, 0, 1, 1].item() == pytest.approx(5.0)
    assert proj.images[0].abs().sum().item() == pytest.approx(5.0)

    # residual block with BN: y = bn(conv(x)) + x; deconv = activation * (bn scale * w + 1)
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1, bias=False)
            self.bn = nn.BatchNorm2d(1)

        def forward(self, x):
            return self.bn(self.conv(x)) + x

    res = Res().eval()
    with torch.no_grad():
        res.conv.weight.fill_(3.0)
        res.bn.weight.fill_(2.0)
        res.bn.bias.fill_(7.0)  # the shift does not enter the projection
        res.bn.running_var.fill_(4.0 - res.bn.eps)  # scale = 2 / sqrt(4) = 1
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 2, 1] = 1.0
    proj = project(nn.Sequential(res), x, "0", [0])
    a = proj.activations[0]
    assert tuple(proj.positions[0]) == (2, 1)
    assert proj.images[0, 0, 2, 1].item() == pytest.approx(a * (1.0 * 3.0 + 1.0))


def test_relu_patch_is_undone_and_layers_are_listed():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Conv2d(4, 7, 3),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with patched_relus(net, "deconv"):
        assert type(net[1]).__name__ == "SwitchableReLU"
    assert type(net[1]) is nn.ReLU and net[1].inplace
    layers = list_layers(net, (1, 20, 20))
    names = [li.name for li in layers]
    assert names == ["0", "1", "2", "3", "4"]
    assert layers[1].kind == "ReLU" and layers[2].shape == (4, 9, 9)
    # the class-map conv (7 maps = classes) is not Grad-CAM's default; the pooled 1x1 output neither; nor
    # the pooling that ends the features ("2"): the convolution's maps before it (ReLU "1", 18x18)
    assert default_layer(layers, "gradcam", (1, 20, 20), num_classes=7).name == "1"


def test_gradcam_default_is_the_last_feature_layer_even_inside_a_block():
    from ferkit.models import create

    def defaults(arch, **kw):
        net = create(arch, **kw).eval()
        layers = list_layers(net, (1, 48, 48))
        return [default_layer(layers, p, (1, 48, 48), num_classes=7).name for p in ("gradcam", "au")]

    # lite_plain's last conv block (a Sequential whose output is its last child's), not the pooling before it
    assert defaults("lite_plain") == ["body.5", "body.4"]
    assert defaults("mini_xception", width=2) == ["modules_.3", "modules_.2"]  # unchanged
    # vgg_fer's features end in a max-pooling (3x3): Grad-CAM takes the last convolution's 6x6 maps
    assert defaults("vgg_fer") == ["stages.10", "stages.8"]


def test_receptive_field_centres_and_peak_cells():
    net = _two_layer_net()
    c = receptive_field_centres(net, "4", (1, 16, 16))
    assert c.shape == (5, 5, 2)
    for i in range(5):
        for j in range(5):
            assert c[i, j] == pytest.approx([2 * j + 3.5, 2 * i + 3.5], abs=1e-4)
    a = np.zeros((1, 1, 5, 5))
    a[0, 0, 2, 3] = 1.0
    a[0, 0, 2, 4] = 0.5  # the peak leans right
    v, cells = peak_cells(a)
    assert v[0, 0] == 1.0 and cells[0, 0, 0] == pytest.approx(2.0) and 3.0 < cells[0, 0, 1] < 3.5
    xy = cells_to_pixels(np.array([[2.0, 3.0]]), c)
    assert xy[0] == pytest.approx([9.5, 7.5], abs=1e-4)


# ---------------------------------------------------------------------------------------
# distance function and assignment
# ---------------------------------------------------------------------------------------
def test_au_points_follow_the_template_and_distances():
    pts = AU.au_points((48, 48))
    assert set(pts) == set(AU.AU_NAMES)
    assert pts["AU12"].shape == (2, 2) and pts["AU4"].shape == (1, 2)
    # bilateral points are mirror images; brows above the eyes, the chin below the mouth
    assert pts["AU12"][0, 0] + pts["AU12"][1, 0] == pytest.approx(48.0, abs=1e-6)
    assert pts["AU1"][0, 1] < pts["AU5"][0, 1] < pts["AU7"][0, 1] < pts["AU10"][0, 1] < pts["AU17"][0, 1]
    d = AU.interocular((48, 48))
    for i, name in enumerate(AU.AU_NAMES):
        for q in pts[name]:
            dist = AU.distances(q, (48, 48))
            assert dist[i] == pytest.approx(0.0, abs=1e-9)
            assert AU.nearest(dist) == i
    # 5 px right of the right AU12 point: 5 / d inter-ocular distances
    p = pts["AU12"][1] + [0.0, 5.0]
    assert AU.distances(p, (48, 48))[AU.AU_NAMES.index("AU12")] == pytest.approx(5.0 / d)
    assert AU.nearest(AU.distances(np.array([0.0, 0.0]))) == len(AU.AU_NAMES)  # a corner: no AU
    assert AU.closeness(0.0) == 1.0 and AU.closeness(1.0) < AU.closeness(0.2)
    p0, _ = AU.chance()
    assert p0.sum() == pytest.approx(1.0)


def test_assignment_on_constructed_peaks():
    rng = np.random.default_rng(0)
    pts = AU.au_points((48, 48))
    N = 60
    peaks = np.zeros((N, 4, 2))
    side = rng.integers(0, 2, N)
    peaks[:, 0] = pts["AU12"][side] + rng.normal(0, 0.5, (N, 2))  # always at a lip corner
    on = rng.random(N) < 0.6
    peaks[:, 1] = np.where(on[:, None], pts["AU1"][side], [[1.0, 1.0]])  # on AU1 60% of the time, else a corner
    peaks[:, 2] = rng.uniform(0, 47, (N, 2))  # anywhere
    active = np.ones((N, 4), bool)
    active[:, 3] = False  # never fires
    asg = AU.assign(peaks, active, (48, 48), min_consistency=0.5)
    i12, i1 = AU.AU_NAMES.index("AU12"), AU.AU_NAMES.index("AU1")
    assert asg.au[0] == i12 and asg.consistency[0] == 1.0 and asg.detector[0]
    assert asg.au[1] == i1 and asg.consistency[1] == pytest.approx(on.mean()) and asg.detector[1]
    assert asg.hits[1, -1] == pytest.approx(1 - on.mean())  # the corner sits on no AU
    assert not asg.detector[2] and asg.consistency[2] < 0.5
    assert asg.au[3] == -1 and not asg.detector[3] and asg.n_active[3] == 0
    assert list(asg.detectors(i12)) == [0] and list(asg.detectors(i1)) == [1]
    assert asg.lift[0] > 10
    assert asg.mean_dist[0, i12] < 0.1
    assert np.allclose(asg.hits[:3].sum(1), 1.0)
    d = asg.to_dict()
    assert d["detectors"]["AU12"] == [0] and d["maps"][3]["au"] is None


@pytest.mark.parametrize("n", [3, 6])
def test_maps_of_noise_are_no_better_than_chance_where_chance_is_located_as_the_peaks_are(n):
    """A peak located through the cells' receptive-field centres lies near one of them (on a 3x3 layer,
    near one of 9 places): against the frame's pixels, maps of pure noise scored a lift of 1.5-1.6."""
    from ferkit.explain.analysis import null_peaks
    from ferkit.explain.deconv import cells_to_pixels, peak_cells

    g = 12 + np.arange(n) * 24 / (n - 1)  # the centres pulled inwards, as padding pulls a small network's
    centres = np.stack(np.meshgrid(g, g), -1)
    _, cells = peak_cells(np.random.default_rng(1).standard_normal((400, 64, n, n)).astype(np.float32))
    peaks, active = cells_to_pixels(cells, centres), np.ones((400, 64), bool)
    located = AU.assign(peaks, active, (48, 48), places=null_peaks(centres))
    pixels = AU.assign(peaks, active, (48, 48))
    assert np.median(located.lift) < 1.15 < 1.4 < np.median(pixels.lift)
    assert located.chance_places == 20000 and located.to_dict()["chance_over"].startswith("the peaks of 20000")
    assert not located.detector.any() and np.array_equal(null_peaks(centres), null_peaks(centres))  # (fixed seed)


def test_facs_check_verdicts():
    classes = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    A = len(AU.AU_NAMES)
    usage = np.full((7, A), np.nan)
    se = np.full((7, A), 0.05)
    i6, i12, i9 = (AU.AU_NAMES.index(n) for n in ("AU6", "AU12", "AU9"))
    usage[:, i12] = [-0.2, 0.0, -0.1, 0.9, -0.3, 0.0, -0.3]  # happy's, clearly
    usage[:, i6] = [0.0, 0.5, 0.0, 0.2, 0.0, 0.6, 0.0]  # above average on happy, but more on surprise, disgust
    usage[:, i9] = [0.0, -0.4, 0.0, 0.5, 0.0, 0.0, 0.02]  # disgust below average; happy unexpected
    rows, unexpected = facs_check(usage, se, np.zeros_like(usage), classes, np.ones(7, bool))
    v = {(r["class"], r["au"]): r["verdict"] for r in rows}
    assert v[("happy", "AU12")] == "agrees" and v[("happy", "AU6")] == "partly"
    assert v[("disgust", "AU9")] == "disagrees" and v[("sad", "AU1")] == "untested"
    assert v[("neutral", None)] == "agrees"  # 0.02 is within 2 SE of 0
    assert any(u["au"] == "AU9" and u["class"] == "happy" for u in unexpected)


# ---------------------------------------------------------------------------------------
# saliency
# ---------------------------------------------------------------------------------------
def test_gradcam_peaks_on_the_evidence():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1 / 9)
    lin = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    net = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), lin).eval()
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 9:12, 19:22] = 1.0  # evidence for class 0 centred at (x 20, y 10)
    centres = receptive_field_centres(net, "2", (1, 32, 32))
    cam = gradcam(net, x, "2", target=0, centres=centres)
    assert cam.maps.shape == (1, 32, 32) and cam.raw.shape == (1, 16, 16)
    y, xx = np.unravel_index(cam.maps[0].argmax(), (32, 32))
    assert abs(y - 10) <= 2 and abs(xx - 20) <= 2
    assert cam.maps[0].max() == pytest.approx(1.0) and cam.maps[0][:, :8].max() == 0
    assert cam.targets[0] == 0
    # class 1 is pushed down by the same pixels: nothing speaks for it
    assert gradcam(net, x, "2", target=1).maps[0].max() == 0
    g, t = guided_backprop(net, x, target=0)
    assert g.shape == (1, 1, 32, 32) and t[0] == 0
    assert np.abs(g[0, 0, 8:13, 18:23]).sum() > 0 and np.abs(g[0, 0, 20:, :]).sum() == 0
    # cells placed at their centres: a constant stays constant, a ramp across cells stays a ramp
    assert np.allclose(upsample(np.ones((1, 4, 4)), None, (16, 16)), 1.0)
    ramp = upsample(np.tile(np.arange(4.0), (1, 4, 1)), None, (16, 16))[0, 0]
    assert np.all(np.diff(ramp) >= 0) and ramp[0] == 0 and ramp[-1] == 3


# ---------------------------------------------------------------------------------------
# the commands
# ---------------------------------------------------------------------------------------
def test_explain_lists_layers(capsys):
    assert main(["explain", "--list-layers", "--model", "default"]) == 0
    out = capsys.readouterr().out
    # the default is vgg_fer-fer2013: its deconv / AU layer is the last 6x6 map, Grad-CAM's the last map
    assert "vgg_fer-fer2013" in out and "default for deconv" in out and "default for gradcam" in out
    assert "stages.8                     MaxPool2d        256x6x6          <- default for deconv" in out
    assert main(["explain", "--list-layers", "--model", "mini_xception-fer2013"]) == 0
    assert "modules_.2" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["deconv", "gradcam", "guided"])
def test_explain_writes_pictures_for_the_bundled_photo(method, tmp_path, capsys):
    argv = ["explain", str(EXAMPLE), "--method", method, "--out", str(tmp_path)]
    if method == "deconv":
        argv += ["--layer", "stages.4", "--maps", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 face" in out
    data = json.loads((tmp_path / f"astronaut_{method}.json").read_text())
    assert len(data["faces"]) == 1 and data["faces"][0]["label"] == "happy"
    assert (tmp_path / f"astronaut_face1_{method}.png").stat().st_size > 1000
    face = data["faces"][0]
    if method == "deconv":
        assert data["layer"] == "stages.4" and data["layer_shape"] == [128, 24, 24] and len(face["maps"]) == 4
        acts = [m["activation"] for m in face["maps"]]
        assert acts == sorted(acts, reverse=True) and acts[0] > 0
        assert all(0 <= v < 48 for m in face["maps"] for v in m["peak_xy"])
    else:
        assert data["layer"] == "stages.10" and face["explained"] == "happy"
        photo = Image.open(tmp_path / f"astronaut_{method}.png")
        assert photo.size == (data["width"], data["height"])
        # the peak is the centre of the strongest cell's tile, the cells tiling the face evenly (the first
        # maximal pixel of the upsampled map was on the border, beside a weaker cell; placed at their
        # receptive fields' centroids, 12 to 35 px, 6x6 cells filled the middle half of the face)
        cells = np.array(face["cam_cells"])
        assert cells.shape == (6, 6)
        r, c = np.unravel_index(cells.argmax(), cells.shape)
        assert face["cam_peak_xy"] == [round(8 * c + 3.5), round(8 * r + 3.5)]
        # the strongest cell's value, and how far it stands above the next (this face's top cells lie within
        # 5% of each other: the peak, and the AU near it, move with a re-encoding of the photo; said so)
        top = np.sort(cells.ravel())[::-1]
        assert face["cam_max"] == pytest.approx(top[0], abs=1e-5)
        assert face["cam_peak_margin"] == pytest.approx(1 - top[1] / top[0], abs=1e-3) and face["cam_peak_margin"] < 0.1
        assert "no single peak" in out and data["aligned"] is True
        cam = np.asarray(Image.open(tmp_path / f"astronaut_face1_{method}.png"))
        assert cam.std() > 20  # (a picture, not a flat tile)


def test_explain_deconvolves_the_maps_named(tmp_path, capsys):
    # an au-analysis report names detector maps ("AU5: map 15"); only the K strongest could be drawn
    from ferkit.explain import explain_image

    top = explain_image(EXAMPLE, None, layer="stages.4", maps=4)["faces"][0]["maps"]
    want = [top[2]["map"], top[0]["map"], 7]
    assert main(["explain", str(EXAMPLE), "--layer", "stages.4", "--map", ",".join(map(str, want)),
                 "--out", str(tmp_path)]) == 0
    got = json.loads((tmp_path / "astronaut_deconv.json").read_text())["faces"][0]["maps"]
    assert [r["map"] for r in got] == want  # in the order named
    assert [r["activation"] for r in got[:2]] == [top[2]["activation"], top[0]["activation"]]
    out = capsys.readouterr().out
    assert f"; maps: {want[0]} (" in out and "strongest" not in out
    for argv, msg in ((["--map", "128"], "layer stages.4 has 128 maps, 0..127: no map 128"),
                      (["--map", "1", "--maps", "3"], "give one of them"),
                      (["--map", "1", "--method", "gradcam"], "for --method deconv")):
        assert main(["explain", str(EXAMPLE), "--layer", "stages.4", "--out", str(tmp_path / "x"), *argv]) == 1
        assert msg in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["explain", str(EXAMPLE), "--map", "a,b", "--out", str(tmp_path / "x")])
    assert "feature map numbers separated by commas" in capsys.readouterr().err
    # in Python: any sequence of numbers; anything else a clear error (int('x') raised ValueError)
    assert [r["map"] for r in explain_image(EXAMPLE, None, layer="stages.4", maps=range(2))["faces"][0]["maps"]] \
        == [0, 1]
    for bad in (["x"], [None], [[1, 2]], [], [-1]):
        with pytest.raises(FerkitError, match="--map wants feature map numbers"):
            explain_image(EXAMPLE, None, layer="stages.4", maps=bad)


def test_an_empty_class_map_is_called_empty_not_a_peak(tmp_path, capsys):
    # the default model on the smiling astronaut: nothing at its last stage raises 'surprise' (ReLU leaves zeros)
    assert main(["explain", str(EXAMPLE), "--method", "gradcam", "--class", "surprise", "--layer", "stages.11",
                 "--out", str(tmp_path)]) == 0
    face = json.loads((tmp_path / "astronaut_gradcam.json").read_text())["faces"][0]
    assert face["explained"] == "surprise" and face["cam_peak_xy"] is None and face["cam_peak_au"] is None
    assert max(max(r) for r in face["cam_cells"]) <= 0
    out = capsys.readouterr().out
    assert "the Grad-CAM of 'surprise' is empty" in out and "peaks at" not in out
    assert main(["explain", str(EXAMPLE), "--method", "guided", "--class", "surprise", "--layer", "stages.11",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out  # guided: only its Grad-CAM factor is empty, not the guided-backprop panel
    assert "the Grad-CAM (and so guided Grad-CAM) of 'surprise' is empty" in out and "guided-backprop panel" in out


def test_explain_a_crop_without_detection(tmp_path):
    crop = tmp_path / "crop.png"
    Image.open(EXAMPLE).convert("L").crop((170, 50, 280, 180)).save(crop)
    # the action units named are the template's places: said to be rough where the faces are not aligned
    with pytest.warns(UserWarning, match="whole image is the face.*rough here"):
        assert main(["explain", str(crop), "--detector", "none", "--method", "gradcam", "--class", "sad",
                     "--out", str(tmp_path / "o")]) == 0
    data = json.loads((tmp_path / "o" / "crop_gradcam.json").read_text())
    assert data["faces"][0]["explained"] == "sad" and data["aligned"] is False
    # the map drawn back covers the image to its edges: the white outline on its last column and row (it
    # fell 5 px short on the 512 px photo)
    assert main(["explain", str(EXAMPLE), "--detector", "none", "--method", "gradcam", "--out", str(tmp_path / "w")]) == 0
    drawn = np.asarray(Image.open(tmp_path / "w" / "astronaut_gradcam.png").convert("RGB")).astype(int)
    assert drawn.shape[:2] == (512, 512) and (drawn[-1, 9:-9] > 200).all() and (drawn[9:-9, -1] > 200).all()
    # a strip 5000x1 (the picture of the whole photo shrinks to 1600x1, not to 1600x0)
    strip = tmp_path / "strip.png"
    Image.new("L", (5000, 1), 128).save(strip)
    assert main(["explain", str(strip), "--detector", "none", "--method", "gradcam", "--out", str(tmp_path / "s")]) == 0
    assert Image.open(tmp_path / "s" / "strip_gradcam.png").size == (1600, 1)


def test_explain_image_takes_what_the_recognizer_takes_and_refuses_bad_options(tmp_path):
    from ferkit.explain import explain_image

    crop = Image.open(EXAMPLE).convert("L").crop((170, 50, 280, 180))
    arr = np.asarray(crop)
    kw = {"detector": "none", "method": "gradcam", "model": "lite_cnn-fer2013"}
    by_path = tmp_path / "crop.png"
    crop.save(by_path)
    want = explain_image(by_path, tmp_path / "p", **kw)["faces"][0]["probabilities"]
    for src, name in ((arr, "ndarray"), (by_path.read_bytes(), "bytes"), (bytearray(by_path.read_bytes()), "bytes"),
                      (crop, "Image")):
        got = explain_image(src, tmp_path / name, **kw)
        assert got["source"] == name and got["faces"][0]["probabilities"] == want
        assert (tmp_path / name / f"{name}_gradcam.json").exists()
    (tmp_path / "file").write_text("x")
    for bad, says in (({"maps": "8"}, "--maps must be a whole number"), ({"maps": 1.5}, "--maps must be a whole"),
                      ({"out": tmp_path / "file"}, "is a file; name a folder"), ({"out": ""}, "give its path"),
                      ({"out": 3}, r"give its path \(or None for the arrays\), got 3")):
        args = {"out": tmp_path / "o", **kw, "method": "deconv", **bad}
        with pytest.raises(ferkit.FerkitError, match=says):
            explain_image(arr, **args)
    with pytest.raises(ferkit.FerkitError, match="batch_size must be a whole number"):
        ferkit.explain.analyse(ferkit.load_model("lite_cnn-fer2013"), None, batch_size=0)


@pytest.mark.parametrize("extra,msg", [
    (["--layer", "no_such_layer"], "no layer 'no_such_layer'"),
    (["--layer", "head.weight"], "no layer"),
    (["--class", "bored", "--method", "gradcam"], "unknown class 'bored'"),
    (["--class", "surprise"], "--class explains one class with --method gradcam or guided"),  # deconv: no class
    (["--min-face", "100000"], "the smallest face searched for (--min-face 100000) is larger than this 512x512 image"),
])
def test_explain_errors_are_clear(extra, msg, tmp_path, capsys):
    assert main(["explain", str(EXAMPLE), "--out", str(tmp_path), *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ferkit: error: ") and msg in err and "Traceback" not in err


def test_explain_bad_image_and_no_face(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    assert main(["explain", str(bad), "--out", str(tmp_path)]) == 1
    assert "not an image" in capsys.readouterr().err
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 160), (128, 128, 128)).save(blank)
    assert main(["explain", str(blank), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no face found" in err and "Traceback" not in err
    assert main(["explain", "--out", str(tmp_path)]) == 1
    assert "give an IMAGE" in capsys.readouterr().err
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    assert main(["explain", str(clip), "--out", str(tmp_path)]) == 1
    assert "a video; explain reads one image (ferkit predict reads videos" in capsys.readouterr().err


def _check_report(out, n):
    for f in ("report.md", "report.json", "map_au_heatmap.png", "class_au_usage.png", "au_locations.png",
              "peak_density.png"):
        assert (out / f).is_file(), f
    data = json.loads((out / "report.json").read_text())
    assert data["n_images"] == n and data["layer"]["name"] == "modules_.2" and data["n_maps"] == 128
    hits = np.array(data["hits"])
    assert hits.shape == (128, len(AU.AU_NAMES) + 1)
    fired = np.array([m["n_active"] for m in data["assignment"]["maps"]]) > 0
    assert np.allclose(hits[fired].sum(1), 1.0, atol=1e-3)
    verdicts = {r["verdict"] for r in data["facs_check"]}
    assert verdicts <= {"agrees", "partly", "no difference", "disagrees", "untested"}
    md = (out / "report.md").read_text()
    assert "## Check against FACS" in md and "happy" in md
    return data


def test_au_analysis_on_a_generated_dataset(tmp_path, capsys, monkeypatch):
    import ferkit.explain.analysis as A

    folders, _, _ = make_fer2013(tmp_path)
    out = tmp_path / "au"
    seen = []
    write_report = A.write_report
    monkeypatch.setattr(A, "write_report", lambda res, *a, **kw: seen.append(res) or write_report(res, *a, **kw))
    assert main(["au-analysis", "--model", "mini_xception-fer2013", "--dataset", "fer2013", "--data", str(folders),
                 "--split", "PublicTest", "--out", str(out), "--no-progress", "--maps-per-au", "1",
                 "--top-images", "4"]) == 0
    said = capsys.readouterr().out
    assert "maps are AU detectors" in said and "note: 14 images only" in said
    _check_report(out, 14)
    # a report on few images says so itself (it was said on the terminal only; the report is what is shared)
    assert json.loads((out / "report.json").read_text())["note"].startswith("14 images only: a map's consistency")
    assert "**Note: 14 images only" in (out / "report.md").read_text()
    # the report again, failing at a late picture: the earlier report stays whole (not a new report.json
    # beside the old report.md), and no temporary file is left
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def fails(res, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(A, "_fig_peak_density", fails)
    with pytest.raises(OSError, match="No space left"):
        write_report(seen[0], out, command="ferkit au-analysis (another run)")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_au_analysis_options_reach_the_report(tmp_path, capsys):
    # --limit/--seed pick a fixed subset, --locate/--radius/--min-consistency set the rule that
    # makes a map an AU detector: each lands in report.json and holds for every map
    folders, _, _ = make_fer2013(tmp_path, {"Training": 1, "PublicTest": 3, "PrivateTest": 1})

    def run(out, seed):
        assert main(["au-analysis", "--model", "mini_xception-fer2013", "--dataset", "fer2013", "--data", str(folders),
                     "--split", "PublicTest", "--out", str(tmp_path / out), "--no-progress", "--maps-per-au", "1",
                     "--top-images", "2", "--limit", "12", "--seed", str(seed), "--locate", "deconv", "--radius", "0.3",
                     "--min-consistency", "0.9"]) == 0
        return json.loads((tmp_path / out / "report.json").read_text())

    a, b, c = run("a", 3), run("b", 3), run("c", 4)
    assert "replacing" not in capsys.readouterr().out
    assert run("c", 4)["hits"] == c["hits"]  # again into the same folder: the earlier report's files replaced, said
    cap = capsys.readouterr()
    assert "report.md (replacing the earlier file)" in cap.out and "held an earlier report" in cap.err
    assert (a["n_images"], a["n_images_in_split"], a["locate"]) == (12, 21, "deconv")
    rule = a["assignment"]
    assert (rule["radius"], rule["min_consistency"]) == (0.3, 0.9)
    assert all(m["detector"] == (m["au"] is not None and m["consistency"] >= 0.9) for m in rule["maps"])
    assert a["n_detectors"] == sum(m["detector"] for m in rule["maps"])
    assert a["hits"] == b["hits"] and a["hits"] != c["hits"]  # the same subset for a seed, another for another
    # the command that ran, also through main(argv) (it was recorded only from a `ferkit` process)
    assert a["command"].startswith("ferkit au-analysis --model mini_xception-fer2013") and "--seed 3" in a["command"]
    capsys.readouterr()


def test_au_analysis_says_which_classes_it_left_out(tmp_path, capsys):
    # CK+'s contempt is no class of a FER2013 model: its images are left out, said, and --limit
    # draws from the others (it counted them, and analysed fewer than asked)
    from conftest import make_ckplus

    data = make_ckplus(tmp_path, subjects=10)
    out = tmp_path / "au"
    assert main(["au-analysis", "--model", "mini_xception-fer2013", "--dataset", "ckplus", "--data", str(data),
                 "--split", "all", "--out", str(out), "--no-progress", "--maps-per-au", "1", "--top-images", "2",
                 "--limit", "8"]) == 0
    said = capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    gone = rep["left_out_classes"]
    assert list(gone) == ["contempt"] and f"left out {gone['contempt']} image(s)" in said
    assert rep["n_images"] == 8 and rep["n_images_in_split"] > 8
    md = (out / "report.md").read_text()
    assert "of classes the model knows); left out: " in md and f"contempt {gone['contempt']}" in md
    # a file that cannot be read, skipped with --skip-bad: in the report too, not only on the console
    bad = next((data / "happy").glob("*.png"))
    bad.write_bytes(b"not a png")
    out2 = tmp_path / "au2"
    with pytest.warns(UserWarning, match="left out 1 item"):
        assert main(["au-analysis", "--model", "mini_xception-fer2013", "--dataset", "ckplus", "--data", str(data),
                     "--split", "all", "--out", str(out2), "--no-progress", "--maps-per-au", "1", "--top-images",
                     "2", "--limit", "8", "--skip-bad"]) == 0
    rep = json.loads((out2 / "report.json").read_text())
    assert [f["source"] for f in rep["skipped_files"]] == [str(bad)]
    assert "1 file(s) could not be read and were skipped" in (out2 / "report.md").read_text()


def test_au_analysis_errors(tmp_path, capsys):
    folders, _, _ = make_fer2013(tmp_path)
    assert main(["au-analysis", "--dataset", "fer2013", "--data", str(folders), "--out", str(tmp_path / "o"),
                 "--layer", "nope", "--no-progress"]) == 1
    assert "no layer 'nope'" in capsys.readouterr().err
    assert main(["au-analysis", "--dataset", "fer2013", "--data", str(folders), "--out", str(tmp_path / "o"),
                 "--limit", "0"]) == 1
    assert "--limit" in capsys.readouterr().err
    # a bad --radius is said at once, before the model loads and the split is read (not after)
    for r in ("-1", "0", "inf"):
        assert main(["au-analysis", "--dataset", "fer2013", "--data", str(tmp_path / "absent"), "--out",
                     str(tmp_path / "o"), "--radius", r]) == 1
        assert "--radius must be a positive number" in capsys.readouterr().err


@requires_shared
def test_au_analysis_on_fer2013_public_test(tmp_path):
    out = tmp_path / "au"
    # the model docs/au-analysis reports on (the default until 2026-12-04)
    assert main(["au-analysis", "--model", "mini_xception-fer2013", "--dataset", "fer2013",
                 "--data", str(SHARED / "fer2013"),
                 "--split", "PublicTest", "--limit", "200", "--out", str(out), "--no-progress",
                 "--maps-per-au", "1", "--top-images", "8"]) == 0
    data = _check_report(out, 200)
    assert data["n_images_in_split"] == 3589 and data["accuracy"] > 0.5
    assert sum(data["per_class_n"].values()) == 200
    # maps peak on the face, near the AUs, far more often than a random point would
    none = np.array(data["hits"])[:, -1].mean()
    assert none < data["assignment"]["chance"]["none"]
    assert data["n_detectors"] >= 1
    assert all(f.stat().st_size < 600_000 for f in out.glob("*.png"))


def test_explain_says_when_it_replaces_earlier_outputs(tmp_path, capsys):
    for i in range(2):
        assert main(["explain", str(EXAMPLE), "--method", "gradcam", "--out", str(tmp_path / "o")]) == 0
        wrote = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("wrote ")]
        assert len(wrote) == 3 and all(ln.endswith(" (replacing the earlier file)") == (i == 1) for ln in wrote)


def test_explain_writes_all_its_files_or_none(tmp_path, capsys):
    # the photo's picture (written after the face's) cannot be written, its name being a folder:
    # the face's picture is not left behind alone, and no temporary file either
    crop = tmp_path / "crop.png"
    Image.open(EXAMPLE).convert("L").crop((170, 50, 280, 180)).save(crop)
    run = ["explain", str(crop), "--detector", "none", "--method", "gradcam", "--out", str(tmp_path / "o")]
    out = tmp_path / "o"
    (out / "crop_gradcam.png").mkdir(parents=True)
    assert main(run) == 1
    err = capsys.readouterr().err
    assert f"cannot write {out / 'crop_gradcam.png'}: it is a folder; nothing was written" in err
    assert "Traceback" not in err
    assert [p.name for p in out.iterdir()] == ["crop_gradcam.png"]
    # a rerun over a good earlier run that fails late keeps that run's files as they were
    (out / "crop_gradcam.png").rmdir()
    assert main(run) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["crop_face1_gradcam.png", "crop_gradcam.json", "crop_gradcam.png"]
    (out / "crop_gradcam.json").unlink()
    (out / "crop_gradcam.json").mkdir()
    assert main([*run, "--class", "sad"]) == 1  # (other pictures than the earlier ones)
    assert "crop_gradcam.json: it is a folder" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == {k: v for k, v in before.items() if k != "crop_gradcam.json"}
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # (no temporary file left)


def test_au_analysis_refuses_an_unknown_layer_before_reading_the_data(tmp_path, capsys, monkeypatch):
    """A wrong --layer is said at once: it was said only after the whole split was decoded (minutes on
    FER2013)."""
    import ferkit.data as D

    opened = []
    monkeypatch.setattr(D, "open_dataset", lambda *a, **kw: opened.append(a) or pytest.fail("data read first"))
    assert main(["au-analysis", "--model", "mini_xception-fer2013", "--dataset", "fer2013", "--data", str(tmp_path),
                 "--layer", "nosuch", "--out", str(tmp_path / "au"), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "nosuch" in err and "Traceback" not in err and not opened


def test_the_low_level_functions_say_what_is_wrong_in_ferkits_words():
    """gradcam/guided_backprop/project raised torch's own errors from deep inside (AttributeError on a
    layer name, IndexError on a map, "expected scalar type Byte" on uint8 faces)."""
    from ferkit.api import load_model
    from ferkit.explain import gradcam, guided_backprop, project

    m = load_model("mini_xception-fer2013", backend="torch")
    x = torch.zeros(2, 1, 48, 48)
    layer = "modules_.2"
    for call, msg in [
        (lambda: gradcam(m.net, x, "nope"), "no layer 'nope' in this network"),
        (lambda: gradcam(m.net, x, layer, target=99), r"target must be one class index or one per image \(2\), each 0..6"),
        (lambda: gradcam(m.net, x, layer, target="happy"), r"model.classes.index\('happy'\)"),
        (lambda: gradcam(m, x, layer), "net must be the network .*model.net.*not a ExpressionModel"),
        # an onnxruntime model's .net (the default backend on a CPU): said what to do, not "not a NoneType"
        (lambda: gradcam(None, x, layer), r"net is None: the model runs on onnxruntime.*backend='torch'"),
        (lambda: gradcam(m.net, x.to(torch.uint8), layer), "x must be a float tensor"),
        (lambda: guided_backprop(m.net, x[0]), "x must be a float tensor"),
        (lambda: project(m.net, x, layer, [9999]), r"maps must be feature maps of modules_.2 \(0\.\."),
        (lambda: project(m.net, x, layer, [0], samples=[5]), "samples must index the 2 image"),
    ]:
        with pytest.raises(ferkit.FerkitError, match=msg):
            call()
    assert gradcam(m.net, x, layer, target=[1, 2]).targets.tolist() == [1, 2]  # (valid ones still work)


def test_pictures_carry_their_key_and_the_photo_numbers_its_faces(tmp_path):
    """The Grad-CAM and deconv pictures had no key (what the colours and marks mean, each map scaled to
    its own maximum), and the whole photo's overlay did not number its faces as the per-face files do."""
    from ferkit.explain import render

    tiles = [np.full((48, 48), 128, np.uint8)] * 3
    render.grid(tiles, ["a", "b", "c"], tmp_path / "bare.png", ncols=3)
    render.grid(tiles, ["a", "b", "c"], tmp_path / "key.png", ncols=3, note="Colours: blue 0, red the largest. " * 4)
    bare, key = (np.asarray(Image.open(tmp_path / f"{n}.png").convert("L")) for n in ("bare", "key"))
    assert key.shape[0] > bare.shape[0] and (key[bare.shape[0]:] < 128).any()  # the key's text, under the tiles
    photo = np.full((300, 400, 3), 200, np.uint8)
    m = np.array([[0.5, 0.0, -50.0], [0.0, 0.5, -50.0]])  # photo (100..196, 100..196) -> a 48x48 crop
    plain = render.paste_back(photo, np.zeros((48, 48)), m)
    named = render.paste_back(photo, np.zeros((48, 48)), m, label="2")
    diff = np.argwhere((plain != named).any(2))
    assert len(diff) > 50 and diff[:, 0].max() < 110 and diff[:, 1].min() >= 95  # by the outline's top corner
    assert (named[diff[:, 0], diff[:, 1]] == 0).all(1).any()  # (white on black)


def test_pictures_carry_a_colour_bar_drawn_by_the_maps_own_colour_map(tmp_path):
    """The key named the colours in words only: a colour bar now shows the scale (blue 0 to red max for
    Grad-CAM, dark to light through gray 0 for deconv projections), drawn by the maps' own functions."""
    from ferkit.explain import render

    heat = render.ColourBar("heat", ("0", "", "max")).strip()
    assert heat.shape == (1, 256, 3) and heat.dtype == np.uint8
    assert (heat[0, 0] == render.heat(np.zeros((1, 1)))[0, 0]).all() and heat[0, 0, 2] > 100 > heat[0, 0, 0]  # blue
    assert heat[0, -1, 0] > 100 > heat[0, -1, 2]  # red
    signed = render.ColourBar("signed", ("-max", "0", "+max")).strip()
    assert signed[0, 0].max() < 5 and signed[0, -1].min() > 250 and abs(int(signed[0, 128, 0]) - 128) <= 2
    with pytest.raises(ValueError, match="heat"):
        render.ColourBar("rainbow", ("", "", ""))
    tiles = [np.full((48, 48), 128, np.uint8)] * 3
    render.grid(tiles, ["a", "b", "c"], tmp_path / "key.png", ncols=3, note="Colours: blue 0, red the largest.")
    render.grid(tiles, ["a", "b", "c"], tmp_path / "bar.png", ncols=3, note="Colours: blue 0, red the largest.",
                bar=render.ColourBar("heat", ("0", "", "max")))
    key, bar = (np.asarray(Image.open(tmp_path / f"{n}.png").convert("RGB")).astype(int) for n in ("key", "bar"))
    assert bar.shape[0] > key.shape[0] and bar.shape[1] == key.shape[1]
    below = bar[key.shape[0] // 2:]  # the bar lies under the tiles: strongly blue and strongly red pixels
    assert ((below[..., 2] > 200) & (below[..., 0] < 60)).sum() > 20
    assert ((below[..., 0] > 200) & (below[..., 2] < 60)).sum() > 20
    assert not ((key[..., 0] > 200) & (key[..., 2] < 60)).any()  # (none without it)


def test_the_photo_overlay_has_a_colour_key_clear_of_the_faces(tmp_path):
    """<stem>_gradcam.png (the maps drawn back onto the photo) had no colour key: a small one now sits in a
    corner that covers no face's outline, and none where every corner would."""
    from ferkit.explain import render

    bar = render.ColourBar("heat", ("0", "", "max"))
    photo = np.full((300, 400, 3), 200, np.uint8)
    reds = lambda a: (a[..., 0] > 200) & (a[..., 2] < 60)  # noqa: E731  (the strip's red end)
    free = render.corner_key(photo, bar, "each face's own scale")
    changed = np.argwhere((free != photo).any(2))
    assert changed[:, 0].min() > 200 and changed[:, 1].min() > 250  # bottom right, small
    assert reds(free).sum() > 10 and ((free[..., 2] > 200) & (free[..., 0] < 60)).sum() > 10  # red and blue ends
    # a face in the bottom right: the bottom left instead; faces in every corner (or everywhere): no key
    moved = render.corner_key(photo, bar, "x", avoid=[(300, 200, 100, 100)])
    changed = np.argwhere((moved != photo).any(2))
    assert changed[:, 0].min() > 200 and changed[:, 1].max() < 150
    assert (render.corner_key(photo, bar, avoid=[(0, 0, 400, 300)]) == photo).all()
    assert (render.corner_key(np.zeros((8, 8, 3), np.uint8), bar) == 0).all()  # too small for one
    m = np.array([[0.5, 0.0, -50.0], [0.0, 0.5, -50.0]])  # photo (100..196, 100..196) -> a 48x48 crop
    assert np.allclose(render.outline_box(m, (48, 48)), (100, 100, 96, 96))
    # explain's photo: the key in the bottom right (the astronaut's face is at the top), the face left as drawn
    assert main(["explain", str(EXAMPLE), "--method", "gradcam", "--out", str(tmp_path / "o")]) == 0
    got = np.asarray(Image.open(tmp_path / "o" / "astronaut_gradcam.png").convert("RGB")).astype(int)
    assert reds(got[440:, 300:]).sum() > 10 and reds(got[:440]).sum() > 0  # the key's red, and the face's map
    res = ferkit.explain.explain_image(str(EXAMPLE), None, method="gradcam")
    assert (res["overlay"][440:, 300:] == got[440:, 300:]).all()  # the arrays' overlay has it too


def test_an_earlier_runs_pictures_of_more_faces_are_said(tmp_path, capsys):
    """explain two.jpg, then again with --max-faces 1 into the same folder: two_face2_gradcam.png stayed,
    unsaid, beside a JSON that lists one face."""
    arr = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    Image.fromarray(np.concatenate([arr, arr[:, ::-1]], axis=1)).save(tmp_path / "two.jpg")
    out = tmp_path / "o"
    assert main(["explain", str(tmp_path / "two.jpg"), "--method", "gradcam", "--out", str(out)]) == 0
    assert "earlier run" not in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "two.jpg"), "--method", "gradcam", "--max-faces", "1",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 picture(s) in" in err and "(two_face2_gradcam.png)" in err and "lists 1 face)" in err
    assert len(json.loads((out / "two_gradcam.json").read_text())["faces"]) == 1


def test_explain_image_gives_the_arrays_without_writing_with_out_none(tmp_path, monkeypatch):
    """A notebook's user wanted the heat map itself: explain_image wrote files only."""
    from ferkit.explain import explain_image

    monkeypatch.chdir(tmp_path)
    res = explain_image(str(EXAMPLE), None, method="gradcam", model="mini_xception-fer2013")
    assert list(tmp_path.iterdir()) == []  # nothing written
    f = res["faces"][0]
    assert "png" not in f and "files" not in res and f["label"] == "happy"
    assert f["map"].shape == (48, 48) and f["map"].dtype == np.float32 and 0 <= f["map"].min() and f["map"].max() == 1
    assert f["crop"].shape == (48, 48) and f["crop"].dtype == np.uint8
    assert res["overlay"].shape == (512, 512, 3) and res["overlay"].dtype == np.uint8
    # the same map as the files' run draws (its JSON's cells, upsampled)
    written = explain_image(str(EXAMPLE), tmp_path / "o", method="gradcam", model="mini_xception-fer2013")
    assert written["faces"][0]["cam_cells"] == f["cam_cells"]
    got = np.asarray(Image.open(tmp_path / "o" / "astronaut_gradcam.png").convert("RGB"))
    assert np.abs(got.astype(int) - res["overlay"].astype(int)).max() <= 1
    deconv = explain_image(str(EXAMPLE), None, method="deconv", maps=3, model="mini_xception-fer2013")
    proj = deconv["faces"][0]["projections"]
    assert len(proj) == 3 and all(p.shape == (48, 48, 3) and p.dtype == np.uint8 for p in proj)
    assert "overlay" not in deconv


def test_the_terminal_names_every_map_asked_for_up_to_ten(tmp_path, capsys):
    """`explain --maps 8` listed 5 maps on the terminal, without a word of the other 3 in the picture and JSON."""
    from ferkit.explain.commands import SHOWN_MAPS

    for n in (8, SHOWN_MAPS + 2):
        assert main(["explain", str(EXAMPLE), "--method", "deconv", "--maps", str(n), "--model", "mini_xception-fer2013",
                     "--out", str(tmp_path / str(n))]) == 0
        line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  face 1:"))
        named = line.split("; strongest maps: ")[1].split(", and ")[0].count(" (")
        assert named == min(n, SHOWN_MAPS), line
        assert ("and 2 more (the picture and the JSON have all)" in line) is (n > SHOWN_MAPS)


def test_an_onnx_model_is_explained_only_by_its_own_weights(tmp_path):
    """A model on onnxruntime was reloaded for its gradients by its card's name: a file of one's own whose card
    kept a shipped name was explained with the shipped weights (their answer, not the file's), in silence. A
    shipped model's own weights are reloaded; another's are refused, with how to load them."""
    import shutil

    from ferkit.explain.image import explain_image, torch_model
    from ferkit.weights import SHIPPED_DIR, load_state

    shipped = ferkit.load_model("zhu_cnn-fer2013", backend="onnx")
    assert torch_model(shipped).card["name"] == "zhu_cnn-fer2013"
    mine = tmp_path / "mine.safetensors"
    shutil.copy(SHIPPED_DIR / "zhu_cnn-fer2013.json", tmp_path / "mine.json")
    from safetensors.torch import save_file

    state = load_state(SHIPPED_DIR / "zhu_cnn-fer2013.safetensors", shipped.card)
    save_file({k: (v.flip(0) if v.ndim and v.shape[0] == 7 else v).contiguous() for k, v in state.items()}, str(mine))
    theirs = ferkit.load_model(str(mine), backend="onnx")
    with pytest.raises(ferkit.FerkitError, match=r"runs on onnx, and explanations need its PyTorch network: load it "
                                                 r"with ferkit.load_model\(<its weights>, backend='torch'\)"):
        explain_image(str(EXAMPLE), None, model=theirs, method="gradcam")
    own = explain_image(str(EXAMPLE), None, model=ferkit.load_model(str(mine), backend="torch"), method="gradcam")
    assert own is not None


def test_a_map_that_does_not_fire_has_no_peak_and_a_map_named_twice_is_refused(tmp_path, capsys):
    """A feature map silent on the face got a peak (the corner of its flat projection), a cell and an AU
    distance made of it; its fields are null now. --map 3,3 projected one map twice."""
    out = tmp_path / "o"
    assert main(["explain", str(EXAMPLE), "--layer", "stages.10", "--map", "176,3", "--out", str(out)]) == 0
    maps = json.loads((out / "astronaut_deconv.json").read_text())["faces"][0]["maps"]
    silent, firing = maps
    assert silent["activation"] == 0 and all(silent[k] is None for k in ("cell", "rf_centre_xy", "peak_xy",
                                                                           "nearest_au", "au_distance"))
    assert firing["activation"] > 0 and firing["peak_xy"] is not None
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["explain", str(EXAMPLE), "--map", "3,3", "--out", str(out)])
    assert "feature map numbers named more than once" in capsys.readouterr().err
    # --min-face with --detector none: said to do nothing (it was taken in silence)
    assert main(["explain", str(EXAMPLE), "--detector", "none", "--min-face", "100", "--method", "gradcam", "--out",
                 str(tmp_path / "g")]) == 0
    assert "--min-face does nothing with --detector none" in capsys.readouterr().err
