"""Validate with a kernel template: the folders it copies for a forked kernel, and machines without the sandbox.

A forked kernel gets a copy of the notebook's folder, as grading's kernels
do: never a folder that cannot be copied.  Where the sandbox's modules cannot
even be imported (Windows has no ``fcntl``), the course's configuration,
which every nbgrader command loads, must load all the same.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from grader.course import ROOT
from grader.engine.validate import COPY_BYTES, COPY_ENTRIES, _not_to_copy


def test_an_assignment_folder_is_copied(tmp_path):
    (tmp_path / "unet.ipynb").write_text("{}")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"x" * 1000)
    assert _not_to_copy(tmp_path) is None


def test_a_folder_with_too_many_files_is_not(tmp_path):
    for n in range(COPY_ENTRIES // 2):
        (tmp_path / f"d{n}").mkdir()
        (tmp_path / f"d{n}" / "f").touch()
    assert _not_to_copy(tmp_path) is None  # exactly the limit
    (tmp_path / "one-more").touch()
    assert _not_to_copy(tmp_path) == f"it holds more than {COPY_ENTRIES} files and folders"


def test_a_folder_with_too_many_bytes_is_not(tmp_path):
    (tmp_path / "sub").mkdir()
    with open(tmp_path / "sub" / "model.keras", "wb") as big:
        big.truncate(COPY_BYTES - 1000)  # sparse: its size, without the disk
    assert _not_to_copy(tmp_path) is None
    (tmp_path / "notes.txt").write_text("x" * 1001)
    assert _not_to_copy(tmp_path) == f"it holds more than {COPY_BYTES // 2**20} MiB"
    # A link counts as the link, not what it points to (the copy keeps it a link).
    os.remove(tmp_path / "notes.txt")
    (tmp_path / "elsewhere").symlink_to(tmp_path / "sub" / "model.keras")
    assert _not_to_copy(tmp_path) is None


def test_a_folder_with_a_named_pipe_or_a_socket_is_not(tmp_path):
    (tmp_path / "unet.ipynb").write_text("{}")
    os.mkfifo(tmp_path / "pipe")
    assert _not_to_copy(tmp_path) == f"{tmp_path / 'pipe'} is not a plain file"
    os.remove(tmp_path / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        assert _not_to_copy(tmp_path) == f"{tmp_path / 'sock'} is not a plain file"


def test_the_course_configuration_loads_where_the_sandbox_cannot(tmp_path):
    script = ("import sys\n"
              "sys.modules['fcntl'] = None  # as on Windows: importing it fails\n"
              "from traitlets.config.loader import PyFileConfigLoader\n"
              "config = PyFileConfigLoader('nbgrader_config.py', path=sys.argv[1]).load_config()\n"
              "print(config.ValidateExecute.get('template', 'default'))\n")
    done = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "default"
