"""Read scores back from the gradebook and print them per exercise."""

from __future__ import annotations

from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from grader.course import ASSIGNMENT, DB_URL, FEEDBACK, NOTEBOOK, exercises


def scores(student: str, db_url: str = DB_URL) -> dict[str, float]:
    """Points per exercise for ``student``'s submission, plus ``total`` and ``ungraded``.

    ``ungraded`` lists the graded cells that have no score at all (counted as
    0 in the points), which should never happen after a complete autograde.
    Raises ``KeyError`` when the gradebook has no submission for them.
    """
    result: dict = {}
    with Gradebook(db_url) as gb:
        try:
            rows = gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student).grades
        except MissingEntry as err:
            raise KeyError(f"no graded submission of {ASSIGNMENT} for {student!r}") from err
        grades = {g.name: g.score for g in rows}
        ungraded = sorted(g.name for g in rows if g.auto_score is None and g.manual_score is None)
    for exercise, cells in exercises().items():
        result[exercise] = sum(grades.get(cell, 0.0) for cell, _ in cells)
    result["total"] = sum(result.values())
    result["ungraded"] = ungraded
    return result


def feedback_file(student: str) -> Path:
    return FEEDBACK / student / ASSIGNMENT / f"{NOTEBOOK}.html"


def format_table(students: dict[str, str], db_url: str = DB_URL) -> str:
    """A text table: one row per student, one column per exercise, then total."""
    maxima = {ex: sum(points for _, points in cells) for ex, cells in exercises().items()}
    maxima["total"] = sum(maxima.values())
    name_width = max(len(s) for s in [*students, "submission"])
    widths = {col: max(len(col), 7) for col in maxima}
    header = "submission".ljust(name_width) + "  " + "  ".join(col.rjust(widths[col]) for col in maxima)
    limits = " " * name_width + "  " + "  ".join(f"/{maxima[c]:g}".rjust(widths[c]) for c in maxima)
    lines = [header, limits, "-" * len(header)]
    for student, description in students.items():
        got = scores(student, db_url)
        cells = "  ".join(f"{got[c]:g}".rjust(widths[c]) for c in maxima)
        missing = f"   NOT GRADED: {', '.join(got['ungraded'])}" if got["ungraded"] else ""
        lines.append(f"{student.ljust(name_width)}  {cells}   {description}{missing}")
    return "\n".join(lines)
