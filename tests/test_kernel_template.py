"""Kernels forked from one template are as separate as kernels started cold (``grader.engine.template``).

Each test starts real sandboxed kernels (``SandboxedKernelManager`` with the
template) and has them attack each other: what one kernel writes (memory it
inherited, files, sockets, environment) another never sees; the template
holds no submission, key or course file; a killed template costs a fresh
start, never a kernel; a template older than the assignment's modules or the
packages is replaced.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from jupyter_core.utils import run_sync

from grader import student_side
from grader.engine import template
from grader.engine.sandbox import Limits, SandboxedKernelManager, check_available, check_limits_available
from grader.engine.template import ASSIGNMENT_MODULES

REPO = student_side.REPOSITORY

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _sandbox() -> Iterator[None]:
    check_available()
    check_limits_available()
    yield
    template.close_all()


class Kernel:
    """A started sandboxed kernel and a way to run code in it."""

    def __init__(self, km: SandboxedKernelManager) -> None:
        self.km = km
        self.client = km.blocking_client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def run(self, code: str, timeout: float = 60) -> str:
        """What ``code`` printed; an error in it fails the test with its traceback."""
        msg_id = self.client.execute(code)
        printed, deadline = [], time.monotonic() + timeout
        while True:
            msg = self.client.get_iopub_msg(timeout=max(1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                printed.append(content["text"])
            elif kind == "error":
                pytest.fail("\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(printed)

    def json(self, code: str) -> object:
        return json.loads(self.run(code).strip().splitlines()[-1])

    @property
    def warden_pid(self) -> int:
        process = self.km.provisioner.process  # type: ignore[union-attr]
        return int(process.pid)


@contextmanager
def kernel(folder: Path, use_template: bool = True) -> Iterator[Kernel]:
    km = SandboxedKernelManager(kernel_name="python3", limits=Limits(), use_template=use_template)
    km.prepare(folder, True)
    try:
        run_sync(km.start_kernel)()
        started = Kernel(km)
        try:
            yield started
        finally:
            started.client.stop_channels()
            run_sync(km.shutdown_kernel)(now=True)
    finally:
        km.cleanup_scratch()


def the_template() -> template.KernelTemplate:
    (only,) = template._templates.values()
    return only


def submission(tmp_path: Path, name: str, secret: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "answers.txt").write_text(secret)
    return folder


LEAVE_TRACES = """
import os, socket, sys
secret = {secret!r}
os.environ["UNET_SECRET"] = secret
for place in ("/tmp/secret.txt", "/dev/shm/secret", "here.txt", os.path.expanduser("~/secret")):
    with open(place, "w") as out:
        out.write(secret)
listener = socket.socket(socket.AF_UNIX)
listener.bind("\\0" + secret)
listener.listen()
held = [secret * 100 for _ in range(100)]
import numpy
numpy.UNET_SECRET = secret
sys.modules["tensorflow"].__version__ = secret
print("left")
"""

# The needle is written backwards: the code a kernel runs is kept in its own history.
LOOK_FOR_TRACES = """
import json, os, socket, sys
needle = {needle!r}[::-1]
seen, pids = [], [int(p) for p in os.listdir("/proc") if p.isdigit()]
for top in ("/tmp", "/dev/shm", "/sandbox", os.path.expanduser("~")):
    for root, dirs, files in os.walk(top):
        for name in files:
            try:
                with open(os.path.join(root, name), "rb") as f:
                    if needle.encode() in f.read():
                        seen.append(os.path.join(root, name))
            except OSError:
                pass
for pid in pids:
    for part in ("environ", "cmdline"):
        try:
            with open(f"/proc/{{pid}}/{{part}}", "rb") as f:
                if needle.encode() in f.read():
                    seen.append(f"/proc/{{pid}}/{{part}}")
        except OSError:
            pass
try:
    probe = socket.socket(socket.AF_UNIX)
    probe.connect("\\0" + needle)
    seen.append("the other kernel's socket")
except OSError:
    pass
import numpy, tensorflow
if needle in (getattr(numpy, "UNET_SECRET", None), tensorflow.__version__, os.environ.get("UNET_SECRET")):
    seen.append("memory inherited from the template")
