"""The engine's entry point: grade one submission, in this process, and say what came of it.

``grade_submission`` runs nbgrader's own ``Autograde`` converter with the
settings of ``nbgrader_config.py`` (intake, sandbox, verdicts, gradebook
writes), exactly as ``nbgrader autograde --student=ID`` would, and returns a
``GradingResult``: the points and message of every graded cell, the time
each phase took, and what failed.  The class grader calls it in its workers;
a grading service can call it the same way.  The first call in a process
reads nbgrader's configuration and imports TensorFlow; later calls reuse
them.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from grader.course import ASSIGNMENT, ROOT, exercises
from grader.engine.record import CellResult, GradingResult, take_finished

SQLITE_BUSY_MS = 60_000


@dataclass(frozen=True)
class CourseSetup:
    """Where to grade: the course folder, its gradebook and the assignment, as ``nbgrader autograde`` sees them."""

    course_root: str
    db_url: str
    assignment: str = ASSIGNMENT
    force: bool = True


def wait_for_sqlite_writes() -> None:
    """Make this process's SQLite connections wait up to a minute for the write lock.

    Python's sqlite3 waits 5 s and then fails with "database is locked"; with
    several processes grading at once, and a gradebook on a slow or network
    disk, a write can queue longer than that.  Only SQLite connections are
    touched.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if getattr(wait_for_sqlite_writes, "done", False):
        return

    @event.listens_for(Engine, "connect")
    def _connect(dbapi_connection, _record):
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")

    wait_for_sqlite_writes.done = True  # type: ignore[attr-defined]


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


_APPS: dict[CourseSetup, object] = {}


def nbgrader_app(setup: CourseSetup):
    """This process's nbgrader autograde application for ``setup``, made once.

    It is the process's Application instance, so the grader's preprocessors
    find the course folder exactly as they do under the ``nbgrader`` command.
    """
    if setup not in _APPS:
        from nbgrader.apps import AutogradeApp

        os.chdir(ROOT)  # nbgrader reads nbgrader_config.py from the working directory
        wait_for_sqlite_writes()
        app = AutogradeApp.instance()
        app.initialize([f"--CourseDirectory.root={setup.course_root}",
                        f"--CourseDirectory.db_url={setup.db_url}", "--log-level=ERROR"])
        # A class draws its summary once at the end, not after every submission
        # (where workers would race to write it).
        app.config.Autograde.post_convert_hook = None
        _APPS[setup] = app
    return _APPS[setup]


def machine_problem(setup: CourseSetup) -> str | None:
    """Why this machine cannot grade ``setup`` with the course's settings (sandbox, limits), or None.

    A grading service calls it once before its first submission, as
    ``nbgrader autograde`` does, and stops with the message when there is one.
    """
    from grader.engine.preflight import machine_problem as problem_with

    return problem_with(nbgrader_app(setup))


def start_kernel_template(setup: CourseSetup) -> None:
    """Start this process's kernel template now, when the course's grading uses one (docs/grading.md).

    A grading service calls it once before its first submission, so that the
    first student waits for their own notebook only.
    """
    from grader.engine.execute import SandboxedExecute
    from grader.engine.sandbox import find_data, ready_template

    execute = SandboxedExecute(parent=nbgrader_app(setup))
    if execute.sandbox and execute.template:
        ready_template(find_data(Path(setup.course_root) / "autograded"), logging.getLogger(__name__))


def grade_submission(setup: CourseSetup, student: str) -> GradingResult:
    """Autograde ``student``'s submission of ``setup.assignment`` in this process.

    Never raises for a bad submission: one that nbgrader cannot finish comes
    back with ``ok=False`` and the reason.
    """
    from nbgrader.converters import Autograde

    app = nbgrader_app(setup)
    warnings = _Warnings()
    app.log.addHandler(warnings)
    started = time.perf_counter()
    failure = None
    try:
        app.coursedir.assignment_id = setup.assignment
        app.coursedir.student_id = student
        converter = Autograde(coursedir=app.coursedir, parent=app)
        converter.force = setup.force
        converter.start()
    except Exception as error:  # noqa: BLE001 - reported per submission; the caller carries on
        failure = f"{type(error).__name__}: {error}"
    finally:
        app.log.removeHandler(warnings)
    seconds = time.perf_counter() - started
    finished = take_finished(setup.assignment, student)
    record, verdicts = finished if finished else (None, {})
    return GradingResult(
        student=student, assignment=setup.assignment, ok=failure is None,
        cells=_cells(setup, student, verdicts) if failure is None else (),
        timings=dict(record.timings) if record else {}, seconds=seconds, failure=failure,
        warnings=tuple(warnings.lines), out_of_time=record.out_of_time if record else None,
    )


def _cells(setup: CourseSetup, student: str, verdicts: dict[str, tuple[bool, str]]) -> tuple[CellResult, ...]:
    """Each graded cell's points, as the gradebook has them, with the verdict's message."""
    from nbgrader.api import Gradebook, MissingEntry

    from grader.course import NOTEBOOK

    exercise_of = {cell: exercise for exercise, cells in exercises().items() for cell, _ in cells}
    with Gradebook(setup.db_url) as gb:
        try:
            grades = gb.find_submission_notebook(NOTEBOOK, setup.assignment, student).grades
        except MissingEntry:
            return ()
        return tuple(
            CellResult(grade_id=g.name, exercise=exercise_of.get(g.name, ""), points=float(g.score or 0.0),
                       max_points=float(g.max_score), passed=verdicts.get(g.name, (False, ""))[0],
                       message=verdicts.get(g.name, (False, "not graded"))[1])
            for g in sorted(grades, key=lambda g: list(exercise_of).index(g.name) if g.name in exercise_of else 99)
        )
