"""The LMS service: posts the gradebook's scores to the LMS and syncs its roster.

    python -m hub.lms.service        (started by the hub through hub/lms/secrets_pipe.py)

The hub runs it as the grader account in the course folder, like the
grading service, and starts it again if it dies.  Everything it must not
lose is in the grading queue's database (the outbox), so a restart, or
kill -9, loses nothing.  Threads: the reconciler (gradebook -> outbox,
every ``poll`` seconds), ``posters`` workers (outbox -> LMS), and the
roster sync (every ``sync_minutes``, and on demand from the instructor's
page).  The page itself is ``hub.lms.web``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hub.lms.binding import binding_of
from hub.lms.client import LmsClient
from hub.lms.keys import ToolKey
from hub.lms.outbox import Outbox
from hub.lms.poster import Poster
from hub.lms.registrations import Platform
from hub.lms.roster import RosterSync, SyncResult
from hub.lms.scores import Reconciler
from hub.lms.settings import database_url
from hub.lms.tables import lms_engine

log = logging.getLogger("unet_hub.lms")


def read_secrets(fd: int | None = None) -> tuple[ToolKey, list[Platform]]:
    """The key and registrations ``hub/lms/secrets_pipe.py`` handed over (``UNET_LMS_SECRETS_FD``)."""
    if fd is None:
        if "UNET_LMS_SECRETS_FD" not in os.environ:
            raise SystemExit("UNET_LMS_SECRETS_FD is not set: the hub starts this service through "
                             "hub/lms/secrets_pipe.py, which hands it the tool's key")
        fd = int(os.environ.pop("UNET_LMS_SECRETS_FD"))
    with os.fdopen(fd, "rb") as pipe:
        data = json.loads(pipe.read())
    platforms = [Platform(**{**p, "deployment_ids": tuple(p["deployment_ids"])}) for p in data["platforms"]]
    return ToolKey.from_pem(data["key"]), platforms


@dataclass(frozen=True)
class LmsSettings:
    """How the service works (``UNET_LMS_*``, set by ``hub.lms.hub_config``)."""

    course_root: Path
    gradebook_url: str
    prefix: str = ""
    tag: str = ""
    instructors_group: str = ""
    course_id: str = "unet-segmentation"
    posters: int = 2
    poll: float = 2.0
    settle: float = 2.0
    lease: float = 60.0
    max_backoff: float = 300.0
    sync_minutes: float = 60.0

    @classmethod
    def from_environment(cls) -> LmsSettings:
        from grader.course import gradebook_url

        course = Path(os.environ.get("UNET_GRADING_COURSE", os.getcwd())).resolve()
        env = os.environ.get
        return cls(course_root=course, gradebook_url=env("UNET_GRADING_GRADEBOOK") or gradebook_url(course),
                   prefix=env("UNET_LMS_PREFIX", ""), tag=env("UNET_LMS_TAG", ""),
                   instructors_group=env("UNET_LMS_INSTRUCTORS_GROUP", ""),
                   course_id=env("UNET_LMS_COURSE_ID", "unet-segmentation"), posters=int(env("UNET_LMS_POSTERS", "2")),
                   poll=float(env("UNET_LMS_POLL", "2")), settle=float(env("UNET_LMS_SETTLE", "2")),
                   lease=float(env("UNET_LMS_LEASE", "60")), max_backoff=float(env("UNET_LMS_MAX_BACKOFF", "300")),
                   sync_minutes=float(env("UNET_LMS_SYNC_MINUTES", "60")))


class LmsService:
    """The reconciler, the posters and the roster sync of one course."""

    def __init__(self, settings: LmsSettings, key: ToolKey, platforms: list[Platform]):
        from hub.grade_on_submit.policy import FILE_NAME

        self.settings = settings
        self.engine = lms_engine(database_url(settings.course_root))
        self.clients = {p.issuer: LmsClient(p, key) for p in platforms}
        # Rosters and grades of the bound LMS course only (hub.lms.binding); none at all while unbound.
        self.binding = binding_of(platforms)
        self.outbox = Outbox(self.engine, max_backoff=settings.max_backoff)
        self.reconciler = Reconciler(self.engine, self.outbox, settings.gradebook_url,
                                     settings.course_root / FILE_NAME, settle=settings.settle, binding=self.binding)
        self.poster = Poster(self.engine, self.outbox, self.clients, lease=settings.lease, tag=settings.course_id,
                             binding=self.binding)
        self.roster = RosterSync(self.engine, self.clients, settings.gradebook_url, settings.prefix, settings.tag,
                                 binding=self.binding)
        self.stopping, self.sync_requested = threading.Event(), threading.Event()
        self.last_sync: list[SyncResult] = []
        self.worker = f"{os.uname().nodename}:{os.getpid()}"

    def _loop(self, name: str, step, pause: float) -> None:
        while not self.stopping.is_set():
            try:
                busy = step()
            except Exception:  # a bug or a broken database must not stop the service for good
                log.exception("%s failed; going on", name)
                busy = False
            if not busy:
                self.stopping.wait(pause)

    def _sync_step(self) -> bool:
        self.sync_requested.wait(self.settings.sync_minutes * 60)
        self.sync_requested.clear()
        if not self.stopping.is_set():
            self.last_sync = self.roster.sync_all()
            for result in self.last_sync:
                log.info("roster of %s: %d active, left: %s%s", result.context_id, result.active,
                         ", ".join(result.left) or "nobody", f" (error: {result.error})" if result.error else "")
        return True

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._loop, args=("reconcile", self.reconciler.run_once,
                                                             self.settings.poll), daemon=True, name="reconcile")]
        for index in range(self.settings.posters):
            worker = f"{self.worker}:{index + 1}"
            threads.append(threading.Thread(target=self._loop, args=(
                "post", lambda w=worker: self.poster.post_one(w), 0.5), daemon=True, name=worker))
        threads.append(threading.Thread(target=self._loop, args=("roster", self._sync_step, 1.0), daemon=True,
                                        name="roster"))
        self.sync_requested.set()  # once at start
        for thread in threads:
            thread.start()
        return threads

    def stop(self) -> None:
        self.stopping.set()
        self.sync_requested.set()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s lms %(levelname)s %(message)s")
    key, platforms = read_secrets()
    service = LmsService(LmsSettings.from_environment(), key, platforms)
    service.start()
    log.info("LMS service for %s: %d platform(s)", service.settings.course_root, len(platforms))
    if os.environ.get("JUPYTERHUB_API_TOKEN"):
        from hub.lms.web import serve

        serve(service)  # until the hub stops it
    else:
        while True:
            time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
