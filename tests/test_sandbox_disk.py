"""Nothing a sandboxed kernel writes reaches the host's disk, and killed gradings leave nothing behind for long.

A real kernel fills every place it can write (``tests/sandbox_fill.py``), as
root and as a normal user: it can write only to the sandbox's sized
in-memory folders, no more than their sizes together, and the grader's
scratch folder and the host's temporary folder stay empty of it.  The
scratch folders and control groups of graders that were killed are removed
by the next sweep; those of live graders, in other processes, are not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from grader.engine import cgroups, leftovers
from grader.engine.sandbox import CONNECTION_FILE, HOME, IPC, SCRATCH, WORK, check_limits_available
from hub.accounts import as_account_command

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

FILL = Path(__file__).with_name("sandbox_fill.py")
REPO = Path(__file__).resolve().parent.parent
# A Python that a normal user may run, with the grader's packages: the hub's (make test-hub builds it).
HUB_PYTHON = Path(os.environ.get("UNET_HUB_ENV", "/srv/unet-hub/env")) / "bin" / "python"
SIZED = {SCRATCH, WORK, HOME, "/tmp", "/dev/shm", IPC}


def _check(report: dict) -> None:
    written = report["written"]
    assert set(written) <= SIZED, f"the kernel wrote outside its sized folders: {sorted(set(written) - SIZED)}"
    assert sum(written.values()) <= report["writable_bytes"]
    # The cell really filled them: the scratch space, /tmp and /dev/shm, nearly to the brim.
    assert sum(written.values()) > 0.9 * (report["writable_bytes"] - 2**20), written
    assert report["host_files"] == [], "a file the kernel wrote is on the host's disk"
    assert report["host_scratch_bytes"] < 2**20, "the grader's scratch folder grew with what the kernel wrote"
    assert report["kernel_output_chars"] <= 64 * 1024, "the kernel's own output is kept whole"


def _submission(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    return work


@needs_bwrap
def test_a_kernel_as_root_fills_only_its_sized_in_memory_folders(tmp_path):
    try:
        check_limits_available()
        limits = ["--limits"]
    except RuntimeError:
        limits = []
    run = subprocess.run([sys.executable, str(FILL), str(_submission(tmp_path)), *limits],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    _check(json.loads(run.stdout.splitlines()[-1]))


@needs_bwrap
def test_a_kernel_of_a_normal_user_fills_only_its_sized_in_memory_folders(user):
    if not HUB_PYTHON.exists():
        pytest.skip(f"no Python a normal user may run at {HUB_PYTHON} (make test-hub builds it)")
    # pytest's own temporary folders are closed to other users.
    shared = Path(tempfile.mkdtemp(prefix="unet-fill-test-"))
    try:
        shared.chmod(0o755)
        run = subprocess.run(as_account_command(user, [], [str(HUB_PYTHON), str(FILL), str(_submission(shared))]),
                             capture_output=True, text=True, timeout=600, env={"PATH": "/usr/bin:/bin"}, cwd="/")
    finally:
        shutil.rmtree(shared)
    assert run.returncode == 0, run.stderr[-3000:]
    _check(json.loads(run.stdout.splitlines()[-1]))


@needs_bwrap
def test_the_connection_file_is_read_only_inside(tmp_path):
    """The kernel reads its connection file but cannot grow or replace it."""
    from grader.engine.sandbox import Limits, bwrap_command

    connection = tmp_path / "connection.json"
    connection.write_text("{}")
    code = (f"import os\ntry:\n    open({CONNECTION_FILE!r}, 'a').write('x' * 100)\nexcept OSError as e:\n"
            f"    print('refused', e.errno)\nprint(open({CONNECTION_FILE!r}).read())")
    command = bwrap_command(_submission(tmp_path), connection, None, Limits()) + [sys.executable, "-c", code]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["refused", "30", "{}"], run.stderr
    assert connection.read_text() == "{}"


# -- leftovers of killed gradings ----------------------------------------------------------------------

HOLDER = """
import sys, time
sys.path.insert(0, {repo!r})
from grader.engine import cgroups, leftovers
folder, _ = leftovers.new_scratch()
(folder / "work").mkdir()
(folder / "work" / "submission.ipynb").write_text("a copy of a submission")
line = str(folder)
if {group}:
    import subprocess
    group = cgroups.open_group(cgroups.GroupLimits(processes=16, memory_bytes=2**28, cpus=0.5))
    sleeper = subprocess.Popen([*group.enter_prefix(), "sleep", "611.5"])
    line += " " + " ".join(str(d) for d in dict.fromkeys(group.dirs.values())) + " " + str(sleeper.pid)
