"""A machine that cannot run the sandbox stops grading before the first student, with the fix.

The failing ``bwrap`` is simulated: a script on PATH that fails exactly as
Ubuntu's does under its AppArmor restriction on user namespaces (Ubuntu 23.10
and later, GitHub's ubuntu-24.04 runners, as a normal user).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from grader.course import ASSIGNMENT, NOTEBOOK, ROOT, reference_solutions
from grader.dev.examples import fill
from grader.dev.scratch_course import Course
from grader.engine.preflight import HEADLINE
from grader.engine.sandbox import SandboxUnavailable, check_available
from grader.engine.sandbox_fixes import APPARMOR_PROFILE, fix_for
from grader.tools.grades import scores

UBUNTU_SAYS = "bwrap: setting up uid map: Permission denied"


def failing_bwrap(folder: Path) -> Path:
    """A folder holding a ``bwrap`` that fails like Ubuntu's AppArmor-restricted one."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "bwrap"
    script.write_text(f"#!/bin/sh\necho '{UBUNTU_SAYS}' >&2\nexit 1\n")
    script.chmod(0o755)
    return folder


def test_the_ubuntu_fix_gives_both_ways_with_exact_commands():
    fix = fix_for(UBUNTU_SAYS, "linux")
    assert "make sandbox-deps" in fix
    assert f"sudo install -m 644 {APPARMOR_PROFILE} /etc/apparmor.d/bwrap" in fix
    assert "sudo apparmor_parser -r /etc/apparmor.d/bwrap" in fix
    assert "kernel.apparmor_restrict_unprivileged_userns=0" in fix and "sudo sysctl --system" in fix


def test_the_profile_named_in_the_fix_exists_and_allows_user_namespaces():
    profile = APPARMOR_PROFILE.read_text()
    assert "profile bwrap /usr/bin/bwrap flags=(unconfined)" in profile and "userns," in profile


@pytest.mark.parametrize("platform, error, words", [
    ("darwin", None, ["only on Linux", "course hub", "--SandboxedExecute.sandbox=False"]),
    ("win32", None, ["WSL 2", "--SandboxedExecute.sandbox=False"]),
    ("linux", None, ["make sandbox-deps"]),
    ("linux", "bwrap: No permissions to creating new namespace, likely because the kernel does not allow "
              "non-privileged user namespaces.", ["kernel.unprivileged_userns_clone=1"]),
])
def test_each_platform_gets_its_own_fix(platform, error, words):
    fix = fix_for(error, platform)
    for word in words:
        assert word in fix


# Run by a normal user with the system's Python 3.11 (this one may live where only root can read it).
# bubblewrap works for normal users here and is tested above; this is about the control groups alone.
NO_LIMITS_CHECK = """
import logging
from traitlets.config import Config
import grader.engine.execute as execute
from grader.engine.sandbox import SandboxUnavailable, check_limits_available
try:
    check_limits_available()
except SandboxUnavailable as err:
    print(err)
execute.check_available = lambda: None
config = Config()
config.SandboxedExecute.whole_submission_limits = False
step = execute.SandboxedExecute(config=config)
step.log.addHandler(logging.StreamHandler())
step.check_machine()
print("accepted")
"""


@pytest.mark.skipif(Path("/sys/fs/cgroup/cgroup.controllers").exists() or not Path("/sys/fs/cgroup/pids").is_dir()
                    or not Path("/usr/bin/python3.11").exists(),
                    reason="needs cgroup v1, where a normal user cannot make control groups, and Debian's Python 3.11")
