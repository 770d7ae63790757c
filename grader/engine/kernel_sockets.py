"""The grader's end of a sandboxed kernel's sockets: pinned to what the kernel made, never looked up again.

The kernel binds its ZeroMQ sockets in its sandbox's socket folder
(``sandbox.IPC``), an in-memory folder it may write.  A path into it walked
from the host (``/proc/<pid>/root/sandbox/ipc/kernel-1``) follows a symbolic
link that the kernel puts in a socket's place, and an absolute link resolves
against the host's root: code in a notebook could make the grader connect to
any unix socket of the host.  So the grader never connects to such a path.

Once the kernel has made its sockets, and before any connection (so before
any of the student's code has run), each one is opened without following
links (``O_PATH | O_NOFOLLOW``, relative to the socket folder, itself opened
the same way) and checked: a socket, on the tmpfs that bubblewrap mounted at
the socket folder, of the grader's own user, listening.  That descriptor
stays open while the kernel lives, and ZeroMQ connects to
``/proc/self/fd/<fd>``, which names that very inode whatever the kernel later
renames, removes or links in its place; and a socket's inode cannot be
listened on again once its socket is closed.  So every connection the
grader makes, the heartbeat's new socket after a missed beat included,
reaches the kernel's own socket or nothing.

Each of the grader's sockets is watched (a ZeroMQ monitor): a kernel that
cuts a connection is a dead kernel from then on (``connection_lost``),
graded with what ran before.  ZeroMQ's own reconnecting is left on: it can
only reach the pinned inode, and without it a message sent on a cut socket
(jupyter_client interrupts a kernel before it shuts it down) would block.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import AsyncKernelManager
from traitlets import default
from zmq.utils.monitor import parse_monitor_message

from grader.engine.private_api.jupyter_client_api import ConnectsByAddress

# How often, and how long, the grader looks whether the kernel has made its sockets yet.
POLL_SECONDS = 0.05
PIN_SECONDS = 60
# Where a socket goes before the kernel's are pinned (jupyter_client interrupts a kernel before it shuts
# it down, even one that failed to start): an endpoint inside this process that nothing binds.
NOWHERE = "inproc://unet-kernel-not-pinned"
LOST = ("the kernel cut its connection to the grader (code in the notebook closed or replaced the kernel's "
        "sockets), so nothing more could run in it")


class UnsafeSocket(RuntimeError):
    """What the kernel left where a socket of its own belongs is not one; the grader will not connect to it."""


def _open_dir(parent: int, name: str) -> int:
    return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent)


def _tmpfs_at(pid: int, mount_point: str, device: int) -> bool:
    """Whether the sandbox's mount table has a tmpfs at ``mount_point`` with ``device``."""
    want = f"{os.major(device)}:{os.minor(device)}"
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        parts = fields.split()
        if len(parts) >= 5 and parts[2] == want and parts[4] == mount_point and tail.split()[:1] == ["tmpfs"]:
            return True
    return False


def _listening(fd: int) -> bool:
    """Whether a socket listens on the inode ``fd`` names (a connection attempt, closed at once)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(f"/proc/self/fd/{fd}")
    except BlockingIOError:
        return True  # its queue of connections to accept is full: it listens
    except ConnectionRefusedError:
        return False
    finally:
        probe.close()
    return True


class ConnectionWatch:
    """The grader's sockets to one kernel, each with a ZeroMQ monitor: has any lost its connection?"""

    def __init__(self) -> None:
        # Each watched socket, its monitor, and a view of the monitor that reads without waiting (the
        # monitor may be an asyncio socket).
        self._watched: list[tuple[zmq.Socket, zmq.Socket, zmq.Socket]] = []
        self._lost = False

    def watch(self, sock: zmq.Socket) -> None:
        """Note it when ``sock`` loses its connection."""
        monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._watched.append((sock, monitor, zmq.Socket.shadow(monitor.underlying)))

    def lost(self) -> bool:
        """Whether any watched socket has lost its connection since it was made."""
        for _, monitor, view in self._watched:
            # A closed monitor's view would read freed memory; its socket was closed by the grader anyway.
            while not monitor.closed and view.poll(0):
                if parse_monitor_message(view.recv_multipart())["event"] == zmq.EVENT_DISCONNECTED:
                    self._lost = True
        return self._lost

    def close(self) -> None:
        """Close the watched sockets and their monitors."""
        for sock, monitor, _ in self._watched:
            if not sock.closed:
                sock.disable_monitor()
                sock.close(linger=0)
            monitor.close(linger=0)
        self._watched = []


