"""Let a grading process end without walking every object it made one last time.

When Python ends, it collects its cyclic garbage once more.  A process that
imported TensorFlow holds millions of objects, and that walk took about a
second of every `nbgrader` command, Validate and regrade preview (measured
on 2 cores: 1.0 s to 0.13 s).  Nothing there needs it: the gradebook is
committed, files are closed, and temporary folders are removed by their own
exit handlers.  ``install`` registers ``gc.freeze`` to run at exit, after
the exit handlers registered later (LIFO) and before those registered
earlier, such as logging's flush: frozen objects are left out of the last
walk.  Objects in reference cycles then keep their ``__del__`` unrun at exit,
which Python never promised anyway.
"""

from __future__ import annotations

import atexit
import gc

_installed = False


def install() -> None:
    """Skip the last collection of this process's objects when it exits (once per process)."""
    global _installed
    if not _installed:
        atexit.register(gc.freeze)
        _installed = True
