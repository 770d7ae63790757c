"""Figures for the companion lab: where a transposed convolution puts each input value, and two networks compared."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from carla_data import CLASS_ID

# One colour per input value of the 2x2 example, so its footprint can be followed across the panels.
_FOOTPRINT_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def footprints(x: np.ndarray, kernel: np.ndarray, stride: int = 2, size: int | None = None) -> list[np.ndarray]:
    """Each input value's contribution to a transposed convolution's output, as one array per value.

    Input value ``x[i, j]`` adds ``x[i, j] * kernel`` to the output window whose
    top-left corner is ``(stride*i, stride*j)``; Keras' ``'same'`` padding then keeps
    the first ``stride * height`` rows and ``stride * width`` columns.
    """
    h, w = x.shape
    k = kernel.shape[0]
    full = (stride * (h - 1) + k, stride * (w - 1) + k)
    parts = []
    for i in range(h):
        for j in range(w):
            part = np.zeros(full)
            part[stride * i:stride * i + k, stride * j:stride * j + k] = x[i, j] * kernel
            parts.append(part[: size or stride * h, : size or stride * w])
    return parts


def _grid(ax, values: np.ndarray, title: str, shade=None) -> None:
    ax.imshow(np.zeros_like(values), cmap="Greys", vmin=0, vmax=1)
    if shade is not None:
        mask, colour = shade
        ax.imshow(np.ma.masked_where(~mask, np.ones_like(values)), cmap=plt.matplotlib.colors.ListedColormap([colour]),
                  alpha=0.35, vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=10)
    ax.set_xticks(np.arange(-0.5, values.shape[1]), minor=True)
    ax.set_yticks(np.arange(-0.5, values.shape[0]), minor=True)
    ax.grid(which="minor", color="black", linewidth=0.8)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_title(title, fontsize=10)


def plot_footprints(x: np.ndarray, kernel: np.ndarray, output: np.ndarray, stride: int = 2):
    """The input, where each input value lands in the output (times the kernel), and the sum Keras computes."""
    parts = footprints(x, kernel, stride, output.shape[0])
    fig, axes = plt.subplots(1, len(parts) + 2, figsize=(2.6 * (len(parts) + 2), 3))
    _grid(axes[0], x, "input")
    for (i, j), ax, part, colour in zip(np.ndindex(*x.shape), axes[1:], parts, _FOOTPRINT_COLOURS, strict=False):
        axes[0].add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, color=colour, alpha=0.35))
        _grid(ax, part, f"input[{i},{j}] = {x[i, j]:g}\ntimes the kernel", (part != 0, colour))
    _grid(axes[-1], output, "sum of the four\n(Conv2DTranspose)")
    fig.tight_layout()
    return fig


def plot_iou_pair(iou: Mapping[str, np.ndarray], classes: Sequence[str]):
    """Per-class IoU of several networks side by side, for the classes named."""
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(classes) + 1.5), 3.5))
    width = 0.8 / len(iou)
    for n, (label, values) in enumerate(iou.items()):
        heights = [0 if np.isnan(values[CLASS_ID[c]]) else values[CLASS_ID[c]] for c in classes]
        ax.bar(np.arange(len(classes)) + (n - (len(iou) - 1) / 2) * width, heights, width, label=label)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("IoU on held-out images")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_losses(histories: Mapping[str, Mapping[str, Sequence[float]]]):
    """Training and validation loss per epoch, one colour per network."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, history in histories.items():
        epochs = np.arange(1, len(history["loss"]) + 1)
        (line,) = ax.plot(epochs, history["loss"], "o-", label=f"{label}, training")
        if "val_loss" in history:
            ax.plot(epochs, history["val_loss"], "s--", color=line.get_color(), label=f"{label}, held out")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
