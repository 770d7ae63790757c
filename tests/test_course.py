"""The nbgrader course end to end: release, autograde, feedback, export.

Runs the instructor's commands from the repository root (so nbgrader_config.py
applies) against a private course folder, leaving the real one alone.
"""

import csv
import os
import signal
import threading
from pathlib import Path

import nbformat
import pytest

from grader.course import ASSIGNMENT, NOTEBOOK, reference_solutions
from grader.dev.examples import EXAMPLES, write_examples
from grader.dev.scratch_course import Course
from grader.engine.execute import NOT_RUN_NOTE
from grader.engine.template import default_on
from grader.tools import grades as summary
from grader.tools.grades import scores

# Serial: it kills every kernel template on the machine mid-class, and finds none left after.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

EXPECTED = {
    "reference": {"conv_block": 30, "upsampling_block": 30, "unet_model": 40, "total": 100},
    "untouched": {"conv_block": 0, "upsampling_block": 0, "unet_model": 0, "total": 0},
    "bug_conv_block": {"conv_block": 0, "upsampling_block": 30, "unet_model": 40, "total": 70},
    "bug_upsampling_block": {"conv_block": 30, "upsampling_block": 0, "unet_model": 40, "total": 70},
    "bug_unet_model": {"conv_block": 30, "upsampling_block": 30, "unet_model": 0, "total": 60},
}


# A line only the kernel template's program has: it finds the template among the machine's processes.
TEMPLATE_MARK = b"def serve(control_fd"


def template_processes() -> list[int]:
    """Kernel templates running on this machine: the template program's processes whose parent is bubblewrap.

    Kernels forked from a template carry the same command line; their parents are not bubblewrap.
    """
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or TEMPLATE_MARK not in (proc / "cmdline").read_bytes():
                continue
            parent = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
            if Path(f"/proc/{parent}/comm").read_text().strip() == "bwrap":
                found.append(int(proc.name))
        except (OSError, IndexError):
            continue
    return found


class TemplateKiller(threading.Thread):
    """Kills the kernel template with SIGKILL once, when the second student of ``autograded`` has begun."""

    def __init__(self, autograded: Path) -> None:
        super().__init__(daemon=True)
        self.autograded, self.killed = autograded, []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            if self.autograded.is_dir() and len(list(self.autograded.iterdir())) >= 2:
                for pid in template_processes():
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
                if self.killed:
                    return


@pytest.fixture(scope="module")
def course(tmp_path_factory, small_data) -> Course:
    course = Course(tmp_path_factory.mktemp("course"), small_data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    write_examples(course.root / "submitted", course.release / f"{NOTEBOOK}.ipynb")
    # The class is graded while its kernel template dies in the middle: the scores must not notice.
    killer = TemplateKiller(course.root / "autograded")
    killer.start()
    try:
        course.nbgrader("autograde", ASSIGNMENT, "--force")
    finally:
        killer.stop.set()
        killer.join()
    course.template_killed = killer.killed
    course.nbgrader("generate_feedback", ASSIGNMENT, "--force")
    course.nbgrader("export", f"--CsvExportPlugin.to={course.root / 'grades.csv'}")
    return course


def test_example_submissions_get_their_exact_scores(course):
    got = {student: scores(student, course.db_url) for student in EXAMPLES}
    assert got == {student: {**points, "ungraded": []} for student, points in EXPECTED.items()}


def test_the_kernel_template_died_mid_class_and_no_score_noticed(course):
    if not default_on():
        pytest.skip("kernels start cold here (UNET_KERNEL_TEMPLATE=0)")
    assert course.template_killed, "no kernel template was found to kill while the class was graded"
    assert template_processes() == [], "the grader left a kernel template running after it ended"


def test_release_is_self_contained(course):
    names = {p.relative_to(course.release).as_posix() for p in course.release.rglob("*") if p.is_file()}
    assert {f"{NOTEBOOK}.ipynb", "test_utils.py", "spec_checks.py", "functional_checks.py", "specification.json",
            "carla_data.py", "carla_plots.py", "carla_synth.py", "precision.py",
            "images/unet_architecture.png", "images/unet_blocks.png", "requirements.txt"} <= names
    assert not any(p.is_symlink() for p in course.release.rglob("*")), "students must get real files"


def test_release_has_no_solution_and_no_hidden_test(course):
    text = (course.release / f"{NOTEBOOK}.ipynb").read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "grader.engine.checks",
                   "check_unet_encoder("):
        assert marker not in text
    nb = nbformat.read(course.release / f"{NOTEBOOK}.ipynb", as_version=4)
    release_code = "\n".join(cell.source for cell in nb.cells)
    for exercise, code in reference_solutions().items():
        body = [line.strip() for line in code.splitlines()
                if line.strip() and not line.strip().startswith(("def ", "return", '"""', "inputs = Input",
                                                                  "model = tf.keras.Model"))
                and "--" not in line and not line.strip().endswith(":")]
        leaked = [line for line in body if line in release_code and "=" in line]
        assert leaked == [], f"{exercise} solution lines in the release: {leaked}"


def test_feedback_explains_the_lost_points(course):
    feedback = (course.root / "feedback" / "bug_conv_block" / ASSIGNMENT / f"{NOTEBOOK}.html").read_text()
    assert "skip_connection must be the output of the last Conv2D" in feedback
    feedback = (course.root / "feedback" / "bug_upsampling_block" / ASSIGNMENT / f"{NOTEBOOK}.html").read_text()
    assert "your code raised ValueError" in feedback


def test_export_writes_one_row_per_student(course):
    with open(course.root / "grades.csv") as f:
        rows = {row["student_id"]: float(row["score"]) for row in csv.DictReader(f)}
    assert rows == {student: float(EXPECTED[student]["total"]) for student in EXAMPLES}


def test_instructor_summary_names_the_most_common_reason(course, tmp_path):
    text = summary.render(course.db_url, course.root / "autograded", tmp_path)
    assert text.startswith("# unet_segmentation: 5 submissions autograded")
    assert "Mean 60.0 of 100; full marks: 1; zero: 1." in text
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "2 of 5" in rows["conv_block"] and "CheckFailed" in rows["conv_block"]
    assert (tmp_path / "summary.md").read_text().strip() == text
    assert (tmp_path / "score_histogram.png").read_bytes().startswith(b"\x89PNG")


def test_autograde_itself_leaves_the_summary_of_its_course(course):
    """nbgrader's post-convert hook wrote the summary into the course being graded."""
    written = (course.root / "reports" / "summary.md").read_text().strip()
    assert written == summary.render(course.db_url, course.root / "autograded", course.root / "reports2")


def test_grading_runs_the_notebook_up_to_its_last_graded_cell(course):
    path = course.root / "autograded" / "reference" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    last_graded = max(i for i, c in enumerate(cells) if c.metadata.get("nbgrader", {}).get("grade"))
    before, after = cells[:last_graded], cells[last_graded + 1:]
    assert any("unet.fit(" in c.source for c in after), "training comes after the last graded cell"
    assert any(c.outputs for c in before if "print(" in c.source), "the cells before it ran"
    assert [c.outputs for c in after[1:]] == [[]] * (len(after) - 1)
    assert after[0].outputs[0]["text"] == NOT_RUN_NOTE
