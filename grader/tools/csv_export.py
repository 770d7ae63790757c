"""``nbgrader export`` to CSV that a spreadsheet reads as text, whatever names an LMS sends.

nbgrader's ``CsvExportPlugin`` joins the fields with commas as they are: a
name with a comma or a quote shifts the columns, and a name such as
``=HYPERLINK(...)`` or ``@SUM(...)`` becomes a formula when the instructor
opens ``grades.csv`` in a spreadsheet.  This plugin writes the same columns
with Python's ``csv`` module (every field quoted as needed) and puts an
apostrophe before a text field that starts with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return, which spreadsheets show as text.  Numbers are
left as numbers.  nbgrader_config.py makes it the exporter; it is a
``CsvExportPlugin``, so ``--CsvExportPlugin.to=...`` still says where.
"""

from __future__ import annotations

import csv
from typing import Any

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins.export import CsvExportPlugin

COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email", "raw_score",
           "late_submission_penalty", "score", "max_score"]
TEXT = {"assignment", "student_id", "last_name", "first_name", "email"}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def as_text(value: str) -> str:
    """``value`` as a spreadsheet shows text, never a formula."""
    return "'" + value if value.startswith(FORMULA_START) else value


def rows(gradebook: Gradebook, assignments: list[str], students: list[str]) -> list[dict[str, Any]]:
    """One row per assignment and student, as nbgrader's own CSV export has them."""
    found = []
    for assignment in gradebook.assignments:
        if assignments and assignment.name not in assignments:
            continue
        for student in gradebook.students:
            if students and student.id not in students:
                continue
            row: dict[str, Any] = {"assignment": assignment.name, "duedate": assignment.duedate,
                                   "student_id": student.id, "last_name": student.last_name,
                                   "first_name": student.first_name, "email": student.email,
                                   "max_score": assignment.max_score}
            try:
                submission = gradebook.find_submission(assignment.name, student.id)
            except MissingEntry:
                row.update(timestamp="", raw_score=0.0, late_submission_penalty=0.0, score=0.0)
            else:
                penalty = submission.late_submission_penalty
                row.update(timestamp=submission.timestamp, raw_score=submission.score,
                           late_submission_penalty=penalty, score=max(0.0, submission.score - (penalty or 0.0)))
            found.append({k: "" if v is None else (as_text(str(v)) if k in TEXT else str(v)) for k, v in row.items()})
    return found


class SafeCsvExportPlugin(CsvExportPlugin):
    """nbgrader's CSV export, quoted properly and with no field a spreadsheet would run as a formula."""

    def export(self, gradebook: Gradebook) -> None:
        destination = self.to or "grades.csv"
        self.log.info("Exporting grades to %s", destination)
        with open(destination, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows(gradebook, [str(a) for a in self.assignment], [str(s) for s in self.student]))
