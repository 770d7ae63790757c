"""nbgrader's filesystem exchange with the gaps of nbgrader issue #978 closed.

nbgrader's own exchange leaves every submission readable by every account
(files 0644 in a folder 0777, hidden only by an unguessable name), lets any
student submit under another student's id (``--student=alice``), and collects
such a forgery as the other student's work (it only logs a warning).  It also
wants the exchange root writable by everyone.

Here the exchange is laid out once by root (``python -m hub``):

- ``<root>`` belongs to root, mode 0755: no account can add a course.
- ``<root>/<course>/outbound`` and ``feedback`` belong to the course's grader
  account: students read what is released there and cannot change it.
- ``<root>/<course>/inbound`` belongs to the grader account and its group,
  mode 2733: students can add a submission but not list the folder, and every
  submission takes the grader's group.

and these classes add:

- ``PrivateSubmit``: a submission's folder is made readable by its owner and
  the grader's group only (0750), and a student can submit only under their
  own login name.
- ``OwnerCheckedCollect``: a submission whose folder is not owned by the
  account its name claims is not collected (and the instructor is told).
- ``ProvisionedRoot``: for every step, the exchange root must exist and be
  readable, instead of writable by everyone.

Students can bypass ``PrivateSubmit`` from a terminal, but only to expose
their own work.  They own their submission's folder and can change it after
submitting: ``OwnerCheckedCollect``, on the instructor's side, leaves out a
folder holding a link or a file of another account, or changed after its
time, or whose ``timestamp.txt`` differs from its name (``tampering``).
"""

from __future__ import annotations

import glob
import os
import pwd
from datetime import UTC
from stat import S_IRGRP, S_IRUSR, S_ISDIR, S_ISREG, S_IWUSR, S_IXGRP, S_IXUSR
from typing import TYPE_CHECKING, NoReturn

from nbgrader.exchange.default.collect import ExchangeCollect, groupby
from nbgrader.exchange.default.fetch_assignment import ExchangeFetchAssignment
from nbgrader.exchange.default.fetch_feedback import ExchangeFetchFeedback
from nbgrader.exchange.default.list import ExchangeList
from nbgrader.exchange.default.release_assignment import ExchangeReleaseAssignment
from nbgrader.exchange.default.release_feedback import ExchangeReleaseFeedback
from nbgrader.exchange.default.submit import ExchangeSubmit
from nbgrader.utils import check_directory, get_username

SUBMISSION_DIR = S_IRUSR | S_IWUSR | S_IXUSR | S_IRGRP | S_IXGRP


class ProvisionedRoot:
    """The exchange root is made by root at set-up; it only has to be there and readable."""

    if TYPE_CHECKING:  # provided by nbgrader's Exchange, which every class below also derives from
        root: str

        def fail(self, msg: str) -> NoReturn: ...

    def ensure_root(self) -> None:
        if not check_directory(self.root, read=True, execute=True):
            self.fail(f"The course's exchange folder {self.root} is missing or unreadable; "
                      "please tell your instructor.")


class PrivateSubmit(ProvisionedRoot, ExchangeSubmit):
    """A submission only its owner and the course's graders can read, under the submitter's own name."""

    def init_dest(self) -> None:
        own = get_username()
        if self.coursedir.student_id not in ("*", "", own):
            self.fail(f"You are logged in as {own!r}; you can only submit as yourself, "
                      f"not as {self.coursedir.student_id!r}.")
        super().init_dest()

    def copy_files(self) -> None:
        super().copy_files()
        # nbgrader leaves the folder 0777 (its random name and the unlistable
        # inbound hide it meanwhile).  The folder took the graders' group from
        # inbound when it was made; files made in it later may not have (copying
        # clears its set-group-id bit), so it is the folder that keeps others out.
        dest = os.path.join(self.inbound_path, self.assignment_filename)
        os.chmod(dest, SUBMISSION_DIR)
        if os.stat(dest).st_gid != os.stat(self.inbound_path).st_gid:
            self.fail("Your submission was saved, but the course's graders cannot read it: the exchange's inbound "
                      "folder has lost its set-group-id bit. Please tell your instructor.")
        self.log.info("Only you and the course's graders can read this submission.")


# A submission's files are written within seconds of the time in its name; later changes are tampering.
SETTLE_SECONDS = 120


def owner_of(path: str) -> str | None:
    try:
        return pwd.getpwuid(os.lstat(path).st_uid).pw_name
    except (KeyError, OSError):
        return None


