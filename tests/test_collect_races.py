"""Collecting a submission while its student swaps parts of it: nothing but her own work is ever collected.

Throw-away unix accounts play the students.  The attacker owns her
submission folder in ``inbound`` and, while the grader collects, keeps
swapping (``renameat2(RENAME_EXCHANGE)``, in a tight loop or timed by an
inotify watch on her own folder) her notebook for a link to the course's
source notebook, an empty subfolder for a link to another student's
collected folder, and ``timestamp.txt`` for a named pipe.  Collect runs as
root, who could read all of those, so only the descriptor-based copy stands
between her and them.  A control run shows that nbgrader's own path-based
collect does take the source notebook under the same attack.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nbgrader.auth import Authenticator
from nbgrader.coursedir import CourseDirectory
from nbgrader.exchange.default.collect import ExchangeCollect

from grader.course import make_alembic_findable
from hub.student.exchange import OwnerCheckedCollect

make_alembic_findable()  # collect opens the gradebook, which nbgrader makes with alembic

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux",
                                reason="needs root for throw-away unix accounts (Linux)")

COURSE, ASSIGNMENT, NOTEBOOK = "race-course", "race_assignment", "unet.ipynb"
GENUINE, SOURCE, OTHER = "GENUINE-WORK-OF-ANN", "REFERENCE-SOLUTIONS-SOURCE", "WORK-AND-SECRET-OF-BEN"
# The student's side: stdlib only, run by the system's Python as her account.
SWAPPER = r"""
import ctypes, os, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE, AT_FDCWD, SYS_RENAMEAT2 = 2, -100, 316
folder, mode, seconds, pairs = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
pairs = [(a.encode(), b.encode()) for a, b in zip(pairs[::2], pairs[1::2])]
def swap():
    for a, b in pairs:
        libc.syscall(SYS_RENAMEAT2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
deadline = time.monotonic() + seconds
if mode == "loop":
    while time.monotonic() < deadline:
        swap()
else:  # swap the moment the grader opens or reads anything in her folder
    IN_ACCESS, IN_OPEN, IN_NONBLOCK = 0x1, 0x20, 0x800
    fd = libc.inotify_init1(IN_NONBLOCK)
    libc.inotify_add_watch(fd, folder.encode(), IN_ACCESS | IN_OPEN)
    swaps = 0
    while time.monotonic() < deadline:
        try:
            os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.0005)
            continue
        swap()
        swaps += 1
    print(swaps)
"""


def _make_account(tag: str) -> str:
    name = f"unet-r{tag}{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True)
    return name


class Exchange:
    """An exchange and course laid out as the hub lays them out, in a folder every account can traverse."""

    def __init__(self, top: Path, student: str):
        self.top, self.student = top, student
        self.root = top / "exchange"
        self.inbound = self.root / COURSE / "inbound"
        self.inbound.mkdir(parents=True)
        os.chmod(self.inbound, 0o3733)
        self.course = top / "course"
        (self.course / "source").mkdir(parents=True, mode=0o700)
        self.source = self.course / "source" / NOTEBOOK
        self.source.write_text(SOURCE)
        os.chmod(self.course, 0o700)
        # Another student's submission as collect left it in the course folder, with her secret.
        self.other = self.course / "submitted" / "ben" / ASSIGNMENT
        self.other.mkdir(parents=True)
        (self.other / NOTEBOOK).write_text(OTHER)
        (self.other / "submission_secret.txt").write_text(OTHER)
        os.chmod(self.course / "submitted", 0o700)

    def submit(self) -> Path:
        """A fresh submission of the student's; beside it, in a folder of hers, the decoys she will swap in."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
        folder = self.inbound / f"{self.student}+{ASSIGNMENT}+{stamp}+{secrets.token_hex(4)}"
        folder.mkdir()
        (folder / NOTEBOOK).write_text(GENUINE)
        (folder / "timestamp.txt").write_text(stamp)
        (folder / "submission_secret.txt").write_text(secrets.token_hex(64))
        (folder / "extra").mkdir()
        decoys = self.decoys(folder)
        decoys.mkdir()
        os.symlink(self.source, decoys / NOTEBOOK)
        os.symlink(self.other, decoys / "extra")
        os.mkfifo(decoys / "timestamp.txt")
        uid = pwd.getpwnam(self.student).pw_uid
        for path in [folder, *folder.iterdir(), decoys, *decoys.iterdir()]:
            os.chown(path, uid, uid, follow_symlinks=False)
        os.chmod(folder, 0o750)
        return folder

    def decoys(self, folder: Path) -> Path:
        return self.top / f"decoys-{folder.name.rsplit('+', 1)[1]}"

    def swaps(self, folder: Path, *names: str) -> list[str]:
        """The pairs of paths the attacker exchanges: each part of her submission and its decoy."""
        return [str(p) for name in names for p in (folder / name, self.decoys(folder) / name)]

    def collect(self, only: str | None = None, klass: type = OwnerCheckedCollect):
        shutil.rmtree(self.course / "submitted" / self.student, ignore_errors=True)
        coursedir = CourseDirectory(root=str(self.course), course_id=COURSE, assignment_id=ASSIGNMENT,
                                    student_id=self.student)
        collector = klass(coursedir=coursedir, authenticator=Authenticator(), root=str(self.root))
        collector.update = True
        if only is not None:
            collector.only = only
        collector.start()
        return collector, self.course / "submitted" / self.student / ASSIGNMENT

    def attack(self, folder: Path, mode: str, seconds: float, *names: str) -> subprocess.Popen:
        entry = pwd.getpwnam(self.student)
        pairs = self.swaps(folder, *names)
        return subprocess.Popen(["/usr/bin/python3", "-I", "-c", SWAPPER, str(folder), mode, str(seconds), *pairs],
                                user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], cwd="/",
                                stdout=subprocess.PIPE, text=True)


