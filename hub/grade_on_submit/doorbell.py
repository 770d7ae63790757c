"""The service wakes its idle local workers the moment it queues a submission, instead of letting them poll.

An idle worker used to ask the queue again every ``poll_seconds`` (0.2 s):
a tenth of a second of every idle student's wait on average.  Now each local
worker gets the read end of a pipe of its own; it waits on that pipe for at
most ``poll_seconds`` and the service writes a byte to every worker's pipe
after a scan queued something.  A byte written while the worker is grading
stays in the pipe, so its next wait ends at once and it looks at the queue.
The poll stays as the fallback: for what becomes ready with time alone (a
submission whose hourly slot opens, a lease that ran out) and for workers
started as Dask tasks, which have no pipe.
"""

from __future__ import annotations

import os
import select
import stat
import time

# The worker's environment variable that holds the number of its end of the pipe.
VARIABLE = "UNET_GRADING_DOORBELL"


class Doorbells:
    """The service's side: one pipe per local worker, rung all at once."""

    def __init__(self) -> None:
        self._writers: dict[str, int] = {}

    def new(self, worker: str) -> int:
        """A fresh pipe for ``worker`` (replacing the one of its predecessor); the end to hand to the process.

        The caller passes that end on (``pass_fds``) and closes its own copy once the process has started.
        """
        self.close(worker)
        reader, writer = os.pipe()
        os.set_blocking(writer, False)
        self._writers[worker] = writer
        return reader

    def ring(self) -> None:
        """Tell every worker to look at the queue now; never blocks (a full pipe has a byte waiting already)."""
        for writer in self._writers.values():
            try:
                os.write(writer, b"!")
            except (BlockingIOError, BrokenPipeError):
                pass

    def close(self, worker: str) -> None:
        """Close ``worker``'s pipe: its wait then sees the end (the service stopped it or starts another)."""
        writer = self._writers.pop(worker, None)
        if writer is not None:
            os.close(writer)


class Doorbell:
    """A worker's side: wait for the service's ring, or for ``seconds`` at most."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self._poll = select.poll()  # not select(): it refuses descriptors numbered 1024 or more
        if fd is not None:
            os.set_blocking(fd, False)
            # The worker's children (its kernel template, nbgrader's helpers) have no business with it.
            os.set_inheritable(fd, False)
            self._poll.register(fd, select.POLLIN)

    @classmethod
    def from_environment(cls) -> Doorbell:
        """The pipe the service named in ``UNET_GRADING_DOORBELL``, taken out of the environment so that no
        child inherits the name; no pipe (the worker polls) when there is none or the number is not a pipe."""
        value = os.environ.pop(VARIABLE, "")
        if not value.isdigit():
            return cls(None)
        try:
            is_pipe = stat.S_ISFIFO(os.fstat(int(value)).st_mode)
        except OSError:
            is_pipe = False
        return cls(int(value) if is_pipe else None)

    def wait(self, seconds: float) -> bool:
        """Wait until rung or ``seconds`` passed; whether it was rung (every ring so far is used up)."""
        if self.fd is None:
            time.sleep(seconds)
            return False
        if not self._poll.poll(seconds * 1000):
            return False
        try:
            # EOF (the service is gone) reads b"": the worker's own check of its parent ends it.
            rung = bool(os.read(self.fd, 4096))
        except BlockingIOError:
            return False
        if not rung:
            time.sleep(seconds)  # a closed pipe is always readable: do not spin until the worker notices
        return rung
