"""The grading service: watches the exchange, keeps the workers running, serves the pages.

    python -m hub.grade_on_submit

JupyterHub starts it as a managed service (``hub/jupyterhub_config.py``) as
the course's grader account, in the course folder, and starts it again if
it dies.  Everything it knows is in the queue's database, so a restart loses
nothing: submissions that arrived meanwhile are found on the first scan, and
those a killed worker held are graded again once their lease runs out.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from urllib.parse import urlparse

from hub.grade_on_submit import extensions, views
from hub.grade_on_submit.dask_workers import DaskWorkers
from hub.grade_on_submit.doorbell import VARIABLE as DOORBELL
from hub.grade_on_submit.doorbell import Doorbells
from hub.grade_on_submit.inbox import Inbox
from hub.grade_on_submit.pipeline import due_date
from hub.grade_on_submit.policy import PolicyFile
from hub.grade_on_submit.queue import GRADING, QUEUED, Queue, open_engine
from hub.grade_on_submit.regrade_store import RegradeTasks
from hub.grade_on_submit.release_due import Release, releases_due
from hub.grade_on_submit.settings import Settings
from hub.grade_on_submit.worker import MACHINE_PROBLEM

log = logging.getLogger("grade_on_submit")
# Environment variables the workers do not get: the service's hub token is the service's alone.
PRIVATE = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTERHUB_CLIENT_ID", "JUPYTERHUB_OAUTH_CALLBACK_URL")
DUE_DATE_SECONDS = 10.0
RELEASE_RETRY_SECONDS = 300.0
SCAN_MILLISECONDS = 100


class GradingService:
    """The queue, the inbox and the workers of one course."""

    def __init__(self, settings: Settings):
        self.settings = settings
        (settings.course_root / "grade_on_submit").mkdir(mode=0o700, exist_ok=True)
        self.queue = Queue(open_engine(settings.queue_url))
        self.policies = PolicyFile(settings.policy_path)
        self.inbox = Inbox(settings.exchange_inbound, self.queue, self.policies)
        self.workers: dict[str, subprocess.Popen] = {}
        self.doorbells = Doorbells()
        self.prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        self.course_id = os.environ.get("UNET_GRADING_COURSE_ID", settings.course_root.name)
        self.cookie_secret = os.urandom(32)
        self._due: dict[str, tuple[float, datetime | None]] = {}
        self._releasing, self._next_release = False, 0.0
        self.dask: DaskWorkers | None = None

    # -- what the pages show -------------------------------------------------------------------------------
    def problem(self, instructor: bool = True) -> str | None:
        """Why grading on submit is not working as configured: in full for instructors, in a sentence for students."""
        notice = self.settings.course_root / MACHINE_PROBLEM
        if notice.exists():
            if not instructor:
                return "Grading on submit is paused: submissions wait in the queue, and your instructor has been told."
            return "Grading on submit is paused: this machine cannot grade. " + notice.read_text()
        # A bad edit of the policy file changes nothing for students: the last good policy holds.
        return self.policies.problem if instructor else None

    def due(self, assignment: str) -> datetime | None:
        """The assignment's due date, read from the gradebook at most every ``DUE_DATE_SECONDS``."""
        read_at, value = self._due.get(assignment, (0.0, None))
        if time.monotonic() - read_at > DUE_DATE_SECONDS:
            value = due_date(self.settings.course_setup(assignment))
            self._due[assignment] = (time.monotonic(), value)
        return value

    def due_of(self, assignment: str, student: str) -> datetime | None:
        """The due date of ``student``: theirs when one is recorded (an extension), else the assignment's."""
        try:
            entry = extensions.recorded(self.settings.course_root, assignment, student)
        except extensions.ExtensionError as error:
            log.error("%s", error)
            entry = None
        return datetime.fromisoformat(entry["due"]) if entry else self.due(assignment)

    def student_view(self, student: str) -> list[dict]:
        self.policies.refresh()
        return [views.for_student(row, self.policies.entry(row.assignment), self.due_of(row.assignment, student))
                for row in self.queue.of_student(student)]

    def instructor_view(self) -> list[dict]:
        return [views.for_instructor(row) for row in self.queue.all()]

    def policy_summary(self) -> str:
        self.policies.refresh()
        return views.policy_summary(self.policies.policies)

    def policy_text(self) -> str:
        self.policies.refresh()
        chosen = {a: asdict(p) for a, p in self.policies.policies.items()}
        return (f"{self.settings.policy_path}:\n{json.dumps(chosen, indent=2)}" if chosen else
                f"No assignment is graded on submit ({self.settings.policy_path} is missing or empty).")

    # -- keeping things going ------------------------------------------------------------------------------
    def worker_environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in PRIVATE}
        return {**env, **self.settings.environment()}

    def supervise(self) -> None:
        """Start the workers that are missing (at the start, or after one died), once an assignment needs them.

        Each worker holds TensorFlow in memory: none run while no assignment is graded on submit and
        nothing is left to grade (what was queued before grading was switched off is still graded).
        """
        self.policies.refresh()
        needed = (any(p.grade_on_submit for p in self.policies.policies.values()) or self.queue.all((QUEUED, GRADING))
                  or RegradeTasks(self.queue.engine).pending())
        if not needed:
            return
        if self.settings.dask:
            if self.dask is None:
                self.dask = DaskWorkers(self.settings)
            self.dask.supervise()
            return
        for index in range(self.settings.workers):
            name = f"worker-{index + 1}"
            process = self.workers.get(name)
            if process is not None and process.poll() is None:
                continue
            if process is not None:
                log.error("%s stopped (exit status %s); starting it again", name, process.returncode)
            bell = self.doorbells.new(name)
            try:
                self.workers[name] = subprocess.Popen(
                    [sys.executable, "-m", "hub.grade_on_submit.worker", name], cwd=self.settings.course_root,
                    env={**self.worker_environment(), DOORBELL: str(bell)}, pass_fds=(bell,))
            finally:
                os.close(bell)

    def release_after_due(self) -> None:
        """Release the feedback held back until the due date, once the student's own has passed (``release_due``).

        Runs outside the event loop; after a failure it waits ``RELEASE_RETRY_SECONDS`` before trying again.
        """
        if self._releasing or time.monotonic() < self._next_release:
            return
        try:
            own = extensions.recorded_dates(self.settings.course_root)
        except extensions.ExtensionError as error:
            # Without the students' own due dates, releasing by the assignment's could show an extended
            # student's feedback too early: nothing is released until the file is fixed.
            log.error("feedback held until the due date is not released: %s", error)
            self._next_release = time.monotonic() + RELEASE_RETRY_SECONDS
            return
        due_now = releases_due(self.queue.unreleased(), self.due, own, datetime.now(UTC))
        if due_now:
            from tornado.ioloop import IOLoop

            self._releasing = True
            IOLoop.current().run_in_executor(None, self._release, due_now)

    def _release(self, due_now: list[Release]) -> None:
        try:
            for release in due_now:
                result = subprocess.run(release.command(), cwd=self.settings.course_root,
                                        env=self.worker_environment(), capture_output=True, text=True, timeout=600)
                if result.returncode == 0:
                    self.queue.mark_released(list(release.ids))
                else:
                    log.error("releasing the feedback of %s (%s) failed: %s", release.assignment,
                              release.student or "everyone", result.stderr[-2000:])
                    self._next_release = time.monotonic() + RELEASE_RETRY_SECONDS
        finally:
            self._releasing = False

    def scan(self) -> None:
        try:
            queued = self.inbox.scan()
        except OSError as error:
            log.error("cannot read the exchange's inbound folder: %s", error)
            return
        for folder in queued:
            log.info("queued %s", folder)
        if queued:
            self.doorbells.ring()

    def stop(self) -> None:
        for name, process in self.workers.items():
            process.terminate()
            self.doorbells.close(name)
        if self.dask is not None:
            self.dask.stop()


def main() -> int:
    from tornado.ioloop import IOLoop, PeriodicCallback

    from hub.grade_on_submit.web import application

    logging.basicConfig(level=logging.INFO, format="%(asctime)s grade_on_submit %(levelname)s %(message)s")
    service = GradingService(Settings.from_environment())
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    application(service).listen(url.port or 80, url.hostname or "127.0.0.1")
    service.supervise()
    service.scan()
    # What a submission waits before it is queued (half of it on average).  While the inbound folder is
    # unchanged a scan lists nothing (but every RELIST_SECONDS) and reopens only each account's few
    # incomplete folders: a fraction of a millisecond (tests/test_inbound_clutter.py prints it).
    PeriodicCallback(service.scan, SCAN_MILLISECONDS).start()
    PeriodicCallback(service.supervise, 1000).start()
    PeriodicCallback(service.release_after_due, 15_000).start()
    log.info("grading on submit: %s, %d worker(s)", service.settings.course_root, service.settings.workers)
    try:
        IOLoop.current().start()
    finally:
        service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
