"""Control groups for whole-submission limits: the files each kind writes and reads, and a real group here.

cgroup v2 cannot be mounted with its controllers on this development machine
(they are taken by the v1 hierarchies), so the v2 code is checked against a
folder laid out like a v2 group; the v1 code runs against the real thing
where this machine allows it.
"""

from __future__ import annotations

import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader.engine.cgroups import (
    CgroupsUnavailable,
    GroupLimits,
    Usage,
    V2Group,
    delegate,
    mounts,
    open_group,
    own_paths,
    remove_delegated,
    v1_parents,
    v2_parent,
)
from hub.accounts import as_account_command

LIMITS = GroupLimits(processes=64, memory_bytes=512 * 2**20, cpus=0.5)

V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
36 31 0:33 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
38 31 0:35 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_mounts_and_own_groups_are_read_for_both_versions():
    found = {(m.kind, str(m.path)) for m in mounts(V1_MOUNTINFO)}
    assert ("cgroup", "/sys/fs/cgroup/pids") in found and ("cgroup2", "/sys/fs/cgroup/unified") in found
    assert ("tmpfs", "/sys/fs/cgroup") not in found
    own = own_paths("8:pids:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/user.slice/u.scope\n")
    assert own == {"pids": "/", "memory": "/process_api/abc", "cpu": "/x", "cpuacct": "/x",
                   "": "/user.slice/u.scope"}


def test_a_v1_machine_without_a_pids_hierarchy_is_refused_with_the_fix(tmp_path):
    found = [m for m in mounts(V1_MOUNTINFO) if "pids" not in m.options]
    with pytest.raises(CgroupsUnavailable) as err:
        v1_parents(found, own_paths("4:memory:/\n"))
    assert "pids" in err.value.what and "whole_submission_limits=False" in err.value.fix


def test_a_v2_group_gets_its_limits_and_reports_what_was_hit(tmp_path):
    group = V2Group.create(tmp_path, LIMITS)
    folder = group.dirs["procs"]
    assert (folder / "pids.max").read_text() == "64"
    assert (folder / "memory.max").read_text() == str(512 * 2**20)
    assert (folder / "cpu.max").read_text() == "50000 100000"
    (folder / "pids.events").write_text("max 7\n")
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\n")
    (folder / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    assert group.usage() == Usage(process_limit_hits=7, oom_kills=1, cpu_seconds=2.5)
    entered = subprocess.run([*group.enter_prefix(), "sh", "-c", "echo $$"], capture_output=True, text=True)
    assert (folder / "cgroup.procs").read_text().strip() == entered.stdout.strip(), "the program runs as the shell"
    for name in ("pids.max", "memory.max", "cpu.max", "pids.events", "memory.events", "cpu.stat", "cgroup.procs"):
        (folder / name).unlink()
    group.remove()
    assert not folder.exists()


def test_the_templates_way_into_a_group_writes_the_pid_into_a_v2_groups_one_procs_file(tmp_path):
    """A kernel forked from a template does not start through ``enter_prefix``: the grader moves its warden
    in by pid (``template.enter_group``, which ``KernelTemplate.fork`` calls before the kernel runs
    anything; on this machine's v1 groups, ``tests/test_submission_limits.py`` sees forked kernels held by
    their group's limits)."""
    from grader.engine.template import enter_group

    group = V2Group.create(tmp_path, LIMITS)
    procs = group.dirs["procs"] / "cgroup.procs"
    enter_group(group)(4242)
    assert procs.read_text() == "4242"
    assert [p.name for p in tmp_path.rglob("cgroup.procs")] == ["cgroup.procs"]  # one folder on v2
    procs.write_text("")
    enter_group(None)(4242)  # without whole-submission limits: no group, nothing written
    assert procs.read_text() == ""


def test_a_normal_user_in_a_delegated_v2_group_moves_itself_into_a_leaf(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    own = tmp_path / "user.slice" / "app.scope"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.procs").write_text("4242\n")
    parent = v2_parent(tmp_path, "/user.slice/app.scope", is_root=False)
    assert parent == own
    assert (own / "unet-grader" / "cgroup.procs").read_text() == "4242"
    assert (own / "cgroup.subtree_control").exists()
    # A worker started from inside the leaf uses the same parent.
    assert v2_parent(tmp_path, "/user.slice/app.scope/unet-grader", is_root=False) == own


def test_a_v2_machine_without_the_memory_controller_is_refused(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu pids\n")
    with pytest.raises(CgroupsUnavailable) as err:
        v2_parent(tmp_path, "/", is_root=True)
    assert "memory" in err.value.what


@pytest.fixture
def real_group():
    try:
        group = open_group(LIMITS)
    except (CgroupsUnavailable, OSError) as err:
        pytest.skip(f"no control groups on this machine: {err}")
    yield group
    group.remove()


def test_on_this_machine_a_fork_storm_stops_at_the_limit_and_nothing_survives(real_group):
    storm = ("import os, time\nfor _ in range(200):\n    try:\n        os.fork()\n    except OSError:\n"
             "        break\ntime.sleep(60)")
    process = subprocess.Popen([*real_group.enter_prefix(), sys.executable, "-c", storm])
    deadline = time.monotonic() + 30
    while real_group.usage().process_limit_hits == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert real_group.usage().process_limit_hits > 0
    assert len(real_group.pids()) <= LIMITS.processes
    real_group.remove()
    assert process.wait(timeout=10) < 0 and all(not Path(d).exists() for d in real_group.dirs.values())


def test_a_group_handed_to_an_account_holds_what_it_starts_and_is_removed_with_it(user):
    """As on the hub: root hands the grader account a group; what it starts there may make groups below."""
    entry, name = pwd.getpwnam(user), f"unet-test-{user}"
    try:
        starts = [str(path) for path in delegate(name, entry.pw_uid, entry.pw_gid)]
    except (CgroupsUnavailable, OSError) as err:
        pytest.skip(f"no control groups to hand over on this machine: {err}")
    kernel = Path(starts[0]).parent / "kernel"
    try:
        sleeper = subprocess.Popen(as_account_command(user, starts, ["/bin/sh", "-c", 'mkdir "$0" && echo made '
                                                                     "&& exec sleep 60", str(kernel)]),
                                   stdout=subprocess.PIPE, text=True)
        assert sleeper.stdout is not None and sleeper.stdout.readline().strip() == "made"
        assert kernel.stat().st_uid == entry.pw_uid
        status = Path(f"/proc/{sleeper.pid}/status").read_text()
        assert f"Uid:\t{entry.pw_uid}\t" in status
        assert f"/{name}" in Path(f"/proc/{sleeper.pid}/cgroup").read_text()
    finally:
        remove_delegated(name, starts)
    assert sleeper.wait(timeout=10) < 0
    handed = {folder for start in starts for folder in Path(start).parents if folder.name == name}
    assert handed and not any(folder.exists() for folder in handed)
