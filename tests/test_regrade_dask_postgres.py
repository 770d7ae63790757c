"""A regrade on Dask workers, with the queue, the regrade's tables and the gradebook on PostgreSQL (issue #32).

A course several machines grade: the grading service's workers are Dask
tasks (``UNET_GRADING_DASK=local:2``), and its queue, the regrade's own
tables (``regrade_store``) and nbgrader's gradebook are on a throw-away
PostgreSQL server.  Two students are graded in batch before the change
(``reference``, 100, and ``bug_conv_block``, which loses points), a third
(a throw-away unix account) submits the skip-connection bug through the
exchange and the Dask workers grade it.  Then the instructor changes the
course's checks to accept any skip connection (``LENIENT``, in a copy of
``spec_checks`` that every new Python process of this course loads) and
asks for a preview of everyone with the ``regrade`` command; the third
student submits again meanwhile.  The preview, on the Dask workers, moves
exactly ``bug_conv_block`` and changes nothing; the new submission is graded
once, with the course as it is now; apply, with the worker applying
``bug_conv_block`` killed with kill -9, finishes with every student's result
whole, and leaves the new submission's grading as it was.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from grader.course import ASSIGNMENT, NOTEBOOK, ROOT
from grader.dev.examples import fill, solutions_for
from grader.dev.scratch_course import Course
from grader.student_side import ASSIGNMENT_DIR
from hub.grade_on_submit.pipeline import feedback_copy
from hub.grade_on_submit.queue import GRADED, Submission
from hub.grade_on_submit.regrade_store import (
    APPLIED,
    APPLY_DONE,
    APPLYING,
    FAILED,
    PREVIEW_DONE,
    PREVIEWED,
    SKIPPED,
    UNCHANGED,
    RegradeRecords,
    StudentRow,
)
from hub.grade_on_submit.service import GradingService
from hub.grade_on_submit.settings import Settings
from tests.conftest import throwaway_user
from tests.exchange_harness import exchange, submit_as
from tests.postgres import another_database, postgres_server
from tests.test_regrade_course import LENIENT, submit

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")]
BATCH = ("reference", "bug_conv_block")
# Short, so that the row of a killed worker is taken up again soon.
LEASE = 6.0


@dataclass
class Week:
    """The course, its grading service (not serving pages: the test drives it), and the submitting student."""

    course: Course
    service: GradingService
    student: str
    inbound: Path
    checks: Path
    queue_url: str

    @property
    def records(self) -> RegradeRecords:
        return RegradeRecords(self.service.queue.engine)

    def rows(self, regrade_id: int = 1) -> dict[str, StudentRow]:
        return {r.student: r for r in self.records.students(regrade_id)}

    def graded(self) -> list[Submission]:
        return [r for r in self.service.queue.of_student(self.student) if r.state == GRADED]

    def totals(self) -> dict[str, float]:
        """Each student's score after the late penalty in the live gradebook."""
        with Gradebook(self.course.db_url) as gb:
            return {s.student.id: float(s.score) - float(s.late_submission_penalty or 0.0)
                    for s in gb.assignment_submissions(ASSIGNMENT)}

    def drive(self, done: Callable[[], bool], what: str, timeout: float = 420) -> None:
        """Run the service's own loop (find submissions, keep the Dask worker loops going) until ``done()``."""
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s; queue {self.service.queue.all()}"
            self.service.scan()
            self.service.supervise()
            time.sleep(0.5)

    def submit(self, code: dict[str, str]) -> str:
        release = nbformat.read(self.course.release / f"{NOTEBOOK}.ipynb", as_version=4)
        folder = submit_as(self.inbound, self.student, nbformat.writes(fill(release, code)))
        self.service.scan()
        return folder

    def regrade(self, *args: str) -> str:
        """The ``regrade`` command, as the instructor runs it on the course (the same queue and gradebook)."""
        done = subprocess.run([sys.executable, "-m", "hub.grade_on_submit.regrade", "--course", str(self.course.root),
                               "--by", "prof", *args], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "UNET_GRADING_QUEUE": self.queue_url,
                                   "UNET_GRADING_GRADEBOOK": self.course.db_url})
        assert done.returncode == 0, f"regrade {args}: {done.stdout}{done.stderr}"
        return done.stdout


