"""Plots people would rather look at than read: confusion matrices and training curves."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .._figure import subplots


def plot_confusion(cm: np.ndarray | Sequence[Sequence[int]], classes: Sequence[str], path: str | os.PathLike,
                   title: str = "") -> None:
    """Row-normalised confusion matrix (recall on the diagonal) with counts in each cell."""
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    k = len(classes)
    fig, ax = subplots(figsize=(1.0 + 0.9 * k, 0.8 + 0.8 * k), dpi=110)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{norm[i, j]:.2f}\n{cm[i, j]}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.55 else "black")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def plot_curves(history: Sequence[dict], path: str | os.PathLike, title: str = "") -> None:
    """Loss and accuracy per epoch, train vs validation, plus the learning rate."""
    ep = [h["epoch"] for h in history]
    fig, axes = subplots(1, 3, figsize=(13, 3.6), dpi=100)
    axes[0].plot(ep, [h["train_loss"] for h in history], label="train")
    axes[0].plot(ep, [h["val_loss"] for h in history], label="val")
    axes[0].set_title("loss")
    axes[1].plot(ep, [h["train_acc"] for h in history], label="train")
    axes[1].plot(ep, [h["val_acc"] for h in history], label="val")
    best = max(history, key=lambda h: h["val_acc"])
    axes[1].scatter([best["epoch"]], [best["val_acc"]], color="red", zorder=3, label=f"best {best['val_acc']:.4f}")
    axes[1].set_title("accuracy")
    axes[2].plot(ep, [h["lr"] for h in history])
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
