"""Where a course hub keeps everything, and who its accounts are.

One ``HubLayout`` describes one hub: its state folder (hub database, cookie
secret, gradebook and course folder, exchange, data, configuration), the
shared Python environment every account runs, the ports, and the accounts.
``python -m hub`` writes it to ``<state>/hub.json``; ``jupyterhub_config.py``
reads it back, so the hub and the set-up never disagree.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

COURSE_ID = "unet-segmentation"
ASSIGNMENT = "unet_segmentation"
# The companion lab (notebooks/unet_lab): released beside the assignment, never graded.
LAB = "unet_lab"
DEFAULT_STATE = Path("/srv/unet-hub")


@dataclass
class HubLayout:
    """One hub's folders, ports and accounts."""

    state: Path
    env: Path
    port: int = 8000
    hub_api_port: int = 8081
    proxy_api_port: int = 8001
    service_port: int = 9999
    # The grading service (grading on submit, hub/grade_on_submit): its port, workers and queue.
    grading_port: int = 9998
    grading_workers: int = 2
    # A SQLAlchemy URL (PostgreSQL for a course several machines grade); empty: SQLite in the course folder.
    grading_queue: str = ""
    # Seconds before a killed worker's submission is graded again (its lease).
    grading_lease: float = 30.0
    # The workers as tasks on this Dask scheduler (or local:N) instead of processes beside the service.
    grading_dask: str = ""
    # Kernels forked from one kernel template per grading process (docs/grading.md); False starts each cold.
    kernel_template: bool = True
    # The course in an LMS (hub/lms, docs/lms.md): LTI 1.3 login from the LMS instead of the demo passwords,
    # the roster and grades synced by the LMS service on lms_port.
    lms: bool = False
    lms_port: int = 9997
    lms_sync_minutes: float = 60.0
    # Hours a grader role lasts after the launch that gave it (hub.lms.grader_launches).
    lms_grader_hours: float = 8.0
    # The hub serves https with this certificate and key (an LMS launches only to https); empty: http.
    tls_cert: str = ""
    tls_key: str = ""
    # Prepended to every account name, so tests can make throw-away accounts
    # that cannot collide with real ones.
    prefix: str = ""
    instructors: list[str] = field(default_factory=lambda: ["instructor"])
    students: list[str] = field(default_factory=lambda: ["student1", "student2", "student3"])
    # Accounts that may log in but are not on the course's roster (a teaching
    # assistant of another course, a student who dropped): tests use them.
    visitors: list[str] = field(default_factory=list)
    # Written into each account's comment field; `python -m hub remove` deletes only such accounts.
    account_tag: str = "unet-hub demo account"
    validate_seconds: int = 120
    # How long a student's server keeps its Validate process and its kernel template (some 650 MB together)
    # after the last press; 0: a process per press.
    validate_keep_seconds: int = 600
    # Each person's server (hub/servers): memory, processes and CPUs of it and everything it starts
    # (docs/hub.md says how they were chosen), its private in-memory /tmp, and the size of each
    # home's own file system (0: homes stay as they are, e.g. where disk quotas hold them).
    server_memory_bytes: int = 4 * 2**30
    server_processes: int = 512
    server_cpus: float = 1.0
    server_tmp_bytes: int = 1 * 2**30
    home_bytes: int = 2 * 2**30
    # The cgroup.procs files of the control groups handed to the grader account
    # (``grader.engine.cgroups.delegate``), which every grader process starts in.
    grader_cgroups: list[str] = field(default_factory=list)

    # -- names ---------------------------------------------------------
    @property
    def course_id(self) -> str:
        return COURSE_ID

    @property
    def grader(self) -> str:
        """The unix account that runs the course service (formgrader) and owns the course folder."""
        return f"{self.prefix}grader-{COURSE_ID}"

    @property
    def grading_service(self) -> str:
        """The hub service that grades on submit; students open it at ``/services/<this>/``."""
        return f"{COURSE_ID}-grading"

    @property
    def grader_cgroup(self) -> str:
        """The name of the control group delegated to the grader account."""
        return f"unet-hub-{self.grader}"

    def account(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def instructor_accounts(self) -> list[str]:
        return [self.account(n) for n in self.instructors]

    @property
    def student_accounts(self) -> list[str]:
        return [self.account(n) for n in self.students]

    @property
    def visitor_accounts(self) -> list[str]:
        return [self.account(n) for n in self.visitors]

    @property
    def login_accounts(self) -> list[str]:
        """Everyone who may log in to the hub."""
        return self.instructor_accounts + self.student_accounts + self.visitor_accounts

    @property
    def students_group(self) -> str:
        """The hub group nbgrader's JupyterHub plugin reads as the roster."""
        return f"nbgrader-{COURSE_ID}"

    @property
    def instructors_group(self) -> str:
        """The hub group whose members may open the course service (formgrader)."""
        return f"formgrade-{COURSE_ID}"

    # -- folders -------------------------------------------------------
    @property
    def course(self) -> Path:
        """The nbgrader course root: source, release, submitted, autograded, feedback, gradebook."""
        return self.state / "course"

    @property
    def exchange(self) -> Path:
        return self.state / "exchange"

    @property
    def inbound(self) -> Path:
        """Where students' submissions arrive (nbgrader's exchange)."""
        return self.exchange / COURSE_ID / "inbound"

    @property
    def data(self) -> Path:
        """The course's images, read-only for everyone (``CARLA_DATA_DIR``)."""
        return self.state / "data"

    @property
    def lib(self) -> Path:
        """Python modules every account's server imports (no solutions, no hidden tests)."""
        return self.state / "lib"

    @property
    def config(self) -> Path:
        """Jupyter and nbgrader configuration: common/, student/ and grader/."""
        return self.state / "config"

    @property
    def homes(self) -> Path:
        """The images of the home file systems (``hub.servers.homes``), root only."""
        return self.state / "homes"

    @property
    def hub_dir(self) -> Path:
        """JupyterHub's own files (database, cookie secret, proxy pid), root only."""
        return self.state / "jupyterhub"

    @property
    def logins(self) -> Path:
        """The demo passwords, root only."""
        return self.hub_dir / "demo-logins.json"

    @property
    def lms_dir(self) -> Path:
        """The tool's key, the LMS registrations and the launches' nonces, root only."""
        return self.state / "lms"

    @property
    def lms_service(self) -> str:
        """The hub service that posts grades to the LMS and syncs its roster."""
        return f"{COURSE_ID}-lms"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_cert else 'http'}://127.0.0.1:{self.port}"

    def config_path(self, role: str) -> str:
        """``JUPYTER_CONFIG_PATH`` for a student's server or the course service: its own folder, then the common one."""
        return os.pathsep.join([str(self.config / role), str(self.config / "common")])

    def pythonpath(self, role: str) -> str:
        """``PYTHONPATH`` of a student's server (with Validate's modules) or of the course service."""
        paths = [str(self.lib)] + ([str(self.lib / "validate")] if role == "student" else [])
        return os.pathsep.join(paths)

    # -- saving --------------------------------------------------------
    def save(self) -> Path:
        path = self.state / "hub.json"
        data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        path.write_text(json.dumps(data, indent=2) + "\n")
        path.chmod(0o600)
        return path

    @classmethod
    def load(cls, state: Path) -> HubLayout:
        data = json.loads((state / "hub.json").read_text())
        data["state"], data["env"] = Path(data["state"]), Path(data["env"])
        return cls(**data)

    @classmethod
    def from_environment(cls) -> HubLayout:
        """The layout ``make hub`` asks for: ``UNET_HUB_STATE``, ``UNET_HUB_ENV``, ``UNET_HUB_PORT``.

        ``UNET_HUB_LMS=1`` switches LTI on, ``UNET_HUB_TLS_CERT`` and ``UNET_HUB_TLS_KEY`` name the certificate.
        """
        state = Path(os.environ.get("UNET_HUB_STATE", DEFAULT_STATE)).resolve()
        env = Path(os.environ.get("UNET_HUB_ENV", state / "env")).resolve()
        port = int(os.environ.get("UNET_HUB_PORT", "8000"))
        layout = cls.load(state) if (state / "hub.json").exists() else cls(state=state, env=env, port=port)
        layout.env, layout.port = env, port
        if "UNET_HUB_LMS" in os.environ:
            layout.lms = os.environ["UNET_HUB_LMS"] not in ("", "0")
        layout.tls_cert = os.environ.get("UNET_HUB_TLS_CERT", layout.tls_cert)
        layout.tls_key = os.environ.get("UNET_HUB_TLS_KEY", layout.tls_key)
        return layout
