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

import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time

from grader.engine.grading import CourseSetup
from hub.grade_on_submit.pipeline import Outcome, grade
from hub.grade_on_submit.policy import PolicyFile
from hub.grade_on_submit.queue import FAILED, Queue, Submission, open_engine
from hub.grade_on_submit.settings import Settings

log = logging.getLogger("grade_on_submit.worker")
# Written by a worker that cannot grade on this machine; the service shows it on its pages.
MACHINE_PROBLEM = "grade_on_submit/machine_problem.txt"


def die_with_parent() -> None:
    """Ask Linux to kill this process when the service that started it dies (``PR_SET_PDEATHSIG``)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the worker also stops when it sees that its parent has changed


class Lease(threading.Thread):
    """Renews a worker's lease on one submission until stopped."""

    def __init__(self, queue: Queue, submission_id: int, worker: str, seconds: float):
        super().__init__(daemon=True)
        self.queue, self.submission_id, self.worker, self.seconds = queue, submission_id, worker, seconds
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.seconds / 4):
            if not self.queue.renew(self.submission_id, self.worker, self.seconds):
                log.warning("lost the lease on submission %s", self.submission_id)
                return


def work_on(queue: Queue, settings: Settings, policies: PolicyFile, row: Submission, name: str) -> None:
    """Grade ``row`` while holding its lease, and record how it ended."""
    lease = Lease(queue, row.id, name, settings.lease_seconds)
    lease.start()
    try:
        policies.refresh()
        outcome = grade(settings.course_setup(row.assignment), row, policies.of(row.assignment).show)
    except Exception as error:  # noqa: BLE001 - recorded as the submission's reason; the worker carries on
        log.exception("grading submission %s failed", row.folder)
        outcome = Outcome(FAILED, reason=f"The grading service failed on this submission: "
                                         f"{type(error).__name__}: {error}. Your instructor can see this.")
    finally:
        lease.done.set()
    if not queue.finish(row.id, name, state=outcome.state, score=outcome.score, max_score=outcome.max_score,
                        reason=outcome.reason, phases=outcome.phases, released=outcome.released):
        log.warning("submission %s was taken over by another worker; its outcome stands", row.folder)


def run(name: str, settings: Settings) -> None:
    """Claim and grade submissions until the service that started this worker is gone."""
    parent = os.getppid()
    queue = Queue(open_engine(settings.queue_url))
    policies = PolicyFile(settings.policy_path)
    # Reads nbgrader's configuration and imports TensorFlow now, not on the first submission; and,
    # as `nbgrader autograde` does, refuses to grade on a machine whose sandbox or limits do not work.
    from grader.engine.grading import machine_problem

    notice = settings.course_root / MACHINE_PROBLEM
    while (problem := machine_problem(CourseSetup(str(settings.course_root), settings.gradebook_url))) is not None:
        log.error("cannot grade on this machine: %s", problem)
        notice.write_text(problem)
        time.sleep(60)
        if os.getppid() != parent:
            return
    notice.unlink(missing_ok=True)
    # Unique, so a worker started later under the same slot name never renews or finishes this one's work.
    name = f"{name}@{socket.gethostname()}:{os.getpid()}"
    log.info("worker %s ready", name)
    while os.getppid() == parent:
        row = queue.claim(name, settings.lease_seconds)
        if row is None:
            time.sleep(settings.poll_seconds)
            continue
        work_on(queue, settings, policies, row, name)


def main(argv: list[str]) -> int:
    die_with_parent()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker {argv[0]} %(levelname)s %(message)s")
    run(argv[0], Settings.from_environment())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
