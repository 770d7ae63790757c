"""nbclient internals that ``SandboxedExecute`` relies on.

nbconvert's ``ExecutePreprocessor`` is an nbclient ``NotebookClient`` that
re-initialises itself for every notebook; ``SandboxedExecute`` runs a
notebook in its own loop (to skip cells, stop at a deadline and replay), so it
repeats that re-initialisation, and it needs to know when a cell timed out.
"""

from __future__ import annotations

from typing import Any

from nbclient import NotebookClient

CHECKED_WITH = {"nbclient": "0.11.0", "nbconvert": "7.17.2"}


def begin_notebook(client: Any, nb: Any, km: Any, resources: dict) -> None:
    """Point ``client`` at ``nb`` and ``km`` as ``ExecutePreprocessor.preprocess`` does before running cells."""
    NotebookClient.__init__(client, nb, km)
    client.reset_execution_trackers()
    client._check_assign_resources(resources)


class NotesTimeouts:
    """A mixin for a ``NotebookClient``: ``timed_out`` is true after a cell hit its time limit.

    nbclient calls ``_async_handle_timeout`` when a cell runs out of time (it
    then interrupts the kernel); the cell's own output only shows a
    KeyboardInterrupt.
    """

    timed_out = False

    async def _async_handle_timeout(self, timeout: int, cell: Any = None) -> Any:
        self.timed_out = True
        return await super()._async_handle_timeout(timeout, cell)  # type: ignore[misc]