print(line, flush=True)
time.sleep(600)
"""


def _grader(tmp_path: Path, group: bool) -> tuple[subprocess.Popen, list[str]]:
    """A grader process holding a scratch folder (and a kernel group with a process in it), and what it holds."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER.format(repo=str(REPO), group=group)],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert process.stdout is not None
    return process, process.stdout.readline().split()


def test_a_killed_gradings_scratch_folder_is_removed_and_a_live_ones_kept(tmp_path, monkeypatch):
    killed, (killed_folder,) = _grader(tmp_path, group=False)
    live, (live_folder,) = _grader(tmp_path, group=False)
    older = tmp_path / "unet-sandbox-oldstyle"  # an older grader's name: never touched
    older.mkdir()
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert leftovers.sweep_scratch(tmp_path) == [], "folders younger than the grace period stay"
        monkeypatch.setattr(leftovers, "GRACE_SECONDS", 0.0)
        assert leftovers.sweep_scratch(tmp_path) == [Path(killed_folder)]
        assert not Path(killed_folder).exists()
        assert (Path(live_folder) / "work" / "submission.ipynb").exists()
        assert older.exists()
    finally:
        live.kill()
        live.wait()
    assert leftovers.sweep_scratch(tmp_path) == [Path(live_folder)]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


# Serial: its sweep, with no grace period, would take the groups any other test on the machine leaves.
@pytest.mark.serial
def test_a_killed_graders_kernel_group_is_removed_with_its_processes_and_a_live_ones_kept(tmp_path, monkeypatch):
    try:
        check_limits_available()
    except RuntimeError as err:
        pytest.skip(f"no control groups here: {err}")
    killed, (_, *killed_groups, killed_sleeper) = _grader(tmp_path, group=True)
    live, (_, *live_groups, live_sleeper) = _grader(tmp_path, group=True)
    parents = list(dict.fromkeys(Path(g).parent for g in killed_groups))
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert _alive(int(killed_sleeper)), "a killed grader's kernel processes outlive it"
        monkeypatch.setattr(leftovers, "GRACE_SECONDS", 0.0)
        assert sorted(cgroups.sweep_groups(parents)) == sorted(Path(g) for g in killed_groups)
        assert not _alive(int(killed_sleeper))
        assert all(Path(g).is_dir() for g in live_groups) and _alive(int(live_sleeper))
    finally:
        live.kill()
        live.wait()
    assert sorted(cgroups.sweep_groups(parents)) == sorted(Path(g) for g in live_groups)
    assert not _alive(int(live_sleeper))


def test_only_a_kernels_group_is_locked_for_the_sweep(tmp_path):
    """A group made under a name of its own (a student's server on the hub) is never the sweep's, nor holds a lock."""
    limits = cgroups.GroupLimits(processes=8, memory_bytes=2**28, cpus=0.5)
    named = cgroups.V2Group.create(tmp_path, limits, name="unet-hub-server-ann")
    kernel = cgroups.V2Group.create(tmp_path, limits)
    assert named.locks == [] and len(kernel.locks) == 1
    assert leftovers.take_abandoned(kernel.dirs["procs"], now=float("inf")) is None, "its lock is held"
    leftovers.release(kernel.locks.pop())
    lock = leftovers.take_abandoned(kernel.dirs["procs"], now=float("inf"))
    assert lock is not None, "a kernel group whose grader is gone is free to take"
    leftovers.release(lock)


def test_a_grader_sweeps_only_its_own_accounts_leftovers(user, monkeypatch):
    """Another account's scratch folder is its own business (root's sweep leaves it); that account's sweep takes it."""
    if not HUB_PYTHON.exists():
        pytest.skip(f"no Python a normal user may run at {HUB_PYTHON} (make test-hub builds it)")
    shared = Path(tempfile.mkdtemp(prefix="unet-sweep-test-"))
    shared.chmod(0o1777)
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(shared), "PYTHONPATH": str(REPO)}

    def as_user(code: str) -> str:
        run = subprocess.run(as_account_command(user, [], [str(HUB_PYTHON), "-c", code]), capture_output=True,
                             text=True, timeout=120, env=env, cwd="/")
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout.strip()

    try:
        # The account's grader ends without removing its folder, as a killed one would.
        left = Path(as_user("from grader.engine import leftovers; print(leftovers.new_scratch()[0])"))
        monkeypatch.setattr(leftovers, "GRACE_SECONDS", 0.0)
        assert left.is_dir() and leftovers.sweep_scratch(shared) == [] and left.is_dir()
        swept = as_user("from grader.engine import leftovers; leftovers.GRACE_SECONDS = 0; "
                        f"print(leftovers.sweep_scratch(__import__('pathlib').Path({str(shared)!r})))")
        assert str(left) in swept and not left.exists()
    finally:
        shutil.rmtree(shared)
