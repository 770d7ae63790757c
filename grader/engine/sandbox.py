"""Run a student's kernel inside bubblewrap, with resource limits.

The kernel sees only what it needs to run the notebook: the system's programs
and libraries, the Python installation, a private in-memory copy of the
student's folder, and the course's data read-only.  Everything it may write
is an in-memory folder of a fixed size: the copy of the folder with its home
(``Limits.scratch_bytes``), ``/tmp`` (``tmp_bytes``), ``/dev/shm``
(``shm_bytes``) and the folder of its sockets (``ipc_bytes``); the rest of
its file system is read-only, and nothing it writes reaches the machine's
disk.  It has no network, so it talks to the grader through Unix sockets
(ZeroMQ's ``ipc`` transport) in that socket folder, which the grader opens
once, without following links, and connects to only through what it opened
(``kernel_sockets``); the connection file is handed in read-only.
``prlimit`` (util-linux) caps each process's CPU time, address space, file
size and open files; the kernel's control group (``cgroups``) caps all of
the submission's processes together.

The course folder, with the reference solutions, the hidden checks, the
gradebook and every other submission, is not mounted at all.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Instance, default

from grader.engine import leftovers
from grader.engine.cgroups import CgroupsUnavailable, GroupLimits, KernelGroup, open_group, sweep_groups
from grader.engine.kernel_sockets import PinsSockets, WatchedBlockingKernelClient, WatchedKernelClient
from grader.engine.private_api.jupyter_client_api import KeepsKernelOutput
from grader.engine.sandbox_fixes import fix_for
from grader.engine.submission_limits import LimitWatch
from grader.engine.template import START_SECONDS as TEMPLATE_START_SECONDS
from grader.engine.template import (
    ForkedKernel,
    KernelTemplate,
    TemplateUnavailable,
    default_on,
    enter_group,
    forget,
    start_ahead,
    template_for,
)

# What the kernel finds inside the sandbox.  Its folder and home share one
# in-memory scratch space of Limits.scratch_bytes; the student's files are
# copied into it from a read-only view of the grader's copy.
SCRATCH = "/sandbox/scratch"
WORK = f"{SCRATCH}/work"
HOME = f"{SCRATCH}/home"
SUBMITTED = "/sandbox/submitted"
DATA = "/sandbox/data"
# The kernel's sockets, in a tiny in-memory folder of the sandbox's own, and its connection file (read-only).
IPC = "/sandbox/ipc"
CONNECTION_FILE = "/sandbox/connection.json"
# A kernel forked from the template writes its connection file into an in-memory folder, then makes it read-only.
FORKED_CONNECTION_DIR = "/sandbox/connection"
FORKED_CONNECTION_FILE = f"{FORKED_CONNECTION_DIR}/kernel.json"
FORKED_CONNECTION_BYTES = 64 * 1024
# What the template program is: its own text, run with ``python -c`` (the repository is not mounted there).
_TEMPLATE_PROGRAM = Path(__file__).with_name("template_child.py")
# How long bubblewrap may take to report the sandbox's first process.
START_SECONDS = 60
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
    # POSIX shared memory and semaphores (multiprocessing), and the sockets: small, but writable.
    shm_bytes: int = 64 * 2**20
    ipc_bytes: int = 1 * 2**20
    # All the submission's processes together.  TensorFlow alone holds about 1 GiB,
    # and the in-memory scratch spaces (the folder, /tmp, ...) full hold 2 GiB more.
    processes: int = 1024
    submission_memory_bytes: int = 4 * 2**30
    cpus: float = 1.0
    submission_cpu_seconds: int = 300
    scratch_bytes: int = 1 * 2**30

    @property
    def writable_bytes(self) -> int:
        """All the kernel may write, in every writable place of its sandbox together."""
        return self.scratch_bytes + self.tmp_bytes + self.shm_bytes + self.ipc_bytes

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


# Whether kernels run under bubblewrap unless the course says otherwise (``SandboxedExecute.sandbox``).
SANDBOX_DEFAULT = True


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
        command = bwrap_command(Path(scratch) / "work", None, None, Limits())
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


def kernel_env(data_dir: Path | None) -> dict[str, str]:
    """The kernel's whole environment (nothing of the grader's)."""
    env = {
        "HOME": HOME,
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONDONTWRITEBYTECODE": "1",
        # The student's folder is not on sys.path while the kernel starts, so a
        # handed-in file named like a module (ipykernel_launcher.py,
        # sitecustomize.py) cannot stop the kernel; IPython adds it afterwards.
        "PYTHONSAFEPATH": "1",
        "NBGRADER_EXECUTION": os.environ.get("NBGRADER_EXECUTION", "autograde"),
    }
    if data_dir is not None:
        env["CARLA_DATA_DIR"] = DATA
    return env


def _setenv(env: dict[str, str]) -> list[str]:
    return [arg for name, value in env.items() for arg in ("--setenv", name, value)]


def bwrap_command(workdir: Path, connection_file: Path | None, data_dir: Path | None, limits: Limits,
                  info_fd: int | None = None) -> list[str]:
    """The command prefix that starts a program inside the sandbox.

    ``workdir`` is copied into the writable ``WORK`` before the program
    starts; ``connection_file`` is shown read-only at ``CONNECTION_FILE``.
    With ``info_fd``, bubblewrap writes the sandbox's first process id there
    (JSON, ``child-pid``).
    """
    args = [
        *limits.prlimit(),
        "bwrap",
        "--proc", "/proc",
        "--dev", "/dev",
        # The empty /tmp comes before the binds: the Python installation may
        # itself live under /tmp (a CI clone), and a later mount would hide it.
        "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
        "--size", str(limits.shm_bytes), "--tmpfs", "/dev/shm",
        "--size", str(limits.scratch_bytes), "--tmpfs", SCRATCH,
        "--dir", WORK, "--dir", HOME,
        "--size", str(limits.ipc_bytes), "--tmpfs", IPC,
        *_system_mounts(),
        "--ro-bind", str(workdir), SUBMITTED,
    ]
    if connection_file is not None:
        args += ["--ro-bind", str(connection_file), CONNECTION_FILE]
    if data_dir is not None:
        args += ["--ro-bind", str(data_dir), DATA, "--setenv", "CARLA_DATA_DIR", DATA]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    return args + [
        # The sandbox's root and /dev are in-memory folders of no fixed size: read-only
        # once everything is mounted, so the sized ones above are all the kernel can fill.
        "--remount-ro", "/dev",
        "--remount-ro", "/",
        "--unshare-all",
        "--die-with-parent",
        "--cap-drop", "ALL",
        "--clearenv",
        *_setenv(kernel_env(None)),
        "--chdir", WORK,
        "--", "/bin/sh", "-c", _COPY_IN, "copy-in",
    ]


def template_command(data_dir: Path | None) -> list[str]:
    """The command that starts a kernel template (``template``): the kernel's read-only view and nothing else.

    The template keeps, in a user namespace of its own, the two capabilities
    its forks need to make their sandboxes (namespaces and mounts, and
    dropping capabilities); its kernels drop them before student code runs.
    It sees no course file, submission or connection file; the data folder,
    which every kernel sees read-only, is there read-only too.
    """
    args = [
        "bwrap",
        "--unshare-user", "--unshare-ipc", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
        "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_SETPCAP",
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(16 * 2**20), "--tmpfs", "/tmp",
        "--size", str(2**20), "--tmpfs", "/dev/shm",
        *_system_mounts(),
        "--dir", SCRATCH, "--dir", IPC, "--dir", FORKED_CONNECTION_DIR,
    ]
    if data_dir is not None:
        args += ["--ro-bind", str(data_dir), DATA]
    return args + [
        "--remount-ro", "/dev",
        "--remount-ro", "/",
        "--die-with-parent",
        "--clearenv",
        *_setenv(kernel_env(None)),
        "--chdir", "/",
        "--", sys.executable, "-c", _TEMPLATE_PROGRAM.read_text(),
    ]


def find_data(notebook_dir: Path) -> Path | None:
    """The course's data folder, found the way the notebook finds it."""
    import carla_data

    try:
        return carla_data.find_data_dir(notebook_dir).resolve()
    except Exception:  # noqa: BLE001 - no data: the notebook reports it in its own cell
        return None


