"""A grading worker's side of regrades: preview one student in the regrade's private course, or apply one.

The preview's grading runs in a fresh process, started for it: the course's
checks are Python modules, and a worker that has run for days holds the
versions it imported when it started, not the course as it is now.  (It is
also what keeps nbgrader's one-application-per-process state of the live
course apart from the private one.)  It is a plain subprocess, not a
multiprocessing child, because a Dask worker's process may have no such
children; it dies with the worker, and hands its answer back in a file.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from hub.grade_on_submit.queue import Queue
from hub.grade_on_submit.regrade_store import FAILED, GRADING, PREVIEWED, RegradeRecords, RegradeTasks, StudentRow

log = logging.getLogger("grade_on_submit.regrade")


def preview_student(course_root: str, gradebook_url: str, assignment: str, regrade_id: int,
                    student: str) -> tuple[str, Any, str | None]:
    """In a process of its own (``main``): grade ``student``'s stored submission in the private course.

    Returns ``("ok", scores, submitted)`` or ``("failed", reason, submitted)``.
    """
    from hub.grade_on_submit.parent_death import die_with_parent

    die_with_parent()
    from nbgrader.api import Gradebook

    from grader.engine.grading import CourseSetup, grade_submission
    from hub.grade_on_submit.late_plugin import late_policy
    from hub.grade_on_submit.late_policy import penalty
    from hub.grade_on_submit.regrade_course import autograded_notebook, copy_submission, shadow_gradebook, shadow_root
    from hub.grade_on_submit.regrade_plan import cell_messages, scores_from

    root = Path(course_root)
    shadow = shadow_root(root, regrade_id)
    try:
        submitted = copy_submission(root, shadow, student, assignment)
    except OSError as error:
        return "failed", f"the stored submission could not be read: {error}", None
    result = grade_submission(CourseSetup(str(shadow), shadow_gradebook(shadow), assignment), student)
    if not result.ok:
        return "failed", f"the notebook could not be graded: {result.failure}", submitted
    with Gradebook(gradebook_url) as live:
        manual = {g.name: g.manual_score for nb in live.find_submission(assignment, student).notebooks
                  for g in nb.grades}
    with Gradebook(shadow_gradebook(shadow)) as copy:
        submission = copy.find_submission(assignment, student)
        seconds_late = float(submission.total_seconds_late)
        auto = {g.name: (float(g.auto_score or 0.0), float(g.max_score)) for nb in submission.notebooks
                for g in nb.grades if g.cell_type == "code"}
    # A grader's manual score stands, as nbgrader's own score would have it; apply writes only auto scores.
    grades = [(name, float(manual[name]) if manual.get(name) is not None else points, most)
              for name, (points, most) in auto.items()]
    raw = sum(points for _, points, _ in grades)
    taken = min(penalty(late_policy(root, assignment), raw, seconds_late), raw)
    scores = scores_from(grades, cell_messages(autograded_notebook(shadow, student, assignment)), taken)
    for name, (points, _) in auto.items():
        scores["cells"][name]["auto"] = points
    return "ok", scores, submitted


class Renewal(threading.Thread):
    """Keeps a worker's lease on one student's row alive while it works."""

    def __init__(self, tasks: RegradeTasks, row: StudentRow, worker: str, seconds: float):
        super().__init__(daemon=True)
        self.tasks, self.row, self.worker, self.seconds = tasks, row, worker, seconds
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.seconds / 4):
            try:
                if not self.tasks.renew(self.row, self.worker, self.seconds):
                    return
            except Exception:  # noqa: BLE001 - a database hiccup: try at the next renewal
                log.exception("renewing the lease on regrade row %s failed", self.row.id)


class RegradeWorker:
    """Claims regrade rows and works on them, in a grading worker (``worker.run``) or the ``regrade`` command."""

    def __init__(self, tasks: RegradeTasks, queue: Queue, course_root: Path, gradebook_url: str, lease: float):
        self.tasks, self.queue, self.lease = tasks, queue, lease
        self.course_root, self.gradebook_url = Path(course_root), gradebook_url
        self.records = RegradeRecords(tasks.engine)

    def work_once(self, name: str) -> bool:
        """Claim one row and work on it; False when none was waiting."""
        row = self.tasks.claim(name, self.lease)
        if row is None:
            return False
        renewal = Renewal(self.tasks, row, name, self.lease)
        renewal.start()
        try:
            state, note, new = self._work(row)
        except Exception as error:  # noqa: BLE001 - recorded on the row; the worker carries on
            log.exception("regrade row %s (%s) failed", row.id, row.student)
            state, note, new = FAILED, f"{type(error).__name__}: {error}", None
        finally:
            renewal.done.set()
        if not self.tasks.finish(row, name, state, note, new):
            log.warning("regrade row %s was taken over by another worker", row.id)
        return True

    def _work(self, row: StudentRow) -> tuple[str, str | None, dict | None]:
        regrade = self.records.get(row.regrade)
        assert regrade is not None
        if row.state == GRADING:
            outcome, value, submitted = self.preview(regrade.assignment, regrade.id, row.student)
            if outcome != "ok":
                return FAILED, value, None
            if submitted != row.submitted:
                return FAILED, (f"the stored submission changed while it was previewed ({row.submitted} -> "
                                f"{submitted}): its new grading is with the course as it is now"), None
            return PREVIEWED, None, value
        from hub.grade_on_submit.regrade_apply import StudentSwitch

        switch = StudentSwitch(self.course_root, self.gradebook_url, self.queue, regrade, row)
        state, note = switch.run()
        return state, note, row.new

    def preview(self, assignment: str, regrade_id: int, student: str) -> tuple[str, Any, str | None]:
        """``preview_student`` in a fresh Python process; its answer, or why there is none."""
        from grader.course import ROOT
        from hub.grade_on_submit.regrade_course import shadow_root

        answer = shadow_root(self.course_root, regrade_id) / "answers" / f"{student}.json"
        answer.parent.mkdir(parents=True, exist_ok=True)
        answer.unlink(missing_ok=True)
        done = subprocess.run([sys.executable, "-m", "hub.grade_on_submit.regrade_run", str(self.course_root),
                               self.gradebook_url, assignment, str(regrade_id), student, str(answer)],
                              cwd=ROOT, capture_output=True, text=True,
                              # One student per process: a kernel template would be started for one kernel.
                              env={**os.environ, "UNET_KERNEL_TEMPLATE": "0"})
        if not answer.exists():
            return "failed", f"the grading process ended with status {done.returncode}: {done.stderr[-1500:]}", None
        outcome, value, submitted = json.loads(answer.read_text())
        return outcome, value, submitted


def main(argv: list[str]) -> int:
    """The fresh process of one student's preview: ``preview_student`` with ``argv``, its answer to a file."""
    course_root, gradebook_url, assignment, regrade_id, student, answer = argv
    result = preview_student(course_root, gradebook_url, assignment, int(regrade_id), student)
    Path(answer).with_suffix(".tmp").write_text(json.dumps(result))
    Path(answer).with_suffix(".tmp").replace(answer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
