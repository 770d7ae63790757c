"""A grading worker: claims a submission from the queue, grades it, records the outcome; again and again.

    python -m hub.grade_on_submit.worker NAME

Started by the grading service (``hub.grade_on_submit.service``), one per
grading slot, in the course folder, as the course's grader account.  A worker
holds a lease on the submission it grades and renews it while it works; if
the worker is killed, the lease runs out and another worker grades that
submission again.  Each submission is run in a fresh sandbox of its own by
the grading engine.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from grader.engine.grading import CourseSetup
from hub.grade_on_submit.doorbell import Doorbell
from hub.grade_on_submit.parent_death import die_with_parent
from hub.grade_on_submit.pipeline import LeaseLost, Outcome, grade
from hub.grade_on_submit.policy import PolicyFile
from hub.grade_on_submit.queue import FAILED, Queue, Submission, open_engine
from hub.grade_on_submit.settings import Settings

log = logging.getLogger("grade_on_submit.worker")
# Written by a worker that cannot grade on this machine; the service shows it on its pages.
MACHINE_PROBLEM = "grade_on_submit/machine_problem.txt"


class Lease(threading.Thread):
    """Renews a worker's lease on one attempt at one submission until stopped; ``lost`` is set if it cannot."""

    def __init__(self, queue: Queue, row: Submission, worker: str, seconds: float):
        super().__init__(daemon=True)
        self.queue, self.row, self.worker, self.seconds = queue, row, worker, seconds
        self.done, self.lost = threading.Event(), threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.seconds / 4):
            try:
                renewed = self.queue.renew(self.row.id, self.worker, self.row.attempts, self.seconds)
            except Exception:  # noqa: BLE001 - a database hiccup: try again at the next renewal
                log.exception("renewing the lease on submission %s failed; trying again", self.row.id)
                continue
            if not renewed:
                log.error("lost the lease on submission %s; stopping before its next step", self.row.id)
                self.lost.set()
                return

    def check(self) -> None:
        """Raise ``LeaseLost`` if another worker may now be grading this submission."""
        if self.lost.is_set():
            raise LeaseLost(self.row.folder)


def work_on(queue: Queue, settings: Settings, policies: PolicyFile, row: Submission, name: str) -> None:
    """Grade ``row`` while holding its lease, and record how it ended."""
    lease = Lease(queue, row, name, settings.lease_seconds)
    lease.start()
    policies.refresh()
    show = policies.of(row.assignment).show
    try:
        outcome = grade(settings.course_setup(row.assignment), row, show, lease.check)
    except LeaseLost:
        return  # the worker that holds the lease now grades it; this one leaves no outcome
    except Exception as error:  # noqa: BLE001 - recorded for the instructor; the worker carries on
        log.exception("grading submission %s failed", row.folder)
        outcome = Outcome(FAILED, reason="The grading service failed on this submission; your instructor can see "
                                         "why and will grade it. It does not count against your gradings per hour.",
                          detail=f"{type(error).__name__}: {error}")
    finally:
        lease.done.set()
    if not queue.finish(row.id, name, row.attempts, state=outcome.state, score=outcome.score,
                        max_score=outcome.max_score, reason=outcome.reason, detail=outcome.detail,
                        phases=outcome.phases, released=outcome.released, show=show):
        log.warning("submission %s was taken over by another worker; its outcome stands", row.folder)


def process_started() -> float:
    """When this process began, by the wall clock (from ``/proc``; elsewhere, when this module was imported)."""
    try:
        # /proc/self/stat: after the command's closing parenthesis, field 22 (starttime) is the 20th.
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        since_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED


_IMPORTED = time.time()


def run(name: str, settings: Settings, keep_going: Callable[[], bool] | None = None) -> None:
    """Claim and grade submissions while ``keep_going()`` (by default: while the service that started it lives)."""
    parent = os.getppid()
    # First, before the kernel template or any other child starts: no child gets the pipe or its number.
    doorbell = Doorbell.from_environment()
    if keep_going is None:
        def keep_going() -> bool:
            return os.getppid() == parent
    queue = Queue(open_engine(settings.queue_url))
    policies = PolicyFile(settings.policy_path)
    # Reads nbgrader's configuration and imports TensorFlow now, not on the first submission; and,
    # as `nbgrader autograde` does, refuses to grade on a machine whose sandbox or limits do not work.
    from grader.engine.grading import machine_problem, start_kernel_template

    notice = settings.course_root / MACHINE_PROBLEM
    while (problem := machine_problem(CourseSetup(str(settings.course_root), settings.gradebook_url))) is not None:
        log.error("cannot grade on this machine: %s", problem)
        notice.write_text(problem)
        time.sleep(60)
        if not keep_going():
            return
    notice.unlink(missing_ok=True)
    start_kernel_template(CourseSetup(str(settings.course_root), settings.gradebook_url))
    # Unique, so a worker started later under the same slot name never renews or finishes this one's work.
    name = f"{name}@{socket.gethostname()}:{os.getpid()}"
    log.info("worker %s ready", name)
    regrades = regrade_worker(queue, settings)
    # The course's checks this process holds are as old as the process, not as the end of its start-up:
    # a worker launched just before the instructor's change, and ready just after the regrade was asked
    # for, must stop too (on a busy machine its start-up took longer than the change).
    started = process_started()
    while keep_going():
        if regrades.tasks.latest_request() > started:
            # A regrade means the course changed: the next submission is graded by a worker that
            # imports the course's checks afresh (the service starts one at once).
            log.info("a regrade was asked for; worker %s stops so that a fresh one grades with the course now", name)
            return
        row = queue.claim(name, settings.lease_seconds)
        if row is None:
            # Submissions first; a regrade's students when none waits.
            if not regrades.work_once(name):
                doorbell.wait(settings.poll_seconds)
            continue
        work_on(queue, settings, policies, row, name)


def regrade_worker(queue: Queue, settings: Settings):
    """What this worker does for regrades (``hub.grade_on_submit.regrade_run``), on the queue's database."""
    from hub.grade_on_submit.regrade_run import RegradeWorker
    from hub.grade_on_submit.regrade_store import RegradeTasks

    return RegradeWorker(RegradeTasks(queue.engine), queue, settings.course_root, settings.gradebook_url,
                         settings.lease_seconds)


def main(argv: list[str]) -> int:
    die_with_parent()
    if os.getppid() == 1:
        return 0  # the service died before this worker could ask to die with it
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker {argv[0]} %(levelname)s %(message)s")
    run(argv[0], Settings.from_environment())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
