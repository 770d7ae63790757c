"""The kernel template's own program: import once, then fork one sandboxed kernel per request.

This file runs inside bubblewrap (``grader.engine.template`` starts it with
``python -c`` and its text), where neither the course folder nor this
repository is mounted: it uses the standard library only, until it imports
what every kernel needs (``IMPORTS`` in its first request).  It never runs
student code and never reads a submission: a kernel's files arrive as a tar
stream on a pipe the grader writes, after the fork.

Per request the template forks a *warden* that:

1. says hello on the kernel's own channel (the grader reads its pid from the
   socket's credentials and moves it into the kernel's control group), and
   waits for ``go``, which brings the connection file;
2. unshares mount, network, IPC, UTS, cgroup and pid namespaces, mounts the
   kernel's sized in-memory folders over the template's, unpacks the files
   into its scratch, writes the connection file and makes it read-only, sets
   the per-process limits;
3. forks the pid namespace's init, which mounts a /proc of its own and forks
   the kernel; the kernel drops every capability, sets no_new_privs, takes
   the submission's environment and starts ipykernel in-process;
4. reports the kernel's exit status on the channel, or kills it when the
   grader's end closes (the grader died or is done with it).

The template holds the capabilities of its own user namespace only, which
the warden needs for the mounts; the kernel has none.
"""

import ctypes
import json
import os
import resource
import select
import signal
import socket
import sys
import tarfile
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
CAPABILITY_VERSION_3 = 0x20080522
# What bubblewrap shows read-only inside its /proc (the kernel's knobs); the kernel's /proc does the same.
PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus")
# Exit status of a warden that failed before the kernel ran (its message is on the kernel's output).
SETUP_FAILED = 70

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def raw(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    _check(_libc.mount(raw(source), raw(target), raw(fstype), ctypes.c_ulong(flags), raw(data)),
           f"mount {target}")


def prctl(option: int, arg: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)),
           f"prctl {option}")


def drop_capabilities() -> None:
    """Lose every capability for good: the bounding set, the ambient set, then the process's own sets."""
    with open("/proc/sys/kernel/cap_last_cap") as last:
        for cap in range(int(last.read()) + 1):
            prctl(PR_CAPBSET_DROP, cap)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.capset(header, data), "capset")
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def _exit_code(status: int) -> int:
    """An exit status as bubblewrap reports its child's: the code, or 128 plus the signal's number."""
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


# -- the kernel ---------------------------------------------------------------------------------


def _run_kernel(request: dict) -> int:
    """Start ipykernel in this process, as ``python -m ipykernel_launcher ARGS`` would; its exit status."""
    drop_capabilities()
    # As a kernel started cold has it: Python's own locale coercion (LC_CTYPE, set in the template when it
    # started) and the shell's PWD.
    coerced = {"LC_CTYPE": os.environ["LC_CTYPE"]} if "LC_CTYPE" in os.environ else {}
    os.environ.clear()
    os.environ.update({**coerced, **request["env"], "PWD": request["cwd"]})
    os.chdir(request["cwd"])
    # Every kernel would otherwise draw the template's random numbers.
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    sys.argv = [request["launcher"], *request["args"]]
    from ipykernel import kernelapp

    try:
        kernelapp.launch_new_instance(argv=request["args"])
    except SystemExit as end:
        return end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
    return 0


