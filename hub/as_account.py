"""Start a program as another account, inside control groups that account owns.

``python as_account.py [--private-tmp BYTES] ACCOUNT [CGROUP_PROCS_FILE ...] -- COMMAND ...``,
run by root: writes its own pid into each file (so the program and everything it
starts live in the account's delegated groups), becomes ACCOUNT (groups,
gid, uid, home and umask 022) and executes COMMAND.

With ``--private-tmp`` (a student's Jupyter server), the program also gets a
mount namespace of its own in which ``/tmp``, ``/var/tmp``, ``/dev/shm`` and
``/run/lock`` are one private in-memory file system of BYTES, and starts in
the account's home: what it writes there never reaches a disk other
accounts share, counts against its control group's memory, and is gone
when its last process ends.  Only root may move a
process between control groups on cgroup v2, so this step cannot be left to
the account itself; it is how the hub starts the course service and every
nbgrader command of the grader account (``hub/provision.py``), and the
grader then makes each kernel's group inside the delegated one.

It imports nothing from this project, since the hub runs it by path.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import sys

CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000
# Every world-writable place of a Debian or Ubuntu machine outside the homes.
SHARED_SCRATCH = ("/var/tmp", "/dev/shm", "/run/lock")


def _mount(source: str, target: str, kind: str | None, flags: int, options: str | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), kind.encode() if kind else None, flags,
                  options.encode() if options else None) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {target}: {os.strerror(error)}")


def private_tmp(size: int) -> None:
    """Give this process (still root) its own /tmp of ``size`` bytes, and the other shared scratch places in it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"unshare(CLONE_NEWNS): {os.strerror(error)}")
    # Nothing mounted here may reach the machine's own mount table.
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    _mount("unet-tmp", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
    for place in SHARED_SCRATCH:
        if os.path.isdir(place) and not os.path.islink(place):
            inside = os.path.join("/tmp", "." + place.strip("/").replace("/", "-"))
            os.mkdir(inside)
            os.chmod(inside, 0o1777)
            _mount(inside, place, None, MS_BIND)


def become(account: str, procs_files: list[str]) -> None:
    """Join the groups of ``procs_files``, then drop every right but those of ``account``."""
    entry = pwd.getpwnam(account)
    for procs in procs_files:
        with open(procs, "w") as fh:
            fh.write(str(os.getpid()))
    os.setgroups(os.getgrouplist(account, entry.pw_gid))
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=account, LOGNAME=account, SHELL=entry.pw_shell or "/bin/sh")
    os.umask(0o022)


def main(argv: list[str]) -> None:
    tmp_size = None
    if argv[:1] == ["--private-tmp"]:
        tmp_size, argv = int(argv[1]), argv[2:]
    if "--" not in argv or len(argv) < 3:
        raise SystemExit("usage: as_account.py [--private-tmp BYTES] ACCOUNT [CGROUP_PROCS_FILE ...] -- COMMAND ...")
    split = argv.index("--")
    command = argv[split + 1:]
    # Found while still root: afterwards this Python may not even read its own library (its
    # home can be closed to the account), and finding a program on PATH imports more of it.
    program = shutil.which(command[0]) or command[0]
    if tmp_size is not None:
        private_tmp(tmp_size)
    become(argv[0], argv[1:split])
    if tmp_size is not None:
        os.chdir(os.environ["HOME"])
    os.execv(program, command)


if __name__ == "__main__":
    main(sys.argv[1:])
