"""Autograde a whole class at once: worker processes on this machine, or a Dask cluster.

    python -m grader.tools.autograde_class --workers 4                  # this machine, SQLite gradebook
    python -m grader.tools.autograde_class --dask local:4 --db URL      # a local Dask cluster
    python -m grader.tools.autograde_class --dask tcp://host:8786 --db postgresql+psycopg://...

Every submission is graded by nbgrader's own ``Autograde`` converter with the
settings of ``nbgrader_config.py`` (sandbox, verdicts, gradebook writes), so a
submission gets exactly the grade ``nbgrader autograde --student=ID`` gives it.
What changes is only how many are graded at once: each worker is a long-lived
process that imports TensorFlow once and then grades one submission after
another.

SQLite lets one writer in at a time, so with local workers a gradebook write
waits up to a minute for its turn instead of failing after SQLite's usual
5 s.  Workers on several machines need a gradebook server (PostgreSQL,
``--db``) and the course folder on a shared file system.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from grader.course import ASSIGNMENT, ROOT, gradebook_url, make_alembic_findable, step_folder
from grader.engine.grading import CourseSetup, GradingResult, grade_submission, machine_problem

# What a worker's task returns: the engine's own result for one submission.
Outcome = GradingResult


def submitted_students(course_root: Path, assignment: str = ASSIGNMENT, pattern: str = "*") -> list[str]:
    """Ids of the students with a submission of ``assignment``, sorted; ``pattern`` as nbgrader's ``--student``."""
    submitted = step_folder(course_root, "submitted")
    return sorted(p.parent.name for p in submitted.glob(f"*/{assignment}")
                  if p.is_dir() and fnmatch.fnmatchcase(p.parent.name, pattern))


def grade_one(setup: CourseSetup, student: str) -> GradingResult:
    """A worker's task: the engine's ``grade_submission``."""
    return grade_submission(setup, student)


def _failed(student: str, assignment: str, why: str) -> GradingResult:
    return GradingResult(student=student, assignment=assignment, ok=False, failure=why)


def _sequential(setup: CourseSetup, students: list[str]) -> Iterator[Outcome]:
    for student in students:
        yield grade_one(setup, student)


def _result(future, student: str, assignment: str = ASSIGNMENT) -> Outcome:
    """A worker's outcome; a worker that died (or a lost connection) is a failed outcome, not a crash."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - one lost worker must not end the class
        return _failed(student, assignment, f"the grading worker failed: {type(error).__name__}: {error}")


def _local_pool(setup: CourseSetup, students: list[str], workers: int) -> Iterator[Outcome]:
    # spawn, not fork: each worker starts clean rather than inheriting TensorFlow's threads.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(grade_one, setup, s): s for s in students}
        for future in as_completed(futures):
            yield _result(future, futures[future])


def _dask(setup: CourseSetup, students: list[str], address: str) -> Iterator[Outcome]:
    from distributed import Client, LocalCluster
    from distributed import as_completed as dask_completed

    cluster = None
    if address.startswith("local"):
        workers = int(address.partition(":")[2] or os.cpu_count() or 1)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        address = cluster.scheduler_address
    try:
        with Client(address) as client:
            # pure=False: grading has side effects, so Dask must run every task.
            futures = client.map(grade_one, [setup] * len(students), students, pure=False,
                                 key=[f"autograde-{s}" for s in students])
            student_of = {future.key: s for future, s in zip(futures, students, strict=True)}
            for future in dask_completed(futures):
                yield _result(future, student_of[future.key])
    finally:
        if cluster is not None:
            cluster.close()


def check_ready(setup: CourseSetup) -> None:
    """Stop with a clear message when the gradebook does not know the assignment yet, or the machine cannot grade.

    Workers would otherwise race to create the assignment, or each report the
    same broken sandbox for every student.
    """
    from nbgrader.api import Gradebook, MissingEntry
    from sqlalchemy.engine import make_url

    url = make_url(setup.db_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        raise SystemExit(f"There is no gradebook at {url.database}. Run "
                         f"`nbgrader generate_assignment {setup.assignment}` first.")
    make_alembic_findable()
    with Gradebook(setup.db_url) as gb:
        try:
            gb.find_assignment(setup.assignment)
        except MissingEntry:
            raise SystemExit(f"The gradebook {setup.db_url} has no assignment '{setup.assignment}'. Run "
                             f"`nbgrader generate_assignment {setup.assignment}` with this --db first.") from None
    problem = machine_problem(setup)
    if problem is not None:
        raise SystemExit(problem)


def autograde_class(setup: CourseSetup, students: list[str], workers: int = 1, dask: str | None = None,
                    on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Grade ``students`` with ``workers`` local processes, or on the Dask scheduler ``dask``.

    Returns one ``Outcome`` per student, in the order of ``students``.
    """
    check_ready(setup)
    if dask:
        outcomes: Iterable[Outcome] = _dask(setup, students, dask)
    elif workers > 1:
        outcomes = _local_pool(setup, students, workers)
    else:
        outcomes = _sequential(setup, students)
    by_student = {}
    for outcome in outcomes:
        by_student[outcome.student] = outcome
        if on_done:
            on_done(outcome)
    return [by_student[s] for s in students]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="grading processes on this machine (default: one per core)")
    parser.add_argument("--dask", metavar="ADDRESS",
                        help="grade on this Dask scheduler, or 'local:N' for a local cluster of N workers")
    parser.add_argument("--db", help="gradebook URL (default: the course folder's gradebook.db)")
    parser.add_argument("--course", type=Path, default=ROOT, help="course folder (default: this repository)")
    parser.add_argument("--assignment", default=ASSIGNMENT)
    parser.add_argument("--student", default="*", help="students to grade, a pattern as in nbgrader")
    parser.add_argument("--no-force", dest="force", action="store_false",
                        help="skip submissions that are already autograded")
    args = parser.parse_args(argv)

    course = args.course.resolve()
    setup = CourseSetup(str(course), args.db or gradebook_url(course), args.assignment, args.force)
    students = submitted_students(course, args.assignment, args.student)
    if not students:
        raise SystemExit(f"No submissions of {args.assignment} under {step_folder(course, 'submitted')} "
                         f"match '{args.student}'.")
    where = f"Dask {args.dask}" if args.dask else f"{args.workers} worker process(es)"
    print(f"Autograding {len(students)} submissions of {args.assignment} with {where}.", flush=True)

    started = time.perf_counter()

    def report(outcome: Outcome) -> None:
        status = "ok" if outcome.ok else "FAILED"
        print(f"  {outcome.student}: {status} ({outcome.seconds:.1f} s)", flush=True)
        for line in () if outcome.ok else (outcome.failure, *outcome.warnings):
            print(f"    {line}", flush=True)

    outcomes = autograde_class(setup, students, args.workers, args.dask, report)
    failed = [o.student for o in outcomes if not o.ok]
    elapsed = time.perf_counter() - started
    print(f"{len(outcomes) - len(failed)} graded, {len(failed)} failed, in {elapsed:.0f} s "
          f"({elapsed / len(outcomes):.1f} s per submission).")
    from grader.tools import grades as summary

    print(summary.render(setup.db_url, step_folder(course, "autograded"), course / "reports"))
    if failed:
        print("Not graded (see above): " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
