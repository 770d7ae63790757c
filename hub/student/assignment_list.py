"""The Assignments tab of a student's server, with messages a student can act on.

nbgrader's assignment list answers a refused submission or fetch with a
Python traceback, and a student who is not on any course's roster with an
empty list ("No courses found").  This extension loads nbgrader's own
(``nbgrader.server_extensions.assignment_list``, which must then be disabled
on its own) and puts in a manager that answers with the exchange's own
sentence instead of the traceback, and names the roster when a student is on
none.
"""

from __future__ import annotations

import getpass
import os

from nbgrader.server_extensions.assignment_list import handlers

KEY = "assignment_list_manager"


def plain_message(value: str) -> str:
    """The exchange's own sentence from a traceback that ends in ``ExchangeError: <sentence>``."""
    marker = "ExchangeError: "
    return value.rsplit(marker, 1)[1].strip() if marker in value else value


class CourseAssignmentList(handlers.AssignmentList):
    """nbgrader's manager, with plain messages."""

    def _plain(self, result: dict) -> dict:
        if not result.get("success") and isinstance(result.get("value"), str):
            result = {**result, "value": plain_message(result["value"])}
        return result

    def submit_assignment(self, course_id: str, assignment_id: str) -> dict:
        return self._plain(super().submit_assignment(course_id, assignment_id))

    def fetch_assignment(self, course_id: str, assignment_id: str) -> dict:
        result = self._plain(super().fetch_assignment(course_id, assignment_id))
        if not result.get("success"):
            self.log.error("Fetching %s failed: %s", assignment_id, result["value"])
        return result

    def fetch_feedback(self, course_id: str, assignment_id: str) -> dict:
        return self._plain(super().fetch_feedback(course_id, assignment_id))

    def list_courses(self) -> dict:
        result = self._plain(super().list_courses())
        if result.get("success") and not result["value"] and os.environ.get("JUPYTERHUB_API_TOKEN"):
            user = os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
            return {"success": False, "value": (
                f"You ({user}) are not on the roster of any course on this hub, so there is nothing to fetch or "
                f"submit. If you take this course, ask your instructor to add {user} to it; nothing you have "
                "saved is lost meanwhile.")}
        return result


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": __name__}]


def _load_jupyter_server_extension(server_app) -> None:
    handlers.load_jupyter_server_extension(server_app)
    manager = CourseAssignmentList(parent=server_app)
    manager.root_dir = server_app.root_dir
    server_app.web_app.settings[KEY] = manager
