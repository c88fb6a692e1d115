"""Detect degraded dataset splits, and recover clean pixels of the same faces from another copy.

Why this exists: on the machines ferkit is developed on, the FER2013 image-folder release has
its ``Training`` JPEGs Gaussian-blurred (sigma ~3.4 px at 48x48) while ``PublicTest`` and
``PrivateTest`` are sharp. A network trained on such a split does not transfer to sharp faces
(test splits, real photos). :func:`split_stats` / ``ferkit data --check`` detect this kind of
train/test shift, and the trainer warns about it.

FER+ (Microsoft's relabelling) ships the same FER2013 faces as sharp PNGs, and its
``FER2013Train`` folder holds only rows of FER2013's ``Training`` usage (see ``fer2013new.csv``),
never a PublicTest/PrivateTest face. :func:`match_degraded` finds, for each degraded image, its
clean twin among such candidates: blur the candidates the same way, shortlist by a normalised
low-resolution correlation, and accept the best candidate when its full-resolution RMSE to the
degraded image is at the level of JPEG noise. Labels stay those of the degraded dataset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a float batch ``[N, C, H, W]`` (replicate padding)."""
    if sigma <= 0:
        return x
    r = int(math.ceil(3 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype) ** 2 / (2 * sigma * sigma))
    k = (k / k.sum()).to(x.device)
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def sharpness(images: torch.Tensor) -> torch.Tensor:
    """Per-image sharpness: mean absolute horizontal gradient over the image's std.

    Scale-free (contrast does not change it). Sharp 48x48 FER faces score ~0.25; the same
    faces blurred with sigma 3.4 score ~0.10."""
    x = images.float()
    grad = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    return grad / (x.std(dim=(1, 2, 3)) + 1e-6)


@dataclass
class SplitStats:
    split: str
    n: int
    sharpness: float  #: median per-image sharpness
    contrast: float  #: median per-image pixel std (0..255)
    brightness: float  #: median per-image mean (0..255)


def split_stats(images: torch.Tensor, split: str, sample: int = 2000, seed: int = 0) -> SplitStats:
    n = images.shape[0]
    idx = torch.from_numpy(np.sort(np.random.default_rng(seed).permutation(n)[:sample]))
    x = images[idx].float()
    return SplitStats(split, n, float(sharpness(x).median()), float(x.std(dim=(1, 2, 3)).median()),
                      float(x.mean(dim=(1, 2, 3)).median()))


def shift_warnings(stats: list[SplitStats], ratio: float = 1.5) -> list[str]:
    """Human-readable warnings for splits whose sharpness or contrast differ a lot from the rest."""
    out = []
    for s in stats:
        others = [o for o in stats if o is not s]
        if not others:
            continue
        ref_sharp = float(np.median([o.sharpness for o in others]))
        ref_con = float(np.median([o.contrast for o in others]))
        if ref_sharp > 0 and (s.sharpness * ratio < ref_sharp or s.sharpness > ratio * ref_sharp):
            out.append(f"split {s.split}: images are {'blurrier' if s.sharpness < ref_sharp else 'sharper'} than the "
                       f"other splits (sharpness {s.sharpness:.3f} vs {ref_sharp:.3f}): a model trained on one will "
                       f"not transfer well to the other")
        if ref_con > 0 and (s.contrast * ratio < ref_con or s.contrast > ratio * ref_con):
            out.append(f"split {s.split}: contrast differs from the other splits (pixel std {s.contrast:.1f} vs "
                       f"{ref_con:.1f})")
    return out


def _rep(x: torch.Tensor, k: int = 16) -> torch.Tensor:
    x = F.adaptive_avg_pool2d(x, k).flatten(1)
    x = x - x.mean(1, keepdim=True)
    return x / (x.norm(dim=1, keepdim=True) + 1e-6)


def _best_matches(degraded: torch.Tensor, clean_blurred: torch.Tensor, shortlist: int = 10,
                  chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """For each degraded image: index of the clean candidate with the lowest full-res RMSE among
    the ``shortlist`` best low-res correlations, and that RMSE."""
    rc = _rep(clean_blurred)
    best_j, best_r = [], []
    for i in range(0, degraded.shape[0], chunk):
        d = degraded[i:i + chunk]
        sim = _rep(d) @ rc.T
        j = sim.topk(min(shortlist, rc.shape[0]), dim=1).indices
        rm = (clean_blurred[j] - d.unsqueeze(1)).pow(2).mean(dim=(2, 3, 4)).sqrt()
        r, k = rm.min(dim=1)
        best_j.append(torch.gather(j, 1, k[:, None])[:, 0])
        best_r.append(r)
    return torch.cat(best_j), torch.cat(best_r)


def estimate_sigma(degraded: torch.Tensor, clean: torch.Tensor, sample: int = 200, seed: int = 0,
                   max_sigma: float = 6.0) -> float:
    """The Gaussian sigma that best explains ``degraded`` as blurred ``clean`` images.

    A sample of degraded images is shortlisted once (low-res correlation against moderately
    blurred candidates, which is insensitive to the exact sigma); each sigma of ``grid`` is then
    scored by the median best full-resolution RMSE over the shortlist only: a 0.5 grid, then
    0.1 steps around the best. Returns a multiple of 0.1."""
    idx = torch.from_numpy(np.random.default_rng(seed).permutation(degraded.shape[0])[:sample])
    d = degraded[idx].float()
    c = clean.float()
    short = (_rep(d) @ _rep(gaussian_blur(c, 2.0)).T).topk(min(20, c.shape[0]), dim=1).indices  # [S, 20]
    cand = c[short.flatten()]

    def score(s: float) -> float:
        b = gaussian_blur(cand, s).view(short.shape[0], short.shape[1], *c.shape[1:])
        return float((b - d.unsqueeze(1)).pow(2).mean(dim=(2, 3, 4)).sqrt().min(dim=1).values.median())

    coarse = [float(s) for s in np.arange(0.0, max_sigma + 1e-9, 0.5)]
    best = min(coarse, key=score)
    fine = [round(best + k / 10, 1) for k in range(-4, 5) if 0 <= best + k / 10 <= max_sigma]
    return min(fine, key=score)


@dataclass
class MatchResult:
    index: np.ndarray  #: clean index per degraded image, -1 when no twin was accepted
    rmse: np.ndarray  #: full-resolution RMSE to the best candidate (0..255 scale)
    sigma: float
    max_rmse: float

    @property
    def matched(self) -> int:
        return int((self.index >= 0).sum())


def match_degraded(degraded: torch.Tensor, clean: torch.Tensor, sigma: float | None = None,
                   max_rmse: float = 10.0) -> MatchResult:
    """Find each degraded image's clean twin (uint8 or float ``[N, 1, H, W]`` tensors).

    ``sigma=None`` estimates the blur first. A twin is accepted when the RMSE between the
    degraded image and the blurred candidate is at most ``max_rmse`` (JPEG noise is ~4)."""
    d, c = degraded.float(), clean.float()
    if sigma is None:
        sigma = estimate_sigma(d, c)
    j, r = _best_matches(d, gaussian_blur(c, sigma))
    idx = torch.where(r <= max_rmse, j, torch.full_like(j, -1))
    return MatchResult(idx.numpy(), r.numpy(), float(sigma), max_rmse)
