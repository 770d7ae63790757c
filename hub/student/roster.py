"""Which courses an account belongs to, read from its JupyterHub groups, with clear messages.

nbgrader's ``JupyterHubAuthPlugin`` reads the roster from the hub group
``nbgrader-<course>`` (``formgrade-<course>`` are its graders) but fails
outside a student's server: in the course service it asks the hub about the
service's own account, which is no hub user, so formgrader finds no course
and shows the assignment as a draft it cannot release; on a command line
without the hub's variables (``nbgrader db student add`` as the grader
account) it ends in a traceback, and a student added that way is never put
in the group and sees "No courses found" (nbgrader issues #1396, #1304).
This subclass keeps its idea and replaces its three methods:

- answers for the account whose token the server holds, or for any account
  when the token may read users (the course service, which itself sees all
  courses: its grader account is no hub user);
- outside the hub (root's or the grader's command line) grants every course,
  as nbgrader does without JupyterHub, and adds nobody to a hub group;
- never raises: a refused or failed hub call is logged with what to fix.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request

from nbgrader.auth.jupyterhub import JupyterHubAuthPlugin

STUDENTS = "nbgrader-"
GRADERS = "formgrade-"


class HubUnavailable(Exception):
    """There is no hub to ask (no API token in the environment)."""


def hub_api(method: str, path: str, body: dict | None = None) -> dict | list | None:
    """Call the hub's REST API with this server's token; None for 404."""
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if not token:
        raise HubUnavailable
    url = os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api").rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise
    return json.loads(text) if text else {}


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class HubGroupsPlugin(JupyterHubAuthPlugin):
    """nbgrader's JupyterHub plug-in, with each of its three methods made to work wherever nbgrader runs.

    The roster is the hub group ``nbgrader-<course>``; graders are ``formgrade-<course>``.
    """

    def get_student_courses(self, student_id: str) -> list | None:
        if student_id == "*":
            if os.environ.get("JUPYTERHUB_SERVICE_NAME"):
                # The course service itself (formgrader): its account is not a hub user.
                return None
            student_id = os.environ.get("JUPYTERHUB_USER", "")
        try:
            if not student_id:
                raise HubUnavailable
            user = hub_api("GET", f"/users/{quote(student_id)}")
        except HubUnavailable:
            return None  # not on the hub: every course, as nbgrader without JupyterHub
        except (urllib.error.URLError, OSError) as error:
            self.log.error("Could not ask the hub which courses %s is in (%s); if this says 403, the hub's "
                           "Spawner.server_token_scopes must include read:users:groups!user", student_id, error)
            return []
        if not isinstance(user, dict):
            return []
        groups = user.get("groups", [])
        courses = {g.split("-", 1)[1] for g in groups if g.startswith((STUDENTS, GRADERS)) and "-" in g}
        if not courses:
            self.log.warning("%s is not on the roster of any course (hub groups: %s); "
                             "ask your instructor to add you", student_id, ", ".join(groups) or "none")
        return sorted(c for c in courses if c)

    def _change_group(self, method: str, student_id: str, course_id: str) -> None:
        group = f"{STUDENTS}{course_id}"
        try:
            if hub_api("GET", f"/users/{quote(student_id)}") is None:
                self.log.warning("%s has no account on the hub yet: they are in the gradebook, but they will see "
                                 "the course only once they are added to the hub group %s (see README.md, "
                                 "'Running the course on JupyterHub')", student_id, group)
                return
            hub_api(method, f"/groups/{quote(group)}/users", {"users": [student_id]})
        except HubUnavailable:
            self.log.info("Not running on the hub: the hub group %s is not changed for %s", group, student_id)
        except (urllib.error.URLError, OSError) as error:
            self.log.error("The hub refused to change the group %s for %s (%s): the course service needs the "
                           "scope groups!group=%s", group, student_id, error, group)
        else:
            self.log.info("%s: hub group %s updated (%s)", student_id, group, method)

    def add_student_to_course(self, student_id: str, course_id: str) -> None:
        if course_id:
            self._change_group("POST", student_id, course_id)

    def remove_student_from_course(self, student_id: str, course_id: str) -> None:
        if course_id:
            self._change_group("DELETE", student_id, course_id)