def _init(request: dict) -> int:
    """The pid namespace's first process: its own /proc, the kernel as its child, every orphan reaped."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name in PROC_READ_ONLY:
        path = f"/proc/{name}"
        if os.path.exists(path):
            mount(path, path, None, MS_BIND | MS_REC)
            mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    kernel = os.fork()
    if kernel == 0:
        _end(lambda: _run_kernel(request))
    while True:
        pid, status = os.wait()
        if pid == kernel:
            return _exit_code(status)


# -- the warden ---------------------------------------------------------------------------------


def _mount_scratch(request: dict) -> None:
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for target, size in request["tmpfs"]:
        mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=755")
    for folder in request["dirs"]:
        os.makedirs(folder, exist_ok=True)


def _unpack(files_fd: int, into: str) -> None:
    with os.fdopen(files_fd, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
        if hasattr(tarfile, "tar_filter"):
            archive.extractall(into, filter="tar")
            return
        # Python before 3.11.4 (Debian 12's 3.11.2) has no extraction filters.  The stream is the grader's
        # own (``template._pack`` of a real folder, which never descends into a link), so the names are
        # plain relative paths; anything else is refused rather than written.
        for member in archive:
            if member.name.startswith("/") or ".." in member.name.split("/"):
                raise ValueError(f"refused to unpack {member.name!r}: not a path inside the kernel's folder")
            archive.extract(member, into, set_attrs=not member.issym())


def _write_read_only(path: str, text: str) -> None:
    folder = os.path.dirname(path)
    with open(path, "w") as out:
        out.write(text)
    mount(None, folder, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _set_limits(limits: dict) -> None:
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def _warden(request: dict, channel: socket.socket, files_fd: int) -> int:
    channel.send(b"hello")  # the grader reads this process's pid from the credentials
    # The connection file (with the kernel's key) comes this way, past the template, which never holds it.
    go = json.loads(channel.recv(1 << 16) or b"{}")
    if not go.get("go"):
        return SETUP_FAILED
    unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID | CLONE_NEWCGROUP)
    _mount_scratch(request)
    _set_limits(request["rlimits"])
    _unpack(files_fd, request["cwd"])
    _write_read_only(request["connection_file"], go["connection"])
    channel.send(b"mounted")
    init = os.fork()
    if init == 0:
        _end(lambda: _init(request))
    pidfd = os.pidfd_open(init)
    while True:
        ready = select.select([channel.fileno(), pidfd], [], [])[0]
        if pidfd in ready:
            code = _exit_code(os.waitpid(init, 0)[1])
            channel.send(json.dumps({"exit": code}).encode())
            return code
        if not channel.recv(16):  # the grader let go of this kernel
            os.kill(init, signal.SIGKILL)
            os.waitpid(init, 0)
            return 128 + signal.SIGKILL


def _end(run) -> None:
    """Run ``run`` in a forked process and leave with its exit status, whatever happens: never back to the loop."""
    code = SETUP_FAILED
    try:
        code = run()
    except BaseException:  # noqa: BLE001 - the message goes to the kernel's output, the status to the grader
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def _start_warden(request: dict, fds: list[int]) -> None:
    channel_fd, output_fd, files_fd = fds
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    for fd in (null, output_fd):
        os.close(fd)
    channel = socket.socket(fileno=channel_fd)
    _end(lambda: _warden(request, channel, files_fd))


# -- the template -------------------------------------------------------------------------------


def _import_all(names: list[str]) -> dict:
    failed = {}
    for name in names:
        try:
            __import__(name)
        except Exception as err:  # noqa: BLE001 - a kernel that needs it imports it itself, and fails there
            failed[name] = f"{type(err).__name__}: {err}"[:200]
    return failed


def serve(control_fd: int) -> None:
    """Import what the first message names, say so, then fork a warden per request until the grader hangs up."""
    control = socket.socket(fileno=control_fd)
    first = json.loads(control.recv(1 << 16))
    failed = _import_all(first["imports"])
    # What the imports made stays put: the collector of a forked kernel never walks (and so never copies)
    # the template's pages.
    import gc

    gc.collect()
    gc.freeze()
    # Wardens are reaped by the kernel once they end; this process never waits for them.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    control.send(json.dumps({"ready": True, "failed": failed, "pid": os.getpid()}).encode())
    while True:
        message, fds, _, _ = socket.recv_fds(control, 1 << 20, 3)
        if not message:
            os._exit(0)
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            continue
        if os.fork() == 0:
            control.close()
            _start_warden(json.loads(message), fds)
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
