"""The grading service's settings, from its environment (set by the hub's configuration)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from grader.course import gradebook_url
from grader.engine.grading import CourseSetup
from hub.grade_on_submit.policy import FILE_NAME

# The queue on one machine: SQLite in the course folder, which only the grader account can read.
QUEUE_FILE = "grade_on_submit/queue.sqlite"


@dataclass(frozen=True)
class Settings:
    """Where the course and the queue are, and how the service works."""

    course_root: Path
    exchange_inbound: Path
    queue_url: str
    workers: int = 2
    # A worker renews its lease every quarter of this; a killed worker's submission is graded again after it.
    lease_seconds: float = 30.0
    # How long an idle worker waits before it asks the queue again: what an idle course adds to a student's
    # wait, half of it on average.  Each ask is a few indexed reads (a small part of one core per worker).
    poll_seconds: float = 0.2
    # Hub accounts that may see the whole queue.
    instructors: tuple[str, ...] = ()

    # The gradebook; empty: the course folder's SQLite one (several machines need PostgreSQL).
    gradebook: str = ""
    # A Dask scheduler's address, or local:N, for workers as Dask tasks; empty: worker processes here.
    dask: str = ""

    @property
    def gradebook_url(self) -> str:
        return self.gradebook or gradebook_url(self.course_root)

    @property
    def policy_path(self) -> Path:
        return self.course_root / FILE_NAME

    def course_setup(self, assignment: str) -> CourseSetup:
        return CourseSetup(str(self.course_root), self.gradebook_url, assignment)

    @classmethod
    def from_environment(cls) -> Settings:
        """``UNET_GRADING_*`` variables; the course folder is the working directory."""
        course = Path(os.environ.get("UNET_GRADING_COURSE", os.getcwd())).resolve()
        if "UNET_GRADING_INBOUND" not in os.environ:
            raise SystemExit("UNET_GRADING_INBOUND is not set: it names the exchange's inbound folder of the course "
                             "(hub/jupyterhub_config.py sets it)")
        try:
            workers, lease = int(os.environ.get("UNET_GRADING_WORKERS", "2")), float(
                os.environ.get("UNET_GRADING_LEASE", "30"))
        except ValueError as error:
            raise SystemExit(f"UNET_GRADING_WORKERS must be a whole number and UNET_GRADING_LEASE a number of "
                             f"seconds: {error}") from None
        if workers < 1 or lease < 4:
            raise SystemExit(f"UNET_GRADING_WORKERS must be 1 or more (it is {workers}) and UNET_GRADING_LEASE at "
                             f"least 4 seconds (it is {lease})")
        return cls(
            course_root=course,
            exchange_inbound=Path(os.environ["UNET_GRADING_INBOUND"]),
            queue_url=os.environ.get("UNET_GRADING_QUEUE") or f"sqlite:///{course / QUEUE_FILE}",
            workers=workers,
            lease_seconds=lease,
            instructors=tuple(n for n in os.environ.get("UNET_GRADING_INSTRUCTORS", "").split(",") if n),
            gradebook=os.environ.get("UNET_GRADING_GRADEBOOK", ""),
            dask=os.environ.get("UNET_GRADING_DASK", ""),
        )

    def environment(self) -> dict[str, str]:
        """The variables that give a worker these settings."""
        return {
            "UNET_GRADING_COURSE": str(self.course_root), "UNET_GRADING_INBOUND": str(self.exchange_inbound),
            "UNET_GRADING_QUEUE": self.queue_url, "UNET_GRADING_WORKERS": str(self.workers),
            "UNET_GRADING_LEASE": str(self.lease_seconds), "UNET_GRADING_INSTRUCTORS": ",".join(self.instructors),
            "UNET_GRADING_GRADEBOOK": self.gradebook, "UNET_GRADING_DASK": self.dask,
        }
