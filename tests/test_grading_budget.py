"""One time budget per submission: a notebook of cells that sleep forever cannot hold a grading worker.

The budget's arithmetic and its sentences are checked on their own; then a
correct notebook with a dozen cells that each sleep for ever, before the
last graded cell, is graded by ``nbgrader autograde`` (the batch) and by
``grade_submission`` (grading on submit) at once, each with a small budget:
both end, every exercise that ran earns its points, and the feedback names
the cells that used the time.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader.course import ASSIGNMENT, NOTEBOOK, reference_solutions
from grader.dev.examples import fill
from grader.dev.scratch_course import Course
from grader.engine.budget import TimeBudget, describe_cell
from grader.engine.grading import CourseSetup, GradingResult
from grader.tools.grades import scores
from tests.fault_corpus import FULL

SLEEPERS = 12
BUDGET, CELL_LIMIT = 40, 15
SETTINGS = {"SandboxedExecute": {"grading_budget": BUDGET}, "Execute": {"timeout": CELL_LIMIT}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _notebook():
    return new_notebook(cells=[new_markdown_cell("# Title"), new_code_cell("import time"),
                               new_markdown_cell("### Exercise 3: `unet_model`\n\nText"),
                               new_markdown_cell("No heading here"),
                               new_code_cell("\n  time.sleep(10**6)  # " + "x" * 80), new_code_cell("")])


def test_a_cell_is_named_by_its_number_first_line_and_the_heading_above():
    nb = _notebook()
    assert describe_cell(nb, 4) == f"cell 5 (`time.sleep(10**6)  # {'x' * 39}...`, below 'Exercise 3: unet_model')"
    assert describe_cell(nb, 1) == "cell 2 (`import time`, below 'Title')"
    assert describe_cell(nb, 5) == "cell 6 (below 'Exercise 3: unet_model')"


def test_the_budget_keeps_its_reserve_and_names_the_cells_that_used_it():
    clock = Clock()
    budget = TimeBudget(120, 15, clock=clock)
    assert (budget.left(), budget.left_for_cells()) == (120, 105)
    budget.ran(1, 2.0, stopped=False)
    budget.ran(4, 60.0, stopped=True)
    budget.ran(5, 43.0, stopped=True)
    clock.now += 105
    assert budget.left_for_cells() == 0 and budget.left() == 15
    said = budget.spent(_notebook())
    assert said.startswith("the grading's time budget of 120 s for your whole notebook was used up, most of it by "
                           "cell 5 (`time.sleep")
    assert ("which ran for 60 s until it was stopped; cell 6 (below 'Exercise 3: unet_model'), which ran for 43 s"
            in said)
    assert "cell 2" not in said, "a cell that took a moment is not blamed"


def test_more_stopped_cells_than_are_named_are_counted():
    budget = TimeBudget(100, 10, clock=Clock())
    nb = new_notebook(cells=[new_code_cell(f"x = {i}") for i in range(6)])
    for index in range(6):
        budget.ran(index, 15.0 - index, stopped=True)
    said = budget.users(nb)
    assert said.count("until it was stopped") == 3 and said.endswith("and 3 more cells stopped at a time limit")
    assert TimeBudget(100, 10).users(nb) == "before any cell ran (starting the sandbox took it)"


# -- the whole grading -----------------------------------------------------------------------------------


def sleeping_submission(release: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The reference solutions, and a dozen cells that sleep for ever just before the last exercise's tests."""
    nb = fill(release, reference_solutions())
    first_test = next(i for i, c in enumerate(nb.cells)
                      if c.metadata.get("nbgrader", {}).get("grade_id") == "test_unet_encoder")
    sleepers = [new_code_cell(f"import time\ntime.sleep(10**6)  # sleeper {n}") for n in range(SLEEPERS)]
    nb.cells[first_test:first_test] = sleepers
    return nb


def _grade_on_submit(setup: CourseSetup, student: str, data: str) -> tuple[GradingResult, float]:
    import os

    from grader.engine.grading import grade_submission, nbgrader_app

    os.environ["CARLA_DATA_DIR"] = data
    app = nbgrader_app(setup)
    for section, values in SETTINGS.items():
        for name, value in values.items():
            setattr(app.config[section], name, value)
    started = time.perf_counter()
    result = grade_submission(setup, student)
    return result, time.perf_counter() - started


def _course(root, small_data, student: str) -> tuple[Course, int]:
    course = Course(root, small_data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    nb = sleeping_submission(nbformat.read(course.release / f"{NOTEBOOK}.ipynb", as_version=4))
    path = course.root / "submitted" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    first_sleeper = next(i for i, c in enumerate(nb.cells) if "sleeper 0" in c.source)
    return course, first_sleeper


@pytest.fixture(scope="module")
def graded(tmp_path_factory, small_data):
    batch, first = _course(tmp_path_factory.mktemp("budget-batch"), small_data, "sleepy")
    on_submit, _ = _course(tmp_path_factory.mktemp("budget-submit"), small_data, "sleepy")
    flags = [f"--SandboxedExecute.grading_budget={BUDGET}", f"--Execute.timeout={CELL_LIMIT}"]
    # Both ways of grading at once: each holds its worker only for the budget.
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        submitted = pool.submit(_grade_on_submit, CourseSetup(str(on_submit.root), on_submit.db_url), "sleepy",
                                str(small_data))
        started = time.perf_counter()
        batch.nbgrader("autograde", ASSIGNMENT, "--force", *flags)
        batch_seconds = time.perf_counter() - started
        result, submit_seconds = submitted.result()
    print(f"\nsleeping notebook, budget {BUDGET} s: batch autograde {batch_seconds:.1f} s (with nbgrader's start), "
          f"grade_submission {submit_seconds:.1f} s")
    return batch, result, first


@pytest.mark.slow
def test_the_batch_grades_what_ran_and_says_which_cells_used_the_time(graded):
    course, _, first = graded
    assert scores("sleepy", course.db_url) == {**FULL, "total": 100.0, "ungraded": []}
    nb = nbformat.read(course.root / "autograded" / "sleepy" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    said = [nb.cells[first + n].outputs[-1] for n in range(SLEEPERS)]
    stopped = [o["evalue"] for o in said if o["ename"] == "CellTimeoutError"]
    not_run = [o for o in said if o["ename"] != "CellTimeoutError"]
    # The first sleepers ran until a limit stopped them (the cell's own, then what was left of the budget) ...
    assert 1 <= len(stopped) <= 3 and said[:len(stopped)] == [o for o in said if o["ename"] == "CellTimeoutError"]
    for message in stopped:
        assert message == f"This cell did not finish within {CELL_LIMIT} s and was interrupted." or (
            message.startswith("This cell was stopped after ")
            and message.endswith(f"the grading's time budget of {BUDGET} s for your whole notebook ran out."))
    # ... and each of the others says it was not run, and which cells used the time.
    assert not_run
    for output in not_run:
        assert output["ename"] == "GradingTimeBudget"
        assert output["evalue"].startswith(f"Not run: the grading's time budget of {BUDGET} s")
        assert f"cell {first + 1} (`import time`, below 'Exercise 3: unet_model'), which ran for" in output["evalue"]
        assert "until it was stopped" in output["evalue"]


@pytest.mark.slow
def test_grading_on_submit_ends_within_the_budget_and_scores_what_ran(graded):
    _, result, first = graded
    assert result.ok and result.score == 100
    assert result.out_of_time and f"cell {first + 1} (`import time`" in result.out_of_time
