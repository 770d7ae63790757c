"""Parts of the course hub that need no hub, no root and no other accounts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nbformat
import pytest

from grader.course import NOTEBOOK, ROOT, reference_solutions
from grader.dev.examples import fill
from hub.layout import HubLayout
from hub.student.assignment_list import plain_message
from hub.student.validate_handler import validate


def test_a_layout_comes_back_as_it_was_saved(tmp_path):
    layout = HubLayout(state=tmp_path, env=tmp_path / "env", port=1234, prefix="t-", students=["a", "b"],
                       visitors=["v"])
    layout.save()
    again = HubLayout.load(tmp_path)
    assert again == layout
    assert again.student_accounts == ["t-a", "t-b"] and again.login_accounts == ["t-instructor", "t-a", "t-b", "t-v"]
    assert again.grader == "t-grader-unet-segmentation"
    assert (tmp_path / "hub.json").stat().st_mode & 0o077 == 0  # root's only: it names the accounts and ports


def test_students_get_validates_modules_and_the_course_service_does_not(tmp_path):
    layout = HubLayout(state=tmp_path, env=tmp_path / "env")
    assert layout.pythonpath("student").split(":") == [str(tmp_path / "lib"), str(tmp_path / "lib" / "validate")]
    assert layout.pythonpath("grader") == str(tmp_path / "lib")
    assert layout.config_path("student").split(":") == [str(tmp_path / "config" / n) for n in ("student", "common")]


def test_a_refusal_reads_as_the_exchanges_own_sentence():
    traceback = ('Traceback (most recent call last):\n  File "x.py", line 1\n'
                 "nbgrader.exchange.abc.exchange.ExchangeError: Assignment a not submitted. There are missing "
                 "notebooks for the submission:\nExpected:\n\tunet.ipynb: MISSING\n")
    assert plain_message(traceback) == ("Assignment a not submitted. There are missing notebooks for the "
                                        "submission:\nExpected:\n\tunet.ipynb: MISSING")
    assert plain_message("something else") == "something else"


def test_validate_that_outlasts_its_limit_is_stopped_with_a_message(tmp_path):
    """The Validate button's own limit: the child process is stopped and the dialog says why."""
    source = nbformat.read(ROOT / "notebooks" / "unet_segmentation" / f"{NOTEBOOK}.ipynb", as_version=4)
    code = reference_solutions()
    code["conv_block"] = "while True:\n    pass\n\n\n" + code["conv_block"]
    path = tmp_path / "stuck.ipynb"
    nbformat.write(fill(source, code), path)
    started = time.monotonic()
    answer = asyncio.run(validate(path, seconds=3))
    assert time.monotonic() - started < 15
    assert answer["success"] is False
    assert answer["value"].startswith("Validate was stopped after 3 seconds: running stuck.ipynb takes too long.")


def test_validate_of_a_file_that_is_not_a_notebook_says_so(tmp_path):
    path = tmp_path / "notes.ipynb"
    path.write_text("these are my notes, not JSON")
    answer = asyncio.run(validate(path, seconds=60))
    assert answer["success"] is False
    assert answer["value"].startswith("Validate could not check notes.ipynb (exit status 1). Is it a notebook")


def test_nothing_students_load_holds_a_solution_or_a_hidden_test():
    from hub.provision import STUDENT_PACKAGE, VALIDATE_MODULES

    files = [*STUDENT_PACKAGE.glob("*.py"), *(ROOT / m for m in VALIDATE_MODULES)]
    assert all(Path(f).exists() for f in files)
    text = "".join(Path(f).read_text() for f in files)
    for secret in ["run_check", "grader.engine.checks", "### BEGIN SOLUTION", "Conv2DTranspose("]:
        assert secret not in text, secret


def test_set_up_closes_the_repository_and_remove_gives_it_back_the_mode_it_had(tmp_path, monkeypatch):
    from hub import provision

    repository = tmp_path / "repository"
    repository.mkdir()
    repository.chmod(0o755)
    monkeypatch.setattr(provision, "ROOT", repository)
    layout = HubLayout(state=tmp_path / "state", env=tmp_path / "env")
    provision.protect_repository(layout)
    assert oct(repository.stat().st_mode & 0o777) == "0o750"
    provision.protect_repository(layout)  # a second set-up finds it closed and keeps the first mode
    provision.restore_repository(layout)
    assert oct(repository.stat().st_mode & 0o777) == "0o755"
    # If someone changed it meanwhile, theirs stays.
    provision.protect_repository(layout)
    repository.chmod(0o700)
    provision.restore_repository(layout)
    assert oct(repository.stat().st_mode & 0o777) == "0o700"


