"""What every page of the grading service shares: the hub's login, the service, who is asking."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from hub.grade_on_submit.page_parts import HardenedPage

if TYPE_CHECKING:
    from hub.grade_on_submit.service import GradingService


class Base(HardenedPage, HubOAuthenticated, web.RequestHandler):
    """A page or API behind the hub's login; knows the service and who is asking."""

    @property
    def service(self) -> GradingService:
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
