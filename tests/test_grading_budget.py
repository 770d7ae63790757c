"""One time budget per submission: a notebook of cells that sleep forever cannot hold a grading worker.

The budget's arithmetic and its sentences are checked on their own; then a
correct notebook with a dozen cells that each sleep for ever, before the
last graded cell, is graded by ``nbgrader autograde`` (the batch) and by
``grade_submission`` (grading on submit) at once, each with a small budget:
both end, every exercise that ran earns its points, and the feedback names
the cells that used the time.  A cell that swallows the interrupt at its
time limit ends that run: the cells before it run again in a fresh
sandbox, within the same budget, and every exercise is still graded.
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

# Serial: small budgets on purpose, which a busy neighbour on the machine would eat into.
pytestmark = pytest.mark.serial

SLEEPERS = 12
# One to three sleepers run (each until its cell's limit, the last until the budget is spent); the rest are not.
BUDGET, CELL_LIMIT = 45, 15
# Room for the replay after a stuck cell (a sandbox, TensorFlow's import, the cells) on a loaded machine.
STUBBORN_BUDGET = 120
STUBBORN = "import time\nwhile True:\n    try:\n        time.sleep(1)\n    except KeyboardInterrupt:\n        pass"


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


def submission(release: nbformat.NotebookNode, extra: list[str]) -> nbformat.NotebookNode:
    """The reference solutions, and the cells ``extra`` just before the last exercise's tests."""
    nb = fill(release, reference_solutions())
    first_test = next(i for i, c in enumerate(nb.cells)
                      if c.metadata.get("nbgrader", {}).get("grade_id") == "test_unet_encoder")
    nb.cells[first_test:first_test] = [new_code_cell(code) for code in extra]
    return nb


SUBMISSIONS = {
    "sleepy": [f"import time\ntime.sleep(10**6)  # sleeper {n}" for n in range(SLEEPERS)],
    "stubborn": [STUBBORN, "print('after the stubborn cell')"],
}


def _grade_on_submit(setup: CourseSetup, student: str, data: str, budget: int) -> tuple[GradingResult, float]:
    import os

    from grader.engine.grading import grade_submission, nbgrader_app

    os.environ["CARLA_DATA_DIR"] = data
    app = nbgrader_app(setup)
    app.config.SandboxedExecute.grading_budget = budget
    app.config.Execute.timeout = CELL_LIMIT
    started = time.perf_counter()
    result = grade_submission(setup, student)
    return result, time.perf_counter() - started


def _course(root, small_data, students: list[str]) -> tuple[Course, int]:
    """A course with these students' submissions; where the extra cells begin."""
    course = Course(root, small_data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    release = nbformat.read(course.release / f"{NOTEBOOK}.ipynb", as_version=4)
    for student in students:
        nb = submission(release, SUBMISSIONS[student])
        path = course.root / "submitted" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    return course, next(i for i, c in enumerate(nb.cells) if c.source == SUBMISSIONS[student][0])


@pytest.fixture(scope="module")
def graded(tmp_path_factory, small_data):
    batch, first = _course(tmp_path_factory.mktemp("budget-batch"), small_data, ["sleepy"])
    on_submit, _ = _course(tmp_path_factory.mktemp("budget-submit"), small_data, ["sleepy", "stubborn"])
    flags = [f"--SandboxedExecute.grading_budget={BUDGET}", f"--Execute.timeout={CELL_LIMIT}"]
    setup = CourseSetup(str(on_submit.root), on_submit.db_url)
    # Both ways of grading at once: each holds its worker only for the budget.
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        submitted = {s: pool.submit(_grade_on_submit, setup, s, str(small_data), budget)
                     for s, budget in (("sleepy", BUDGET), ("stubborn", STUBBORN_BUDGET))}
        started = time.perf_counter()
        batch.nbgrader("autograde", ASSIGNMENT, "--force", *flags)
        batch_seconds = time.perf_counter() - started
        results = {student: future.result() for student, future in submitted.items()}
    print(f"\nbudget {BUDGET} s: sleeping notebook, batch autograde {batch_seconds:.1f} s (with nbgrader's start), "
          f"grade_submission {results['sleepy'][1]:.1f} s; stubborn cell, grade_submission "
          f"{results['stubborn'][1]:.1f} s")
    return batch, {student: result for student, (result, _) in results.items()}, first, on_submit


@pytest.mark.slow
def test_the_batch_grades_what_ran_and_says_which_cells_used_the_time(graded):
    course, _, first, _ = graded
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
    _, results, first, _ = graded
    result = results["sleepy"]
    assert result.ok and result.score == 100
    assert result.out_of_time and f"cell {first + 1} (`import time`" in result.out_of_time


@pytest.mark.slow
def test_a_cell_that_swallows_the_interrupt_is_replayed_around_within_the_budget(graded):
    _, results, first, course = graded
    result = results["stubborn"]
    # The cells before it ran again in a fresh sandbox, and every exercise was graded.
    assert result.ok and result.score == 100 and result.out_of_time is None
    nb = nbformat.read(course.root / "autograded" / "stubborn" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
    said = nb.cells[first].outputs[-1]["evalue"]
    assert said == "This cell stopped the kernel: the kernel stopped responding. Cells after it were not run."
    assert nb.cells[first + 1].outputs == [], "the cell after it was not run"
