"""Copy a student's submission out of the exchange through file descriptors only.

The student owns her submission's folder in ``inbound`` and can change it
at any moment, also while the grader copies it: swap a notebook for a link
to the course's source notebook, a subfolder for a link to another
student's collected work, ``timestamp.txt`` for a named pipe.  Checking a
path and then copying what the path names is a race she can win.  Here
nothing is looked up by path below ``inbound``: each folder is opened
relative to its parent's descriptor without following a link, each file is
opened without following a link and without blocking, the object that was
opened is checked (a plain file or folder, owned by the student, one link,
not changed since the submission was made), and the bytes are copied from
that descriptor.  A part that changes while it is copied is refused.

The copy goes into a staging folder that only the grader can write; the
caller moves it into place once it is complete (``collect_into``).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import pwd
import secrets
import shutil
import stat
import time
from dataclasses import dataclass, field

# A submission's files are written within seconds of the time in its name; later changes are tampering.
SETTLE_SECONDS = 120
CHUNK = 1 << 20
# How an entry below inbound is opened: never through a link, never waiting on a pipe or a device.
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class Refused(Exception):
    """The submission cannot be trusted as its student's work; the message says why, for instructor and student."""


@dataclass(frozen=True)
class CopyRules:
    """What is copied: nbgrader's ``CourseDirectory`` ignore/include globs and size limits, and a bound on entries."""

    ignore: tuple[str, ...] = (".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback")
    include: tuple[str, ...] = ("*",)
    max_file_bytes: int = 100_000 * 1000
    max_total_bytes: int = 100_000 * 1000
    # A real submission holds a handful of files; the bound keeps a cluttered folder from holding a worker.
    max_entries: int = 2000
    max_depth: int = 16

    @classmethod
    def of(cls, coursedir) -> CopyRules:
        """The rules of an nbgrader ``CourseDirectory`` (its sizes are in kilobytes, as nbgrader counts them)."""
        return cls(ignore=tuple(coursedir.ignore), include=tuple(coursedir.include),
                   max_file_bytes=1000 * coursedir.max_file_size, max_total_bytes=1000 * coursedir.max_dir_size)


@dataclass
class CopyReport:
    """What one copy did: bytes and entries copied, and files left out by the rules (as nbgrader leaves them out)."""

    bytes: int = 0
    entries: int = 0
    left_out: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Expected:
    """Whose submission it must be, and since when nothing in it may have changed."""

    uid: int
    submitted_at: float
    settle: float = SETTLE_SECONDS
    account: str = ""

    def owner_problem(self, uid: int, shown: str) -> str:
        """What to say of a part ``shown`` (empty: the folder itself) that belongs to the account ``uid``."""
        try:
            owner = pwd.getpwuid(uid).pw_name
        except KeyError:
            owner = f"the unknown account {uid}"
        if not shown:
            return f"it claims to be {self.account or 'another account'}'s submission but belongs to {owner}"
        return f"{shown} belongs to {owner}"


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


