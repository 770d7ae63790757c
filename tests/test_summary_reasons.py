"""The class summary reads each autograded notebook once, and again only after it changed.

nbgrader's post-convert hook refreshes reports/summary.md after every graded
submission (``grader.tools.grades.after_autograde``); a class of 300 would
otherwise have 300 notebooks read again for each of its submissions.
"""

from __future__ import annotations

import os

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from grader.course import ASSIGNMENT, NOTEBOOK
from grader.tools import grades


def write_graded(autograded, student: str, error: str) -> None:
    cell = new_code_cell("check()", metadata={"nbgrader": {"grade": True, "grade_id": "test_conv_block_default",
                                                           "points": 15, "solution": False, "locked": True}})
    cell.outputs = [new_output("error", ename="CheckFailed", evalue=error, traceback=[])]
    path = autograded / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    nbformat.write(new_notebook(cells=[cell]), path)


def test_a_notebook_is_read_again_only_once_it_changed(tmp_path, monkeypatch):
    read = []
    real = grades._read_reasons
    monkeypatch.setattr(grades, "_read_reasons", lambda path: read.append(path) or real(path))
    write_graded(tmp_path, "ann", "one filter too many")
    write_graded(tmp_path, "ben", "no dropout")
    first = {s: grades.failure_reasons(s, tmp_path) for s in ("ann", "ben")}
    again = {s: grades.failure_reasons(s, tmp_path) for s in ("ann", "ben")}
    assert first == again == {"ann": {"test_conv_block_default": "CheckFailed: one filter too many"},
                              "ben": {"test_conv_block_default": "CheckFailed: no dropout"}}
    assert len(read) == 2
    # Regraded: the same size and, on a coarse clock, the same modification time; still read again.
    path = tmp_path / "ann" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    stamp = path.stat().st_mtime_ns
    write_graded(tmp_path, "ann", "one filter too few")
    os.utime(path, ns=(stamp, stamp))
    assert grades.failure_reasons("ann", tmp_path) == {"test_conv_block_default": "CheckFailed: one filter too few"}
    assert grades.failure_reasons("ben", tmp_path)["test_conv_block_default"] == "CheckFailed: no dropout"
    assert len(read) == 3


def test_what_the_caller_changes_is_not_remembered(tmp_path):
    write_graded(tmp_path, "ann", "no dropout")
    grades.failure_reasons("ann", tmp_path).clear()
    assert grades.failure_reasons("ann", tmp_path) == {"test_conv_block_default": "CheckFailed: no dropout"}
