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

Most of a feedback page is the same for every student: the instructions,
the locked cells, the hidden tests' results.  Sanitising HTML (bleach),
rendering Markdown and highlighting code were half of what was left of a
page's time, so the exporter remembers what those three filters made, by
everything their result depends on (``_Remembered``).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from jinja2 import BytecodeCache, pass_context
from jinja2.bccache import Bucket
from nbconvert.exporters import HTMLExporter
from nbconvert.filters import Highlight2HTML
from nbconvert.filters.strings import clean_html


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


class _Remembered:
    """Results of pure functions, by a key that holds everything a result depends on; the least used go first.

    Bounded by the characters it holds, keys included (an output's HTML can be
    large), so that a worker running for weeks keeps at most ``budget``.
    """

    def __init__(self, budget: int = 32_000_000) -> None:
        self._results: OrderedDict[tuple[str, ...], tuple[str, int]] = OrderedDict()
        self._budget, self._held = budget, 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...], make: Callable[[], str]) -> str:
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key][0]
        result = make()
        size = len(result) + sum(map(len, key))
        with self._lock:
            if key not in self._results and size <= self._budget // 4:
                self._results[key] = (result, size)
                self._held += size
                while self._held > self._budget:
                    _, (_, dropped) = self._results.popitem(last=False)
                    self._held -= dropped
        return result


REMEMBERED = _Remembered()


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


class FeedbackExporter(HTMLExporter):
    """``HTMLExporter`` that keeps compiled templates in ``COMPILED`` and repeated filter results in ``REMEMBERED``."""

    @property
    def environment(self) -> Any:
        environment = super().environment
        environment.bytecode_cache = COMPILED
        return environment

    def default_filters(self) -> Any:
        for name, function in super().default_filters():
            yield name, (self._clean_html if name == "clean_html" else function)

    @staticmethod
    def _clean_html(element: Any) -> str:
        text = element.decode() if isinstance(element, bytes) else str(element)
        return REMEMBERED.get(("clean_html", text), lambda: clean_html(text))

    @pass_context
    def markdown2html(self, context: Any, source: str) -> str:
        # What nbconvert's filter reads besides the source: the cell's attachments, its settings, and the
        # notebook's folder, which only embedded images read (each student's folder is another).
        path = context.get("resources", {}).get("metadata", {}).get("path", "") if self.embed_images else None
        key = ("markdown2html", source, _text(context.get("cell", {}).get("attachments", {})), _text(path),
               _text([self.embed_images, self.anchor_link_text, self.exclude_anchor_links, self.lexer_options]))
        return REMEMBERED.get(key, lambda: super(FeedbackExporter, self).markdown2html(context, source))

    def register_filter(self, name: str, jinja_filter: Any) -> Any:
        # nbconvert registers a code highlighter for each notebook, for its language: remember what it makes.
        if name == "highlight_code" and isinstance(jinja_filter, Highlight2HTML):
            jinja_filter = _remembering(jinja_filter)
        return super().register_filter(name, jinja_filter)


def _remembering(highlighter: Highlight2HTML) -> Callable[..., str]:
    """``highlighter``, its results remembered by the source, language, cell metadata and its own settings."""

    def highlight_code(source: str, language: str | None = None, metadata: Any = None) -> str:
        key = ("highlight_code", source, _text([highlighter.pygments_lexer, language, metadata,
                                                highlighter.extra_formatter_options]))
        return REMEMBERED.get(key, lambda: highlighter(source, language=language, metadata=metadata))

    return highlight_code
