"""Unix accounts for the hub: every student and instructor is a real user.

nbgrader's file exchange tells students apart by their unix user, and the
single-user servers run as those users, so each login needs an account with
a private home.  Accounts made here carry a tag in their comment field, and
only tagged accounts are ever removed.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import subprocess
import sys
import time
from pathlib import Path

from grader.engine import cgroups
from hub.servers import group_name, homes

AS_ACCOUNT = Path(__file__).resolve().parent / "as_account.py"


class AccountError(RuntimeError):
    """An account cannot be made or used as the hub needs."""


def tag_of(name: str) -> str | None:
    """The comment field of account ``name``, or None when there is no such account."""
    try:
        return pwd.getpwnam(name).pw_gecos
    except KeyError:
        return None


def ensure_user(name: str, tag: str, groups: list[str] | None = None) -> pwd.struct_passwd:
    """Create account ``name`` (home in /home, mode 0700) unless it exists with our ``tag``.

    An existing account without the tag is somebody else's: refuse rather than hand it to the hub.
    """
    existing = tag_of(name)
    if existing is None:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--comment", tag, name],
                       check=True, capture_output=True, text=True)
    elif existing != tag:
        raise AccountError(f"a unix account named {name!r} already exists and was not made for this hub "
                           f"(its comment is {existing!r}); pick other names or remove it")
    for group in groups or []:
        subprocess.run(["usermod", "--append", "--groups", group, name], check=True, capture_output=True)
    entry = pwd.getpwnam(name)
    # Debian's default home mode lets other users look in; a student's work must stay private.
    os.chmod(entry.pw_dir, 0o700)
    return entry


def end_processes(name: str, wait: float = 10.0) -> bool:
    """Kill whatever ``name`` still runs; whether there was anything.

    A service the hub started as the account outlives a hub that was killed:
    it holds its port, so the next hub's copy cannot start, and userdel leaves
    it running, owned by the next account given the same uid.
    """
    deadline, found = time.monotonic() + wait, False
    # pkill succeeds while it still finds one; a killed process's entry may linger until its parent reaps it.
    while subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True).returncode == 0:
        found = True
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return found


def remove_user(name: str, tag: str) -> bool:
    """Delete account ``name`` and its home if it carries ``tag``; return whether it was removed.

    What its server left running is killed first, and its home's own file system unmounted.
    """
    if tag_of(name) != tag:
        return False
    cgroups.remove_named_group(group_name(name))
    end_processes(name)
    homes.release_home(Path(pwd.getpwnam(name).pw_dir))
    # --force: a server that has not quite stopped yet must not leave the account behind.
    result = subprocess.run(["userdel", "--force", "--remove", name], capture_output=True, text=True)
    if result.returncode not in (0, 12):  # 12: the home could not be removed (already gone)
        raise AccountError(f"userdel {name} failed: {result.stderr.strip()}")
    return True


def tagged_users(prefix: str) -> list[str]:
    """Accounts whose comment starts with ``prefix``."""
    return [p.pw_name for p in pwd.getpwall() if p.pw_gecos.startswith(prefix)]


def demo_passwords(path: Path, names: list[str]) -> dict[str, str]:
    """Read the demo passwords kept at ``path`` (root only), adding a random one for each new name."""
    passwords: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    for name in names:
        # Random, not fixed: a try-out hub reachable by others must not share a known password.
        passwords.setdefault(name, secrets.token_urlsafe(9))
    path.write_text(json.dumps(passwords, indent=2) + "\n")
    path.chmod(0o600)
    return {name: passwords[name] for name in names}


def as_account_command(user: str, cgroups: list[str], command: list[str], python: str = sys.executable,
                       private_tmp: int | None = None) -> list[str]:
    """``command`` started by root as ``user``, inside the control groups whose ``cgroup.procs`` are ``cgroups``.

    With ``private_tmp`` (bytes), it also gets a private in-memory /tmp of that size and starts in its home.
    """
    # -I: root's Python must not read the account's HOME (user site-packages) or PYTHONPATH.
    tmp = ["--private-tmp", str(private_tmp)] if private_tmp else []
    return [python, "-I", str(AS_ACCOUNT), *tmp, user, *cgroups, "--", *command]


def run_as(user: str, command: list[str], *, cwd: Path, env: dict[str, str], cgroups: list[str] | None = None,
           timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``command`` as unix ``user`` (root only), with ``env`` and the account's HOME, USER, LOGNAME, SHELL.

    With ``cgroups`` (their ``cgroup.procs`` files), it starts inside those control groups.
    """
    # One way to become an account, with or without control groups: as_account.py sets the
    # groups, ids, HOME, USER, LOGNAME, SHELL and umask.
    result = subprocess.run(as_account_command(user, cgroups or [], command), cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AccountError(f"{' '.join(command[:4])} ... as {user} failed ({result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")
    return result
