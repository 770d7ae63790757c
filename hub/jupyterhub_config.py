"""JupyterHub configuration of the course hub, set up as nbgrader recommends for a course with several graders.

- every login is a unix account, and its server runs as that account
  (``LocalProcessSpawner``): nbgrader's file exchange depends on it;
- the course service, named after the course id, runs JupyterLab with
  formgrader as the course's grader account in the course folder; members of
  the instructors' group ``formgrade-<course>`` may open it;
- the students' group ``nbgrader-<course>`` is the roster: nbgrader's
  JupyterHub auth plugin offers the course to its members only;
- every server's API token may read its own user's groups (nbgrader's plugin
  needs that; JupyterHub 2+ no longer grants it by default, nbgrader issues
  #1533 and #1900), instructors' servers may also see the course service.

Everything machine-specific comes from ``<state>/hub.json``, which
``python -m hub`` writes; ``UNET_HUB_STATE`` names the state folder.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.accounts import as_account_command  # noqa: E402
from hub.hub_pages import install as install_page_policy  # noqa: E402
from hub.layout import DEFAULT_STATE, HubLayout  # noqa: E402
from hub.provision import grader_env  # noqa: E402

c = get_config()  # noqa: F821 - provided by JupyterHub when it reads this file

hub = HubLayout.load(Path(os.environ.get("UNET_HUB_STATE", DEFAULT_STATE)))
course = hub.course_id
env_bin = hub.env / "bin"

# -- where the hub listens and keeps its state ---------------------------
c.JupyterHub.bind_url = hub.url
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{hub.hub_api_port}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{hub.proxy_api_port}"
c.ConfigurableHTTPProxy.command = [str(ROOT / "hub" / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(hub.hub_dir / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{hub.hub_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(hub.hub_dir / "cookie_secret")
c.JupyterHub.pid_file = str(hub.hub_dir / "jupyterhub.pid")
# Students' servers stop with the hub, and start again at their next login;
# their work is in their home folders.
c.JupyterHub.cleanup_servers = True

# JupyterHub's own pages run only the scripts of its templates (nonce) and static files (issue #30).
install_page_policy()

# -- who may log in ------------------------------------------------------
# The try-out login; see README.md for PAM, OAuthenticator or LTI 1.3 instead.
c.JupyterHub.authenticator_class = "hub.demo_auth.DemoAuthenticator"
c.DemoAuthenticator.passwords_file = str(hub.logins)
c.Authenticator.allowed_users = set(hub.login_accounts)
c.Authenticator.admin_users = set()

c.JupyterHub.load_groups = {
    hub.instructors_group: {"users": hub.instructor_accounts},
    hub.students_group: {"users": hub.student_accounts},
}

c.JupyterHub.load_roles = [
    {
        "name": hub.instructors_group,
        "description": f"Instructors of {course}: open the course service (formgrader)",
        "groups": [hub.instructors_group],
        "scopes": [f"access:services!service={course}", "list:services", f"read:services!service={course}"],
    },
    {
        "name": f"{hub.grading_service}-users",
        "description": "Students and instructors: open the grading service (their own gradings; the queue)",
        "groups": [hub.students_group, hub.instructors_group],
        "scopes": [f"access:services!service={hub.grading_service}"],
    },
    {
        "name": f"{course}-service",
        "description": "The course service: read the roster, add and remove students in formgrader",
        "services": [course],
        "scopes": [
            "list:users", "read:users:name", "read:users:groups",
            "list:groups", f"read:groups!group={hub.students_group}", f"groups!group={hub.students_group}",
        ],
    },
]

# -- every student's and instructor's own server -------------------------
# A server's API token: its own groups (nbgrader reads the roster from them),
# and for instructors, who hold these scopes, the course service.
c.Spawner.server_token_scopes = [
    "users:activity!user", "access:servers!server", "read:users:name!user", "read:users:groups!user",
    "list:services", f"read:services!service={course}",
]
# LocalProcessSpawner, but each server in a control group with limits, with a private /tmp and a
# home of its own size (hub/servers): one student cannot take the machine from the others.
c.JupyterHub.spawner_class = "hub.servers.spawner.CourseSpawner"
c.CourseSpawner.memory_bytes = hub.server_memory_bytes
c.CourseSpawner.processes = hub.server_processes
c.CourseSpawner.cpus = hub.server_cpus
c.CourseSpawner.tmp_bytes = hub.server_tmp_bytes
c.CourseSpawner.home_bytes = hub.home_bytes
c.CourseSpawner.homes_dir = str(hub.homes)
c.CourseSpawner.python = str(env_bin / "python")
c.Spawner.cmd = [str(env_bin / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
# Only what is listed here reaches a student's server: not the hub's PYTHONPATH.
c.Spawner.env_keep = ["LANG", "LC_ALL"]
c.Spawner.environment = {
    "PATH": f"{env_bin}:/usr/local/bin:/usr/bin:/bin",
    "PYTHONPATH": hub.pythonpath("student"),
    "JUPYTER_CONFIG_PATH": hub.config_path("student"),
    "CARLA_DATA_DIR": str(hub.data),
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "UNET_VALIDATE_SECONDS": str(hub.validate_seconds),
    "UNET_VALIDATE_KEEP_SECONDS": str(hub.validate_keep_seconds),
}
# Importing nothing heavy, a server is up in seconds; allow for a busy machine.
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120

# -- the course service: formgrader, as the course's grader account -------
c.JupyterHub.services = [
    {
        "name": course,
        "display": True,
        "url": f"http://127.0.0.1:{hub.service_port}",
        # Started by root inside the grader account's control group, then run as that account
        # (hub/as_account.py): grading from formgrader gets the whole-submission limits too.
        "command": as_account_command(hub.grader, hub.grader_cgroups, [str(env_bin / "jupyterhub-singleuser")],
                                      python=str(env_bin / "python")),
        "cwd": str(hub.course),
        "oauth_no_confirm": True,
        "environment": {
            "JUPYTERHUB_DEFAULT_URL": "/lab",
            **grader_env(hub),
        },
    },
    {
        # Grading on submit (hub/grade_on_submit): as the grader account, in its control group,
        # like formgrader.  No role: its hub token has no scopes beyond identifying who logs in.
        "name": hub.grading_service,
        "display": True,
        "url": f"http://127.0.0.1:{hub.grading_port}",
        "command": as_account_command(hub.grader, hub.grader_cgroups,
                                      [str(env_bin / "python"), "-m", "hub.grade_on_submit"],
                                      python=str(env_bin / "python")),
        "cwd": str(hub.course),
        "oauth_no_confirm": True,
        "environment": {
            **grader_env(hub),
            "UNET_GRADING_INBOUND": str(hub.inbound),
            "UNET_GRADING_COURSE_ID": course,
            "UNET_GRADING_WORKERS": str(hub.grading_workers),
            "UNET_GRADING_QUEUE": hub.grading_queue,
            "UNET_GRADING_LEASE": str(hub.grading_lease),
            "UNET_GRADING_DASK": hub.grading_dask,
            "UNET_GRADING_INSTRUCTORS": ",".join(hub.instructor_accounts),
        },
    },
]

# -- the course in an LMS (hub/lms, docs/lms.md): LTI 1.3 login, roster and grades -----
if hub.lms:
    from hub.lms.hub_config import configure_lms  # noqa: E402

    configure_lms(c, hub)
