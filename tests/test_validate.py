"""Validate tells the truth: `nbgrader validate` on release notebooks, as a student would run it.

Each graded cell of the release runs the visible check of its exercise on the
notebook's own example, so Validate fails an unfinished or wrong exercise,
names it once, and passes every correct spelling that grading accepts.  A
loop that never ends, a call of input() and a kernel that dies end in a
message, never in a hang or a traceback of nbgrader's.  The source notebook
passes Validate, and the release fails it on every graded cell
(``--invert``), as CI must prove.
"""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import nbformat
import pytest

from grader.course import ASSIGNMENT, NOTEBOOK, ROOT, SOURCE_NOTEBOOK, reference_solutions
from grader.dev.examples import BUGS, fill, solutions_for
from grader.dev.scratch_course import Course
from grader.engine.checks import CONV_DEFAULT_CASES, CONV_DEFAULTS_CALL, CONV_OPTION_CASES, UNET_CASES, UPSAMPLING_CASES
from tests.spellings import submission_code

pytestmark = pytest.mark.slow

SUCCESS = "Success! Your notebook passes all the tests."
EXERCISES = ("conv_block", "upsampling_block", "unet_model")
LOOP_IN_CELL = "while True:\n    pass\n\n\n"
SAME = "the same problem as in the graded cell above; this cell passes once that one does."


def _with(exercise: str, old: str, new: str) -> dict[str, str]:
    code = reference_solutions()
    assert code[exercise].count(old) == 1
    return {**code, exercise: code[exercise].replace(old, new)}


VARIANTS: dict[str, dict[str, str]] = {
    "untouched": {},
    **{name: solutions_for(name) for name in BUGS},
    "reference": reference_solutions(),
    **{f"spelled_{name}": submission_code(name, reference_solutions())
       for name in ("bottleneck_pooling_none", "numpy_scalars", "upsampling_forms_2", "unpacked_and_looped")},
    "loop_in_cell": _with("conv_block", "def conv_block(", LOOP_IN_CELL + "def conv_block("),
    "loop_in_function": _with("upsampling_block", "    up = ", "    while True:\n        pass\n    up = "),
    "asks_for_input": _with("conv_block", "    if dropout_prob > 0:", "    input('rate? ')\n    if dropout_prob > 0:"),
    "kernel_dies": _with("upsampling_block", "    return conv", "    return conv\n\n\nimport os\nos._exit(3)"),
}


def hidden_values() -> list[str]:
    """The input shapes that only the hidden tests use, as a message would print them."""
    public = {(96, 128, 3), (12, 16, 256), (24, 32, 128)}
    shapes = [c.args["shape"] for c in [*CONV_DEFAULT_CASES, CONV_DEFAULTS_CALL, *CONV_OPTION_CASES]]
    shapes += [c.args[k] for c in UPSAMPLING_CASES for k in ("expansive", "contractive")]
    shapes += [c.args["input_size"] for c in UNET_CASES]
    return sorted({str(tuple(s)) for s in shapes} - {str(s) for s in public})