class _Walk:
    """One copy of a submission folder, entry by entry, from descriptors."""

    def __init__(self, expected: Expected, rules: CopyRules):
        self.expected, self.rules, self.report = expected, rules, CopyReport()

    def check(self, info: os.stat_result, part: str) -> None:
        """Refuse an opened object that is not the student's own plain file or folder, untouched since submitting.

        ``part`` is its path in the submission; empty for the submission's folder itself.
        """
        shown = part or "the submission's folder"
        if info.st_uid != self.expected.uid:
            raise Refused(self.expected.owner_problem(info.st_uid, part))
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            raise Refused(f"{shown} is a named pipe, a socket or a device, not a file")
        if stat.S_ISREG(info.st_mode) and info.st_nlink != 1:
            raise Refused(f"{shown} is a hard link to a file elsewhere")
        if info.st_ctime > self.expected.submitted_at + self.expected.settle:
            raise Refused(f"{shown} was changed after the submission was made")

    def open_below(self, parent: int, name: str, shown: str) -> int:
        try:
            return os.open(name, OPEN_FLAGS, dir_fd=parent)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.EMLINK):
                raise Refused(f"{shown} is a link") from None
            if error.errno == errno.ENXIO:
                raise Refused(f"{shown} is a socket, not a file") from None
            if error.errno == errno.ENOENT:
                raise Refused(f"{shown} disappeared while the submission was collected") from None
            raise Refused(f"{shown} cannot be read ({error.strerror})") from None

    def folder(self, source: int, target: int, shown: str, depth: int) -> None:
        """Copy the open folder ``source`` into the open (staging) folder ``target``."""
        before = os.fstat(source)
        self.check(before, shown)
        if depth > self.rules.max_depth:
            raise Refused(f"{shown} lies more than {self.rules.max_depth} folders deep")
        with os.scandir(source) as entries:
            names = sorted(entry.name for entry in entries)
        for name in names:
            self.entry(source, target, name, f"{shown}/{name}" if shown else name, depth)
        after = os.fstat(source)
        if (after.st_mtime_ns, after.st_ctime_ns) != (before.st_mtime_ns, before.st_ctime_ns):
            raise Refused(f"{shown or 'the submission folder'} changed while it was being collected")

    def entry(self, parent: int, target: int, name: str, shown: str, depth: int) -> None:
        self.report.entries += 1
        if self.report.entries > self.rules.max_entries:
            raise Refused(f"it holds more than {self.rules.max_entries} files and folders")
        if any(fnmatch.fnmatch(name, pattern) for pattern in self.rules.ignore):
            return  # nbgrader's ignore list (checkpoints, caches): never opened at all
        fd = self.open_below(parent, name, shown)
        try:
            info = os.fstat(fd)
            self.check(info, shown)
            if stat.S_ISDIR(info.st_mode):
                os.mkdir(name, 0o700, dir_fd=target)
                inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=target)
                try:
                    self.folder(fd, inner, shown, depth + 1)
                    os.fchmod(inner, 0o700 | (info.st_mode & 0o050))
                finally:
                    os.close(inner)
            elif any(fnmatch.fnmatch(name, pattern) for pattern in self.rules.include):
                self.file(fd, info, target, name, shown)
        finally:
            os.close(fd)

    def file(self, source: int, info: os.stat_result, target: int, name: str, shown: str) -> None:
        if info.st_size > self.rules.max_file_bytes:
            # As nbgrader's collect does: the file is left out, and the instructor is told.
            self.report.left_out.append(f"{shown} ({_megabytes(info.st_size)}, over the "
                                        f"{_megabytes(self.rules.max_file_bytes)} a file may have)")
            return
        if self.report.bytes + info.st_size > self.rules.max_total_bytes:
            raise Refused(f"it is larger than the {_megabytes(self.rules.max_total_bytes)} a submission may have")
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=target)
        try:
            copied = 0
            while chunk := os.read(source, CHUNK):
                copied += len(chunk)
                if copied > info.st_size:
                    raise Refused(f"{shown} grew while it was being collected")
                os.write(out, chunk)
            os.utime(out, ns=(info.st_atime_ns, info.st_mtime_ns))
            os.fchmod(out, 0o600 | (info.st_mode & 0o055))
        finally:
            os.close(out)
        after = os.fstat(source)
        if copied != info.st_size or (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
                info.st_size, info.st_mtime_ns, info.st_ctime_ns):
            raise Refused(f"{shown} changed while it was being collected")
        self.report.bytes += copied


def copy_submission(inbound: str, name: str, staging: str, expected: Expected, rules: CopyRules) -> CopyReport:
    """Copy the submission folder ``name`` of the folder ``inbound`` into the new folder ``staging``.

    ``staging`` must not exist; its parent belongs to the grader.  Raises
    ``Refused`` (and removes ``staging``) when any part of the submission is
    a link, a pipe or device, another account's, a hard link, changed after
    the submission was made or while it was copied, or too large.
    """
    walk = _Walk(expected, rules)
    parent = os.open(inbound, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    os.mkdir(staging, 0o700)
    try:
        target = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            top = walk.open_below(parent, name, "the submission's folder")
            try:
                if not stat.S_ISDIR(os.fstat(top).st_mode):
                    raise Refused("the submission is not a folder")
                walk.folder(top, target, "", 0)
            finally:
                os.close(top)
        finally:
            os.close(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        os.close(parent)
    return walk.report


def read_timestamp(folder: str) -> str | None:
    """The text of ``timestamp.txt`` in a folder the grader owns (a finished copy), or None."""
    try:
        with open(os.path.join(folder, "timestamp.txt")) as fh:
            return fh.read().strip()
    except OSError:
        return None


def staging_name(parent: str, student: str) -> str:
    """A fresh path in the grader's staging folder ``parent`` for one copy of ``student``'s submission."""
    os.makedirs(parent, mode=0o700, exist_ok=True)
    return os.path.join(parent, f"{student}-{secrets.token_hex(6)}")


def sweep_staging(parent: str, older_than: float = 3600.0) -> None:
    """Remove copies a killed collect left in the staging folder ``parent`` (a copy takes seconds, not an hour)."""
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.stat(follow_symlinks=False).st_mtime < time.time() - older_than:
            shutil.rmtree(entry.path, ignore_errors=True)


def put_in_place(staged: str, dest: str) -> None:
    """Replace ``dest`` (a student's folder in ``submitted/``) by the finished copy ``staged``.

    The previous copy is moved aside first and removed last, so a failure in
    between leaves one of the two in place, never a half-copied folder.
    """
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    old = None
    if os.path.lexists(dest):
        old = f"{staged}.replaced"
        os.rename(dest, old)
    os.rename(staged, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
