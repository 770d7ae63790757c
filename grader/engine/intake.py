"""Read any submitted file as a notebook that can be graded.

nbgrader drops a submission whose notebook cannot be read (empty file,
broken JSON) and records no grade for it, and it puts back a deleted test
cell only with ``add_missing_cells``, which fails when the cell before it is
a read-only cell.  Here:

- ``SubmissionExporter`` reads the file; if it is not a notebook, grading goes
  on with a notebook holding only an explanation (the submitted file itself
  stays untouched in ``submitted/``);
- ``RestoreLockedCells`` puts back every locked cell of the assignment that
  the submission lacks, after the locked or solution cell that precedes it in
  the source notebook, and notes when the notebook has none of the
  assignment's cells (another assignment's notebook).

Both notes end up in the feedback, via the notebook's metadata, which
``grader.engine.verdicts`` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbconvert.exporters import NotebookExporter
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor

from grader.course import active_coursedir, nbgrader_meta
from grader.engine.preflight import before_first_submission

NOTE_KEY = "unet_grader"


def _note(nb: NotebookNode, text: str) -> None:
    nb.metadata.setdefault(NOTE_KEY, {}).setdefault("notes", []).append(text)


def notes(nb: NotebookNode) -> list[str]:
    """What intake had to say about this submission, for the feedback."""
    return list(nb.get("metadata", {}).get(NOTE_KEY, {}).get("notes", []))


def _empty(note: str) -> NotebookNode:
    """A notebook with no cells, carrying ``note`` for the feedback."""
    nb = new_notebook()
    _note(nb, note)
    return nb


def _salvage(raw: NotebookNode) -> NotebookNode:
    """A valid notebook with the cells of ``raw`` that have a known type and text."""
    nb = new_notebook(metadata={k: v for k, v in raw.get("metadata", {}).items() if k in ("kernelspec",)})
    for cell in raw.get("cells", []):
        if not isinstance(cell, dict):
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if not isinstance(source, str):
            continue
        metadata = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        if cell.get("cell_type") == "code":
            nb.cells.append(new_code_cell(source, metadata=metadata))
        elif cell.get("cell_type") == "markdown":
            nb.cells.append(new_markdown_cell(source, metadata=metadata))
    nbformat.validate(nb)
    return nb


def read_submission(text: str) -> NotebookNode:
    """``text`` as a notebook; never raises, but notes what was wrong."""
    if not text.strip():
        return _empty("The submitted notebook file is empty.")
    try:
        raw = nbformat.reads(text, as_version=4)
    except Exception as err:  # noqa: BLE001 - broken JSON, unknown format version, ...
        return _empty(f"The submitted file is not a readable notebook ({type(err).__name__}: "
                      f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else 'no detail'}).")
    for cell in raw.get("cells", []):
        meta = cell.get("metadata") if isinstance(cell, dict) else None
        # nbgrader metadata of another schema version aborts the whole batch in
        # nbgrader's validator; it cannot belong to this assignment anyway.
        if isinstance(meta, dict) and "nbgrader" in meta and (
                not isinstance(meta["nbgrader"], dict) or meta["nbgrader"].get("schema_version") != 3):
            del meta["nbgrader"]
    try:
        nbformat.validate(raw)
        return raw
    except Exception:  # noqa: BLE001 - keep what can be kept
        try:
            nb = _salvage(raw)
        except Exception as err:  # noqa: BLE001
            return _empty(f"The submitted notebook is damaged beyond repair ({type(err).__name__}).")
        _note(nb, "The submitted notebook had invalid parts; only its code and markdown cells were kept.")
        return nb


class SubmissionExporter(NotebookExporter):
    """nbgrader's notebook exporter, reading whatever the student handed in.

    nbgrader's converter builds it once per run, before the first submission:
    the one moment when a machine that cannot grade can stop the run before
    any student's files or grades are touched (``preflight``).
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        before_first_submission(self.parent)

    def from_file(self, file_stream, resources=None, **kw):
        try:
            text = file_stream.read()
        except UnicodeDecodeError:
            nb = _empty("The submitted file is not text (it is not UTF-8), so it is not a notebook.")
        else:
            nb = read_submission(text)
        return self.from_notebook_node(nb, resources=resources, **kw)


def _source_order(assignment: str, notebook: str) -> list[str]:
    """grade_ids of the source notebook's nbgrader cells, in order."""
    coursedir = active_coursedir()
    if coursedir is None:
        return []
    path = Path(coursedir.format_path(coursedir.source_directory, ".", assignment)) / f"{notebook}.ipynb"
    if not path.exists():
        return []
    source = nbformat.read(path, as_version=4)
    return [nbgrader_meta(c)["grade_id"] for c in source.cells if "grade_id" in nbgrader_meta(c)]


class RestoreLockedCells(NbGraderPreprocessor):
    """Put back the locked cells (read-only and hidden test cells) a submission lacks."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        info = resources["nbgrader"]
        for cell in nb.cells:
            # OverwriteCells removes unknown grade_ids but leaves the rest, which
            # nbgrader's metadata check would then reject.
            if "nbgrader" in cell.metadata and "grade_id" not in nbgrader_meta(cell):
                del cell.metadata["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            try:
                source_nb = gb.find_notebook(info["notebook"], info["assignment"])
            except MissingEntry:
                return nb, resources
            cells = {c.name: c for c in source_nb.source_cells}
            points = {c.name: c.max_score for c in source_nb.grade_cells}
            order = _source_order(info["assignment"], info["notebook"]) or sorted(cells)
            present = {nbgrader_meta(c).get("grade_id") for c in nb.cells} - {None}
            if not present & set(cells):
                _note(nb, "This notebook has none of the assignment's cells: is it the notebook of another "
                          "assignment? Submit the assignment's own notebook with your code in it.")
            restored = []
            for position, grade_id in enumerate(order):
                cell = cells.get(grade_id)
                if cell is None or grade_id in present or not cell.locked:
                    continue
                new = self._cell(cell, points.get(grade_id))
                at = self._after(nb, order[:position])
                nb.cells.insert(at, new)
                present.add(grade_id)
                restored.append(grade_id)
        if restored:
            self.log.warning("Restored locked cells missing from the submission: %s", ", ".join(restored))
            _note(nb, f"Locked cells missing from your notebook were put back: {', '.join(restored)}.")
        return nb, resources

    @staticmethod
    def _cell(cell, points: float | None) -> NotebookNode:
        meta = {"grade": points is not None, "grade_id": cell.name, "locked": True, "solution": False,
                "schema_version": 3, "checksum": cell.checksum}
        if points is not None:
            meta["points"] = points
        make = new_code_cell if cell.cell_type == "code" else new_markdown_cell
        return make(cell.source, metadata={"nbgrader": meta, "deletable": False, "editable": False})

    @staticmethod
    def _after(nb: NotebookNode, earlier: list[str]) -> int:
        """Index just after the last cell of ``earlier`` found in ``nb`` (0 if none)."""
        positions = {nbgrader_meta(c).get("grade_id"): i for i, c in enumerate(nb.cells)}
        found = [positions[g] for g in earlier if g in positions]
        return max(found) + 1 if found else 0
