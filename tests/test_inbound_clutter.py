"""One student's clutter in the exchange's inbound folder costs only that student.

Throw-away accounts: ann leaves thousands of incomplete folders (and
forgeries named after ben); ben then submits.  The grading service must
queue ben's submission on its next scan, never let ann's folders bury it,
tell ann (and the instructor) what it leaves aside, and not look at ann's
folders again on every scan.  The inbound folder's sticky bit keeps ann
from renaming or removing ben's submission.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.grade_on_submit.inbox import PENDING_PER_ACCOUNT, Inbox
from hub.grade_on_submit.policy import PolicyFile
from hub.grade_on_submit.queue import Queue, open_engine

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for throw-away unix accounts")

CLUTTER = 20_000


@pytest.fixture
def accounts() -> Iterator[tuple[str, str]]:
    names = [f"unet-c{who}{secrets.token_hex(3)}" for who in ("a", "b")]
    for name in names:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True)
    try:
        yield names[0], names[1]
    finally:
        for name in names:
            subprocess.run(["userdel", name], check=True)


@pytest.fixture
def inbound() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="unet-inbound-", dir="/tmp"))
    os.chmod(top, 0o755)
    (top / "inbound").mkdir()
    os.chmod(top / "inbound", 0o3733)
    try:
        yield top / "inbound"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def as_account(name: str, code: str, *args: str) -> subprocess.CompletedProcess:
    entry = pwd.getpwnam(name)
    return subprocess.run(["/usr/bin/python3", "-I", "-c", code, *args], user=entry.pw_uid, group=entry.pw_gid,
                          extra_groups=[], cwd="/", capture_output=True, text=True, timeout=300)


MAKE_CLUTTER = """
import os, sys
inbound, me, other, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
for i in range(count):
    # Incomplete folders of her own, newer than anything real, and forgeries named after the other student.
    os.mkdir(os.path.join(inbound, f"{me}+hw+2099-01-01 00:00:{i:09d} UTC+x"))
    os.mkdir(os.path.join(inbound, f"{other}+hw+2099-01-01 00:00:{i:09d} UTC+x"))
"""

SUBMIT = """
import os, secrets, sys
from datetime import datetime, timezone
inbound, me = sys.argv[1], sys.argv[2]
stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
folder = os.path.join(inbound, f"{me}+hw+{stamp}+{secrets.token_hex(4)}")
os.mkdir(folder, 0o750)
for name, text in (("unet.ipynb", "{}"), ("timestamp.txt", stamp), ("submission_secret.txt", secrets.token_hex(64))):
    with open(os.path.join(folder, name), "w") as fh:
        fh.write(text)
print(os.path.basename(folder))
"""


def test_a_students_clutter_neither_buries_nor_slows_another_students_submission(tmp_path, inbound, accounts):
    ann, ben = accounts
    made = as_account(ann, MAKE_CLUTTER, str(inbound), ann, ben, str(CLUTTER))
    assert made.returncode == 0, made.stderr
    (tmp_path / "policy.json").write_text(json.dumps({"hw": {"grade_on_submit": True}}))
    queue = Queue(open_engine(f"sqlite:///{tmp_path / 'queue.sqlite'}"))
    box = Inbox(inbound, queue, PolicyFile(tmp_path / "policy.json"))
    started = time.perf_counter()
    assert box.scan() == []
    first = time.perf_counter() - started
    # Ann's forgeries are refused as hers, and her own incomplete folders beyond the newest few are left aside.
    forged = [why for name, why in box.refused.items() if name.startswith(f"{ben}+")]
    assert len(forged) == CLUTTER and all(f"belongs to {ann}" in why for why in forged)
    assert box.clutter == {ann: CLUTTER - PENDING_PER_ACCOUNT}
    assert len(box._pending) == PENDING_PER_ACCOUNT
    said = box.clutter_of(ann)
    assert said is not None and f"{CLUTTER - PENDING_PER_ACCOUNT} folder(s) of yours" in said
    assert box.clutter_of(ben) is None
    assert any(ann in name and "more" in name for name in box.stalled(seconds=0))

    # Nothing changed: the next scans look only at ann's few pending folders, not at the listing.
    relisted = []
    original = box._relist
    box._relist = lambda changed: (relisted.append(1), original(changed))  # type: ignore[method-assign]
    started = time.perf_counter()
    for _ in range(10):
        box.scan()
    quiet = (time.perf_counter() - started) / 10
    assert relisted == []

    # Ben submits, with ann's forgeries in his name all around: queued on the very next scan.
    submitted = as_account(ben, SUBMIT, str(inbound), ben)
    assert submitted.returncode == 0, submitted.stderr
    started = time.perf_counter()
    queued = box.scan()
    after = time.perf_counter() - started
    assert queued == [submitted.stdout.strip()]
    assert [(r.student, r.folder) for r in queue.all()] == [(ben, submitted.stdout.strip())]
    print(f"\n{2 * CLUTTER} folders in inbound: first scan {first * 1000:.0f} ms, scans while nothing changed "
          f"{quiet * 1000:.2f} ms, the scan that found ben's submission {after * 1000:.0f} ms")


def test_the_sticky_inbound_keeps_one_student_from_renaming_or_removing_anothers_submission(inbound, accounts):
    ann, ben = accounts
    submitted = as_account(ben, SUBMIT, str(inbound), ben)
    assert submitted.returncode == 0, submitted.stderr
    name = submitted.stdout.strip()
    tries = as_account(ann, """
