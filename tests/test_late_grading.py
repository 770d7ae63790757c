"""Late submissions graded for real: batch ``nbgrader autograde`` and grading on submit apply the same penalty.

A scratch course whose assignment is due at DUE, with the late policy 10% of
the score for each hour begun, down to half.  Every submission is the
reference solution (100 points), so the penalty alone moves the score:
- ``batch``: one second late, through ``nbgrader autograde`` and
  ``generate_feedback``: 90, and the feedback page says why;
- ``extended``: three hours and a second after the assignment's due date,
  with a two-hour extension granted before it submitted, through grading
  on submit's pipeline: an hour and a second late, 80, and the student is
  told the due date that applied.
Then a longer extension, through the grant command, gives 100 without
grading again: the service's row, the feedback page and the gradebook follow.
Two gradings only (each runs the notebook): the on-time-with-an-extension
and the arithmetic's other edges are in test_late_policy.py.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context

import nbformat
import pytest
from nbgrader.api import Gradebook

from grader.course import ASSIGNMENT, NOTEBOOK
from grader.dev.examples import fill, solutions_for
from grader.dev.scratch_course import Course
from grader.engine.grading import CourseSetup
from hub.grade_on_submit.extensions import record
from hub.grade_on_submit.pipeline import Outcome, feedback_copy
from hub.grade_on_submit.queue import GRADED, Queue, Submission, open_engine
from hub.grade_on_submit.settings import QUEUE_FILE

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")]
DUE = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def submit(course: Course, student: str, when: datetime) -> None:
    folder = course.root / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    release = nbformat.read(course.release / f"{NOTEBOOK}.ipynb", as_version=4)
    nbformat.write(fill(release, solutions_for("reference")), folder / f"{NOTEBOOK}.ipynb")
    (folder / "timestamp.txt").write_text(when.strftime("%Y-%m-%d %H:%M:%S.%f %Z"))


def grade_on_submit(setup: CourseSetup, rows: list[Submission], data: str) -> list[Outcome]:
    """The worker's pipeline for ``rows``, in a process of its own, minus the exchange (collect and release)."""
    import os

    from hub.grade_on_submit import pipeline

    os.environ["CARLA_DATA_DIR"] = data
    pipeline.collect = lambda setup, row: None
    pipeline.release_feedback = lambda setup, student: None
    return [pipeline.grade(setup, r, "feedback") for r in rows]


@pytest.fixture(scope="module")
def graded(tmp_path_factory, small_data):
    course = Course(tmp_path_factory.mktemp("late"), small_data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    with Gradebook(course.db_url) as gb:
        gb.update_or_create_assignment(ASSIGNMENT, duedate=DUE.replace(tzinfo=None))
        for student in ("batch", "extended"):
            gb.update_or_create_student(student)
    (course.root / "grade_on_submit.json").write_text(json.dumps(
        {ASSIGNMENT: {"grade_on_submit": True, "late": {"percent": 10, "per": "hour", "floor": 50}}}))
    record(course.root, ASSIGNMENT, "extended", DUE + timedelta(hours=2), "prof")
    submit(course, "batch", DUE + timedelta(seconds=1))
    submit(course, "extended", DUE + timedelta(hours=3, seconds=1))
    course.nbgrader("autograde", ASSIGNMENT, "--student=batch", "--force")
    course.nbgrader("generate_feedback", ASSIGNMENT, "--student=batch", "--force")
    # The service's queue where the grant command looks for it, with the submission as a worker claims it.
    (course.root / "grade_on_submit").mkdir()
    queue = Queue(open_engine(f"sqlite:///{course.root / QUEUE_FILE}"))
    queue.add(f"extended+{ASSIGNMENT}+t1", "extended", ASSIGNMENT, "t1", per_hour=0)
    row = queue.claim("w", 600)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        [outcome] = pool.submit(grade_on_submit, CourseSetup(str(course.root), course.db_url), [row],
                                str(small_data)).result()
    queue.finish(row.id, "w", row.attempts, state=outcome.state, score=outcome.score,
                 max_score=outcome.max_score, reason=outcome.reason, show="feedback")
    return course, outcome


def test_batch_autograde_takes_the_penalty_for_one_second_late(graded):
    course, _ = graded
    with Gradebook(course.db_url) as gb:
        submission = gb.find_submission(ASSIGNMENT, "batch")
        assert (submission.score, submission.total_seconds_late, submission.late_submission_penalty) == (100, 1, 10)
    page = (course.root / "feedback" / "batch" / ASSIGNMENT / f"{NOTEBOOK}.html").read_text()
    assert "Late submission penalty (Score: -10.0)" in page
    assert ("Submitted 2026-12-01 12:00:01 UTC, 1 second late: your due date is 2026-12-01 12:00:00 UTC." in page
            and "10 points are taken off, so the score is 90 of 100 instead of 100." in page)


def test_grading_on_submit_with_an_extension_takes_the_penalty_from_the_students_due_date(graded):
    course, outcome = graded
    assert (outcome.state, outcome.score, outcome.max_score) == (GRADED, 80, 100)
    assert ("1 hour 1 second late: your due date with your extension (the assignment's is 2026-12-01 12:00:00 UTC)"
            " is 2026-12-01 14:00:00 UTC" in outcome.reason)
    assert "20% of the score off" in outcome.reason
    assert "80" not in outcome.reason  # the note may be shown before the score may be
    with Gradebook(course.db_url) as gb:
        submission = gb.find_submission(ASSIGNMENT, "extended")
        # nbgrader's own fields: the extension and the penalty, as formgrader and nbgrader export see them.
        assert (submission.extension, submission.total_seconds_late) == (timedelta(hours=2), 3601)
        assert (submission.score, submission.late_submission_penalty) == (100, 20)
    page = feedback_copy(course.root, 1).read_text()
    assert "20 points are taken off, so the score is 80 of 100 instead of 100." in page
    assert "Late submission penalty (Score: -20.0)" in page


def test_a_longer_extension_afterwards_recomputes_the_score_row_and_feedback_without_grading_again(graded):
    course, _ = graded
    answer = course.run([sys.executable, "-m", "hub.grade_on_submit.grant", "extended", "--hours", "3.5",
                         "--course", str(course.root), "--by", "prof"])
    assert "late penalty 20 -> 0 points, score 80 -> 100 of 100" in answer.stdout
    assert "Feedback page regenerated" in answer.stdout
    [row] = Queue(open_engine(f"sqlite:///{course.root / QUEUE_FILE}")).of_student("extended")
    assert row.score == 100 and "on time: your due date with your extension" in row.reason
    assert "20% of the score off" not in row.reason  # the old note is replaced, not added to
    page = feedback_copy(course.root, row.id).read_text()
    assert "on time: your due date with your extension" in page and "points are taken off" not in page
    with Gradebook(course.db_url) as gb:
        submission = gb.find_submission(ASSIGNMENT, "extended")
        assert (submission.extension, submission.late_submission_penalty) == (timedelta(hours=3.5), 0)
