"""Shared fixtures: a small synthetic data set and the reference solutions."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from carla_synth import generate
from grader.course import reference_namespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


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
    if os.geteuid() != 0:
        pytest.skip("needs root to create a throw-away user")
    name = f"unet-t{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=True)