class SocketPins:
    """The sockets of one sandboxed kernel, opened once and checked; where the grader connects to each.

    ``folder`` is the socket folder as a path inside the sandbox (``sandbox.IPC``).
    """

    def __init__(self, pid: int, folder: str) -> None:
        self.pid, self.folder = pid, folder
        self._pins: dict[str, int] = {}
        self.watch = ConnectionWatch()
        self._dir, self._device = -1, -1

    def _open_folder(self) -> bool:
        """Open the socket folder, each step without following links; False while bubblewrap still builds it."""
        if self._dir >= 0:
            return True
        # /proc/<pid>/root is the sandbox's root only once bubblewrap has moved the process into it.
        at = os.open(f"/proc/{self.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in Path(self.folder).relative_to("/").parts:
                parent, at = at, _open_dir(at, name)
                os.close(parent)
            device = os.fstat(at).st_dev
            mounted = _tmpfs_at(self.pid, self.folder, device)
        except (FileNotFoundError, NotADirectoryError):
            os.close(at)
            return False
        if not mounted:
            os.close(at)
            return False
        self._dir, self._device = at, device
        return True

    def _pin(self, name: str) -> bool:
        """Open and check the socket ``name``; False while the kernel has not made it, or does not listen yet."""
        if name in self._pins:
            return True
        try:
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._dir)
        except FileNotFoundError:
            return False
        info = os.fstat(fd)
        problem = None
        if not stat.S_ISSOCK(info.st_mode):
            problem = "is not a socket"
        elif info.st_dev != self._device:
            problem = "is not on the sandbox's socket folder"
        elif info.st_uid != os.geteuid():
            problem = f"belongs to user {info.st_uid}, not to the grader's"
        if problem is not None:
            os.close(fd)
            raise UnsafeSocket(f"{self.folder}/{name} {problem}; the grader does not connect to it")
        if not _listening(fd):
            os.close(fd)
            return False
        self._pins[name] = fd
        return True

    async def pin_all(self, names: list[str], running: Callable[[], bool], timeout: float) -> None:
        """Pin every socket in ``names`` once the kernel has made it; raise if it ends, or is not done in time."""
        deadline = time.monotonic() + timeout
        while not (self._open_folder() and all([self._pin(name) for name in names])):
            if not running():
                raise RuntimeError("the kernel ended before it opened its sockets")
            if time.monotonic() > deadline:
                missing = sorted(set(names) - set(self._pins))
                raise TimeoutError(f"the kernel did not open its sockets {missing} in its socket folder "
                                   f"(a tmpfs at {self.folder}) within {timeout:.0f} s")
            await asyncio.sleep(POLL_SECONDS)

    def address(self, name: str) -> str:
        """The ZeroMQ address of the pinned socket ``name``: the inode itself, through this process's descriptor.

        Before it is pinned (a kernel that failed to start), an address in
        this process that nothing serves: what is sent there goes nowhere.
        """
        if name not in self._pins:
            return NOWHERE
        return f"ipc:///proc/self/fd/{self._pins[name]}"

    def close(self) -> None:
        """Close the watched sockets, then the descriptors, whose numbers the next open file may take."""
        # ZeroMQ would connect a socket left open again, by number, to whatever file has it by then.
        self.watch.close()
        for fd in [*self._pins.values(), self._dir]:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError as err:
                    if err.errno != errno.EBADF:
                        raise
        self._pins, self._dir = {}, -1


class WatchedKernelClient(ConnectsByAddress, AsyncKernelClient):
    """A client of a ``PinsSockets`` or ``WatchedKernelManager`` kernel: its sockets go where the manager says.

    The kernel counts as dead once a connection to it was lost, so nbclient
    (which asks ``is_alive`` every second while a cell runs) stops waiting.
    """

    def channel_address(self, channel: str) -> str:
        return self.parent.channel_address(channel)  # type: ignore[union-attr]

    def socket_connected(self, channel: str, sock: zmq.Socket) -> None:
        self.parent.socket_connected(channel, sock)  # type: ignore[union-attr]

    async def is_alive(self) -> bool:
        if self.parent.connection_lost() is not None:  # type: ignore[union-attr]
            return False
        alive: Any = await super().is_alive()
        return bool(alive)


