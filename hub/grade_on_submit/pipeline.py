"""Grade one submission from the exchange, as the instructor's four nbgrader commands would for that student.

``collect`` (only this submission, with the exchange's checks), the grading
engine's ``grade_submission`` (nbgrader's Autograde with the course's
sandbox), ``generate_feedback`` and, when the policy shows feedback,
``release_feedback``: nbgrader's own classes, run in this worker process,
which imports nbgrader and TensorFlow once.  Each step can run twice with the
result of running once, so a worker killed half-way is simply run again.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from grader.engine.grading import CourseSetup, grade_submission, nbgrader_app
from hub.grade_on_submit.extensions import Lateness, lateness
from hub.grade_on_submit.queue import FAILED, GRADED, SUPERSEDED, Submission

# Kept per graded submission, so an earlier submission's feedback stays readable after a later one is graded.
ARCHIVE = "grade_on_submit/feedback"


@dataclass
class Outcome:
    """How one submission's grading ended."""

    state: str
    score: float | None = None
    max_score: float | None = None
    reason: str | None = None
    phases: dict[str, float] = field(default_factory=dict)
    released: bool = False
    # For the instructor only: the error behind a failure of the service itself.
    detail: str | None = None


class LeaseLost(RuntimeError):
    """This worker's lease ran out: another worker may be grading the submission now."""


def feedback_copy(course_root: Path, submission_id: int) -> Path:
    """Where the feedback of queue row ``submission_id`` is kept for the grading service's pages."""
    return course_root / ARCHIVE / f"{submission_id}.html"


def due_date(setup: CourseSetup) -> datetime | None:
    """The assignment's due date in the gradebook (UTC), or None."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(setup.db_url) as gb:
        try:
            due = gb.find_assignment(setup.assignment).duedate
        except MissingEntry:
            return None
    return due.replace(tzinfo=UTC) if due is not None else None


def submission_lateness(setup: CourseSetup, student: str) -> tuple[Lateness | None, str | None]:
    """How late ``student``'s graded submission was, and the sentence for them (without points; see views)."""
    from nbgrader.api import Gradebook

    # Here, not at the top: the grading service imports this module and never needs nbgrader itself.
    from hub.grade_on_submit.late_feedback import explain
    from hub.grade_on_submit.late_plugin import late_policy

    with Gradebook(setup.db_url) as gb:
        late = lateness(gb, setup.assignment, student)
    if late is None:
        return None, None
    return late, explain(late, late_policy(Path(setup.course_root), setup.assignment), points=False)


def _exchange(step: str, setup: CourseSetup, student: str):
    """nbgrader's exchange class for ``step`` as the course configures it (``unet_hub.exchange``)."""
    from nbgrader.auth import Authenticator
    from nbgrader.exchange import ExchangeFactory

    app = nbgrader_app(setup)
    app.coursedir.assignment_id, app.coursedir.student_id = setup.assignment, student
    authenticator = Authenticator(parent=app)
    return getattr(ExchangeFactory(parent=app), step)(coursedir=app.coursedir, authenticator=authenticator,
                                                      parent=app)


def collect(setup: CourseSetup, row: Submission) -> str | None:
    """Copy this one submission into ``submitted/``; why it could not be, or None.

    A worker killed while copying leaves a partial copy with this
    submission's time, which nbgrader's collect would keep: a second
    attempt copies it afresh.
    """
    submitted = Path(setup.course_root, "submitted", row.student, row.assignment)
    if row.attempts > 1 and _timestamp(submitted) in (row.timestamp, None) and submitted.is_dir():
        shutil.rmtree(submitted)
    collector = _exchange("Collect", setup, row.student)
    collector.only = row.folder
    collector.update = True
    collector.start()
    if row.folder in getattr(collector, "refused", {}):
        return f"The submission was not accepted: {collector.refused[row.folder]}."
    collected = _timestamp(submitted)
    if collected is None:
        return "The submission could not be found in the exchange."
    if collected != row.timestamp:
        return SUPERSEDED
    return None


def _timestamp(folder: Path) -> str | None:
    try:
        return (folder / "timestamp.txt").read_text().strip()
    except OSError:
        return None


def generate_feedback(setup: CourseSetup, row: Submission) -> Path:
    """nbgrader's GenerateFeedback for this student; the feedback page, also kept under the row's id."""
    from nbgrader.converters import GenerateFeedback

    from grader.course import NOTEBOOK

    app = nbgrader_app(setup)
    app.coursedir.assignment_id, app.coursedir.student_id = setup.assignment, row.student
    converter = GenerateFeedback(coursedir=app.coursedir, parent=app)
    converter.force = True
    converter.start()
    page = Path(setup.course_root, "feedback", row.student, row.assignment, f"{NOTEBOOK}.html")
    kept = feedback_copy(Path(setup.course_root), row.id)
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(page, kept.with_suffix(".tmp"))
    kept.with_suffix(".tmp").replace(kept)
    return page


def release_feedback(setup: CourseSetup, student: str) -> None:
    """nbgrader's ReleaseFeedback for this student (their latest graded submission)."""
    _exchange("ReleaseFeedback", setup, student).start()


def shows_feedback_now(show: str, due: datetime | None, now: datetime | None = None) -> bool:
    """Whether students may see feedback under the policy ``show``, before or after the due date ``due``."""
    now = now or datetime.now(UTC)
    return show == "feedback" or (due is not None and now >= due)


def grade(setup: CourseSetup, row: Submission, show: str, still_mine: Callable[[], None] = lambda: None) -> Outcome:
    """Collect, autograde, generate (and maybe release) feedback for the submission ``row``.

    ``still_mine`` raises ``LeaseLost`` if another worker may have taken the
    submission over; it is asked before each step that changes the course.
    """
    phases = {"queued": max(0.0, (row.started_at or time.time()) - max(row.queued_at, row.not_before))}
    started = time.perf_counter()
    still_mine()
    problem = collect(setup, row)
    phases["collect"] = time.perf_counter() - started
    if problem == SUPERSEDED:
        return Outcome(SUPERSEDED, phases=phases,
                       reason="A later submission was graded before this one; the later one counts.")
    if problem:
        return Outcome(FAILED, reason=problem, phases=phases)
    still_mine()
    result = grade_submission(setup, row.student)
    phases.update(result.timings)
    if not result.ok:
        return Outcome(FAILED, reason=f"Your notebook could not be graded: {result.failure}", phases=phases)
    # The penalty is in the gradebook now (nbgrader's AssignLatePenalties step with the course's policy).
    late, late_said = submission_lateness(setup, row.student)
    penalty = late.penalty if late is not None else 0.0
    started = time.perf_counter()
    still_mine()
    generate_feedback(setup, row)
    # Before the student's own due date (with an extension, theirs) their feedback waits as the policy says.
    released = shows_feedback_now(show, late.due if late is not None and late.due else due_date(setup))
    if released:
        still_mine()
        release_feedback(setup, row.student)
    phases["feedback"] = time.perf_counter() - started
    # A grading that ran out of its time budget is graded with the cells that ran; the student is told which
    # cells used the time (the feedback says it too, cell by cell).
    return Outcome(GRADED, score=round(max(0.0, result.score - penalty), 4), max_score=result.max_score,
                   phases=phases, released=released,
                   reason=" ".join(filter(None, [result.out_of_time, late_said])) or None)
