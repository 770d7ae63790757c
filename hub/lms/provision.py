"""A person's first launch sets them up, with no instructor action; later launches change nothing of their work.

``provision(layout, launch)`` runs as root in the hub (in a thread: it
waits on two short commands):

1. as the grader account, ``hub.lms.enrol`` records the LMS course and the
   person, and gives them their account name (``hub.lms.identity``) and, for a
   student, a gradebook entry with their name and email;
2. the unix account is made (``hub.accounts.ensure_user``: home mode 0700,
   tagged as this hub's);
3. a student's assignment is fetched for them, as them, when their home has
   no copy yet (so a later launch never overwrites their work).

The hub groups (roster, graders) follow from the launch's role alone (the
launch was checked to come from the bound LMS course, ``hub.lms.binding``).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hub import accounts
from hub.layout import HubLayout
from hub.lms import roles
from hub.lms.launch import Launch

log = logging.getLogger("unet_hub.lms")
ACCOUNT = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class ProvisionError(RuntimeError):
    """The person could not be set up; the message says what failed (the hub shows it)."""


@dataclass(frozen=True)
class Provisioned:
    """The person's unix account and what they are in the course (``student``, ``grader`` or both)."""

    account: str
    roles: tuple[str, ...]

    def groups(self, layout: HubLayout) -> list[str]:
        return sorted({layout.students_group if r == roles.STUDENT else layout.instructors_group for r in self.roles})


def launch_facts(layout: HubLayout, launch: Launch) -> dict:
    """What ``hub.lms.enrol`` records: the person, the LMS course and its services."""
    return {
        "issuer": launch.issuer, "sub": launch.sub, "deployment_id": launch.deployment_id, "role": launch.role,
        "name": launch.name, "given_name": launch.given_name, "family_name": launch.family_name,
        "email": launch.email, "context_id": launch.context_id, "context_title": launch.context_title,
        "assignment": launch.assignment, "lineitems_url": launch.lineitems_url, "lineitem_url": launch.lineitem_url,
        "ags_scopes": list(launch.ags_scopes), "nrps_url": launch.nrps_url,
        "prefix": layout.prefix, "tag": layout.account_tag,
    }


def grader_command(layout: HubLayout, module: str, payload: dict, timeout: float = 120) -> dict:
    """``python -m MODULE`` as the grader account in the course folder, ``payload`` on its input; its JSON answer."""
    from hub.provision import grader_env

    env = {**grader_env(layout), **({"UNET_GRADING_QUEUE": layout.grading_queue} if layout.grading_queue else {})}
    command = accounts.as_account_command(layout.grader, [], [str(layout.env / "bin" / "python"), "-m", module])
    result = subprocess.run(command, input=json.dumps(payload), cwd=layout.course, env=env, capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode != 0:
        raise ProvisionError(f"{module} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def fetch_if_missing(layout: HubLayout, account: str, assignment: str) -> bool:
    """Fetch ``assignment`` into the student's home unless a copy is there; True if it was fetched now."""
    home = Path(f"/home/{account}")
    if (home / assignment).exists():
        return False
    env = {"PATH": f"{layout.env / 'bin'}:/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": layout.pythonpath("student"),
           "JUPYTER_CONFIG_PATH": layout.config_path("student"), "CARLA_DATA_DIR": str(layout.data)}
    result = accounts.run_as(account, [str(layout.env / "bin" / "python"), "-m", "nbgrader", "fetch_assignment",
                                       assignment], cwd=home, env=env, check=False, timeout=120)
    if result.returncode != 0:
        # Not a reason to refuse the login: the Assignments tab offers Fetch, and says why it fails.
        log.warning("fetching %s for %s failed: %s", assignment, account, (result.stdout + result.stderr)[-1000:])
        return False
    return True


def provision(layout: HubLayout, launch: Launch) -> Provisioned:
    """Set up the person of ``launch`` (see the module's docstring); idempotent."""
    answer = grader_command(layout, "hub.lms.enrol", launch_facts(layout, launch))
    account = answer["account"]
    if not ACCOUNT.fullmatch(account):
        raise ProvisionError(f"hub.lms.enrol gave the account name {account!r}, which is not a valid unix name")
    accounts.ensure_user(account, layout.account_tag)
    if launch.role == roles.STUDENT:
        if launch.due_at:
            # The LMS's own due date of this student (a Canvas override): recorded as their due date.
            grader_command(layout, "hub.lms.due_dates",
                           {"account": account, "assignment": launch.assignment, "due_at": launch.due_at})
        fetch_if_missing(layout, account, launch.assignment)
    # The groups follow this launch's role in the bound LMS course alone: a role lost there is lost here at
    # the next launch, and no other course's enrolment (an old one, or one the roster sync keeps) adds any.
    return Provisioned(account, (launch.role,))
