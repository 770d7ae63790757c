"""Grant (or take back) an extension: the record, the penalty again, the student's score, feedback and LMS.

    python -m hub.grade_on_submit.grant STUDENT --until 2026-12-08T12:00Z [--assignment A] [--course DIR]
    python -m hub.grade_on_submit.grant STUDENT --hours 48
    python -m hub.grade_on_submit.grant STUDENT --remove

Run as the account that owns the course folder (the grader account on the
hub; the grading service's instructor page runs this for you).  A student
who has not submitted yet simply has the date recorded.  A graded one gets
the penalty recomputed from the gradebook's scores (the notebook is not run
again), their grading-on-submit row and feedback page say the new
penalty, and the LMS gets the changed score once through the outbox (the
LMS service's reconciler sees the gradebook change; an unchanged score
posts nothing).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hub.grade_on_submit.extensions import ExtensionError, Lateness, lateness, record
from hub.grade_on_submit.late_feedback import explain
from hub.grade_on_submit.late_plugin import late_policy, recompute
from hub.grade_on_submit.queue import GRADED, Queue, open_engine


@dataclass(frozen=True)
class Granted:
    """What a grant changed."""

    student: str
    due: datetime | None
    before: Lateness | None
    after: Lateness | None

    def summary(self) -> str:
        due = self.due.strftime("%Y-%m-%d %H:%M:%S UTC") if self.due else "the assignment's due date"
        if self.after is None:
            return f"{self.student}: due {due}; no submission yet, so nothing else changed."
        old = self.before.score_after_penalty if self.before else None
        return (f"{self.student}: due {due}; late penalty {self.before.penalty if self.before else 0:g} -> "
                f"{self.after.penalty:g} points, score {old:g} -> {self.after.score_after_penalty:g} "
                f"of {self.after.max_score:g}.")


def assignment_due(gradebook_url: str, assignment: str) -> datetime:
    """The assignment's due date (UTC); an ExtensionError if it has none (an extension would mean nothing)."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(gradebook_url) as gb:
        try:
            due = gb.find_assignment(assignment).duedate
        except MissingEntry:
            raise ExtensionError(f"the gradebook has no assignment {assignment!r}") from None
    if due is None:
        raise ExtensionError(f"{assignment} has no due date in the gradebook, so there is nothing to extend: set "
                             f"one first (nbgrader db assignment add {assignment} --duedate ...)")
    return due.replace(tzinfo=UTC)


def grant(course_root: Path, gradebook_url: str, assignment: str, student: str, due: datetime | None,
          by: str) -> Granted:
    """Make ``due`` the due date of ``student`` (None: the assignment's) and recompute their late penalty."""
    from nbgrader.api import Gradebook

    assignment_due(gradebook_url, assignment)
    with Gradebook(gradebook_url) as gb:
        before = lateness(gb, assignment, student)
        record(course_root, assignment, student, due, by)
        if due is None and before is not None:
            gb.find_submission(assignment, student).extension = None
            gb.db.commit()
        recompute(gb, course_root, assignment, student)
        after = lateness(gb, assignment, student)
    return Granted(student, due, before, after)


def update_queue_and_feedback(course_root: Path, queue_url: str, gradebook_url: str, assignment: str,
                              granted: Granted) -> str:
    """The student's latest graded row and its feedback page after a grant; what was done, in words."""
    from hub.grade_on_submit import pipeline
    from hub.grade_on_submit.settings import Settings

    if granted.after is None or granted.before == granted.after:
        return "Nothing graded changed."
    queue = Queue(open_engine(queue_url))
    rows = [r for r in queue.of_student(granted.student) if r.assignment == assignment and r.state == GRADED]
    if not rows:
        return "The student has no submission graded on submit."
    row = rows[0]
    policy = late_policy(course_root, assignment)
    old_said = explain(granted.before, policy, points=False) if granted.before else None
    new_said = explain(granted.after, policy, points=False)
    reason = (row.reason or "").replace(old_said, "").strip() if old_said else (row.reason or "")
    queue.rescore(row.id, granted.after.score_after_penalty, " ".join(filter(None, [reason, new_said])) or None)
    setup = Settings(course_root, Path(), queue_url, gradebook=gradebook_url).course_setup(assignment)
    if (course_root / "autograded" / granted.student / assignment).is_dir():
        page = pipeline.generate_feedback(setup, row)
        said = f"Feedback page regenerated ({page})."
        if row.released:
            pipeline.release_feedback(setup, granted.student)
            said += " Released again."
        return said
    return "No autograded copy to regenerate feedback from."


def parse_due(text: str) -> datetime:
    """An ISO 8601 date and time; without a zone, UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ExtensionError(f"{text!r} is not a date and time such as 2026-12-08T12:00:00+00:00") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def main(argv: list[str]) -> int:
    from grader.course import ASSIGNMENT, gradebook_url
    from hub.grade_on_submit.settings import QUEUE_FILE

    parser = argparse.ArgumentParser(prog="python -m hub.grade_on_submit.grant", description=__doc__.split("\n")[0])
    parser.add_argument("student")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--until", help="the student's due date, ISO 8601 (UTC without a zone)")
    when.add_argument("--hours", type=float, help="hours after the assignment's due date")
    when.add_argument("--remove", action="store_true", help="the assignment's due date again")
    parser.add_argument("--assignment", default=ASSIGNMENT)
    parser.add_argument("--course", type=Path, default=Path(os.environ.get("UNET_GRADING_COURSE", ".")))
    parser.add_argument("--by", default=os.environ.get("USER", "instructor"), help="who decided (recorded)")
    args = parser.parse_args(argv)
    course = args.course.resolve()
    book = os.environ.get("UNET_GRADING_GRADEBOOK") or gradebook_url(course)
    try:
        if args.remove:
            due = None
        elif args.until:
            due = parse_due(args.until)
        else:
            due = assignment_due(book, args.assignment) + timedelta(hours=args.hours)
        granted = grant(course, book, args.assignment, args.student, due, args.by)
    except ExtensionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(granted.summary())
    queue = os.environ.get("UNET_GRADING_QUEUE") or f"sqlite:///{course / QUEUE_FILE}"
    if queue.startswith("sqlite:///") and not Path(queue.removeprefix("sqlite:///")).exists():
        return 0
    print(update_queue_and_feedback(course, queue, book, args.assignment, granted))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
