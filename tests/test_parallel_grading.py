"""Grading a class concurrently gives exactly the grades of grading it one by one.

The same submissions are graded three times, each in its own course folder:
plain sequential ``nbgrader autograde`` (the reference), two local worker
processes sharing one SQLite gradebook, and a local Dask cluster writing to a
real PostgreSQL server.  Every grade row, every verdict in the autograded
notebooks and the number of rows written must agree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from grader.course import ASSIGNMENT, NOTEBOOK
from grader.dev.examples import EXAMPLES, write_examples
from grader.dev.scratch_course import Course
from tests.fault_corpus import corpus
from tests.postgres import postgres_server
from tests.test_course import EXPECTED

pytestmark = pytest.mark.slow

# Two copies of every example, and two submissions that exercise the hard paths:
# a kernel that dies (its cells are replayed) and deleted test cells (restored).
COPIES = ("a_", "b_")
FAULTS = ("os_exit", "ok_deleted_tests")


def grade_rows(db_url: str) -> dict[str, dict[str, tuple]]:
    """Every autograded cell's score per student, straight from the gradebook."""
    with Gradebook(db_url) as gb:
        return {
            sub.student.id: {grade.name: (grade.auto_score, grade.needs_manual_grade) for nb in sub.notebooks
                             for grade in nb.grades}
            for sub in gb.assignment_submissions(ASSIGNMENT)
        }


def verdicts(course: Course) -> dict[str, dict[str, str]]:
    """The one output each hidden test cell got in each autograded notebook, as text."""
    result = {}
    for path in sorted((course.root / "autograded").glob(f"*/{ASSIGNMENT}/{NOTEBOOK}.ipynb")):
        nb = nbformat.read(path, as_version=4)
        result[path.parent.parent.name] = {
            c.metadata.nbgrader["grade_id"]: "".join(o.get("text", "") or o.get("evalue", "") for o in c.outputs)
            for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")}
    return result


def new_course(root: Path, data: Path, submitted: Path, db_url: str | None = None) -> Course:
    course = Course(root, data, db_url)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    shutil.copytree(submitted, root / "submitted")
    return course


@pytest.fixture(scope="module")
def sequential(tmp_path_factory, small_data) -> Course:
    course = Course(tmp_path_factory.mktemp("sequential"), small_data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    release_nb = course.release / f"{NOTEBOOK}.ipynb"
    for prefix in COPIES:
        write_examples(course.root / "submitted", release_nb, prefix=prefix)
    release = nbformat.read(release_nb, as_version=4)
    for fault in corpus(str(course.root)):
        if fault.name in FAULTS:
            path = course.root / "submitted" / fault.name / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
            path.parent.mkdir(parents=True)
            path.write_bytes(fault.make(release))
    course.nbgrader("autograde", ASSIGNMENT, "--force")
    return course


@pytest.fixture(scope="module")
def local_workers(tmp_path_factory, small_data, sequential) -> Course:
    course = new_course(tmp_path_factory.mktemp("workers"), small_data, sequential.root / "submitted")
    course.autograde_class("--workers", "2")
    return course


@pytest.fixture(scope="module")
def dask_postgres(tmp_path_factory, small_data, sequential):
    with postgres_server() as db_url:
        course = new_course(tmp_path_factory.mktemp("dask"), small_data, sequential.root / "submitted", db_url)
        course.autograde_class("--dask", "local:2")
        yield course


def students() -> set[str]:
    return {prefix + name for prefix in COPIES for name in EXAMPLES} | set(FAULTS)


def test_sequential_reference_is_right(sequential):
    rows = grade_rows(sequential.db_url)
    assert set(rows) == students()
    for prefix in COPIES:
        for name, points in EXPECTED.items():
            assert sum(score for score, _ in rows[prefix + name].values()) == points["total"]
    assert sum(score for score, _ in rows["ok_deleted_tests"].values()) == 100
    assert all(score is not None for cells in rows.values() for score, _ in cells.values())


@pytest.mark.parametrize("backend", ["local_workers", "dask_postgres"])
def test_concurrent_grading_matches_sequential(request, sequential, backend):
    course = request.getfixturevalue(backend)
    assert grade_rows(course.db_url) == grade_rows(sequential.db_url)
    assert verdicts(course) == verdicts(sequential)
    assert len(verdicts(course)) == len(students())


def _autograde_class(course: Course) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader.tools.autograde_class", "--course", str(course.root),
                           "--db", course.db_url, "--workers", "2"],
                          cwd=Path(__file__).parent.parent, env=course.env, capture_output=True, text=True)


def test_refuses_to_start_before_the_assignment_is_generated(tmp_path, small_data, sequential):
    course = Course(tmp_path, small_data)
    shutil.copytree(sequential.root / "submitted", tmp_path / "submitted")
    result = _autograde_class(course)
    assert result.returncode != 0
    assert f"There is no gradebook at {tmp_path / 'gradebook.db'}" in result.stderr
    assert not (tmp_path / "gradebook.db").exists()

    course.nbgrader("db", "student", "add", "someone")  # a gradebook, but without the assignment
    result = _autograde_class(course)
    assert result.returncode != 0
    assert "has no assignment 'unet_segmentation'" in result.stderr and "generate_assignment" in result.stderr
    assert not (tmp_path / "autograded").exists()