def test_a_state_folder_that_students_servers_cannot_see_is_refused(tmp_path):
    from hub import provision

    (tmp_path / "env" / "bin").mkdir(parents=True)
    (tmp_path / "env" / "bin" / "jupyterhub-singleuser").touch()
    layout = HubLayout(state=Path("/var/tmp/unet-hub-here"), env=tmp_path / "env")
    with pytest.raises(provision.SetupError, match="each student's server has a private copy of"):
        provision.check_places(layout)


def test_set_up_again_renews_the_modules_beside_the_notebooks_and_keeps_the_instructors_notebook(tmp_path):
    """The course folder of an earlier set-up (modules at its root, linked from notebooks/) gets the new layout."""
    import subprocess
    import sys

    from hub.provision import COURSE_UPDATE

    staged, course = tmp_path / "staged", tmp_path / "course"
    (staged / "notebooks" / "unet_segmentation").mkdir(parents=True)
    (staged / "notebooks" / "unet_lab").mkdir()
    (staged / "notebooks" / "unet_segmentation" / f"{NOTEBOOK}.ipynb").write_text("the release's notebook")
    (staged / "notebooks" / "unet_segmentation" / "spec_checks.py").write_text("new rules")
    (staged / "notebooks" / "unet_segmentation" / "specification.json").write_text("{}")
    (staged / "notebooks" / "unet_lab" / "carla_data.py").symlink_to("../unet_segmentation/carla_data.py")
    (staged / "grade_on_submit.json").write_text("the default policy")
    (course / "notebooks" / "unet_segmentation").mkdir(parents=True)
    (course / "notebooks" / "unet_lab").mkdir()
    (course / "notebooks" / "unet_segmentation" / f"{NOTEBOOK}.ipynb").write_text("the instructor's edit")
    (course / "spec_checks.py").write_text("old rules")
    (course / "notebooks" / "unet_segmentation" / "spec_checks.py").symlink_to("../../spec_checks.py")
    (course / "notebooks" / "unet_lab" / "carla_data.py").symlink_to("../../carla_data.py")
    (course / "grade_on_submit.json").write_text("the instructor's policy")
    subprocess.run([sys.executable, "-I", "-c", COURSE_UPDATE, str(staged), str(course)], check=True)
    assignment = course / "notebooks" / "unet_segmentation"
    assert (assignment / f"{NOTEBOOK}.ipynb").read_text() == "the instructor's edit"
    assert not (assignment / "spec_checks.py").is_symlink()
    assert (assignment / "spec_checks.py").read_text() == "new rules"
    assert (assignment / "specification.json").read_text() == "{}"
    lab_link = course / "notebooks" / "unet_lab" / "carla_data.py"
    assert lab_link.readlink() == Path("../unet_segmentation/carla_data.py")
    assert (course / "grade_on_submit.json").read_text() == "the instructor's policy"


def test_release_puts_out_the_assignment_and_the_ungraded_lab_each_once(tmp_path, monkeypatch):
    """What set-up and `python -m hub release` ask nbgrader (as the grader account) to do."""
    from hub import provision

    layout = HubLayout(state=tmp_path, env=tmp_path / "env")
    outbound = layout.exchange / layout.course_id / "outbound"
    calls: list[tuple[str, ...]] = []

    def nbgrader(_layout, *args, timeout=900):
        calls.append(args)
        if args[0] == "release_assignment":
            (outbound / args[1]).mkdir(parents=True)

    monkeypatch.setattr(provision, "nbgrader_as_grader", nbgrader)
    assert provision.release(layout) == ["unet_segmentation", "unet_lab"]
    assert calls == [("db", "student", "import", "roster.csv"),
                     ("generate_assignment", "unet_segmentation", "--force"),
                     ("release_assignment", "unet_segmentation", "--force"),
                     # Never in the gradebook: nothing grades it.
                     ("generate_assignment", "unet_lab", "--force", "--no-db"),
                     ("release_assignment", "unet_lab", "--force")]
    calls.clear()
    assert provision.release(layout) == []  # a second set-up leaves both as released
    assert calls == [("db", "student", "import", "roster.csv")]
    calls.clear()
    for name in ("unet_segmentation", "unet_lab"):
        (outbound / name).rmdir()
    assert provision.release(layout, force=True) == ["unet_segmentation", "unet_lab"]


def test_a_submission_of_the_ungraded_lab_is_refused_before_anything_is_copied():
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.abc.exchange import ExchangeError
    from traitlets.config import Config

    from hub.student.exchange import PrivateSubmit

    config = Config()
    config.PrivateSubmit.ungraded = ["unet_lab"]
    config.CourseDirectory.assignment_id = "unet_lab"
    submit = PrivateSubmit(coursedir=CourseDirectory(config=config), config=config)
    with pytest.raises(ExchangeError, match="unet_lab is practice that is never graded, so there is nothing to "
                                            "submit"):
        submit.init_dest()
