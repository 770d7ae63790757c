"""Validate with a kernel template copies the notebook's folder for its kernel: never one that cannot be copied."""

from __future__ import annotations

import os
import socket

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
