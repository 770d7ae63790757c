"""Facts about the course that the grader, the demo and the tests share."""

from __future__ import annotations

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "unet_segmentation"
NOTEBOOK = "unet"
SOURCE_NOTEBOOK = ROOT / "notebooks" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
RELEASE_NOTEBOOK = ROOT / "release" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
SUBMITTED = ROOT / "submitted"
AUTOGRADED = ROOT / "autograded"
FEEDBACK = ROOT / "feedback"
GRADEBOOK = ROOT / "gradebook.db"
DB_URL = f"sqlite:///{GRADEBOOK}"
SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"


def active_coursedir():
    """The ``CourseDirectory`` of the nbgrader command running in this process, or None."""
    from traitlets.config import Application

    app = Application.instance() if Application.initialized() else None
    return getattr(app, "coursedir", None)


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def read_source() -> nbformat.NotebookNode:
    return nbformat.read(SOURCE_NOTEBOOK, as_version=4)


def exercises(nb: nbformat.NotebookNode | None = None) -> dict[str, list[tuple[str, float]]]:
    """Map each exercise (its solution cell's id) to its graded cells and points.

    A graded test cell belongs to the solution cell closest above it.
    """
    nb = nb or read_source()
    result: dict[str, list[tuple[str, float]]] = {}
    current = None
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if meta.get("solution"):
            current = meta["grade_id"]
            result[current] = []
        elif meta.get("grade") and current is not None:
            result[current].append((meta["grade_id"], float(meta["points"])))
    return result


def reference_solutions(nb: nbformat.NotebookNode | None = None) -> dict[str, str]:
    """The source notebook's solution cells with the solution markers removed."""
    nb = nb or read_source()
    out = {}
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if meta.get("solution"):
            lines = [
                line for line in cell.source.splitlines()
                if line.strip() not in (SOLUTION_BEGIN, SOLUTION_END)
            ]
            out[meta["grade_id"]] = "\n".join(lines)
    return out


def reference_namespace(code: dict[str, str] | None = None) -> dict:
    """Run the notebook's import cell and then ``code`` (default: the reference solutions).

    Returns the resulting namespace, as a kernel would hold it after those cells.
    """
    nb = read_source()
    imports = next(cell.source for cell in nb.cells if cell.cell_type == "code")
    namespace: dict = {}
    exec(compile(imports, "<imports cell>", "exec"), namespace)
    for exercise, source in (reference_solutions(nb) if code is None else code).items():
        exec(compile(source, f"<{exercise}>", "exec"), namespace)
    return namespace
