"""Pictures for the feedback: the student's network drawn beside the specification's.

Drawn with matplotlib into SVG text (kept as text, so a screen reader and a
search find it) and shown inline in the HTML feedback.  What differs from the
specification is marked three ways, so the picture reads without colour: a
thick dashed outline with hatching, a "✗" before the differing line, and the
specification's value after it.  The data come from the evidence the grader
already judged (recorded block calls, rebuilt models); nothing here decides a
score.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

SVG_MIME = "image/svg+xml"
HTML_MIME = "text/html"
WRONG = "#b00020"
LEGEND = ("What differs from the specification is marked ✗, in a box with a dashed outline and a hatched edge; "
          "the specification's value follows as \"spec: ...\".")


@dataclass(frozen=True)
class Box:
    """One block or layer: a title and lines of settings."""

    title: str
    lines: tuple[str, ...] = ()


Place = tuple[int, int]  # (column, row)


@dataclass
class Network:
    """A network as boxes by place, and arrows between places with labels."""

    name: str
    boxes: dict[Place, Box] = field(default_factory=dict)
    arrows: list[tuple[Place, Place, str]] = field(default_factory=list)

    def add(self, column: int, row: int, box: Box) -> Place:
        self.boxes[(column, row)] = box
        return (column, row)


def _marked(box: Box, expected: Box | None) -> tuple[Box, bool]:
    """``box`` with every line that differs from ``expected`` marked, and whether anything differs."""
    if expected is None:
        return Box(box.title, ("✗ extra: not in the spec", *box.lines)), True
    lines, differs = [], box.title != expected.title
    for k in range(max(len(box.lines), len(expected.lines))):
        line = box.lines[k] if k < len(box.lines) else "(nothing)"
        want = expected.lines[k] if k < len(expected.lines) else "(nothing)"
        differs |= line != want
        lines += [line] if line == want else [f"✗ {line}", f"  spec: {want}"]
    return Box(box.title, tuple(lines)), differs


def compare(spec: Network, yours: Network) -> tuple[Network, set[Place], set[int]]:
    """``yours`` with what differs from the specification marked: (network, places that differ, arrows that do)."""
    marked, wrong = Network(yours.name, arrows=list(yours.arrows)), set()
    for place in sorted({*spec.boxes, *yours.boxes}):
        if place not in yours.boxes:
            marked.boxes[place] = Box(spec.boxes[place].title, ("✗ missing in yours",))
            wrong.add(place)
            continue
        marked.boxes[place], differs = _marked(yours.boxes[place], spec.boxes.get(place))
        if differs:
            wrong.add(place)
    wrong_arrows = {i for i, arrow in enumerate(yours.arrows) if arrow not in spec.arrows}
    return marked, wrong, wrong_arrows


WIDTH, STEP_X, LINE = 4.0, 4.6, 0.2  # box width, column spacing, height of a line of text, in data units


def _draw_box(ax, x: float, y: float, height: float, box: Box, wrong: bool) -> None:
    """A box whose top edge is at ``y``."""
    ax.add_patch(FancyBboxPatch((x, y - height), WIDTH, height, boxstyle="round,pad=0.04", facecolor="white",
                                edgecolor=WRONG if wrong else "black", linewidth=2.4 if wrong else 0.8,
                                linestyle="--" if wrong else "-"))
    if wrong:
        # A hatched strip, so the box stands out in black and white too, without hiding its text.
        ax.add_patch(FancyBboxPatch((x, y - height), 0.22, height, boxstyle="square,pad=0", facecolor="white",
                                    hatch="xxx", edgecolor=WRONG, linewidth=0))
    ax.text(x + (0.32 if wrong else 0.12), y - 0.06, "\n".join([box.title, *box.lines]), va="top", ha="left",
            fontsize=6.8, family="monospace", fontweight="bold" if wrong else "normal", linespacing=1.25)


def _draw(ax, network: Network, wrong_boxes: set[Place], wrong_arrows: set[int], step_y: float) -> None:
    height = step_y - 0.3
    for (column, row), box in network.boxes.items():
        _draw_box(ax, column * STEP_X, -row * step_y, height, box, (column, row) in wrong_boxes)
    for k, ((c0, r0), (c1, r1), label) in enumerate(network.arrows):
        (x0, y0), (x1, y1) = (c0 * STEP_X + WIDTH, -r0 * step_y - height / 2), (c1 * STEP_X, -r1 * step_y - height / 2)
        wrong = k in wrong_arrows
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "->", "linestyle": "--" if wrong else "-",
                                "color": WRONG if wrong else "black", "linewidth": 2 if wrong else 0.8})
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.1, ("✗ " if wrong else "") + label, ha="center",
                fontsize=6, color=WRONG if wrong else "black", fontweight="bold" if wrong else "normal")
    ax.set_title(network.name, fontsize=9, fontweight="bold")
    ax.axis("off")


def side_by_side(spec: Network, yours: Network, caption: str) -> str:
    """An SVG of the specification's network beside the student's, the differences marked."""
    marked, wrong_boxes, wrong_arrows = compare(spec, yours)
    rows = 1 + max(row for _, row in [*spec.boxes, *yours.boxes])
    columns = 1 + max(column for column, _ in [*spec.boxes, *yours.boxes])
    lines = 1 + max(len(box.lines) for box in [*spec.boxes.values(), *marked.boxes.values()])
    step_y = LINE * lines + 0.45
    # A fixed salt and no date: the same submission gets the same feedback page, whenever it is graded.
    with plt.rc_context({"svg.fonttype": "none", "hatch.color": WRONG, "hatch.linewidth": 1.0,
                         "svg.hashsalt": "unet-feedback"}):
        # About 0.65 inch per data unit across and 0.75 down: a line of 6.8 pt text fits LINE.
        fig, axes = plt.subplots(1, 2, figsize=(3.0 * columns * 2, 0.75 * step_y * rows + 0.8))
        _draw(axes[0], spec, set(), set(), step_y)
        _draw(axes[1], marked, wrong_boxes, wrong_arrows, step_y)
        for ax in axes:
            ax.set_xlim(-0.1, (columns - 1) * STEP_X + WIDTH + 0.1)
            ax.set_ylim(-rows * step_y, 0.1)
        fig.supxlabel(caption, fontsize=7)
        fig.tight_layout()
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
        plt.close(fig)
    return buffer.getvalue()


def as_html(svg: str, title: str) -> str:
    """The SVG inline in a figure with a caption, scaled to the page's width (its text stays text)."""
    body = svg[svg.index("<svg"):]
    body = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 width="100%" style="height:auto"', body,
                  count=1)
    return (f'<figure class="unet-grader-picture" role="img" aria-label="{html.escape(title)}">'
            f"<figcaption><b>{html.escape(title)}</b> {html.escape(LEGEND)}</figcaption>{body}</figure>")
