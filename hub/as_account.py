"""Start a program as another account, inside control groups that account owns.

``python as_account.py ACCOUNT [CGROUP_PROCS_FILE ...] -- COMMAND ...``, run by
root: writes its own pid into each file (so the program and everything it
starts live in the account's delegated groups), becomes ACCOUNT (groups,
gid, uid, home and umask 022) and executes COMMAND.  Only root may move a
process between control groups on cgroup v2, so this step cannot be left to
the account itself; it is how the hub starts the course service and every
nbgrader command of the grader account (``hub/provision.py``), and the
grader then makes each kernel's group inside the delegated one.

It imports nothing from this project, since the hub runs it by path.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys


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
    if "--" not in argv or len(argv) < 3:
        raise SystemExit("usage: as_account.py ACCOUNT [CGROUP_PROCS_FILE ...] -- COMMAND ...")
    split = argv.index("--")
    command = argv[split + 1:]
    # Found while still root: afterwards this Python may not even read its own library (its
    # home can be closed to the account), and finding a program on PATH imports more of it.
    program = shutil.which(command[0]) or command[0]
    become(argv[0], argv[1:split])
    os.execv(program, command)


if __name__ == "__main__":
    main(sys.argv[1:])
