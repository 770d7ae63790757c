"""``nbgrader autograde`` starts the kernel template while it loads, and its first kernel is forked from that one.

``grader.engine.template_early`` is nbgrader's ``pre_convert_hook``: it reads
the course's sandbox settings without loading the grading steps (which import
TensorFlow), so it must read them exactly as the steps would.
"""

from __future__ import annotations

import sys

import pytest
from traitlets.config import Application, Config

from grader.course import ASSIGNMENT, NOTEBOOK
from grader.dev.examples import write_examples
from grader.dev.scratch_course import Course
from grader.engine.execute import SandboxedExecute
from grader.engine.template_early import EARLY, forks_kernels
from grader.tools.grades import scores

STARTED = "Kernel template started"


def command_line(*args: str) -> Config:
    app = Application()
    app.parse_command_line(list(args))
    return app.config


def python_config(**values: bool) -> Config:
    config = Config()
    for name, value in values.items():
        setattr(config.SandboxedExecute, name, value)
    return config


@pytest.mark.parametrize("config", [
    command_line(), command_line("--SandboxedExecute.template=False"),
    command_line("--SandboxedExecute.sandbox=False"), command_line("--SandboxedExecute.template=True"),
    python_config(template=False), python_config(sandbox=False, template=True), python_config(template=True),
], ids=["default", "cli_template_off", "cli_sandbox_off", "cli_template_on", "file_template_off",
        "file_sandbox_off", "file_template_on"])
def test_the_hook_reads_the_sandbox_settings_as_the_grading_step_does(config):
    step = SandboxedExecute(config=config)
    assert forks_kernels(config) == (step.sandbox and step.template)


@pytest.mark.skipif(sys.platform != "linux", reason="the sandbox and its template are Linux only")
def test_one_students_autograde_starts_the_template_early_and_its_kernel_is_forked_from_it(tmp_path, small_data):
    course = Course(tmp_path, small_data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    write_examples(course.root / "submitted", course.release / f"{NOTEBOOK}.ipynb")
    done = course.nbgrader("autograde", ASSIGNMENT, "--student=reference", "--force")
    log = done.stdout + done.stderr
    assert log.count(EARLY) == 1, log[-3000:]
    assert log.count(STARTED) == 1, log[-3000:]
    assert "Kernel template not used" not in log
    assert scores("reference", course.db_url)["total"] == 100
