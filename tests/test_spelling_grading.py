"""Equivalent spellings graded end to end: one ``nbgrader autograde`` batch, every submission 100.

The submissions of ``tests.spellings.SUBMISSIONS`` each combine several ways
of writing correct code that real students use (``max_pooling=None`` for the
bottleneck, numpy scalars, positional arguments, ``MaxPool2D()``,
``Concatenate()(...)``, ``HeNormal()`` ...).  Each must get every point, and
every hidden cell must say "Passed".
"""

import nbformat
import pytest

from grader.course import ASSIGNMENT, NOTEBOOK, reference_solutions
from grader.dev.examples import fill
from grader.dev.scratch_course import Course
from grader.tools.grades import scores
from tests.fault_corpus import FULL
from tests.spellings import SUBMISSIONS, submission_code

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def course(tmp_path_factory, small_data) -> Course:
    course = Course(tmp_path_factory.mktemp("spellings"), small_data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    release = nbformat.read(course.release / f"{NOTEBOOK}.ipynb", as_version=4)
    for name in SUBMISSIONS:
        path = course.root / "submitted" / name / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(fill(release, submission_code(name, reference_solutions())), path)
    course.nbgrader("autograde", ASSIGNMENT, "--force")
    return course


@pytest.mark.parametrize("name", SUBMISSIONS)
def test_every_equivalent_spelling_gets_every_point(course, name):
    assert scores(name, course.db_url) == {**FULL, "total": sum(FULL.values()), "ungraded": []}
    path = course.root / "autograded" / name / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    hidden = [c for c in nbformat.read(path, as_version=4).cells
              if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]
    assert len(hidden) == 6
    for cell in hidden:
        assert [o.get("text", "")[:8] for o in cell.outputs] == ["Passed: "], cell.outputs
