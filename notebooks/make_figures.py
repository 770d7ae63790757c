"""Draw the notebook's diagrams into notebooks/unet_segmentation/images/.

    python notebooks/make_figures.py

The diagrams are plain matplotlib drawings: one of the whole U-Net with its
feature-map sizes, one of the two blocks the exercises build.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

OUT = Path(__file__).parent / "unet_segmentation" / "images"
COLOURS = {
    "conv": "#4c72b0",
    "pool": "#dd8452",
    "up": "#55a868",
    "skip": "#8172b3",
    "head": "#c44e52",
    "drop": "#937860",
}
SAVE = dict(dpi=110, bbox_inches="tight", metadata={"Software": None})


def _arrow(ax, start, end, colour, style="-|>", dashed=False, width=1.6):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=colour,
                                 linewidth=width, linestyle="--" if dashed else "-"))


def _block(ax, x, y, height, channels, label, colour="#d8dee9"):
    width = 0.25 + 0.12 * max(channels.bit_length() - 4, 0)
    ax.add_patch(Rectangle((x - width / 2, y - height / 2), width, height, facecolor=colour,
                           edgecolor="black", linewidth=0.8))
    ax.text(x, y - height / 2 - 0.12, label, ha="center", va="top", fontsize=7.5)
    ax.text(x, y + height / 2 + 0.06, str(channels), ha="center", va="bottom", fontsize=7.5)
    return width


def draw_unet() -> None:
    """The whole network: sizes for the default 96x128x3 input and 32 filters."""
    fig, ax = plt.subplots(figsize=(12, 6.2))
    sizes = [(96, 128), (48, 64), (24, 32), (12, 16), (6, 8)]
    filters = [32, 64, 128, 256, 512]
    ys = [4.6, 3.55, 2.5, 1.45, 0.4]
    heights = [1.0, 0.8, 0.62, 0.48, 0.36]
    down_x, up_x = [0.6, 1.5, 2.4, 3.3, 4.6], [8.2, 7.3, 6.4, 5.5]
    _block(ax, 0.0, ys[0], heights[0], 3, "input\n96x128")
    _arrow(ax, (0.15, ys[0]), (down_x[0] - 0.25, ys[0]), COLOURS["conv"])
    for level, (x, y, h, f, (r, c)) in enumerate(zip(down_x, ys, heights, filters, sizes, strict=True)):
        label = f"{r}x{c}" + ("\n+dropout" if level >= 3 else "")
        _block(ax, x, y, h, f, label, colour="#e5ecf6" if level < 4 else "#f4e3d7")
        if level < 4:
            _arrow(ax, (x, y - h / 2 - 0.05), (down_x[level + 1] - 0.1, ys[level + 1] + heights[level + 1] / 2 + 0.25),
                   COLOURS["pool"])
            # The skip connection: the block's output before pooling, copied across.
            _arrow(ax, (x + 0.3, y + 0.08), (up_x[level] - 0.45, y + 0.08), COLOURS["skip"], dashed=True)
    previous = (down_x[4], ys[4])
    for level in (3, 2, 1, 0):
        x, y, h, f = up_x[level], ys[level], heights[level], filters[level]
        _arrow(ax, (previous[0] + 0.2, previous[1] + 0.2), (x - 0.2, y - h / 2 - 0.05), COLOURS["up"])
        _block(ax, x, y, h, f, f"{sizes[level][0]}x{sizes[level][1]}\nconcat+2 conv", colour="#e3f1e6")
        previous = (x, y)
    _arrow(ax, (up_x[0] + 0.3, ys[0]), (9.25, ys[0]), COLOURS["conv"])
    _block(ax, 9.4, ys[0], heights[0], 32, "3x3 conv")
    _arrow(ax, (9.55, ys[0]), (10.3, ys[0]), COLOURS["head"])
    _block(ax, 10.5, ys[0], heights[0], 23, "1x1 conv\nlogits", colour="#f6dada")
    legend = [
        ("two 3x3 conv + ReLU", COLOURS["conv"]),
        ("2x2 max pooling", COLOURS["pool"]),
        ("3x3 transposed conv, stride 2", COLOURS["up"]),
        ("skip connection (concatenate)", COLOURS["skip"]),
        ("1x1 conv to one score per class", COLOURS["head"]),
    ]
    for i, (text, colour) in enumerate(legend):
        _arrow(ax, (6.6, 1.1 - 0.28 * i), (7.0, 1.1 - 0.28 * i), colour, dashed=colour == COLOURS["skip"])
        ax.text(7.1, 1.1 - 0.28 * i, text, va="center", fontsize=8.5)
    ax.text(2.4, 5.5, "encoder: what is in the image", ha="center", fontsize=10, weight="bold")
    ax.text(7.3, 5.5, "decoder: where it is", ha="center", fontsize=10, weight="bold")
    ax.text(4.6, -0.5, "bottleneck", ha="center", fontsize=9, style="italic")
    ax.set_xlim(-0.6, 11.2)
    ax.set_ylim(-0.7, 5.8)
    ax.axis("off")
    fig.savefig(OUT / "unet_architecture.png", **SAVE)
    plt.close(fig)


def _chain(ax, y, steps, title):
    ax.text(0, y + 0.55, title, fontsize=10, weight="bold")
    x = 0.0
    for i, (text, colour) in enumerate(steps):
        ax.add_patch(Rectangle((x, y - 0.25), 1.55, 0.5, facecolor=colour, alpha=0.25, edgecolor=colour))
        ax.text(x + 0.775, y, text, ha="center", va="center", fontsize=8)
        if i < len(steps) - 1:
            _arrow(ax, (x + 1.55, y), (x + 1.85, y), "black", width=1.0)
        x += 1.85
    return x


def draw_blocks() -> None:
    """The two blocks of the exercises, step by step."""
    fig, ax = plt.subplots(figsize=(11, 3.4))
    _chain(ax, 2.2, [
        ("inputs", "#999999"),
        ("Conv2D 3x3\nReLU, same", COLOURS["conv"]),
        ("Conv2D 3x3\nReLU, same", COLOURS["conv"]),
        ("Dropout\n(if > 0)", COLOURS["drop"]),
        ("MaxPooling2D\n2x2 (if on)", COLOURS["pool"]),
        ("next_layer", "#999999"),
    ], "conv_block: returns (next_layer, skip_connection)")
    ax.text(7.0, 1.55, "skip_connection = the tensor before pooling", fontsize=8.5, color=COLOURS["skip"])
    _arrow(ax, (6.5, 1.95), (6.9, 1.6), COLOURS["skip"], dashed=True)
    _chain(ax, 0.4, [
        ("expansive_input", "#999999"),
        ("Conv2DTranspose\n3x3, stride 2", COLOURS["up"]),
        ("concatenate\n[up, contractive]", COLOURS["skip"]),
        ("Conv2D 3x3\nReLU, same", COLOURS["conv"]),
        ("Conv2D 3x3\nReLU, same", COLOURS["conv"]),
    ], "upsampling_block: returns the last Conv2D output")
    ax.text(3.7, -0.25, "contractive_input (skip from the encoder) joins here", ha="center", fontsize=8.5,
            color=COLOURS["skip"])
    ax.set_xlim(-0.1, 11.2)
    ax.set_ylim(-0.45, 3.0)
    ax.axis("off")
    fig.savefig(OUT / "unet_blocks.png", **SAVE)
    plt.close(fig)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    draw_unet()
    draw_blocks()
    print(f"wrote {OUT}/unet_architecture.png and unet_blocks.png")


if __name__ == "__main__":
    main()
