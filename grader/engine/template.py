"""The kernel template: one process per grader that has imported what kernels need, forked per submission.

Starting TensorFlow, Keras, NumPy, matplotlib and ipykernel takes a kernel
seconds before the first line of a notebook runs.  A grading process keeps
one *template* (``template_child``, run under bubblewrap) that imported them
once and then only waits; each submission's kernel is a fork of it that
enters a sandbox of its own before any student code runs (see
``template_child`` and docs/grading.md).  This module is the grader's side:

- ``template_for`` gives the process's template, started on first use and
  replaced when it is older than the environment or the assignment's modules
  (``fingerprint``), or when it died;
- ``KernelTemplate.fork`` asks it for a kernel, moves the kernel into its
  control group before it goes on, and streams the submission's files to it;
- ``ForkedKernel`` is what jupyter_client holds as the kernel's process.

Whatever fails here raises ``TemplateUnavailable`` with the reason, and the
caller starts the kernel cold as before.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from grader import student_side
from grader.engine.cgroups import KernelGroup

# The assignment's modules (in its folder, grader/student_side.py): what they import, the template imports.
ASSIGNMENT_MODULES = student_side.MODULES
# What every kernel imports, whatever the notebook.
BASE_IMPORTS = ("ipykernel.kernelapp", "ipykernel.ipkernel", "IPython", "numpy", "tensorflow", "keras",
                "matplotlib", "matplotlib.pyplot", "matplotlib_inline.backend_inline")
# How long the template may take to import everything, and a kernel's warden to say hello.
START_SECONDS = 180
HELLO_SECONDS = 30
_UCRED = struct.Struct("iII")
_log = logging.getLogger(__name__)


def default_on() -> bool:
    """Whether kernels are forked from a template unless configured otherwise: yes, but UNET_KERNEL_TEMPLATE=0."""
    return os.environ.get("UNET_KERNEL_TEMPLATE", "1") != "0"


class TemplateUnavailable(RuntimeError):
    """No forked kernel this time; the message says why (one log line), and the kernel starts cold."""


def assignment_imports(root: Path | None = None) -> list[str]:
    """Every module the assignment's modules import, anywhere in them, but each other."""
    root = root or student_side.ASSIGNMENT_DIR
    found: dict[str, None] = {}
    for name in ASSIGNMENT_MODULES:
        path = root / f"{name}.py"
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(dict.fromkeys(alias.name for alias in node.names))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found[node.module] = None
    return [n for n in found if n.split(".")[0] not in ASSIGNMENT_MODULES and n != "__future__"]


