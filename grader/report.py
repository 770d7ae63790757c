"""Read scores back from the gradebook and print them per exercise."""

from __future__ import annotations

from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from grader.course import ASSIGNMENT, DB_URL, FEEDBACK, NOTEBOOK, exercises


def scores(student: str, db_url: str = DB_URL) -> dict[str, float]:
    """Points per exercise for ``student``'s submission, plus ``total``.

    Raises ``KeyError`` when the gradebook has no graded submission for them.
    """
    result: dict[str, float] = {}
    with Gradebook(db_url) as gb:
        try:
            grades = {g.name: g.score for g in gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student).grades}
        except MissingEntry as err:
            raise KeyError(f"no graded submission of {ASSIGNMENT} for {student!r}") from err
    for exercise, cells in exercises().items():
        result[exercise] = sum(grades.get(cell, 0.0) for cell, _ in cells)
    result["total"] = sum(result.values())
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
        lines.append(f"{student.ljust(name_width)}  {cells}   {description}")
    return "\n".join(lines)
