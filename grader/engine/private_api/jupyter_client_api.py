"""jupyter_client internals that the sandbox's kernel manager relies on."""

from __future__ import annotations

import subprocess
import threading
from typing import Any

CHECKED_WITH = {"jupyter_client": "8.10.0", "ipykernel": "7.4.0"}

# The end of the kernel process's own output that is kept: enough for a crash's last message.
KEPT_OUTPUT_BYTES = 64 * 1024


class KeepsKernelOutput:
    """A mixin for an ``AsyncKernelManager``: the kernel process's stdout and stderr are read, and their end kept.

    Code in the kernel can write to them without limit (``os.write(1, ...)``),
    so they go to no file; ``kernel_output()`` is the last
    ``KEPT_OUTPUT_BYTES`` of them.  A subclass may add ``subprocess.Popen``
    options (``popen_options``), act once the process runs (``kernel_launched``)
    and wait for it before any socket connects to it (``before_connecting``).

    ``_async_launch_kernel`` is where jupyter_client starts the process; the
    keyword arguments it passes on reach ``subprocess.Popen``, and
    ``provisioner.process`` is that ``Popen``; ``_async_post_start_kernel``,
    which connects the first socket, comes after it.  A subclass may also
    start the process itself (``launch_process``): ``adopt_process`` puts it
    where the provisioner keeps its ``Popen``.
    """

    _output: bytearray | None = None
    _reader: threading.Thread | None = None

    def popen_options(self) -> dict[str, Any]:
        return {}

    def kernel_launched(self) -> None:
        """Called once the kernel's process has started; may raise to say it cannot be used."""

    async def before_connecting(self) -> None:
        """Awaited after ``kernel_launched``, before the first socket connects to the kernel; may raise."""

    def launch_process(self, kernel_cmd: list[str]) -> tuple[Any, list[str]]:
        """A kernel process already started some other way (``subprocess.Popen``'s methods), or None and the
        command to start."""
        return None, kernel_cmd

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        process, kernel_cmd = self.launch_process(kernel_cmd)
        if process is None:
            kw.update(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **self.popen_options())
            await super()._async_launch_kernel(kernel_cmd, **kw)  # type: ignore[misc]
        else:
            adopt_process(self, process)
        self._output = bytearray()
        stream = self.provisioner.process.stdout  # type: ignore[attr-defined]
        self._reader = threading.Thread(target=self._keep_end_of, args=(stream, self._output),
                                        name="unet-kernel-output", daemon=True)
        self._reader.start()
        self.kernel_launched()
        await self.before_connecting()

    @staticmethod
    def _keep_end_of(stream: Any, kept: bytearray) -> None:
        with stream:
            while chunk := stream.read1(KEPT_OUTPUT_BYTES):
                kept += chunk
                del kept[:-KEPT_OUTPUT_BYTES]

    def kernel_output(self, wait: float = 0.0) -> str:
        """The end of what the kernel process wrote to its stdout and stderr, after waiting up to ``wait``
        seconds for it to end (a process that failed at once has said all it will)."""
        if wait and self._reader is not None:
            self._reader.join(wait)
        return bytes(self._output or b"").decode(errors="replace")


class ConnectsByAddress:
    """A mixin for jupyter_client's ``ConnectionFileMixin`` subclasses (a kernel manager, a kernel client).

    Every channel's ZeroMQ address comes from ``channel_address``, and every
    socket but the heartbeat's is handed to ``socket_connected`` once
    connected.  ``_make_url`` is where jupyter_client forms a channel's
    address from ``transport``, ``ip`` and the port (``f"{ip}-{port}"`` for
    ipc): the manager's control socket, the client's channels and the
    heartbeat channel (which makes a new socket after each missed beat) all
    take it from there.  ``_create_connected_socket`` makes and connects every
    socket but the heartbeat's.
    """

    def channel_address(self, channel: str) -> str:
        """The ZeroMQ address of ``channel`` ("shell", "iopub", "stdin", "control", "hb"): jupyter_client's."""
        return super()._make_url(channel)  # type: ignore[misc]

    def socket_connected(self, channel: str, sock: Any) -> None:
        """Called with each socket but the heartbeat's, right after it connected."""

    def _make_url(self, channel: str) -> str:
        return self.channel_address(channel)

    def _create_connected_socket(self, channel: str, identity: bytes | None = None) -> Any:
        sock = super()._create_connected_socket(channel, identity)  # type: ignore[misc]
        self.socket_connected(channel, sock)
        return sock


def adopt_process(km: Any, process: Any) -> None:
    """Make ``km``'s local provisioner hold ``process`` as the kernel it started.

    ``LocalProvisioner.launch_kernel`` sets ``process``, ``pid`` and ``pgid``
    and returns its ``connection_info``, which the manager then reconciles;
    with no process group, signals go to ``process.send_signal``.
    """
    provisioner = km.provisioner
    provisioner.process, provisioner.pid, provisioner.pgid = process, process.pid, None
    km._reconcile_connection_info(provisioner.connection_info)


def kernel_exit_code(km: Any) -> int | None:
    """The exit status of ``km``'s kernel process, or None while it runs (or when unknown)."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    return None if process is None else process.poll()