def fingerprint(root: Path | None = None) -> str:
    """What a template's imports depend on: the interpreter, every installed package, the assignment's modules.

    Installing, removing or upgrading a package adds or removes a folder in
    site-packages (its ``.dist-info``), which changes the folder's time.
    """
    root = root or student_side.ASSIGNMENT_DIR
    digest = hashlib.sha256()
    places = [Path(sys.executable).resolve(), *(Path(p) for p in sys.path if p.endswith("-packages"))]
    for place in places:
        try:
            digest.update(f"{place}:{place.stat().st_mtime_ns}\n".encode())
        except OSError:
            continue
    for name in ASSIGNMENT_MODULES:
        path = root / f"{name}.py"
        if path.exists():
            digest.update(name.encode() + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _pack(folder: Path, into: int) -> None:
    """Write ``folder`` as a tar stream to the pipe ``into`` (links stay links), then close it."""
    try:
        with os.fdopen(into, "wb") as pipe, tarfile.open(fileobj=pipe, mode="w|") as archive:
            archive.add(folder, arcname=".", recursive=True)
    except (OSError, tarfile.TarError):
        pass  # the warden's end closed: its unpacking says what went wrong on the kernel's output


class ForkedKernel:
    """A forked kernel as ``subprocess.Popen`` shows a process: what jupyter_client polls, signals and waits for.

    ``pid`` is the warden's (in this process's pid namespace), which holds
    the kernel's namespaces; killing it kills the kernel's whole namespace.
    Its exit status is the kernel's, as the warden reports it; a warden
    killed before it could report counts as killed by SIGKILL.
    """

    stdin = None
    stderr = None

    def __init__(self, pid: int, pidfd: int, channel: socket.socket, stdout: IO[bytes]) -> None:
        self.pid, self._pidfd, self._channel, self.stdout = pid, pidfd, channel, stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._pidfd], [], [], 0)[0]:
            self._ended()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._pidfd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            self._ended()
        assert self.returncode is not None
        return self.returncode

    def _ended(self) -> None:
        code = 128 + signal.SIGKILL
        self._channel.setblocking(False)
        try:
            while message := self._channel.recv(256):
                code = int(json.loads(message).get("exit", code))
        except (OSError, ValueError):
            pass
        self.returncode = code
        self.release()

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            try:
                signal.pidfd_send_signal(self._pidfd, signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def release(self) -> None:
        """Let go of the kernel: a warden still running sees its channel close and kills the kernel."""
        self._channel.close()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


class KernelTemplate:
    """One template process, started under bubblewrap, and the channel that asks it for kernels."""

    def __init__(self, command: list[str], imports: list[str], key: str) -> None:
        self.key, self.imports = key, imports
        self._channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        try:
            self.process = subprocess.Popen([*command, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE)
        finally:
            theirs.close()
        self.failed: dict[str, str] = {}
        self.pid = 0
        self._asked = False

    def ask_for_imports(self) -> None:
        """Send the imports: the template starts on them at once, and ``wait_ready`` waits for the answer."""
        if not self._asked:
            self._asked = True
            with contextlib.suppress(OSError):  # gone already: wait_ready says why
                self._channel.send(json.dumps({"imports": self.imports}).encode())

    def wait_ready(self, timeout: float = START_SECONDS) -> None:
        """Have the imports sent and wait until the template has them; raises ``TemplateUnavailable`` if it dies."""
        self.ask_for_imports()
        try:
            if not select.select([self._channel], [], [], timeout)[0]:
                self.close()
                raise TemplateUnavailable(f"the template did not finish its imports within {timeout:g} s")
            message = self._channel.recv(1 << 16)
        except OSError:
            message = b""
        if not message:
            said = self._stderr_end()
            self.close()
            raise TemplateUnavailable(f"the template did not start: {said or 'no message'}")
        ready = json.loads(message)
        self.failed, self.pid = ready.get("failed", {}), int(ready.get("pid", 0))

    def _stderr_end(self) -> str:
        try:
            self.process.wait(timeout=5)
            assert self.process.stderr is not None
            return self.process.stderr.read().decode(errors="replace").strip()[-300:]
        except (subprocess.TimeoutExpired, OSError, ValueError):
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork(self, request: dict[str, Any], connection: str, files: Path,
             enter: Callable[[int], None]) -> ForkedKernel:
        """A kernel forked from the template for ``request``, with ``connection`` and the files of ``files``.

        The connection file and the files go to the kernel's own channel and
        pipe, past the template.

        ``enter`` gets the warden's pid before the warden goes on (it moves it
        into the kernel's control group); an exception from it ends the warden.
        """
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        output_r, output_w = os.pipe()
        files_r, files_w = os.pipe()
        try:
            with self._lock:
                socket.send_fds(self._channel, [json.dumps(request).encode()],
                                [theirs.fileno(), output_w, files_r])
        except OSError as err:
            for fd in (output_r, files_w):
                os.close(fd)
            mine.close()
            raise TemplateUnavailable(f"the template is gone ({err})") from None
        finally:
            theirs.close()
            os.close(output_w)
            os.close(files_r)
        stdout = os.fdopen(output_r, "rb")
        try:
            pid, pidfd = self._hello(mine)
            enter(pid)
            mine.send(json.dumps({"go": True, "connection": connection}).encode())
        except BaseException:
            mine.close()
            os.close(files_w)
            stdout.close()
            raise
        threading.Thread(target=_pack, args=(files, files_w), name="unet-template-files", daemon=True).start()
        kernel = ForkedKernel(pid, pidfd, mine, stdout)
        # The sandbox is whole (mounts, files, connection file) before anyone connects to its sockets.
        if not select.select([mine], [], [], HELLO_SECONDS)[0] or mine.recv(64) != b"mounted":
            said = ""
            try:
                kernel.wait(5)  # a warden that failed is on its way out; what it said is on its output
                said = stdout.read1(4096).decode(errors="replace").strip()[-300:]
            except subprocess.TimeoutExpired:
                pass
            kernel.kill()
            kernel.release()
            stdout.close()
            raise TemplateUnavailable(f"the forked kernel's sandbox was not set up: {said or 'no message'}")
        return kernel

    def _hello(self, channel: socket.socket) -> tuple[int, int]:
        """The warden's pid, from the credentials the kernel attached to its hello, and a pidfd on it."""
        if not select.select([channel], [], [], HELLO_SECONDS)[0]:
            raise TemplateUnavailable(f"the template forked no kernel within {HELLO_SECONDS} s")
        message, ancillary, _, _ = channel.recvmsg(64, socket.CMSG_SPACE(_UCRED.size))
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and message == b"hello":
                pid = _UCRED.unpack(data[:_UCRED.size])[0]
                return pid, os.pidfd_open(pid)
        raise TemplateUnavailable("the template is gone (no kernel came back)")

    def close(self) -> None:
        """Stop the template (kernels forked from it go on; they belong to their own sandboxes)."""
        self._channel.close()
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.process.stderr is not None:
            self.process.stderr.close()


# -- one template per grading process ----------------------------------------------------------

_templates: dict[str, KernelTemplate] = {}
# Templates started ahead (``start_ahead``), importing while this process does other work; each with when it began.
_starting: dict[str, tuple[KernelTemplate, float]] = {}
# Why a template could not start, and when: the kernels after it start cold at once for RETRY_SECONDS
# rather than each waiting for a template that will not come.
_failed: dict[str, tuple[float, str]] = {}
RETRY_SECONDS = 600.0
_registry_lock = threading.Lock()


def template_for(view: tuple[str, ...], command: Callable[[], list[str]],
                 log: logging.Logger | logging.LoggerAdapter = _log, timeout: float = START_SECONDS) -> KernelTemplate:
    """This process's template for the sandbox view ``view``; started (or replaced) when needed.

    ``command`` gives the bubblewrap command that starts a template for that
    view; ``log`` hears when one started; one that has not finished its
    imports within ``timeout`` seconds is given up.  Raises ``TemplateUnavailable``.
    """
    key = json.dumps([fingerprint(), *view])
    with _registry_lock:
        _drop_others(key)
        template = _templates.get(key)
        if template is None:
            failed_at, why = _failed.get(key, (-RETRY_SECONDS, ""))
            if time.monotonic() - failed_at < RETRY_SECONDS:
                raise TemplateUnavailable(f"{why} (at most one try every {RETRY_SECONDS:g} s)")
            pending, started = _starting.pop(key, (None, time.monotonic()))
            try:
                template = pending if pending is not None else KernelTemplate(
                    command(), sorted({*BASE_IMPORTS, *assignment_imports()}), key)
                template.wait_ready(max(0.0, timeout - (time.monotonic() - started)))
            except (TemplateUnavailable, OSError) as err:
                why = str(err) if isinstance(err, TemplateUnavailable) else f"the template did not start ({err})"
                _failed[key] = (time.monotonic(), why)
                raise TemplateUnavailable(why) from None
            _failed.pop(key, None)
            log.info("Kernel template started in %.1f s (pid %d); each kernel is forked from it%s",
                      time.monotonic() - started, template.pid,
                      f" (imports that failed, left to the kernel: {', '.join(template.failed)})"
                      if template.failed else "")
            _templates[key] = template
        return template


def start_ahead(view: tuple[str, ...], command: Callable[[], list[str]]) -> bool:
    """Start this process's template for ``view`` and let it import, without waiting; whether one was started.

    The next ``template_for`` of the same view takes it over (and waits for it
    if it is still importing).  Call it from the thread that will grade: a
    template ends with the thread that started it (bubblewrap's
    ``--die-with-parent`` is Linux's parent-death signal, which follows the
    thread that started the process, not the process).  Never raises: where
    the template cannot start, ``template_for`` finds out and says why.
    """
    key = json.dumps([fingerprint(), *view])
    with _registry_lock:
        _drop_others(key)
        failed_at, _ = _failed.get(key, (-RETRY_SECONDS, ""))
        if key in _templates or key in _starting or time.monotonic() - failed_at < RETRY_SECONDS:
            return False
        try:
            template = KernelTemplate(command(), sorted({*BASE_IMPORTS, *assignment_imports()}), key)
        except (TemplateUnavailable, OSError):
            return False
        template.ask_for_imports()
        _starting[key] = (template, time.monotonic())
        return True


def _drop_others(key: str) -> None:
    """Close the templates of other keys (an older fingerprint, another view) and dead ones (registry lock held)."""
    for old_key, old in list(_templates.items()):
        if old_key != key or not old.alive():
            old.close()
            del _templates[old_key]
    for old_key, (pending, _) in list(_starting.items()):
        if old_key != key:
            pending.close()
            del _starting[old_key]


def _drop_inherited() -> None:
    """In a forked copy of a grading process (a worker): the parent's template is not this process's to use."""
    global _registry_lock
    for inherited in [*_templates.values(), *(pending for pending, _ in _starting.values())]:
        inherited._channel.close()  # this copy's descriptor only; the parent keeps its own
    _templates.clear()
    _starting.clear()
    _failed.clear()
    _registry_lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_drop_inherited)


def forget(template: KernelTemplate) -> None:
    """Stop using ``template`` (it failed): the next kernel starts a new one."""
    with _registry_lock:
        for key, known in list(_templates.items()):
            if known is template:
                del _templates[key]
    template.close()


def running() -> list[int]:
    """The pids of this process's templates that are alive (kernels are being forked from them)."""
    with _registry_lock:
        return [t.pid for t in _templates.values() if t.alive()]


def close_all() -> None:
    with _registry_lock:
        for template in [*_templates.values(), *(pending for pending, _ in _starting.values())]:
            template.close()
        _templates.clear()
        _starting.clear()
        _failed.clear()


def enter_group(group: KernelGroup | None) -> Callable[[int], None]:
    """What ``KernelTemplate.fork`` calls with the warden's pid: into the kernel's control group, if any."""
    return group.add if group is not None else (lambda pid: None)
