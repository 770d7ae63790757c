"""What an LMS role makes a person in this course: a student, a grader (formgrader), or nobody.

Only the roles of the course (context membership roles of the LTI role
vocabulary) count: an institution role such as "Instructor" somewhere else
in the university, or a system role, gives nothing here.

A sub-role belongs to its principal role, whatever its name after the
``#``: ``membership/Instructor#TeachingAssistant`` is an instructor's
sub-role (a grader), ``membership/Learner#Instructor`` a learner's (a
student who, say, tutors others in the LMS: still a student here).
"""

from __future__ import annotations

from collections.abc import Iterable

STUDENT, GRADER = "student", "grader"
MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership"
# Core and non-core context roles that may grade.  TeachingAssistant is no principal role of LTI 1.3 (it is
# Instructor#TeachingAssistant), but some platforms send it as one.
GRADER_ROLES = {"Instructor", "TeachingAssistant", "ContentDeveloper", "Administrator"}
STUDENT_ROLES = {"Learner"}


def principal_role(uri: str) -> str | None:
    """The principal context role a role URI (or LTI simple name) stands for; None for any other kind of role.

    ``membership#Instructor`` -> ``Instructor``; ``membership/Learner#Instructor`` -> ``Learner`` (a sub-role
    is its principal's); ``Instructor`` (a simple name, which LTI 1.3 still allows for context roles) ->
    ``Instructor``; an institution or system role -> None.
    """
    if uri.startswith(MEMBERSHIP + "#"):
        return uri[len(MEMBERSHIP) + 1:] or None
    if uri.startswith(MEMBERSHIP + "/"):
        principal = uri[len(MEMBERSHIP) + 1:].partition("#")[0]
        return principal or None
    if uri and "/" not in uri and ":" not in uri and "#" not in uri:
        return uri
    return None


def course_role(roles: Iterable[str]) -> str | None:
    """``GRADER`` for an instructor, teaching assistant, content developer or course administrator (or a
    sub-role of one); ``STUDENT`` for a learner (or a learner's sub-role); else None.

    A person with both (a TA who is also enrolled) grades: graders see every submission anyway.
    """
    found = {r for r in (principal_role(u) for u in roles if isinstance(u, str)) if r is not None}
    if found & GRADER_ROLES:
        return GRADER
    if found & STUDENT_ROLES:
        return STUDENT
    return None
