"""Internals of other packages are used only where they are pinned and checked.

Every module that reaches into another package's private API names the
versions it was checked with (``CHECKED_WITH``).  When an installed version
differs, this test fails and names that module: read its uses against the
new version, then update the pin and ``CHECKED_WITH`` together.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import re

import pytest

import grader.engine.private_api as private_api
import test_utils
from grader.course import ROOT

MODULES = {f"grader.engine.private_api.{m.name}": importlib.import_module(f"grader.engine.private_api.{m.name}")
           for m in pkgutil.iter_modules(private_api.__path__)}
CHECKED = {name: module.CHECKED_WITH for name, module in MODULES.items()}
CHECKED["test_utils (Keras graph internals)"] = test_utils.KERAS_CHECKED_WITH
# The engine's pins are the students' too (requirements.txt includes requirements-student.txt).
PINS = dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s#;]+)",
                       (ROOT / "requirements-student.txt").read_text() + (ROOT / "requirements.txt").read_text(),
                       re.M))


def _pin(package: str) -> str | None:
    wanted = package.lower().replace("_", "-")
    return next((v for k, v in PINS.items() if k.lower().replace("_", "-") == wanted), None)


@pytest.mark.parametrize("module", sorted(CHECKED))
def test_installed_versions_are_the_ones_the_module_was_checked_with(module):
    for package, version in CHECKED[module].items():
        installed = importlib.metadata.version(package)
        assert installed == version, (f"{module} uses internals of {package}; it was checked with {version}, "
                                      f"but {installed} is installed: read its uses against {installed} first")


@pytest.mark.parametrize("module", sorted(CHECKED))
def test_requirements_pin_exactly_those_versions(module):
    for package, version in CHECKED[module].items():
        assert _pin(package) == version, f"requirements-student.txt must pin {package}=={version} (used by {module})"


def test_private_names_are_reached_only_from_those_modules():
    """Outside private_api/ (and the Keras helpers), the engine does not touch underscored attributes of others."""
    allowed = re.compile(r"\._(keras_history|inbound_nodes|check_assign_resources|async_handle_timeout|"
                         r"async_launch_kernel)\b")
    offenders = []
    for path in (ROOT / "grader").rglob("*.py"):
        if "private_api" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if allowed.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
