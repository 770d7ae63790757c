"""jupyter_client internals that the sandbox's kernel manager relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHECKED_WITH = {"jupyter_client": "8.10.0", "ipykernel": "7.4.0"}


class LaunchLogsTo:
    """A mixin for an ``AsyncKernelManager``: the kernel process writes its stdout and stderr to ``kernel_log``.

    ``_async_launch_kernel`` is where jupyter_client starts the process; the
    keyword arguments it passes on reach ``subprocess.Popen``.
    """

    @property
    def kernel_log(self) -> Path:
        raise NotImplementedError

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        with open(self.kernel_log, "ab") as log:
            kw.update(stdout=log, stderr=log)
            await super()._async_launch_kernel(kernel_cmd, **kw)  # type: ignore[misc]


def kernel_exit_code(km: Any) -> int | None:
    """The exit status of ``km``'s kernel process, or None while it runs (or when unknown)."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    return None if process is None else process.poll()
