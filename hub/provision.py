"""Set up (or bring up to date) everything a course hub needs, as root; every step can run again.

``setup(layout, data)`` makes the unix accounts, the state folder (course
folder, exchange, data, configuration), the gradebook's roster, and releases
the assignment if it is not released yet.  Nothing that students or
instructors made is touched: homes, submissions, grades and the hub's
database stay as they are.
"""

from __future__ import annotations

import csv
import json
import os
import pwd
import shutil
import stat
from pathlib import Path

from grader.engine import cgroups
from hub import accounts, as_account
from hub.grade_on_submit.policy import FILE_NAME as POLICY_FILE
from hub.layout import ASSIGNMENT, LAB, HubLayout
from hub.servers import homes

ROOT = Path(__file__).resolve().parent.parent
STUDENT_PACKAGE = Path(__file__).resolve().parent / "student"
# The part of the grading engine that Validate needs in a student's server (its kernels are forked
# from a template in the grading sandbox, which finds the data as the notebook does): no checks,
# no hidden tests, nothing students may not read.
VALIDATE_MODULES = [
    "grader/__init__.py", "grader/student_side.py", "grader/engine/__init__.py", "grader/engine/validate.py",
    "grader/engine/kernel_sockets.py", "grader/engine/sandbox.py", "grader/engine/sandbox_fixes.py",
    "grader/engine/template.py", "grader/engine/template_child.py", "grader/engine/cgroups.py",
    "grader/engine/leftovers.py", "grader/engine/submission_limits.py",
    "grader/engine/private_api/__init__.py", "grader/engine/private_api/nbgrader_api.py",
    "grader/engine/private_api/nbclient_api.py", "grader/engine/private_api/jupyter_client_api.py",
    "notebooks/unet_segmentation/carla_data.py",
]


# What each server gets a private copy of (hub/as_account.py): the hub's folders cannot live there.
PRIVATE_SCRATCH = [Path("/tmp"), *(Path(p) for p in as_account.SHARED_SCRATCH)]


class SetupError(RuntimeError):
    """The hub cannot be set up; the message says what to do."""


def _tree_mode(path: Path, dirs: int, files: int) -> None:
    for dirpath, _, filenames in os.walk(path):
        os.chmod(dirpath, dirs)
        for name in filenames:
            target = Path(dirpath, name)
            if not target.is_symlink():
                os.chmod(target, files)


# Where set-up keeps the repository's mode from before it closed it, for `python -m hub remove`.
REPOSITORY_MODE = "repository-mode"


def protect_repository(layout: HubLayout) -> None:
    """Close this repository to other accounts: it holds the solutions and the hidden tests.

    The mode it had is kept in the state folder (only the first time: a second
    set-up finds it closed), and ``restore_repository`` gives it back.
    """
    mode = stat.S_IMODE(ROOT.stat().st_mode)
    if mode & 0o007:
        layout.state.mkdir(parents=True, exist_ok=True)
        kept = layout.state / REPOSITORY_MODE
        if not kept.exists():
            kept.write_text(f"{ROOT}\n{mode:o}\n")
        os.chmod(ROOT, mode & ~0o007)
        print(f"  {ROOT} was open to every account (solutions, hidden tests): now closed to others")


def restore_repository(layout: HubLayout) -> None:
    """Give this repository back the mode it had before ``protect_repository`` closed it, if it still has ours."""
    kept = layout.state / REPOSITORY_MODE
    try:
        path, mode = kept.read_text().split()
    except (OSError, ValueError):
        return
    original = int(mode, 8)
    if Path(path) == ROOT and stat.S_IMODE(ROOT.stat().st_mode) == original & ~0o007:
        os.chmod(ROOT, original)
        print(f"  {ROOT} is open to other accounts again (mode {original:o}), as it was before set-up")
    kept.unlink()


def check_places(layout: HubLayout) -> None:
    """The shared environment must exist, and what students use must lie outside this (closed) repository."""
    if not (layout.env / "bin" / "jupyterhub-singleuser").exists():
        raise SetupError(f"no hub environment at {layout.env}: run `make hub-deps` first")
    for what, path in [("state folder", layout.state), ("hub environment", layout.env)]:
        if path.resolve().is_relative_to(ROOT):
            raise SetupError(f"the {what} {path} is inside this repository, which is closed to students: "
                             "choose a place outside it (HUB_STATE, HUB_ENV)")
        hidden = [place for place in PRIVATE_SCRATCH if path.resolve().is_relative_to(place)]
        if hidden:
            raise SetupError(f"the {what} {path} is inside {hidden[0]}, which each student's server has a private "
                             "copy of and so cannot see: choose a place outside it (HUB_STATE, HUB_ENV)")


