"""The feedback page's exporter compiles each template once per process, and an edited template afresh."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from grader.engine import feedback_page
from grader.engine.feedback_page import FeedbackExporter, InMemoryBytecode


@pytest.fixture
def compiled(monkeypatch) -> list[str]:
    """A cache of this test's own, and the name of every template Jinja compiles from source."""
    monkeypatch.setattr(feedback_page, "COMPILED", InMemoryBytecode())
    names: list[str] = []
    original = jinja2.Environment.compile

    def counting(self, source, name=None, filename=None, raw=False, defer_init=False):
        names.append(str(name))
        return original(self, source, name, filename, raw, defer_init)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    return names


_CELL = new_code_cell("print(1 + 1)", outputs=[new_output("stream", name="stdout", text="2\n")])
# Written once: each new cell gets a random id, and the page shows it.
NOTEBOOK = nbformat.writes(new_notebook(cells=[new_markdown_cell("# Feedback"), _CELL]))


def notebook() -> nbformat.NotebookNode:
    return nbformat.reads(NOTEBOOK, as_version=4)


def without_ids(html: str) -> str:
    """The page without the random ids nbconvert's templates draw (uuid4) on every render."""
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", html)


def test_a_second_exporter_compiles_nothing_and_makes_the_same_page(compiled):
    first, _ = FeedbackExporter().from_notebook_node(notebook())
    assert compiled, "the first page compiled no template"
    count = len(compiled)
    second, _ = FeedbackExporter().from_notebook_node(notebook())
    assert len(compiled) == count, compiled[count:]
    assert without_ids(second) == without_ids(first)
    assert "print" in first and "Feedback" in first


def test_an_edited_template_is_compiled_again(tmp_path: Path, compiled):
    folder = tmp_path / "templates" / "page"
    folder.mkdir(parents=True)
    (folder / "conf.json").write_text('{"base_template": "base", "mimetypes": {"text/html": true}}')
    (folder / "index.html.j2").write_text("first version: {{ nb.cells | length }} cells")

    def page() -> str:
        exporter = FeedbackExporter(template_name="page", extra_template_basedirs=[str(tmp_path / "templates")])
        return exporter.from_notebook_node(notebook())[0]

    assert "first version: 2 cells" in page()
    (folder / "index.html.j2").write_text("second version: {{ nb.cells | length }} cells")
    assert "second version: 2 cells" in page()


def test_remembered_filters_make_exactly_the_page_nbconvert_makes(monkeypatch):
    """Markdown, highlighted code and sanitised HTML served from memory; every changed input rendered afresh."""
    from nbconvert.exporters import HTMLExporter

    monkeypatch.setattr(feedback_page, "REMEMBERED", feedback_page._Remembered())
    attached = new_markdown_cell("![plot](attachment:p.png)",
                                 attachments={"p.png": {"image/png": "iVBORw0KGgo="}})

    def pages(markdown: str, code: str, metadata: dict) -> tuple[str, str]:
        cells = [new_markdown_cell(markdown), new_code_cell(code, metadata=metadata), attached]
        text = nbformat.writes(new_notebook(cells=cells))
        ours = FeedbackExporter().from_notebook_node(nbformat.reads(text, as_version=4))[0]
        theirs = HTMLExporter().from_notebook_node(nbformat.reads(text, as_version=4))[0]
        return without_ids(ours), without_ids(theirs)

    for markdown, code, metadata in [("# One", "x = 1", {}), ("# One", "x = 1", {}), ("# Two", "x = 1", {}),
                                     ("# Two", "x = 2", {}), ("# Two", "x = 2", {"magics_language": "bash"}),
                                     ("<script>alert(1)</script> *Two*", "x = 2", {})]:
        ours, theirs = pages(markdown, code, metadata)
        assert ours == theirs, (markdown, code, metadata)
    assert len(feedback_page.REMEMBERED._results) > 3


def test_one_exporter_highlights_each_notebook_in_its_own_language(monkeypatch):
    """nbgrader reuses one exporter for a whole batch: each notebook's language_info still decides."""
    from nbconvert.exporters import HTMLExporter

    monkeypatch.setattr(feedback_page, "REMEMBERED", feedback_page._Remembered())
    ours = FeedbackExporter()
    for lexer in ("ipython3", "bash", "ipython3"):
        nb = new_notebook(cells=[new_code_cell("echo $HOME # x = [1, 2]")],
                          metadata={"language_info": {"name": lexer, "pygments_lexer": lexer}})
        text = nbformat.writes(nb)
        page = ours.from_notebook_node(nbformat.reads(text, as_version=4))[0]
        theirs = HTMLExporter().from_notebook_node(nbformat.reads(text, as_version=4))[0]
        assert without_ids(page) == without_ids(theirs)


def test_what_is_remembered_stays_within_its_budget():
    remembered = feedback_page._Remembered(budget=400)
    for n in range(50):
        assert remembered.get(("f", str(n)), lambda n=n: "x" * (n + 20)) == "x" * (n + 20)
    assert 0 < remembered._held <= 400
    assert remembered._held == sum(size for _, size in remembered._results.values())
    # The newest are kept; a result larger than a quarter of the budget is not kept at all.
    assert ("f", "49") in remembered._results and ("f", "0") not in remembered._results
    remembered.get(("big",), lambda: "y" * 200)
    assert ("big",) not in remembered._results
