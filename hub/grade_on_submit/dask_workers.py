"""Grading workers as tasks on a Dask cluster, for a course that outgrows one machine (``UNET_GRADING_DASK``).

Each task is one worker loop (``worker.run``) on a Dask worker, claiming from
the same queue as local workers would (PostgreSQL when the cluster spans
machines, with the gradebook there too and the course folder and exchange on
a shared file system), so the queue's leases keep every submission graded
exactly once.  The service keeps ``workers`` such tasks running and starts a
new one when one ends; setting the Dask event ``STOP`` ends them all.
``local:N`` starts a cluster of N processes beside the service.  Each Dask
worker must run one thread: nbgrader keeps one course state per process.
"""

from __future__ import annotations

import logging
import os
import uuid

from hub.grade_on_submit.settings import Settings

log = logging.getLogger("grade_on_submit.dask")
STOP = "grade-on-submit-stop"
# What a Dask worker needs besides the settings: where nbgrader's configuration and the data are.
PASSED_ON = ("JUPYTER_CONFIG_PATH", "CARLA_DATA_DIR", "TF_CPP_MIN_LOG_LEVEL")


def serve(name: str, environment: dict[str, str]) -> str:
    """A Dask task: grade from the queue until the service sets ``STOP``."""
    from distributed import Event

    from hub.grade_on_submit.worker import run

    os.environ.update(environment)
    stop = Event(STOP)
    run(name, Settings.from_environment(), keep_going=lambda: not stop.is_set())
    return name


class DaskWorkers:
    """The worker loops the service keeps running on a Dask cluster."""

    def __init__(self, settings: Settings):
        from distributed import Client, Event, LocalCluster

        self.settings, self.cluster = settings, None
        address = settings.dask
        if address.startswith("local"):
            self.cluster = LocalCluster(n_workers=int(address.partition(":")[2] or settings.workers),
                                        threads_per_worker=1, processes=True, dashboard_address=None)
            address = self.cluster.scheduler_address
        self.client = Client(address)
        Event(STOP, client=self.client).clear()
        self.environment = {**settings.environment(), **{k: os.environ[k] for k in PASSED_ON if k in os.environ}}
        self.futures: dict[int, object] = {}

    def supervise(self) -> None:
        """Start the worker loops that are missing (at the start, or after one ended)."""
        for slot in range(1, self.settings.workers + 1):
            future = self.futures.get(slot)
            if future is not None and not future.done():  # type: ignore[attr-defined]
                continue
            if future is not None:
                log.error("Dask worker loop %s ended (%s); starting it again", slot, future.exception())  # type: ignore[attr-defined]
            self.futures[slot] = self.client.submit(serve, f"dask-{slot}", self.environment, pure=False,
                                                    key=f"grade-on-submit-{slot}-{uuid.uuid4().hex[:8]}")

    def stop(self) -> None:
        from distributed import Event

        Event(STOP, client=self.client).set()
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