def make_accounts(layout: HubLayout) -> None:
    """The grader account and every login's account (see ``accounts.ensure_user``)."""
    grader = accounts.ensure_user(layout.grader, layout.account_tag)
    for name in layout.login_accounts:
        accounts.ensure_user(name, layout.account_tag)
        # The spawner does this too (for accounts made later); here a disk too small fails at set-up.
        if layout.home_bytes and homes.ensure_home(name, layout.homes, layout.home_bytes):
            print(f"  {name}: home on its own file system of {layout.home_bytes // 2**20} MiB")
    # Grading on the hub runs as the grader account, which may not make control groups of its
    # own: it gets one from root, and makes each kernel's group (the whole-submission limits) in it.
    try:
        layout.grader_cgroups = [str(p) for p in cgroups.delegate(layout.grader_cgroup, grader.pw_uid,
                                                                       grader.pw_gid)]
    except (cgroups.CgroupsUnavailable, OSError) as error:
        layout.grader_cgroups = []
        print(f"  warning: no control group for {layout.grader} ({error}); grading will refuse to start "
              "unless whole-submission limits are turned off (docs/grading.md)")


def make_state(layout: HubLayout, data: Path) -> None:
    """The state folder, open to traverse, with the modules every server loads and the data, read-only."""
    layout.state.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.state, 0o755)
    layout.hub_dir.mkdir(exist_ok=True)
    os.chmod(layout.hub_dir, 0o700)
    # Students import these; they hold no solution and no hidden test.
    package = layout.lib / "unet_hub"
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(STUDENT_PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    # Validate's hardening for students' servers: only these modules of the
    # grading engine, kept apart from unet_hub (the course service must import
    # the whole engine from the course folder).
    validate = layout.lib / "validate"
    shutil.rmtree(validate, ignore_errors=True)
    for module in VALIDATE_MODULES:
        (validate / module).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / module, validate / module)
    _tree_mode(layout.lib, 0o755, 0o644)
    if not (layout.data / "CameraRGB").is_dir():
        if not (data / "CameraRGB").is_dir():
            raise SetupError(f"no data at {data} (CameraRGB/, CameraMask/): run `make data` first")
        shutil.copytree(data, layout.data, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
    # One read-only copy for everyone instead of one per student.
    _tree_mode(layout.data, 0o755, 0o644)


def write_config(layout: HubLayout) -> None:
    """Jupyter and nbgrader settings: common (exchange, roster), student (Validate), grader (formgrader)."""
    from traitlets.config.loader import PyFileConfigLoader

    course_config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    common, student, grader = (layout.config / name for name in ("common", "student", "grader"))
    for folder in (common, student / "labconfig", grader / "labconfig"):
        folder.mkdir(parents=True, exist_ok=True)
    (common / "nbgrader_config.py").write_text(f'''"""Exchange and roster, for every account (by python -m hub)."""
from unet_hub.exchange import configure

c = get_config()  # noqa: F821
configure(c)
c.Exchange.root = {str(layout.exchange)!r}
c.CourseDirectory.course_id = {layout.course_id!r}
# The roster is the hub group nbgrader-{layout.course_id}; graders are formgrade-{layout.course_id}.
c.Authenticator.plugin_class = "unet_hub.roster.HubGroupsPlugin"
# A submission without the released notebook (renamed, deleted) is refused, with the reason.
c.ExchangeSubmit.strict = True
# Released for practice, never graded: submitting it is refused, with the reason.
c.PrivateSubmit.ungraded = [{LAB!r}]
''')
    (student / "nbgrader_config.py").write_text(f'''"""Validate in a student's server (by python -m hub)."""
import os

from grader.engine.validate import install

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
c = get_config()  # noqa: F821
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = {course_config.IgnorePattern.pattern!r}
c.Execute.timeout = {course_config.Execute.timeout!r}
# Well inside the Validate button's own limit, so the notebook's cells get the message.
c.ValidateExecute.notebook_timeout = {max(30, layout.validate_seconds - 30)}
# The server keeps its Validate process between presses (unet_hub.validate_handler): its kernels
# are forked from one template, which imports TensorFlow once. (A process per press gains nothing by it.)
c.ValidateExecute.template = {layout.kernel_template and layout.validate_keep_seconds > 0!r}
install()
''')
    (grader / "nbgrader_config.py").write_text('''"""Grading on the hub (written by `python -m hub`)."""
c = get_config()  # noqa: F821
# Feedback shows each graded cell's result, not the source of its hidden tests.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
''')
    news_off = '''c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
'''
    (student / "jupyter_server_config.py").write_text(f'''"""A student's server (written by `python -m hub`)."""
from unet_hub.page_policy import configured_policy

c = get_config()  # noqa: F821
# No inline script but the pages' own static ones, by hash (issue #30).
c.ServerApp.tornado_settings = {{"headers": {{"Content-Security-Policy": configured_policy()}}}}
c.ServerApp.jpserver_extensions = {{
    # Loaded by unet_hub.assignment_list, which gives its messages in plain words.
    "nbgrader.server_extensions.assignment_list": False,
    "unet_hub.assignment_list": True,
    "nbgrader.server_extensions.course_list": True,
    "nbgrader.server_extensions.formgrader": False,
    # Replaced by one that runs in a child process with a time limit.
    "nbgrader.server_extensions.validate_assignment": False,
    "unet_hub.validate_handler": True,
}}
{news_off}''')
    (grader / "jupyter_server_config.py").write_text(f'''"""The course service, formgrader (by python -m hub)."""
from unet_hub.page_policy import configured_policy

c = get_config()  # noqa: F821
# No inline script but the pages' own static ones, by hash (issue #30); frame-ancestors 'self' in it:
# formgrader lives in a frame of JupyterLab (JupyterHub 4.1+ forbids framing, nbgrader issue #1870).
c.ServerApp.tornado_settings = {{"headers": {{"Content-Security-Policy": configured_policy()}}}}
# Formgrader's pages escape the names an LMS sends and run only their own scripts (issue #30).
c.ServerApp.jpserver_extensions = {{"unet_hub.formgrader_guard": True}}
{news_off}''')
    news = "@jupyterlab/apputils-extension:announcements"
    (student / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": {
        news: True, "@jupyter/nbgrader:formgrader": True, "@jupyter/nbgrader:create-assignment": True}}, indent=2))
    (grader / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": {news: True}}, indent=2))
    _tree_mode(layout.config, 0o755, 0o644)


# Run as the grader account: puts the staged files into its course folder.  Root never
# writes into a folder that account owns, where a link it planted could send the write anywhere.
COURSE_UPDATE = """
import shutil, sys
from pathlib import Path
staged, course = Path(sys.argv[1]), Path(sys.argv[2])
def replace(entry, target):
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if entry.is_dir() and not entry.is_symlink():
        shutil.copytree(entry, target, symlinks=True)
    else:
        shutil.copy(entry, target, follow_symlinks=False)
for entry in staged.iterdir():
    target = course / entry.name
    if entry.name == "notebooks" and target.exists():
        # The instructor's own edits of the source notebooks stay; the modules and data beside them are
        # grading code (grader/student_side.py), new every time like the rest of it.
        for path in entry.rglob("*"):
            if path.suffix in (".py", ".json"):
                replace(path, course / path.relative_to(staged))
        continue
    if entry.name == "grade_on_submit.json" and target.exists():
        continue  # the instructor's policy stays
    replace(entry, target)
"""


def make_course(layout: HubLayout) -> None:
    """The course folder, owned by the grader account and closed to everyone else.

    Root stages what the course needs in a fresh folder only it and the grader
    account can read; the grader account copies it in (``COURSE_UPDATE``): the
    grading code and configuration every time (the modules beside the source
    notebooks too), the source notebooks only the first time (an instructor
    may edit them in the course service, and ``python -m hub release``
    releases their version).
    """
    grader = pwd.getpwnam(layout.grader)
    if not layout.course.exists():
        layout.course.mkdir()
        os.chown(layout.course, grader.pw_uid, grader.pw_gid)
    os.chmod(layout.course, 0o700)
    staged = layout.state / "course-update"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(mode=0o700)
    try:
        _stage_course(layout, staged)
        _tree_mode(staged, 0o750, 0o640)
        for dirpath, _, filenames in os.walk(staged):
            for name in [".", *filenames]:
                os.chown(Path(dirpath, name), 0, grader.pw_gid, follow_symlinks=False)
        accounts.run_as(layout.grader, [str(layout.env / "bin" / "python"), "-I", "-c", COURSE_UPDATE,
                                        str(staged), str(layout.course)], cwd=layout.course, env={})
    finally:
        shutil.rmtree(staged, ignore_errors=True)


# Until the instructor changes it in the course folder: the demo assignment is graded on submit.
DEFAULT_POLICY = {ASSIGNMENT: {"grade_on_submit": True, "show": "feedback", "per_hour": 6}}


def _stage_course(layout: HubLayout, staged: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
    shutil.copy(ROOT / "nbgrader_config.py", staged / "nbgrader_config.py")
    shutil.copytree(ROOT / "grader", staged / "grader", ignore=ignore)
    # The grading service runs from the course folder, as the grader account, which cannot read this repository.
    (staged / "hub").mkdir()
    shutil.copy(ROOT / "hub" / "__init__.py", staged / "hub" / "__init__.py")
    shutil.copytree(ROOT / "hub" / "grade_on_submit", staged / "hub" / "grade_on_submit", ignore=ignore)
    shutil.copytree(ROOT / "hub" / "lms", staged / "hub" / "lms", ignore=ignore)  # the LMS service's code
    (staged / POLICY_FILE).write_text(json.dumps(DEFAULT_POLICY, indent=2) + "\n")
    shutil.copytree(ROOT / "notebooks", staged / "notebooks", symlinks=True, ignore=ignore)
    # The notebooks' links point at files in the repository (the students' requirements, and the lab's at the
    # assignment's modules): each target goes to the same place relative to the copied notebooks.
    for link in (ROOT / "notebooks").rglob("*"):
        if link.is_symlink():
            target = link.resolve()
            shutil.copy(target, staged / target.relative_to(ROOT))
    with open(staged / "roster.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id"])
        writer.writerows([name] for name in layout.student_accounts)


def make_exchange(layout: HubLayout) -> None:
    """The exchange as ``unet_hub.exchange`` expects it (see there why)."""
    course = layout.exchange / layout.course_id
    grader = pwd.getpwnam(layout.grader)
    for path, mode in [(layout.exchange, 0o755), (course, 0o755), (course / "outbound", 0o755),
                       (course / "inbound", 0o3733), (course / "feedback", 0o711)]:
        path.mkdir(exist_ok=True)
        # nbgrader wants the grader account to own the course's folder, so that account (which
        # instructors reach through the course service) could swap the folders in it for links:
        # opened without following one, each is changed through what was opened, never a path.
        try:
            folder = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as error:
            raise SetupError(f"{path} is not a folder ({error.strerror}); remove it and set up again") from error
        try:
            if path == layout.exchange:
                os.fchown(folder, 0, 0)
            else:
                os.fchown(folder, grader.pw_uid, grader.pw_gid)
            os.fchmod(folder, mode)
        finally:
            os.close(folder)


def grader_env(layout: HubLayout) -> dict[str, str]:
    """The environment of nbgrader commands run as the grader account, as in the course service."""
    return {
        "PATH": f"{layout.env / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": layout.pythonpath("grader"),
        "JUPYTER_CONFIG_PATH": layout.config_path("grader"),
        "CARLA_DATA_DIR": str(layout.data),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "UNET_KERNEL_TEMPLATE": "1" if layout.kernel_template else "0",
    }


def nbgrader_as_grader(layout: HubLayout, *args: str, timeout: float = 900):
    """``nbgrader ARGS`` as the grader account in the course folder."""
    return accounts.run_as(layout.grader, [str(layout.env / "bin" / "python"), "-m", "nbgrader", *args],
                           cwd=layout.course, env=grader_env(layout), cgroups=layout.grader_cgroups,
                           timeout=timeout)


def release(layout: HubLayout, force: bool = False) -> list[str]:
    """Enrol the roster in the gradebook and release the assignment and the companion lab, each unless already
    released (``force``: both again); the names of those released now.

    The lab is generated with ``--no-db``: it never enters the gradebook, so nothing grades it, and
    ``unet_hub.exchange`` refuses its submission (``c.PrivateSubmit.ungraded``).
    """
    nbgrader_as_grader(layout, "db", "student", "import", "roster.csv")
    released = []
    for assignment, options in [(ASSIGNMENT, []), (LAB, ["--no-db"])]:
        if (layout.exchange / layout.course_id / "outbound" / assignment).is_dir() and not force:
            continue
        nbgrader_as_grader(layout, "generate_assignment", assignment, "--force", *options)
        nbgrader_as_grader(layout, "release_assignment", assignment, "--force")
        released.append(assignment)
    return released


def setup(layout: HubLayout, data: Path) -> dict[str, str]:
    """Everything but starting the hub; returns the demo logins (name -> password)."""
    if os.geteuid() != 0:
        raise SetupError("the hub makes unix accounts and runs servers as them: run it as root")
    check_places(layout)
    print(f"Setting up the course hub in {layout.state}")
    protect_repository(layout)
    make_accounts(layout)
    # The course's services run as the grader account.  Those of a hub that was killed before it stopped
    # them still hold their ports, and this hub's would fail to start (a restart after a hung shutdown).
    if accounts.end_processes(layout.grader):
        print(f"  stopped what {layout.grader} still ran from a previous hub")
    make_state(layout, data)
    layout.save()
    write_config(layout)
    make_course(layout)
    make_exchange(layout)
    released = release(layout)
    for assignment in (ASSIGNMENT, LAB):
        print(f"  {assignment}: {'released' if assignment in released else 'already released'}")
    if layout.lms:
        from hub.lms.hub_setup import set_up_lms

        set_up_lms(layout)
    return accounts.demo_passwords(layout.logins, layout.login_accounts)
