"""Facts about the course that the engine, the tools, the demo and the tests share.

Where nbgrader has an opinion, it is the owner: the course folder's layout
(``submitted/``, ``autograded/``, ...) and the gradebook's default URL come
from nbgrader's ``CourseDirectory``; this module adds only what this course
sets differently (the source folder) and its own names.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbgrader.coursedir import CourseDirectory

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "unet_segmentation"
NOTEBOOK = "unet"
# The companion lab: released beside the assignment, never graded (no gradebook entry, no autograding).
LAB = "unet_lab"
LAB_NOTEBOOK = "skip_connections"
COURSE_ID = "unet-segmentation"
# The one folder setting that differs from nbgrader's defaults.
SOURCE_DIRECTORY = "notebooks"
SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"


def course_directory(root: Path = ROOT, db_url: str | None = None) -> CourseDirectory:
    """nbgrader's description of the course folder at ``root``: each step's folder and the gradebook."""
    coursedir = CourseDirectory(root=str(root), source_directory=SOURCE_DIRECTORY)
    if db_url:
        coursedir.db_url = db_url
    return coursedir


def gradebook_url(root: Path = ROOT) -> str:
    """The gradebook nbgrader uses for the course at ``root`` unless told otherwise (SQLite in the folder)."""
    return course_directory(root).db_url


def step_folder(root: Path, step: str) -> Path:
    """The folder of one of nbgrader's steps (``"submitted"``, ``"autograded"``, ...) in the course at ``root``."""
    return Path(root) / getattr(course_directory(root), f"{step}_directory")


def make_alembic_findable() -> None:
    """nbgrader runs ``alembic`` by name when it creates a gradebook: find the one beside this Python."""
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


_COURSE = course_directory()
SOURCE_NOTEBOOK = ROOT / SOURCE_DIRECTORY / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
LAB_SOURCE = ROOT / SOURCE_DIRECTORY / LAB / f"{LAB_NOTEBOOK}.ipynb"
RELEASE_NOTEBOOK = ROOT / _COURSE.release_directory / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
SUBMITTED = ROOT / _COURSE.submitted_directory
AUTOGRADED = ROOT / _COURSE.autograded_directory
FEEDBACK = ROOT / _COURSE.feedback_directory
DB_URL = _COURSE.db_url
GRADEBOOK = Path(DB_URL.removeprefix("sqlite:///"))


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
