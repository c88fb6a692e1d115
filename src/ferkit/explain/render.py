"""Pictures of explanations: projections, heat-map overlays, grids, AU points, paste-back onto photos."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .._figure import subplots


def to_rgb(img: np.ndarray) -> np.ndarray:
    """uint8 ``HxW`` / ``HxWx1`` / ``HxWx3`` -> ``HxWx3``."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    return np.stack([img] * 3, -1) if img.ndim == 2 else img


def projection_image(proj: np.ndarray) -> np.ndarray:
    """A deconvolution projection ``[C, H, W]`` as Zeiler & Fergus show it: zero is mid-gray,
    scaled by the largest magnitude; uint8 ``HxWx3``."""
    p = np.asarray(proj, np.float64)
    m = np.abs(p).max()
    p = 0.5 + p / (2 * m) if m > 0 else np.full_like(p, 0.5)
    img = np.clip(p * 255 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return to_rgb(img)


BAR_INCHES = 0.5  #: room a colour bar takes under a grid's tiles


@dataclass(frozen=True)
class ColourBar:
    """The scale of the maps in a picture: ``kind`` 'heat' (:func:`heat`, 0 to 1) or 'signed'
    (:func:`projection_image`'s gray, -1 to 1), with its left, middle and right ends named."""

    kind: str
    ticks: tuple[str, str, str]

    def __post_init__(self) -> None:  # (said when made, not inside a half-drawn figure)
        if self.kind not in ("heat", "signed"):
            raise ValueError(f"colour bar kind must be 'heat' or 'signed', got {self.kind!r}")

    def strip(self) -> np.ndarray:
        """The bar as an RGB uint8 image, 1 x 256, drawn by the same function as the maps."""
        if self.kind == "heat":
            return heat(np.linspace(0, 1, 256)[None])
        return projection_image(np.linspace(-1, 1, 256)[None, None])


def heat(values: np.ndarray, cmap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """``HxW`` values in [0, 1] -> uint8 RGB colour map."""
    v = np.clip(np.asarray(values, np.float64), 0, 1)
    return cv2.applyColorMap((v * 255).astype(np.uint8), cmap)[..., ::-1].copy()


def overlay(img: np.ndarray, values: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``values`` in [0, 1] as a colour map over ``img`` (gray or RGB uint8), weight ``alpha``
    growing with the value (cold areas keep the face visible)."""
    base = to_rgb(img).astype(np.float64)
    v = np.clip(np.asarray(values, np.float64), 0, 1)[..., None]
    a = alpha * (0.35 + 0.65 * v)
    return np.clip(base * (1 - a) + heat(v[..., 0]) * a, 0, 255).astype(np.uint8)


def magnitude(grad: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` signed input gradient -> ``HxW`` magnitude scaled to [0, 1] (its 99.5th percentile)."""
    m = np.abs(np.asarray(grad)).sum(0)
    hi = np.percentile(m, 99.5)
    return np.clip(m / hi, 0, 1) if hi > 0 else np.zeros_like(m)


def upscale(img: np.ndarray, factor: int) -> np.ndarray:
    return cv2.resize(img, (img.shape[1] * factor, img.shape[0] * factor), interpolation=cv2.INTER_NEAREST)


def paste_back(photo: np.ndarray, values: np.ndarray, m: np.ndarray, alpha: float = 0.5,
               label: str | None = None) -> np.ndarray:
    """Draw ``values`` (``hxw`` in [0, 1], on the aligned crop) back onto the region of ``photo``
    (RGB) it came from; ``m`` is the 2x3 matrix photo -> crop. ``label`` (the face's number, as the
    per-face pictures and the JSON count them) is written by the outline's top corner."""
    H, W = photo.shape[:2]
    inv = cv2.invertAffineTransform(np.asarray(m, np.float64))
    v = cv2.warpAffine(np.asarray(values, np.float32), inv, (W, H), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inside = cv2.warpAffine(np.ones(values.shape, np.float32), inv, (W, H), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    a = (alpha * (0.35 + 0.65 * np.clip(v, 0, 1)) * inside)[..., None]
    out = photo.astype(np.float64) * (1 - a) + heat(v) * a
    out = np.clip(out, 0, 255).astype(np.uint8)
    # the crop's outline
    h, w = values.shape
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64) - 0.5
    pts = corners @ inv[:, :2].T + inv[:, 2]
    # a corner on the image's outer edge (a whole image read as the face) is drawn on its last pixel
    edge = np.array([W - 1, H - 1], np.float64)
    pts = np.where((pts > edge) & (pts <= edge + 1), edge, np.where((pts < 0) & (pts >= -1), 0.0, pts))
    th = max(1, round(max(H, W) / 400))
    cv2.polylines(out, [np.round(pts).astype(np.int32)], True, (255, 255, 255), th, cv2.LINE_AA)
    if label:
        scale = max(0.5, max(H, W) / 900)
        (tw, tht), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 2 * th)
        x, y = pts[np.argmin(pts[:, 1])]  # the outline's top corner, the label above it (inside the picture)
        x = int(np.clip(x, 0, max(0, W - tw - 4)))
        y = int(np.clip(y - 4, tht + 4, H - base - 1))
        cv2.rectangle(out, (x, y - tht - 4), (x + tw + 4, y + base), (0, 0, 0), -1)
        cv2.putText(out, label, (x + 2, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2 * th, cv2.LINE_AA)
    return out


def outline_box(m: np.ndarray, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """The box (x, y, w, h) around the outline :func:`paste_back` draws: the region of the photo
    that the ``shape`` (h, w) crop of the 2x3 matrix ``m`` (photo -> crop) came from."""
    inv = cv2.invertAffineTransform(np.asarray(m, np.float64))
    h, w = shape
    pts = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64) @ inv[:, :2].T + inv[:, 2]
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def corner_key(img: np.ndarray, bar: ColourBar, caption: str = "",
               avoid: Sequence[Sequence[float]] = ()) -> np.ndarray:
    """A copy of ``img`` (RGB uint8) with ``bar``'s colours as a small key in a corner: ``caption``
    over the strip, its left and right ends named under it, on a dark box. The corner is the first of
    bottom right, bottom left, top right, top left that covers none of the boxes ``avoid`` (x, y, w,
    h: the faces); where each would, or the picture is too small for it, no key is drawn."""
    out = to_rgb(img).copy()
    H, W = out.shape[:2]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, max(0.35, min(H, W) / 1200)
    th = max(1, round(scale * 2))

    def size(text: str) -> tuple[int, int, int]:
        (w, h), base = cv2.getTextSize(text, font, scale, th)
        return (w, h, base) if text else (0, 0, 0)

    (lw, lh, base), (rw, _, _), (cw, ch, cbase) = size(bar.ticks[0]), size(bar.ticks[2]), size(caption)
    pad = max(2, round(4 * scale))
    sw = max(lw + rw + 3 * pad, cw, W // 5)
    sh = max(4, round(10 * scale))
    top = ch + cbase + pad if caption else 0  # the caption's line over the strip
    bw, bh = sw + 2 * pad, top + sh + lh + base + 3 * pad
    if bw > W or bh > H:
        return out

    def covered(corner: tuple[int, int]) -> float:
        x0, y0 = corner
        return sum(max(0.0, min(x0 + bw, x + w) - max(x0, x)) * max(0.0, min(y0 + bh, y + h) - max(y0, y))
                   for x, y, w, h in avoid)

    free = [c for c in [(W - bw, H - bh), (0, H - bh), (W - bw, 0), (0, 0)] if not covered(c)]
    if not free:  # (every corner would hide part of a face: none drawn; the per-face pictures have theirs)
        return out
    x0, y0 = free[0]
    out[y0:y0 + bh, x0:x0 + bw] = (out[y0:y0 + bh, x0:x0 + bw] * 0.3).astype(np.uint8)  # dark, the photo faint
    white = (255, 255, 255)
    if caption:
        cv2.putText(out, caption, (x0 + pad, y0 + pad + ch), font, scale, white, th, cv2.LINE_AA)
    sy = y0 + pad + top
    out[sy:sy + sh, x0 + pad:x0 + pad + sw] = cv2.resize(bar.strip(), (sw, sh), interpolation=cv2.INTER_LINEAR)
    ty = sy + sh + pad + lh
    cv2.putText(out, bar.ticks[0], (x0 + pad, ty), font, scale, white, th, cv2.LINE_AA)
    cv2.putText(out, bar.ticks[2], (x0 + pad + sw - rw, ty), font, scale, white, th, cv2.LINE_AA)
    return out


def save_png(img: np.ndarray, path: str | os.PathLike) -> None:
    from ..io import write_image_file

    if not write_image_file(path, np.ascontiguousarray(to_rgb(img)[..., ::-1])):
        raise OSError(0, "not an image format OpenCV writes (name it .png)", str(path))


def grid(tiles: Sequence[np.ndarray], titles: Sequence[str], path: str | os.PathLike, ncols: int = 6,
         title: str = "", marks: Sequence[Sequence[tuple[float, float]] | None] | None = None,
         tile_inches: float = 1.7, note: str = "", bar: ColourBar | None = None) -> None:
    """A titled grid of images (uint8 gray or RGB), with optional points (x, y) marked on each, a
    colour ``bar`` (the scale of the maps drawn, with its ends named) and a ``note`` under it (the
    key: what the colours and marks mean)."""
    n = len(tiles)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    lines = textwrap.wrap(note, width=int(tile_inches * ncols * 17)) if note else []
    text_in = 0.14 * len(lines) + (0.1 if lines else 0)  # inches under the tiles for the note
    foot = text_in + (BAR_INCHES if bar is not None else 0)
    fig, axes = subplots(nrows, ncols, figsize=(tile_inches * ncols,
                                                (tile_inches + 0.2) * nrows + (0.35 if title else 0) + foot),
                         dpi=100, squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(to_rgb(tiles[i]), interpolation="nearest" if tiles[i].shape[0] <= 64 else "bilinear")
        ax.set_title(titles[i], fontsize=7)
        if marks is not None and marks[i]:
            xs, ys = zip(*marks[i])
            ax.scatter(xs, ys, marker="+", s=40, c="#00ff66", linewidths=1.2)
    if title:
        fig.suptitle(title, fontsize=9)
    height = fig.get_size_inches()[1]
    if lines:
        fig.text(0.5, 0.05 / height, "\n".join(lines), ha="center", va="bottom", fontsize=6.5, color="#333333")
    fig.tight_layout(rect=(0, foot / height, 1, 1))
    if bar is not None:
        width = fig.get_size_inches()[0]
        w = min(0.6, 3.0 / width)  # the bar's share of the width (at most 3 inches)
        ax = fig.add_axes(((1 - w) / 2, (text_in + 0.22) / height, w, 0.14 / height))
        ax.imshow(bar.strip(), aspect="auto", interpolation="bilinear")
        ax.set_xticks([0, 127.5, 255], list(bar.ticks), fontsize=6)
        ax.set_yticks([])
        ax.tick_params(length=2, pad=1)
        for side in ax.spines.values():
            side.set_linewidth(0.5)
    fig.savefig(path)
