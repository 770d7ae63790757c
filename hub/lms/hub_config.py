"""The hub's settings for the course in an LMS, applied by ``hub/jupyterhub_config.py`` when ``lms`` is on.

- the login is ``CourseLTI13Authenticator`` (``hub.lms.authenticator``): who
  may log in is the LMS's decision, and the hub groups (roster, graders)
  follow the roles of each launch;
- https with the layout's certificate;
- the LMS service (``hub.lms.service``), run like the grading service as the
  grader account in the course folder, started through ``secrets_pipe.py``
  so that the tool's key reaches it by a pipe, never a file it can read;
  instructors open its page (roster, grade passback) from the hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hub.accounts import as_account_command
from hub.layout import HubLayout
from hub.provision import grader_env

SECRETS_PIPE = Path(__file__).resolve().parent / "secrets_pipe.py"


def lms_service(hub: HubLayout) -> dict[str, Any]:
    env_bin = hub.env / "bin"
    inner = as_account_command(hub.grader, [], [str(env_bin / "python"), "-m", "hub.lms.service"],
                               python=str(env_bin / "python"))
    return {
        "name": hub.lms_service,
        "display": True,
        "url": f"http://127.0.0.1:{hub.lms_port}",
        "command": [str(env_bin / "python"), "-I", str(SECRETS_PIPE), str(hub.lms_dir / "tool-key.pem"),
                    str(hub.lms_dir / "platforms.json"), "--", *inner],
        "cwd": str(hub.course),
        "oauth_no_confirm": True,
        "environment": {
            **grader_env(hub),
            "UNET_GRADING_QUEUE": hub.grading_queue,
            "UNET_LMS_PREFIX": hub.prefix,
            "UNET_LMS_TAG": hub.account_tag,
            "UNET_LMS_COURSE_ID": hub.course_id,
            "UNET_LMS_INSTRUCTORS_GROUP": hub.instructors_group,
            "UNET_LMS_SYNC_MINUTES": str(hub.lms_sync_minutes),
        },
    }


def configure_lms(c: Any, hub: HubLayout) -> None:
    c.JupyterHub.authenticator_class = "hub.lms.authenticator.CourseLTI13Authenticator"
    c.CourseLTI13Authenticator.state_folder = str(hub.state)
    c.CourseLTI13Authenticator.grader_launch_hours = hub.lms_grader_hours
    c.LTI13Authenticator.uri_scheme = "https"
    # The LMS decides who may launch; each launch sets the person's hub groups from their roles.
    c.Authenticator.allow_all = True
    c.Authenticator.allowed_users = set()
    c.Authenticator.manage_groups = True
    # JupyterHub refuses groups from the configuration then; the roles below create them.
    c.JupyterHub.load_groups = {}
    if hub.tls_cert:
        c.JupyterHub.ssl_cert, c.JupyterHub.ssl_key = hub.tls_cert, hub.tls_key
    c.JupyterHub.services.append(lms_service(hub))
    c.JupyterHub.load_roles.append({
        "name": f"{hub.lms_service}-users",
        "description": "Instructors: the LMS service's page (roster sync, grade passback)",
        "groups": [hub.instructors_group],
        "scopes": [f"access:services!service={hub.lms_service}"],
    })