print(json.dumps({{"seen": seen, "pids": sorted(pids)}}))
"""


def test_two_kernels_of_one_template_see_nothing_of_each_other(tmp_path: Path) -> None:
    secret_a, secret_b = f"A-{uuid.uuid4().hex}", f"B-{uuid.uuid4().hex}"
    with kernel(submission(tmp_path, "a", secret_a)) as a, kernel(submission(tmp_path, "b", secret_b)) as b:
        assert a.run(LEAVE_TRACES.format(secret=secret_a)).strip() == "left"
        assert len(template._templates) == 1, "both kernels come from one template"
        found = b.json(LOOK_FOR_TRACES.format(needle=secret_a[::-1]))
        assert found["seen"] == []  # type: ignore[index]
        # Its own pid namespace: an init (1) and the kernel (2), nothing of the other kernel's.
        assert found["pids"] == [1, 2]  # type: ignore[index]
        # The same attack the other way round, while the first kernel's traces are still there.
        assert b.run(LEAVE_TRACES.format(secret=secret_b)).strip() == "left"
        assert a.json(LOOK_FOR_TRACES.format(needle=secret_b[::-1]))["seen"] == []  # type: ignore[index]
        # Each sees its own submission's files and nothing else's.
        assert a.run("print(open('answers.txt').read())").strip() == secret_a
        assert b.run("print(sorted(os.listdir('.')))").strip() == "['answers.txt', 'here.txt']"


def test_memory_a_kernel_scribbles_over_is_its_own(tmp_path: Path) -> None:
    """Memory inherited from the template, written over in place, is a copy: the next kernel has the original."""
    scribble = """
import ctypes, numpy, sys
victim = numpy.__version__
ctypes.memset(id(victim) + sys.getsizeof(victim) - len(victim) - 1, ord("X"), len(victim))
print(numpy.__version__)
"""
    with kernel(submission(tmp_path, "a", "a")) as a:
        assert set(a.run(scribble).strip()) == {"X"}
        pid = the_template().pid
    with kernel(submission(tmp_path, "b", "b")) as b:
        assert the_template().pid == pid
        version = b.run("import numpy; print(numpy.__version__)").strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version


def _memory_of(pid: int) -> bytes:
    """Every readable, private, written region of process ``pid`` (its heap and the like)."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if not fields[1].startswith("rw") or end - start > 1 << 30:
                continue
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except (OSError, ValueError, OverflowError):
                continue
    return b"".join(chunks)


def test_the_template_holds_no_submission_key_or_course_file(tmp_path: Path) -> None:
    secret = f"S-{uuid.uuid4().hex}"
    with kernel(submission(tmp_path, "a", secret)) as a:
        a.run("print(open('answers.txt').read())")
        key = a.km.session.key
        pid = the_template().pid
        opened = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        memory = _memory_of(pid)
    assert len(memory) > 10 * 2**20, "the template's memory was read"
    assert secret.encode() not in memory
    assert key and key not in memory
    # A course file: the source notebook, with the reference solutions and hidden tests.
    notebook = (REPO / "notebooks" / "unet_segmentation" / "unet.ipynb").read_text()
    assert notebook[200:400].encode() not in memory
    course = str(REPO)
    assert not [path for path in opened if path.startswith((course, str(tmp_path)))], opened
    root = os.readlink(f"/proc/{pid}/root")
    assert root == "/"  # its own root: the sandbox's view, where no course folder is mounted
    # Of the course folder, its view holds at most the Python environment (when .venv lives there).
    seen = Path(f"/proc/{pid}/root{REPO}")
    assert not seen.exists() or {p.name for p in seen.iterdir()} <= {".venv"}


def test_a_killed_template_costs_a_fresh_start_not_a_kernel(tmp_path: Path) -> None:
    with kernel(submission(tmp_path, "a", "a")) as a:
        old = the_template()
        os.kill(old.pid, signal.SIGKILL)
        # The kernel forked before goes on as if nothing happened.
        assert a.run("import tensorflow as tf; print(int(tf.reduce_sum(tf.ones(4))))").strip() == "4"
        # The next kernel is forked from a new template, or starts cold when the dead template's sandbox had
        # not ended yet as it asked (the moment of the kill decides): either way it runs its own submission.
        with kernel(submission(tmp_path, "b", "b")) as b:
            assert b.run("print(open('answers.txt').read())").strip() == "b"
    # At the latest, the kernel after that one is forked from a new template.
    with kernel(submission(tmp_path, "c", "c")) as c:
        assert c.run("print(open('answers.txt').read())").strip() == "c"
        assert c.km._forked is not None
        assert the_template() is not old and the_template().alive()
    assert not old.alive()


