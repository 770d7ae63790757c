"""Finding new submissions in the exchange's inbound folder and queueing them.

A submission is queued once nbgrader's submit has finished writing it
(``settled``), and only for an assignment
whose policy grades on submit.  A folder that does not belong to the
account its name claims is not queued: it is listed for the instructor,
never shown to the student it names.
"""

from __future__ import annotations

import os
import pwd
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from hub.grade_on_submit.policy import PolicyFile
from hub.grade_on_submit.queue import Queue

# nbgrader's submission secret: secrets.token_hex(64).
SECRET_LENGTH = 128


@dataclass(frozen=True)
class Found:
    folder: str
    student: str
    assignment: str
    timestamp: str


def parse_name(name: str) -> Found | None:
    """nbgrader's name for a submission (``student+assignment+timestamp[+random]``), read as its collect reads it."""
    parts = name.rsplit("+", 3)
    if len(parts) < 3 or not all(parts[:3]):
        return None
    return Found(name, parts[0], parts[1], parts[2])


def _small_file(folder: int, name: str) -> str | None:
    """The text of a regular file ``name`` in the open folder ``folder``, read without following a link or
    waiting on a pipe, and at most 1 KiB of it; None if it is not such a file."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 1024).decode(errors="replace").strip()
    finally:
        os.close(fd)


def settled(path: Path, timestamp: str) -> bool:
    """Whether nbgrader's submit has finished writing the folder ``path`` (which its student owns).

    Submit writes the notebooks, then ``timestamp.txt``, then
    ``submission_secret.txt`` (which feedback needs).  The folder is the
    student's: a link or a pipe in place of these files must not make the
    service read elsewhere or wait.
    """
    try:
        folder = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        secret = _small_file(folder, "submission_secret.txt") or ""
        return _small_file(folder, "timestamp.txt") == timestamp and len(secret) >= SECRET_LENGTH
    finally:
        os.close(folder)


class Inbox:
    """Queues what arrives in ``inbound``; remembers, for the instructor, what it refused and what never settled."""

    def __init__(self, inbound: Path, queue: Queue, policies: PolicyFile, clock=time.time):
        self.inbound, self.queue, self.policies, self.clock = inbound, queue, policies, clock
        self.refused: dict[str, str] = {}
        # Folders of assignments graded on submit that are not complete yet: name -> when first seen.
        self.unsettled: dict[str, float] = {}
        self._known: set[str] = set()

    def scan(self) -> list[str]:
        """Queue every new settled submission of an assignment graded on submit; the folders queued."""
        self.policies.refresh()
        if not self._known:
            self._known = self.queue.known_folders()
        added = []
        with os.scandir(self.inbound) as entries:
            names = sorted(e.name for e in entries if e.name not in self._known and e.name not in self.refused)
        for name in names:
            found = parse_name(name)
            if found is None or not self.policies.of(found.assignment).grade_on_submit:
                continue
            owner = _owner(self.inbound / name)
            if owner != found.student:
                self.refused[name] = f"claims to be {found.student}'s submission but belongs to {owner}"
                continue
            if not settled(self.inbound / name, found.timestamp):
                self.unsettled.setdefault(name, self.clock())
                continue
            self.unsettled.pop(name, None)
            if self.queue.add(name, found.student, found.assignment, found.timestamp,
                              self.policies.of(found.assignment).per_hour):
                added.append(name)
            self._known.add(name)
        return added

    def stalled(self, seconds: float = 60.0) -> dict[str, str]:
        """Folders still incomplete ``seconds`` after they appeared (a submit that crashed, or one made by hand)."""
        now = self.clock()
        return {name: f"incomplete for {now - seen:.0f} s: no timestamp.txt matching its name, or no "
                      "submission_secret.txt (a submit that stopped half-way, or a folder made by hand)"
                for name, seen in sorted(self.unsettled.items()) if now - seen >= seconds}


def _owner(path: Path) -> str | None:
    try:
        return pwd.getpwuid(path.lstat().st_uid).pw_name
    except (KeyError, OSError):
        return None
