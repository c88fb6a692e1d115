from __future__ import annotations

import pytest
import torch

from ferkit.data.transforms import AugmentConfig, augment, normalize, to_float, tta_views


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(8, 1, 48, 48, generator=g)


def test_no_augmentation_is_identity_and_flip_is_a_mirror():
    x = _batch()
    assert torch.equal(augment(x.clone(), AugmentConfig.none(), torch.Generator().manual_seed(1)), x)
    flip = AugmentConfig.none()
    flip.flip = 1.0
    y = augment(x.clone(), flip, torch.Generator().manual_seed(1))
    assert torch.allclose(y, x.flip(-1), atol=1e-5)


def test_augmentation_is_seeded_and_stays_in_range():
    x = _batch()
    a = augment(x.clone(), AugmentConfig(), torch.Generator().manual_seed(3))
    b = augment(x.clone(), AugmentConfig(), torch.Generator().manual_seed(3))
    c = augment(x.clone(), AugmentConfig(), torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and a.shape == x.shape


def test_erasing_fills_one_rectangle():
    cfg = AugmentConfig.none()
    cfg.erase = 1.0
    x = torch.zeros(4, 1, 48, 48) + 0.5
    y = augment(x.clone(), cfg, torch.Generator().manual_seed(0))
    for img in y[:, 0]:
        changed = (img != 0.5).nonzero()
        ys, xs = changed[:, 0], changed[:, 1]
        area = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        assert len(changed) == area  # a filled rectangle
        assert 0.02 * 48 * 48 * 0.5 <= area <= 0.2 * 48 * 48 * 1.5


def test_tta_views_and_normalize():
    x = _batch()
    assert len(tta_views(x, None)) == 1 and len(tta_views(x, "flip")) == 2 and len(tta_views(x, "tencrop")) == 10
    assert all(v.shape == x.shape for v in tta_views(x, "tencrop"))
    assert torch.equal(tta_views(x, "flip")[1], x.flip(-1))
    # tencrop's geometry, on a ramp whose value tells where a pixel came from (column + 100 x row):
    # 43x43 crops (90% of 48) at the four corners and the centre, resized back to 48x48, each then mirrored
    r = torch.arange(48.0)
    ramp = (r[None, :] + 100 * r[:, None])[None, None]
    views = tta_views(ramp, "tencrop")
    for k, (oy, ox) in enumerate([(0, 0), (0, 5), (5, 0), (5, 5), (2, 2)]):
        v, m = views[2 * k][0, 0], views[2 * k + 1][0, 0]
        first, last = ox + 100 * oy, ox + 42 + 100 * (oy + 42)  # the crop's top-left and bottom-right pixels
        assert (float(v[0, 0]), float(v[-1, -1])) == pytest.approx((first, last)), k
        assert float(v.mean()) == pytest.approx((first + last) / 2, abs=1e-3), k
        assert torch.equal(m, v.flip(-1)), k
    u = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    assert torch.equal(normalize(to_float(u), (0.5,), (0.25,)), torch.full((1, 1, 2, 2), 2.0))
