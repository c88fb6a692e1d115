"""The architecture registry and mini-Xception as Li et al. 2022 describe it."""

from __future__ import annotations

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
    with pytest.raises(ModelError, match="bad model option"):
        create("mini_xception", depth=3)


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
