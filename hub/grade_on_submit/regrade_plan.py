"""What a regrade compares: a student's scores per graded cell and in total, before and after, and who is chosen.

Scores are plain JSON so that the regrade's record keeps them as they were::

    {"cells": {"test_conv_block_default": {"points": 15, "max": 15, "message": "..."}, ...},
     "raw": 85, "penalty": 0, "total": 85, "max": 100}

``total`` is the score after the late penalty, as the student, the LMS and
the feedback page see it.  The messages are what the graded cells printed
in the autograded notebook (the verdict), so the old and the new one are
read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

EVERYONE = "everyone"


@dataclass(frozen=True)
class Who:
    """Whom a regrade is for: everyone with a graded submission, those who lost points in one cell, or a list."""

    everyone: bool = False
    lost_in: str | None = None
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if sum([self.everyone, self.lost_in is not None, bool(self.names)]) != 1:
            raise ValueError("choose exactly one of: everyone, those who lost points in a graded cell, "
                             "or a list of students")

    def describe(self) -> str:
        if self.everyone:
            return EVERYONE
        if self.lost_in:
            return f"those who lost points in {self.lost_in}"
        return ", ".join(self.names)

    def pick(self, graded: dict[str, dict[str, Any]], cells: list[str]) -> list[str]:
        """The students chosen among ``graded`` (student -> scores); a ValueError names an unknown cell or student."""
        if self.everyone:
            return sorted(graded)
        if self.lost_in is not None:
            if self.lost_in not in cells:
                raise ValueError(f"there is no graded cell {self.lost_in!r}; the graded cells are {', '.join(cells)}")
            return sorted(s for s, scores in graded.items()
                          if (cell := scores["cells"].get(self.lost_in)) and cell["points"] < cell["max"])
        unknown = [n for n in self.names if n not in graded]
        if unknown:
            raise ValueError(f"no graded submission of {', '.join(unknown)} in the gradebook")
        return sorted(set(self.names))


def cell_messages(notebook: Path) -> dict[str, str]:
    """What each graded cell of the autograded ``notebook`` printed (its verdict), by grade id; {} if unreadable."""
    try:
        nb = nbformat.read(notebook, as_version=4)
    except (OSError, ValueError):
        return {}
    said = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade") or cell.cell_type != "code":
            continue
        parts = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(str(output.get("text", "")))
            elif output.get("output_type") == "error":
                parts.append(f"{output.get('ename')}: {output.get('evalue')}")
        said[meta["grade_id"]] = "".join(parts).strip()
    return said


def scores_from(grades: list[tuple[str, float, float]], messages: dict[str, str], penalty: float) -> dict[str, Any]:
    """Scores JSON from (grade id, points, max points) per cell, the verdicts, and the late penalty in points."""
    cells: dict[str, dict[str, Any]] = {g: {"points": round(p, 4), "max": m, "message": messages.get(g, "")}
                                        for g, p, m in grades}
    raw = round(sum(p for _, p, _ in grades), 4)
    return {"cells": cells, "raw": raw, "penalty": round(penalty, 4), "total": round(max(0.0, raw - penalty), 4),
            "max": round(sum(m for _, _, m in grades), 4)}


@dataclass(frozen=True)
class Change:
    """How one student's scores moved: the cells whose points or message changed, and the totals."""

    student: str
    cells: dict[str, tuple[dict, dict]]
    old_total: float
    new_total: float

    @property
    def moved(self) -> bool:
        """The score changed (a changed message alone is shown, but moves no grade)."""
        return self.old_total != self.new_total or any(o["points"] != n["points"] for o, n in self.cells.values())

    @property
    def any(self) -> bool:
        return bool(self.cells) or self.old_total != self.new_total


def diff(student: str, old: dict[str, Any], new: dict[str, Any]) -> Change:
    """The cells of ``student`` whose points or message differ between ``old`` and ``new`` scores."""
    empty = {"points": 0.0, "max": 0.0, "message": ""}
    changed = {}
    for grade_id in sorted(set(old["cells"]) | set(new["cells"])):
        before, after = old["cells"].get(grade_id, empty), new["cells"].get(grade_id, empty)
        if before["points"] != after["points"] or before["message"] != after["message"]:
            changed[grade_id] = (before, after)
    return Change(student, changed, old["total"], new["total"])


def decision(change: Change, never_lower: bool) -> str:
    """What apply does with a student: ``switch`` to the new result, keep it as it is (``unchanged``), or ``kept``.

    With ``never_lower`` a student whose total would go down keeps their whole old result: a result is
    either the old or the new one, never cells of both (the feedback must match the score).
    """
    if not change.moved:
        return "unchanged"
    if never_lower and change.new_total < change.old_total:
        return "kept"
    return "switch"
