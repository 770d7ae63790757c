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
    """nbgrader's name for a submission, read as its collect reads it: ``student+assignment+timestamp+random``."""
    parts = name.rsplit("+", 3)
    if len(parts) != 4 or not all(parts[:3]):
        return None
    return Found(name, parts[0], parts[1], parts[2])


def settled(path: Path, timestamp: str) -> bool:
    """Whether nbgrader's submit has finished writing ``path``.

    It writes the notebooks, then ``timestamp.txt``, then
    ``submission_secret.txt`` (which feedback needs), in one go.
    """
    try:
        return ((path / "timestamp.txt").read_text().strip() == timestamp
                and len((path / "submission_secret.txt").read_text().strip()) >= SECRET_LENGTH)
    except OSError:
        return False


class Inbox:
    """Queues what arrives in ``inbound``; remembers what it refused, for the instructor."""

    def __init__(self, inbound: Path, queue: Queue, policies: PolicyFile):
        self.inbound, self.queue, self.policies = inbound, queue, policies
        self.refused: dict[str, str] = {}
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
            if found is None:
                continue
            policy = self.policies.of(found.assignment)
            if not policy.grade_on_submit or not settled(self.inbound / name, found.timestamp):
                continue
            owner = _owner(self.inbound / name)
            if owner != found.student:
                self.refused[name] = f"claims to be {found.student}'s submission but belongs to {owner}"
                continue
            if self.queue.add(name, found.student, found.assignment, found.timestamp, policy.per_hour):
                added.append(name)
            self._known.add(name)
        return added


def _owner(path: Path) -> str | None:
    try:
        return pwd.getpwuid(path.lstat().st_uid).pw_name
    except (KeyError, OSError):
        return None
