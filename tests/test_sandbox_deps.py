"""`make sandbox-deps` sets up what bubblewrap needs, as a normal user on Ubuntu 24.04 would run it.

Ubuntu is simulated: a throw-away unix user runs grader/tools/sandbox_deps.sh
with a ``bwrap`` that fails like Ubuntu's AppArmor-restricted one until an
AppArmor profile for it is loaded, an ``apparmor_parser`` that records what
it loads, a ``sudo`` that records what it is asked to do, and the sysctl read
from a file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.course import ROOT

SCRIPT = ROOT / "grader" / "tools" / "sandbox_deps.sh"
PROFILE = ROOT / "grader" / "tools" / "apparmor-bwrap"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                                reason="needs root to create a throw-away user")

FAKES = {
    # Fails as on Ubuntu until apparmor_parser has loaded a profile for it.
    "bwrap": '[ -f "$APPARMOR_D/bwrap.loaded" ] && exit 0\n'
             "echo 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n",
    "apparmor_parser": 'echo "apparmor_parser $*" >> "$LOG"\n[ "$1" = -r ] && cp "$2" "$2.loaded"\n',
    "sudo": 'echo "sudo $*" >> "$LOG"\nexec "$@"\n',
    "loginctl": 'echo "loginctl $*" >> "$LOG"\ntouch "$APPARMOR_D/../linger"\n',
    # A user manager exists once loginctl enabled lingering; it delegates what the file "delegates" lists.
    "systemd-run": '[ -f "$APPARMOR_D/../linger" ] || exit 1\ncat "$APPARMOR_D/../delegates"\n',
}


@pytest.fixture
def ubuntu(user) -> Iterator[Path]:
    """A folder the user owns: fake commands in bin/, the profile folder, the sysctl file, the log."""
    folder = Path(tempfile.mkdtemp(prefix="unet-sandbox-deps-"))
    (folder / "bin").mkdir()
    (folder / "apparmor.d").mkdir()
    for name, body in FAKES.items():
        (folder / "bin" / name).write_text("#!/bin/sh\n" + body)
        (folder / "bin" / name).chmod(0o755)
    (folder / "restrict").write_text("1\n")
    (folder / "log").write_text("")
    shutil.chown(folder, user)
    for path in folder.rglob("*"):
        shutil.chown(path, user)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def run_as(user: str, folder: Path) -> subprocess.CompletedProcess:
    env = {"PATH": f"{folder / 'bin'}:/usr/bin:/bin", "APPARMOR_USERNS": str(folder / "restrict"),
           "APPARMOR_D": str(folder / "apparmor.d"), "LOG": str(folder / "log"), "CGROUP2": str(folder / "cgroup2")}
    return subprocess.run(["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                           "sh", str(SCRIPT)], capture_output=True, text=True, timeout=60)


def test_on_ubuntu_it_installs_the_apparmor_profile_with_sudo_and_says_so(user, ubuntu):
    result = run_as(user, ubuntu)
    assert result.returncode == 0, result.stdout + result.stderr
    profile = ubuntu / "apparmor.d" / "bwrap"
    assert profile.read_text() == PROFILE.read_text()
    log = (ubuntu / "log").read_text().splitlines()
    assert log == [f"sudo install -m 644 {PROFILE} {profile}", f"sudo apparmor_parser -r {profile}",
                   f"apparmor_parser -r {profile}"]
    assert "AppArmor forbids normal users" in result.stdout and f"works for {user} now" in result.stdout
    for command in log[:2]:
        assert command in result.stdout, "every sudo command is said before it runs"


def test_a_working_bwrap_is_left_alone(user, ubuntu):
    (ubuntu / "apparmor.d" / "bwrap.loaded").write_text("")
    result = run_as(user, ubuntu)
    assert result.returncode == 0 and f"works for {user}." in result.stdout
    assert (ubuntu / "log").read_text() == "" and not (ubuntu / "apparmor.d" / "bwrap").exists()


def test_without_the_apparmor_restriction_it_installs_nothing_and_fails_with_what_bwrap_said(user, ubuntu):
    (ubuntu / "restrict").write_text("0\n")
    result = run_as(user, ubuntu)
    assert result.returncode == 1
    assert "still cannot start" in result.stdout and "setting up uid map" in result.stderr
    assert (ubuntu / "log").read_text() == ""


@pytest.mark.parametrize("delegates, works", [("cpuset cpu io memory pids", True), ("cpu io", False)])
def test_on_cgroup_v2_it_starts_a_user_manager_and_checks_what_systemd_delegates(user, ubuntu, delegates, works):
    (ubuntu / "apparmor.d" / "bwrap.loaded").write_text("")
    (ubuntu / "cgroup2").mkdir()
    (ubuntu / "cgroup2" / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (ubuntu / "delegates").write_text(delegates + "\n")
    result = run_as(user, ubuntu)
    said = [f"sudo loginctl enable-linger {user}", f"loginctl enable-linger {user}"]
    assert (ubuntu / "log").read_text().splitlines() == said
    assert f"loginctl enable-linger {user}" in result.stdout
    if works:
        assert result.returncode == 0 and "systemd delegates control groups" in result.stdout
    else:
        assert result.returncode == 1 and "does not delegate the pids controller" in result.stdout


def test_as_root_it_installs_the_profile_for_normal_users_though_root_needs_none(ubuntu):
    # Root's own bubblewrap works under the restriction; the hub's grader account's would not.
    (ubuntu / "bin" / "bwrap").write_text('#!/bin/sh\n[ "$(id -u)" = 0 ] && exit 0\nexit 1\n')
    env = {"PATH": f"{ubuntu / 'bin'}:/usr/bin:/bin", "APPARMOR_USERNS": str(ubuntu / "restrict"),
           "APPARMOR_D": str(ubuntu / "apparmor.d"), "LOG": str(ubuntu / "log"), "CGROUP2": str(ubuntu / "cgroup2")}
    result = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), "sh", str(SCRIPT)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not for normal users such as the hub's grader account" in result.stdout
    assert (ubuntu / "apparmor.d" / "bwrap").read_text() == PROFILE.read_text()
    assert (ubuntu / "log").read_text().splitlines() == [f"apparmor_parser -r {ubuntu / 'apparmor.d' / 'bwrap'}"]
    again = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), "sh", str(SCRIPT)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "bubblewrap works for root." in again.stdout
