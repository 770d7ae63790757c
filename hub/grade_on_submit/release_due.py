"""Which feedback held back until the due date the grading service releases now: each student's after theirs.

With ``show`` other than ``feedback``, a student's feedback waits until the
due date that applies to them: the assignment's, or their own when an
instructor (or the LMS) recorded one (``due_dates.json``).  nbgrader's
``release_feedback ASSIGNMENT`` releases every student's feedback at once,
so it is used only when nobody's own due date is still to come; otherwise
each student whose due date has passed is released alone (``--student``),
and a student with an extension keeps waiting for theirs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from hub.grade_on_submit.queue import Submission


@dataclass(frozen=True)
class Release:
    """One ``nbgrader release_feedback`` call: an assignment, one student of it or everyone, and the rows it frees."""

    assignment: str
    student: str | None
    ids: tuple[int, ...]

    def command(self) -> list[str]:
        """The call, run in the course folder with the workers' environment."""
        whom = ["--student", self.student] if self.student else []
        return [sys.executable, "-m", "nbgrader", "release_feedback", self.assignment, *whom]


def releases_due(held: Iterable[Submission], assignment_due: Callable[[str], datetime | None],
                 own_dates: dict[str, dict[str, datetime]], now: datetime) -> list[Release]:
    """The releases due at ``now`` for the graded rows ``held`` back, given each assignment's due date and the
    students' own (``extensions.recorded_dates``)."""
    by_assignment: dict[str, dict[str, list[int]]] = {}
    for row in held:
        by_assignment.setdefault(row.assignment, {}).setdefault(row.student, []).append(row.id)
    releases = []
    for assignment, students in sorted(by_assignment.items()):
        due, own = assignment_due(assignment), own_dates.get(assignment, {})
        ready = {s: ids for s, ids in students.items() if (when := own.get(s, due)) is not None and now >= when}
        if not ready:
            continue
        still_waiting = any(when > now for when in own.values()) or len(ready) < len(students)
        if not still_waiting:
            releases.append(Release(assignment, None, tuple(i for ids in ready.values() for i in sorted(ids))))
            continue
        releases.extend(Release(assignment, s, tuple(sorted(ids))) for s, ids in sorted(ready.items()))
    return releases
