"""The parts of hardened grading that need no kernel: reading files, rules on code, the sandbox command."""

import shutil
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from grader.course import ROOT
from grader.engine.intake import notes, read_submission
from grader.engine.sandbox import Limits, bwrap_command
from grader.engine.verdicts import defined_functions, globals_used, module_variables


def test_a_valid_notebook_is_read_unchanged():
    nb = new_notebook(cells=[new_code_cell("x = 1")])
    assert read_submission(nbformat.writes(nb)) == nbformat.reads(nbformat.writes(nb), as_version=4)


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("   \n", "empty"),
    ('{"cells": [', "not a readable notebook (NotJSONError"),
    ("[1, 2]", "not a readable notebook"),
])
def test_unreadable_files_become_an_empty_notebook_with_a_note(text, words):
    nb = read_submission(text)
    assert nb.cells == []
    assert words in notes(nb)[0]


def test_invalid_parts_are_dropped_and_the_cells_kept():
    nb = new_notebook(cells=[new_code_cell("def conv_block(): pass")])
    raw = nbformat.writes(nb).replace('"outputs": []', '"outputs": [{"output_type": "nonsense"}]')
    salvaged = read_submission(raw)
    assert [c.source for c in salvaged.cells] == ["def conv_block(): pass"]
    assert "only its code and markdown cells were kept" in notes(salvaged)[0]


def test_nbgrader_metadata_of_another_schema_is_dropped():
    nb = new_notebook(cells=[new_code_cell("1", metadata={"nbgrader": {"grade_id": "x", "schema_version": 1}})])
    assert "nbgrader" not in read_submission(nbformat.writes(nb)).cells[0].metadata


def test_global_variables_read_by_a_function_are_found():
    cells = [
        "import numpy as np\nfrom os import path\nKERNEL = 3\nfor LOOP in range(2): pass",
        "def helper(x):\n    return x\n\n\nclass Thing:\n    pass",
        "def conv_block(inputs=None, n_filters=32):\n    local = KERNEL\n    inner = lambda: LOOP\n"
        "    return helper(np.zeros(local)), Thing, path, n_filters, inputs, len([])",
    ]
    assert module_variables(cells) == {"KERNEL", "LOOP"}
    assert globals_used("conv_block", cells) == ["KERNEL", "LOOP"]
    assert globals_used("helper", cells) == []
    assert globals_used("missing", cells) == []


def test_the_last_definition_counts_and_broken_cells_are_skipped():
    cells = ["N = 4", "def f():\n    return N", "%matplotlib inline", "def f():\n    N = 2\n    return N", "def (",
             "nonlocal N"]
    assert globals_used("f", cells) == []
    assert defined_functions("def a():\n    pass\n\ndef b():\n    pass\nx = 1") == ["a", "b"]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (make sandbox-deps)")
def test_the_sandbox_shows_the_work_folder_and_hides_the_course(tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "mine.txt").write_text("student file")
    code = (
        "import os, socket\n"
        "print(open('mine.txt').read())\n"
        f"print(os.path.exists({str(ROOT / 'grader' / 'checks.py')!r}), os.path.exists('/etc/shadow'))\n"
        "print(socket.socket().connect_ex(('1.1.1.1', 80)) != 0)\n"
        "open('out.txt', 'w').write('ok')\n"
        "import resource; print(resource.getrlimit(resource.RLIMIT_AS)[0])\n"
    )
    command = bwrap_command(tmp_path / "work", None, None, Limits()) + [sys.executable, "-c", code]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == ["student file", "False False", "True", str(Limits().memory_bytes)]
    # The kernel writes to its in-memory copy of the folder, never to the machine's disk.
    assert not (tmp_path / "work" / "out.txt").exists()
    assert (tmp_path / "work" / "mine.txt").read_text() == "student file"


@pytest.mark.parametrize("code, words", [
    (None, "stopped responding"),
    (3, "exited with status 3"),
    (137, "SIGKILL"),
    (-9, "SIGKILL"),
    (152, "900 s of CPU time"),
    (139, "signal SIGSEGV"),
])
def test_a_dead_kernel_is_explained_by_its_exit_status(code, words):
    from grader.engine.execute import _exit_reason

    assert words in _exit_reason(code, Limits())


def test_a_binary_file_is_read_as_an_empty_notebook_with_a_note(tmp_path):
    from grader.engine.intake import SubmissionExporter

    path = tmp_path / "unet.ipynb"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    output, _ = SubmissionExporter().from_filename(str(path))
    nb = nbformat.reads(output, as_version=4)
    assert nb.cells == [] and "not UTF-8" in notes(nb)[0]
