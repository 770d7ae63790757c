"""Run a student's kernel inside bubblewrap, with resource limits.

The kernel sees only what it needs to run the notebook: the system's programs
and libraries, the Python installation, a private in-memory copy of the
student's folder (its only writable place besides a small /tmp and home), and
the course's data read-only.  It has no network, so it talks to the grader
through Unix sockets (ZeroMQ's ``ipc`` transport) in a folder shared with the
host.  ``prlimit`` (util-linux) caps each process's CPU time, address space,
file size and open files; the kernel's control group (``cgroups``) caps all
of the submission's processes together.

The course folder, with the reference solutions, the hidden checks, the
gradebook and every other submission, is not mounted at all.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Instance

from grader.engine.cgroups import CgroupsUnavailable, GroupLimits, KernelGroup, open_group
from grader.engine.private_api.jupyter_client_api import LaunchLogsTo
from grader.engine.sandbox_fixes import fix_for
from grader.engine.submission_limits import LimitWatch

# What the kernel finds inside the sandbox.  Its folder and home share one
# in-memory scratch space of Limits.scratch_bytes; the student's files are
# copied into it from a read-only view of the grader's copy, so nothing the
# kernel writes reaches the machine's disk.
SCRATCH = "/sandbox/scratch"
WORK = f"{SCRATCH}/work"
HOME = f"{SCRATCH}/home"
SUBMITTED = "/sandbox/submitted"
DATA = "/sandbox/data"
_COPY_IN = f'cp -R -P --preserve=mode,timestamps {SUBMITTED}/. {WORK}/ && exec "$@"'

# Files from /etc that Python, TensorFlow and matplotlib read; /etc as a whole
# is not mounted (it can hold secrets readable by root).
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "localtime", "passwd", "group", "nsswitch.conf", "hosts", "fonts")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed kernel: each process's (prlimit), and the whole submission's (cgroups)."""

    cpu_seconds: int = 900
    memory_bytes: int = 12 * 2**30
    file_bytes: int = 512 * 2**20
    open_files: int = 4096
    tmp_bytes: int = 1 * 2**30
    # All the submission's processes together.  TensorFlow alone holds about 1 GiB,
    # and both in-memory scratch spaces (the folder, /tmp) full hold 2 GiB more.
    processes: int = 1024
    submission_memory_bytes: int = 4 * 2**30
    cpus: float = 1.0
    submission_cpu_seconds: int = 300
    scratch_bytes: int = 1 * 2**30

    def group_limits(self) -> GroupLimits:
        return GroupLimits(processes=self.processes, memory_bytes=self.submission_memory_bytes, cpus=self.cpus)

    def prlimit(self) -> list[str]:
        return [
            "prlimit",
            f"--cpu={self.cpu_seconds}",
            f"--as={self.memory_bytes}",
            f"--fsize={self.file_bytes}",
            f"--nofile={self.open_files}",
            "--",
        ]