def loading_checks_from(folder: Path) -> None:
    """``folder``'s ``spec_checks.py`` becomes the course's checks in every Python process started from now on.

    The course's checks are the assignment folder's module, which this test must not edit: with ``folder`` on
    PYTHONPATH, each new process loads this copy as ``spec_checks`` first, and the instructor's change is an
    edit of the copy.  A process that loaded it before the change keeps what it loaded, as with a real edit.
    """
    (folder / "spec_checks.py").write_text((ASSIGNMENT_DIR / "spec_checks.py").read_text())
    (folder / "sitecustomize.py").write_text(
        "import importlib.util, sys\n"
        f"sys.path.append({str(ASSIGNMENT_DIR)!r})\n"
        f"spec = importlib.util.spec_from_file_location('spec_checks', {str(folder / 'spec_checks.py')!r})\n"
        "sys.modules['spec_checks'] = module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n")


@pytest.fixture(scope="module")
def week(tmp_path_factory, small_data):
    root = tmp_path_factory.mktemp("regrade_dask")
    with postgres_server() as gradebook, throwaway_user() as student, pytest.MonkeyPatch.context() as env:
        queue_url = another_database(gradebook, "queue")
        (root / "course").mkdir()
        course = Course(root / "course", small_data, gradebook)
        course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
        for name in BATCH:
            submit(course, name)
            # As nbgrader's submit leaves it: releasing feedback names the file by the submission's secret.
            (course.root / "submitted" / name / ASSIGNMENT / "submission_secret.txt").write_text(secrets.token_hex(64))
        course.nbgrader("autograde", ASSIGNMENT, "--force")
        (course.root / "grade_on_submit.json").write_text(json.dumps({ASSIGNMENT: {"grade_on_submit": True}}))
        inbound, config = exchange(root)
        checks = root / "checks"
        checks.mkdir()
        loading_checks_from(checks)
        env.setenv("JUPYTER_CONFIG_PATH", str(config))
        env.setenv("CARLA_DATA_DIR", str(small_data))
        env.setenv("PYTHONPATH", str(checks))
        settings = Settings(course_root=course.root, exchange_inbound=inbound, queue_url=queue_url,
                            gradebook=gradebook, workers=2, dask="local:2", lease_seconds=LEASE)
        service = GradingService(settings)
        try:
            yield Week(course, service, student, inbound, checks, queue_url)
        finally:
            service.stop()


def test_before_the_change_the_dask_workers_grade_with_the_course_as_it_was(week):
    week.submit(solutions_for("bug_conv_block"))
    week.drive(lambda: len(week.graded()) == 1, "the first submission graded on Dask")
    [row] = week.graded()
    totals = week.totals()
    # A Dask task graded it, once; no local worker process was started.
    assert row.worker.startswith("dask-") and row.attempts == 1 and week.service.workers == {}
    assert totals["reference"] == 100 and totals["bug_conv_block"] < 100
    assert row.score == totals[week.student] == totals["bug_conv_block"]
    assert f"Score: {row.score:.1f} / 100.0" in feedback_copy(week.course.root, row.id).read_text()
    # Released to the student, once.
    assert len(list((week.inbound.parent / "feedback").glob("*.html"))) == 1


