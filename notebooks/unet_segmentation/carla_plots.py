"""Figures for the segmentation notebook: masks in the CARLA palette, curves, IoU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from carla_data import CLASS_NAMES, PALETTE


def colorize(mask) -> np.ndarray:
    """Turn a mask of class ids, shape (H, W) or (H, W, 1), into an RGB image."""
    ids = np.asarray(mask).astype(np.int64)
    if ids.ndim == 3:
        ids = ids[..., 0]
    return PALETTE[np.clip(ids, 0, len(PALETTE) - 1)]


def legend_handles(masks: Sequence) -> list[Patch]:
    """One legend entry per class that appears in any of ``masks``."""
    present = sorted(set(np.unique(np.concatenate([np.asarray(m).ravel() for m in masks])).tolist()))
    return [
        Patch(color=PALETTE[i] / 255.0, label=f"{i} {CLASS_NAMES[i]}")
        for i in present
        if 0 <= i < len(CLASS_NAMES)
    ]


def show_rows(rows: Sequence[Sequence], titles: Sequence[str], is_mask: Sequence[bool],
              size: float = 3.2):
    """Draw a grid: one row per sample, one column per title.

    Columns flagged in ``is_mask`` are drawn in the class palette, and a legend
    lists every class that appears in them.
    """
    fig, axes = plt.subplots(len(rows), len(titles), figsize=(size * len(titles) + 2.5, size * 0.8 * len(rows)),
                             squeeze=False)
    masks = []
    for r, row in enumerate(rows):
        for c, (item, title, mask) in enumerate(zip(row, titles, is_mask, strict=True)):
            ax = axes[r][c]
            item = np.asarray(item)
            if mask:
                masks.append(item)
                ax.imshow(colorize(item), interpolation="nearest")
            else:
                ax.imshow(item)
            if r == 0:
                ax.set_title(title)
            ax.axis("off")
    if masks:
        fig.legend(handles=legend_handles(masks), loc="center right", fontsize="small", frameon=False)
        fig.subplots_adjust(right=1 - 2.3 / fig.get_figwidth())
    return fig


def plot_history(history: Mapping[str, Sequence[float]]):
    """Loss and accuracy per epoch, training and validation side by side (empty axes after 0 epochs)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "pixel accuracy")):
        if not history.get(key):
            ax.text(0.5, 0.5, "no epochs were trained", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(label)
            continue
        epochs = np.arange(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], "o-", label="training")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s--", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def confusion(true_ids, predicted_ids, n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Pixel confusion matrix, rows true class, columns predicted class."""
    t = np.asarray(true_ids).astype(np.int64).ravel()
    p = np.asarray(predicted_ids).astype(np.int64).ravel()
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def iou_per_class(matrix: np.ndarray) -> np.ndarray:
    """Intersection over union per class from a confusion matrix; NaN where a class never occurs."""
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def plot_iou(iou: np.ndarray):
    """Bar chart of per-class IoU for the classes that occur, in palette colours."""
    present = np.flatnonzero(~np.isnan(iou))
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(present) + 1.5), 3.5))
    ax.bar(range(len(present)), iou[present], color=PALETTE[present] / 255.0, edgecolor="black")
    ax.set_xticks(range(len(present)), [CLASS_NAMES[i] for i in present], rotation=60, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("IoU")
    ax.set_title(f"IoU per class (mean {np.nanmean(iou):.3f})")
    fig.tight_layout()
    return fig
