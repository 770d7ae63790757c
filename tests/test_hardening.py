"""A batch of hostile and broken submissions: each gets exactly its score and message.

One ``nbgrader autograde`` run grades every submission of ``tests/fault_corpus.py``
in a private course; nothing in the batch may cost another student anything,
and grading again gives the same grades.
"""

import csv

import nbformat
import pytest

from grader.course import ASSIGNMENT, NOTEBOOK
from grader.dev.scratch_course import Course
from grader.tools.grades import scores
from tests.fault_corpus import FULL, HOST_SOCKET, corpus
from tests.socket_swap import HostSocket
from tests.test_feedback_messages import INTERNAL

pytestmark = pytest.mark.slow

FAULTS = {fault.name: fault for fault in corpus("<course>")}
# Small limits keep the infinite loop and the memory hog short.  The memory hog
# here is one process, stopped by the per-process address-space limit; the
# whole-submission limits have their own batch (test_submission_limits.py).
LIMITS = ("--Execute.timeout=20", "--SandboxedExecute.seconds_per_call=10",
          f"--SandboxedExecute.memory_bytes={6 * 2**30}", f"--SandboxedExecute.submission_memory_bytes={8 * 2**30}")


@pytest.fixture(scope="module")
def course(tmp_path_factory, small_data) -> Course:
    course = Course(tmp_path_factory.mktemp("hardening"), small_data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    release = nbformat.read(course.release / f"{NOTEBOOK}.ipynb", as_version=4)
    for fault in corpus(str(course.root)):
        path = course.root / "submitted" / fault.name / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        path.parent.mkdir(parents=True)
        path.write_bytes(fault.make(release))
        for name, content in fault.extra.items():
            (path.parent / name).write_bytes(content)
    # A socket of the host that socket_swap's kernel links its sockets to.
    course.host_socket = HostSocket(course.root / HOST_SOCKET)  # type: ignore[attr-defined]
    course.nbgrader("autograde", ASSIGNMENT, "--force", *LIMITS)
    course.nbgrader("generate_feedback", ASSIGNMENT, "--force")
    course.nbgrader("export", f"--CsvExportPlugin.to={course.root / 'grades.csv'}")
    return course


def hidden_outputs(course: Course, student: str) -> dict[str, dict]:
    path = course.root / "autograded" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    nb = nbformat.read(path, as_version=4)
    return {c.metadata.nbgrader["grade_id"]: c.outputs for c in nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")}


@pytest.mark.parametrize("name", FAULTS)
def test_each_submission_gets_exactly_its_score(course, name):
    fault = FAULTS[name]
    got = scores(name, course.db_url)
    assert got == {**fault.scores, "total": sum(fault.scores.values()), "ungraded": []}


@pytest.mark.parametrize("name", FAULTS)
def test_each_lost_point_has_its_message(course, name):
    fault = FAULTS[name]
    outputs = hidden_outputs(course, name)
    assert len(outputs) == 6, "every hidden test cell is in the graded notebook"
    for grade_id, cell_outputs in outputs.items():
        # One verdict; after an exercise's first failure, maybe a picture of the student's network.
        assert all(o["output_type"] == "display_data" and "image/svg+xml" in o["data"] for o in cell_outputs[1:])
        assert len(cell_outputs) <= 2
        if grade_id in fault.messages:
            assert cell_outputs[0]["output_type"] == "error"
            assert fault.messages[grade_id] in cell_outputs[0]["evalue"], cell_outputs[0]["evalue"]
        else:
            assert cell_outputs[0]["text"].startswith("Passed: ")
    feedback = (course.root / "feedback" / name / ASSIGNMENT / f"{NOTEBOOK}.html").read_text()
    for words in fault.messages.values():
        assert words.replace("'", "&#39;") in feedback or words in feedback


def test_no_message_names_the_graders_insides(course):
    for name in FAULTS:
        for grade_id, outputs in hidden_outputs(course, name).items():
            text = " ".join(o.get("evalue", "") + o.get("text", "") for o in outputs)
            assert not INTERNAL.search(text), (name, grade_id, text)


def test_the_sandbox_hid_the_course_and_the_network(course):
    path = course.root / "autograded" / "ok_snoop" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    text = "".join(o.get("text", "") for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
                   for o in c.outputs)
    assert "SNOOP-READ" not in text and "SNOOP-WROTE" not in text
    assert text.count("SNOOP-DENIED") == 5 and "SNOOP-NET closed" in text and text.count("SNOOP-NOWRITE") == 2
    assert not (course.root / "pwned.txt").exists()


def test_the_grader_never_followed_the_kernels_links_to_a_socket_of_the_host(course):
    assert course.host_socket.received == []
    path = course.root / "autograded" / "socket_swap" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    assert "the kernel cut its connection to the grader" in path.read_text()


def test_huge_output_is_cut(course):
    path = course.root / "autograded" / "ok_huge_output" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    assert path.stat().st_size < 5_000_000
    assert "[output cut: this cell printed more than" in path.read_text()


def test_csv_has_every_student(course):
    with open(course.root / "grades.csv") as f:
        rows = {row["student_id"]: float(row["score"]) for row in csv.DictReader(f)}
    assert rows == {name: sum(fault.scores.values()) for name, fault in FAULTS.items()}
    assert max(rows.values()) == sum(FULL.values())


def test_grading_again_gives_the_same_grades(course):
    before = {name: scores(name, course.db_url) for name in FAULTS}
    # The pattern picks os_exit and malformed_json: a dead kernel and an unreadable file.
    course.nbgrader("autograde", ASSIGNMENT, "--force", "--student=[om][sa]*", *LIMITS)
    assert {name: scores(name, course.db_url) for name in FAULTS} == before


def test_grading_without_the_sandbox_needs_a_flag_and_warns(course):
    result = course.nbgrader("autograde", ASSIGNMENT, "--force", "--student=ok_reference",
                             "--SandboxedExecute.sandbox=False", *LIMITS)
    assert "Grading WITHOUT a sandbox" in result.stdout + result.stderr
    assert scores("ok_reference", course.db_url)["total"] == sum(FULL.values())
