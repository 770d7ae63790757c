"""A student's own due date from the LMS launch, recorded as their due date in the course.

Canvas puts the due date that applies to the launching student (their
section's or their own override) into a custom parameter when the tool's
configuration asks for it: ``due_at=$Canvas.assignment.dueAt.iso8601``
(docs/lms.md).  ``hub.lms.provision`` runs this module as the grader
account, after ``hub.lms.enrol``, when a student's launch carries one; it
is recorded like an instructor's extension (``hub.grade_on_submit.extensions``),
except that it never replaces a due date an instructor set here.  An
empty or unexpanded parameter (the LMS sends ``$Canvas...`` itself when the
assignment has no due date) records nothing.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from hub.grade_on_submit.extensions import LMS, record

CUSTOM_KEY = "due_at"


def parse_lms_due(text: str) -> datetime | None:
    """The ISO 8601 date the LMS sent, in UTC; None for nothing usable (empty, unexpanded, not a date)."""
    text = (text or "").strip()
    if not text or text.startswith("$"):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def take(course_root: Path, account: str, assignment: str, sent: str) -> bool:
    """Record the LMS's due date ``sent`` for ``account``; whether the record changed."""
    due = parse_lms_due(sent)
    if due is None:
        return False
    return record(course_root, assignment, account, due, LMS)


def main() -> int:
    facts = json.load(sys.stdin)
    changed = take(Path.cwd(), facts["account"], facts["assignment"], facts["due_at"])
    print(json.dumps({"recorded": changed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
