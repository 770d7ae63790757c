"""Shared fixtures: a small synthetic data set and the reference solutions."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from carla_synth import generate
from grader.course import reference_namespace
from hub.accounts import end_processes

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The files that take minutes, longest first (`--durations` of a whole run, 2 cores).  `make test` hands
# whole files to two workers in the collection's order, so these go first: a long file that started last
# would leave the other worker idle at the end.
LONGEST_FIRST = ("test_spellings", "test_hardening", "test_spelling_combinations", "test_parallel_grading",
                 "test_validate", "test_regrade_dask_postgres", "test_regrade_course", "test_functional_checks",
                 "test_browser",
                 "test_lms_grades", "test_spelling_grading", "test_feedback_messages")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the long files first (a stable sort: each file's own order stays)."""
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """24 synthetic pairs in the real on-disk format."""
    return generate(tmp_path_factory.mktemp("carla"), count=24, seed=5, progress=False)


def notebook_namespace(code: dict[str, str]) -> dict:
    """The namespace a kernel holds after the import cell and ``code`` (by exercise)."""
    return reference_namespace(code)


@pytest.fixture(scope="session")
def reference() -> dict:
    """Namespace holding the reference conv_block, upsampling_block and unet_model."""
    return reference_namespace()


@pytest.fixture
def user() -> Iterator[str]:
    """A throw-away unix user (no home), removed afterwards: for the paths a normal user takes (needs root)."""
    with throwaway_user() as name:
        yield name


@contextmanager
def throwaway_user() -> Iterator[str]:
    """The ``user`` fixture's account, for a fixture of wider scope: made, yielded, its processes checked, removed."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a throw-away user")
    name = f"unet-t{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True)
    try:
        yield name
    finally:
        left = _processes_of(name, wait=15.0)
        if left:
            end_processes(name, wait=5.0)
        subprocess.run(["userdel", name], check=True)
        assert not left, f"processes of the throw-away user {name} outlived the test by 15 s: {left}"


def _processes_of(name: str, wait: float) -> list[str]:
    """The processes ``name`` still runs after up to ``wait`` seconds ("pid command" each).

    A process that is ending as its test ends (a kernel template closing after
    its grader) may take a moment on a busy machine.
    """
    deadline = time.monotonic() + wait
    while True:
        found = subprocess.run(["pgrep", "-a", "-u", name], capture_output=True, text=True).stdout.splitlines()
        if not found or time.monotonic() > deadline:
            return [line[:120] for line in found]
        time.sleep(0.2)
