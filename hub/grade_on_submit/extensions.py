"""Due dates per student: extensions an instructor grants, and the LMS's own due date of a student.

nbgrader keeps a student's extension on their submission in the gradebook
(``SubmittedAssignment.extension``, what ``Gradebook.grant_extension``
sets), so a student who has not submitted yet has nowhere to keep one.  The
decisions are therefore recorded in ``due_dates.json`` in the course folder,
by assignment and student, as the due date that applies to the student::

    {"unet_segmentation": {"alice": {"due": "2026-12-08T12:00:00+00:00", "by": "prof", "at": "..."}}}

and copied into the gradebook's ``extension`` (the difference from the
assignment's due date) whenever the student has a submission: at once when
it is granted, and before each autograde computes the late penalty
(``hub.grade_on_submit.late_plugin``).  An instructor's decision wins over
the LMS's: a launch never replaces a due date an instructor set.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

FILE_NAME = "due_dates.json"
LMS = "lms"


class ExtensionError(ValueError):
    """An extension that cannot be granted; the message says why."""


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _naive(moment: datetime) -> datetime:
    """As nbgrader's gradebook keeps times: naive, in UTC."""
    return _utc(moment).replace(tzinfo=None)


@contextmanager
def _locked(course_root: Path) -> Iterator[dict]:
    """The recorded due dates, locked against other writers; changes to the dict are written back."""
    path = Path(course_root) / FILE_NAME
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, json.JSONDecodeError) as error:
            raise ExtensionError(f"{path} cannot be read ({error}); fix or remove it") from None
        before = json.dumps(data, sort_keys=True)
        yield data
        if json.dumps(data, sort_keys=True) != before:
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
            os.chmod(temporary, 0o644)
            temporary.replace(path)


def recorded(course_root: Path, assignment: str, student: str) -> dict | None:
    """The recorded due date of ``student`` for ``assignment`` (``due``, ``by``, ``at``), or None."""
    path = Path(course_root) / FILE_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as error:
        raise ExtensionError(f"{path} cannot be read ({error}); fix or remove it") from None
    return data.get(assignment, {}).get(student)


def recorded_dates(course_root: Path) -> dict[str, dict[str, datetime]]:
    """Every recorded due date, by assignment and student, read in one go (an ExtensionError if unreadable)."""
    path = Path(course_root) / FILE_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as error:
        raise ExtensionError(f"{path} cannot be read ({error}); fix or remove it") from None
    return {assignment: {student: _utc(datetime.fromisoformat(entry["due"])) for student, entry in entries.items()}
            for assignment, entries in data.items()}


def record(course_root: Path, assignment: str, student: str, due: datetime | None, by: str,
           now: datetime | None = None) -> bool:
    """Record ``due`` as the due date of ``student`` (None: the assignment's again); whether anything changed.

    ``by`` is the instructor's name, or ``LMS`` for a date the LMS sent in a
    launch, which never replaces an instructor's decision.
    """
    with _locked(course_root) as data:
        entries = data.setdefault(assignment, {})
        current = entries.get(student)
        if by == LMS and current is not None and current.get("by") != LMS:
            return False
        if due is None:
            if current is not None:
                del entries[student]
            if not entries:
                data.pop(assignment)
            return current is not None
        wanted = _utc(due).isoformat()
        if current is not None and current.get("due") == wanted and current.get("by") == by:
            return False
        entries[student] = {"due": wanted, "by": by, "at": _utc(now or datetime.now(UTC)).isoformat()}
        return True


def apply_to_gradebook(gb, course_root: Path, assignment: str, student: str) -> bool:
    """Copy the recorded due date of ``student`` into the gradebook's extension; whether there was a submission.

    ``gb`` is an open nbgrader ``Gradebook``.  Without a record, an extension
    set in the gradebook directly (formgrader, ``grant_extension``) stays.
    """
    from nbgrader.api import MissingEntry

    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        return False
    entry = recorded(course_root, assignment, student)
    due = submission.assignment.duedate
    if entry is not None and due is not None:
        extension = _naive(datetime.fromisoformat(entry["due"])) - due
        if submission.extension != extension:
            submission.extension = extension if extension != timedelta(0) else None
            gb.db.commit()
    return True


@dataclass(frozen=True)
class Lateness:
    """How late one student's submission was, and what it cost."""

    submitted: datetime | None
    due: datetime | None
    assignment_due: datetime | None
    extension: timedelta | None
    seconds_late: float
    penalty: float
    score: float
    max_score: float

    @property
    def score_after_penalty(self) -> float:
        return round(max(0.0, self.score - self.penalty), 4)


def lateness(gb, assignment: str, student: str) -> Lateness | None:
    """What the gradebook says of ``student``'s submission of ``assignment`` (None: no submission)."""
    from nbgrader.api import MissingEntry

    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        return None

    def utc(moment: datetime | None) -> datetime | None:
        return moment.replace(tzinfo=UTC) if moment is not None else None

    return Lateness(utc(submission.timestamp), utc(submission.duedate), utc(submission.assignment.duedate),
                    submission.extension, float(submission.total_seconds_late),
                    float(submission.late_submission_penalty or 0.0), float(submission.score or 0.0),
                    float(submission.max_score or 0.0))