class WatchedBlockingKernelClient(ConnectsByAddress, BlockingKernelClient):
    """The blocking twin of ``WatchedKernelClient`` (``blocking_client()``): it, too, connects only where the
    manager says, so no client of a sandboxed kernel can reach a path the kernel could have replaced."""

    def channel_address(self, channel: str) -> str:
        return self.parent.channel_address(channel)  # type: ignore[union-attr]

    def socket_connected(self, channel: str, sock: zmq.Socket) -> None:
        self.parent.socket_connected(channel, sock)  # type: ignore[union-attr]


class PinsSockets(ConnectsByAddress):
    """A mixin for the ``KeepsKernelOutput`` kernel manager of a sandboxed kernel: connects only through pins.

    The manager sets ``sandbox_process`` (the sandbox's first process) in
    ``kernel_launched`` and ``socket_folder`` (where the kernel binds
    ``{ip}-{port}``, as the kernel sees it) before it starts the kernel.
    """

    sandbox_process: int | None = None
    socket_folder = ""
    _pins: SocketPins | None = None
    _clients: list[WatchedKernelClient] | None = None

    async def before_connecting(self) -> None:
        """Pin the kernel's sockets, in its sandbox, once it has made them and before anything connects."""
        assert self.sandbox_process is not None and self.socket_folder, "the sandbox and its socket folder are known"
        self._close_pins()
        self._pins = SocketPins(self.sandbox_process, self.socket_folder)
        process = self.provisioner.process  # type: ignore[attr-defined]
        names = [self._socket_name(port) for port in self.ports]  # type: ignore[attr-defined]
        try:
            await self._pins.pin_all(names, running=lambda: process.poll() is None, timeout=PIN_SECONDS)
        except RuntimeError as err:
            said = self.kernel_output(wait=5).strip()[-500:]  # type: ignore[attr-defined]
            raise RuntimeError(f"{err}: {said or 'no message'}") from None

    def _socket_name(self, port: int) -> str:
        # ipykernel binds f"{ip}-{port}" for ipc, as jupyter_client names it.
        return f"{os.path.basename(self.ip)}-{port}"  # type: ignore[attr-defined]

    def channel_address(self, channel: str) -> str:
        if self._pins is None:
            return NOWHERE
        return self._pins.address(self._socket_name(getattr(self, f"{channel}_port")))

    def socket_connected(self, channel: str, sock: zmq.Socket) -> None:
        if self._pins is not None:
            self._pins.watch.watch(sock)

    def connection_lost(self) -> str | None:
        """Why the grader lost the kernel although its process may run on, in words; None while connected."""
        return LOST if self._pins is not None and self._pins.watch.lost() else None

    def client(self, **kwargs: Any) -> Any:
        """A client (``WatchedKernelClient``) whose sockets connect only to the pinned sockets."""
        kc = super().client(**kwargs)  # type: ignore[misc]
        self._clients = [*(self._clients or []), kc]
        return kc

    def cleanup_ipc_files(self) -> None:
        """Nothing to remove: the sockets live in the sandbox's own in-memory folder, gone with it."""

    def _close_pins(self) -> None:
        # The clients' sockets first (their heartbeat's too, which is not watched): ZeroMQ would connect
        # them again, by number, to whatever file has the descriptor's number by then.
        for kc in self._clients or []:
            if kc.channels_running:
                kc.stop_channels()
        self._clients = None
        if self._pins is not None:
            self._pins.close()
            self._pins = None


class WatchedKernelManager(ConnectsByAddress, AsyncKernelManager):
    """A kernel manager for Validate: an ordinary kernel, dead once a connection to it was lost.

    Validate runs the notebook as the student, in a kernel of the student's
    own account on loopback tcp: nothing to pin, and nothing the kernel could
    make it connect to that the kernel could not reach itself.  But a kernel
    that cuts its connections would leave Validate waiting for output that
    never comes; this way it ends as a dead kernel, with its sentence.
    """

    _watch: ConnectionWatch | None = None

    @default("client_factory")
    def _watched_client(self) -> type:
        return WatchedKernelClient

    def socket_connected(self, channel: str, sock: zmq.Socket) -> None:
        self._watch = self._watch or ConnectionWatch()
        self._watch.watch(sock)

    def connection_lost(self) -> str | None:
        """Why the kernel counts as dead although its process may run on, in words; None while connected."""
        return LOST if self._watch is not None and self._watch.lost() else None
