from __future__ import annotations

import math

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


def _only(**kw) -> AugmentConfig:
    cfg = AugmentConfig.none()
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _centroid(img: torch.Tensor) -> tuple[float, float]:
    w = img / img.sum()
    ys, xs = torch.meshgrid(torch.arange(img.shape[0]).float(), torch.arange(img.shape[1]).float(), indexing="ij")
    return float((w * ys).sum()), float((w * xs).sum())


def test_each_augmentation_alone_does_what_its_setting_says():
    g = torch.Generator().manual_seed(0)
    n = 64
    # brightness alone: a constant image stays constant, moved by at most brightness / 2
    flat = torch.full((n, 1, 48, 48), 0.5)
    y = augment(flat.clone(), _only(brightness=0.3), g)
    per = y.amax((1, 2, 3))
    assert torch.equal(y.amin((1, 2, 3)), per) and (per - 0.5).abs().max() <= 0.15 + 1e-6
    assert (per - 0.5).abs().max() > 0.1  # and it does move them
    # contrast alone: the mean stays, the spread scales by at most 1 +- contrast
    x = _batch()
    y = augment(x.clone(), _only(contrast=0.3), g)
    assert torch.allclose(y.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=0.02)
    ratio = y.std((1, 2, 3)) / x.std((1, 2, 3))
    assert ratio.min() >= 0.7 - 0.01 and ratio.max() <= 1.3 + 0.01 and ratio.max() - ratio.min() > 0.2
    # shift alone: a bright square moves by at most 10% of the size, and does move
    spot = torch.zeros(n, 1, 48, 48)
    spot[..., 22:26, 22:26] = 1.0
    y = augment(spot.clone(), _only(shift=0.1), g)
    moves = [(_centroid(img[0])[0] - 23.5, _centroid(img[0])[1] - 23.5) for img in y]
    assert max(max(abs(dy), abs(dx)) for dy, dx in moves) <= 4.8 + 0.3
    assert max(max(abs(dy), abs(dx)) for dy, dx in moves) > 2
    # rotation alone: the centre stays where it is; a spot off the centre keeps its distance from it
    y = augment(spot.clone(), _only(rotate=15.0), g)
    assert all(abs(c - 23.5) < 0.3 for img in y for c in _centroid(img[0]))
    off = torch.zeros(n, 1, 48, 48)
    off[..., 22:26, 36:40] = 1.0  # 14 px right of the centre
    y = augment(off.clone(), _only(rotate=15.0), g)
    cents = [_centroid(img[0]) for img in y]
    radii = [((cy - 23.5) ** 2 + (cx - 23.5) ** 2) ** 0.5 for cy, cx in cents]
    angles = [math.degrees(math.atan2(cy - 23.5, cx - 23.5)) for cy, cx in cents]
    assert all(abs(r - 14) < 0.6 for r in radii)
    assert max(abs(a) for a in angles) <= 15.5 and max(abs(a) for a in angles) > 5
    # scale alone: the spot stays centred and grows or shrinks by at most 15%
    big = torch.zeros(n, 1, 48, 48)
    big[..., 14:34, 14:34] = 1.0  # 20x20
    y = augment(big.clone(), _only(scale=0.15), g)
    areas = (y > 0.5).sum((1, 2, 3)).float() / 400
    assert areas.min() >= (1 / 1.15) ** 2 - 0.1 and areas.max() <= (1 / 0.85) ** 2 + 0.1
    assert areas.max() - areas.min() > 0.2
