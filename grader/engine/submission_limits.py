"""Which whole-submission limit a cell hit, in words a student understands.

``LimitWatch`` keeps an eye on one kernel's control group (``cgroups``):
after each cell, ``hit()`` says whether the submission reached its limit of
processes, its memory, its scratch space or its CPU time since the last look,
and names the limit and the setting that sets it.  CPU time is watched while
cells run: a thread kills the whole group once the budget is spent, so a
busy child process cannot outlive the budget.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from grader.engine.cgroups import KernelGroup, Usage

POLL_SECONDS = 0.5
# A scratch space with less than this left is full: the submission ran into its size.
FULL_BELOW_BYTES = 1 << 20


def _gib(size: int) -> str:
    return f"{size / 2**30:g} GiB" if size >= 2**30 else f"{size / 2**20:g} MiB"


class LimitWatch:
    """The limits one kernel's submission hit, cell by cell."""

    def __init__(self, group: KernelGroup, limits, scratch: str) -> None:
        # ``limits`` is a sandbox.Limits; ``scratch`` the path of the scratch space inside the sandbox.
        self.group, self.limits, self.scratch = group, limits, scratch
        self.seen = Usage()
        self.cpu_spent = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch_cpu, name="unet-cpu-budget", daemon=True)
        self._thread.start()

    def _watch_cpu(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            if self.group.usage().cpu_seconds > self.limits.submission_cpu_seconds:
                self.cpu_spent = True
                self.group.kill_all()
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def hit(self) -> str | None:
        """The limits reached since the last call, as a sentence naming each and its setting, or None."""
        usage = self.group.usage()
        seen, self.seen = self.seen, usage
        limits = self.limits
        hits = []
        if usage.process_limit_hits > seen.process_limit_hits:
            hits.append(f"your code tried to run more than {limits.processes} processes and threads at once "
                        "(--SandboxedExecute.max_processes)")
        if usage.oom_kills > seen.oom_kills:
            hits.append(f"your code needed more than {_gib(limits.submission_memory_bytes)} of memory in all its "
                        "processes and files (--SandboxedExecute.submission_memory_bytes), so a process was killed")
        if self.cpu_spent:
            self.cpu_spent = False
            hits.append(f"your code used more than {limits.submission_cpu_seconds} s of CPU time in all its "
                        "processes (--SandboxedExecute.submission_cpu_seconds), so all of them were stopped")
        if self._scratch_full():
            hits.append(f"your code filled the {_gib(limits.scratch_bytes)} of scratch space for your folder "
                        "(--SandboxedExecute.scratch_bytes)")
        return "; and ".join(hits) or None

    def _scratch_full(self) -> bool:
        """Whether the kernel's scratch space is full, seen through a process inside the sandbox."""
        for pid in self.group.pids():
            try:
                stat = os.statvfs(Path(f"/proc/{pid}/root") / self.scratch.lstrip("/"))
            except OSError:
                continue  # a process outside the sandbox's mounts (bubblewrap itself), or gone
            return stat.f_bavail * stat.f_frsize < FULL_BELOW_BYTES
        return False