class SandboxUnavailable(RuntimeError):
    """The machine cannot run the sandbox (no bubblewrap, no Linux, or no user namespaces), and the fix."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"What failed: {what}\nHow to fix it: {fix}")


@functools.cache
def check_available() -> None:
    """Raise ``SandboxUnavailable`` with the fix unless the kernel's Python starts in an empty sandbox.

    Run once per process, before any submission: a kernel that then fails to
    start can only be the submission's doing, and it gets 0 with the reason
    instead of every student getting 0 for a broken sandbox.
    """
    if shutil.which("bwrap") is None or shutil.which("prlimit") is None:
        raise SandboxUnavailable("the grading sandbox needs bubblewrap (bwrap) and prlimit, and this machine "
                                 "lacks them.", fix_for(None))
    with tempfile.TemporaryDirectory(prefix="unet-sandbox-check-") as scratch:
        (Path(scratch) / "work").mkdir()
        (Path(scratch) / "ipc").mkdir()
        command = bwrap_command(Path(scratch) / "work", Path(scratch) / "ipc", None, Limits())
        probe = subprocess.run([*command, sys.executable, "-c", "import ipykernel, zmq"],
                               capture_output=True, text=True, check=False, timeout=120)
    if probe.returncode != 0:
        said = probe.stderr.strip()[-500:] or f"exit status {probe.returncode}"
        raise SandboxUnavailable(f"the grading sandbox does not start: {said}", fix_for(said))


@functools.cache
def check_limits_available() -> None:
    """Raise ``SandboxUnavailable`` with the fix unless a kernel can get its own control group with limits."""
    try:
        group = open_group(Limits().group_limits())
    except CgroupsUnavailable as err:
        raise SandboxUnavailable(f"whole-submission limits (control groups) cannot be set: {err.what}",
                                 err.fix) from None
    except OSError as err:
        raise SandboxUnavailable(f"whole-submission limits (control groups) cannot be set: {err}",
                                 "--SandboxedExecute.whole_submission_limits=False grades without them.") from None
    try:
        entered = subprocess.run([*group.enter_prefix(), "true"], capture_output=True, text=True, check=False)
    finally:
        group.remove()
    if entered.returncode != 0:
        raise SandboxUnavailable(f"a process cannot enter its control group: {entered.stderr.strip()[-300:]}",
                                 "--SandboxedExecute.whole_submission_limits=False grades without them.")


def _system_mounts() -> list[str]:
    args: list[str] = []
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        path = Path(top)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), top]
        elif path.exists():
            args += ["--ro-bind", top, top]
    for name in _ETC_FILES:
        if Path("/etc", name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    # The interpreter and its packages: the base installation and the venv.
    for prefix in {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.prefix)}:
        args += ["--ro-bind", str(prefix), str(prefix)]
    return args


def bwrap_command(workdir: Path, ipc_dir: Path, data_dir: Path | None, limits: Limits) -> list[str]:
    """The command prefix that starts a program inside the sandbox.

    ``workdir`` is copied into the writable ``WORK`` before the program
    starts; ``ipc_dir`` is shared at its own path because the connection file
    names the sockets there.
    """
    args = [
        *limits.prlimit(),
        "bwrap",
        "--proc", "/proc",
        "--dev", "/dev",
        # The empty /tmp comes before the binds: the Python installation may
        # itself live under /tmp (a CI clone), and a later mount would hide it.
        "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
        "--size", str(limits.scratch_bytes), "--tmpfs", SCRATCH,
        "--dir", WORK, "--dir", HOME,
        *_system_mounts(),
        "--ro-bind", str(workdir), SUBMITTED,
        "--bind", str(ipc_dir), str(ipc_dir),
        "--unshare-all",
        "--die-with-parent",
        "--cap-drop", "ALL",
        "--clearenv",
        "--setenv", "HOME", HOME,
        "--setenv", "PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "--setenv", "MPLCONFIGDIR", "/tmp/matplotlib",
        "--setenv", "TF_CPP_MIN_LOG_LEVEL", "3",
        "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
        # The student's folder is not on sys.path while the kernel starts, so a
        # handed-in file named like a module (ipykernel_launcher.py,
        # sitecustomize.py) cannot stop the kernel; IPython adds it afterwards.
        "--setenv", "PYTHONSAFEPATH", "1",
        "--setenv", "NBGRADER_EXECUTION", os.environ.get("NBGRADER_EXECUTION", "autograde"),
        "--chdir", WORK,
    ]
    if data_dir is not None:
        args += ["--ro-bind", str(data_dir), DATA, "--setenv", "CARLA_DATA_DIR", DATA]
    return args + ["--", "/bin/sh", "-c", _COPY_IN, "copy-in"]


class SandboxedKernelManager(LaunchLogsTo, AsyncKernelManager):
    """A kernel manager whose kernel runs under ``bwrap_command``.

    It owns a scratch folder: the copy of the student's folder that the kernel
    may change, and the sockets.  ``cleanup_scratch`` removes it.  The
    kernel's own output (ipykernel's banner, crash messages) goes to
    ``kernel_log``, not into nbgrader's log.
    """

    scratch = Instance(Path, allow_none=True)
    carla_dir = Instance(Path, allow_none=True)
    limits = Instance(Limits, args=())
    # The kernel's control group and what it hit; None when grading runs without whole-submission limits.
    group = Instance(KernelGroup, allow_none=True)
    watch = Instance(LimitWatch, allow_none=True)

    def prepare(self, notebook_dir: Path, whole_submission_limits: bool = True) -> None:
        """Copy ``notebook_dir`` into a fresh scratch folder, put the sockets there, and make the control group."""
        self.scratch = Path(tempfile.mkdtemp(prefix="unet-sandbox-"))
        # Links are copied as links: inside the sandbox they point nowhere.
        shutil.copytree(notebook_dir, self.scratch / "work", symlinks=True)
        if whole_submission_limits:
            try:
                self.group = open_group(self.limits.group_limits())
            except BaseException:
                self.cleanup_scratch()
                raise
            self.watch = LimitWatch(self.group, self.limits, WORK)
        (self.scratch / "ipc").mkdir()
        self.transport = "ipc"
        self.ip = str(self.scratch / "ipc" / "kernel")
        self.connection_file = str(self.scratch / "ipc" / "connection.json")
        # A signal to the process group cannot reach into the sandbox's own
        # session reliably; ipykernel interrupts itself on an interrupt_request.
        assert self.kernel_spec is not None, f"no kernel spec named {self.kernel_name!r}"
        self.kernel_spec.interrupt_mode = "message"

    @property
    def kernel_log(self) -> Path:
        """Where the kernel process's own stdout and stderr go (not the notebook's output)."""
        assert self.scratch is not None
        return self.scratch / "kernel.log"

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        assert self.scratch is not None, "call prepare() before starting the kernel"
        command = super().format_kernel_cmd(extra_arguments) + [
            # Once started, the kernel imports from the notebook's folder as usual (see PYTHONSAFEPATH).
            "--IPKernelApp.exec_lines=__import__('sys').path.insert(0, '')",
        ]
        enter = self.group.enter_prefix() if self.group is not None else []
        return enter + bwrap_command(self.scratch / "work", self.scratch / "ipc", self.carla_dir, self.limits) + command

    def limit_hit(self) -> str | None:
        """The whole-submission limit the kernel's processes reached since the last call, in words, or None."""
        return self.watch.hit() if self.watch is not None else None

    def cleanup_scratch(self) -> None:
        """Kill whatever the kernel left running, remove its control group and its scratch folder."""
        if self.watch is not None:
            self.watch.stop()
        if self.group is not None:
            self.group.remove()
            self.group = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None
