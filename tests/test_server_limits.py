"""The parts that keep one student's server within its limits, without a hub (hub/servers, hub/as_account.py).

Throw-away accounts (root): a private /tmp that fills at its own size and
leaves the machine's scratch folders untouched, a home that is a file
system of its own and fills only itself, and a control group that stops a
fork bomb at its process limit and takes everything in it down when removed.
"""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.engine import cgroups
from hub import accounts
from hub.servers import homes

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux",
                                reason="needs root for throw-away unix accounts (Linux)")

MiB = 2**20
TAG = "unet-hub server-limits test"


@pytest.fixture
def account(tmp_path) -> Iterator[str]:
    name = f"unet-s{secrets.token_hex(3)}"
    accounts.ensure_user(name, TAG)
    try:
        yield name
    finally:
        accounts.remove_user(name, TAG)


def as_account(name: str, script: str, *, tmp: int | None = None, procs: list[str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    command = accounts.as_account_command(name, procs or [], ["/bin/sh", "-c", script], python="/usr/bin/python3",
                                          private_tmp=tmp)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={"PATH": "/usr/bin:/bin"})


def test_a_private_tmp_fills_at_its_own_size_and_nothing_reaches_the_machines(account):
    marker = f"fill-{secrets.token_hex(4)}"
    shown = as_account(account, f"""
        for place in /tmp /var/tmp /dev/shm /run/lock; do
            dd if=/dev/zero of=$place/{marker} bs=1M count=64 2>&1 | tail -1
        done
        df -k /tmp | tail -1; pwd; id -un""", tmp=16 * MiB)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    written = sum(int(line.split()[0]) for line in lines[:4])  # what each dd managed
    assert written <= 16 * MiB  # 4 x 64 MiB asked for, into one file system of 16 MiB
    assert lines[-1] == account and lines[-2] == pwd.getpwnam(account).pw_dir  # as the account, in her home
    assert int(lines[-3].split()[1]) <= 16 * 1024  # one file system of 16 MiB behind all four places
    for place in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
        assert not Path(place, marker).exists(), f"{place}/{marker} reached the machine"


def test_a_home_of_its_own_fills_only_itself(account, tmp_path):
    home = Path(pwd.getpwnam(account).pw_dir)
    (home / "kept.txt").write_text("from before")
    images = tmp_path / "homes"
    assert homes.ensure_home(account, images, 32 * MiB)
    assert not homes.ensure_home(account, images, 32 * MiB)  # mounted already: nothing to do
    assert (home / "kept.txt").read_text() == "from before"  # what the home held came along
    assert oct(home.stat().st_mode & 0o777) == "0o700" and home.stat().st_uid == pwd.getpwnam(account).pw_uid
    image = homes.image_of(account, images)
    assert image.stat().st_blocks * 512 >= 32 * MiB  # allocated in full when made, not sparse
    filled = as_account(account, "dd if=/dev/zero of=$HOME/fill bs=1M count=100 2>&1 | tail -1")
    assert int(filled.stdout.split()[0]) < 32 * MiB  # 100 MiB asked for: it stopped when her home was full
    used, size = homes.usage(home)
    assert size <= 32 * MiB and used > 0.9 * size
    assert image.stat().st_blocks * 512 <= 33 * MiB  # the machine's disk gave it nothing more
    homes.release_home(home)
    assert not os.path.ismount(home)
    assert homes.ensure_home(account, images, 32 * MiB)  # mounted again, with what she had
    assert (home / "kept.txt").read_text() == "from before"


FORK_BOMB = """
import os, time
end = time.time() + 60
while time.time() < end:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
"""


def test_a_servers_group_stops_a_fork_bomb_and_takes_it_down_when_removed(account):
    name = f"unet-hub-server-{account}"
    group = cgroups.fresh_named_group(name, cgroups.GroupLimits(processes=40, memory_bytes=512 * MiB, cpus=0.5))
    procs = [str(folder / "cgroup.procs") for folder in dict.fromkeys(group.dirs.values())]
    bomb = subprocess.Popen(accounts.as_account_command(account, procs, ["/usr/bin/python3", "-c", FORK_BOMB],
                                                        python="/usr/bin/python3"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while group.usage().process_limit_hits == 0:
            assert time.monotonic() < deadline, "the fork bomb never reached the process limit"
            time.sleep(0.2)
        assert len(group.pids()) <= 40
        # A group made afresh under the same name (the server started again) first ends what was left.
        again = cgroups.fresh_named_group(name, cgroups.GroupLimits(processes=40, memory_bytes=512 * MiB, cpus=0.5))
        assert again.pids() == []
        assert bomb.wait(timeout=30) != 0
    finally:
        cgroups.remove_named_group(name)
        bomb.kill()
    assert cgroups.named_group(name) is None
