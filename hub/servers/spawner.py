"""The hub's spawner: each person's server as their own account, in limits of its own.

JupyterHub's ``LocalProcessSpawner`` starts a server as its account and
leaves it unbounded: one student's fork bomb, memory leak or full /tmp
takes the machine down for the whole class.  ``CourseSpawner`` starts the
same server, but

- in a control group of its own (``unet-hub-server-<account>``, made
  afresh at each start) with a memory, process and CPU limit, which every
  process it starts (kernels, terminals, Validate) inherits and cannot
  leave; stopping the server kills everything left in the group;
- with a private, size-limited in-memory ``/tmp`` (also ``/var/tmp``,
  ``/dev/shm``, ``/run/lock``), charged to that group's memory;
- on a home that is a file system of its own, of a fixed size (``homes``).

Root (the hub) makes the group and the home; ``hub/as_account.py`` joins the
group, makes the private /tmp and only then becomes the account.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Float, Integer, Unicode

from grader.engine import cgroups
from hub.accounts import as_account_command
from hub.servers import group_name, homes


class CourseSpawner(LocalProcessSpawner):
    """``LocalProcessSpawner`` with a control group, a private /tmp and a home of fixed size per server."""

    memory_bytes = Integer(4 * 2**30, help="Memory of a server and all it starts (kernels, /tmp), in bytes.").tag(
        config=True)
    processes = Integer(512, help="Processes and threads a server and all it starts may run at once.").tag(
        config=True)
    cpus = Float(1.0, help="CPUs a server and all it starts may keep busy at once.").tag(config=True)
    tmp_bytes = Integer(1 * 2**30, help="Size of the server's private /tmp (in memory), in bytes.").tag(
        config=True)
    home_bytes = Integer(2 * 2**30, help="Size of each account's home file system, in bytes; 0 leaves homes "
                                         "as they are (e.g. where disk quotas hold them).").tag(config=True)
    homes_dir = Unicode("", help="Where the home file systems' images are kept (root only).").tag(config=True)
    python = Unicode(sys.executable, help="The Python that runs hub/as_account.py as root.").tag(config=True)

    def make_preexec_fn(self, name):
        # The server starts as root and becomes the account in as_account.py, after it has joined its
        # group and made its /tmp; starting it as the account would leave it no way to do either.
        return None

    async def start(self):
        account = self.user.name
        # Off the hub's event loop: making a home (mkfs) or killing what a previous server left takes seconds.
        loop = asyncio.get_running_loop()
        if self.home_bytes:
            await loop.run_in_executor(None, homes.ensure_home, account, Path(self.homes_dir), self.home_bytes)
        limits = cgroups.GroupLimits(processes=self.processes, memory_bytes=self.memory_bytes, cpus=self.cpus)
        group = await loop.run_in_executor(None, cgroups.fresh_named_group, group_name(account), limits)
        procs = [str(folder / "cgroup.procs") for folder in dict.fromkeys(group.dirs.values())]
        plain: list[str] = list(self.cmd)  # type: ignore[has-type]  # a traitlets Command
        self.cmd = as_account_command(account, procs, plain, python=self.python, private_tmp=self.tmp_bytes)
        try:
            self.popen_kwargs = {**self.popen_kwargs, "cwd": "/"}  # type: ignore[has-type]
            return await super().start()
        finally:
            self.cmd = plain

    async def stop(self, now=False):
        await super().stop(now=now)
        # A student's daemon or a kernel the server did not stop must not outlive it.
        await asyncio.get_running_loop().run_in_executor(None, cgroups.remove_named_group, group_name(self.user.name))
