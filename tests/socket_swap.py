"""A kernel swaps its sockets for links to a socket of the host; this process grades it and listens there.

    python tests/socket_swap.py FOLDER [--limits]

``SWAP`` and ``HostSocket`` serve the hardening corpus too.  Run by
``tests/test_kernel_sockets.py`` as root and as a throw-away normal
user.  It listens on a unix socket of its own in FOLDER (the host's), then
grades two small notebooks one after the other with ``SandboxedExecute``
(``--limits``: with whole-submission limits).  The first, cell by cell:
prints ``BEFORE``; replaces each of its kernel's sockets by a symbolic link
to that host socket and cuts every connection to them (``SWAP``), as often
as ``rounds`` says; prints ``AFTER``.  The second is another student's
plain notebook.  It prints one JSON object: ``outputs`` (per notebook, the
text of each cell's outputs), ``problems`` (per notebook, what the grader
noted per cell), ``host`` (what the host socket received: one entry per
connection), ``seconds`` (per notebook) and ``templates`` (the kernel templates the kernels were forked
from, if any).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nbformat import NotebookNode  # noqa: E402
from nbformat.v4 import new_code_cell, new_notebook  # noqa: E402

from grader.engine.record import RESOURCE_KEY  # noqa: E402

# Replace every socket in the kernel's socket folder by a link to HOST, then shut down every connection
# made to them, so that a grader that connects again by path would land on HOST.  Repeated ROUNDS times.
SWAP = '''import os, socket, time
HOST, FOLDER, ROUNDS = {host!r}, "/sandbox/ipc", {rounds}
for round in range(ROUNDS):
    for name in os.listdir(FOLDER):
        path = os.path.join(FOLDER, name)
        if not os.path.islink(path):
            os.rename(path, path + ".mine")
            os.symlink(HOST, path)
    cut = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(fd)))
        except OSError:
            continue
        try:
            if sock.family == socket.AF_UNIX and str(sock.getsockname()).startswith(FOLDER):
                sock.getpeername()  # a connection, not a listening socket
                sock.shutdown(socket.SHUT_RDWR)
                cut += 1
        except OSError:
            pass
        finally:
            sock.close()
    print("SWAPPED", sorted(os.listdir(FOLDER)), "cut", cut, flush=True)
    time.sleep(0.5)
'''


# The same for any kernel, from its connection (Validate's is an ordinary kernel on loopback tcp): ipc socket
# files become links to HOST, and every connection to the kernel's sockets is cut.
CUT_ANY = '''import json, os, socket, ipykernel.connect
info = json.loads(ipykernel.connect.get_connection_info())
ports = {{info[k] for k in info if k.endswith("_port")}}
print("TRANSPORT", info["transport"], flush=True)
if info["transport"] == "ipc":
    for port in ports:
        path = f"{{info['ip']}}-{{port}}"
        os.rename(path, path + ".mine")
        os.symlink({host!r}, path)
for fd in os.listdir("/proc/self/fd"):
    try:
        sock = socket.socket(fileno=os.dup(int(fd)))
    except OSError:
        continue
    try:
        name = sock.getsockname()
        if (name[1] in ports) if isinstance(name, tuple) else str(name).startswith(info["ip"]):
            sock.getpeername()  # a connection, not a listening socket
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()
'''


class HostSocket:
    """A listening unix socket of the host that notes every connection and what came through it."""

    def __init__(self, path: Path) -> None:
        self.path, self.received = path, []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        os.chmod(path, 0o777)  # a kernel of any account could reach it, were the link followed
        self._server.listen(64)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self._server.accept()
            conn.settimeout(2)
            data = b""
            try:
                while chunk := conn.recv(65536):
                    data += chunk
            except OSError:
                pass
            self.received.append(data.decode("latin-1")[:2000])
            conn.close()


def _grade(cells: list[str], work: Path, limits: bool) -> tuple[NotebookNode, dict, float]:
    from grader.engine.execute import SandboxedExecute

    nb = new_notebook(cells=[new_code_cell(source) for source in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    execute = SandboxedExecute(timeout=30, grading_budget=90, whole_submission_limits=limits)
    started = time.monotonic()
    nb, resources = execute.preprocess(nb, {"metadata": {"path": str(work)}})
    return nb, resources, time.monotonic() - started


def main(folder: Path, limits: bool, rounds: int = 3) -> dict:
    host = HostSocket(folder / "host.sock")
    work = folder / "work"
    work.mkdir(exist_ok=True)
    notebooks = {
        "swapper": ["print('BEFORE')", SWAP.format(host=str(host.path), rounds=rounds), "print('AFTER')"],
        "other": ["print('OTHER ONE')", "print('OTHER TWO')"],
    }
    report: dict = {"outputs": {}, "problems": {}, "seconds": {}}
    for name, cells in notebooks.items():
        nb, resources, seconds = _grade(cells, work, limits)
        report["outputs"][name] = [" ".join(str(o.get("text") or o.get("evalue") or "") for o in cell.outputs)
                                   for cell in nb.cells]
        report["problems"][name] = {str(k): v for k, v in resources[RESOURCE_KEY].problems.items()}
        report["seconds"][name] = round(seconds, 1)
    time.sleep(1)  # a connection on its way would have arrived by now
    report["host"] = host.received
    from grader.engine import template

    report["templates"] = template.running()
    return report


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), "--limits" in sys.argv)))
