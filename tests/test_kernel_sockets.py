"""The grader connects only to the sockets a sandboxed kernel made, as it first made them.

A kernel that replaces its sockets by links to a socket of the host and cuts
the grader's connections (``tests/socket_swap.py``) is a dead kernel: the
host's socket receives nothing, the kernel's notebook is graded with the
cells before, with a sentence saying why, and the next submission is graded
as usual; as a normal user here, and as root in the hardening batch
(``socket_swap`` in ``tests/fault_corpus.py``, graded by a real ``nbgrader
autograde``; ``python tests/socket_swap.py FOLDER`` runs this one as root
by hand).  A socket folder holding a link, or
anything but a socket, where a socket belongs is refused before the first
connection.  Validate (``grader.engine.validate``, the hub's Validate button
runs the same) uses an ordinary kernel on loopback tcp: the same notebook
reaches nothing there either, and ends as a dead kernel with its message.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from grader.engine.kernel_sockets import LOST, SocketPins, UnsafeSocket
from grader.engine.sandbox import IPC, Limits, bwrap_command, sandbox_pid
from hub.accounts import as_account_command
from tests.socket_swap import CUT_ANY, HostSocket
from tests.test_sandbox_disk import HUB_PYTHON

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

SWAP_HARNESS = Path(__file__).with_name("socket_swap.py")

# Inside a sandbox: a listening socket kernel-1, and in kernel-2's place what the test asks for.
FOLDER_MAKER = """
import os, socket, sys, time
good = socket.socket(socket.AF_UNIX)
good.bind("{ipc}/kernel-1")
good.listen()
kind = sys.argv[1]
if kind == "link":
    os.symlink({host!r}, "{ipc}/kernel-2")
elif kind == "file":
    open("{ipc}/kernel-2", "w").close()
else:
    other = socket.socket(socket.AF_UNIX)
    other.bind("{ipc}/kernel-2")
    other.listen()
time.sleep(30)
"""


def _check_swap(report: dict) -> None:
    assert report["host"] == [], "the grader connected to the host's socket the kernel linked in"
    before, swap, after = report["outputs"]["swapper"]
    assert before == "BEFORE\n"
    assert swap == f"This cell stopped the kernel: {LOST}. Cells after it were not run."
    assert after == "", "a cell after the swap ran"
    assert report["problems"]["swapper"] == {"1": swap}
    assert report["outputs"]["other"] == ["OTHER ONE\n", "OTHER TWO\n"]
    assert report["problems"]["other"] == {}


@pytest.mark.slow
@needs_bwrap
def test_a_kernel_that_swaps_its_sockets_as_a_normal_user_is_dead_and_reaches_nothing(user):
    if not HUB_PYTHON.exists():
        pytest.skip(f"no Python a normal user may run at {HUB_PYTHON} (make test-hub builds it)")
    shared = Path(tempfile.mkdtemp(prefix="unet-swap-test-"))
    try:
        shared.chmod(0o777)
        run = subprocess.run(as_account_command(user, [], [str(HUB_PYTHON), str(SWAP_HARNESS), str(shared)]),
                             capture_output=True, text=True, timeout=600, env={"PATH": "/usr/bin:/bin"}, cwd="/")
    finally:
        shutil.rmtree(shared)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.splitlines()[-1])
    _check_swap(report)
    # The account's kernels were forked from a kernel template (on by default), which the swap did not fool either.
    assert report["templates"], run.stderr[-3000:]


@needs_bwrap
@pytest.mark.parametrize("kind", ["link", "file", "socket"])
def test_only_sockets_the_sandbox_made_are_pinned(tmp_path, kind):
    host = HostSocket(tmp_path / "host.sock")
    (tmp_path / "work").mkdir()
    info_read, info_write = os.pipe()
    command = bwrap_command(tmp_path / "work", None, None, Limits(), info_fd=info_write)
    code = FOLDER_MAKER.format(ipc=IPC, host=str(host.path))
    process = subprocess.Popen([*command, sys.executable, "-c", code, kind], pass_fds=(info_write,))
    os.close(info_write)
    try:
        pid = sandbox_pid(info_read)
        assert pid is not None
        pins = SocketPins(pid, IPC)
        pin_all = pins.pin_all(["kernel-1", "kernel-2"], running=lambda: process.poll() is None, timeout=30)
        try:
            if kind == "socket":
                asyncio.run(pin_all)
                assert pins.address("kernel-2").startswith("ipc:///proc/self/fd/")
            else:
                with pytest.raises(UnsafeSocket, match="kernel-2 is not a socket"):
                    asyncio.run(pin_all)
        finally:
            pins.close()
    finally:
        process.kill()
        process.wait()
        os.close(info_read)
    time.sleep(0.2)
    assert host.received == [], "checking the socket folder connected to the host's socket"


@pytest.mark.slow
@pytest.mark.parametrize("template", [False, pytest.param(True, marks=needs_bwrap)], ids=["cold", "forked"])
def test_validate_reaches_nothing_and_says_the_kernel_cut_its_connection(tmp_path, template):
    from nbformat.v4 import new_code_cell, new_notebook

    from grader.engine.validate import ValidateExecute

    host = HostSocket(tmp_path / "host.sock")
    cells = ["print('BEFORE')", CUT_ANY.format(host=str(host.path)), "print('AFTER')"]
    nb = new_notebook(cells=[new_code_cell(source) for source in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder = tmp_path / "notebook"
    folder.mkdir()
    nb, _ = ValidateExecute(timeout=20, notebook_timeout=60, template=template).preprocess(
        nb, {"metadata": {"path": str(folder)}})
    texts = [[o.get("text") or o.get("evalue") for o in cell.outputs] for cell in nb.cells]
    assert texts[0] == ["BEFORE\n"]
    # A cold kernel has no socket files to swap; a forked one has, in its sandbox (where the host's is not).
    assert texts[1][0] == ("TRANSPORT ipc\n" if template else "TRANSPORT tcp\n")
    assert "This cell stopped the kernel" in texts[1][-1] and "closed or replaced the kernel's sockets" in texts[1][-1]
    assert texts[2] == [], "a cell after the cut ran"
    time.sleep(0.5)
    assert host.received == []
