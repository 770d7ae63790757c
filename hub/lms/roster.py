"""The LMS's roster (Names and Role Provisioning Services) synced into the course.

Every learner the LMS lists as active gets their account name and a
gradebook entry before they ever launch, so the instructor sees the whole
class in formgrader from the first day.  Someone the LMS no longer lists, or
lists as Inactive or Deleted, is marked inactive here: nothing of theirs is
deleted (submissions, grades, the gradebook entry, the unix account).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from hub.lms import roles
from hub.lms.binding import CourseBinding, ignored_course_reason
from hub.lms.client import LmsClient, LmsError
from hub.lms.enrol import record
from hub.lms.identity import Identities
from hub.lms.tables import contexts, enrolments


@dataclass(frozen=True)
class SyncResult:
    """One LMS course's sync: how many are active, and who became inactive."""

    context_id: str
    active: int
    left: tuple[str, ...]
    error: str | None = None


def _facts(issuer: str, context_id: str, member: dict[str, Any], role: str) -> dict[str, Any]:
    return {"issuer": issuer, "sub": member["user_id"], "name": member.get("name", ""),
            "given_name": member.get("given_name", ""), "family_name": member.get("family_name", ""),
            "email": member.get("email", ""), "role": role, "context_id": context_id}


class RosterSync:
    """Syncs each LMS course that has offered its roster (NRPS) in a launch."""

    def __init__(self, engine: Engine, clients: dict[str, LmsClient], gradebook_url: str, prefix: str, tag: str,
                 binding: CourseBinding | None = None):
        self.engine, self.clients, self.gradebook_url = engine, clients, gradebook_url
        self.prefix, self.tag, self.binding = prefix, tag, binding

    def sync_all(self) -> list[SyncResult]:
        """Sync the bound LMS course; any other course on record (from before the binding) is left alone."""
        with self.engine.begin() as db:
            courses = list(db.execute(select(contexts).where(contexts.c.nrps_url != "")))
        results = []
        for row in courses:
            if self.binding is not None and self.binding.covers(row.issuer, row.context_id):
                results.append(self.sync(row))
            else:
                # Syncing it would enrol its people and send their grades there (a student of this course
                # whom another course's instructor enrolled in theirs).
                reason = ignored_course_reason(self.binding)
                self._mark(row, reason)
                results.append(SyncResult(row.context_id, 0, (), reason))
        return results

    def sync(self, context: Any) -> SyncResult:
        client = self.clients.get(context.issuer)
        try:
            if client is None:
                raise LmsError(f"no registration for {context.issuer}")
            members = client.members(context.nrps_url)
        except LmsError as error:
            self._mark(context, str(error))
            return SyncResult(context.context_id, 0, (), str(error))
        identities = Identities(self.engine, self.prefix, self.tag)
        before = self._active(context)
        active: set[str] = set()
        for member in members:
            role = roles.course_role(member.get("roles", []))
            if role is None or not member.get("user_id"):
                continue
            facts = _facts(context.issuer, context.context_id, member, role)
            if member.get("status", "Active") == "Active":
                active.add(record(self.engine, self.gradebook_url, facts, self.prefix, self.tag))
            elif identities.find(context.issuer, member["user_id"]):
                record(self.engine, self.gradebook_url, facts, self.prefix, self.tag, active=False)
        gone = self._active(context) - active
        if gone:
            with self.engine.begin() as db:
                db.execute(update(enrolments).where(
                    enrolments.c.issuer == context.issuer, enrolments.c.context_id == context.context_id,
                    enrolments.c.account.in_(gone)).values(active=False, updated_at=time.time()))
        self._mark(context, None)
        return SyncResult(context.context_id, len(active), tuple(sorted(before - active)))

    def _active(self, context: Any) -> set[str]:
        with self.engine.begin() as db:
            return {r.account for r in db.execute(select(enrolments.c.account).where(
                enrolments.c.issuer == context.issuer, enrolments.c.context_id == context.context_id,
                enrolments.c.active.is_(True)))}

    def _mark(self, context: Any, error: str | None) -> None:
        with self.engine.begin() as db:
            db.execute(update(contexts).where(contexts.c.id == context.id).values(
                synced_at=time.time() if error is None else context.synced_at, sync_error=error))
