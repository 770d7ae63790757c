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
    options (``popen_options``) and act once the process runs, before any
    client connects (``kernel_launched``).

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