import os, shutil, sys
inbound, name = sys.argv[1], sys.argv[2]
for what, act in [("rename", lambda: os.rename(os.path.join(inbound, name), os.path.join(inbound, "mine"))),
                  ("remove", lambda: os.rmdir(os.path.join(inbound, name)))]:
    try:
        act()
        print(what, "worked")
    except OSError as error:
        print(what, "refused", error.errno)
""", str(inbound), name)
    assert tries.stdout.split("\n")[:2] == ["rename refused 1", "remove refused 1"], tries.stdout + tries.stderr
    assert (inbound / name / "timestamp.txt").is_file()


def test_an_over_size_submission_gets_a_sentence_and_nothing_is_lost(tmp_path, inbound, monkeypatch):
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.abc.exchange import ExchangeError

    from hub.student.exchange import PrivateSubmit

    (inbound.parent / "course").mkdir()
    os.rename(inbound, inbound.parent / "course" / "inbound")
    (inbound.parent / "course" / "outbound" / "hw").mkdir(parents=True)
    (inbound.parent / "course" / "outbound" / "hw" / "unet.ipynb").write_text("{}")
    work = tmp_path / "hw"
    work.mkdir()
    (work / "unet.ipynb").write_text("{}")
    (work / "model.keras").write_bytes(b"\0" * 5_000_000)
    monkeypatch.chdir(tmp_path)
    coursedir = CourseDirectory(root=str(tmp_path), course_id="course", assignment_id="hw", max_dir_size=1000)
    submit = PrivateSubmit(coursedir=coursedir, authenticator=Authenticator(), root=str(inbound.parent))
    with pytest.raises(ExchangeError) as refused:
        submit.start()
    said = str(refused.value)
    assert "Not submitted" in said and "holds 5.0 MB" in said and "at most 1.0 MB" in said, said
    inbound = inbound.parent / "course" / "inbound"
    assert list(inbound.iterdir()) == []  # nothing half-submitted
    assert (work / "model.keras").stat().st_size == 5_000_000  # and nothing of hers touched


def test_a_scan_that_queues_a_submission_rings_the_workers_and_a_quiet_one_does_not(tmp_path, inbound, accounts):
    from hub.grade_on_submit.policy import FILE_NAME
    from hub.grade_on_submit.service import GradingService
    from hub.grade_on_submit.settings import Settings

    _, ben = accounts
    (tmp_path / FILE_NAME).write_text(json.dumps({"hw": {"grade_on_submit": True}}))
    service = GradingService(Settings(tmp_path, inbound, f"sqlite:///{tmp_path / 'queue.sqlite'}"))
    bell = service.doorbells.new("worker-1")
    os.set_blocking(bell, False)
    try:
        service.scan()
        with pytest.raises(BlockingIOError):
            os.read(bell, 16)  # nothing queued, nothing rung
        submitted = as_account(ben, SUBMIT, str(inbound), ben)
        assert submitted.returncode == 0, submitted.stderr
        service.scan()
        assert os.read(bell, 16) == b"!"
        assert [r.folder for r in service.queue.all()] == [submitted.stdout.strip()]
    finally:
        service.stop()
        os.close(bell)