def tampering(path: str, owner: str, submitted_at: float, timestamp: str) -> str | None:
    """Why the submission folder ``path`` cannot be trusted as ``owner``'s work of ``timestamp``, or None.

    The student owns the folder and can still change it after submitting.
    The grader's collect copies it and follows links, so a link in it could
    bring the course's source notebook or another student's work into this
    student's submission; a changed ``timestamp.txt``, a renamed folder or an
    edited notebook could move the submission before the due date.
    Change times (which no student can set) must lie within
    ``SETTLE_SECONDS`` of the submission's own time.
    """
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [None, *dirnames, *filenames]:
            entry = dirpath if name is None else os.path.join(dirpath, name)
            info = os.lstat(entry)
            shown = os.path.relpath(entry, path)
            if not (S_ISDIR(info.st_mode) or S_ISREG(info.st_mode)):
                return f"{shown} is a link or a special file"
            if pwd.getpwuid(info.st_uid).pw_name != owner:
                return f"{shown} belongs to another account"
            if info.st_ctime > submitted_at + SETTLE_SECONDS:
                return f"{shown} was changed after the submission was made"
    try:
        with open(os.path.join(path, "timestamp.txt")) as fh:
            written = fh.read().strip()
    except OSError:
        return "it has no timestamp.txt"
    if written != timestamp:
        return f"its timestamp.txt says {written!r}, its name {timestamp!r}"
    return None


class OwnerCheckedCollect(ProvisionedRoot, ExchangeCollect):
    """Collect only submissions whose folder belongs to the account named in it.

    ``only`` names one submission folder to collect (grading on submit);
    ``refused`` says, for each folder left out, why.
    """

    only: str | None = None

    def init_src(self) -> None:
        super().init_src()
        self.refused: dict[str, str] = {}
        student_id = self.coursedir.student_id or "*"
        pattern = os.path.join(self.inbound_path, f"{student_id}+{self.coursedir.assignment_id}+*")
        records = []
        for path in glob.glob(pattern):
            record = self._path_to_record(path)
            if self.only is not None and record["filename"] != self.only:
                continue
            problem = self._distrust(path, record)
            if problem:
                self.refused[record["filename"]] = problem
                self.log.warning("Not collected: %s, since %s.", record["filename"], problem)
                continue
            records.append(record)
        # The same choice as nbgrader's: the latest, or the latest before the due date.
        self.src_records = []
        for group in groupby(records, lambda r: r["username"]).values():
            ordered = self._sort_by_timestamp(group)
            if self.before_duedate and self.duedate is not None:
                on_time = [r for r in ordered if r["timestamp"] <= self.duedate]
                ordered = on_time or ordered
            self.src_records.append(ordered[0])

    @staticmethod
    def _distrust(path: str, record: dict) -> str | None:
        owner = owner_of(path)
        if owner != record["username"]:
            return f"it claims to be {record['username']}'s submission but belongs to {owner}"
        # nbgrader's own reading of the name: the time is UTC, the user name may hold "+".
        submitted_at = record["timestamp"].replace(tzinfo=UTC).timestamp()
        return tampering(path, record["username"], submitted_at, record["filename"].rsplit("+", 3)[2])


class CourseReleaseAssignment(ProvisionedRoot, ExchangeReleaseAssignment):
    """Release into the provisioned exchange."""


class CourseReleaseFeedback(ProvisionedRoot, ExchangeReleaseFeedback):
    """Release feedback into the provisioned exchange."""


class CourseFetchAssignment(ProvisionedRoot, ExchangeFetchAssignment):
    """Fetch from the provisioned exchange."""


class CourseFetchFeedback(ProvisionedRoot, ExchangeFetchFeedback):
    """Fetch feedback from the provisioned exchange."""


class CourseList(ProvisionedRoot, ExchangeList):
    """List from the provisioned exchange."""


def configure(c) -> None:
    """Point nbgrader's exchange factory at these classes (``c`` is an nbgrader config)."""
    here = __name__
    c.ExchangeFactory.release_assignment = f"{here}.CourseReleaseAssignment"
    c.ExchangeFactory.release_feedback = f"{here}.CourseReleaseFeedback"
    c.ExchangeFactory.fetch_assignment = f"{here}.CourseFetchAssignment"
    c.ExchangeFactory.fetch_feedback = f"{here}.CourseFetchFeedback"
    c.ExchangeFactory.list = f"{here}.CourseList"
    c.ExchangeFactory.submit = f"{here}.PrivateSubmit"
    c.ExchangeFactory.collect = f"{here}.OwnerCheckedCollect"
