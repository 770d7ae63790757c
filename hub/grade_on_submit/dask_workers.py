"""Grading workers as tasks on a Dask cluster, for a course that outgrows one machine (``UNET_GRADING_DASK``).

Each task runs one grading worker process (``python -m hub.grade_on_submit.worker``,
as the service runs locally) on its Dask worker's machine and waits for it;
the worker claims from the same queue as local workers would (PostgreSQL when
the cluster spans machines, with the gradebook there too and the course
folder and exchange on a shared file system), so the queue's leases keep
every submission graded exactly once.  A process of its own, not the loop in
the Dask worker's process: a worker stops when a regrade is asked for (the
course changed) and the next one must import the course's checks afresh,
which a Dask worker's long-lived process, holding the modules it imported,
cannot.  The service keeps ``workers`` such tasks running and starts a new one
when one ends; setting the Dask event ``STOP`` ends them all.  ``local:N``
starts a cluster of N processes beside the service.  Give each Dask worker
one thread, so that it holds one grading worker (TensorFlow in memory) at a time.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

from hub.grade_on_submit.settings import Settings

log = logging.getLogger("grade_on_submit.dask")
STOP = "grade-on-submit-stop"
STOP_POLL_SECONDS, STOP_WAIT_SECONDS = 1.0, 30.0
# The folder that holds the ``hub`` package this module is part of.
CODE = str(Path(__file__).resolve().parent.parent.parent)
# What a Dask worker needs besides the settings: where nbgrader's configuration and the data are, and whether
# kernels fork from a template.
PASSED_ON = ("JUPYTER_CONFIG_PATH", "CARLA_DATA_DIR", "TF_CPP_MIN_LOG_LEVEL", "UNET_KERNEL_TEMPLATE")


def serve(name: str, environment: dict[str, str]) -> int:
    """A Dask task: a grading worker process here, until it ends or the service sets ``STOP``; its exit status."""
    from distributed import Event

    stop = Event(STOP)
    # The worker dies with this Dask worker's process (worker.main asks for that), so a killed Dask
    # worker leaves no grading behind: its submission's lease runs out and another worker grades it.
    env = {**os.environ, **environment}
    # The worker runs this copy of the code, wherever the Dask worker found it (its PYTHONPATH may not say).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), CODE]))
    process = subprocess.Popen([sys.executable, "-m", "hub.grade_on_submit.worker", name],
                               cwd=environment["UNET_GRADING_COURSE"], env=env)
    try:
        while process.poll() is None and not stop.is_set():
            try:
                process.wait(STOP_POLL_SECONDS)
            except subprocess.TimeoutExpired:
                pass
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return process.returncode


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
                self._ended(slot, future)
            self.futures[slot] = self.client.submit(serve, f"dask-{slot}", self.environment, pure=False,
                                                    key=f"grade-on-submit-{slot}-{uuid.uuid4().hex[:8]}")

    @staticmethod
    def _ended(slot: int, future) -> None:
        """Say how a slot's worker ended: one that stopped for a regrade is expected, a death or failure is not."""
        status = future.result() if future.status == "finished" else None
        if status == 0:
            log.info("Dask worker slot %s: its worker stopped (a regrade was asked for); starting a fresh one", slot)
        else:
            log.error("Dask worker slot %s ended (%s); starting it again", slot,
                      f"exit status {status}" if status is not None else
                      f"{future.status}: {future.exception() if future.status == 'error' else ''}")

    def stop(self) -> None:
        from distributed import Event

        Event(STOP, client=self.client).set()
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
