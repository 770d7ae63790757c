"""The feedback page's exporter: nbconvert's HTML, with its templates compiled once per process.

nbgrader's ``GenerateFeedback`` makes a new ``HTMLExporter``, and with it a
new Jinja environment, every time it runs; a worker of grading on submit runs
it once per submission, and compiling nbconvert's and nbgrader's templates
again cost about a quarter of a second of CPU each time.  Jinja's bytecode
cache is its own answer to that: compiled templates are kept by template name
and file, and reused only while a checksum of the template's source matches,
so an edited template is compiled afresh.  This cache is in memory, for this
process and this exporter class only (every environment it serves is made the
same way).  ``nbgrader_config.py`` makes it ``GenerateFeedback``'s exporter.
"""

from __future__ import annotations

import threading
from typing import Any

from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from nbconvert.exporters import HTMLExporter


class InMemoryBytecode(BytecodeCache):
    """Compiled templates kept in this process, by Jinja's bucket key; Jinja checks each one's source checksum."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            data = self._code.get(bucket.key)
        if data is not None:
            bucket.bytecode_from_string(data)

    def dump_bytecode(self, bucket: Bucket) -> None:
        data = bucket.bytecode_to_string()
        with self._lock:
            self._code[bucket.key] = data


COMPILED = InMemoryBytecode()


class FeedbackExporter(HTMLExporter):
    """``HTMLExporter`` whose Jinja environment keeps compiled templates in ``COMPILED``."""

    @property
    def environment(self) -> Any:
        environment = super().environment
        environment.bytecode_cache = COMPILED
        return environment
