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
  mode 3733: students can add a submission but not list the folder, every
  submission takes the grader's group, and (the sticky bit) no student can
  rename or remove another's submission.

and these classes add:

- ``PrivateSubmit``: a submission's folder is made readable by its owner and
  the grader's group only (0750), and a student can submit only under their
  own login name.
- ``OwnerCheckedCollect``: a submission is copied through descriptors,
  never paths, and only if every part of it is a plain file or folder of
  the account its name claims, unchanged since it was made and while it is
  copied (``submission_copy``); any other is not collected, and the
  instructor is told why.
- ``ProvisionedRoot``: for every step, the exchange root must exist and be
  readable, instead of writable by everyone.

Students can bypass ``PrivateSubmit`` from a terminal, but only to expose
their own work.  They own their submission's folder and can change it after
submitting, also while it is being collected: whatever they swap in (a link
to the source notebook or to another student's work, a pipe) is refused,
never followed, and never waited on.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
from datetime import UTC
from stat import S_IRGRP, S_IRUSR, S_IWUSR, S_IXGRP, S_IXUSR
from typing import TYPE_CHECKING, NoReturn

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.exchange.default.collect import ExchangeCollect, groupby
from nbgrader.exchange.default.fetch_assignment import ExchangeFetchAssignment
from nbgrader.exchange.default.fetch_feedback import ExchangeFetchFeedback
from nbgrader.exchange.default.list import ExchangeList
from nbgrader.exchange.default.release_assignment import ExchangeReleaseAssignment
from nbgrader.exchange.default.release_feedback import ExchangeReleaseFeedback
from nbgrader.exchange.default.submit import ExchangeSubmit
from nbgrader.utils import check_directory, get_username
from traitlets import List, Unicode

from .submission_copy import (
    CopyRules,
    Expected,
    Refused,
    copy_submission,
    put_in_place,
    read_timestamp,
    staging_name,
    sweep_staging,
)

SUBMISSION_DIR = S_IRUSR | S_IWUSR | S_IXUSR | S_IRGRP | S_IXGRP
# In the course's submitted folder, hidden from nbgrader's globs: copies being made, only the grader's.
STAGING = ".collecting"


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

    ungraded = List(Unicode(), help="Assignments released for practice and never graded (the companion lab): "
                                    "a submission of one is refused, with the reason.").tag(config=True)

    def init_dest(self) -> None:
        if self.coursedir.assignment_id in self.ungraded:
            self.fail(f"Not submitted: {self.coursedir.assignment_id} is practice that is never graded, so there is "
                      "nothing to submit. Your work stays in your own folder; submit the graded assignment as usual.")
        own = get_username()
        if self.coursedir.student_id not in ("*", "", own):
            self.fail(f"You are logged in as {own!r}; you can only submit as yourself, "
                      f"not as {self.coursedir.student_id!r}.")
        super().init_dest()

    def copy_files(self) -> None:
        size, limit = self.get_size(self.src_path), 1000 * self.coursedir.max_dir_size
        if size > limit:
            # nbgrader's own check raises a bare RuntimeError, which students see as a traceback.
            self.fail(f"Not submitted: your assignment folder {self.src_path} holds {size / 1e6:.1f} MB, and a "
                      f"submission may have at most {limit / 1e6:.1f} MB. Move large files (saved models, data, "
                      "images) out of it and submit again; your files are unchanged.")
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


class OwnerCheckedCollect(ProvisionedRoot, ExchangeCollect):
    """Collect only what is, beyond doubt, the work of the student a submission folder names.

    Each submission is copied through descriptors (``submission_copy``) into
    a staging folder only the grader can write, checked there, and only then
    moved into ``submitted/``; the copy in place stays until then.  A folder
    that cannot be trusted is left out with the reason in ``refused`` (and in
    the log, for the instructor), and that student's next latest submission
    is tried instead.  ``only`` names one submission folder to collect
    (grading on submit).
    """

    only: str | None = None

    def init_src(self) -> None:
        # Not nbgrader's own, which stops the whole collect at one folder whose name it cannot read.
        if not self.coursedir.course_id:
            self.fail("No course id specified. Re-run with --course flag.")
        self.course_path = os.path.join(self.root, self.coursedir.course_id)
        self.inbound_path = os.path.join(self.course_path, "inbound")
        # nbgrader's own sentences (students who try collecting read the second).
        if not os.path.isdir(self.inbound_path):
            self.fail(f"Course not found: {self.inbound_path}")
        if not check_directory(self.inbound_path, read=True, execute=True):
            self.fail(f"You don't have read permissions for the directory: {self.inbound_path}")
        self.duedate = self._due_date()
        self.refused: dict[str, str] = {}
        student_id = self.coursedir.student_id or "*"
        pattern = os.path.join(self.inbound_path, f"{student_id}+{self.coursedir.assignment_id}+*")
        records = []
        for path in glob.glob(pattern):
            name = os.path.basename(path)
            if self.only is not None and name != self.only:
                continue
            try:
                records.append(self._path_to_record(path))
            except Exception:  # noqa: BLE001 - nbgrader fails the whole collect on one bad name
                self._refuse(name, "its name does not hold a valid submission time")
        # The same choice as nbgrader's (the latest, or the latest before the due date), with the
        # others behind it, in order, in case the chosen one is refused while it is copied.
        self.candidates: dict[str, list[dict]] = {}
        for student, group in groupby(records, lambda r: r["username"]).items():
            ordered = self._sort_by_timestamp(group)
            if self.before_duedate and self.duedate is not None:
                ordered = ([r for r in ordered if r["timestamp"] <= self.duedate]
                           + [r for r in ordered if r["timestamp"] > self.duedate])
            self.candidates[student] = ordered

    def _due_date(self):
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                return gb.find_assignment(self.coursedir.assignment_id).duedate
            except MissingEntry:
                return None

    def _refuse(self, name: str, why: str) -> None:
        self.refused[name] = why
        self.log.warning("Not collected: %s, since %s.", name, why)

    def copy_files(self) -> None:
        staging = os.path.join(self.coursedir.root, self.coursedir.submitted_directory, STAGING)
        sweep_staging(staging)
        if not self.candidates:
            self.log.warning("No submissions of %r to collect", self.coursedir.assignment_id)
        for student, ordered in sorted(self.candidates.items()):
            dest = self.coursedir.format_path(self.coursedir.submitted_directory, student,
                                              self.coursedir.assignment_id)
            for record in ordered:
                if not self._newer_than_collected(dest, record):
                    break
                if self._collect_one(student, record, dest):
                    break

    def _newer_than_collected(self, dest: str, record: dict) -> bool:
        """nbgrader's rule: copy unless a copy is in place and neither ``--update`` nor the due date wants this one."""
        if not os.path.isdir(dest):
            return True
        existing = self.coursedir.get_existing_timestamp(dest)
        if self.update and (existing is None or record["timestamp"] > existing):
            return True
        if self.before_duedate and existing != record["timestamp"]:
            return True
        self.log.info("No newer submission to collect: %s %s", record["username"], self.coursedir.assignment_id)
        return False

    def _collect_one(self, student: str, record: dict, dest: str) -> bool:
        """Copy one submission into ``submitted/`` if it can be trusted; whether it was."""
        name = record["filename"]
        try:
            uid = pwd.getpwnam(student).pw_uid
        except KeyError:
            self._refuse(name, f"no account is named {student!r}")
            return False
        # nbgrader's own reading of the name: the time is UTC, the user name may hold "+".
        submitted_at = record["timestamp"].replace(tzinfo=UTC).timestamp()
        staged = staging_name(os.path.join(self.coursedir.root, self.coursedir.submitted_directory, STAGING),
                              student)
        try:
            report = copy_submission(self.inbound_path, name, staged, Expected(uid, submitted_at, account=student),
                                     CopyRules.of(self.coursedir))
            written = read_timestamp(staged)
            if written != name.rsplit("+", 3)[2]:
                shutil.rmtree(staged, ignore_errors=True)
                raise Refused("it has no timestamp.txt" if written is None else
                              f"its timestamp.txt says {written!r}, its name {name.rsplit('+', 3)[2]!r}")
        except Refused as why:
            self._refuse(name, str(why))
            return False
        for file in report.left_out:
            self.log.warning("Left out of %s: %s (CourseDirectory.max_file_size)", name, file)
        self.log.info("Collecting submission: %s %s", student, self.coursedir.assignment_id)
        put_in_place(staged, dest)
        return True


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
