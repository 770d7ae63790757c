"""Regrade after a change to the course, first as a preview, then applied by the instructor's decision.

    python -m hub.grade_on_submit.regrade preview --everyone | --lost-in CELL | --students ann,bob
                                                  [--never-lower] [--assignment A] [--course DIR] [--work]
    python -m hub.grade_on_submit.regrade show ID [--json]
    python -m hub.grade_on_submit.regrade apply ID [--work]
    python -m hub.grade_on_submit.regrade cancel ID
    python -m hub.grade_on_submit.regrade list
    python -m hub.grade_on_submit.regrade work      # preview or apply what waits, here, until nothing does

Run as the account that owns the course folder (the grader account on the
hub; the grading service's ``regrade`` page runs this for you).  A preview
re-runs each chosen student's latest stored submission against the course
as it is now, in a private copy of the course, on the grading service's
workers (or here, with ``--work``); nothing a student, the gradebook, the
feedback or the LMS sees changes until ``apply``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

from hub.grade_on_submit.queue import Queue, open_engine
from hub.grade_on_submit.regrade_course import graded_cells, live_scores, make_shadow, stored_timestamp
from hub.grade_on_submit.regrade_plan import Who
from hub.grade_on_submit.regrade_report import as_data, as_text
from hub.grade_on_submit.regrade_run import RegradeWorker
from hub.grade_on_submit.regrade_store import RegradeRecords, RegradeTasks


def start(course_root: Path, gradebook_url: str, records: RegradeRecords, assignment: str, who: Who,
          never_lower: bool, by: str) -> int:
    """Record a regrade of the students ``who`` picks, with their scores now, and its private course; its id."""
    now = live_scores(gradebook_url, course_root, assignment)
    chosen = who.pick(now, graded_cells(gradebook_url, assignment))
    if not chosen:
        raise ValueError(f"nobody to regrade: no graded submission of {assignment} matches {who.describe()}")
    rows = [(s, stored_timestamp(course_root, s, assignment), now[s]) for s in chosen]
    return records.create(assignment, by, who.describe(), never_lower, rows,
                          prepare=lambda regrade_id: make_shadow(course_root, gradebook_url, assignment, regrade_id))


def work_here(worker: RegradeWorker) -> int:
    """Preview or apply every row that waits, in this process; how many."""
    name, done = f"regrade@{socket.gethostname()}:{os.getpid()}", 0
    while worker.work_once(name):
        done += 1
    return done


def parser() -> argparse.ArgumentParser:
    from grader.course import ASSIGNMENT

    main = argparse.ArgumentParser(prog="python -m hub.grade_on_submit.regrade", description=__doc__.split("\n")[0])
    main.add_argument("--course", type=Path, default=Path(os.environ.get("UNET_GRADING_COURSE", ".")))
    main.add_argument("--by", default=os.environ.get("USER", "instructor"), help="who decided (recorded)")
    steps = main.add_subparsers(dest="step", required=True)
    preview = steps.add_parser("preview", help="start a regrade: a preview, changing nothing yet")
    whom = preview.add_mutually_exclusive_group(required=True)
    whom.add_argument("--everyone", action="store_true", help="every student with a graded submission")
    whom.add_argument("--lost-in", metavar="CELL", help="those who lost points in this graded cell")
    whom.add_argument("--students", help="these students, separated by commas")
    preview.add_argument("--never-lower", action="store_true", help="a student whose score would go down keeps it")
    preview.add_argument("--assignment", default=ASSIGNMENT)
    for name in ("show", "apply", "cancel"):
        step = steps.add_parser(name)
        step.add_argument("id", type=int)
        if name == "show":
            step.add_argument("--json", action="store_true")
    for step in (preview, steps.choices["apply"]):
        step.add_argument("--work", action="store_true", help="do the work here instead of on the service's workers")
    steps.add_parser("list")
    steps.add_parser("work")
    return main


def main(argv: list[str]) -> int:
    from grader.course import gradebook_url
    from hub.grade_on_submit.settings import QUEUE_FILE

    args = parser().parse_args(argv)
    course = args.course.resolve()
    book = os.environ.get("UNET_GRADING_GRADEBOOK") or gradebook_url(course)
    (course / "grade_on_submit").mkdir(mode=0o700, exist_ok=True)
    engine = open_engine(os.environ.get("UNET_GRADING_QUEUE") or f"sqlite:///{course / QUEUE_FILE}")
    records = RegradeRecords(engine)
    worker = RegradeWorker(RegradeTasks(engine), Queue(engine), course, book,
                           float(os.environ.get("UNET_GRADING_LEASE", "30")))
    try:
        if args.step == "preview":
            names = tuple(n.strip() for n in (args.students or "").split(",") if n.strip())
            who = Who(everyone=args.everyone, lost_in=args.lost_in, names=names)
            regrade_id = start(course, book, records, args.assignment, who, args.never_lower, args.by)
            print(f"Regrade {regrade_id} started ({who.describe()}); nothing changes for any student until it is "
                  f"applied.")
        elif args.step in ("apply", "cancel"):
            regrade_id = args.id
            if args.step == "cancel":
                records.cancel(regrade_id, args.by)
                print(f"Regrade {regrade_id} cancelled; nothing was applied.")
                return 0
            print(f"Regrade {regrade_id}: {records.apply(regrade_id, args.by)} student(s) to apply.")
        elif args.step == "list":
            for regrade in records.all():
                print(as_text(as_data(regrade, records.students(regrade.id))).split("\n")[0])
            return 0
        else:
            regrade_id = getattr(args, "id", 0)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.step == "work" or getattr(args, "work", False):
        work_here(worker)
    if args.step != "work":
        found = records.get(regrade_id)
        if found is None:
            print(f"error: there is no regrade {regrade_id}", file=sys.stderr)
            return 2
        data = as_data(found, records.students(regrade_id))
        print(json.dumps(data, indent=1) if getattr(args, "json", False) else as_text(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
