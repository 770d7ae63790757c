"""The engine's entry point: one submission graded in-process, with a typed result."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest

from grader.course import ASSIGNMENT, NOTEBOOK
from grader.dev.examples import write_examples
from grader.dev.scratch_course import Course
from grader.engine.grading import CourseSetup, GradingResult, grade_submission
from grader.tools.grades import scores

pytestmark = pytest.mark.slow


def _grade(setup: CourseSetup, students: list[str], data: str) -> list[GradingResult]:
    import os

    os.environ["CARLA_DATA_DIR"] = data
    return [grade_submission(setup, student) for student in students]


@pytest.fixture(scope="module")
def graded(tmp_path_factory, small_data):
    course = Course(tmp_path_factory.mktemp("entry"), small_data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    write_examples(course.root / "submitted", course.release / f"{NOTEBOOK}.ipynb")
    students = ["reference", "bug_conv_block", "nobody"]
    # A process of its own: the entry point makes nbgrader's application instance there.
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        results = pool.submit(_grade, CourseSetup(str(course.root), course.db_url), students, str(small_data)).result()
    return course, dict(zip(students, results, strict=True))


def test_a_correct_submission_gets_every_point_with_timings(graded):
    _, results = graded
    result = results["reference"]
    assert result.ok and result.failure is None
    assert (result.score, result.max_score) == (100, 100)
    assert [c.grade_id for c in result.cells] == ["test_conv_block_default", "test_conv_block_options",
                                                  "test_upsampling_layers", "test_upsampling_wiring",
                                                  "test_unet_encoder", "test_unet_decoder"]
    assert all(c.passed and c.message for c in result.cells)
    assert set(result.timings) == {"sandbox start", "run", "evidence", "checks"}
    assert all(0 < seconds < result.seconds for seconds in result.timings.values())


def test_lost_points_come_with_their_messages_and_agree_with_the_gradebook(graded):
    course, results = graded
    result = results["bug_conv_block"]
    assert result.by_exercise() == {"conv_block": 0, "upsampling_block": 30, "unet_model": 40}
    failed = [c for c in result.cells if not c.passed]
    assert [c.grade_id for c in failed] == ["test_conv_block_default", "test_conv_block_options"]
    assert "skip_connection must be the output of the last Conv2D" in failed[0].message
    book = scores("bug_conv_block", course.db_url)
    assert {k: v for k, v in book.items() if k not in ("total", "ungraded")} == result.by_exercise()


def test_a_submission_that_cannot_be_graded_says_why(graded):
    result = graded[1]["nobody"]
    assert not result.ok and result.cells == ()
    assert result.failure
