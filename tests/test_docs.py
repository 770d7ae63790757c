"""The documentation quotes the settings the code has, and links only to files that exist."""

from __future__ import annotations

import re

import pytest

import functional_checks
from grader.course import ROOT
from grader.engine.execute import SandboxedExecute
from grader.engine.validate import ValidateExecute

GRADING = (ROOT / "docs" / "grading.md").read_text()


def _default(cls: type, name: str):
    return cls.class_traits()[name].default_value


def _configured_cell_timeout() -> int:
    """``c.Execute.timeout`` as nbgrader_config.py sets it."""
    return int(re.search(r"^c\.Execute\.timeout = (\d+)$", (ROOT / "nbgrader_config.py").read_text(), re.M)[1])


QUOTES = {
    "CPU time": f"CPU time ({_default(SandboxedExecute, 'cpu_seconds')} s)",
    "address space": f"address space ({_default(SandboxedExecute, 'memory_bytes') // 2**30} GiB)",
    "cell time limit": f"each cell has {_configured_cell_timeout()} s (`--Execute.timeout`)",
    "grading budget": f"may take {_default(SandboxedExecute, 'grading_budget')} s in all "
                      "(`--SandboxedExecute.grading_budget`)",
    "evidence reserve": f"the last {_default(SandboxedExecute, 'evidence_reserve')} s "
                        "(`--SandboxedExecute.evidence_reserve`)",
    "output cap": f"cut after {_default(SandboxedExecute, 'output_limit'):,} characters",
    "time per call": f"stopped after {_default(SandboxedExecute, 'seconds_per_call'):g} s per call",
    "validate time": f"`--ValidateExecute.notebook_timeout` ({_default(ValidateExecute, 'notebook_timeout')} s)",
    "processes": f"at most {_default(SandboxedExecute, 'max_processes')} processes and threads "
                 "(`--SandboxedExecute.max_processes`)",
    "submission memory": f"at most {_default(SandboxedExecute, 'submission_memory_bytes') // 2**30} GiB of memory "
                         "(`--SandboxedExecute.submission_memory_bytes`",
    "cpus": f"at most {_default(SandboxedExecute, 'cpus'):g} CPU busy (`--SandboxedExecute.cpus`)",
    "submission CPU time": f"at most {_default(SandboxedExecute, 'submission_cpu_seconds')} s of CPU time in all "
                           "(`--SandboxedExecute.submission_cpu_seconds`)",
    "scratch space": f"its home ({_default(SandboxedExecute, 'scratch_bytes') // 2**30} GiB, "
                     "`--SandboxedExecute.scratch_bytes`)",
}

# What the functional checks take as the same result.
QUOTES["float tolerance"] = f"`RELATIVE_TOLERANCE` = {functional_checks.RELATIVE_TOLERANCE:g}"


@pytest.mark.parametrize("setting", QUOTES)
def test_the_grading_docs_quote_each_limit_as_the_code_sets_it(setting):
    assert QUOTES[setting] in " ".join(GRADING.split()), f"docs/grading.md must say: {QUOTES[setting]}"


@pytest.mark.parametrize("page", ["README.md", *(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))])
def test_links_point_at_files_that_exist(page):
    path = ROOT / page
    for target in re.findall(r"\]\(([^)#:]+)\)", path.read_text()):
        assert (path.parent / target).exists(), f"{page} links to {target}, which does not exist"
