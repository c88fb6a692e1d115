"""Detecting a degraded split and finding clean twins of degraded images."""

from __future__ import annotations

import numpy as np
import torch
from conftest import face_like

from ferkit.data.restore import estimate_sigma, gaussian_blur, match_degraded, sharpness, shift_warnings, split_stats


def _faces(n, seed=0):
    rng = np.random.default_rng(seed)
    imgs = []
    for i in range(n):
        a = face_like(i % 7, rng).astype(np.float64)
        a += rng.normal(0, 25, a.shape)  # texture so images differ beyond the blob
        imgs.append(np.clip(a, 0, 255))
    return torch.from_numpy(np.stack(imgs)).float().unsqueeze(1)


def test_blur_lowers_sharpness_and_shift_is_reported():
    x = _faces(40)
    b = gaussian_blur(x, 2.5)
    assert sharpness(b).median() < 0.5 * sharpness(x).median()
    assert torch.allclose(gaussian_blur(x, 0), x)
    warns = shift_warnings([split_stats(b, "Training"), split_stats(x, "PublicTest"), split_stats(x, "PrivateTest")])
    assert len(warns) >= 1 and warns[0].startswith("split Training: images are blurrier")
    assert shift_warnings([split_stats(x, "a"), split_stats(x.flip(-1), "b")]) == []


def test_match_recovers_the_twins_and_rejects_strangers():
    clean = _faces(60, seed=1)
    perm = torch.randperm(60, generator=torch.Generator().manual_seed(0))[:40]
    rng = torch.Generator().manual_seed(1)
    degraded = (gaussian_blur(clean[perm], 2.0) + torch.randn(40, 1, 48, 48, generator=rng) * 2).round().clamp(0, 255)
    strangers = gaussian_blur(_faces(5, seed=99), 2.0)
    assert abs(estimate_sigma(degraded, clean) - 2.0) <= 0.2
    res = match_degraded(torch.cat([degraded, strangers]), clean, sigma=None, max_rmse=4.0)
    assert res.index[:40].tolist() == perm.tolist()
    assert (res.index[40:] == -1).all() and res.matched == 40