def ready_template(data_dir: Path | None, log: Any, timeout: float = TEMPLATE_START_SECONDS) -> None:
    """Have this process's kernel template for ``data_dir`` running (started now if need be).

    Called before a submission's time budget starts: the template's own
    start-up (one import of everything) is the grader's cost, never a
    student's.  Where no template can start (within ``timeout`` seconds),
    the kernels start cold later and the first of them logs why.
    """
    try:
        _template(data_dir, log, timeout)
    except TemplateUnavailable:
        pass


def start_template_ahead(data_dir: Path | None) -> bool:
    """Start this process's kernel template for ``data_dir`` without waiting (``ready_template`` takes it over).

    False when there was nothing to start: this process has that template already, or one failed lately.
    """
    return start_ahead((str(data_dir),), lambda: template_command(data_dir))


def _template(data_dir: Path | None, log: Any, timeout: float = TEMPLATE_START_SECONDS) -> KernelTemplate:
    return template_for((str(data_dir),), lambda: template_command(data_dir), log, timeout)


def fork_request(limits: Limits, data_dir: Path | None, kernel_cmd: list[str]) -> dict[str, Any]:
    """What the template's warden needs to build one kernel's sandbox: the same view and limits as bwrap_command."""
    if kernel_cmd[1:3] != ["-m", "ipykernel_launcher"]:
        raise TemplateUnavailable(f"the kernel spec does not start ipykernel_launcher ({kernel_cmd[:3]})")
    launcher = importlib.util.find_spec("ipykernel_launcher")
    return {
        "tmpfs": [[SCRATCH, limits.scratch_bytes], ["/tmp", limits.tmp_bytes], ["/dev/shm", limits.shm_bytes],
                  [IPC, limits.ipc_bytes], [FORKED_CONNECTION_DIR, FORKED_CONNECTION_BYTES]],
        "dirs": [WORK, HOME],
        "rlimits": {"RLIMIT_CPU": limits.cpu_seconds, "RLIMIT_AS": limits.memory_bytes,
                    "RLIMIT_FSIZE": limits.file_bytes, "RLIMIT_NOFILE": limits.open_files},
        "cwd": WORK,
        "env": kernel_env(data_dir),
        "connection_file": FORKED_CONNECTION_FILE,
        "launcher": launcher.origin if launcher is not None else "ipykernel_launcher",
        "args": kernel_cmd[3:],
    }


