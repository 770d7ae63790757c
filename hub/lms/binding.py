"""The one LMS course this hub's course is bound to: the only place roles, rosters and grades come from.

A hub course is bound explicitly, at set-up, by the registration in
``<state>/lms/platforms.json`` that names ``course_context_id`` and
``course_deployment_id`` (root edits that file; docs/lms.md).  Not by the
first instructor launch: with a tool installed for a whole Canvas account
or Moodle site, any instructor of any course on that deployment could be
first.  Until it is bound every launch is refused, and the refusal names
the values to enter for the LMS course it came from.

A launch, a roster or a score belongs to this course only when its issuer,
client id, deployment and LMS course (context) all equal the binding's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hub.lms.registrations import Platform


@dataclass(frozen=True)
class CourseBinding:
    """The LMS course (issuer, client id, deployment, context) this hub's course is bound to."""

    issuer: str
    client_id: str
    deployment_id: str
    context_id: str

    def covers(self, issuer: str, context_id: str, client_id: str | None = None,
               deployment_id: str | None = None) -> bool:
        """Whether a launch or a record of ``issuer`` and ``context_id`` (and, when given, client id and
        deployment) is of the bound LMS course."""
        return (issuer == self.issuer and context_id == self.context_id
                and (client_id is None or client_id == self.client_id)
                and (deployment_id is None or deployment_id == self.deployment_id))

    def describe(self) -> str:
        return f"course {self.context_id!r} of {self.issuer} (deployment {self.deployment_id!r})"


def binding_of(platforms: list[Platform]) -> CourseBinding | None:
    """The binding the registrations hold (``load_platforms`` allows at most one), or None if none does."""
    bound = [p for p in platforms if p.course_context_id]
    if not bound:
        return None
    platform = bound[0]
    return CourseBinding(platform.issuer, platform.client_id, platform.course_deployment_id,
                         platform.course_context_id)


def unbound_reason(issuer: str, context_id: str, context_title: str, deployment_id: str,
                   binding: CourseBinding | None) -> str:
    """Why a launch of this LMS course is not let in, in words for the person and their instructor."""
    course = f"{context_title!r} ({context_id!r})" if context_title else repr(context_id)
    if binding is None:
        return (f"This hub's course is not bound to an LMS course yet, so it lets nobody in. To bind it to the "
                f"LMS course {course} this link is in, the hub's administrator adds to its registration in "
                f"platforms.json: \"course_context_id\": {json.dumps(context_id)}, \"course_deployment_id\": "
                f"{json.dumps(deployment_id)} (docs/lms.md).")
    return (f"This link is in the LMS course {course}, deployment {deployment_id!r}, but this hub's course "
            f"belongs to another LMS course: open the assignment from that course, or ask its instructor.")


def ignored_course_reason(binding: CourseBinding | None) -> str:
    """Why an LMS course on record is neither synced nor sent grades."""
    if binding is None:
        return "ignored: this hub's course is bound to no LMS course yet (docs/lms.md)"
    return f"ignored: this hub's course is bound to {binding.describe()}, not to this LMS course"
