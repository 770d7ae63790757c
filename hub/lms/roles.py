"""What an LMS role makes a person in this course: a student, a grader (formgrader), or nobody.

Only the roles of the course (context membership roles) count: an
institution role such as "Instructor" somewhere else in the university
gives nothing here.
"""

from __future__ import annotations

from collections.abc import Iterable

STUDENT, GRADER = "student", "grader"
MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership"
GRADER_ROLES = {"Instructor", "TeachingAssistant", "ContentDeveloper", "Administrator"}
STUDENT_ROLES = {"Learner"}


def _context_role(uri: str) -> tuple[str, str] | None:
    """(role, sub-role) of a context role URI or LTI simple name; None for any other kind of role."""
    if uri.startswith(MEMBERSHIP + "#"):
        return uri.split("#", 1)[1], ""
    if uri.startswith(MEMBERSHIP + "/"):
        role, _, sub = uri[len(MEMBERSHIP) + 1:].partition("#")
        return role, sub
    if "/" not in uri and ":" not in uri:  # a simple name, which the spec still allows for context roles
        return uri, ""
    return None


def course_role(roles: Iterable[str]) -> str | None:
    """``GRADER`` for an instructor, teaching assistant or content developer; ``STUDENT`` for a learner; else None.

    A person with both (a TA who is also enrolled) grades: graders see every submission anyway.
    """
    found = [r for r in (_context_role(u) for u in roles) if r is not None]
    if any(role in GRADER_ROLES or sub in GRADER_ROLES for role, sub in found):
        return GRADER
    if any(role in STUDENT_ROLES for role, _ in found):
        return STUDENT
    return None