def test_a_normal_user_without_control_groups_is_refused_unless_they_accept_no_limits(user):
    site = next(Path(sys.prefix, "lib").glob("python3.11/site-packages"))
    result = subprocess.run(["/usr/sbin/runuser", "-u", user, "--", "/usr/bin/python3.11", "-c", NO_LIMITS_CHECK],
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{site}"})
    assert result.returncode == 0, result.stderr
    assert "What failed: whole-submission limits (control groups) cannot be set" in result.stdout
    assert "only root may make control groups" in result.stdout and "whole_submission_limits=False" in result.stdout
    assert result.stdout.rstrip().endswith("accepted")
    assert "Grading WITHOUT whole-submission limits" in result.stderr


def test_a_failing_bwrap_is_reported_with_what_it_said_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{failing_bwrap(tmp_path / 'bin')}:{Path(sys.executable).parent}:/usr/bin:/bin")
    with pytest.raises(SandboxUnavailable) as err:
        check_available.__wrapped__()
    assert UBUNTU_SAYS in str(err.value) and "apparmor_parser -r" in str(err.value)


# -- nbgrader autograde and the class grader on a machine whose sandbox fails ----------


@pytest.fixture(scope="module")
def graded_course(tmp_path_factory, small_data) -> Course:
    """A course where one student is graded already and another has just handed in."""
    course = Course(tmp_path_factory.mktemp("preflight"), small_data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    release = nbformat.read(course.release / f"{NOTEBOOK}.ipynb", as_version=4)
    for student in ("graded_before", "newcomer"):
        path = course.root / "submitted" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(fill(release, reference_solutions()), path)
        if student == "graded_before":
            course.nbgrader("autograde", ASSIGNMENT, "--force", f"--student={student}")
    return course


def _state(course: Course) -> dict:
    """Everything a failed start must leave alone: grades, students, autograded files with their times."""
    with Gradebook(course.db_url) as gb:
        students = sorted(s.id for s in gb.students)
    files = {str(p.relative_to(course.root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
             for p in sorted((course.root / "autograded").rglob("*")) if p.is_file()}
    return {"students": students, "scores": scores("graded_before", course.db_url), "autograded": files}


def _with_failing_bwrap(course: Course, tmp_path: Path, command: list[str]) -> subprocess.CompletedProcess:
    env = {**course.env, "PATH": f"{failing_bwrap(tmp_path / 'bin')}:{course.env['PATH']}"}
    return subprocess.run(command, cwd=Path(__file__).parent.parent, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_autograde_stops_before_the_first_student_and_changes_nothing(graded_course, tmp_path):
    before = _state(graded_course)
    assert before["scores"]["total"] == 100 and before["students"] == ["graded_before"]
    result = _with_failing_bwrap(graded_course, tmp_path, [
        sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force",
        f"--CourseDirectory.root={graded_course.root}", f"--CourseDirectory.db_url={graded_course.db_url}"])
    said = result.stdout + result.stderr
    assert result.returncode != 0
    assert said.count(HEADLINE) == 1 and UBUNTU_SAYS in said and "apparmor_parser -r" in said, said
    assert "Traceback" not in said and "newcomer" not in said, said
    assert _state(graded_course) == before


@pytest.mark.slow
def test_the_class_grader_stops_once_with_the_same_message(graded_course, tmp_path):
    before = _state(graded_course)
    result = _with_failing_bwrap(graded_course, tmp_path, [
        sys.executable, "-m", "grader.tools.autograde_class", "--course", str(graded_course.root),
        "--db", graded_course.db_url, "--workers", "2"])
    said = result.stdout + result.stderr
    assert result.returncode != 0
    assert said.count(HEADLINE) == 1 and "apparmor_parser -r" in said and "FAILED" not in said, said
    assert _state(graded_course) == before


@pytest.mark.slow
def test_a_grading_service_gets_the_message_and_nothing_is_changed(graded_course, tmp_path):
    """The path a hub or another service takes: the engine's machine_problem, then grade_submission."""
    before = _state(graded_course)
    code = ("import sys\nfrom grader.engine.grading import CourseSetup, grade_submission, machine_problem\n"
            f"setup = CourseSetup({str(graded_course.root)!r}, {graded_course.db_url!r})\n"
            "print('PROBLEM', machine_problem(setup))\n"
            "result = grade_submission(setup, 'graded_before')\n"
            "print('RESULT', result.ok, result.cells, result.failure)\n")
    result = _with_failing_bwrap(graded_course, tmp_path, [sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    problem, outcome = result.stdout.split("RESULT")
    assert HEADLINE in problem and "apparmor_parser -r" in problem
    assert outcome.startswith(" False () CannotGrade: " + HEADLINE), outcome
    assert _state(graded_course) == before
