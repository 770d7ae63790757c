"""One submission's grading time: a single budget for everything, and which cells used it.

Every run of a notebook (the first, each one again without a cell that hit
a whole-submission limit, the replay after a broken kernel) and the testing
of its functions draw on one ``TimeBudget`` (``--SandboxedExecute.
grading_budget``).  The cells may use all of it but a short reserve kept for
testing the functions (``evidence_reserve``), so that what the cells defined
is still graded; once it is spent, the cells left are not run, and each says
so, naming the cells that used the time in words a student can find in
their notebook: the cell's number, its first line and the heading above it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic

from nbformat import NotebookNode

# At most this many cells are named as having used the time, each of them at least this share of the budget.
NAMED_CELLS = 3
NAMED_SHARE = 0.05


@dataclass
class CellTime:
    """The time one cell ran, over every run of the notebook, and whether it was ever stopped at a time limit."""

    seconds: float = 0.0
    stopped: bool = False


class TimeBudget:
    """``seconds`` for grading one submission, of which the cells may use all but ``reserve``."""

    def __init__(self, seconds: float, reserve: float, clock: Callable[[], float] = monotonic) -> None:
        self.seconds, self.reserve, self.clock = seconds, reserve, clock
        self.started = clock()
        self.cells: dict[int, CellTime] = {}
        # Something was left undone for want of time: a cell not run or cut short, the functions untested.
        self.ran_out = False

    def left(self) -> float:
        """Seconds left of the whole budget."""
        return self.started + self.seconds - self.clock()

    def left_for_cells(self) -> float:
        """Seconds the notebook's cells may still use."""
        return self.left() - self.reserve

    def ran(self, index: int, seconds: float, stopped: bool) -> None:
        """Cell ``index`` ran ``seconds`` (``stopped``: until a time limit interrupted it)."""
        cell = self.cells.setdefault(index, CellTime())
        cell.seconds += seconds
        cell.stopped = cell.stopped or stopped

    def spent(self, nb: NotebookNode) -> str:
        """That the budget ran out, and the cells of ``nb`` that used it, as a sentence without its full stop."""
        return (f"the grading's time budget of {self.seconds:g} s for your whole notebook was used up, "
                f"{self.users(nb)}")

    def users(self, nb: NotebookNode) -> str:
        """The cells that used most of the time, longest first: how long each ran, and whether it was stopped."""
        longest = sorted(self.cells.items(), key=lambda item: -item[1].seconds)
        named = [(i, t) for i, t in longest if t.seconds >= NAMED_SHARE * self.seconds][:NAMED_CELLS] or longest[:1]
        if not named:
            return "before any cell ran (starting the sandbox took it)"
        parts = [f"{describe_cell(nb, i)}, which ran for {t.seconds:.0f} s"
                 + (" until it was stopped" if t.stopped else "") for i, t in named]
        rest = sum(1 for i, t in longest if t.stopped and (i, t) not in named)
        others = f", and {rest} more cell{'s' if rest > 1 else ''} stopped at a time limit" if rest else ""
        return "most of it by " + "; ".join(parts) + others


def describe_cell(nb: NotebookNode, index: int) -> str:
    """``cell 27 (`time.sleep(10**6)`, below 'Exercise 3: unet_model')``: what a student can find the cell by."""
    cell = nb.cells[index] if 0 <= index < len(nb.cells) else None
    first = next((line.strip() for line in (cell.source if cell else "").splitlines() if line.strip()), "")
    shown = [f"`{first[:60]}{'...' if len(first) > 60 else ''}`"] if first else []
    heading = next((_title(c.source) for c in reversed(nb.cells[:index]) if c.cell_type == "markdown"
                    and _title(c.source)), "")
    if heading:
        shown.append(f"below '{heading}'")
    return f"cell {index + 1}" + (f" ({', '.join(shown)})" if shown else "")


def _title(markdown: str) -> str:
    """A markdown cell's heading (its first heading line, without the #s), or ''."""
    for line in markdown.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip().replace("`", "")[:60]
    return ""
