"""Students can install the course on every machine they bring, from exact pins.

``requirements-student.txt`` is resolved against the package index for each
platform (uv resolves for a platform other than this one without installing
anything), wheels only, for Python 3.11: a platform with no distribution of
some pin fails here.  The resolution needs the package index: without it the
test is skipped, except in CI.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import urllib.request
from importlib.metadata import PackageNotFoundError, version

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from grader.course import ROOT

STUDENT = ROOT / "requirements-student.txt"
PYTHON = "3.11"
# Each platform students use: uv's name for it, and the marker values pip sees there.
PLATFORMS = {
    "macOS on Apple silicon": ("aarch64-apple-darwin", {"sys_platform": "darwin", "platform_machine": "arm64"}),
    "macOS on Intel": ("x86_64-apple-darwin", {"sys_platform": "darwin", "platform_machine": "x86_64"}),
    "Windows on x86-64": ("x86_64-pc-windows-msvc", {"sys_platform": "win32", "platform_machine": "AMD64"}),
    "Linux on x86-64": ("x86_64-manylinux_2_28", {"sys_platform": "linux", "platform_machine": "x86_64"}),
    "Linux on aarch64": ("aarch64-manylinux_2_28", {"sys_platform": "linux", "platform_machine": "aarch64"}),
}


def requirements(path=STUDENT) -> list[Requirement]:
    lines = [line.split(" #")[0].strip() for line in path.read_text().splitlines()]
    return [Requirement(line) for line in lines if line and not line.startswith(("#", "-"))]


def chosen(environment: dict[str, str]) -> dict[str, str]:
    """Package -> pinned version that pip installs on a machine with these marker values."""
    env = {"python_version": PYTHON, **environment}
    picked: dict[str, str] = {}
    for req in requirements():
        if req.marker is None or req.marker.evaluate(env):
            assert req.name not in picked, f"two pins of {req.name} apply on {environment}"
            picked[req.name] = str(req.specifier).removeprefix("==")
    return picked


def test_every_pin_is_exact():
    for req in requirements() + requirements(ROOT / "requirements.txt"):
        assert re.fullmatch(r"==[\w.]+", str(req.specifier)), f"{req} is not an exact pin"


def test_the_instructors_requirements_include_the_students():
    assert "-r requirements-student.txt" in (ROOT / "requirements.txt").read_text().splitlines()
    assert (ROOT / "notebooks" / "unet_segmentation" / "requirements.txt").resolve() == STUDENT


@pytest.mark.parametrize("name", PLATFORMS)
def test_each_platform_gets_exactly_one_tensorflow_and_one_numpy(name):
    picked = chosen(PLATFORMS[name][1])
    assert len({"tensorflow", "tensorflow-cpu"} & set(picked)) == 1 and "numpy" in picked


def _installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        # `make venv TF=gpu` replaces the CPU build with tensorflow[and-cuda] of the same version.
        return version("tensorflow") if name == "tensorflow-cpu" else "not installed"


def test_this_machine_has_what_its_markers_pick():
    picked = chosen({"sys_platform": sys.platform, "platform_machine": platform.machine()})
    for name, pinned in picked.items():
        assert _installed(name) == pinned, f"{name}: installed {_installed(name)}, pinned {pinned}"


def _index_reachable() -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request("https://pypi.org/simple/pip/", method="HEAD"), timeout=15)
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def uv() -> list[str]:
    """The command that runs uv; skips (fails in CI) without uv or without the package index."""
    why = None
    command = [sys.executable, "-m", "uv"] if importlib.util.find_spec("uv") else [shutil.which("uv") or ""]
    if not command[0]:
        why = "uv is not installed (make venv installs it)"
    elif not _index_reachable():
        why = "the package index (pypi.org) cannot be reached"
    if why and os.environ.get("CI"):
        pytest.fail(f"{why}; CI must resolve the students' requirements")
    if why:
        pytest.skip(why)
    return command


@pytest.mark.parametrize("name", PLATFORMS)
def test_the_students_requirements_resolve_for_each_platform(uv, name, tmp_path):
    target, environment = PLATFORMS[name]
    result = subprocess.run(
        [*uv, "pip", "compile", "--quiet", "--no-header", "--no-annotate", "--only-binary", ":all:",
         "--python-platform", target, "--python-version", PYTHON, "--cache-dir", str(tmp_path / "cache"),
         str(STUDENT)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "UV_NO_CONFIG": "1"})
    assert result.returncode == 0, f"{name}: {result.stderr}"
    resolved = {canonicalize_name(n): v for n, v in re.findall(r"^([\w.\-]+)(?:\[\S+\])?==(\S+)$", result.stdout, re.M)}
    for package, pinned in chosen(environment).items():
        got = resolved.get(canonicalize_name(package))
        assert got == pinned, f"{name}: {package} resolved to {got}, not {pinned}"


def test_reading_a_notebook_builds_no_iri_parsers():
    """The Makefile drops rfc3987-syntax, whose import costs every nbgrader command 2 s of CPU."""
    code = "import sys, nbformat, nbgrader.apps; print('rfc3987_syntax' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", "rfc3987-syntax is installed: `make venv` uninstalls it"