@pytest.fixture
def exchange() -> Iterator[Exchange]:
    student = _make_account("a")
    top = Path(tempfile.mkdtemp(prefix="unet-race-", dir="/tmp"))
    os.chmod(top, 0o755)
    try:
        yield Exchange(top, student)
    finally:
        shutil.rmtree(top, ignore_errors=True)
        subprocess.run(["userdel", student], check=True)


def everything_collected(folder: Path) -> str:
    if not folder.exists():
        return ""
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


# A collect that opened the student's pipe waits forever; one that is only slow (a busy machine, the attacker
# spinning on a core for its 30 s) ends soon after the attack does.  Four times the attack tells them apart.
HANG_SECONDS = 120


def within(seconds: float, work) -> object:
    """Run ``work`` in a thread; fail if it has not returned in ``seconds`` (a worker waiting on a pipe)."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"collect still running after {seconds} s: it waits on the student's file"
    return result[0]


PARTS = [NOTEBOOK, "extra", "timestamp.txt"]


def test_without_an_attack_her_work_is_collected_as_it_is(exchange):
    folder = exchange.submit()
    for only in (None, folder.name):
        collector, collected = exchange.collect(only)
        assert collector.refused == {}
        assert (collected / NOTEBOOK).read_text() == GENUINE
        assert (collected / "timestamp.txt").read_text() == folder.name.split("+")[2]
        assert (collected / "extra").is_dir()


@pytest.mark.parametrize("mode", ["loop", "watch"])
@pytest.mark.parametrize("grading_on_submit", [False, True], ids=["batch collect", "grading on submit"])
def test_swaps_during_collect_never_bring_in_the_source_or_another_students_work(exchange, mode,
                                                                                 grading_on_submit):
    outcomes = {"collected": 0, "refused": 0}
    reasons = set()
    for _ in range(40):
        folder = exchange.submit()
        attacker = exchange.attack(folder, mode, 30.0, *PARTS)
        time.sleep(0.1)  # the attacker is up (and, for the watch, watching)
        try:
            collector, collected = within(HANG_SECONDS, lambda f=folder: exchange.collect(f.name if grading_on_submit
                                                                                 else None))
        finally:
            attacker.kill()
            attacker.wait(timeout=30)
        seen = everything_collected(collected)
        assert SOURCE not in seen and OTHER not in seen, (collector.refused, seen[:200])
        if folder.name in collector.refused:
            outcomes["refused"] += 1
            reasons.add(collector.refused[folder.name].split(" ", 1)[-1][:40])
            assert not collected.exists()
        else:
            outcomes["collected"] += 1
            assert (collected / NOTEBOOK).read_text() == GENUINE
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{mode}, {'on submit' if grading_on_submit else 'batch'}: {outcomes}; reasons seen: {sorted(reasons)}")
    assert outcomes["refused"] > 0  # the swaps did happen while collecting


def test_nbgrader_s_own_collect_takes_the_source_under_the_same_attack(exchange):
    """The control: without descriptors, the same loop brings the source notebook in (so the test above can fail)."""
    leaked = 0
    for _ in range(20):
        folder = exchange.submit()
        attacker = exchange.attack(folder, "loop", 30.0, NOTEBOOK)
        time.sleep(0.1)
        try:
            _, collected = exchange.collect(klass=ExchangeCollect)
        except Exception:  # noqa: BLE001 - nbgrader may also trip over the swap; that is not the point here
            collected = Path("/nonexistent")
        finally:
            attacker.kill()
            attacker.wait(timeout=30)
        leaked += SOURCE in everything_collected(collected)
        shutil.rmtree(folder, ignore_errors=True)
        if leaked:
            break
    assert leaked, "nbgrader's collect never followed the swapped-in link in 20 tries"


def test_a_pipe_link_or_other_accounts_file_in_place_is_refused_with_the_part_named(exchange):
    folder = exchange.submit()
    cases = {
        "unet.ipynb is a link": lambda: ((folder / NOTEBOOK).unlink(), os.symlink(exchange.source, folder / NOTEBOOK)),
        "timestamp.txt is a named pipe": lambda: ((folder / "timestamp.txt").unlink(),
                                                  os.mkfifo(folder / "timestamp.txt"),
                                                  os.chown(folder / "timestamp.txt", *_ids(exchange.student))),
        "extra is a link": lambda: (os.rmdir(folder / "extra"), os.symlink(exchange.other, folder / "extra")),
    }
    for expected, spoil in cases.items():
        fresh = exchange.submit()
        folder = fresh
        spoil()
        os.lchown(folder / expected.split(" ")[0], *_ids(exchange.student))
        collector, collected = within(HANG_SECONDS, lambda f=fresh: exchange.collect(f.name))
        assert expected in collector.refused[fresh.name], collector.refused
        assert not collected.exists()
        shutil.rmtree(fresh, ignore_errors=True)


def _ids(account: str) -> tuple[int, int]:
    entry = pwd.getpwnam(account)
    return entry.pw_uid, entry.pw_gid


def test_a_folder_of_another_account_in_her_name_is_refused_with_both_names(exchange):
    folder = exchange.submit()
    os.chown(folder, 0, 0)  # as if another account had made it and named it after her
    collector, collected = exchange.collect(folder.name)
    assert collector.refused[folder.name] == f"it claims to be {exchange.student}'s submission but belongs to root"
    assert not collected.exists()
