"""A regrade's preview, timed per student: what 300 students would take on this machine's cores.

    python -m bench --only regrade [--regrade-students 3] [--workers N]

A scratch course grades ``--regrade-students`` example submissions in batch
(not timed), then a preview of everyone runs on one regrade worker in this
process (``hub.grade_on_submit.regrade_run``), as the grading service's
workers or ``regrade preview --work`` run it: each student's preview is one
claim of their row, with the grading in a fresh process.  Printed: each
student's seconds, their median, and the extrapolation to 300 students on
``--workers`` workers (each preview uses about one core), beside one cold
``import tensorflow`` (the floor of a fresh process).  The course does not
change, so every preview must give each student the score they have: the
figures count only if it does (printed).
"""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import nbformat

from grader.course import ASSIGNMENT, NOTEBOOK
from grader.dev.examples import EXAMPLES, fill, solutions_for
from grader.dev.scratch_course import Course

CLASS = 300


def _course(parent: Path, data: Path, students: dict[str, str]) -> Course:
    """A scratch course whose ``students`` (id -> example name) are graded in batch."""
    root = parent / "course"
    root.mkdir()
    course = Course(root, data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    release = nbformat.read(course.release / f"{NOTEBOOK}.ipynb", as_version=4)
    for student, example in students.items():
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(fill(release, solutions_for(example)), folder / f"{NOTEBOOK}.ipynb")
        (folder / "timestamp.txt").write_text("2026-12-01 11:00:00.000000 UTC")
    course.nbgrader("autograde", ASSIGNMENT, "--force")
    return course


def preview_seconds(data: Path, size: int) -> dict:
    """Each student's preview time (one claim of their row, in this process's regrade worker), and the check."""
    from hub.grade_on_submit.queue import Queue, open_engine
    from hub.grade_on_submit.regrade import start
    from hub.grade_on_submit.regrade_plan import Who
    from hub.grade_on_submit.regrade_run import RegradeWorker
    from hub.grade_on_submit.regrade_store import PREVIEWED, RegradeRecords, RegradeTasks

    examples = sorted(EXAMPLES)
    students = {f"student{i:03d}": examples[i % len(examples)] for i in range(size)}
    # The preview processes take their data folder and quiet TensorFlow from this environment; put back afterwards.
    with mock.patch.dict(os.environ, {"CARLA_DATA_DIR": str(data), "TF_CPP_MIN_LOG_LEVEL": "3"}):
        with tempfile.TemporaryDirectory(prefix="bench-regrade-") as tmp:
            course = _course(Path(tmp), data, students)
            (course.root / "grade_on_submit").mkdir()
            engine = open_engine(f"sqlite:///{course.root / 'grade_on_submit' / 'queue.sqlite'}")
            records = RegradeRecords(engine)
            regrade_id = start(course.root, course.db_url, records, ASSIGNMENT, Who(everyone=True), False, "bench")
            worker = RegradeWorker(RegradeTasks(engine), Queue(engine), course.root, course.db_url, 30.0)
            name, seconds = f"bench@{socket.gethostname()}:{os.getpid()}", []
            while True:
                started = time.perf_counter()
                if not worker.work_once(name):
                    break
                seconds.append(time.perf_counter() - started)
            rows = records.students(regrade_id)
            same = all(r.state == PREVIEWED and r.new and r.old and r.new["total"] == r.old["total"] for r in rows)
            problems = [f"{r.student}: {r.state} {r.note or ''}".strip() for r in rows if r.state != PREVIEWED]
    return {"students": size, "seconds": seconds, "same_scores": same, "problems": problems}


def run(data: Path, size: int, workers: int) -> dict:
    """The section: the figures, printed and returned."""
    from bench.template import cold_import_seconds

    cold = cold_import_seconds()
    r = preview_seconds(data, size)
    median = statistics.median(r["seconds"]) if r["seconds"] else float("nan")
    minutes = CLASS * median / workers / 60
    print(f"  preview per student: {', '.join(f'{s:.1f}' for s in r['seconds'])} s (median {median:.1f} s); "
          f"one cold `import tensorflow`: {cold:.1f} s")
    print(f"  {CLASS} students on {workers} worker(s): about {minutes:.0f} minutes")
    print(f"  every preview gave the score the student has (the course did not change): {r['same_scores']}"
          + (f"; not previewed: {'; '.join(r['problems'])}" if r["problems"] else ""))
    return {**r, "median": median, "cold_import": cold, "class_minutes": minutes, "workers": workers}
