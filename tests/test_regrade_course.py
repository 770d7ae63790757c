"""A regrade for real: a check made to accept an alternative, previewed, applied, and an apply killed with kill -9.

A scratch course grades two example submissions with batch ``nbgrader
autograde`` (the reference, 100 points, and ``bug_conv_block``, which takes
the skip connection after pooling and loses points).  Then the course
changes: its ``spec_checks`` no longer insists on where the skip connection
is taken (a copy of the module, first on the regrade's path: what an
instructor's edit of the course's checks does).  The preview, on the
``regrade`` command's own worker, lists exactly the student it moves and
changes nothing; the LMS's reconciler sees nothing to post; apply, killed
with kill -9 right after it started on the student, leaves the old result;
the resumed apply moves the student, their feedback, and the reconciler
reads the new score once.  Two gradings and two previews in all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import nbformat
import pytest
from nbgrader.api import Gradebook

from grader.course import ASSIGNMENT, NOTEBOOK, ROOT
from grader.dev.examples import fill, solutions_for
from grader.dev.scratch_course import Course
from grader.student_side import ASSIGNMENT_DIR
from hub.grade_on_submit.queue import open_engine
from hub.grade_on_submit.regrade_store import APPLIED, APPLYING, PREVIEWED, RegradeRecords
from hub.grade_on_submit.settings import QUEUE_FILE
from hub.lms.scores import read_gradebook

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")]
STUDENTS = ("reference", "bug_conv_block")
# The changed checks: where conv_block's skip connection is taken, and what conv_block computes, are no
# longer judged (the rest of the checks stay as they are).
LENIENT = '''

def judge_conv_block(model, input_shape, n_filters, dropout, pooling, context):
    """Changed by the instructor: any skip connection is accepted."""


_judge_computation = judge_computation


def judge_computation(differences, aspect, own_call, context):
    """Changed by the instructor: what conv_block computes is no longer compared."""
    if not context.startswith("conv_block"):
        _judge_computation(differences, aspect, own_call, context)
'''


def submit(course: Course, student: str) -> None:
    folder = course.root / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    release = nbformat.read(course.release / f"{NOTEBOOK}.ipynb", as_version=4)
    nbformat.write(fill(release, solutions_for(student)), folder / f"{NOTEBOOK}.ipynb")
    (folder / "timestamp.txt").write_text("2026-12-01 11:00:00.000000 UTC")


def regrade(course: Course, *args: str, check: bool = True, **popen) -> subprocess.CompletedProcess:
    """The regrade command in the changed course (its grading processes inherit the environment)."""
    command = [sys.executable, "-m", "hub.grade_on_submit.regrade", "--course", str(course.root), "--by", "prof",
               *args]
    done = subprocess.run(command, cwd=ROOT, env={**course.changed_env, **popen.pop("env", {})},
                          capture_output=True, text=True, **popen)
    if check and done.returncode != 0:
        raise AssertionError(f"regrade {args} failed:\n{done.stdout}{done.stderr}")
    return done


def scores(course: Course) -> dict[str, float]:
    return {entry.account: entry.score for entry in read_gradebook(course.db_url)}


@pytest.fixture(scope="module")
def course(tmp_path_factory, small_data):
    course = Course(tmp_path_factory.mktemp("regrade"), small_data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    for student in STUDENTS:
        submit(course, student)
    course.nbgrader("autograde", ASSIGNMENT, "--force")
    course.nbgrader("generate_feedback", ASSIGNMENT, "--force")
    # The course's checks are the assignment folder's modules (grader/student_side.py puts it first on
    # sys.path), which this test must not edit: every process of the changed course loads the changed copy
    # as ``spec_checks`` when Python starts, so a regrade's fresh grading process judges with it.
    changed = tmp_path_factory.mktemp("changed")
    (changed / "changed_spec_checks.py").write_text((ASSIGNMENT_DIR / "spec_checks.py").read_text() + LENIENT)
    (changed / "sitecustomize.py").write_text(
        "import importlib.util, sys\n"
        f"sys.path.append({str(ASSIGNMENT_DIR)!r})\n"
        f"spec = importlib.util.spec_from_file_location('spec_checks', {str(changed / 'changed_spec_checks.py')!r})\n"
        "sys.modules['spec_checks'] = module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n")
    course.changed_env = {**course.env, "PYTHONPATH": str(changed)}
    return course


def test_preview_lists_exactly_the_moved_student_and_changes_nothing(course):
    before = scores(course)
    assert before["reference"] == 100 and before["bug_conv_block"] < 100
    feedback = course.root / "feedback" / "bug_conv_block" / ASSIGNMENT / f"{NOTEBOOK}.html"
    page = feedback.read_text()
    answer = regrade(course, "preview", "--everyone", "--work").stdout
    assert "1 of 2 student(s) move: bug_conv_block." in answer, answer
    records = RegradeRecords(open_engine(f"sqlite:///{course.root / QUEUE_FILE}"))
    [row] = [r for r in records.students(1) if r.student == "bug_conv_block"]
    assert row.state == PREVIEWED and row.new["total"] > row.old["total"]
    assert row.old["total"] == before["bug_conv_block"]
    moved = [c for c in row.new["cells"] if row.new["cells"][c]["points"] != row.old["cells"][c]["points"]]
    assert moved and all(row.old["cells"][c]["message"] != row.new["cells"][c]["message"] for c in moved)
    # Nothing a student or the LMS sees has changed.
    assert scores(course) == before and feedback.read_text() == page
    course.before = before


def test_apply_killed_then_resumed_moves_the_student_once(course):
    before = course.before
    regrade(course, "apply", "1")
    # The apply's worker is killed as soon as the student's row is in its journal state.
    worker = subprocess.Popen(
        [sys.executable, "-m", "hub.grade_on_submit.regrade", "--course", str(course.root), "work"], cwd=ROOT,
        env={**course.changed_env, "UNET_GRADING_LEASE": "4"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = RegradeRecords(open_engine(f"sqlite:///{course.root / QUEUE_FILE}"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = {r.student: r.state for r in records.students(1)}
        if states["bug_conv_block"] == APPLYING or worker.poll() is not None:
            break
        time.sleep(0.005)
    assert worker.poll() is None, "the apply finished before it could be killed"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    now = scores(course)
    # Either the old result or the new one for each student, never nothing.
    assert now["reference"] == 100 and now["bug_conv_block"] in (before["bug_conv_block"], _new_total(records))
    time.sleep(4.5)  # the killed worker's lease runs out
    regrade(course, "work", env={**course.env, "UNET_GRADING_LEASE": "4"})
    final = {r.student: r for r in records.students(1)}
    assert final["bug_conv_block"].state == APPLIED, final["bug_conv_block"].note
    assert final["reference"].state == "unchanged"
    assert scores(course) == {"reference": 100, "bug_conv_block": _new_total(records)}
    page = (course.root / "feedback" / "bug_conv_block" / ASSIGNMENT / f"{NOTEBOOK}.html").read_text()
    assert f"Score: {_new_total(records):g}" in page or f"{_new_total(records):g} / 100" in page
    with Gradebook(course.db_url) as gb:
        assert gb.find_submission(ASSIGNMENT, "bug_conv_block").score == _new_total(records)


def _new_total(records: RegradeRecords) -> float:
    return next(r.new["total"] for r in records.students(1) if r.student == "bug_conv_block")
