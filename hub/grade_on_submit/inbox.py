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


# Incomplete folders of one account looked at in each scan; more are that account's clutter (see Inbox).
PENDING_PER_ACCOUNT = 5
# How often the whole folder is listed again while nothing in it changed (a folder may become complete).
RELIST_SECONDS = 5.0


class Inbox:
    """Queues what arrives in ``inbound``; remembers, for the instructor, what it refused and what never settled.

    Every account can add folders to ``inbound``, so the work a scan does
    must not grow with one student's clutter: a folder is examined once
    (refused, queued, or not a submission of an assignment graded on
    submit) and then remembered; of the incomplete folders, which must be
    looked at again until they are complete, only the newest
    ``PENDING_PER_ACCOUNT`` of each account (the owner, not the name a
    folder claims, so nobody can bury another student's submission) are;
    the folder is listed again only when it changed.  ``clutter`` counts,
    per account, the incomplete folders left aside.
    """

    def __init__(self, inbound: Path, queue: Queue, policies: PolicyFile, clock=time.time):
        self.inbound, self.queue, self.policies, self.clock = inbound, queue, policies, clock
        self.refused: dict[str, str] = {}
        # Folders of assignments graded on submit that are not complete yet: name -> when first seen.
        self.unsettled: dict[str, float] = {}
        self.clutter: dict[str, int] = {}
        self._known: set[str] = set()
        self._skipped: set[str] = set()
        self._pending: dict[str, tuple[Found, str]] = {}
        # Incomplete folders whose owner was checked once: name -> (what its name says, its owner).
        self._examined: dict[str, tuple[Found, str]] = {}
        self._listed: tuple[int, float, object] = (-1, 0.0, None)

    def scan(self) -> list[str]:
        """Queue every new settled submission of an assignment graded on submit; the folders queued."""
        self.policies.refresh()
        if not self._known:
            self._known = self.queue.known_folders()
        changed = os.stat(self.inbound).st_mtime_ns
        mtime, listed_at, policies = self._listed
        policy_changed = policies is not self.policies.policies
        if changed != mtime or self.clock() - listed_at > RELIST_SECONDS or policy_changed:
            self._listed = (changed, self.clock(), self.policies.policies)
            self._relist(policy_changed)
        added = []
        for name, (found, _owner_name) in list(self._pending.items()):
            if not settled(self.inbound / name, found.timestamp):
                self.unsettled.setdefault(name, self.clock())
                continue
            del self._pending[name]
            self.unsettled.pop(name, None)
            if self.queue.add(name, found.student, found.assignment, found.timestamp,
                              self.policies.of(found.assignment).per_hour):
                added.append(name)
            self._known.add(name)
        return added

    def _relist(self, policy_changed: bool) -> None:
        """List the folder again: examine each folder not seen before, and choose the pending ones."""
        if policy_changed:
            self._skipped.clear()  # an assignment may have been switched on
        with os.scandir(self.inbound) as entries:
            names = [e.name for e in entries]
        present = set(names)
        seen = self._known | self._skipped | self.refused.keys()
        candidates: dict[str, list[tuple[Found, str]]] = {}
        for name in names:
            if name in seen:
                continue
            item = self._examined.get(name) or self._examine(name)
            if item is not None:
                candidates.setdefault(item[1], []).append(item)
        self._pending, self.clutter = {}, {}
        for owner, items in candidates.items():
            items.sort(key=lambda item: item[0].timestamp, reverse=True)
            self._pending.update((found.folder, (found, who)) for found, who in items[:PENDING_PER_ACCOUNT])
            if len(items) > PENDING_PER_ACCOUNT:
                self.clutter[owner] = len(items) - PENDING_PER_ACCOUNT
        # What was removed from inbound is no longer anyone's concern.
        self.unsettled = {name: seen_at for name, seen_at in self.unsettled.items() if name in self._pending}
        self._skipped &= present
        self._examined = {name: item for name, item in self._examined.items()
                          if name in present and name not in self._known}

    def _examine(self, name: str) -> tuple[Found, str] | None:
        """A folder seen for the first time: skipped, refused, or (what its name says, its owner) to look at."""
        found = parse_name(name)
        if found is None or not self.policies.of(found.assignment).grade_on_submit:
            self._skipped.add(name)
            return None
        owner = _owner(self.inbound / name)
        if owner != found.student:
            self.refused[name] = f"claims to be {found.student}'s submission but belongs to {owner}"
            return None
        self._examined[name] = (found, owner)
        return found, owner

    def clutter_of(self, account: str) -> str | None:
        """For a student: the sentence about their incomplete folders that grading on submit leaves aside."""
        count = self.clutter.get(account)
        if not count:
            return None
        return (f"{count} folder(s) of yours in the exchange's inbound folder are incomplete submissions (made by "
                f"hand, or a submit that stopped half-way); only your {PENDING_PER_ACCOUNT} newest are looked at. "
                "Submit again from the Assignments tab; to clear them, remove those folders.")

    def stalled(self, seconds: float = 60.0) -> dict[str, str]:
        """Folders still incomplete ``seconds`` after they appeared (a submit that crashed, or one made by hand)."""
        now = self.clock()
        stalled = {name: f"incomplete for {now - seen:.0f} s: no timestamp.txt matching its name, or no "
                         "submission_secret.txt (a submit that stopped half-way, or a folder made by hand)"
                   for name, seen in sorted(self.unsettled.items()) if now - seen >= seconds}
        for owner, count in sorted(self.clutter.items()):
            stalled[f"{owner}: {count} more"] = (f"{count} more incomplete folders of {owner}, left aside (only the "
                                                 f"newest {PENDING_PER_ACCOUNT} of an account are looked at)")
        return stalled


def _owner(path: Path) -> str | None:
    try:
        return pwd.getpwuid(path.lstat().st_uid).pw_name
    except (KeyError, OSError):
        return None