def test_a_template_older_than_the_assignment_or_the_packages_is_replaced(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    course = tmp_path / "course"
    course.mkdir()
    for name in ASSIGNMENT_MODULES:
        shutil.copy(student_side.ASSIGNMENT_DIR / f"{name}.py", course)
    packages = tmp_path / "site-packages"
    packages.mkdir()
    monkeypatch.setattr(student_side, "ASSIGNMENT_DIR", course)
    monkeypatch.setattr(sys, "path", [*sys.path, str(packages)])
    folder = submission(tmp_path, "a", "a")
    pids = []
    for change in (None, lambda: (course / "spec_checks.py").write_text("import colorsys\n"),
                   lambda: (packages / "newpackage-1.0.dist-info").mkdir()):
        if change is not None:
            time.sleep(0.01)
            change()
        with kernel(folder) as k:
            k.run("print(1)")
            pids.append(the_template().pid)
            imports = the_template().imports
    assert len(set(pids)) == 3, pids
    # What the changed module imports is now imported by the template.
    assert "colorsys" in imports
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids[:2])


def test_the_forked_kernel_has_the_cold_kernels_sandbox(tmp_path: Path) -> None:
    """The same limits, environment, capabilities and read-only view as a kernel bubblewrap starts from nothing."""
    look = """
import json, os, resource
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
limits = {n: resource.getrlimit(getattr(resource, n)) for n in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE",
                                                               "RLIMIT_NOFILE")}
writable = []
for place in ("/", "/usr", "/etc", "/proc/sys", "/sandbox/data", "/sandbox/scratch/work", "/tmp", "/dev/shm",
              "/sandbox/ipc", os.path.dirname(os.environ.get("JPY_CONNECTION", "/sandbox")) or "/"):
    try:
        with open(os.path.join(place, ".probe"), "w"):
            pass
        writable.append(place)
    except OSError:
        pass
import socket
try:
    socket.create_connection(("1.1.1.1", 53), timeout=1)
    network = True
except OSError:
    network = False
print(json.dumps({"caps": [status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")],
                  "nnp": status["NoNewPrivs"].strip(), "uid": os.getuid(), "limits": limits,
                  "env": sorted(k for k in os.environ if not k.startswith(("JPY", "CLICOLOR", "FORCE_COLOR",
                                                                            "PAGER", "GIT_PAGER", "TERM",
                                                                            "MPLBACKEND", "PYDEVD"))),
                  "writable": writable, "network": network, "cwd": os.getcwd(), "pid": os.getpid()}))
"""
    folder = submission(tmp_path, "a", "a")
    seen = {}
    for use_template in (False, True):
        with kernel(folder, use_template) as k:
            seen[use_template] = k.json(look)
    assert seen[True] == seen[False]
    assert seen[True]["caps"] == ["0000000000000000"] * 5  # type: ignore[index]
    assert seen[True]["writable"] == ["/sandbox/scratch/work", "/tmp", "/dev/shm", "/sandbox/ipc"]  # type: ignore[index]


def test_where_no_template_can_start_the_kernel_starts_cold_and_says_why(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    from grader.engine import sandbox

    monkeypatch.setattr(sandbox, "template_command", lambda data_dir: ["bwrap", "--no-such-option"])
    with caplog.at_level("WARNING"), kernel(submission(tmp_path, "a", "cold")) as k:
        assert k.run("print(open('answers.txt').read())").strip() == "cold"
        assert k.km._forked is None
        # The next kernel does not wait for a template that will not come, and says so.
        with kernel(submission(tmp_path, "b", "cold too")) as again:
            assert again.run("print(open('answers.txt').read())").strip() == "cold too"
            assert again.km._forked is None
    said = [r.getMessage() for r in caplog.records if "Kernel template not used" in r.getMessage()]
    assert len(said) == 2 and all("the template did not start" in line for line in said), said
    assert "at most one try every" in said[1]