@pytest.fixture(scope="module")
def course(tmp_path_factory, small_data) -> Course:
    course = Course(tmp_path_factory.mktemp("validate"), small_data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    release = nbformat.read(course.release / f"{NOTEBOOK}.ipynb", as_version=4)
    for name, code in VARIANTS.items():
        nbformat.write(fill(release, code), course.release / f"{name}.ipynb")
    return course


def run_validate(course: Course, *paths, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`nbgrader validate` of ``paths``, run from the course root as an instructor or a student would."""
    # A cell limit of 30 s (the course sets 60) keeps the never-ending cell short; it stays above
    # the 20 s a visible check gives one call, as the course's setting does.
    command = [sys.executable, "-m", "nbgrader", "validate", *map(str, paths), *args,
               f"--CourseDirectory.root={course.root}", "--Execute.timeout=30"]
    # The guard is for a hang, which must never happen; it is not a speed target.
    result = subprocess.run(command, cwd=ROOT, env=course.env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def validate(course: Course, *paths, args: tuple[str, ...] = ()) -> str:
    """What `nbgrader validate` prints for ``paths``."""
    return run_validate(course, *paths, args=args).stdout


# Where nbgrader starts the report of each notebook it validates.
REPORT_START = re.compile(r"^(?:Success! Your notebook passes all the tests\.|VALIDATION FAILED ON \d+ CELL\(S\)!)",
                          re.MULTILINE)
# Two processes side by side, each with about the same share of waiting: a function that never returns
# waits out three time limits (the visible check's, then two cells'). Those run with kernels started as
# an instructor's `nbgrader validate` starts them (the default); the others with kernels forked from one
# template, as the hub's Validate does.
SLOWEST = ["loop_in_function", "kernel_dies", "asks_for_input"]
GROUPS = ((SLOWEST, False), ([name for name in VARIANTS if name not in SLOWEST], True))


def validate_together(course: Course, names: list[str], template: bool) -> dict[str, str]:
    """Each notebook's report from one `nbgrader validate` of them all."""
    result = run_validate(course, *(course.release / f"{name}.ipynb" for name in names),
                          args=(f"--ValidateExecute.template={template}",))
    if template:  # one template, and every kernel forked from it
        assert result.stderr.count("Kernel template started") == 1, result.stderr
        assert "not used" not in result.stderr, result.stderr
    else:
        assert "Kernel template" not in result.stderr, result.stderr
    out = result.stdout
    starts = [found.start() for found in REPORT_START.finditer(out)]
    assert len(starts) == len(names), out
    return {name: out[a:b] for name, a, b in zip(names, starts, [*starts[1:], len(out)], strict=True)}


@pytest.fixture(scope="module")
def reports(course) -> dict[str, str]:
    assert sorted(n for group, _ in GROUPS for n in group) == sorted(VARIANTS)
    with ThreadPoolExecutor(2) as pool:
        done = pool.map(lambda group: validate_together(course, *group), GROUPS)
        return {name: report for group in done for name, report in group.items()}


def errors(report: str) -> list[str]:
    """The error text of each failed cell, lines joined."""
    blocks = report.split("The error was:")[1:]
    return [" ".join(line.strip() for line in b.split("=" * 20)[0].strip().splitlines()) for b in blocks]


def failed_cells(report: str) -> list[str]:
    """The exercise of each failed graded cell, from the visible check in its source."""
    return re.findall(r'visible_check\("(\w+)"', report.split("The following cell failed:", 1)[-1])


def test_untouched_release_names_each_unfinished_exercise_once(reports):
    report = reports["untouched"]
    assert "VALIDATION FAILED ON 6 CELL(S)" in report
    for exercise in EXERCISES:
        assert report.count(f"{exercise} is not written yet") == 1, report
    assert "NameError" not in report and "Traceback" not in report


@pytest.mark.parametrize("student", sorted(BUGS))
def test_a_wrong_exercise_is_named_with_the_checks_own_message(reports, student):
    exercise = BUGS[student].exercise
    failed = errors(reports[student])
    assert failed, reports[student]
    assert failed[0].startswith(f"Check failed: {exercise}"), failed
    assert all(e.startswith((f"Check failed: {exercise}", f"Check failed: {SAME}")) for e in failed), failed
    # Only this exercise's graded cells failed: the two correct exercises are not blamed.
    assert failed_cells(reports[student]) == [exercise] * len(failed)


def test_the_skip_connection_bug_is_explained(reports):
    assert any("skip_connection must be the output of the last Conv2D (before pooling), got the output of "
               "MaxPooling2D" in e for e in errors(reports["bug_conv_block"]))


@pytest.mark.parametrize("name", ["reference"] + [n for n in VARIANTS if n.startswith("spelled_")])
def test_correct_work_passes_however_it_is_spelled(reports, name):
    assert SUCCESS in reports[name], reports[name]


def test_a_loop_that_never_ends_gives_a_message(reports):
    failed = errors(reports["loop_in_cell"])
    assert len(failed) == 2 and failed[0].startswith("Check failed: conv_block is not defined"), failed
    failed = errors(reports["loop_in_function"])
    assert failed[0].startswith("Check failed: upsampling_block did not return within 20 s"), failed
    assert failed[1] == f"Check failed: {SAME}"


def test_input_is_explained(reports):
    assert errors(reports["asks_for_input"])[0].startswith("Check failed: conv_block asks for input()")


def test_a_dead_kernel_gives_a_message_on_every_graded_cell_that_could_not_run(reports):
    report = reports["kernel_dies"]
    failed = errors(report)
    assert "VALIDATION FAILED ON 4 CELL(S)" in report, report
    assert all(e.startswith("Not run: the Python kernel stopped while running the cell that begins "
                            "`def upsampling_block(") for e in failed), failed
    assert "Traceback" not in report


def test_validate_reveals_no_hidden_test(course, reports):
    release_text = "".join(p.read_text(errors="replace") for p in course.release.rglob("*.py"))
    release_text += (course.release / f"{NOTEBOOK}.ipynb").read_text()
    everything = release_text + "".join(reports.values())
    for secret in ["BEGIN HIDDEN TESTS", "run_check", "grader.engine.checks", "check_unet_encoder", *hidden_values()]:
        assert secret not in everything, secret


def test_the_source_notebook_passes_validate(course):
    assert SUCCESS in validate(course, SOURCE_NOTEBOOK)


def test_every_graded_cell_of_the_release_fails_on_the_stubs(course):
    report = validate(course, course.release / f"{NOTEBOOK}.ipynb", args=("--invert",))
    assert "Success! The notebook does not pass any tests." in report, report
