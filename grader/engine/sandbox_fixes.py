"""What to tell an instructor whose machine cannot run the grading sandbox, and how to fix it there.

The sandbox needs Linux, bubblewrap, ``prlimit`` and unprivileged user
namespaces.  Each platform lacks a different one of these, and each has its
own fix; ``fix_for`` picks it from the platform and from what ``bwrap`` said
when it failed.  ``make sandbox-deps`` (``grader/tools/sandbox_deps.sh``)
applies the Linux fixes; the texts here spell out the same commands for
whoever prefers to run them by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Ubuntu 23.10 and later: 1 means unprivileged programs may create a user
# namespace only under an AppArmor profile that allows it.
APPARMOR_USERNS = Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
# The AppArmor profile that lets bwrap create user namespaces; make sandbox-deps installs it.
APPARMOR_PROFILE = Path(__file__).resolve().parents[1] / "tools" / "apparmor-bwrap"
SYSCTL_FILE = "/etc/sysctl.d/60-bwrap-userns.conf"

ELSEWHERE = ("Otherwise grade on a Linux machine where the sandbox works, or on the course hub; or, for notebooks "
             "you trust only, with --SandboxedExecute.sandbox=False (student code then runs with your rights).")

# What bwrap prints when user namespaces are refused, and why.
_APPARMOR_SIGN = "setting up uid map: Permission denied"
_SYSCTL_SIGNS = ("No permissions to creating new namespace", "Creating new namespace failed")


def apparmor_fix() -> str:
    """The two ways to let bwrap create user namespaces on Ubuntu 23.10 and later, as commands."""
    return (
        "Ubuntu 23.10 and later (and GitHub's ubuntu-24.04 runners) let a normal user create the "
        "namespaces bubblewrap needs only under an AppArmor profile that allows it. Run `make sandbox-deps` "
        "(it asks for sudo and says what it does), or do the same by hand:\n"
        f"    sudo install -m 644 {APPARMOR_PROFILE} /etc/apparmor.d/bwrap\n"
        "    sudo apparmor_parser -r /etc/apparmor.d/bwrap\n"
        "or, for every program on this machine instead of bwrap alone:\n"
        f"    echo kernel.apparmor_restrict_unprivileged_userns=0 | sudo tee {SYSCTL_FILE}\n"
        "    sudo sysctl --system"
    )


def userns_fix() -> str:
    """The fix when the kernel itself refuses user namespaces to normal users."""
    return (
        "This kernel does not let normal users create user namespaces. Allow them with\n"
        f"    echo kernel.unprivileged_userns_clone=1 | sudo tee {SYSCTL_FILE}\n"
        f"    echo user.max_user_namespaces=15000 | sudo tee -a {SYSCTL_FILE}\n"
        "    sudo sysctl --system\n"
        "(inside a container, run the grader on the host or in a container that may create namespaces)."
    )


def fix_for(error: str | None, platform: str = sys.platform) -> str:
    """What to do, on ``platform``, when bwrap is missing (``error`` None) or failed saying ``error``."""
    if platform == "darwin":
        return f"bubblewrap exists only on Linux, so a Mac cannot run the grading sandbox. {ELSEWHERE}"
    if platform.startswith("win"):
        return ("bubblewrap exists only on Linux. Grade in WSL 2 with Ubuntu (there: `make sandbox-deps`, then "
                f"the same commands). {ELSEWHERE}")
    if error is None:
        return f"Run `make sandbox-deps` (on Debian and Ubuntu it installs bubblewrap and util-linux). {ELSEWHERE}"
    # Under the restriction, a namespace refused in other words is still AppArmor's doing; any other
    # failure (a missing library, a broken Python) is not, even on a restricted Ubuntu.
    refused = any(sign in error for sign in ("Permission denied", "Operation not permitted"))
    if _APPARMOR_SIGN in error or (refused and _apparmor_restricts()):
        return apparmor_fix()
    if any(sign in error for sign in _SYSCTL_SIGNS):
        return userns_fix()
    return ("The sandbox's requirements are in docs/grading.md (\"Machines the grader runs on\"). "
            f"{ELSEWHERE}")


def _apparmor_restricts() -> bool:
    try:
        return APPARMOR_USERNS.read_text().strip() == "1"
    except OSError:
        return False
