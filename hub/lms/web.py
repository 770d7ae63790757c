"""The LMS service's page, for instructors (members of ``formgrade-<course>``), behind the hub's login.

- ``<prefix>``: each LMS course linked here (its roster's last sync, or why
  it failed), the people with their LMS names and whether they are still
  enrolled, and the grade passback: how many scores were posted, which
  wait for a retry and why, which the LMS refused and why;
- ``<prefix>sync`` (POST): sync the rosters now;
- ``<prefix>retry`` (POST): post the refused scores again;
- ``<prefix>api/status``: the same as JSON.
"""

from __future__ import annotations

import html
import os
import threading
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from sqlalchemy import select
from tornado import web
from tornado.ioloop import IOLoop

from hub.grade_on_submit.page_parts import HardenedPage, table
from hub.grade_on_submit.views import clock_time
from hub.lms.binding import CourseBinding, ignored_course_reason
from hub.lms.outbox import FAILED, PENDING, POSTED, POSTING
from hub.lms.tables import contexts, enrolments, people

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from hub.lms.outbox import Outbox


class PageSettings(Protocol):
    """The service's settings the page reads."""

    @property
    def course_id(self) -> str: ...

    @property
    def instructors_group(self) -> str: ...


class LmsState(Protocol):
    """What the page reads and asks of the LMS service.

    ``hub.lms.service.LmsService`` is one; the page names only this, so the
    service can start its page without the two modules importing each other.
    """

    @property
    def settings(self) -> PageSettings: ...

    @property
    def binding(self) -> CourseBinding | None: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def sync_requested(self) -> threading.Event: ...

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{course} in the LMS</title>
<style nonce="{nonce}">body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }}
th, td {{ text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #ccc; vertical-align: top; }}</style>
</head><body><h1>{course} in the LMS</h1>
<h2>LMS courses</h2><p id="binding">{bound}</p>{courses}
<form method="post" action="{sync_url}"><input type="hidden" name="_xsrf" value="{xsrf}">
<button id="sync">Sync the rosters now</button></form>
<h2>Grades to the LMS</h2><p id="counts">{counts}</p>
<h3>Waiting for a retry</h3><div id="retrying">{retrying}</div>
<h3>Refused by the LMS</h3><div id="refused">{refused}</div>
<form method="post" action="{retry_url}"><input type="hidden" name="_xsrf" value="{xsrf}">
<button id="retry">Post the refused scores again</button> (once the cause is fixed in the LMS)</form>
<h2>People</h2>{people}
<p>As JSON: <a href="{api_url}">api/status</a>.</p>
</body></html>
"""


def bound_text(binding: CourseBinding | None) -> str:
    """Which LMS course this hub's course is bound to, in words."""
    if binding is None:
        return "Bound to no LMS course yet: every launch is refused, and the refusal names what to bind (docs/lms.md)."
    return f"Bound to {binding.describe()}: roles, rosters and grades come from and go to it alone."


def _when(seconds: float | None) -> str:
    return clock_time(seconds) if seconds else ""


def status(service: LmsState) -> dict[str, Any]:
    """What the page shows, as data."""
    binding = service.binding

    def ignored(issuer: str, context_id: str) -> str:
        return "" if binding is not None and binding.covers(issuer, context_id) else ignored_course_reason(binding)

    with service.engine.begin() as db:
        courses = [{"course": r.title or r.context_id, "lms": r.issuer, "roster synced": _when(r.synced_at),
                    "roster problem": r.sync_error or "", "ignored": ignored(r.issuer, r.context_id)}
                   for r in db.execute(select(contexts))]
        titles = {(r.issuer, r.context_id): r.title or r.context_id for r in db.execute(select(contexts))}
        names = {r.account: r for r in db.execute(select(people))}
        members = [{"account": r.account, "name": names[r.account].name if r.account in names else "",
                    "email": names[r.account].email if r.account in names else "", "role": r.role,
                    "enrolled": "yes" if r.active else "no (left the LMS course)",
                    "ignored": (f"from the LMS course {titles.get((r.issuer, r.context_id), r.context_id)!r}, "
                                f"{why}: no role here, no grades sent there")
                    if (why := ignored(r.issuer, r.context_id)) else ""}
                   for r in db.execute(select(enrolments).order_by(enrolments.c.account))]
    rows = service.outbox.rows()
    counts = {state: sum(r.state == state for r in rows) for state in (POSTED, PENDING, POSTING, FAILED)}

    def shown(r: Any) -> dict[str, Any]:
        return {"student": r.account, "assignment": r.assignment, "score": r.score_given, "attempts": r.attempts,
                "next attempt": _when(r.next_attempt), "reason": r.last_error}

    return {"binding": bound_text(binding), "courses": courses, "people": members, "counts": counts,
            "retrying": [shown(r) for r in rows if r.state == PENDING and r.last_error],
            "refused": [shown(r) for r in rows if r.state == FAILED]}


class Base(HardenedPage, HubOAuthenticated, web.RequestHandler):
    @property
    def service(self) -> LmsState:
        return self.settings["lms_service"]

    def require_instructor(self) -> None:
        if self.service.settings.instructors_group not in self.get_current_user().get("groups", []):
            raise web.HTTPError(403, "Only the course's instructors can see this page.")


class Page(Base):
    @web.authenticated
    def get(self) -> None:
        self.require_instructor()
        data = status(self.service)
        prefix = self.settings["prefix"]
        self.write(PAGE.format(
            course=html.escape(self.service.settings.course_id),
            courses=table(data["courses"], ["course", "lms", "roster synced", "roster problem", "ignored"]),
            sync_url=html.escape(url_path_join(prefix, "sync")), retry_url=html.escape(url_path_join(prefix, "retry")),
            xsrf=html.escape(self.xsrf_token.decode()),
            counts=html.escape(", ".join(f"{state}: {n}" for state, n in data["counts"].items())),
            retrying=table(data["retrying"], ["student", "assignment", "score", "attempts", "next attempt", "reason"]),
            refused=table(data["refused"], ["student", "assignment", "score", "attempts", "reason"]),
            people=table(data["people"], ["account", "name", "email", "role", "enrolled", "ignored"]),
            api_url=html.escape(url_path_join(prefix, "api/status")), nonce=self.csp_nonce,
            bound=html.escape(bound_text(self.service.binding))))


class Sync(Base):
    @web.authenticated
    def post(self) -> None:
        self.require_instructor()
        self.service.sync_requested.set()
        self.redirect(self.settings["prefix"])


class RetryRefused(Base):
    @web.authenticated
    def post(self) -> None:
        self.require_instructor()
        self.service.outbox.retry_refused()
        self.redirect(self.settings["prefix"])


class Status(Base):
    @web.authenticated
    def get(self) -> None:
        self.require_instructor()
        self.write_json(status(self.service))


def serve(service: LmsState) -> None:
    """Serve the page where the hub expects the service, until the process ends."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10102"))
    web.Application([
        (prefix, Page), (url_path_join(prefix, "sync"), Sync), (url_path_join(prefix, "retry"), RetryRefused),
        (url_path_join(prefix, "api/status"), Status),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
    ], lms_service=service, prefix=prefix, cookie_secret=os.urandom(32), xsrf_cookies=True).listen(
        url.port or 80, url.hostname or "127.0.0.1")
    IOLoop.current().start()
