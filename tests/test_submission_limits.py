"""One submission cannot take the machine down: whole-submission limits, graded in one batch with honest neighbours.

Each hostile submission is the reference solution with one cell that
misbehaves with processes, memory, disk or CPU.  The batch is graded by one
``nbgrader autograde`` run while this process keeps a heartbeat.  Each
hostile cell's exercise scores 0 with a message naming the limit it hit;
every other exercise and every honest neighbour gets full marks; the
heartbeat never stalls; and no process of any submission outlives grading,
nor does any control group.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from grader.course import ASSIGNMENT, NOTEBOOK, reference_solutions
from grader.dev.examples import Bug, fill
from grader.dev.scratch_course import Course
from grader.engine.cgroups import mounts
from grader.engine.sandbox import check_limits_available
from grader.tools.grades import scores
from tests.fault_corpus import CONV, FULL, UNET, UP

# Serial: it compares every kernel control group on the machine before and after, and its CPU hogs must burn
# their seconds in time, which a busy neighbour would steal.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

# Marks every process a hostile cell starts, so that survivors can be found: an extra
# argument to Python, and the number of seconds `sleep` sleeps.
MARK = "6137.25"
# The CPU hogs' one core spends the 20 s of CPU in about 20 s, well within a cell's 35 s; a cell whose
# processes wait on a hog the memory limit left alive ends at those 35 s (the message names the memory).
LIMITS = ("--Execute.timeout=35", "--SandboxedExecute.seconds_per_call=10",
          "--SandboxedExecute.max_processes=256", f"--SandboxedExecute.submission_memory_bytes={2 * 2**30}",
          "--SandboxedExecute.cpus=1", "--SandboxedExecute.submission_cpu_seconds=20",
          f"--SandboxedExecute.scratch_bytes={64 * 2**20}")
SPIN = f"import subprocess, sys\nSPIN = [sys.executable, '-c', 'while True: pass', '{MARK}']\n"


@dataclass(frozen=True)
class Hostile:
    name: str
    exercise: str  # the exercise whose solution cell holds the hostile code, before the function
    code: str
    words: str  # what the exercise's messages must say


HOSTILE = [
    Hostile("fork_bomb", "conv_block", "import os\nwhile True:\n    os.fork()", "--SandboxedExecute.max_processes"),
    Hostile("process_storm", "upsampling_block",
            f"import subprocess\nstorm = [subprocess.Popen(['sleep', '{MARK}']) for _ in range(3000)]",
            "--SandboxedExecute.max_processes"),
    Hostile("memory_together", "unet_model",
            "import subprocess, sys\n"
            f"hold = [sys.executable, '-c', 'import time; b = b\"x\" * (800 << 20); time.sleep(600)', '{MARK}']\n"
            "hogs = [subprocess.Popen(hold) for _ in range(4)]\n[h.wait() for h in hogs]",
            "--SandboxedExecute.submission_memory_bytes"),
    Hostile("disk_filler", "conv_block",
            "block = b'x' * 2**20\nfor i in range(10_000):\n    open(f'filler{i}.bin', 'wb').write(block)",
            "--SandboxedExecute.scratch_bytes"),
    Hostile("cpu_hog_children", "upsampling_block",
            SPIN + "hogs = [subprocess.Popen(SPIN) for _ in range(2)]\n[h.wait() for h in hogs]",
            "--SandboxedExecute.submission_cpu_seconds"),
]
HONEST = ["honest_before", "honest_after"]
CELLS = {"conv_block": CONV, "upsampling_block": UP, "unet_model": UNET}


def submission(release: nbformat.NotebookNode, hostile: Hostile | None) -> nbformat.NotebookNode:
    solutions = reference_solutions()
    if hostile is not None:
        head = f"def {hostile.exercise}("
        solutions = Bug(hostile.exercise, head, f"{hostile.code}\n\n\n{head}", "").apply(solutions)
    return fill(release, solutions)


class Heartbeat:
    """A thread of the grader's machine that should wake every 50 ms; the longest it ever waited."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(0.05):
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            last = now

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def survivors() -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and MARK.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def kernel_groups() -> list[Path]:
    return [group for mount in mounts() for group in mount.path.rglob("unet-kernel-*")]


@pytest.fixture(scope="module")
def graded(tmp_path_factory, small_data) -> Iterator[tuple[Course, Heartbeat, set[Path]]]:
    try:
        check_limits_available()
    except RuntimeError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no control groups here: {err}")
    # Groups that earlier graders on this machine left (a killed test run's, in another job's group) are
    # not this grading's to remove.
    before = set(kernel_groups())
    course = Course(tmp_path_factory.mktemp("limits"), small_data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    release = nbformat.read(course.release / f"{NOTEBOOK}.ipynb", as_version=4)
    batch = {HONEST[0]: None, **{h.name: h for h in HOSTILE}, HONEST[1]: None}
    for name, hostile in batch.items():
        path = course.root / "submitted" / name / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(submission(release, hostile), path)
    with Heartbeat() as heartbeat:
        course.nbgrader("autograde", ASSIGNMENT, "--force", *LIMITS)
    print(f"\nlongest heartbeat gap while grading: {heartbeat.longest:.2f} s")
    yield course, heartbeat, before


@pytest.mark.parametrize("name", HONEST)
def test_honest_neighbours_get_every_point(graded, name):
    course, _, _ = graded
    assert scores(name, course.db_url) == {**FULL, "total": 100.0, "ungraded": []}


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_the_hostile_cell_costs_its_own_exercise_only_and_names_the_limit(graded, hostile):
    course, _, _ = graded
    expected = {**FULL, hostile.exercise: 0.0}
    assert scores(hostile.name, course.db_url) == {**expected, "total": sum(expected.values()), "ungraded": []}
    path = course.root / "autograded" / hostile.name / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    nb = nbformat.read(path, as_version=4)
    outputs = {c.metadata.nbgrader["grade_id"]: c.outputs for c in nb.cells
               if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")}
    for grade_id in CELLS[hostile.exercise]:
        assert hostile.words in outputs[grade_id][0]["evalue"], outputs[grade_id][0]["evalue"]


def test_the_machine_stayed_responsive(graded):
    _, heartbeat, _ = graded
    assert heartbeat.longest < 5, f"the grader's heartbeat stalled for {heartbeat.longest:.1f} s"


def test_no_process_or_control_group_outlives_grading(graded):
    _, _, before = graded
    assert survivors() == []
    assert [group for group in kernel_groups() if group not in before] == []
