"""Run a student's kernel inside bubblewrap, with resource limits.

The kernel sees only what it needs to run the notebook: the system's programs
and libraries, the Python installation, a private copy of the student's folder
(its only writable place besides a small /tmp and home), and the course's data
read-only.  It has no network, so it talks to the grader through Unix sockets
(ZeroMQ's ``ipc`` transport) in a folder shared with the host.  ``prlimit``
(util-linux) caps CPU time, address space, file size and open files.

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

from grader.engine.private_api.jupyter_client_api import LaunchLogsTo
from grader.engine.sandbox_fixes import fix_for

# What the kernel finds inside the sandbox.
WORK = "/sandbox/work"
DATA = "/sandbox/data"
HOME = "/sandbox/home"

# Files from /etc that Python, TensorFlow and matplotlib read; /etc as a whole
# is not mounted (it can hold secrets readable by root).
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "localtime", "passwd", "group", "nsswitch.conf", "hosts", "fonts")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed kernel."""

    cpu_seconds: int = 900
    memory_bytes: int = 12 * 2**30
    file_bytes: int = 512 * 2**20
    open_files: int = 4096
    tmp_bytes: int = 1 * 2**30

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

    ``workdir`` becomes the writable ``/sandbox/work``; ``ipc_dir`` is shared
    at its own path because the connection file names the sockets there.
    """
    args = [
        *limits.prlimit(),
        "bwrap",
        "--proc", "/proc",
        "--dev", "/dev",
        # The empty /tmp comes before the binds: the Python installation may
        # itself live under /tmp (a CI clone), and a later mount would hide it.
        "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
        "--size", str(limits.tmp_bytes), "--tmpfs", HOME,
        *_system_mounts(),
        "--bind", str(workdir), WORK,
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
    return args + ["--"]


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

    def prepare(self, notebook_dir: Path) -> None:
        """Copy ``notebook_dir`` into a fresh scratch folder and put the sockets there."""
        self.scratch = Path(tempfile.mkdtemp(prefix="unet-sandbox-"))
        # Links are copied as links: inside the sandbox they point nowhere.
        shutil.copytree(notebook_dir, self.scratch / "work", symlinks=True)
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
        return bwrap_command(self.scratch / "work", self.scratch / "ipc", self.carla_dir, self.limits) + command

    def cleanup_scratch(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None
