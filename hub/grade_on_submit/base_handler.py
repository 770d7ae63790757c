"""What every page of the grading service shares: the hub's login, the service, who is asking."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Protocol

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from hub.grade_on_submit.page_parts import HardenedPage

if TYPE_CHECKING:
    from hub.grade_on_submit.inbox import Inbox
    from hub.grade_on_submit.queue import Queue
    from hub.grade_on_submit.settings import Settings


class PagesService(Protocol):
    """What the pages read and ask of the grading service.

    ``hub.grade_on_submit.service.GradingService`` is one; the pages name
    only this, so the service can start its pages without the two modules
    importing each other.
    """

    @property
    def settings(self) -> Settings: ...

    @property
    def inbox(self) -> Inbox: ...

    @property
    def queue(self) -> Queue: ...

    @property
    def prefix(self) -> str: ...

    @property
    def course_id(self) -> str: ...

    @property
    def cookie_secret(self) -> bytes: ...

    def problem(self, instructor: bool = True) -> str | None: ...

    def student_view(self, student: str) -> list[dict]: ...

    def instructor_view(self) -> list[dict]: ...

    def policy_summary(self) -> str: ...

    def policy_text(self) -> str: ...

    def worker_environment(self) -> dict[str, str]: ...


class Base(HardenedPage, HubOAuthenticated, web.RequestHandler):
    """A page or API behind the hub's login; knows the service and who is asking."""

    @property
    def service(self) -> PagesService:
        return self.settings["grading_service"]

    def user_name(self) -> str:
        return self.get_current_user()["name"]

    def is_instructor(self) -> bool:
        """Named in the settings, or a member of the hub's graders group (instructors an LMS sends, hub/lms)."""
        user = self.get_current_user()
        return (user["name"] in self.service.settings.instructors
                or f"formgrade-{self.service.course_id}" in user.get("groups", []))

    def require_instructor(self) -> None:
        if not self.is_instructor():
            raise web.HTTPError(403, "Only the course's instructors can see the queue.")

    def problem_html(self) -> str:
        problem = self.service.problem(instructor=self.is_instructor())
        return f'<p role="alert"><strong>{html.escape(problem)}</strong></p>' if problem else ""