def sweep_leftovers(with_groups: bool) -> None:
    """Remove what gradings killed half-way left on this machine: scratch folders, and kernel groups."""
    leftovers.sweep_scratch()
    if with_groups:
        try:
            sweep_groups()
        except (CgroupsUnavailable, OSError):
            pass  # no groups here: opening one says why, with the fix


def sandbox_pid(info: int, timeout: float = START_SECONDS) -> int | None:
    """The sandbox's first process, as bubblewrap reports it on the pipe ``info``; None if it never does."""
    text, deadline = b"", time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0 and select.select([info], [], [], left)[0]:
        chunk = os.read(info, 4096)
        text += chunk
        try:
            return int(json.loads(text)["child-pid"])
        except (ValueError, KeyError, TypeError):
            if not chunk:
                return None  # bubblewrap ended before it made the sandbox
    return None


class SandboxedKernelManager(PinsSockets, KeepsKernelOutput, AsyncKernelManager):
    """A kernel manager whose kernel runs under ``bwrap_command``.

    It owns a scratch folder, locked while it lives (``leftovers``): the
    grader's copy of the student's folder and the connection file.
    ``cleanup_scratch`` removes it.  The kernel's own output (ipykernel's
    banner, crash messages) is kept in memory, its end only
    (``kernel_output``), not written anywhere.  It and its clients connect
    only to the kernel's sockets as first made (``kernel_sockets``).
    """

    scratch = Instance(Path, allow_none=True)
    carla_dir = Instance(Path, allow_none=True)
    limits = Instance(Limits, args=())
    # The kernel's control group and what it hit; None when grading runs without whole-submission limits.
    group = Instance(KernelGroup, allow_none=True)
    watch = Instance(LimitWatch, allow_none=True)
    # Fork the kernel from this process's kernel template (``template``) rather than start it cold.
    use_template = Bool(default_on())
    _lock: int | None = None
    _info: tuple[int, int] | None = None
    _plain_cmd: list[str] = []
    _forked: ForkedKernel | None = None

    @default("client_factory")
    def _pinned_client(self) -> type:
        return WatchedKernelClient

    @default("blocking_class")
    def _pinned_blocking_client(self) -> type:
        return WatchedBlockingKernelClient

    def prepare(self, notebook_dir: Path, whole_submission_limits: bool = True) -> None:
        """Copy ``notebook_dir`` into a fresh scratch folder, write the connection there, make the control group.

        What killed gradings left behind goes first.
        """
        sweep_leftovers(whole_submission_limits)
        self.scratch, self._lock = leftovers.new_scratch()
        # Links are copied as links: inside the sandbox they point nowhere.
        shutil.copytree(notebook_dir, self.scratch / "work", symlinks=True)
        if whole_submission_limits:
            try:
                self.group = open_group(self.limits.group_limits())
            except BaseException:
                self.cleanup_scratch()
                raise
            self.watch = LimitWatch(self.group, self.limits, WORK)
        # The connection file names the sockets as the kernel sees them; the grader's
        # own side connects through the sockets it pinned (``before_connecting``).
        self.transport = "ipc"
        self.ip = f"{IPC}/kernel"
        self.socket_folder = IPC
        self.connection_file = str(self.scratch / "connection.json")
        # A signal to the process group cannot reach into the sandbox's own
        # session reliably; ipykernel interrupts itself on an interrupt_request.
        assert self.kernel_spec is not None, f"no kernel spec named {self.kernel_name!r}"
        self.kernel_spec.interrupt_mode = "message"

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        assert self.scratch is not None, "call prepare() before starting the kernel"
        self._plain_cmd = super().format_kernel_cmd(extra_arguments)
        # With the template, the kernel is forked at launch (``launch_process``) and this command is not run.
        return self._plain_cmd if self.use_template else self._cold_command()

    def _inside_cmd(self, connection_file: str) -> list[str]:
        """The kernel's command as it runs in the sandbox, where the connection file is ``connection_file``."""
        host_file = os.path.realpath(self.connection_file)
        command = [connection_file if arg == host_file else arg for arg in self._plain_cmd]
        # Once started, the kernel imports from the notebook's folder as usual (see PYTHONSAFEPATH).
        return [*command, "--IPKernelApp.exec_lines=__import__('sys').path.insert(0, '')"]

    def _cold_command(self) -> list[str]:
        """The command that starts the kernel in a sandbox of its own from nothing (bubblewrap, then Python)."""
        assert self.scratch is not None
        self._close_info()
        self._info = os.pipe()
        enter = self.group.enter_prefix() if self.group is not None else []
        return enter + bwrap_command(self.scratch / "work", Path(os.path.realpath(self.connection_file)),
                                     self.carla_dir, self.limits, info_fd=self._info[1]) + \
            self._inside_cmd(CONNECTION_FILE)

    def launch_process(self, kernel_cmd: list[str]) -> tuple[ForkedKernel | None, list[str]]:
        """A kernel forked from the template, or the command that starts one cold (one log line says why)."""
        if not self.use_template:
            return None, kernel_cmd
        try:
            self._forked = self._fork_from_template()
            return self._forked, kernel_cmd
        except TemplateUnavailable as err:
            self.log.warning("Kernel template not used, the kernel starts cold: %s", err)
            return None, self._cold_command()

    def _fork_from_template(self) -> ForkedKernel:
        assert self.scratch is not None
        request = fork_request(self.limits, self.carla_dir, self._inside_cmd(FORKED_CONNECTION_FILE))
        template = _template(self.carla_dir, self.log)
        try:
            return template.fork(request, Path(self.connection_file).read_text(), self.scratch / "work",
                                 enter_group(self.group))
        except TemplateUnavailable:
            forget(template)
            raise
        except OSError as err:
            forget(template)
            raise TemplateUnavailable(f"the forked kernel could not be set up ({err})") from None

    def popen_options(self) -> dict[str, Any]:
        assert self._info is not None, "format_kernel_cmd() makes the pipe bubblewrap reports on"
        return {"pass_fds": (self._info[1],)}

    def kernel_launched(self) -> None:
        """Note the sandbox's first process, as bubblewrap or the kernel template reports it."""
        self.sandbox_process = self._forked.pid if self._forked is not None else self._bwrap_sandbox_pid()

    def _bwrap_sandbox_pid(self) -> int:
        assert self._info is not None
        os.close(self._info[1])
        self._info = (self._info[0], -1)
        try:
            pid = sandbox_pid(self._info[0])
        finally:
            self._close_info()
        if pid is None:
            said = self.kernel_output(wait=5).strip()[-500:]
            raise RuntimeError(f"the sandbox did not start: {said or 'no message'}")
        return pid

    def _close_info(self) -> None:
        for fd in self._info or ():
            if fd >= 0:
                os.close(fd)
        self._info = None

    def limit_hit(self) -> str | None:
        """The whole-submission limit the kernel's processes reached since the last call, in words, or None."""
        return self.watch.hit() if self.watch is not None else None

    def cleanup_scratch(self) -> None:
        """Kill whatever the kernel left running, remove its control group and its scratch folder."""
        self._close_info()
        self._close_pins()
        if self._forked is not None:
            self._forked.release()
            self._forked = None
        if self.watch is not None:
            self.watch.stop()
        if self.group is not None:
            self.group.remove()
            self.group = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None
        leftovers.release(self._lock)
        self._lock = None