def test_a_preview_on_dask_moves_exactly_one_student_and_a_submission_meanwhile_is_graded_with_the_new_course(week):
    before = week.totals()
    with (week.checks / "spec_checks.py").open("a") as checks:
        checks.write(LENIENT)  # the instructor's change, after the Dask workers loaded the checks
    said = week.regrade("preview", "--everyone")
    assert "Regrade 1 started (everyone)" in said, said
    # The student submits the same notebook again while the regrade runs.
    folder = week.submit(solutions_for("bug_conv_block"))
    week.drive(lambda: all(r.state in PREVIEW_DONE for r in week.rows().values()) and len(week.graded()) == 2,
               "the preview and the new submission")
    rows = week.rows()
    assert {rows["reference"].state, rows["bug_conv_block"].state} == {PREVIEWED}, rows
    assert week.records.get(1).applied_by is None
    new = rows["bug_conv_block"].new["total"]
    assert rows["bug_conv_block"].old["total"] == before["bug_conv_block"] < new
    assert rows["reference"].new["total"] == rows["reference"].old["total"] == 100
    # The third student's row was previewed on the submission before (it would move them, but apply will
    # find the newer one), or failed because the stored submission changed under the preview.
    third = rows[week.student]
    assert third.state == PREVIEWED or "stored submission changed" in (third.note or ""), third
    moved = ["bug_conv_block", *([week.student] if third.state == PREVIEWED else [])]
    shown = week.regrade("show", "1")
    assert f"{len(moved)} of 3 student(s) move: {', '.join(moved)}." in shown, shown
    # Graded once, by a Dask worker, with the course as it is now: the changed checks accept the bug.
    [latest] = [r for r in week.service.queue.of_student(week.student) if r.folder == folder]
    assert (latest.state, latest.attempts, latest.score) == (GRADED, 1, new), latest
    assert latest.worker.startswith("dask-")
    # The preview changed nobody's result; the new submission's grading is the student's score now.
    assert week.totals() == {**before, week.student: new}


def test_an_apply_on_dask_with_its_worker_killed_finishes_and_leaves_the_new_submission_alone(week):
    previewed = week.rows()
    new = previewed["bug_conv_block"].new["total"]
    # Asked here rather than with the command, whose answer comes after the workers may have applied the row.
    assert week.records.apply(1, "prof") == len([r for r in previewed.values() if r.state == PREVIEWED])
    released = len(list((week.inbound.parent / "feedback").glob("*.html")))
    deadline = time.monotonic() + 300
    while (row := week.rows()["bug_conv_block"]).state != APPLYING or row.worker is None:
        assert row.state not in APPLY_DONE and time.monotonic() < deadline, row
        time.sleep(0.01)
    os.kill(int(row.worker.rsplit(":", 1)[1]), signal.SIGKILL)
    # Right after the kill the student has the old result or the new one, never nothing.
    assert week.totals()["bug_conv_block"] in (previewed["bug_conv_block"].old["total"], new)
    week.drive(lambda: all(r.state in APPLY_DONE for r in week.rows().values()), "the apply")
    rows = week.rows()
    assert rows["bug_conv_block"].state == APPLIED and rows["bug_conv_block"].attempts == 2, rows["bug_conv_block"]
    assert rows["reference"].state == UNCHANGED
    # The student who submitted during the regrade keeps that grading (already with the new course).
    assert rows[week.student].state in (SKIPPED, FAILED) and rows[week.student].note, rows[week.student]
    assert week.totals() == {"reference": 100, "bug_conv_block": new, week.student: new}
    assert [(r.state, r.attempts) for r in week.graded()] == [(GRADED, 1), (GRADED, 1)]
    feedback = week.course.root / "feedback" / "bug_conv_block" / ASSIGNMENT / f"{NOTEBOOK}.html"
    assert f"Score: {new:g}" in feedback.read_text() or f"{new:g} / 100" in feedback.read_text()
    # Released under the assignment's policy (show: feedback), once: the only student applied.
    assert rows["bug_conv_block"].note.endswith("Feedback regenerated and released."), rows["bug_conv_block"].note
    assert len(list((week.inbound.parent / "feedback").glob("*.html"))) == released + 1
