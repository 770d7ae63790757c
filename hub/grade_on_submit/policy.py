"""What the instructor decides, per assignment: grading on submit on or off, what students see, the hourly cap.

The decisions live in ``grade_on_submit.json`` in the course folder, which
the instructor edits in the course service (the grading service reads it
again every few seconds)::

    {
      "unet_segmentation": {"grade_on_submit": true, "show": "feedback", "per_hour": 6}
    }

- ``grade_on_submit``: grade every new submission as it arrives (default false);
- ``show``: what a student sees before the assignment's due date (the
  gradebook's, set with ``nbgrader db assignment add --duedate``):
  ``"feedback"`` the score and the feedback at once, ``"score"`` the score
  only, ``"nothing"`` only that it was received; after the due date, both;
- ``per_hour``: at most this many gradings per student in any hour (0: no
  cap).  A submission over the cap waits, and the student is told when it
  will be graded; one that could not be graded does not count;
- ``late``: the late policy (``hub.grade_on_submit.late_policy``): absent or
  ``"none"``, or for example ``{"percent": 10, "per": "day", "floor": 50,
  "zero_after_hours": 72}``.  Batch ``nbgrader autograde`` applies it too.

A file that cannot be read is reported with what is wrong, and the last good
policy stays in force.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hub.grade_on_submit.late_policy import LatePolicy, LatePolicyError, parse_late

SHOW_CHOICES = ("feedback", "score", "nothing")
FILE_NAME = "grade_on_submit.json"


class PolicyError(ValueError):
    """The policy file is not as described above; the message names the file, the assignment and the key."""


@dataclass(frozen=True)
class Policy:
    """One assignment's decisions."""

    grade_on_submit: bool = False
    show: str = "feedback"
    per_hour: int = 0
    late: LatePolicy = field(default_factory=LatePolicy)


def parse(text: str, source: str) -> dict[str, Policy]:
    """The policies in ``text`` (the contents of ``source``), by assignment."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise PolicyError(f"{source} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{source} must hold an object with one entry per assignment, not {type(data).__name__}")
    policies = {}
    for assignment, entry in data.items():
        where = f"{source}, assignment {assignment!r}"
        if not isinstance(entry, dict):
            raise PolicyError(f"{where}: expected an object such as "
                              '{"grade_on_submit": true, "show": "feedback", "per_hour": 6}')
        unknown = sorted(set(entry) - {"grade_on_submit", "show", "per_hour", "late"})
        if unknown:
            raise PolicyError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                              "the keys are grade_on_submit, show, per_hour and late")
        on = entry.get("grade_on_submit", False)
        if not isinstance(on, bool):
            raise PolicyError(f"{where}: grade_on_submit must be true or false, not {on!r}")
        show = entry.get("show", "feedback")
        if show not in SHOW_CHOICES:
            raise PolicyError(f"{where}: show must be one of {', '.join(SHOW_CHOICES)}, not {show!r}")
        per_hour = entry.get("per_hour", 0)
        if not isinstance(per_hour, int) or isinstance(per_hour, bool) or per_hour < 0:
            raise PolicyError(f"{where}: per_hour must be a whole number of gradings, 0 or more, not {per_hour!r}")
        try:
            late = parse_late(entry.get("late"), where)
        except LatePolicyError as error:
            raise PolicyError(str(error)) from None
        policies[assignment] = Policy(on, show, per_hour, late)
    return policies


def read_late_policy(path: Path, assignment: str) -> LatePolicy:
    """The late policy of ``assignment`` in the policy file ``path``, for batch grading.

    Unlike the grading service, a batch run has no last good policy to keep:
    a file that cannot be read stops it with the message (PolicyError).
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return LatePolicy()
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyError(f"{path} cannot be read: {error}") from None
    entry = parse(text, str(path)).get(assignment)
    return entry.late if entry is not None else LatePolicy()


class PolicyFile:
    """The policy file of a course, read again when it changes; a bad edit keeps the last good policy."""

    def __init__(self, path: Path):
        self.path = path
        self.policies: dict[str, Policy] = {}
        self.problem: str | None = None
        self._seen: tuple[float, int] | None = None

    def refresh(self) -> None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self.policies, self.problem, self._seen = {}, None, None
            return
        if self._seen == (info.st_mtime, info.st_size):
            return
        self._seen = (info.st_mtime, info.st_size)
        try:
            self.policies, self.problem = parse(self.path.read_text(), str(self.path)), None
        except (OSError, UnicodeDecodeError, PolicyError) as error:
            self.problem = f"{error} (the previous policy stays in force until this is fixed)"

    def of(self, assignment: str) -> Policy:
        """The assignment's policy; one the file does not name is not graded on submit."""
        return self.policies.get(assignment, Policy())

    def entry(self, assignment: str) -> Policy | None:
        """The assignment's policy if the file names it, else None."""
        return self.policies.get(assignment)
