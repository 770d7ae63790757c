"""Parts of the course hub that need no hub, no root and no other accounts."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from grader.course import NOTEBOOK, ROOT, reference_solutions
from grader.dev.examples import fill
from hub.layout import HubLayout
from hub.student.assignment_list import plain_message
from hub.student.validate_handler import ValidateKeeper


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


def presses(keeper: ValidateKeeper, *paths: Path, seconds: float = 60, between: float = 0) -> list[dict]:
    """What the Validate dialog says for each of ``paths``, pressed one after the other in one server."""
    async def press_all() -> list[dict]:
        answers = []
        for path in paths:
            answers.append(await keeper.validate(path, seconds))
            pids.append(keeper.process.pid if keeper.process is not None else None)
            await asyncio.sleep(between)
        await keeper.close()
        return answers

    pids: list[int | None] = []
    keeper.pids = pids  # type: ignore[attr-defined]  # the child after each press, for the tests
    return asyncio.run(press_all())


def test_validate_that_outlasts_its_limit_is_stopped_with_a_message(tmp_path):
    """The Validate button's own limit: the child process is stopped and the dialog says why."""
    source = nbformat.read(ROOT / "notebooks" / "unet_segmentation" / f"{NOTEBOOK}.ipynb", as_version=4)
    code = reference_solutions()
    code["conv_block"] = "while True:\n    pass\n\n\n" + code["conv_block"]
    path = tmp_path / "stuck.ipynb"
    nbformat.write(fill(source, code), path)
    keeper = ValidateKeeper()
    started = time.monotonic()
    [answer] = presses(keeper, path, seconds=3)
    assert time.monotonic() - started < 15
    assert answer["success"] is False
    assert answer["value"].startswith("Validate was stopped after 3 seconds: running stuck.ipynb takes too long.")
    assert keeper.pids == [None]  # stopped with everything it started


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """A server's folder away from the repository, which the Validate child imports as the hub's lib."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return tmp_path


def _notebook(path: Path, *cells: str) -> Path:
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    return path


def test_validate_of_a_file_that_is_not_a_notebook_says_so_and_the_next_press_is_answered(elsewhere):
    tmp_path = elsewhere
    notes = tmp_path / "notes.ipynb"
    notes.write_text("these are my notes, not JSON")
    keeper = ValidateKeeper(cwd=tmp_path)
    answers = presses(keeper, notes, _notebook(tmp_path / "fine.ipynb", "x = 1"))
    assert answers[0]["success"] is False
    assert answers[0]["value"].startswith("Validate could not check notes.ipynb (it could not be read or run). "
                                          "Is it a notebook"), answers[0]
    assert answers[1] == {"success": True, "value": {}}
    assert keeper.pids[0] == keeper.pids[1] is not None  # the same child answered both


def test_the_validate_child_ends_when_left_alone_and_when_it_dies_the_next_press_starts_another(elsewhere):
    tmp_path = elsewhere
    keeper = ValidateKeeper(keep_seconds=0.5, cwd=tmp_path)
    fine = _notebook(tmp_path / "fine.ipynb", "x = 1")
    # Pressed again after the child's time: a new child; pressed at once: the same one.
    presses(keeper, fine, fine, fine, between=0)
    quick = keeper.pids
    presses(keeper, fine, fine, between=2)
    assert len(set(quick)) == 1 and keeper.pids[0] != keeper.pids[1]
    for pid in {*quick, *keeper.pids}:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    # The kernel's parent is the child: killing it is the child dying mid-press.
    dies = _notebook(tmp_path / "dies.ipynb", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
    keeper = ValidateKeeper(cwd=tmp_path)
    answers = presses(keeper, dies, fine)
    assert answers[0]["success"] is False and "its process ended" in answers[0]["value"], answers[0]
    assert answers[1] == {"success": True, "value": {}}


def test_a_stale_or_broken_answer_line_is_not_taken_for_the_answer(elsewhere):
    tmp_path = elsewhere
    # A kernel started without the sandbox writes to the child's own stdout.
    forged = _notebook(tmp_path / "forged.ipynb", "import os\n"
                       "os.write(1, b'\\nunet-validate-answer {\"id\": 2, \"result\": {\"forged\": 1}}\\n')\n"
                       "os.write(1, b'\\nunet-validate-answer not even JSON\\n')")
    keeper = ValidateKeeper(cwd=tmp_path)
    answers = presses(keeper, forged, _notebook(tmp_path / "fine.ipynb", "x = 1"))
    assert answers == [{"success": True, "value": {}}] * 2, answers


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_presses_in_one_server_fork_their_kernels_from_one_template(elsewhere):
    """The hub's students' setting: the child keeps a template, and each press's kernel is forked from it."""
    tmp_path = elsewhere
    (tmp_path / "nbgrader_config.py").write_text(
        "from grader.engine.validate import install\n"
        "c = get_config()  # noqa: F821\n"
        "c.ValidateExecute.template = True\n"
        "c.Validator.validate_all = True  # every cell's error counts, not only graded cells'\n"
        "install()\n")
    # The notebook imports nothing: TensorFlow is there only in a kernel forked from the template.
    forked = _notebook(tmp_path / "forked.ipynb", "import sys\nassert 'tensorflow' in sys.modules")
    stuck = _notebook(tmp_path / "stuck.ipynb", "while True:\n    pass")
    heard: list[str] = []
    log = logging.getLogger("test-validate-keeper")
    log.addHandler(handler := logging.Handler())
    handler.emit = lambda record: heard.append(record.getMessage())  # type: ignore[method-assign]
    log.setLevel(logging.INFO)
    keeper = ValidateKeeper(cwd=tmp_path, log=log)
    answers = presses(keeper, forked, forked, stuck, seconds=30)
    assert answers[:2] == [{"success": True, "value": {}}] * 2, answers
    assert keeper.pids[0] == keeper.pids[1] is not None
    # The server's log hears it: one template, started once, used for both.
    assert sum("Kernel template started" in line for line in heard) == 1, heard
    assert not any("not used" in line for line in heard), heard
    # The stuck press is stopped with its child (a later press sweeps the copy of the folder it leaves).
    assert answers[2]["value"].startswith("Validate was stopped after 30 seconds"), answers[2]
    assert keeper.pids[2] is None


def test_without_the_sandbox_a_failing_cell_counts(elsewhere):
    """The check above can fail: a plain kernel has no TensorFlow, and Validate says so."""
    tmp_path = elsewhere
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()  # noqa: F821\nc.Validator.validate_all = True\n")
    cold = _notebook(tmp_path / "cold.ipynb", "import sys\nassert 'tensorflow' in sys.modules")
    [answer] = presses(ValidateKeeper(cwd=tmp_path), cold)
    assert answer["success"] is True and answer["value"]["failed"], answer


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
