"""``python -m hub``: set up the course hub and run it in the foreground (``make hub``).

    python -m hub            set up, print the URL and the demo logins, run JupyterHub (Ctrl-C stops it)
    python -m hub setup      set up and print, without starting JupyterHub
    python -m hub release    generate and release the assignment and the companion lab again (after changing them)
    python -m hub remove     delete the demo accounts and their homes, and the state folder

``UNET_HUB_STATE`` (default /srv/unet-hub), ``UNET_HUB_ENV`` (default
``$UNET_HUB_STATE/env``), ``UNET_HUB_PORT`` (default 8000) and
``UNET_HUB_DATA`` (default ./data) choose where and what.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from grader.engine import cgroups
from hub import accounts, provision
from hub.layout import HubLayout
from hub.servers import homes


def hub_command(layout: HubLayout) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run JupyterHub for ``layout`` (root, from the state folder)."""
    env = {
        "PATH": f"{layout.env / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": str(provision.ROOT),
        "UNET_HUB_STATE": str(layout.state),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": os.environ.get("HOME", "/root"),
    }
    return [str(layout.env / "bin" / "jupyterhub"), "-f", str(provision.ROOT / "hub" / "jupyterhub_config.py")], env


def print_logins(layout: HubLayout, logins: dict[str, str]) -> None:
    print(f"\nThe course hub: {layout.url}/hub/login")
    for role, names in [("instructor", layout.instructor_accounts), ("student", layout.student_accounts),
                        ("visitor (not on the roster)", layout.visitor_accounts)]:
        for name in names:
            print(f"  {role:12} {name:24} password {logins[name]}")
    print(f"Formgrader (instructors): {layout.url}/services/{layout.course_id}/formgrader")
    print(f"Grading on submit (students: their gradings; instructors: queue): "
          f"{layout.url}/services/{layout.grading_service}/")
    print(f"State (hub database, gradebook, exchange): {layout.state}\n")


def main(argv: list[str]) -> int:
    layout = HubLayout.from_environment()
    command = argv[0] if argv else "run"
    data = Path(os.environ.get("UNET_HUB_DATA", provision.ROOT / "data"))
    try:
        if command == "remove":
            pid_file = layout.hub_dir / "jupyterhub.pid"
            if pid_file.exists() and Path(f"/proc/{pid_file.read_text().strip()}").exists():
                print(f"error: the hub of {layout.state} is running (pid {pid_file.read_text().strip()}); "
                      "stop it first (Ctrl-C where it runs)", file=sys.stderr)
                return 1
            # With LTI on, the people the LMS sent carry the same tag.
            for name in dict.fromkeys([layout.grader, *layout.login_accounts,
                                       *accounts.tagged_users(layout.account_tag)]):
                if accounts.remove_user(name, layout.account_tag):
                    print(f"removed account {name}")
            shutil.rmtree(layout.lms_dir, ignore_errors=True)  # the tool's key, the LMS registrations (hub/lms)
            cgroups.remove_delegated(layout.grader_cgroup, layout.grader_cgroups)
            provision.restore_repository(layout)
            shutil.rmtree(layout.state / "course", ignore_errors=True)
            for part in ("exchange", "data", "lib", "config", "jupyterhub", "homes", "hub.json"):
                target = layout.state / part
                shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
            print(f"removed the hub's state in {layout.state} (the environment {layout.env} is kept)")
            return 0
        if command == "release":
            provision.release(layout, force=True)
            print("released again (the assignment and the companion lab); students who fetched them keep their copy")
            return 0
        logins = provision.setup(layout, data)
    except (provision.SetupError, accounts.AccountError, cgroups.CgroupsUnavailable, homes.HomeError, OSError,
            subprocess.CalledProcessError) as error:
        # E.g. run as a normal user, or useradd refused a name: one line, not a traceback.
        print(f"error: {error}", file=sys.stderr)
        return 1
    print_logins(layout, logins)
    if command == "setup":
        return 0
    program, env = hub_command(layout)
    os.chdir(layout.hub_dir)
    os.execve(program[0], program, env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
